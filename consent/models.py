"""Tables of the consent domain: requests, grants, statutory access, the access log,
owners' notifications and agencies' webhooks."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base, UTCDateTime, UUIDString


class AccessMode(StrEnum):
    once = "once"
    repeated = "repeated"


class RequestStatus(StrEnum):
    pending = "pending"
    granted = "granted"
    partially_granted = "partially_granted"
    denied = "denied"
    lapsed = "lapsed"
    withdrawn = "withdrawn"


class GrantStatus(StrEnum):
    active = "active"
    revoked = "revoked"
    expired = "expired"
    exhausted = "exhausted"


class StatutoryStatus(StrEnum):
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    rejected = "rejected"


class ConsentRequest(Base):
    """An agency asks an owner for papers, for a named procedure and purpose."""

    __tablename__ = "consent_requests"
    __table_args__ = (Index("ix_consent_requests_subject_status", "subject_id", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    client_id: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    purpose: Mapped[str] = mapped_column(String(1000))
    procedure_code: Mapped[str] = mapped_column(String(64))
    dossier_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    access_mode: Mapped[AccessMode] = mapped_column(String(16))
    max_uses: Mapped[int] = mapped_column(Integer)
    access_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retention_days: Mapped[int] = mapped_column(Integer)
    lapses_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[RequestStatus] = mapped_column(String(24), default=RequestStatus.pending)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)


class ConsentRequestItem(Base):
    """One thing asked for: a document type (any valid paper of it) or one named document."""

    __tablename__ = "consent_request_items"

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("consent_requests.id", ondelete="CASCADE"), index=True
    )
    document_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    document_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    required: Mapped[bool] = mapped_column(Boolean, default=True)


class Grant(Base):
    """What the owner granted: a signed artefact, and the state that makes it usable."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_subject", "subject_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("consent_requests.id"), unique=True
    )
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    subject_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    subject_pseudonym: Mapped[str] = mapped_column(String(64))
    access_mode: Mapped[AccessMode] = mapped_column(String(16))
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retention_days: Mapped[int] = mapped_column(Integer)
    artefact: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[uuid.UUID] = mapped_column(UUIDString)


class GrantItem(Base):
    """One document version the grant covers, pinned by its SHA-256."""

    __tablename__ = "grant_items"
    __table_args__ = (UniqueConstraint("grant_id", "document_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    grant_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("grants.id", ondelete="CASCADE"), index=True
    )
    document_id: Mapped[uuid.UUID] = mapped_column(UUIDString)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    document_type: Mapped[str] = mapped_column(String(64))
    uses: Mapped[int] = mapped_column(Integer, default=0)


class StatutoryAccess(Base):
    """Access without consent by a competent authority under a named legal provision."""

    __tablename__ = "statutory_accesses"

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    subject_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    legal_reference: Mapped[str] = mapped_column(String(500))
    purpose: Mapped[str] = mapped_column(String(1000))
    requested_by: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("officials.id"))
    approved_by: Mapped[uuid.UUID | None] = mapped_column(
        UUIDString, ForeignKey("officials.id"), nullable=True
    )
    status: Mapped[StatutoryStatus] = mapped_column(String(24))
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    disclose_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disclosed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StatutoryAccessItem(Base):
    __tablename__ = "statutory_access_items"
    __table_args__ = (UniqueConstraint("access_id", "document_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    access_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("statutory_accesses.id", ondelete="CASCADE"), index=True
    )
    document_id: Mapped[uuid.UUID] = mapped_column(UUIDString)


class AccessLogEntry(Base):
    """One authorization decision, allowed or denied, in its owner's hash chain."""

    __tablename__ = "access_log_entries"
    __table_args__ = (UniqueConstraint("owner_id", "seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(UUIDString)
    seq: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))
    on_behalf_of: Mapped[str | None] = mapped_column(String(64), nullable=True)
    agency_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    action: Mapped[str] = mapped_column(String(48))
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    grant_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    statutory_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    document_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    document_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    purpose: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AccessLogHead(Base):
    """The last entry of each owner's chain; locked while appending, so appends serialise."""

    __tablename__ = "access_log_heads"

    owner_id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogCheckpoint(Base):
    """A signed commitment (Merkle root) over every owner's chain head at one moment."""

    __tablename__ = "access_log_checkpoints"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    tree_size: Mapped[int] = mapped_column(Integer)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    heads: Mapped[list[Any]] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(Text)


class Notification(Base):
    """A message in an owner's inbox (Vietnamese and English text kept together)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_owner_created", "owner_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(48))
    subject_vi: Mapped[str] = mapped_column(String(500))
    subject_en: Mapped[str] = mapped_column(String(500))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    visible_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookEndpoint(Base):
    """Where an agency wants to hear about decisions and revocations."""

    __tablename__ = "webhook_endpoints"

    agency_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("agencies.id"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(512))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """An outbox row: written in the deciding transaction, sent (and retried) afterwards."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "delivered_at", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    event: Mapped[str] = mapped_column(String(48))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
