"""Operator routes: agencies and their officials, organisations and their representatives.

Every route needs an operator token (scope ``kho:admin``): without a token 401, without the scope
403. The router checks it for every route, and each signature says so again.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status

from api.deps import ContainerDep, CurrentOperator, DbSession, get_operator
from identity.models import AgencyLevel
from identity.schemas import (
    AgencyCreate,
    AgencyList,
    AgencyOut,
    AgencyUpdate,
    OfficialCreate,
    OfficialList,
    OfficialOut,
    OfficialUpdate,
    OrganisationCreate,
    OrganisationOut,
    RepresentativeCreate,
    RepresentativeOut,
)
from identity.service import AgencyService, OrganisationService, agency_out, official_out

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(get_operator)])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "No operator token"},
    403: {"description": "The token lacks the kho:admin scope"},
}
_AGENCY_404: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    404: {"description": "No such agency (agency_not_found)"},
}
_ORGANISATION_404: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    404: {"description": "No such organisation, or no such citizen"},
}


def get_agency_service(container: ContainerDep, session: DbSession) -> AgencyService:
    return AgencyService(session, container.clock)


def get_organisation_service(container: ContainerDep, session: DbSession) -> OrganisationService:
    return OrganisationService(session, container.clock)


Agencies = Annotated[AgencyService, Depends(get_agency_service)]
Organisations = Annotated[OrganisationService, Depends(get_organisation_service)]


# -- agencies ----------------------------------------------------------------------------------


@router.post(
    "/agencies",
    status_code=status.HTTP_201_CREATED,
    summary="Register an agency (province, district or commune level)",
    responses={
        **_AUTH,
        409: {"description": "The code is taken (agency_code_taken)"},
        422: {"description": "Invalid fields, or a parent of the wrong level"},
    },
)
def create_agency(
    body: AgencyCreate, operator: CurrentOperator, agencies: Agencies, response: Response
) -> AgencyOut:
    agency = agencies.create(body)
    response.headers["Location"] = f"/v1/admin/agencies/{agency.id}"
    return agency_out(agency)


@router.get("/agencies", summary="List agencies, by code", responses=_AUTH)
def list_agencies(
    operator: CurrentOperator,
    agencies: Agencies,
    level: AgencyLevel | None = None,
    parent_id: uuid.UUID | None = None,
    active: bool | None = None,
) -> AgencyList:
    rows = agencies.list_agencies(level=level, parent_id=parent_id, active=active)
    return AgencyList(items=[agency_out(a) for a in rows])


@router.get("/agencies/{agency_id}", summary="One agency", responses=_AGENCY_404)
def get_agency(agency_id: uuid.UUID, operator: CurrentOperator, agencies: Agencies) -> AgencyOut:
    return agency_out(agencies.get(agency_id))


@router.patch(
    "/agencies/{agency_id}",
    summary="Rename, move under another parent, deactivate or reactivate an agency",
    responses={
        **_AGENCY_404,
        422: {"description": "Invalid fields, or a parent of the wrong level"},
    },
)
def update_agency(
    agency_id: uuid.UUID, body: AgencyUpdate, operator: CurrentOperator, agencies: Agencies
) -> AgencyOut:
    return agency_out(agencies.update(agency_id, body))


# -- officials ---------------------------------------------------------------------------------


@router.post(
    "/agencies/{agency_id}/officials",
    status_code=status.HTTP_201_CREATED,
    summary="Register an official of the agency, with roles",
    responses={
        **_AGENCY_404,
        409: {"description": "Already registered at this agency (official_exists)"},
        422: {"description": "Invalid fields or personal ID (invalid_personal_id)"},
    },
)
def register_official(
    agency_id: uuid.UUID,
    body: OfficialCreate,
    operator: CurrentOperator,
    agencies: Agencies,
    response: Response,
) -> OfficialOut:
    official = agencies.register_official(agency_id, body)
    response.headers["Location"] = f"/v1/admin/agencies/{agency_id}/officials/{official.id}"
    return official_out(official)


@router.get(
    "/agencies/{agency_id}/officials", summary="Officials of the agency", responses=_AGENCY_404
)
def list_officials(
    agency_id: uuid.UUID,
    operator: CurrentOperator,
    agencies: Agencies,
    active: bool | None = None,
) -> OfficialList:
    return OfficialList(
        items=[official_out(o) for o in agencies.officials(agency_id, active=active)]
    )


@router.patch(
    "/agencies/{agency_id}/officials/{official_id}",
    summary="Rename an official, change their roles, deactivate or reactivate them",
    responses={**_AGENCY_404, 404: {"description": "No such agency or official"}},
)
def update_official(
    agency_id: uuid.UUID,
    official_id: uuid.UUID,
    body: OfficialUpdate,
    operator: CurrentOperator,
    agencies: Agencies,
) -> OfficialOut:
    return official_out(agencies.update_official(agency_id, official_id, body))


# -- organisations -----------------------------------------------------------------------------


@router.post(
    "/organisations",
    status_code=status.HTTP_201_CREATED,
    summary="Enrol an organisation with its legal representative (an enrolled citizen)",
    responses={
        **_ORGANISATION_404,
        409: {"description": "The tax code is already enrolled (tax_code_taken)"},
        422: {"description": "Invalid tax code (invalid_tax_code) or personal ID"},
    },
)
def enrol_organisation(
    body: OrganisationCreate,
    operator: CurrentOperator,
    organisations: Organisations,
    response: Response,
) -> OrganisationOut:
    organisation = organisations.enrol(
        body.tax_code, body.name, body.legal_representative_personal_id
    )
    response.headers["Location"] = f"/v1/admin/organisations/{organisation.account_id}"
    return organisations.describe(organisation)


@router.get(
    "/organisations/{organisation_id}",
    summary="An organisation and its representatives",
    responses=_ORGANISATION_404,
)
def get_organisation(
    organisation_id: uuid.UUID, operator: CurrentOperator, organisations: Organisations
) -> OrganisationOut:
    return organisations.describe(organisations.get(organisation_id))


@router.post(
    "/organisations/{organisation_id}/representatives",
    status_code=status.HTTP_201_CREATED,
    summary="Add a representative (an enrolled citizen) to an organisation",
    responses={
        **_ORGANISATION_404,
        409: {"description": "The citizen already represents it (representative_exists)"},
    },
)
def add_representative(
    organisation_id: uuid.UUID,
    body: RepresentativeCreate,
    operator: CurrentOperator,
    organisations: Organisations,
) -> RepresentativeOut:
    representative = organisations.add_representative(
        organisation_id, body.personal_id, body.role, body.valid_until
    )
    return organisations.describe_representative(representative)


@router.post(
    "/organisations/{organisation_id}/representatives/{representative_id}/revoke",
    summary="End a representative's mandate now (revoking twice changes nothing)",
    responses=_ORGANISATION_404,
)
def revoke_representative(
    organisation_id: uuid.UUID,
    representative_id: uuid.UUID,
    operator: CurrentOperator,
    organisations: Organisations,
) -> RepresentativeOut:
    representative = organisations.revoke_representative(organisation_id, representative_id)
    return organisations.describe_representative(representative)
