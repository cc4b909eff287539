"""Every query of the vault. Reads of citizen data are scoped to their owner in the query itself;
a lookup that is not says so in its name (``..._unscoped``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from vault.models import (
    Assurance,
    Document,
    DocumentType,
    DocumentVersion,
    Procedure,
    ProcedureRequirement,
    VaultKey,
    VersionStatus,
)


class DocumentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def document_type(self, code: str) -> DocumentType | None:
        return self.session.get(DocumentType, code)

    def document_types(self) -> Sequence[DocumentType]:
        return self.session.scalars(select(DocumentType).order_by(DocumentType.code)).all()

    def add(self, row: Document | DocumentVersion | DocumentType) -> None:
        self.session.add(row)

    def get_for_owner(
        self, owner_id: uuid.UUID, document_id: uuid.UUID, *, for_update: bool = False
    ) -> Document | None:
        query = select(Document).where(
            Document.id == document_id,
            Document.owner_id == owner_id,
            Document.deleted_at.is_(None),
        )
        if for_update:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def list_for_owner(
        self,
        owner_id: uuid.UUID,
        *,
        type_code: str | None,
        assurance: Assurance | None,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Document]:
        query = select(Document).where(Document.owner_id == owner_id, Document.deleted_at.is_(None))
        if type_code:
            query = query.where(Document.type_code == type_code)
        if assurance:
            query = query.where(Document.assurance == assurance)
        if after:
            created, last_id = after
            query = query.where(
                or_(
                    Document.created_at > created,
                    (Document.created_at == created) & (Document.id > last_id),
                )
            )
        query = query.order_by(Document.created_at, Document.id).limit(limit)
        return self.session.scalars(query).all()

    def all_for_owner(self, owner_id: uuid.UUID) -> Sequence[Document]:
        return self.session.scalars(
            select(Document)
            .where(Document.owner_id == owner_id, Document.deleted_at.is_(None))
            .order_by(Document.created_at, Document.id)
        ).all()

    def versions(
        self, document_id: uuid.UUID, *, committed_only: bool = True
    ) -> Sequence[DocumentVersion]:
        """Versions of a document the caller has already resolved through an owner scope."""
        query = select(DocumentVersion).where(DocumentVersion.document_id == document_id)
        if committed_only:
            query = query.where(DocumentVersion.status == VersionStatus.committed)
        return self.session.scalars(query.order_by(DocumentVersion.version)).all()

    def version(self, document_id: uuid.UUID, version: int) -> DocumentVersion | None:
        return self.session.scalars(
            select(DocumentVersion).where(
                DocumentVersion.document_id == document_id,
                DocumentVersion.version == version,
            )
        ).first()

    def current_versions_of_owner(
        self, owner_id: uuid.UUID
    ) -> Sequence[tuple[Document, DocumentVersion]]:
        """One query: every live document of the owner with its committed current version."""
        rows = self.session.execute(
            select(Document, DocumentVersion)
            .join(
                DocumentVersion,
                (DocumentVersion.document_id == Document.id)
                & (DocumentVersion.version == Document.current_version),
            )
            .where(
                Document.owner_id == owner_id,
                Document.deleted_at.is_(None),
                DocumentVersion.status == VersionStatus.committed,
            )
            .order_by(Document.created_at, Document.id)
        ).all()
        return [(row[0], row[1]) for row in rows]

    def versions_of_owner(self, owner_id: uuid.UUID) -> Sequence[DocumentVersion]:
        return self.session.scalars(
            select(DocumentVersion)
            .join(Document, Document.id == DocumentVersion.document_id)
            .where(Document.owner_id == owner_id)
        ).all()

    def committed_with_hash(self, document_id: uuid.UUID, sha256: str) -> DocumentVersion | None:
        return self.session.scalars(
            select(DocumentVersion).where(
                DocumentVersion.document_id == document_id,
                DocumentVersion.sha256 == sha256,
                DocumentVersion.status == VersionStatus.committed,
                DocumentVersion.shredded_at.is_(None),
            )
        ).first()

    def next_version_number(self, document_id: uuid.UUID) -> int:
        current = self.session.scalar(
            select(func.max(DocumentVersion.version)).where(
                DocumentVersion.document_id == document_id
            )
        )
        return (current or 0) + 1

    def committed_version_with_key(
        self, owner_id: uuid.UUID, document_id: uuid.UUID, version: int
    ) -> tuple[DocumentVersion, VaultKey | None] | None:
        """One query: the committed version of an owner's live document, and the owner's vault
        key row it was wrapped under (``None`` if gone). While the caller holds the key row it
        stays in the session's identity map, where the keyring's lookup by primary key finds it
        without a second round trip (a missing or destroyed key is still refused there)."""
        row = self.session.execute(
            select(DocumentVersion, VaultKey)
            .join(Document, Document.id == DocumentVersion.document_id)
            .outerjoin(
                VaultKey,
                (VaultKey.owner_id == Document.owner_id)
                & (VaultKey.version == DocumentVersion.vault_key_version),
            )
            .where(
                Document.id == document_id,
                Document.owner_id == owner_id,
                Document.deleted_at.is_(None),
                DocumentVersion.version == version,
                DocumentVersion.status == VersionStatus.committed,
            )
        ).first()
        return (row[0], row[1]) if row is not None else None

    def version_by_id_unscoped(self, version_id: uuid.UUID) -> DocumentVersion | None:
        return self.session.get(DocumentVersion, version_id)

    def stale_pending_unscoped(self, older_than: dt.datetime) -> Sequence[DocumentVersion]:
        return self.session.scalars(
            select(DocumentVersion).where(
                DocumentVersion.status == VersionStatus.pending,
                DocumentVersion.created_at < older_than,
            )
        ).all()

    def known_object_keys_unscoped(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        rows = self.session.scalars(
            select(DocumentVersion.object_key).where(DocumentVersion.object_key.in_(keys))
        )
        return set(rows)

    def live_object_keys_unscoped(self, keys: Sequence[str]) -> set[str]:
        """Keys that a committed or in-flight, unshredded version still needs."""
        if not keys:
            return set()
        rows = self.session.scalars(
            select(DocumentVersion.object_key).where(
                DocumentVersion.object_key.in_(keys), DocumentVersion.shredded_at.is_(None)
            )
        )
        return set(rows)

    def delete_version_unscoped(self, version_id: uuid.UUID) -> None:
        self.session.execute(delete(DocumentVersion).where(DocumentVersion.id == version_id))


class CatalogueRequirements:
    """The procedure catalogue as the consent domain sees it (``ProcedureRequirements``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def requirements(self, procedure_code: str) -> list[tuple[str, bool]] | None:
        procedure = self.session.get(Procedure, procedure_code)
        if procedure is None or not procedure.active:
            return None
        rows = self.session.scalars(
            select(ProcedureRequirement)
            .where(ProcedureRequirement.procedure_code == procedure_code)
            .order_by(ProcedureRequirement.document_type)
        ).all()
        return [(row.document_type, row.required) for row in rows]
