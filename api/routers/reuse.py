"""Reuse plans: which papers in the store meet a procedure's requirements.

The owner sees the papers themselves; an agency sees only whether each requirement can be met
from the store, and only while it holds an active grant or a pending request of that owner.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ContainerDep, CurrentAgency, CurrentOwner
from api.routers.catalogue import Planner, ProcedureCode
from consent.audit import AuditWriter
from vault.catalogue import PROCEDURE_CODE_PATTERN
from vault.reuse import AgencyReusePlan, ReusePlan

router = APIRouter(tags=["reuse"])


@router.get(
    "/v1/procedures/{code}/reuse-plan",
    summary="Which of my papers meets each requirement of a procedure, and why not",
    responses={404: {"description": "procedure_not_found"}},
)
def my_reuse_plan(code: ProcedureCode, owner: CurrentOwner, planner: Planner) -> ReusePlan:
    return planner.plan(owner.account_id, code)


@router.get(
    "/v1/agency/owners/{personal_id}/reuse-plan",
    summary="Whether an owner's store can serve a procedure (no document ids or titles)",
    description="Only while this agency holds an active grant or a pending consent request of "
    "the owner; the read (allowed or refused) is written to the owner's access log.",
    responses={
        404: {
            "description": "reuse_plan_not_available (no grant or pending request, or no such "
            "owner), or procedure_not_found"
        }
    },
)
def agency_reuse_plan(
    personal_id: Annotated[str, Path(pattern=r"^[0-9]{12}$")],
    procedure: Annotated[str, Query(max_length=64, pattern=PROCEDURE_CODE_PATTERN)],
    agency: CurrentAgency,
    planner: Planner,
    container: ContainerDep,
) -> AgencyReusePlan:
    return planner.plan_for_agency(
        agency,
        personal_id,
        procedure,
        denials=AuditWriter(container.sessions, container.clock),
    )
