"""Papers that agencies vouch for: results they issue (signed), scans certified at a desk,
public verification of issued versions, and agencies asking again for what Kho already holds.

An issued result arrives in two steps: the agency declares it (type, metadata, the SHA-256 and
a detached JWS over that SHA-256 made with one of its registered keys), then streams the bytes.
Kho checks the agency may issue that type and that the signature verifies with the agency's
key before anything is stored, and that the bytes hash to the signed value before the version is
committed. Anyone holding a document id and SHA-256 (or the QR payload printed on a result) can
then ask Kho whether it holds exactly that issued version, who issued it, and whether it was
revoked; nothing personal is revealed by the answer.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.clock import Clock
from consent.repository import NotificationRepository
from identity.errors import AccountNotFound
from identity.repository import AccountRepository, AgencyRepository
from vault.errors import (
    DocumentNotFound,
    InvalidIssuerSignature,
    IssuedDocumentNotFound,
    NotAllowedToIssue,
    UnknownDocumentType,
    UnknownIssuerKey,
)
from vault.models import (
    AgencyIssuingRight,
    AgencySigningKey,
    AgencyUploadSlot,
    Assurance,
    DigitisationRecord,
    Document,
    DocumentVersion,
    IssuedRecord,
    ProcedureRequirement,
    ReRequest,
    VersionStatus,
)
from vault.repository import DocumentRepository
from vault.schemas import DocumentCreate
from vault.service import DocumentService, UploadResult

ISSUER_ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
QR_PREFIX = "KHO1:"


@dataclass(frozen=True)
class IssuedDeclaration:
    subject_personal_id: str
    document: DocumentCreate
    sha256: str
    signature: str


@dataclass(frozen=True)
class Verification:
    valid: bool
    document_type: str | None = None
    number: str | None = None
    issued_on: dt.date | None = None
    issued_at: dt.datetime | None = None
    issuer_code: str | None = None
    issuer_name: str | None = None
    revoked: bool = False
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None


def qr_payload(document_id: uuid.UUID, sha256: str) -> str:
    """What a result prints as a QR code: enough to ask Kho, nothing personal."""
    return f"{QR_PREFIX}{document_id}:{sha256}"


def parse_qr(payload: str) -> tuple[uuid.UUID, str] | None:
    if not payload.startswith(QR_PREFIX):
        return None
    try:
        ident, digest = payload[len(QR_PREFIX) :].split(":", 1)
        return uuid.UUID(ident), digest.lower()
    except ValueError:
        return None


class IssuanceService:
    def __init__(self, session: Session, clock: Clock, documents: DocumentService) -> None:
        self.session = session
        self.clock = clock
        self.documents = documents
        self.repo = DocumentRepository(session)
        self.accounts = AccountRepository(session)
        self.agencies = AgencyRepository(session)

    # -- operator set-up ----------------------------------------------------------------------

    def set_issuing_rights(self, agency_id: uuid.UUID, types: Iterable[str]) -> list[str]:
        wanted = sorted(set(types))
        for code in wanted:
            if self.repo.document_type(code) is None:
                raise UnknownDocumentType(extra={"type_code": code})
        current = self.session.scalars(
            select(AgencyIssuingRight).where(AgencyIssuingRight.agency_id == agency_id)
        ).all()
        for row in current:
            if row.document_type not in wanted:
                self.session.delete(row)
        have = {row.document_type for row in current}
        for code in wanted:
            if code not in have:
                self.session.add(
                    AgencyIssuingRight(
                        agency_id=agency_id, document_type=code, created_at=self.clock.now()
                    )
                )
        self.session.flush()
        return wanted

    def register_key(self, agency_id: uuid.UUID, jwk: dict[str, Any]) -> AgencySigningKey:
        private = {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)
        kid = jwk.get("kid")
        if private or not isinstance(kid, str) or not kid:
            raise InvalidIssuerSignature(
                "Chỉ đăng ký khoá công khai, có 'kid'.",
                "Register a public key only, with a 'kid'.",
            )
        try:
            KeySet.import_key_set(cast("Any", {"keys": [jwk]}))
        except (JoseError, ValueError, TypeError):
            raise InvalidIssuerSignature("Khoá không hợp lệ.", "Not a usable key.") from None
        row = self.session.get(AgencySigningKey, kid)
        if row is not None and row.agency_id != agency_id:
            raise UnknownIssuerKey()
        if row is None:
            row = AgencySigningKey(kid=kid, agency_id=agency_id, created_at=self.clock.now())
            self.session.add(row)
        row.public_jwk = jwk
        row.revoked_at = None
        self.session.flush()
        return row

    # -- issued results -----------------------------------------------------------------------

    def verify_declaration(self, agency_id: uuid.UUID, declaration: IssuedDeclaration) -> str:
        """Check right and signature before any byte is accepted; returns the signing kid."""
        type_code = declaration.document.type_code
        if self.repo.document_type(type_code) is None:
            raise UnknownDocumentType(extra={"type_code": type_code})
        allowed = self.session.get(AgencyIssuingRight, (agency_id, type_code))
        if allowed is None:
            raise NotAllowedToIssue(extra={"type_code": type_code})
        digest = declaration.sha256.lower()
        if not _SHA256.match(digest):
            raise InvalidIssuerSignature("Mã băm SHA-256 không hợp lệ.", "Malformed SHA-256.")
        try:
            header = jws.extract_compact(declaration.signature.encode()).headers()
        except (JoseError, ValueError):
            raise InvalidIssuerSignature() from None
        kid = header.get("kid")
        key = self.session.get(AgencySigningKey, kid) if isinstance(kid, str) else None
        if key is None or key.agency_id != agency_id or key.revoked_at is not None:
            raise UnknownIssuerKey()
        try:
            jws.deserialize_compact(
                declaration.signature,
                KeySet.import_key_set(cast("Any", {"keys": [key.public_jwk]})),
                algorithms=ISSUER_ALGORITHMS,
                payload=digest.encode(),
            )
        except (JoseError, ValueError):
            raise InvalidIssuerSignature() from None
        return key.kid

    def declare_issued(self, agency_id: uuid.UUID, declaration: IssuedDeclaration) -> Document:
        """Step 1: check the right and the signature, open the document in the owner's store."""
        kid = self.verify_declaration(agency_id, declaration)
        citizen = self.accounts.citizen_by_personal_id(declaration.subject_personal_id)
        if citizen is None:
            raise AccountNotFound()
        document = self.documents.create(citizen.account_id, declaration.document)
        self.session.add(
            AgencyUploadSlot(
                document_id=document.id,
                agency_id=agency_id,
                kind=Assurance.issued,
                sha256=declaration.sha256.lower(),
                signature=declaration.signature,
                kid=kid,
                created_at=self.clock.now(),
            )
        )
        self.session.flush()
        return document

    def _slot(
        self, agency_id: uuid.UUID, document_id: uuid.UUID, kind: Assurance
    ) -> AgencyUploadSlot:
        slot = self.session.get(AgencyUploadSlot, document_id)
        if slot is None or slot.agency_id != agency_id or slot.kind != kind:
            raise IssuedDocumentNotFound()
        return slot

    def upload_issued(
        self,
        agency_id: uuid.UUID,
        document_id: uuid.UUID,
        chunks: Iterable[bytes],
        *,
        filename: str | None,
    ) -> UploadResult:
        """Step 2: the bytes; they must hash to the signed SHA-256 or nothing is kept."""
        slot = self._slot(agency_id, document_id, Assurance.issued)
        document = self.session.get(Document, document_id)
        assert document is not None and slot.sha256 and slot.signature and slot.kid
        result = self.documents.upload(
            document.owner_id,
            document_id,
            chunks,
            filename=filename,
            actor_id=None,
            assurance=Assurance.issued,
            expect_sha256=slot.sha256,
        )
        agency = self.agencies.get(agency_id)
        assert agency is not None
        now = self.clock.now()
        self.session.add(
            IssuedRecord(
                version_id=result.version.id,
                agency_id=agency_id,
                kid=slot.kid,
                signature=slot.signature,
                reference_number=document.number,
                issued_at=now,
            )
        )
        self.session.delete(slot)
        self._notify(
            document.owner_id,
            "document.issued",
            f"{agency.name_vi} đã cấp cho bạn: {document.title}",
            f"{agency.name_en or agency.name_vi} issued to you: {document.title}",
            document.id,
        )
        self.session.flush()
        return result

    def _notify(
        self, owner_id: uuid.UUID, kind: str, vi: str, en: str, document_id: uuid.UUID
    ) -> None:
        NotificationRepository(self.session).add(
            owner_id, kind, vi, en, {"document_id": str(document_id)}, now=self.clock.now()
        )

    def revoke_issued(self, agency_id: uuid.UUID, document_id: uuid.UUID, reason: str) -> None:
        records = self.session.scalars(
            select(IssuedRecord)
            .join(DocumentVersion, DocumentVersion.id == IssuedRecord.version_id)
            .where(DocumentVersion.document_id == document_id, IssuedRecord.agency_id == agency_id)
        ).all()
        if not records:
            raise IssuedDocumentNotFound()
        now = self.clock.now()
        for record in records:
            if record.revoked_at is None:
                record.revoked_at = now
                record.revocation_reason = reason[:500]
        self.session.flush()

    def verify(self, document_id: uuid.UUID, sha256: str) -> Verification:
        """Public: is this exactly an issued version Kho holds? (No personal data in the answer.)"""
        digest = sha256.lower()
        if not _SHA256.match(digest):
            return Verification(valid=False)
        row = self.session.execute(
            select(DocumentVersion, Document, IssuedRecord)
            .join(Document, Document.id == DocumentVersion.document_id)
            .join(IssuedRecord, IssuedRecord.version_id == DocumentVersion.id)
            .where(
                DocumentVersion.document_id == document_id,
                DocumentVersion.sha256 == digest,
                DocumentVersion.status == VersionStatus.committed,
                DocumentVersion.shredded_at.is_(None),
            )
        ).first()
        if row is None:
            return Verification(valid=False)
        _version, document, record = row
        agency = self.agencies.get(record.agency_id)
        return Verification(
            valid=record.revoked_at is None,
            document_type=document.type_code,
            number=record.reference_number,
            issued_on=document.issued_on,
            issued_at=record.issued_at,
            issuer_code=agency.code if agency else None,
            issuer_name=agency.name_vi if agency else None,
            revoked=record.revoked_at is not None,
            revoked_at=record.revoked_at,
            revocation_reason=record.revocation_reason,
        )

    # -- digitisation at the desk -------------------------------------------------------------

    def open_at_desk(
        self,
        *,
        agency_id: uuid.UUID,
        official_id: uuid.UUID,
        official_account: uuid.UUID,
        subject_personal_id: str,
        document: DocumentCreate,
    ) -> Document:
        """A receptionist opens a paper in the store of a citizen who is present."""
        citizen = self.accounts.citizen_by_personal_id(subject_personal_id)
        if citizen is None:
            raise AccountNotFound()
        created = self.documents.create(citizen.account_id, document)
        self.session.add(
            AgencyUploadSlot(
                document_id=created.id,
                agency_id=agency_id,
                kind=Assurance.digitised,
                official_id=official_id,
                official_account_id=official_account,
                created_at=self.clock.now(),
            )
        )
        self.session.flush()
        return created

    def upload_scan(
        self,
        agency_id: uuid.UUID,
        document_id: uuid.UUID,
        chunks: Iterable[bytes],
        *,
        filename: str | None,
    ) -> UploadResult:
        slot = self._slot(agency_id, document_id, Assurance.digitised)
        document = self.session.get(Document, document_id)
        assert document is not None and slot.official_id is not None
        result = self.documents.upload(
            document.owner_id,
            document_id,
            chunks,
            filename=filename,
            actor_id=slot.official_account_id,
            assurance=Assurance.digitised,
        )
        self.session.add(
            DigitisationRecord(
                version_id=result.version.id,
                agency_id=agency_id,
                official_id=slot.official_id,
                created_at=self.clock.now(),
            )
        )
        self.session.delete(slot)
        agency = self.agencies.get(agency_id)
        assert agency is not None
        self._notify(
            document.owner_id,
            "document.digitised",
            f"{agency.name_vi} đã số hoá giấy tờ của bạn: {document.title}",
            f"{agency.name_en or agency.name_vi} digitised your paper: {document.title}",
            document.id,
        )
        self.session.flush()
        return result

    def provenance(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> dict[str, Any]:
        """For the owner: who issued or digitised each version."""
        if self.repo.get_for_owner(owner_id, document_id) is None:
            raise DocumentNotFound()
        out: dict[str, Any] = {}
        for version in self.repo.versions(document_id):
            issued = self.session.get(IssuedRecord, version.id)
            digitised = self.session.get(DigitisationRecord, version.id)
            entry: dict[str, Any] = {"assurance": version.assurance}
            if issued is not None:
                agency = self.agencies.get(issued.agency_id)
                entry["issued_by"] = agency.code if agency else None
                entry["revoked"] = issued.revoked_at is not None
            if digitised is not None:
                agency = self.agencies.get(digitised.agency_id)
                entry["digitised_by_agency"] = agency.code if agency else None
                entry["digitised_by_official"] = str(digitised.official_id)
            out[str(version.version)] = entry
        return out

    # -- asking again -------------------------------------------------------------------------

    def ask_to_provide(
        self,
        *,
        agency_id: uuid.UUID,
        subject_personal_id: str,
        document_type: str,
        procedure_code: str | None,
    ) -> ReRequest | None:
        """An agency asks the owner to provide a paper. When Kho already holds it at the
        assurance the procedure needs, the re-request is recorded and the owner is told they can
        share it instead; returns that record, or None when the owner really must provide it."""
        citizen = self.accounts.citizen_by_personal_id(subject_personal_id)
        if citizen is None:
            raise AccountNotFound()
        if self.repo.document_type(document_type) is None:
            raise UnknownDocumentType(extra={"type_code": document_type})
        minimum = Assurance.self_declared
        if procedure_code is not None:
            requirement = self.session.get(ProcedureRequirement, (procedure_code, document_type))
            if requirement is not None:
                minimum = Assurance(requirement.min_assurance)
        today = self.clock.now().date()
        held = [
            d
            for d in self.repo.all_for_owner(citizen.account_id)
            if d.type_code == document_type
            and d.current_version
            and Assurance(d.assurance).rank >= minimum.rank
            and (d.expires_on is None or d.expires_on >= today)
        ]
        now = self.clock.now()
        agency = self.agencies.get(agency_id)
        assert agency is not None
        doc_type = self.repo.document_type(document_type)
        assert doc_type is not None
        if not held:
            NotificationRepository(self.session).add(
                citizen.account_id,
                "document.requested",
                f"{agency.name_vi} đề nghị bạn cung cấp: {doc_type.name_vi}",
                f"{agency.name_en or agency.name_vi} asks you to provide: {doc_type.name_en}",
                {"document_type": document_type},
                now=now,
            )
            self.session.flush()
            return None
        record = ReRequest(
            agency_id=agency_id,
            owner_id=citizen.account_id,
            document_type=document_type,
            procedure_code=procedure_code,
            held_document_id=held[0].id,
            created_at=now,
        )
        self.session.add(record)
        NotificationRepository(self.session).add(
            citizen.account_id,
            "document.requested_again",
            f"{agency.name_vi} đề nghị nộp lại {doc_type.name_vi}, nhưng giấy tờ này đã có trong "
            "kho của bạn: bạn không phải nộp lại, có thể chia sẻ bản đã có.",
            f"{agency.name_en or agency.name_vi} asked again for {doc_type.name_en}, which your "
            "store already holds: you need not provide it again; you can share the one you have.",
            {"document_type": document_type, "document_id": str(held[0].id)},
            now=now,
        )
        self.session.flush()
        return record

    def re_request_report(
        self, since: dt.datetime | None = None
    ) -> list[tuple[uuid.UUID, str, int]]:
        """Operators: per agency, how often it asked again for papers Kho already held."""
        query = select(ReRequest.agency_id, func.count()).group_by(ReRequest.agency_id)
        if since is not None:
            query = query.where(ReRequest.created_at >= since)
        rows = []
        for agency_id, count in self.session.execute(query).all():
            agency = self.agencies.get(agency_id)
            rows.append((agency_id, agency.code if agency else "?", int(count)))
        return sorted(rows, key=lambda row: -row[2])
