"""API shapes for registering the provider's clients."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal, Self, cast

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
PUBLIC_KEY_TYPES = ("EC", "RSA", "OKP")
ASSERTION_ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")


def public_jwks_problem(jwks: Any) -> str | None:
    """Why ``jwks`` is not an acceptable set of a client's public keys, or None if it is.

    A client registers public keys only: a JWKS carrying private members (``d``, ``p``,
    ``q``...) or a symmetric key would put the client's secret into Kho's database.
    """
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        return "a JWKS is a JSON object with a 'keys' array"
    keys: list[Any] = jwks["keys"]
    if not keys:
        return "the JWKS has no keys"
    for index, key in enumerate(keys, start=1):
        if not isinstance(key, dict):
            return f"key {index} is not a JSON object"
        private = [member for member in PRIVATE_MEMBERS if member in key]
        if private:
            return (
                f"key {index} holds private key material ({', '.join(private)}); "
                "register only the public keys"
            )
        if key.get("kty") not in PUBLIC_KEY_TYPES:
            return f"key {index}: kty must be one of {', '.join(PUBLIC_KEY_TYPES)}"
        alg = key.get("alg")
        if alg is not None and alg not in ASSERTION_ALGORITHMS:
            return f"key {index}: alg must be one of {', '.join(ASSERTION_ALGORITHMS)}"
        if len(keys) > 1 and not key.get("kid"):
            return f"key {index} has no 'kid' (needed when the JWKS has several keys)"
    try:
        KeySet.import_key_set(cast("Any", jwks))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        return f"the JWKS does not import: {exc}"
    return None


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
        if self.jwks is not None:
            problem = public_jwks_problem(self.jwks)
            if problem:
                raise ValueError(problem)
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
