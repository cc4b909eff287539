"""API shapes for registering the provider's clients."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal, Self

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

ClientKindName = Literal["portal", "agency", "operator", "relying_party"]
AuthMethod = Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]


class ClientIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "client_id": "cong-dvc-thai-nguyen",
                    "name": "Cổng dịch vụ công tỉnh Thái Nguyên",
                    "kind": "portal",
                    "token_endpoint_auth_method": "none",
                    "redirect_uris": ["https://dichvucong.thainguyen.gov.vn/callback"],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "scopes": ["openid", "profile", "personal_id"],
                }
            ]
        },
    )

    client_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{2,63}$")
    name: str = Field(min_length=1, max_length=255)
    kind: ClientKindName
    token_endpoint_auth_method: AuthMethod
    redirect_uris: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)
    post_logout_redirect_uris: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)
    backchannel_logout_uri: AnyHttpUrl | None = None
    grant_types: list[GrantType] = Field(min_length=1)
    scopes: list[str] = Field(default_factory=list, max_length=20)
    audiences: list[str] = Field(default_factory=lambda: ["kho-api"], max_length=10)
    jwks: dict[str, Any] | None = None
    agency_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        method = self.token_endpoint_auth_method
        if method == "private_key_jwt" and not self.jwks:
            raise ValueError("private_key_jwt needs the client's public keys in 'jwks'")
        if "authorization_code" in self.grant_types and not self.redirect_uris:
            raise ValueError("authorization_code needs at least one redirect URI")
        if method == "none" and "client_credentials" in self.grant_types:
            raise ValueError("a public client cannot use client_credentials")
        if self.kind == "operator" and "kho:admin" not in self.scopes:
            raise ValueError("an operator client needs the kho:admin scope")
        if self.kind != "operator" and "kho:admin" in self.scopes:
            raise ValueError("only operator clients may hold kho:admin")
        return self


class ClientOut(BaseModel):
    client_id: str
    name: str
    kind: str
    token_endpoint_auth_method: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    backchannel_logout_uri: str | None
    grant_types: list[str]
    scopes: list[str]
    audiences: list[str]
    agency_id: uuid.UUID | None
    active: bool
    created_at: dt.datetime
    client_secret: str | None = Field(
        default=None, description="Shown once, at registration; store it now"
    )
