"""Reuse plans: for an owner and a procedure, which paper in the store meets each requirement,
and why none does where none does (Decision 55/2024, Art. 12.7: papers are provided once).

A plan costs two queries whatever the size of the store: the procedure with its requirements
(and their types), then the owner's papers of just those types joined with their current
version. Everything else is arithmetic on dates.

The rules, for a paper's *current* committed version:

* **expired** — its ``expires_on`` is before today; a paper without a printed expiry date whose
  type has ``validity_months`` (a judicial record: 6) expires that many months after its
  reference date, the last valid day being the day before.
* **too_old** — the requirement has ``max_age_days`` and more days than that have passed since
  its reference date.
* **assurance_too_low** — the version's assurance is below the requirement's minimum
  (``self_declared < digitised < issued``).
* **revoked** — it is an issued result that its issuing agency has revoked.

The reference date is the paper's ``issued_on`` when the owner or issuer gave it, else the day
the version was stored (``committed_at``): a scan says nothing about the age of the paper, but
an upload is the latest the paper can have been issued. "Today" is the date in Viet Nam
(UTC+7), the calendar every expiry date is written in.

Among the papers that meet a requirement the strongest wins (higher assurance), then the newest
(later reference date, then later stored). When none meets it, the plan shows the closest paper
(fewest failed rules, then the same order) and its first failed rule as the status, in the order
revoked, expired, too_old, assurance_too_low; ``missing`` means the owner has no paper of that
type with content at all.
"""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from common.clock import Clock
from common.errors import NotFound
from consent.audit import AccessLog, AuditWriter, LogEvent
from consent.models import ConsentRequest, Grant, GrantItem, RequestStatus
from consent.service import AgencyActor
from identity.models import Agency
from identity.repository import AccountRepository
from storage.db import after_rollback
from vault.catalogue import ProcedureNotFound
from vault.models import (
    Assurance,
    DigitisationRecord,
    Document,
    DocumentType,
    DocumentVersion,
    IssuedRecord,
    Procedure,
    ProcedureRequirement,
    ReRequest,
    VersionStatus,
)

VIET_NAM = dt.timezone(dt.timedelta(hours=7), "ICT")


class ReusePlanNotAvailable(NotFound):
    """No plan for this agency: it holds no active grant and no pending request of the owner
    (or there is no such owner; the two are not told apart)."""

    code = "reuse_plan_not_available"
    title_vi = "Không có kế hoạch tái sử dụng cho chủ thể này"
    title_en = "No reuse plan available for this subject"


class RequirementStatus(StrEnum):
    met = "met"
    missing = "missing"
    revoked = "revoked"
    expired = "expired"
    too_old = "too_old"
    assurance_too_low = "assurance_too_low"


# The order in which a failing paper's reasons are reported: the first is its status.
_FAILURE_ORDER = (
    RequirementStatus.revoked,
    RequirementStatus.expired,
    RequirementStatus.too_old,
    RequirementStatus.assurance_too_low,
)


# -- shapes ------------------------------------------------------------------------------------


class PlannedDocument(BaseModel):
    document_id: uuid.UUID
    title: str
    version: int
    sha256: str
    assurance: Assurance
    issued_on: dt.date | None
    expires_on: dt.date | None = Field(
        description="The printed expiry date, or the one derived from the type's validity"
    )
    stored_at: dt.datetime


class PlannedRequirement(BaseModel):
    document_type: str
    name_vi: str
    name_en: str
    required: bool
    min_assurance: Assurance
    max_age_days: int | None
    status: RequirementStatus
    reasons: list[RequirementStatus] = Field(
        description="Every rule the shown paper fails (empty when met or missing)"
    )
    document: PlannedDocument | None = Field(
        default=None, description="The paper that meets the requirement (status met)"
    )
    best_candidate: PlannedDocument | None = Field(
        default=None, description="The closest paper when none meets the requirement"
    )
    candidates: int = Field(description="Papers of this type with content that were considered")


