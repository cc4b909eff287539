"""Agencies vouching for papers: issued results (signed), desk digitisation, asking again,
and the public check of an issued version."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import (
    ContainerDep,
    CurrentAgency,
    CurrentOfficial,
    CurrentOperator,
    CurrentOwner,
    DbSession,
    Documents,
)
from api.http import filename_from_disposition
from api.routers.documents import body_chunks
from common.errors import Forbidden, InvalidInput
from identity.errors import AgencyNotFound
from identity.repository import AgencyRepository
from vault.issuance import IssuanceService, IssuedDeclaration, parse_qr, qr_payload
from vault.schemas import DocumentCreate, UploadOut
from vault.service import content_out

router = APIRouter(prefix="/v1", tags=["issued and digitised papers"])


def get_issuance(
    container: ContainerDep, session: DbSession, documents: Documents
) -> IssuanceService:
    return IssuanceService(session, container.clock, documents)


Issuance = Annotated[IssuanceService, Depends(get_issuance)]


class IssuedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject_personal_id: str = Field(pattern=r"^[0-9]{12}$")
    document: DocumentCreate
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    signature: str = Field(
        min_length=10,
        max_length=8192,
        description="Detached compact JWS (RFC 7515 appendix F) over the ASCII hex SHA-256, "
        "with the 'kid' of one of the agency's registered keys",
    )


class SlotOut(BaseModel):
    document_id: uuid.UUID
    upload_url: str


class RightsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_types: list[str] = Field(max_length=200)


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jwk: dict[str, Any]


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject_personal_id: str = Field(pattern=r"^[0-9]{12}$")
    document_type: str = Field(max_length=64)
    procedure_code: str | None = Field(default=None, max_length=64)


class AskOut(BaseModel):
    already_held: bool
    re_request_id: uuid.UUID | None
    message_vi: str
    message_en: str


class DeskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject_personal_id: str = Field(pattern=r"^[0-9]{12}$")
    document: DocumentCreate


class VerifyOut(BaseModel):
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


def _agency_exists(session: DbSession, agency_id: uuid.UUID) -> None:
    if AgencyRepository(session).get(agency_id) is None:
        raise AgencyNotFound()


@router.put("/admin/agencies/{agency_id}/issuing-rights", tags=["admin"])
def set_rights(
    agency_id: uuid.UUID,
    body: RightsIn,
    _operator: CurrentOperator,
    session: DbSession,
    issuance: Issuance,
) -> RightsIn:
    _agency_exists(session, agency_id)
    return RightsIn(document_types=issuance.set_issuing_rights(agency_id, body.document_types))


@router.post(
    "/admin/agencies/{agency_id}/signing-keys", status_code=status.HTTP_201_CREATED, tags=["admin"]
)
def add_key(
    agency_id: uuid.UUID,
    body: KeyIn,
    _operator: CurrentOperator,
    session: DbSession,
    issuance: Issuance,
) -> dict[str, str]:
    _agency_exists(session, agency_id)
    row = issuance.register_key(agency_id, body.jwk)
    return {"kid": row.kid}


@router.post(
    "/agency/issued-documents",
    status_code=status.HTTP_201_CREATED,
    summary="Declare a result the agency issued (signature checked now); then upload it",
)
def declare(body: IssuedIn, agency: CurrentAgency, issuance: Issuance) -> SlotOut:
    document = issuance.declare_issued(
        agency.agency_id,
        IssuedDeclaration(body.subject_personal_id, body.document, body.sha256, body.signature),
    )
    return SlotOut(
        document_id=document.id, upload_url=f"/v1/agency/issued-documents/{document.id}/content"
    )


async def _upload(request: Request, work: Any) -> JSONResponse:
    filename = filename_from_disposition(request.headers.get("content-disposition"))
    result = await anyio.to_thread.run_sync(lambda: work(body_chunks(request), filename))
    out = UploadOut(
        document_id=result.document.id, created=result.created, content=content_out(result.version)
    )
    body = out.model_dump(mode="json")
    body["verify_qr"] = qr_payload(result.document.id, result.version.sha256 or "")
    return JSONResponse(body, status_code=201 if result.created else 200)


@router.put(
    "/agency/issued-documents/{document_id}/content",
    summary="The issued result's bytes, streamed; they must hash to the signed SHA-256",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_issued(
    document_id: uuid.UUID, request: Request, agency: CurrentAgency, issuance: Issuance
) -> JSONResponse:
    return await _upload(
        request,
        lambda chunks, filename: issuance.upload_issued(
            agency.agency_id, document_id, chunks, filename=filename
        ),
    )


@router.post("/agency/issued-documents/{document_id}/revoke", summary="Revoke an issued result")
def revoke_issued(
    document_id: uuid.UUID, body: RevokeIn, agency: CurrentAgency, issuance: Issuance
) -> dict[str, str]:
    issuance.revoke_issued(agency.agency_id, document_id, body.reason)
    return {"status": "revoked"}


@router.post(
    "/agency/document-requests",
    summary="Ask an owner to provide a paper (a re-request is recorded when Kho holds it)",
)
def ask(body: AskIn, agency: CurrentAgency, issuance: Issuance) -> AskOut:
    record = issuance.ask_to_provide(
        agency_id=agency.agency_id,
        subject_personal_id=body.subject_personal_id,
        document_type=body.document_type,
        procedure_code=body.procedure_code,
    )
    if record is None:
        return AskOut(
            already_held=False,
            re_request_id=None,
            message_vi="Đã gửi đề nghị cung cấp giấy tờ tới công dân.",
            message_en="The owner was asked to provide the paper.",
        )
    return AskOut(
        already_held=True,
        re_request_id=record.id,
        message_vi="Công dân đã có giấy tờ này trong kho: hãy đề nghị chia sẻ thay vì yêu cầu "
        "nộp lại (Điều 7.2.d Quyết định 55/2024/QĐ-UBND). Lần đề nghị lại đã được ghi nhận.",
        message_en="The owner already holds this paper: ask for consent to share it instead of "
        "asking again (Decision 55/2024, Art. 7.2.d). The re-request was recorded.",
    )


@router.post(
    "/agency/desk/documents",
    status_code=status.HTTP_201_CREATED,
    summary="At the desk: open a paper for a citizen who is present (a receptionist)",
)
def open_desk(body: DeskIn, official: CurrentOfficial, issuance: Issuance) -> SlotOut:
    if "receptionist" not in official.roles:
        raise Forbidden("Cần vai trò tiếp nhận.", "The receptionist role is required.")
    document = issuance.open_at_desk(
        agency_id=official.agency_id,
        official_id=official.official_id,
        official_account=official.account_id,
        subject_personal_id=body.subject_personal_id,
        document=body.document,
    )
    return SlotOut(
        document_id=document.id, upload_url=f"/v1/agency/desk/documents/{document.id}/content"
    )


@router.put(
    "/agency/desk/documents/{document_id}/content",
    summary="At the desk: the scan, streamed; stored as 'digitised' with the official recorded",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_scan(
    document_id: uuid.UUID, request: Request, official: CurrentOfficial, issuance: Issuance
) -> JSONResponse:
    return await _upload(
        request,
        lambda chunks, filename: issuance.upload_scan(
            official.agency_id, document_id, chunks, filename=filename
        ),
    )


@router.get(
    "/verify",
    summary="Public: is this exactly an issued version Kho holds, by whom, and is it revoked?",
    tags=["public"],
)
def verify(
    issuance: Issuance,
    document_id: uuid.UUID | None = None,
    sha256: Annotated[str | None, Query(max_length=64)] = None,
    qr: Annotated[str | None, Query(max_length=200)] = None,
) -> VerifyOut:
    if qr is not None:
        parsed = parse_qr(qr)
        if parsed is None:
            raise InvalidInput("Mã QR không hợp lệ.", "Not a Kho QR payload.")
        document_id, sha256 = parsed
    if document_id is None or sha256 is None:
        raise InvalidInput(
            "Cần document_id và sha256, hoặc qr.", "Give document_id and sha256, or qr."
        )
    result = issuance.verify(document_id, sha256)
    return VerifyOut(**result.__dict__)


@router.get("/documents/{document_id}/provenance", tags=["documents"])
def provenance(document_id: uuid.UUID, owner: CurrentOwner, issuance: Issuance) -> dict[str, Any]:
    return issuance.provenance(owner.account_id, document_id)


@router.get("/admin/reports/re-requests", tags=["admin"])
def re_requests(
    _operator: CurrentOperator, issuance: Issuance, since: dt.datetime | None = None
) -> list[dict[str, Any]]:
    return [
        {"agency_id": str(agency_id), "agency_code": code, "re_requests": count}
        for agency_id, code, count in issuance.re_request_report(since)
    ]
