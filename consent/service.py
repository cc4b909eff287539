"""Rules of consent: agencies ask, owners decide, grants are signed and checked at every use.

Every authorization decision is written to the owner's access log: an allowed one in the same
transaction as the use it allows (no log, no data), a refused one through ``AuditWriter`` in a
transaction of its own, because the request that was refused rolls back.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.clock import Clock
from common.errors import KhoError, ServiceUnavailable
from consent.audit import AccessLog, AuditWriter, LogEvent
from consent.errors import (
    ConsentRequestNotFound,
    DocumentNotInGrant,
    GrantExhausted,
    GrantExpired,
    GrantNotFound,
    GrantRevoked,
    InvalidConsentRequest,
    InvalidDecision,
    NotAnOfficial,
    NotTheRequestingOfficial,
    RequestLapsed,
    RequestNotPending,
    SecondApproverRequired,
    StatutoryAccessNotApproved,
    StatutoryAccessNotFound,
    SubjectNotFound,
)
from consent.models import (
    AccessMode,
    ConsentRequest,
    ConsentRequestItem,
    Grant,
    GrantItem,
    GrantStatus,
    RequestStatus,
    StatutoryAccess,
    StatutoryAccessItem,
    StatutoryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from consent.repository import ConsentRepository, NotificationRepository
from consent.schemas import (
    ConsentRequestIn,
    ConsentRequestOut,
    ConsentSummary,
    DecisionIn,
    GrantDocument,
    GrantOut,
    PreviewDocument,
    PreviewItem,
    Receipt,
    RequestedItem,
    StatutoryAccessIn,
    StatutoryAccessOut,
)
from consent.signing import JwsSigner
from identity.models import Agency
from identity.repository import AccountRepository, AgencyRepository
from storage.db import after_rollback

ONCE_WINDOW = dt.timedelta(days=30)
ARTEFACT_TYPE = "kho-consent+jwt"
_ASSURANCE_RANK = {"self_declared": 0, "digitised": 1, "issued": 2}


class AccessLogUnavailable(ServiceUnavailable):
    """An allowed access could not be written to the log, so nothing is served (no log, no
    bytes): 503 like any other unavailable dependency, never a 500 with a stack trace."""

    code = "access_log_unavailable"
    title_vi = "Không ghi được nhật ký truy cập nên không cung cấp dữ liệu"
    title_en = "The access could not be logged, so nothing was served"


def _append_allowed(log: AccessLog, event: LogEvent) -> None:
    """Append an allowed fetch's entry; if the database refuses it (privileges, a trigger, a
    lost connection), the fetch fails closed with :class:`AccessLogUnavailable`."""
    try:
        log.append(event)
    except SQLAlchemyError:
        raise AccessLogUnavailable() from None


@dataclass(frozen=True)
class DocumentRef:
    """What consent needs to know of a paper (the vault provides it)."""

    document_id: uuid.UUID
    owner_id: uuid.UUID
    document_type: str
    title: str
    version: int
    sha256: str
    size: int
    media_type: str
    assurance: str
    expires_on: dt.date | None
    created_at: dt.datetime


class ProcedureRequirements(Protocol):
    def requirements(self, procedure_code: str) -> Sequence[tuple[str, bool]] | None:
        """(document type, required) for each paper the procedure needs; None if unknown."""
        ...


class OwnerDocuments(Protocol):
    def current(self, owner_id: uuid.UUID) -> Sequence[DocumentRef]:
        """The owner's papers that have content, each at its current version."""
        ...


@dataclass(frozen=True)
class AgencyActor:
    client_id: str
    agency_id: uuid.UUID


@dataclass(frozen=True)
class OwnerActor:
    """Who acts on an owner's consents: the owner, or a delegate on their behalf."""

    owner_id: uuid.UUID
    account_id: uuid.UUID

    @property
    def is_delegate(self) -> bool:
        return self.owner_id != self.account_id

    def log_fields(self) -> dict[str, str | None]:
        if self.is_delegate:
            return {
                "actor_kind": "delegate",
                "actor_id": str(self.account_id),
                "on_behalf_of": str(self.owner_id),
            }
        return {"actor_kind": "owner", "actor_id": str(self.owner_id), "on_behalf_of": None}


class DelegateAction(StrEnum):
    """What a delegate did in the owner's store, as it is written in the owner's access log."""

    list = "delegate.list"
    metadata = "delegate.metadata"
    versions = "delegate.versions"
    download = "delegate.download"
    create = "delegate.create"
    upload = "delegate.upload"
    access_log = "delegate.access_log"
    access_log_proof = "delegate.access_log_proof"


