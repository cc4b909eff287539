"""The owner's side of consent: inbox, preview, decision, revocation, receipts."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ConsentActor, Consents
from consent.models import RequestStatus
from consent.schemas import ConsentPage, ConsentSummary, DecisionIn, GrantOut, Receipt

router = APIRouter(prefix="/v1", tags=["consents"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such request or grant for this owner"}
}


@router.get("/consents", summary="My inbox of agency requests and what I decided")
def inbox(
    actor: ConsentActor,
    consents: Consents,
    status: RequestStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> ConsentPage:
    return ConsentPage(items=consents.inbox(actor.owner_id, status, limit))


@router.get(
    "/consents/{request_id}",
    summary="One request, with a preview of exactly what would be shared",
    responses=_NOT_FOUND,
)
def request_detail(
    request_id: uuid.UUID, actor: ConsentActor, consents: Consents
) -> ConsentSummary:
    return consents.describe(actor, request_id)


@router.post(
    "/consents/{request_id}/decision",
    summary="Grant all or part, or refuse",
    responses={**_NOT_FOUND, 409: {"description": "Already decided, or lapsed"}},
)
def decide(
    request_id: uuid.UUID, body: DecisionIn, actor: ConsentActor, consents: Consents
) -> ConsentSummary:
    return consents.decide(actor, request_id, body)


@router.get("/grants/{grant_id}", summary="One of my grants", responses=_NOT_FOUND)
def grant(grant_id: uuid.UUID, actor: ConsentActor, consents: Consents) -> GrantOut:
    return consents.grant_for_owner(actor, grant_id)


@router.post(
    "/grants/{grant_id}/revoke",
    summary="Withdraw consent: effective from the agency's next fetch",
    responses=_NOT_FOUND,
)
def revoke(grant_id: uuid.UUID, actor: ConsentActor, consents: Consents) -> GrantOut:
    return consents.revoke(actor, grant_id)


@router.get(
    "/grants/{grant_id}/receipt",
    summary="A consent receipt shaped after ISO/IEC TS 27560",
    responses=_NOT_FOUND,
)
def receipt(grant_id: uuid.UUID, actor: ConsentActor, consents: Consents) -> Receipt:
    return consents.receipt(actor, grant_id)
