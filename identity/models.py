"""Owners of papers (citizens and organisations share one ``accounts`` row each), the people who
act for them (representatives, delegates, guardians), and the agencies and officials on the
other side of the desk."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base, UTCDateTime, UUIDString


class AccountKind(StrEnum):
    citizen = "citizen"
    organisation = "organisation"


class AccountStatus(StrEnum):
    active = "active"
    erased = "erased"


class RepresentativeRole(StrEnum):
    legal_representative = "legal_representative"
    authorised_staff = "authorised_staff"


class AgencyLevel(StrEnum):
    province = "province"
    district = "district"
    commune = "commune"


class OfficialRole(StrEnum):
    receptionist = "receptionist"
    processor = "processor"
    approver = "approver"
    agency_admin = "agency_admin"


class DelegationKind(StrEnum):
    delegation = "delegation"
    guardian = "guardian"


class DelegationStatus(StrEnum):
    """Computed when read, never stored: time alone moves a delegation between these."""

    pending = "pending"
    active = "active"
    expired = "expired"
    revoked = "revoked"


class DelegationScope(StrEnum):
    documents_read = "documents:read"
    documents_write = "documents:write"
    consents_decide = "consents:decide"
    access_log_read = "access_log:read"


_E = TypeVar("_E", bound=StrEnum)


# Sets of enum values are stored comma-joined in declaration order: one portable column that reads
# well in SQL, and equal sets always store the same text.
def join_members(values: Iterable[_E], order: type[_E]) -> str:
    wanted = set(values)
    return ",".join(member.value for member in order if member in wanted)


def split_members(stored: str, order: type[_E]) -> frozenset[_E]:
    return frozenset(order(part) for part in stored.split(",") if part)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    kind: Mapped[AccountKind] = mapped_column(String(16))
    status: Mapped[AccountStatus] = mapped_column(String(16), default=AccountStatus.active)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Citizen(Base):
    """A person, keyed by the national e-ID subject and the 12-digit personal ID number."""

    __tablename__ = "citizens"

    account_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    national_subject: Mapped[str] = mapped_column(String(255), unique=True)
    personal_id: Mapped[str] = mapped_column(String(12), unique=True)
    full_name: Mapped[str] = mapped_column(String(255))
    birth_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    eid_level: Mapped[int] = mapped_column(Integer, default=1)


class Organisation(Base):
    """An enterprise or other organisation owning papers, keyed by its normalised tax code."""

    __tablename__ = "organisations"

    account_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    tax_code: Mapped[str] = mapped_column(String(13), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Representative(Base):
    """A citizen acting for an organisation, from ``valid_from`` until expiry or revocation."""

    __tablename__ = "representatives"
    __table_args__ = (
        # At most one live (unrevoked) row per organisation and citizen; history stays.
        Index(
            "uq_representatives_active",
            "organisation_id",
            "citizen_account_id",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
        Index("ix_representatives_citizen_account_id", "citizen_account_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("organisations.account_id", ondelete="CASCADE")
    )
    # The account, not the citizen row: erasure deletes the latter and keeps the former.
    citizen_account_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    role: Mapped[RepresentativeRole] = mapped_column(String(32))
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Agency(Base):
    """A public agency (department, People's Committee, one-stop desk) at one level."""

    __tablename__ = "agencies"

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_vi: Mapped[str] = mapped_column(String(255))
    name_en: Mapped[str | None] = mapped_column(String(255), nullable=True)
    level: Mapped[AgencyLevel] = mapped_column(String(16))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        UUIDString, ForeignKey("agencies.id"), nullable=True, index=True
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Official(Base):
    """A civil servant of an agency; linked to their citizen account once they have signed in."""

    __tablename__ = "officials"
    __table_args__ = (UniqueConstraint("agency_id", "personal_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    citizen_account_id: Mapped[uuid.UUID | None] = mapped_column(
        UUIDString, ForeignKey("accounts.id"), nullable=True, index=True
    )
    personal_id: Mapped[str] = mapped_column(String(12), index=True)
    full_name: Mapped[str] = mapped_column(String(255))
    roles_text: Mapped[str] = mapped_column("roles", String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    @property
    def roles(self) -> frozenset[OfficialRole]:
        return split_members(self.roles_text, OfficialRole)

    @roles.setter
    def roles(self, value: Iterable[OfficialRole]) -> None:
        self.roles_text = join_members(value, OfficialRole)


class Delegation(Base):
    """The owner lets the delegate act on their store within ``scope``, for a bounded time.

    ``kind=guardian`` is a parent or guardian acting for a minor; it also lapses on the minor's
    18th birthday, which is computed from the birth date when asked rather than stored, so that a
    corrected birth date takes effect at once.
    """

    __tablename__ = "delegations"
    __table_args__ = (
        Index("ix_delegations_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_delegations_delegate_id_created_at", "delegate_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    delegate_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    scope_text: Mapped[str] = mapped_column("scope", String(128))
    kind: Mapped[DelegationKind] = mapped_column(String(16))
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def scope(self) -> frozenset[DelegationScope]:
        return split_members(self.scope_text, DelegationScope)

    @scope.setter
    def scope(self, value: Iterable[DelegationScope]) -> None:
        self.scope_text = join_members(value, DelegationScope)
