"""Tables of the vault: document types, owners' vault keys, documents and their versions."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.db import Base, UTCDateTime, UUIDString


class Assurance(StrEnum):
    """How much a paper can be trusted, weakest first."""

    self_declared = "self_declared"
    digitised = "digitised"
    issued = "issued"

    @property
    def rank(self) -> int:
        return _ASSURANCE_RANK[self]


_ASSURANCE_RANK = {Assurance.self_declared: 0, Assurance.digitised: 1, Assurance.issued: 2}


class VersionStatus(StrEnum):
    pending = "pending"
    committed = "committed"


class DocumentType(Base):
    """An entry of the document-type catalogue."""

    __tablename__ = "document_types"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_vi: Mapped[str] = mapped_column(String(255))
    name_en: Mapped[str] = mapped_column(String(255))
    expires: Mapped[bool] = mapped_column(Boolean, default=False)
    official_code: Mapped[bool] = mapped_column(Boolean, default=False)
    issuer_kind: Mapped[str | None] = mapped_column(String(64), nullable=True)
    validity_months: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Procedure(Base):
    """An administrative procedure of the catalogue and the papers it needs."""

    __tablename__ = "procedures"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_vi: Mapped[str] = mapped_column(String(500))
    name_en: Mapped[str] = mapped_column(String(500))
    level: Mapped[str] = mapped_column(String(16))
    official_code: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ProcedureRequirement(Base):
    """One paper a procedure needs, and the weakest assurance that will do."""

    __tablename__ = "procedure_requirements"

    procedure_code: Mapped[str] = mapped_column(
        String(64), ForeignKey("procedures.code", ondelete="CASCADE"), primary_key=True
    )
    document_type: Mapped[str] = mapped_column(
        String(64), ForeignKey("document_types.code"), primary_key=True
    )
    min_assurance: Mapped[Assurance] = mapped_column(String(16))
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    max_age_days: Mapped[int | None] = mapped_column(Integer, nullable=True)


class CatalogueVersion(Base):
    """Every change to the catalogues, with what changed (append-only)."""

    __tablename__ = "catalogue_versions"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))


class AgencyIssuingRight(Base):
    """Which document types an agency may issue (push as ``issued`` results)."""

    __tablename__ = "agency_issuing_rights"

    agency_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("agencies.id"), primary_key=True
    )
    document_type: Mapped[str] = mapped_column(
        String(64), ForeignKey("document_types.code"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AgencySigningKey(Base):
    """A public key an agency signs its issued results with (detached JWS over the SHA-256)."""

    __tablename__ = "agency_signing_keys"

    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"), index=True)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IssuedRecord(Base):
    """The proof behind an ``issued`` version: who signed it, and whether it was revoked."""

    __tablename__ = "issued_records"

    version_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("document_versions.id"), primary_key=True
    )
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    kid: Mapped[str] = mapped_column(String(128))
    signature: Mapped[str] = mapped_column(Text)
    reference_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)


class DigitisationRecord(Base):
    """A scan certified at a one-stop desk: by which official, of which agency."""

    __tablename__ = "digitisation_records"

    version_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("document_versions.id"), primary_key=True
    )
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    official_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("officials.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AgencyUploadSlot(Base):
    """A document an agency opened in an owner's store and will fill: an issued result (with
    the SHA-256 and signature it declared) or a scan at the desk (with the official)."""

    __tablename__ = "agency_upload_slots"

    document_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("documents.id"), primary_key=True
    )
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    kind: Mapped[Assurance] = mapped_column(String(16))
    official_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    official_account_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    kid: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ReRequest(Base):
    """An agency asked an owner again for a paper Kho already holds at sufficient assurance
    (Decision 55/2024, Art. 7.2.d): recorded, shown to the owner, reported to operators."""

    __tablename__ = "re_requests"
    __table_args__ = (Index("ix_re_requests_agency_created", "agency_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    agency_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("agencies.id"))
    owner_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    document_type: Mapped[str] = mapped_column(String(64))
    procedure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    held_document_id: Mapped[uuid.UUID] = mapped_column(UUIDString)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class VaultKey(Base):
    """An owner's vault key, wrapped by a master-key version. Destroying it shreds the owner."""

    __tablename__ = "vault_keys"

    owner_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("accounts.id"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    master_key_version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_owner_created", "owner_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    type_code: Mapped[str] = mapped_column(String(64), ForeignKey("document_types.code"))
    title: Mapped[str] = mapped_column(String(255))
    number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issuer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    issued_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    expires_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    assurance: Mapped[Assurance] = mapped_column(String(16), default=Assurance.self_declared)
    current_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    versions: Mapped[list[DocumentVersion]] = relationship(
        back_populates="document", order_by="DocumentVersion.version", lazy="raise"
    )


class DocumentVersion(Base):
    __tablename__ = "document_versions"
    __table_args__ = (
        UniqueConstraint("document_id", "version"),
        Index("ix_document_versions_status_created", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    document_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("documents.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[VersionStatus] = mapped_column(String(16), default=VersionStatus.pending)
    object_key: Mapped[str] = mapped_column(String(128), unique=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stored_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    media_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    vault_key_version: Mapped[int] = mapped_column(Integer)
    wrapped_data_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    assurance: Mapped[Assurance] = mapped_column(String(16), default=Assurance.self_declared)
    created_by: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    committed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    shredded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    document: Mapped[Document] = relationship(back_populates="versions", lazy="raise")
