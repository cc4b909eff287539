"""The agency side: ask for papers, follow the request, fetch under a grant."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status
from fastapi.responses import StreamingResponse

from api.deps import Consents, CurrentAgency, Documents
from api.routers.documents import stream_content
from consent.schemas import ConsentRequestIn, ConsentRequestOut, ConsentSummary, GrantOut

router = APIRouter(prefix="/v1/agency", tags=["agency"])


@router.post(
    "/consent-requests",
    status_code=status.HTTP_201_CREATED,
    summary="Ask a citizen for papers, for a named procedure and purpose",
    responses={404: {"description": "No Kho account for that personal ID number"}},
)
def create_request(
    body: ConsentRequestIn, agency: CurrentAgency, consents: Consents, response: Response
) -> ConsentRequestOut:
    created = consents.create_request(agency, body)
    response.headers["Location"] = f"/v1/agency/consent-requests/{created.id}"
    return created


@router.get(
    "/consent-requests/{request_id}",
    summary="Follow a request: its status and, once granted, the signed grant",
    responses={404: {"description": "No such request of this agency"}},
)
def follow(request_id: uuid.UUID, agency: CurrentAgency, consents: Consents) -> ConsentSummary:
    return consents.request_for_agency(agency, request_id)


@router.get(
    "/grants/{grant_id}/documents",
    summary="What a grant covers",
    responses={404: {"description": "No such grant of this agency"}},
)
def grant_documents(grant_id: uuid.UUID, agency: CurrentAgency, consents: Consents) -> GrantOut:
    return consents.grant_documents(agency, grant_id)


@router.get(
    "/grants/{grant_id}/documents/{document_id}/content",
    summary="Fetch a paper under a grant (checked now; logged before the first byte)",
    response_class=StreamingResponse,
    responses={
        403: {"description": "Revoked, expired or used up"},
        404: {"description": "No such grant, or the document is not covered"},
        503: {"description": "The access could not be logged: nothing is served"},
    },
)
def fetch(
    grant_id: uuid.UUID,
    document_id: uuid.UUID,
    agency: CurrentAgency,
    consents: Consents,
    documents: Documents,
) -> Response:
    capability = consents.authorize_fetch(agency, grant_id, document_id)
    return stream_content(documents.open_under(capability))
