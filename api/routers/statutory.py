"""Statutory access: officials ask under a legal provision, a second official approves, the
owner is shown it; and the owner's inbox of notifications."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from api.deps import (
    ContainerDep,
    CurrentOfficial,
    CurrentOwner,
    DbSession,
    Documents,
    StatutoryAccesses,
)
from api.routers.documents import stream_content
from consent.repository import NotificationRepository
from consent.schemas import NotificationOut, StatutoryAccessIn, StatutoryAccessOut

router = APIRouter(prefix="/v1", tags=["statutory access"])


class ApprovalIn(BaseModel):
    approve: bool


@router.post(
    "/agency/statutory-access",
    status_code=status.HTTP_201_CREATED,
    summary="Ask for access without consent, under a named legal provision (an official)",
)
def request_access(
    body: StatutoryAccessIn, official: CurrentOfficial, accesses: StatutoryAccesses
) -> StatutoryAccessOut:
    return accesses.request(official, body)


@router.get("/agency/statutory-access/{access_id}", summary="Follow a statutory access")
def follow(
    access_id: uuid.UUID, official: CurrentOfficial, accesses: StatutoryAccesses
) -> StatutoryAccessOut:
    return accesses.get(official, access_id)


@router.post(
    "/agency/statutory-access/{access_id}/approval",
    summary="Approve or reject: a second official of the same agency with the approver role",
)
def approve(
    access_id: uuid.UUID, body: ApprovalIn, official: CurrentOfficial, accesses: StatutoryAccesses
) -> StatutoryAccessOut:
    return accesses.approve(official, access_id, body.approve)


@router.get(
    "/agency/statutory-access/{access_id}/documents/{document_id}/content",
    summary="Fetch a paper under an approved statutory access (logged before the first byte)",
)
def fetch(
    access_id: uuid.UUID,
    document_id: uuid.UUID,
    official: CurrentOfficial,
    accesses: StatutoryAccesses,
    documents: Documents,
) -> Response:
    capability = accesses.authorize_fetch(official, access_id, document_id)
    return stream_content(documents.open_under(capability))


@router.get("/statutory-access", summary="Accesses to my papers under the law, as disclosed to me")
def mine(owner: CurrentOwner, accesses: StatutoryAccesses) -> list[StatutoryAccessOut]:
    return accesses.for_owner(owner.account_id)


@router.get("/notifications", summary="My notifications, newest first")
def notifications(
    owner: CurrentOwner, session: DbSession, container: ContainerDep
) -> list[NotificationOut]:
    rows = NotificationRepository(session).visible(owner.account_id, container.clock.now())
    return [
        NotificationOut(
            id=r.id,
            kind=r.kind,
            subject_vi=r.subject_vi,
            subject_en=r.subject_en,
            data=r.data,
            created_at=r.visible_from,
            read=r.read_at is not None,
        )
        for r in rows
    ]


@router.post(
    "/notifications/{notification_id}/read",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Mark a notification read (marking it again changes nothing)",
    responses={404: {"description": "No such notification shown to me (notification_not_found)"}},
)
def mark_read(
    notification_id: uuid.UUID, owner: CurrentOwner, session: DbSession, container: ContainerDep
) -> Response:
    NotificationRepository(session).mark_read(
        owner.account_id, notification_id, container.clock.now()
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