class ReusePlan(BaseModel):
    procedure_code: str
    name_vi: str
    name_en: str
    level: str
    evaluated_on: dt.date
    complete: bool = Field(description="Every required paper is met from the store")
    met: int
    total: int
    requirements: list[PlannedRequirement]


class AgencyPlannedRequirement(BaseModel):
    """What an agency learns: whether the store can serve the requirement, not which paper."""

    document_type: str
    name_vi: str
    name_en: str
    required: bool
    min_assurance: Assurance
    max_age_days: int | None
    status: RequirementStatus
    reasons: list[RequirementStatus]
    available_assurance: Assurance | None = Field(
        description="Assurance of the paper that meets it, or of the closest one"
    )


class AgencyReusePlan(BaseModel):
    procedure_code: str
    name_vi: str
    name_en: str
    evaluated_on: dt.date
    complete: bool
    met: int
    total: int
    requirements: list[AgencyPlannedRequirement]


class ReuseCounts(BaseModel):
    shared_from_store: int = Field(
        description="Papers granted from the store under requests in the period"
    )
    asked_again: int = Field(description="Re-requests for papers Kho already held")
    reuse_rate: float | None = Field(
        description="shared_from_store / (shared_from_store + asked_again); null when both are 0"
    )


class ProcedureReuse(ReuseCounts):
    procedure_code: str
    name_vi: str | None
    consent_requests: int


class AgencyReuse(ReuseCounts):
    agency_id: uuid.UUID
    agency_code: str | None
    name_vi: str | None
    consent_requests: int
    digitised_at_desk: int = Field(
        description="Versions the agency's desks digitised in the period (not in the rate: "
        "Kho does not record which request, if any, a scan was made for)"
    )


class ReuseStatistics(BaseModel):
    start: dt.datetime
    end: dt.datetime
    definition: str
    overall: ReuseCounts
    procedures: list[ProcedureReuse]
    agencies: list[AgencyReuse]


STATISTICS_DEFINITION = (
    "Reuse rate = papers shared from the store / (papers shared from the store + papers asked "
    "for again). Shared from the store: items of grants created in the period (each item is one "
    "paper the owner let the agency take from Kho instead of providing it again), counted by "
    "the procedure of the grant's request and by agency. Asked for again: re-requests recorded "
    "in the period (an agency asked the owner again for a paper Kho already held at sufficient "
    "assurance). Uploads and desk digitisations are not in the rate: Kho does not record which "
    "request or procedure they were made for."
)