class DelegateUseLog:
    """A delegate's use of an owner's store, written to the owner's access log with both
    identities (``actor_kind=delegate``, the delegate's account as ``actor_id``, the owner as
    ``on_behalf_of``).

    The entry is appended in the caller's transaction and flushed at once; the request's unit of
    work commits it before the response starts (ADR 0002), so a delegate's download is logged
    before its first byte, as an agency fetch is (no log, no bytes). Writing no entry fails the
    request with :class:`AccessLogUnavailable`. The owner's own use of their store is not logged.
    There is no capability here: what a delegate may open is checked by the delegation (scope,
    dates, revocation) before the owner's ordinary, owner-scoped path runs.
    """

    def __init__(self, session: Session, clock: Clock) -> None:
        self.log = AccessLog(session, clock)

    def record(
        self,
        actor: OwnerActor,
        action: DelegateAction,
        *,
        document_id: uuid.UUID | None = None,
        document_version: int | None = None,
    ) -> None:
        if not actor.is_delegate:
            return
        _append_allowed(
            self.log,
            LogEvent(
                owner_id=actor.owner_id,
                actor_kind="delegate",
                actor_id=str(actor.account_id),
                on_behalf_of=str(actor.owner_id),
                action=action.value,
                decision="allowed",
                document_id=document_id,
                document_version=document_version,
            ),
        )


_MINT = object()


@dataclass(frozen=True)
class ReadCapability:
    """Permission to read one exact document version, minted only by the consent service after
    the check and the log entry succeeded in the current transaction."""

    owner_id: uuid.UUID
    document_id: uuid.UUID
    version: int
    sha256: str
    agency_id: uuid.UUID
    grant_id: uuid.UUID | None
    statutory_id: uuid.UUID | None
    mint: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mint is not _MINT:
            raise TypeError("read capabilities are issued by the consent service only")


def pseudonym(agency_id: uuid.UUID, owner_id: uuid.UUID) -> str:
    """A stable per-agency pseudonym of the owner for artefacts (no personal ID inside)."""
    digest = hashlib.sha256(b"kho-pseudonym\x00" + agency_id.bytes + owner_id.bytes).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def grant_status(grant: Grant, now: dt.datetime) -> GrantStatus:
    if grant.revoked_at is not None:
        return GrantStatus.revoked
    if grant.valid_until <= now:
        return GrantStatus.expired
    if grant.uses >= grant.max_uses:
        return GrantStatus.exhausted
    return GrantStatus.active


