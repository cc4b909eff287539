"""API shapes of the consent domain."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from consent.models import AccessMode, GrantStatus, RequestStatus


class RequestedItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_type: str | None = Field(default=None, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    document_id: uuid.UUID | None = None
    required: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.document_type is None) == (self.document_id is None):
            raise ValueError("give exactly one of document_type or document_id")
        return self


class ConsentRequestIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "subject_personal_id": "019090001234",
                    "purpose": "Giải quyết thủ tục đăng ký thường trú",
                    "procedure_code": "1.004222",
                    "dossier_ref": "HS-2026-000123",
                    "items": [{"document_type": "birth_certificate"}, {"document_type": "cccd"}],
                    "access_mode": "once",
                    "retention_days": 30,
                    "lapses_in_days": 7,
                }
            ]
        },
    )

    subject_personal_id: str = Field(pattern=r"^[0-9]{12}$")
    purpose: str = Field(min_length=3, max_length=1000)
    procedure_code: str = Field(min_length=1, max_length=64)
    dossier_ref: str | None = Field(default=None, max_length=128)
    items: list[RequestedItem] = Field(
        default_factory=list,
        max_length=50,
        description="What is asked for; leave empty to ask for the papers the procedure needs "
        "(filled from the procedure catalogue)",
    )
    access_mode: AccessMode = AccessMode.once
    max_uses: int | None = Field(default=None, ge=1, le=100_000)
    access_until: dt.datetime | None = None
    retention_days: int = Field(ge=0, le=3650)
    lapses_in_days: int = Field(default=7, ge=1, le=90)

    @model_validator(mode="after")
    def _mode(self) -> Self:
        if self.access_mode is AccessMode.repeated:
            if self.access_until is None or self.max_uses is None:
                raise ValueError("repeated access needs access_until and max_uses")
            if self.access_until.tzinfo is None:
                raise ValueError("access_until needs a time zone")
        elif self.max_uses is not None or self.access_until is not None:
            raise ValueError("max_uses and access_until apply to repeated access only")
        return self


class PreviewDocument(BaseModel):
    document_id: uuid.UUID
    document_type: str
    title: str
    version: int
    sha256: str
    size: int
    media_type: str
    assurance: str
    expires_on: dt.date | None


class PreviewItem(BaseModel):
    document_type: str | None
    document_id: uuid.UUID | None
    required: bool
    matches: list[PreviewDocument]


class ConsentRequestOut(BaseModel):
    id: uuid.UUID
    agency_id: uuid.UUID
    agency_code: str
    agency_name_vi: str
    subject_id: uuid.UUID
    purpose: str
    procedure_code: str
    dossier_ref: str | None
    access_mode: AccessMode
    max_uses: int
    access_until: dt.datetime | None
    retention_days: int
    lapses_at: dt.datetime
    status: RequestStatus
    created_at: dt.datetime
    decided_at: dt.datetime | None
    items: list[PreviewItem]
    grant_id: uuid.UUID | None = None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["grant", "deny"]
    document_ids: list[uuid.UUID] | None = Field(
        default=None,
        max_length=100,
        description="For a partial grant: the documents (from the preview) to share. "
        "Absent means every document in the preview.",
    )


class GrantDocument(BaseModel):
    document_id: uuid.UUID
    document_type: str
    version: int
    sha256: str
    uses: int


class GrantOut(BaseModel):
    id: uuid.UUID
    request_id: uuid.UUID
    agency_id: uuid.UUID
    status: GrantStatus
    access_mode: AccessMode
    max_uses: int
    uses: int
    valid_from: dt.datetime
    valid_until: dt.datetime
    retention_days: int
    revoked_at: dt.datetime | None
    documents: list[GrantDocument]
    artefact: str = Field(description="The signed consent artefact (compact JWS, ES256)")


class ConsentSummary(BaseModel):
    request: ConsentRequestOut
    grant: GrantOut | None


class ConsentPage(BaseModel):
    items: list[ConsentSummary]


class Receipt(BaseModel):
    """A consent receipt shaped after ISO/IEC TS 27560 (consent record information structure)."""

    model_config = ConfigDict(populate_by_name=True)

    schema_version: str
    record_id: str
    timestamp: dt.datetime
    pii_principal: dict[str, Any]
    controller: dict[str, Any]
    processing: list[dict[str, Any]]
    consent: dict[str, Any]
    artefact: str


class StatutoryAccessIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "subject_personal_id": "019090001234",
                    "legal_reference": "Điều 11.3 Quyết định 55/2024/QĐ-UBND; "
                    "Điều 17 Luật 91/2025/QH15",
                    "purpose": "Xác minh theo yêu cầu của cơ quan điều tra",
                    "document_ids": ["5b0e6a1c-2f7a-4d4e-9b8e-0a8d7c6b5a41"],
                    "valid_days": 7,
                }
            ]
        },
    )

    subject_personal_id: str = Field(pattern=r"^[0-9]{12}$")
    legal_reference: str = Field(min_length=5, max_length=500)
    purpose: str = Field(min_length=3, max_length=1000)
    document_ids: list[uuid.UUID] = Field(min_length=1, max_length=50)
    valid_days: int = Field(default=7, ge=1, le=90)
    disclose_at: dt.datetime | None = Field(
        default=None,
        description="When the owner is shown the access; absent means at once. The date must "
        "come from the legal provision (e.g. a confidential investigation).",
    )


class StatutoryAccessOut(BaseModel):
    id: uuid.UUID
    agency_id: uuid.UUID
    agency_name_vi: str
    subject_id: uuid.UUID
    legal_reference: str
    purpose: str
    status: str
    document_ids: list[uuid.UUID]
    valid_until: dt.datetime
    disclose_at: dt.datetime | None
    created_at: dt.datetime
    decided_at: dt.datetime | None
    requested_by: uuid.UUID
    approved_by: uuid.UUID | None


class NotificationOut(BaseModel):
    id: uuid.UUID
    kind: str
    subject_vi: str
    subject_en: str
    data: dict[str, Any]
    created_at: dt.datetime
    read: bool
