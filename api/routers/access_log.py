"""The access log over HTTP: owners read and prove their own entries; operators checkpoint and
verify the whole log.

Owner routes are scoped to the owner in the query itself: another owner's entries never
appear. The owner is the signed-in citizen, or the owner named in ``X-On-Behalf-Of`` when the
caller holds an active ``access_log:read`` delegation from them; a delegate's read is itself
an entry of the owner's log (written before the page is read, so it is on that page).
Operator routes need the ``kho:admin`` scope. The hash encoding, the Merkle tree and how to
check a proof offline are in ``docs/access-log.md``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field

from api.deps import AccessLogReader, ContainerDep, CurrentOperator, DbSession, DelegateLog
from consent.audit import AccessLog, entry_json, withheld_json
from consent.repository import undisclosed_statutory_accesses
from consent.service import DelegateAction
from sso.keys import ProviderJwsSigner

router = APIRouter(tags=["access log"])

MAX_PAGE = 200
# seq is a 32-bit integer column: a larger after_seq was a 500 on PostgreSQL (out of range).
MAX_SEQ = 2**31 - 1

_OWNER: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"},
    403: {
        "description": "X-On-Behalf-Of names an owner who gave the caller no active "
        "access_log:read delegation"
    },
}
_OPERATOR: dict[int | str, dict[str, Any]] = {
    401: {"description": "No operator token"},
    403: {"description": "The token lacks the kho:admin scope"},
}


def get_access_log(container: ContainerDep, session: DbSession) -> AccessLog:
    return AccessLog(session, container.clock, ProviderJwsSigner(container.signing_keys))


Log = Annotated[AccessLog, Depends(get_access_log)]


class AccessLogEntryOut(BaseModel):
    """One decision about the owner's data, with its place in the owner's hash chain.

    An access under a legal provision whose disclosure date has not come is ``withheld``: only
    its seq and hashes are shown (the chain still verifies) until ``withheld_until``."""

    id: int
    owner_id: uuid.UUID
    seq: int = Field(description="Position in the owner's chain, from 1, without gaps")
    withheld: bool = False
    withheld_until: dt.datetime | None = None
    occurred_at: dt.datetime | None = None
    occurred_at_us: int | None = Field(
        default=None,
        description="occurred_at as microseconds since 1970-01-01T00:00:00Z: the hashed value",
    )
    actor_kind: str | None = Field(default=None, examples=["agency"])
    actor_id: str | None = Field(default=None, examples=["client-so-tu-phap"])
    on_behalf_of: str | None = None
    agency_id: uuid.UUID | None = None
    action: str | None = Field(default=None, examples=["document.fetch"])
    decision: str | None = Field(default=None, examples=["allowed"])
    reason: str | None = Field(default=None, description="Why it was denied (a stable code)")
    grant_id: uuid.UUID | None = None
    statutory_id: uuid.UUID | None = None
    document_id: uuid.UUID | None = None
    document_version: int | None = None
    purpose: str | None = None
    prev_hash: str = Field(description="Hex SHA-256 of the previous entry (zeros for seq 1)")
    entry_hash: str = Field(description="Hex SHA-256(prev_hash || encoding of this entry)")


class AccessLogPage(BaseModel):
    items: list[AccessLogEntryOut]
    next_after_seq: int | None = Field(
        description="Pass as after_seq for the next page; null when this page is the last"
    )


class CheckpointOut(BaseModel):
    id: int
    created_at: dt.datetime
    tree_size: int = Field(description="How many owners' chain heads the Merkle tree holds")
    root_hash: str = Field(description="Hex RFC 9162 Merkle tree hash over the heads")
    signature: str = Field(
        description="Compact JWS (ES256, typ kho-log-checkpoint+jwt), verifiable with "
        "/.well-known/jwks.json"
    )


class InclusionProofOut(BaseModel):
    """The owner's chain as of the latest checkpoint, and its leaf's place in the signed
    tree; check it with the JWKS alone (docs/access-log.md, "Checking a proof")."""

    owner_id: uuid.UUID
    head_seq: int
    head_hash: str
    entry_hashes: list[str]
    leaf_index: int
    tree_size: int
    audit_path: list[str]
    checkpoint: CheckpointOut
    entries: list[AccessLogEntryOut]


class VerifyReportOut(BaseModel):
    ok: bool
    entries_checked: int
    owners_checked: int
    checkpoints_checked: int
    failures: int
    first_failure: str | None = Field(
        description="The first thing that does not fit: owner, seq, entry id, what is wrong"
    )
    problem: str | None = Field(
        default=None, examples=["hash_mismatch"], description="Stable code of first_failure"
    )
    seconds: float


def _shown(entry: Any, hidden: dict[uuid.UUID, dt.datetime]) -> dict[str, Any]:
    if entry.statutory_id is not None and entry.statutory_id in hidden:
        return withheld_json(entry, hidden[entry.statutory_id])
    return entry_json(entry)


@router.get(
    "/v1/access-log",
    summary="The signed-in owner's access log, oldest first, with each entry's chain hashes",
    responses=_OWNER,
)
def read_access_log(
    actor: AccessLogReader,
    log: Log,
    delegate_log: DelegateLog,
    session: DbSession,
    container: ContainerDep,
    after_seq: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="Entries after this seq")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> AccessLogPage:
    delegate_log.record(actor, DelegateAction.access_log)
    entries = log.entries(actor.owner_id, after_seq=after_seq, limit=limit)
    hidden = undisclosed_statutory_accesses(session, actor.owner_id, container.clock.now())
    return AccessLogPage(
        items=[AccessLogEntryOut.model_validate(_shown(e, hidden)) for e in entries],
        next_after_seq=entries[-1].seq if len(entries) == limit else None,
    )


@router.get(
    "/v1/access-log/proof",
    summary="Proof that the owner's entries are those of the latest signed checkpoint",
    responses={
        **_OWNER,
        404: {
            "description": "No checkpoint covers the owner's log yet (access_log_not_checkpointed)"
        },
    },
)
def read_access_log_proof(
    actor: AccessLogReader,
    log: Log,
    delegate_log: DelegateLog,
    session: DbSession,
    container: ContainerDep,
) -> InclusionProofOut:
    delegate_log.record(actor, DelegateAction.access_log_proof)
    proof = log.proof(actor.owner_id)
    entries = log.entries(actor.owner_id, limit=proof.head_seq) if proof.head_seq else []
    hidden = undisclosed_statutory_accesses(session, actor.owner_id, container.clock.now())
    return InclusionProofOut.model_validate(
        {**proof.to_json(), "entries": [_shown(e, hidden) for e in entries]}
    )


@router.post(
    "/v1/admin/access-log/checkpoints",
    status_code=status.HTTP_201_CREATED,
    summary="Sign a checkpoint over every owner's chain head",
    responses={
        **_OPERATOR,
        409: {
            "description": "The chains contradict the previous checkpoint: Kho refuses to sign "
            "(access_log_inconsistent)"
        },
    },
)
def create_checkpoint(
    operator: CurrentOperator, log: Log, container: ContainerDep
) -> CheckpointOut:
    checkpoint = log.checkpoint(ProviderJwsSigner(container.signing_keys))
    return CheckpointOut(
        id=checkpoint.id,
        created_at=checkpoint.created_at,
        tree_size=checkpoint.tree_size,
        root_hash=checkpoint.root_hash.hex(),
        signature=checkpoint.signature,
    )


@router.get(
    "/v1/admin/access-log/verify",
    summary="Verify every chain, head and checkpoint (runs in the request: use `kho audit "
    "verify` for large logs)",
    responses=_OPERATOR,
)
def verify_access_log(operator: CurrentOperator, log: Log) -> VerifyReportOut:
    report = log.verify_all()
    return VerifyReportOut(
        ok=report.ok,
        entries_checked=report.entries_checked,
        owners_checked=report.owners_checked,
        checkpoints_checked=report.checkpoints_checked,
        failures=report.failures,
        first_failure=report.first_failure,
        problem=None if report.failure is None else report.failure.problem,
        seconds=report.seconds,
    )