# -- the rules ---------------------------------------------------------------------------------


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months, clamped to the end of a shorter month (31 Jan + 1 = 28/29
    Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Requirement:
    document_type: str
    name_vi: str
    name_en: str
    min_assurance: Assurance
    required: bool
    max_age_days: int | None
    validity_months: int | None


@dataclass(frozen=True)
class Candidate:
    document_id: uuid.UUID
    type_code: str
    title: str
    issued_on: dt.date | None
    expires_on: dt.date | None
    version: int
    sha256: str
    assurance: Assurance
    committed_at: dt.datetime
    revoked: bool

    @property
    def reference_date(self) -> dt.date:
        return self.issued_on or self.committed_at.astimezone(VIET_NAM).date()

    def effective_expiry(self, validity_months: int | None) -> dt.date | None:
        if self.expires_on is not None:
            return self.expires_on
        if validity_months:
            return add_months(self.reference_date, validity_months) - dt.timedelta(days=1)
        return None

    def failures(self, requirement: Requirement, today: dt.date) -> list[RequirementStatus]:
        failed = []
        if self.revoked:
            failed.append(RequirementStatus.revoked)
        expiry = self.effective_expiry(requirement.validity_months)
        if expiry is not None and expiry < today:
            failed.append(RequirementStatus.expired)
        if (
            requirement.max_age_days is not None
            and (today - self.reference_date).days > requirement.max_age_days
        ):
            failed.append(RequirementStatus.too_old)
        if self.assurance.rank < requirement.min_assurance.rank:
            failed.append(RequirementStatus.assurance_too_low)
        return failed

    def preference(self) -> tuple[int, dt.date, dt.datetime, str]:
        """Larger is better: stronger, then newer, then stored later (then a stable tie-break)."""
        return (self.assurance.rank, self.reference_date, self.committed_at, str(self.document_id))

    def planned(self, requirement: Requirement) -> PlannedDocument:
        return PlannedDocument(
            document_id=self.document_id,
            title=self.title,
            version=self.version,
            sha256=self.sha256,
            assurance=self.assurance,
            issued_on=self.issued_on,
            expires_on=self.effective_expiry(requirement.validity_months),
            stored_at=self.committed_at,
        )


def assess(
    requirement: Requirement, candidates: Sequence[Candidate], today: dt.date
) -> PlannedRequirement:
    """The verdict on one requirement given the owner's papers of its type."""
    base: dict[str, Any] = {
        "document_type": requirement.document_type,
        "name_vi": requirement.name_vi,
        "name_en": requirement.name_en,
        "required": requirement.required,
        "min_assurance": requirement.min_assurance,
        "max_age_days": requirement.max_age_days,
        "candidates": len(candidates),
    }
    if not candidates:
        return PlannedRequirement(**base, status=RequirementStatus.missing, reasons=[])
    judged = [(c.failures(requirement, today), c) for c in candidates]
    passing = [c for failed, c in judged if not failed]
    if passing:
        best = max(passing, key=Candidate.preference)
        return PlannedRequirement(
            **base, status=RequirementStatus.met, reasons=[], document=best.planned(requirement)
        )
    failed, closest = max(judged, key=lambda item: (-len(item[0]), item[1].preference()))
    reasons = [reason for reason in _FAILURE_ORDER if reason in failed]
    return PlannedRequirement(
        **base,
        status=reasons[0],
        reasons=reasons,
        best_candidate=closest.planned(requirement),
    )


# -- queries -----------------------------------------------------------------------------------


class ReuseRepository:
    """The queries of reuse planning and statistics."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def procedure_with_requirements(self, code: str) -> tuple[Procedure, list[Requirement]] | None:
        """One query: the active procedure, its requirements and their types' names."""
        rows = self.session.execute(
            select(
                Procedure,
                ProcedureRequirement.document_type,
                ProcedureRequirement.min_assurance,
                ProcedureRequirement.required,
                ProcedureRequirement.max_age_days,
                DocumentType.name_vi,
                DocumentType.name_en,
                DocumentType.validity_months,
            )
            .select_from(Procedure)
            .outerjoin(ProcedureRequirement, ProcedureRequirement.procedure_code == Procedure.code)
            .outerjoin(DocumentType, DocumentType.code == ProcedureRequirement.document_type)
            .where(Procedure.code == code, Procedure.active)
            .order_by(ProcedureRequirement.required.desc(), ProcedureRequirement.document_type)
        ).all()
        if not rows:
            return None
        requirements = [
            Requirement(
                document_type=row[1],
                name_vi=row[5],
                name_en=row[6],
                min_assurance=Assurance(row[2]),
                required=bool(row[3]),
                max_age_days=row[4],
                validity_months=row[7],
            )
            for row in rows
            if row[1] is not None
        ]
        return rows[0][0], requirements

    def candidates(self, owner_id: uuid.UUID, type_codes: Sequence[str]) -> list[Candidate]:
        """One query: the owner's live papers of these types at their current committed
        version, with whether an issued version was revoked."""
        if not type_codes:
            return []
        rows = self.session.execute(
            select(
                Document.id,
                Document.type_code,
                Document.title,
                Document.issued_on,
                Document.expires_on,
                DocumentVersion.version,
                DocumentVersion.sha256,
                DocumentVersion.assurance,
                DocumentVersion.committed_at,
                DocumentVersion.created_at,
                IssuedRecord.revoked_at,
            )
            .join(
                DocumentVersion,
                (DocumentVersion.document_id == Document.id)
                & (DocumentVersion.version == Document.current_version),
            )
            .outerjoin(IssuedRecord, IssuedRecord.version_id == DocumentVersion.id)
            .where(
                Document.owner_id == owner_id,
                Document.deleted_at.is_(None),
                Document.type_code.in_(type_codes),
                DocumentVersion.status == VersionStatus.committed,
                DocumentVersion.shredded_at.is_(None),
            )
        ).all()
        return [
            Candidate(
                document_id=doc_id,
                type_code=type_code,
                title=title,
                issued_on=issued_on,
                expires_on=expires_on,
                version=version,
                sha256=sha256 or "",
                assurance=Assurance(assurance),
                committed_at=committed or created,
                revoked=revoked_at is not None,
            )
            for (
                doc_id,
                type_code,
                title,
                issued_on,
                expires_on,
                version,
                sha256,
                assurance,
                committed,
                created,
                revoked_at,
            ) in rows
        ]

    def agency_may_plan(self, agency_id: uuid.UUID, owner_id: uuid.UUID, now: dt.datetime) -> bool:
        """Whether the agency holds a usable grant or a pending request for the owner."""
        usable_grant = (
            select(Grant.id)
            .where(
                Grant.agency_id == agency_id,
                Grant.subject_id == owner_id,
                Grant.revoked_at.is_(None),
                Grant.valid_from <= now,
                Grant.valid_until > now,
                Grant.uses < Grant.max_uses,
            )
            .exists()
        )
        pending_request = (
            select(ConsentRequest.id)
            .where(
                ConsentRequest.agency_id == agency_id,
                ConsentRequest.subject_id == owner_id,
                ConsentRequest.status == RequestStatus.pending,
                ConsentRequest.lapses_at > now,
            )
            .exists()
        )
        return bool(self.session.scalar(select(or_(usable_grant, pending_request))))

    def shared_counts(
        self, start: dt.datetime, end: dt.datetime
    ) -> list[tuple[str, uuid.UUID, int]]:
        rows = self.session.execute(
            select(ConsentRequest.procedure_code, Grant.agency_id, func.count(GrantItem.id))
            .select_from(GrantItem)
            .join(Grant, Grant.id == GrantItem.grant_id)
            .join(ConsentRequest, ConsentRequest.id == Grant.request_id)
            .where(Grant.created_at >= start, Grant.created_at < end)
            .group_by(ConsentRequest.procedure_code, Grant.agency_id)
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def re_request_counts(
        self, start: dt.datetime, end: dt.datetime
    ) -> list[tuple[str | None, uuid.UUID, int]]:
        rows = self.session.execute(
            select(ReRequest.procedure_code, ReRequest.agency_id, func.count(ReRequest.id))
            .where(ReRequest.created_at >= start, ReRequest.created_at < end)
            .group_by(ReRequest.procedure_code, ReRequest.agency_id)
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def request_counts(
        self, start: dt.datetime, end: dt.datetime
    ) -> list[tuple[str, uuid.UUID, int]]:
        rows = self.session.execute(
            select(
                ConsentRequest.procedure_code,
                ConsentRequest.agency_id,
                func.count(ConsentRequest.id),
            )
            .where(ConsentRequest.created_at >= start, ConsentRequest.created_at < end)
            .group_by(ConsentRequest.procedure_code, ConsentRequest.agency_id)
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def digitised_counts(self, start: dt.datetime, end: dt.datetime) -> list[tuple[uuid.UUID, int]]:
        rows = self.session.execute(
            select(DigitisationRecord.agency_id, func.count(DigitisationRecord.version_id))
            .where(DigitisationRecord.created_at >= start, DigitisationRecord.created_at < end)
            .group_by(DigitisationRecord.agency_id)
        )
        return [(r[0], r[1]) for r in rows]

    def agencies(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Agency]:
        if not ids:
            return {}
        return {a.id: a for a in self.session.scalars(select(Agency).where(Agency.id.in_(ids)))}

    def procedure_names(self, codes: Sequence[str]) -> dict[str, str]:
        if not codes:
            return {}
        rows = self.session.execute(
            select(Procedure.code, Procedure.name_vi).where(Procedure.code.in_(codes))
        )
        return {code: name for code, name in rows}


def _shown_assurance(requirement: PlannedRequirement) -> Assurance | None:
    shown = requirement.document or requirement.best_candidate
    return shown.assurance if shown else None


def _rate(shared: int, again: int) -> float | None:
    total = shared + again
    return round(shared / total, 4) if total else None


# -- the service -------------------------------------------------------------------------------


class ReusePlanner:
    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.repo = ReuseRepository(session)

    def today(self) -> dt.date:
        return self.clock.now().astimezone(VIET_NAM).date()

    def plan(self, owner_id: uuid.UUID, procedure_code: str) -> ReusePlan:
        """Which of the owner's papers meets each requirement of the procedure, and why not
        where none does (see the module's docstring for the rules). Two queries."""
        found = self.repo.procedure_with_requirements(procedure_code)
        if found is None:
            raise ProcedureNotFound(extra={"procedure_code": procedure_code})
        procedure, requirements = found
        by_type: dict[str, list[Candidate]] = {r.document_type: [] for r in requirements}
        for candidate in self.repo.candidates(owner_id, list(by_type)):
            by_type[candidate.type_code].append(candidate)
        today = self.today()
        planned = [assess(r, by_type[r.document_type], today) for r in requirements]
        met = sum(1 for p in planned if p.status is RequirementStatus.met)
        return ReusePlan(
            procedure_code=procedure.code,
            name_vi=procedure.name_vi,
            name_en=procedure.name_en,
            level=procedure.level,
            evaluated_on=today,
            complete=all(p.status is RequirementStatus.met for p in planned if p.required),
            met=met,
            total=len(planned),
            requirements=planned,
        )

    def plan_for_agency(
        self,
        agency: AgencyActor,
        personal_id: str,
        procedure_code: str,
        *,
        denials: AuditWriter,
    ) -> AgencyReusePlan:
        """The owner's plan as an agency may see it: only while the agency holds an active
        grant or a pending request of that owner, and without ids, titles or hashes (the
        agency learns what it can ask for, not what the owner keeps).

        Both outcomes are written to the owner's access log: an allowed read in this
        transaction, a refusal after the refused request has rolled back.
        """
        citizen = AccountRepository(self.session).citizen_by_personal_id(personal_id)
        now = self.clock.now()
        if citizen is None:
            raise ReusePlanNotAvailable()
        owner_id = citizen.account_id
        if not self.repo.agency_may_plan(agency.agency_id, owner_id, now):
            event = LogEvent(
                owner_id=owner_id,
                actor_kind="agency",
                actor_id=agency.client_id,
                agency_id=agency.agency_id,
                action="reuse_plan.read",
                decision="denied",
                reason=ReusePlanNotAvailable.code,
            )
            after_rollback(self.session, lambda: denials.record(event))
            raise ReusePlanNotAvailable()
        plan = self.plan(owner_id, procedure_code)
        AccessLog(self.session, self.clock).append(
            LogEvent(
                owner_id=owner_id,
                actor_kind="agency",
                actor_id=agency.client_id,
                agency_id=agency.agency_id,
                action="reuse_plan.read",
                decision="allowed",
                purpose=f"reuse plan for procedure {plan.procedure_code}",
            )
        )
        return AgencyReusePlan(
            procedure_code=plan.procedure_code,
            name_vi=plan.name_vi,
            name_en=plan.name_en,
            evaluated_on=plan.evaluated_on,
            complete=plan.complete,
            met=plan.met,
            total=plan.total,
            requirements=[
                AgencyPlannedRequirement(
                    document_type=r.document_type,
                    name_vi=r.name_vi,
                    name_en=r.name_en,
                    required=r.required,
                    min_assurance=r.min_assurance,
                    max_age_days=r.max_age_days,
                    status=r.status,
                    reasons=r.reasons,
                    available_assurance=_shown_assurance(r),
                )
                for r in plan.requirements
            ],
        )

    def statistics(self, start: dt.datetime, end: dt.datetime) -> ReuseStatistics:
        """Reuse per procedure and per agency over ``[start, end)``.

        A requirement is *met from the store* when the owner grants an agency a paper Kho
        already holds: every item of a grant created in the period counts once, under the
        procedure of the request it answers and the agency that asked. It is *provided anew*
        when the agency asked the owner again for a paper Kho already held (a
        :class:`~vault.models.ReRequest` recorded in the period). The rate is
        met / (met + provided anew), ``None`` with no data.

        Not counted, for want of data: papers uploaded or digitised at a desk *for* a request.
        Kho records who stored a version and, for a scan, which agency and official did it, but
        not which request or procedure it was for; desk digitisations are reported per agency
        beside the rate. Counting them needs a ``consent_request_id`` (or ``procedure_code``)
        on ``document_versions`` or ``digitisation_records``.
        """
        shared = self.repo.shared_counts(start, end)
        again = self.repo.re_request_counts(start, end)
        asked = self.repo.request_counts(start, end)
        digitised = {agency_id: n for agency_id, n in self.repo.digitised_counts(start, end)}

        per_procedure: dict[str, list[int]] = {}
        per_agency: dict[uuid.UUID, list[int]] = {}
        for code, agency_id, n in shared:
            per_procedure.setdefault(code, [0, 0, 0])[0] += n
            per_agency.setdefault(agency_id, [0, 0, 0])[0] += n
        for maybe_code, agency_id, n in again:
            code = maybe_code or "(none)"
            per_procedure.setdefault(code, [0, 0, 0])[1] += n
            per_agency.setdefault(agency_id, [0, 0, 0])[1] += n
        for code, agency_id, n in asked:
            per_procedure.setdefault(code, [0, 0, 0])[2] += n
            per_agency.setdefault(agency_id, [0, 0, 0])[2] += n
        for agency_id in digitised:
            per_agency.setdefault(agency_id, [0, 0, 0])

        names = self.repo.procedure_names(list(per_procedure))
        agencies = self.repo.agencies(list(per_agency))
        total_shared = sum(v[0] for v in per_procedure.values())
        total_again = sum(v[1] for v in per_procedure.values())
        return ReuseStatistics(
            start=start,
            end=end,
            definition=STATISTICS_DEFINITION,
            overall=ReuseCounts(
                shared_from_store=total_shared,
                asked_again=total_again,
                reuse_rate=_rate(total_shared, total_again),
            ),
            procedures=[
                ProcedureReuse(
                    procedure_code=code,
                    name_vi=names.get(code),
                    shared_from_store=s,
                    asked_again=a,
                    reuse_rate=_rate(s, a),
                    consent_requests=r,
                )
                for code, (s, a, r) in sorted(per_procedure.items())
            ],
            agencies=[
                AgencyReuse(
                    agency_id=agency_id,
                    agency_code=agencies[agency_id].code if agency_id in agencies else None,
                    name_vi=agencies[agency_id].name_vi if agency_id in agencies else None,
                    shared_from_store=s,
                    asked_again=a,
                    reuse_rate=_rate(s, a),
                    consent_requests=r,
                    digitised_at_desk=digitised.get(agency_id, 0),
                )
                for agency_id, (s, a, r) in sorted(
                    per_agency.items(), key=lambda item: str(item[0])
                )
            ],
        )
