"""Operators set where each agency receives signed webhooks (decisions, revocations)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import AnyHttpUrl, BaseModel, ConfigDict

from api.deps import ContainerDep, CurrentOperator, DbSession
from consent.models import WebhookEndpoint
from identity.errors import AgencyNotFound
from identity.repository import AgencyRepository

router = APIRouter(prefix="/v1/admin/agencies", tags=["admin"])


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl
    active: bool = True


class WebhookOut(BaseModel):
    agency_id: uuid.UUID
    url: str
    active: bool


@router.put("/{agency_id}/webhook", summary="Set the agency's webhook endpoint")
def put_webhook(
    agency_id: uuid.UUID,
    body: WebhookIn,
    _operator: CurrentOperator,
    session: DbSession,
    container: ContainerDep,
) -> WebhookOut:
    if AgencyRepository(session).get(agency_id) is None:
        raise AgencyNotFound()
    row = session.get(WebhookEndpoint, agency_id)
    if row is None:
        row = WebhookEndpoint(agency_id=agency_id, created_at=container.clock.now())
        session.add(row)
    row.url = str(body.url)
    row.active = body.active
    session.flush()
    return WebhookOut(agency_id=agency_id, url=row.url, active=row.active)
