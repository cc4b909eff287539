"""The signed-in owner's own account."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from api.deps import ContainerDep, CurrentOwner, Documents, Identity, SoleOwner
from common.errors import Unauthenticated

router = APIRouter(prefix="/v1", tags=["account"])

RECENT_LOGIN = dt.timedelta(minutes=15)


class ReauthenticationRequired(Unauthenticated):
    code = "reauthentication_required"
    title_vi = "Cần đăng nhập lại trước khi xoá tài khoản"
    title_en = "Sign in again before erasing the account"


class MeOut(BaseModel):
    id: uuid.UUID
    kind: Literal["citizen", "organisation"]
    full_name: str | None
    personal_id: str | None
    birth_date: dt.date | None
    eid_level: int | None
    acr: str | None


@router.get("/me", summary="Profile and e-ID level of the signed-in owner")
def me(owner: CurrentOwner, identity: Identity) -> MeOut:
    account = identity.active_account(owner.account_id)
    citizen = identity.citizen(owner.account_id)
    return MeOut(
        id=account.id,
        kind=account.kind,
        full_name=citizen.full_name if citizen else None,
        personal_id=citizen.personal_id if citizen else None,
        birth_date=citizen.birth_date if citizen else None,
        eid_level=citizen.eid_level if citizen else None,
        acr=owner.acr,
    )


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Erase the account: every paper becomes unreadable at once (recent sign-in needed)",
    responses={
        401: {"description": "Not signed in, or the sign-in is not recent enough"},
        403: {"description": "Sent with X-On-Behalf-Of: never delegated (owner_only)"},
    },
)
def erase_me(
    owner: SoleOwner, identity: Identity, documents: Documents, container: ContainerDep
) -> Response:
    now = container.clock.now()
    if owner.auth_time is None or now.timestamp() - owner.auth_time > RECENT_LOGIN.total_seconds():
        raise ReauthenticationRequired()
    documents.erase_owner(owner.account_id)
    identity.mark_erased(owner.account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
