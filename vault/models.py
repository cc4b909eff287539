"""Tables of the vault: document types, owners' vault keys, documents and their versions."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
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
