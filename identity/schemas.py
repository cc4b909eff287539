"""API shapes of the identity domain (pydantic); ORM rows never leave the service unconverted.

Personal ID numbers and tax codes are only bounded here: their rules live in the service, so a
wrong one is answered with its own stable code (``invalid_personal_id``, ``invalid_tax_code``)
rather than a generic validation error.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from identity.models import (
    AgencyLevel,
    DelegationKind,
    DelegationScope,
    DelegationStatus,
    OfficialRole,
    RepresentativeRole,
)

AGENCY_CODE_PATTERN = r"^[A-Z0-9][A-Z0-9.-]{1,31}$"

_PERSONAL_ID = Field(
    min_length=1,
    max_length=32,
    description="Số định danh cá nhân: 12 digits",
    examples=["019090123456"],
)
_TAX_CODE = Field(
    min_length=1,
    max_length=32,
    description="Mã số thuế: 10 digits, or 10 digits, an optional '-' and a 3-digit branch",
    examples=["0100109106", "0100109106-001"],
)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Patch(_Input):
    """A partial update: an absent field is left alone; ``null`` only where it means something."""

    not_nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for name in sorted(self.not_nullable & self.model_fields_set):
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


# -- agencies and officials --------------------------------------------------------------------


class AgencyCreate(_Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "STP-TN",
                    "name_vi": "Sở Tư pháp tỉnh Thái Nguyên",
                    "name_en": "Thai Nguyen Department of Justice",
                    "level": "province",
                }
            ]
        }
    )

    code: str = Field(
        pattern=AGENCY_CODE_PATTERN,
        description="Stable code: capitals, digits, '.' and '-'; 2 to 32 characters",
        examples=["STP-TN", "UBND-PHANDINHPHUNG"],
    )
    name_vi: str = Field(min_length=1, max_length=255, examples=["Sở Tư pháp tỉnh Thái Nguyên"])
    name_en: str | None = Field(default=None, min_length=1, max_length=255)
    level: AgencyLevel
    parent_id: uuid.UUID | None = Field(
        default=None,
        description="None for a province agency; a province agency for a district; "
        "a district agency for a commune",
    )


class AgencyUpdate(_Patch):
    not_nullable: ClassVar[frozenset[str]] = frozenset({"name_vi", "active"})

    name_vi: str | None = Field(default=None, min_length=1, max_length=255)
    name_en: str | None = Field(default=None, min_length=1, max_length=255)
    parent_id: uuid.UUID | None = Field(
        default=None, description="Move the agency under another parent of the right level"
    )
    active: bool | None = None


class AgencyOut(BaseModel):
    id: uuid.UUID
    code: str
    name_vi: str
    name_en: str | None
    level: AgencyLevel
    parent_id: uuid.UUID | None
    active: bool
    created_at: dt.datetime


class AgencyList(BaseModel):
    items: list[AgencyOut]


class OfficialCreate(_Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "personal_id": "019090123456",
                    "full_name": "Trần Thị Bình",
                    "roles": ["receptionist", "processor"],
                }
            ]
        }
    )

    personal_id: str = _PERSONAL_ID
    full_name: str = Field(min_length=1, max_length=255)
    roles: set[OfficialRole] = Field(min_length=1, max_length=len(OfficialRole))


class OfficialUpdate(_Patch):
    not_nullable: ClassVar[frozenset[str]] = frozenset({"full_name", "roles", "active"})

    full_name: str | None = Field(default=None, min_length=1, max_length=255)
    roles: set[OfficialRole] | None = Field(
        default=None, min_length=1, max_length=len(OfficialRole)
    )
    active: bool | None = None


class OfficialOut(BaseModel):
    id: uuid.UUID
    agency_id: uuid.UUID
    citizen_account_id: uuid.UUID | None = Field(
        description="Set once the official has signed in with the national e-ID"
    )
    personal_id: str
    full_name: str
    roles: list[OfficialRole]
    active: bool
    created_at: dt.datetime


class OfficialList(BaseModel):
    items: list[OfficialOut]


# -- organisations -----------------------------------------------------------------------------


class OrganisationCreate(_Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tax_code": "0100109106",
                    "name": "Tập đoàn Công nghiệp - Viễn thông Quân đội",
                    "legal_representative_personal_id": "019090123456",
                }
            ]
        }
    )

    tax_code: str = _TAX_CODE
    name: str = Field(min_length=1, max_length=255)
    legal_representative_personal_id: str = _PERSONAL_ID


class RepresentativeCreate(_Input):
    personal_id: str = _PERSONAL_ID
    role: RepresentativeRole = RepresentativeRole.authorised_staff
    valid_until: AwareDatetime | None = None


class RepresentativeOut(BaseModel):
    id: uuid.UUID
    organisation_id: uuid.UUID
    citizen_account_id: uuid.UUID
    full_name: str | None = Field(description="None once the citizen has erased their account")
    role: RepresentativeRole
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    revoked_at: dt.datetime | None
    active: bool
    created_at: dt.datetime


class OrganisationOut(BaseModel):
    id: uuid.UUID = Field(description="The organisation's account id")
    tax_code: str = Field(description="Normalised: 10 or 13 digits")
    name: str
    created_at: dt.datetime
    representatives: list[RepresentativeOut]


# -- delegations -------------------------------------------------------------------------------


class DelegationCreate(_Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "delegate_personal_id": "019090123456",
                    "scope": ["documents:read", "consents:decide"],
                    "kind": "delegation",
                    "valid_until": "2027-06-30T17:00:00Z",
                }
            ]
        }
    )

    delegate_personal_id: str = _PERSONAL_ID
    scope: set[DelegationScope] = Field(min_length=1, max_length=len(DelegationScope))
    kind: DelegationKind = DelegationKind.delegation
    valid_from: AwareDatetime | None = Field(default=None, description="Now when absent")
    valid_until: AwareDatetime | None = Field(
        default=None,
        description="Required for a delegation (at most 5 years); optional for a guardian, "
        "whose delegation lapses on the minor's 18th birthday anyway",
    )


class DelegationOut(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    owner_name: str | None
    delegate_id: uuid.UUID
    delegate_name: str | None
    scope: list[DelegationScope]
    kind: DelegationKind
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    effective_until: dt.datetime | None = Field(
        description="When it ends: valid_until, or the minor's 18th birthday if earlier"
    )
    status: DelegationStatus
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class DelegationList(BaseModel):
    given: list[DelegationOut] = Field(description="Delegations I gave")
    received: list[DelegationOut] = Field(description="Delegations I received")
