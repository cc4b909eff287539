"""The signed-in owner's delegations: those they gave and those they received.

A delegation of someone else is "not found", never "forbidden".
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status

from api.deps import ContainerDep, CurrentOwner, DbSession
from identity.schemas import DelegationCreate, DelegationList, DelegationOut
from identity.service import DelegationService

router = APIRouter(prefix="/v1/delegations", tags=["delegations"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Not signed in"}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    404: {"description": "No such delegation given or received by me (delegation_not_found)"},
}


def get_delegation_service(container: ContainerDep, session: DbSession) -> DelegationService:
    return DelegationService(session, container.clock)


Delegations = Annotated[DelegationService, Depends(get_delegation_service)]


@router.get("", summary="My delegations: those I gave and those I received", responses=_AUTH)
def list_delegations(owner: CurrentOwner, delegations: Delegations) -> DelegationList:
    given, received = delegations.list_for(owner.account_id)
    return DelegationList(
        given=[delegations.describe(d) for d in given],
        received=[delegations.describe(d) for d in received],
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Let another citizen act on my store, within a scope and for a bounded time",
    responses={
        **_AUTH,
        404: {"description": "No enrolled citizen has that personal ID (citizen_not_found)"},
        422: {"description": "The delegation breaks a rule (invalid_delegation; see detail)"},
    },
)
def create_delegation(
    body: DelegationCreate, owner: CurrentOwner, delegations: Delegations, response: Response
) -> DelegationOut:
    delegation = delegations.create_for_personal_id(
        owner.account_id,
        body.delegate_personal_id,
        scope=body.scope,
        kind=body.kind,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
    )
    response.headers["Location"] = f"/v1/delegations/{delegation.id}"
    return delegations.describe(delegation)


@router.get("/{delegation_id}", summary="One delegation I gave or received", responses=_NOT_FOUND)
def get_delegation(
    delegation_id: uuid.UUID, owner: CurrentOwner, delegations: Delegations
) -> DelegationOut:
    return delegations.describe(delegations.get(owner.account_id, delegation_id))


@router.post(
    "/{delegation_id}/revoke",
    summary="End a delegation now: the owner withdraws it, or the delegate gives it up",
    responses=_NOT_FOUND,
)
def revoke_delegation(
    delegation_id: uuid.UUID, owner: CurrentOwner, delegations: Delegations
) -> DelegationOut:
    return delegations.describe(delegations.revoke(owner.account_id, delegation_id))
