"""Pages for desk officials: digitise a paper for a citizen who is present, and follow the
agency's consent requests."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from api.deps import DbSession, Documents, get_consent_service
from api.routers.documents import body_chunks
from api.web.pages import OfficialDep, Page, PageDep, PageUser, WebRoute, official_post
from api.web.routes import (
    _check_length,
    checked_put_upload,
    document_types,
    done_message,
    grant_kind,
    procedure_names,
    status_kind,
)
from api.web.security import check_origin
from api.web.uploads import (
    DeskPost,
    MultipartUpload,
    UploadFormInvalid,
    check_csrf,
    upload_at_desk,
)
from consent.models import ConsentRequest
from consent.service import AgencyActor
from identity.repository import AccountRepository
from vault.issuance import IssuanceService

router = APIRouter(prefix="/web/desk", route_class=WebRoute, include_in_schema=False)


def _receptionist_posts(user: PageUser) -> list[Any]:
    return [p for p in user.posts if "receptionist" in p.roles]


def render_desk(
    page: Page,
    user: PageUser,
    session: Session,
    *,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "desk.html",
        status=status,
        title=page.t("Số hoá tại quầy", "Desk digitisation"),
        nav="desk",
        posts=_receptionist_posts(user),
        types=document_types(session),
        errors=dict(errors or {}),
        values=dict(values or {}),
        message=message,
        max_bytes=page.container.settings.max_upload_bytes,
    )


@router.get("")
def desk(page: PageDep, user: OfficialDep, session: DbSession, done: str | None = None) -> Response:
    return render_desk(page, user, session, message=done_message(page.t, done))


def _post(user: PageUser, values: Mapping[str, str]) -> DeskPost:
    post = official_post(user, values.get("agency_id") or None)
    return DeskPost(
        agency_id=post.agency_id,
        official_id=post.official_id,
        official_account=user.account_id,
        roles=post.roles,
    )


@router.post("")
async def desk_form(
    request: Request, page: PageDep, user: OfficialDep, session: DbSession, documents: Documents
) -> Response:
    """No JavaScript: the scan as a multipart form, read as a stream."""
    check_origin(request, page.container.issuer_url)
    page.back = "/web/desk"
    _check_length(request, page.container.settings.max_upload_bytes)

    def work() -> Response:
        upload = MultipartUpload(body_chunks(request), request.headers.get("content-type"))
        chosen = upload.until_file()
        fields = upload.incoming.fields
        check_csrf(user.csrf, fields.get("csrf"))
        issuance = IssuanceService(session, page.container.clock, documents)
        try:
            upload_at_desk(
                session=session,
                issuance=issuance,
                documents=documents,
                post=_post(user, fields),
                values=fields,
                filename=upload.incoming.filename,
                chunks=upload.file_chunks() if chosen else None,
                t=page.t,
            )
        except UploadFormInvalid as exc:
            return render_desk(
                page, user, session, errors=exc.fields, values=exc.values, status=422
            )
        upload.finish()
        return RedirectResponse("/web/desk?done=digitised", status_code=303)

    return await anyio.to_thread.run_sync(work)


@router.put("")
async def desk_put(
    request: Request, page: PageDep, user: OfficialDep, session: DbSession, documents: Documents
) -> Response:
    """With JavaScript: the scan as the raw body (progress bar), fields in a header."""
    values, filename = checked_put_upload(request, page, user.csrf)

    def work() -> None:
        issuance = IssuanceService(session, page.container.clock, documents)
        upload_at_desk(
            session=session,
            issuance=issuance,
            documents=documents,
            post=_post(user, values),
            values=values,
            filename=filename,
            chunks=body_chunks(request),
            t=page.t,
        )

    await anyio.to_thread.run_sync(work)
    return JSONResponse({"redirect": "/web/desk?done=digitised"}, status_code=201)


def _mask(personal_id: str | None) -> str:
    if not personal_id:
        return "—"
    return personal_id[:3] + "•" * 5 + personal_id[-4:]


@router.get("/requests")
def agency_requests(
    page: PageDep,
    user: OfficialDep,
    session: DbSession,
    agency_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    post = official_post(user, agency_id) if agency_id else user.posts[0]
    consents = get_consent_service(page.container, session)
    actor = AgencyActor(client_id="kho-web", agency_id=post.agency_id)
    ids = session.scalars(
        select(ConsentRequest.id)
        .where(ConsentRequest.agency_id == post.agency_id)
        .order_by(ConsentRequest.created_at.desc())
        .limit(100)
    ).all()
    accounts = AccountRepository(session)
    rows = []
    for request_id in ids:
        summary = consents.request_for_agency(actor, uuid.UUID(str(request_id)))
        citizen = accounts.citizen(summary.request.subject_id)
        rows.append(
            {
                "summary": summary,
                "masked_pid": _mask(citizen.personal_id if citizen else None),
            }
        )
    return page.render(
        "desk_requests.html",
        title=page.t("Yêu cầu của cơ quan", "Agency requests"),
        nav="desk-requests",
        post=post,
        rows=rows,
        procedure_names=procedure_names(session, page.t),
        status_kind=status_kind,
        grant_kind=grant_kind,
    )