class ConsentService:
    def __init__(
        self,
        session: Session,
        clock: Clock,
        *,
        issuer: str,
        signer: JwsSigner,
        documents: OwnerDocuments,
        denials: AuditWriter,
        procedures: ProcedureRequirements | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.issuer = issuer
        self.signer = signer
        self.documents = documents
        self.procedures = procedures
        self.repo = ConsentRepository(session)
        self.accounts = AccountRepository(session)
        self.agencies = AgencyRepository(session)
        self.log = AccessLog(session, clock)
        self.denials = denials

    # -- agency side --------------------------------------------------------------------------

    def create_request(self, agency: AgencyActor, body: ConsentRequestIn) -> ConsentRequestOut:
        citizen = self.accounts.citizen_by_personal_id(body.subject_personal_id)
        if citizen is None:
            raise SubjectNotFound()
        items = list(body.items)
        if not items:
            needed = self.procedures.requirements(body.procedure_code) if self.procedures else None
            if not needed:
                raise InvalidConsentRequest(
                    "Thủ tục không có trong danh mục: hãy liệt kê giấy tờ cần.",
                    "Unknown procedure: list the papers you need.",
                    extra={"procedure_code": body.procedure_code},
                )
            items = [
                RequestedItem(document_type=code, required=required) for code, required in needed
            ]
        now = self.clock.now()
        if body.access_until is not None and body.access_until <= now:
            raise InvalidConsentRequest(
                "Thời hạn truy cập phải ở tương lai.", "access_until must be in the future."
            )
        request = ConsentRequest(
            id=uuid.uuid4(),
            agency_id=agency.agency_id,
            client_id=agency.client_id,
            subject_id=citizen.account_id,
            purpose=body.purpose,
            procedure_code=body.procedure_code,
            dossier_ref=body.dossier_ref,
            access_mode=body.access_mode,
            max_uses=body.max_uses or len(items),
            access_until=body.access_until,
            retention_days=body.retention_days,
            lapses_at=now + dt.timedelta(days=body.lapses_in_days),
            status=RequestStatus.pending,
            created_at=now,
        )
        self.repo.add(request)
        self.session.flush()
        for item in items:
            self.repo.add(
                ConsentRequestItem(
                    request_id=request.id,
                    document_type=item.document_type,
                    document_id=item.document_id,
                    required=item.required,
                )
            )
        self.session.flush()
        self.log.append(
            LogEvent(
                owner_id=citizen.account_id,
                actor_kind="agency",
                actor_id=agency.client_id,
                agency_id=agency.agency_id,
                action="consent.request",
                decision="allowed",
                purpose=body.purpose,
            )
        )
        agency_row = self._agency(agency.agency_id)
        self._notify(
            citizen.account_id,
            "consent.requested",
            f"{agency_row.name_vi} yêu cầu chia sẻ giấy tờ: {body.purpose}",
            f"{agency_row.name_en or agency_row.name_vi} asks for papers: {body.purpose}",
            {"request_id": str(request.id)},
        )
        return self._describe(request)

    def request_for_agency(self, agency: AgencyActor, request_id: uuid.UUID) -> ConsentSummary:
        request = self.repo.request_for_agency(agency.agency_id, request_id)
        if request is None:
            raise ConsentRequestNotFound()
        self._lapse(request)
        grant = self.repo.grant_for_request(request.id)
        return ConsentSummary(
            request=self._describe(request, with_preview=False),
            grant=self._grant_out(grant) if grant else None,
        )

    def _agency_grant(self, agency: AgencyActor, grant_id: uuid.UUID, action: str) -> Grant:
        grant = self.repo.grant_for_agency(agency.agency_id, grant_id)
        if grant is None:
            # Another agency's grant (or none): refused, and the owner is told who tried.
            other = self.repo.grant_unscoped(grant_id)
            if other is not None:
                self._deny(other.subject_id, agency, action, GrantNotFound, grant_id=grant_id)
            raise GrantNotFound()
        return grant

    def grant_documents(self, agency: AgencyActor, grant_id: uuid.UUID) -> GrantOut:
        grant = self._agency_grant(agency, grant_id, "grant.documents")
        self.log.append(
            LogEvent(
                owner_id=grant.subject_id,
                actor_kind="agency",
                actor_id=agency.client_id,
                agency_id=agency.agency_id,
                action="grant.documents",
                decision="allowed",
                grant_id=grant.id,
            )
        )
        return self._grant_out(grant)

    def authorize_fetch(
        self, agency: AgencyActor, grant_id: uuid.UUID, document_id: uuid.UUID
    ) -> ReadCapability:
        """Check the grant at fetch time and count the use, atomically, then log the access.

        Raises (after logging the refusal) when the grant is not this agency's, does not cover
        the document, or is revoked, expired or used up.
        """
        now = self.clock.now()
        used = self.repo.use_grant(grant_id, agency.agency_id, document_id, now)
        if used is None:
            # Not this agency's grant (or none), or revoked, expired or used up: find out which.
            grant = self._agency_grant(agency, grant_id, "document.fetch")
            status = grant_status(grant, now)
            error: type[KhoError] = {
                GrantStatus.revoked: GrantRevoked,
                GrantStatus.expired: GrantExpired,
            }.get(status, GrantExhausted)
            if self.repo.grant_item(grant_id, document_id) is None:
                error = DocumentNotInGrant
            self._deny(
                grant.subject_id,
                agency,
                "document.fetch",
                error,
                grant_id=grant_id,
                document_id=document_id,
            )
            raise error()
        subject_id, access_mode, version, sha256 = used
        if version is None or sha256 is None:
            # The use counted above is rolled back with the refused request.
            self._deny(
                subject_id,
                agency,
                "document.fetch",
                DocumentNotInGrant,
                grant_id=grant_id,
                document_id=document_id,
            )
            raise DocumentNotInGrant()
        if access_mode == AccessMode.once and not self.repo.use_item_once(grant_id, document_id, 1):
            self._deny(
                subject_id,
                agency,
                "document.fetch",
                GrantExhausted,
                grant_id=grant_id,
                document_id=document_id,
            )
            raise GrantExhausted()
        _append_allowed(
            self.log,
            LogEvent(
                owner_id=subject_id,
                actor_kind="agency",
                actor_id=agency.client_id,
                agency_id=agency.agency_id,
                action="document.fetch",
                decision="allowed",
                grant_id=grant_id,
                document_id=document_id,
                document_version=version,
            ),
        )
        return ReadCapability(
            owner_id=subject_id,
            document_id=document_id,
            version=version,
            sha256=sha256,
            agency_id=agency.agency_id,
            grant_id=grant_id,
            statutory_id=None,
            mint=_MINT,
        )

    def _deny(
        self,
        owner_id: uuid.UUID,
        agency: AgencyActor,
        action: str,
        error: type[KhoError],
        *,
        grant_id: uuid.UUID | None = None,
        document_id: uuid.UUID | None = None,
    ) -> None:
        self._record_denial(
            LogEvent(
                owner_id=owner_id,
                actor_kind="agency",
                actor_id=agency.client_id,
                agency_id=agency.agency_id,
                action=action,
                decision="denied",
                reason=error.code,
                grant_id=grant_id,
                document_id=document_id,
            )
        )

    def _record_denial(self, event: LogEvent) -> None:
        """Logged once the refused request has rolled back (it never waits on its locks)."""
        denials = self.denials
        after_rollback(self.session, lambda: denials.record(event))

    # -- owner side ---------------------------------------------------------------------------

    def inbox(
        self, owner_id: uuid.UUID, status: RequestStatus | None = None, limit: int = 100
    ) -> list[ConsentSummary]:
        self.repo.lapse_due(owner_id, self.clock.now())
        summaries = []
        for request in self.repo.requests_of_owner(owner_id, status, limit):
            grant = self.repo.grant_for_request(request.id)
            summaries.append(
                ConsentSummary(
                    request=self._describe(request, with_preview=False),
                    grant=self._grant_out(grant) if grant else None,
                )
            )
        return summaries

    def _owner_request(
        self, actor: OwnerActor, request_id: uuid.UUID, action: str, *, for_update: bool = False
    ) -> ConsentRequest:
        request = self.repo.request_for_owner(actor.owner_id, request_id, for_update=for_update)
        if request is None:
            real_owner = self.repo.request_owner_unscoped(request_id)
            if real_owner is not None:
                self._record_denial(
                    LogEvent(
                        owner_id=real_owner,
                        action=action,
                        decision="denied",
                        reason=ConsentRequestNotFound.code,
                        actor_kind="owner",
                        actor_id=str(actor.account_id),
                    )
                )
            raise ConsentRequestNotFound()
        return request

    def describe(self, actor: OwnerActor, request_id: uuid.UUID) -> ConsentSummary:
        request = self._owner_request(actor, request_id, "consent.read")
        self._lapse(request)
        grant = self.repo.grant_for_request(request.id)
        return ConsentSummary(
            request=self._describe(request, with_preview=True),
            grant=self._grant_out(grant) if grant else None,
        )

    def decide(self, actor: OwnerActor, request_id: uuid.UUID, body: DecisionIn) -> ConsentSummary:
        request = self._owner_request(actor, request_id, "consent.decide", for_update=True)
        self._lapse(request)
        if request.status == RequestStatus.lapsed:
            raise RequestLapsed()
        if request.status != RequestStatus.pending:
            raise RequestNotPending()
        now = self.clock.now()
        request.decided_at = now
        request.decided_by = actor.account_id
        grant: Grant | None = None
        if body.decision == "deny":
            if body.document_ids:
                raise InvalidDecision(
                    "Khi từ chối không chọn giấy tờ.", "A refusal takes no documents."
                )
            request.status = RequestStatus.denied
        else:
            grant = self._grant(request, body.document_ids, actor, now)
        self.session.flush()
        self.log.append(
            LogEvent(
                owner_id=actor.owner_id,
                action="consent.decide",
                decision="allowed",
                agency_id=request.agency_id,
                grant_id=grant.id if grant else None,
                purpose=request.purpose,
                **actor.log_fields(),  # type: ignore[arg-type]
            )
        )
        self._webhook(
            request.agency_id,
            "consent.decided",
            {
                "request_id": str(request.id),
                "status": request.status,
                "grant_id": str(grant.id) if grant else None,
            },
        )
        return ConsentSummary(
            request=self._describe(request, with_preview=False),
            grant=self._grant_out(grant) if grant else None,
        )

    def _grant(
        self,
        request: ConsentRequest,
        chosen: list[uuid.UUID] | None,
        actor: OwnerActor,
        now: dt.datetime,
    ) -> Grant:
        preview = self._preview(request)
        offered: dict[uuid.UUID, DocumentRef] = {}
        best: list[DocumentRef] = []
        for _item, matches in preview:
            for ref in matches:
                offered[ref.document_id] = ref
            if matches:
                best.append(matches[0])
        if chosen is None:
            selected = list({ref.document_id: ref for ref in best}.values())
        else:
            unknown = [str(d) for d in chosen if d not in offered]
            if unknown:
                raise InvalidDecision(
                    "Chỉ được chọn giấy tờ có trong bản xem trước.",
                    "Only documents from the preview can be shared.",
                    extra={"document_ids": unknown},
                )
            selected = [offered[d] for d in dict.fromkeys(chosen)]
        if not selected:
            raise InvalidDecision(
                "Không có giấy tờ nào để chia sẻ; hãy từ chối hoặc bổ sung giấy tờ.",
                "Nothing to share: refuse, or add the papers first.",
            )
        covered_types = {ref.document_type for ref in selected}
        covered_ids = {ref.document_id for ref in selected}
        complete = all(
            not item.required
            or (
                item.document_id in covered_ids
                if item.document_id
                else item.document_type in covered_types
            )
            for item, _matches in preview
        )
        request.status = RequestStatus.granted if complete else RequestStatus.partially_granted
        valid_until = (
            request.access_until
            if request.access_mode == AccessMode.repeated
            else now + ONCE_WINDOW
        )
        assert valid_until is not None
        max_uses = request.max_uses if request.access_mode == AccessMode.repeated else len(selected)
        grant_id = uuid.uuid4()
        agency = self._agency(request.agency_id)
        claims = {
            "iss": self.issuer,
            "jti": str(grant_id),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(valid_until.timestamp()),
            "sub": pseudonym(request.agency_id, request.subject_id),
            "request": str(request.id),
            "agency": {"id": str(agency.id), "code": agency.code, "name": agency.name_vi},
            "documents": [
                {
                    "id": str(r.document_id),
                    "version": r.version,
                    "sha256": r.sha256,
                    "type": r.document_type,
                }
                for r in selected
            ],
            "purpose": request.purpose,
            "procedure": request.procedure_code,
            "dossier": request.dossier_ref,
            "access_mode": request.access_mode,
            "max_uses": max_uses,
            "retention_days": request.retention_days,
            "window": {"from": now.isoformat(), "until": valid_until.isoformat()},
        }
        grant = Grant(
            id=grant_id,
            request_id=request.id,
            agency_id=request.agency_id,
            subject_id=request.subject_id,
            subject_pseudonym=claims["sub"],
            access_mode=request.access_mode,
            max_uses=max_uses,
            uses=0,
            valid_from=now,
            valid_until=valid_until,
            retention_days=request.retention_days,
            artefact=self.signer.sign(claims, typ=ARTEFACT_TYPE),
            created_at=now,
            decided_by=actor.account_id,
        )
        self.repo.add(grant)
        self.session.flush()
        for ref in selected:
            self.repo.add(
                GrantItem(
                    grant_id=grant.id,
                    document_id=ref.document_id,
                    version=ref.version,
                    sha256=ref.sha256,
                    document_type=ref.document_type,
                )
            )
        self.session.flush()
        return grant

    def revoke(self, actor: OwnerActor, grant_id: uuid.UUID) -> GrantOut:
        now = self.clock.now()
        if not self.repo.revoke(grant_id, actor.owner_id, now):
            grant = self.repo.grant_for_owner(actor.owner_id, grant_id)
            if grant is None:
                raise GrantNotFound()
            return self._grant_out(grant)  # already revoked: nothing changes
        grant = self.repo.grant_for_owner(actor.owner_id, grant_id)
        assert grant is not None
        self.session.refresh(grant)
        self.log.append(
            LogEvent(
                owner_id=actor.owner_id,
                action="consent.revoke",
                decision="allowed",
                agency_id=grant.agency_id,
                grant_id=grant.id,
                **actor.log_fields(),  # type: ignore[arg-type]
            )
        )
        self._webhook(grant.agency_id, "grant.revoked", {"grant_id": str(grant.id)})
        return self._grant_out(grant)

    def grant_for_owner(self, actor: OwnerActor, grant_id: uuid.UUID) -> GrantOut:
        grant = self.repo.grant_for_owner(actor.owner_id, grant_id)
        if grant is None:
            raise GrantNotFound()
        return self._grant_out(grant)

    def receipt(self, actor: OwnerActor, grant_id: uuid.UUID) -> Receipt:
        grant = self.repo.grant_for_owner(actor.owner_id, grant_id)
        if grant is None:
            raise GrantNotFound()
        request = self.repo.request_for_owner(actor.owner_id, grant.request_id)
        assert request is not None
        agency = self._agency(grant.agency_id)
        items = self.repo.grant_items(grant.id)
        now = self.clock.now()
        return Receipt(
            schema_version="ISO/IEC TS 27560:2023 (shape); kho-receipt/1",
            record_id=str(grant.id),
            timestamp=grant.created_at,
            pii_principal={"id": grant.subject_pseudonym, "id_type": "pseudonym"},
            controller={"id": str(agency.id), "code": agency.code, "name": agency.name_vi},
            processing=[
                {
                    "purpose": request.purpose,
                    "legal_basis": "consent (Law 91/2025/QH15; Decree 356/2025/ND-CP)",
                    "procedure": request.procedure_code,
                    "dossier": request.dossier_ref,
                    "personal_data": [
                        {
                            "document_type": i.document_type,
                            "document_id": str(i.document_id),
                            "sha256": i.sha256,
                        }
                        for i in items
                    ],
                    "storage_duration_days": grant.retention_days,
                    "access": {
                        "mode": grant.access_mode,
                        "max_uses": grant.max_uses,
                        "valid_from": grant.valid_from.isoformat(),
                        "valid_until": grant.valid_until.isoformat(),
                    },
                }
            ],
            consent={
                "status": grant_status(grant, now),
                "given_at": grant.created_at.isoformat(),
                "withdrawn_at": grant.revoked_at.isoformat() if grant.revoked_at else None,
                "method": "explicit, electronic (Kho)",
                "verification": "JWS ES256; keys at " + self.issuer + "/.well-known/jwks.json",
            },
            artefact=grant.artefact,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _lapse(self, request: ConsentRequest) -> None:
        if request.status == RequestStatus.pending and request.lapses_at <= self.clock.now():
            request.status = RequestStatus.lapsed
            self.session.flush()

    def _agency(self, agency_id: uuid.UUID) -> Agency:
        agency = self.agencies.get(agency_id)
        assert agency is not None
        return agency

    def _preview(
        self, request: ConsentRequest
    ) -> list[tuple[ConsentRequestItem, list[DocumentRef]]]:
        today = self.clock.now().date()
        docs = [
            d
            for d in self.documents.current(request.subject_id)
            if d.expires_on is None or d.expires_on >= today
        ]
        result = []
        for item in self.repo.items(request.id):
            if item.document_id is not None:
                matches = [d for d in docs if d.document_id == item.document_id]
            else:
                matches = [d for d in docs if d.document_type == item.document_type]
            matches.sort(
                key=lambda d: (_ASSURANCE_RANK.get(d.assurance, 0), d.created_at), reverse=True
            )
            result.append((item, matches))
        return result

    def _describe(self, request: ConsentRequest, *, with_preview: bool = True) -> ConsentRequestOut:
        agency = self._agency(request.agency_id)
        items: list[PreviewItem] = []
        if with_preview and request.status == RequestStatus.pending:
            for item, matches in self._preview(request):
                items.append(
                    PreviewItem(
                        document_type=item.document_type,
                        document_id=item.document_id,
                        required=item.required,
                        matches=[
                            PreviewDocument(
                                document_id=m.document_id,
                                document_type=m.document_type,
                                title=m.title,
                                version=m.version,
                                sha256=m.sha256,
                                size=m.size,
                                media_type=m.media_type,
                                assurance=m.assurance,
                                expires_on=m.expires_on,
                            )
                            for m in matches
                        ],
                    )
                )
        else:
            items = [
                PreviewItem(
                    document_type=i.document_type,
                    document_id=i.document_id,
                    required=i.required,
                    matches=[],
                )
                for i in self.repo.items(request.id)
            ]
        grant = self.repo.grant_for_request(request.id)
        return ConsentRequestOut(
            id=request.id,
            agency_id=request.agency_id,
            agency_code=agency.code,
            agency_name_vi=agency.name_vi,
            subject_id=request.subject_id,
            purpose=request.purpose,
            procedure_code=request.procedure_code,
            dossier_ref=request.dossier_ref,
            access_mode=request.access_mode,
            max_uses=request.max_uses,
            access_until=request.access_until,
            retention_days=request.retention_days,
            lapses_at=request.lapses_at,
            status=request.status,
            created_at=request.created_at,
            decided_at=request.decided_at,
            items=items,
            grant_id=grant.id if grant else None,
        )

    def _grant_out(self, grant: Grant) -> GrantOut:
        return GrantOut(
            id=grant.id,
            request_id=grant.request_id,
            agency_id=grant.agency_id,
            status=grant_status(grant, self.clock.now()),
            access_mode=grant.access_mode,
            max_uses=grant.max_uses,
            uses=grant.uses,
            valid_from=grant.valid_from,
            valid_until=grant.valid_until,
            retention_days=grant.retention_days,
            revoked_at=grant.revoked_at,
            documents=[
                GrantDocument(
                    document_id=i.document_id,
                    document_type=i.document_type,
                    version=i.version,
                    sha256=i.sha256,
                    uses=i.uses,
                )
                for i in self.repo.grant_items(grant.id)
            ],
            artefact=grant.artefact,
        )

    def _notify(
        self, owner_id: uuid.UUID, kind: str, subject_vi: str, subject_en: str, data: dict[str, str]
    ) -> None:
        NotificationRepository(self.session).add(
            owner_id, kind, subject_vi, subject_en, data, now=self.clock.now()
        )

    def _webhook(self, agency_id: uuid.UUID, event: str, payload: dict[str, str | None]) -> None:
        now = self.clock.now()
        self.session.add(
            WebhookDelivery(
                agency_id=agency_id,
                event=event,
                payload={"event": event, "occurred_at": now.isoformat(), **payload},
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )


@dataclass(frozen=True)
class OfficialActor:
    official_id: uuid.UUID
    account_id: uuid.UUID
    agency_id: uuid.UUID
    roles: frozenset[str]


# Roles that may ask for a statutory access, and read under it once approved.
_STATUTORY_REQUESTER_ROLES = frozenset({"processor", "agency_admin"})


class StatutoryAccessService:
    """Access without consent, under a named legal provision, approved by a second official of
    the same agency, and always shown to the owner — at once, or when the stated date passes."""

    def __init__(
        self, session: Session, clock: Clock, *, documents: OwnerDocuments, denials: AuditWriter
    ) -> None:
        self.session = session
        self.clock = clock
        self.documents = documents
        self.accounts = AccountRepository(session)
        self.agencies = AgencyRepository(session)
        self.log = AccessLog(session, clock)
        self.denials = denials

    def request(self, official: OfficialActor, body: StatutoryAccessIn) -> StatutoryAccessOut:
        if not official.roles & _STATUTORY_REQUESTER_ROLES:
            raise NotAnOfficial()
        citizen = self.accounts.citizen_by_personal_id(body.subject_personal_id)
        if citizen is None:
            raise SubjectNotFound()
        now = self.clock.now()
        if body.disclose_at is not None and body.disclose_at.tzinfo is None:
            raise InvalidConsentRequest(
                "disclose_at cần múi giờ.", "disclose_at needs a time zone."
            )
        access = StatutoryAccess(
            id=uuid.uuid4(),
            agency_id=official.agency_id,
            subject_id=citizen.account_id,
            legal_reference=body.legal_reference,
            purpose=body.purpose,
            requested_by=official.official_id,
            status=StatutoryStatus.awaiting_approval,
            valid_until=now + dt.timedelta(days=body.valid_days),
            disclose_at=body.disclose_at,
            created_at=now,
        )
        self.session.add(access)
        self.session.flush()
        for document_id in dict.fromkeys(body.document_ids):
            self.session.add(StatutoryAccessItem(access_id=access.id, document_id=document_id))
        self.session.flush()
        return self._out(access)

    def _for_agency(self, official: OfficialActor, access_id: uuid.UUID) -> StatutoryAccess:
        access = self.session.get(StatutoryAccess, access_id)
        if access is None or access.agency_id != official.agency_id:
            raise StatutoryAccessNotFound()
        return access

    def approve(
        self, official: OfficialActor, access_id: uuid.UUID, approve: bool
    ) -> StatutoryAccessOut:
        access = self._for_agency(official, access_id)
        if "approver" not in official.roles:
            raise SecondApproverRequired()
        if access.requested_by == official.official_id:
            raise SecondApproverRequired()
        if access.status != StatutoryStatus.awaiting_approval:
            raise RequestNotPending()
        now = self.clock.now()
        access.status = StatutoryStatus.approved if approve else StatutoryStatus.rejected
        access.approved_by = official.official_id
        access.decided_at = now
        self.session.flush()
        if approve:
            agency = self.agencies.get(access.agency_id)
            assert agency is not None
            visible = access.disclose_at or now
            NotificationRepository(self.session).add(
                access.subject_id,
                "statutory.approved",
                f"{agency.name_vi} được phép truy cập giấy tờ của bạn theo "
                f"{access.legal_reference}",
                f"{agency.name_en or agency.name_vi} may access your papers under "
                f"{access.legal_reference}",
                {"statutory_access_id": str(access.id)},
                now=now,
                visible_from=visible,
            )
        return self._out(access)

    def authorize_fetch(
        self, official: OfficialActor, access_id: uuid.UUID, document_id: uuid.UUID
    ) -> ReadCapability:
        access = self._for_agency(official, access_id)
        now = self.clock.now()
        covered = self.session.scalar(
            select(StatutoryAccessItem.id).where(
                StatutoryAccessItem.access_id == access.id,
                StatutoryAccessItem.document_id == document_id,
            )
        )
        ref = next(
            (d for d in self.documents.current(access.subject_id) if d.document_id == document_id),
            None,
        )
        version = ref.version if ref else None
        event = LogEvent(
            owner_id=access.subject_id,
            actor_kind="official",
            actor_id=str(official.official_id),
            agency_id=official.agency_id,
            action="statutory.fetch",
            decision="allowed",
            statutory_id=access.id,
            document_id=document_id,
            document_version=version,
            purpose=access.legal_reference,
        )
        problem: type[KhoError] | None = None
        if access.requested_by != official.official_id or not (
            official.roles & _STATUTORY_REQUESTER_ROLES
        ):
            # Least privilege: the second official approved this official's request for a case,
            # not a read for every colleague; and a role taken away ends the access.
            problem = NotTheRequestingOfficial
        elif covered is None or ref is None:
            problem = DocumentNotInGrant
        elif access.status != StatutoryStatus.approved or access.valid_until <= now:
            problem = StatutoryAccessNotApproved
        if problem is not None:
            denied = LogEvent(**{**event.__dict__, "decision": "denied", "reason": problem.code})
            denials = self.denials
            after_rollback(self.session, lambda: denials.record(denied))
            raise problem()
        assert ref is not None
        _append_allowed(self.log, event)
        return ReadCapability(
            owner_id=access.subject_id,
            document_id=document_id,
            version=ref.version,
            sha256=ref.sha256,
            agency_id=official.agency_id,
            grant_id=None,
            statutory_id=access.id,
            mint=_MINT,
        )

    def for_owner(self, owner_id: uuid.UUID) -> list[StatutoryAccessOut]:
        """What the owner is shown: approved accesses whose disclosure time has come."""
        now = self.clock.now()
        rows = self.session.scalars(
            select(StatutoryAccess)
            .where(
                StatutoryAccess.subject_id == owner_id,
                StatutoryAccess.status == StatutoryStatus.approved,
            )
            .order_by(StatutoryAccess.created_at.desc())
        ).all()
        return [self._out(r) for r in rows if (r.disclose_at or r.created_at) <= now]

    def get(self, official: OfficialActor, access_id: uuid.UUID) -> StatutoryAccessOut:
        return self._out(self._for_agency(official, access_id))

    def _out(self, access: StatutoryAccess) -> StatutoryAccessOut:
        agency = self.agencies.get(access.agency_id)
        assert agency is not None
        items = self.session.scalars(
            select(StatutoryAccessItem.document_id).where(
                StatutoryAccessItem.access_id == access.id
            )
        ).all()
        return StatutoryAccessOut(
            id=access.id,
            agency_id=access.agency_id,
            agency_name_vi=agency.name_vi,
            subject_id=access.subject_id,
            legal_reference=access.legal_reference,
            purpose=access.purpose,
            status=access.status,
            document_ids=list(items),
            valid_until=access.valid_until,
            disclose_at=access.disclose_at,
            created_at=access.created_at,
            decided_at=access.decided_at,
            requested_by=access.requested_by,
            approved_by=access.approved_by,
        )


WEBHOOK_TYPE = "kho-webhook+jwt"
WEBHOOK_MAX_ATTEMPTS = 8
WEBHOOK_FIRST_BACKOFF = dt.timedelta(seconds=10)
WEBHOOK_MAX_BACKOFF = dt.timedelta(hours=1)


def webhook_backoff(attempts: int) -> dt.timedelta:
    """10 s, 20 s, 40 s ... capped at one hour: bounded, and the total is under three hours."""
    delay: dt.timedelta = WEBHOOK_FIRST_BACKOFF * (2 ** max(0, attempts - 1))
    return min(delay, WEBHOOK_MAX_BACKOFF)


class WebhookPoster(Protocol):
    def post(self, url: str, body: str) -> int:
        """POST ``body`` (a compact JWS) and return the HTTP status; raise OSError on failure."""
        ...


@dataclass
class DispatchReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


class WebhookDispatcher:
    """Sends the outbox: each event a JWS signed with Kho's published keys, retried with bounded
    exponential back-off, given up after ``WEBHOOK_MAX_ATTEMPTS``. Safe to run in several
    processes at once (rows are claimed with SKIP LOCKED where the database has it)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        signer: JwsSigner,
        poster: WebhookPoster,
        issuer: str,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.signer = signer
        self.poster = poster
        self.issuer = issuer

    def run_once(self, batch: int = 50) -> DispatchReport:
        report = DispatchReport()
        with self.sessions() as session:
            now = self.clock.now()
            query = (
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.delivered_at.is_(None),
                    WebhookDelivery.failed_at.is_(None),
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            for delivery in session.scalars(query).all():
                endpoint = session.get(WebhookEndpoint, delivery.agency_id)
                if endpoint is None or not endpoint.active:
                    delivery.failed_at = now
                    delivery.last_error = "no active webhook endpoint"
                    report.failed += 1
                    continue
                body = self.signer.sign(
                    {
                        "iss": self.issuer,
                        "aud": str(delivery.agency_id),
                        "jti": str(delivery.id),
                        "iat": int(now.timestamp()),
                        "event": delivery.event,
                        "data": delivery.payload,
                    },
                    typ=WEBHOOK_TYPE,
                )
                delivery.attempts += 1
                try:
                    status = self.poster.post(endpoint.url, body)
                    error = None if 200 <= status < 300 else f"HTTP {status}"
                except OSError as exc:
                    error = type(exc).__name__
                if error is None:
                    delivery.delivered_at = now
                    delivery.last_error = None
                    report.delivered += 1
                elif delivery.attempts >= WEBHOOK_MAX_ATTEMPTS:
                    delivery.failed_at = now
                    delivery.last_error = error
                    report.failed += 1
                else:
                    delivery.next_attempt_at = now + webhook_backoff(delivery.attempts)
                    delivery.last_error = error
                    report.retried += 1
            session.commit()
        return report
