"""The citizen's pages: sign-in, the store, consent decisions, the access log, delegations,
notifications and the account. Every page calls the same services the JSON API uses."""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from api.deps import ContainerDep, DbSession, Documents, Identity, get_consent_service
from api.http import content_disposition, filename_from_disposition
from api.routers.access_log import get_access_log
from api.routers.documents import MAX_VERSION, body_chunks, stream_content
from api.routers.me import RECENT_LOGIN
from api.web.i18n import ACTOR_KIND, VIETNAM, Texts
from api.web.pages import (
    HERE,
    FormDep,
    Page,
    PageDep,
    PageNotFound,
    PageUser,
    UserDep,
    WebRoute,
    set_session_cookie,
)
from api.web.security import check_origin
from api.web.session import COOKIE_NAME
from api.web.signin import WebSignIn
from api.web.uploads import (
    FORM_OVERHEAD,
    MultipartUpload,
    UploadFormInvalid,
    check_csrf,
    fields_from_header,
    upload_new,
    upload_version,
)
from common.errors import InvalidInput, KhoError
from consent.audit import AccessLog, NoCheckpointYet
from consent.models import AccessLogEntry, ConsentRequest, Grant, RequestStatus
from consent.repository import NotificationRepository
from consent.schemas import ConsentSummary, DecisionIn
from consent.service import OwnerActor
from identity.errors import CitizenNotFound
from identity.models import DelegationKind, DelegationScope
from identity.repository import AgencyRepository
from identity.schemas import DelegationCreate
from identity.service import DelegationService
from sso.keys import ProviderJwsSigner
from vault.errors import ContentTooLarge
from vault.issuance import IssuanceService
from vault.models import Document, Procedure
from vault.repository import DocumentRepository
from vault.schemas import DocumentOut
from vault.service import content_out

router = APIRouter(prefix="/web", route_class=WebRoute, include_in_schema=False)

ERASE_WORDS = {"vi": "XOÁ", "en": "ERASE"}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

DONE: dict[str, tuple[str, str]] = {
    "uploaded": ("Đã tải lên và mã hoá giấy tờ.", "The paper was uploaded and encrypted."),
    "deleted": ("Đã xoá giấy tờ.", "The paper was deleted."),
    "granted": (
        "Bạn đã đồng ý chia sẻ. Cơ quan sẽ nhận đúng các giấy tờ bạn đã chọn.",
        "You agreed to share. The agency receives exactly the papers you chose.",
    ),
    "denied": ("Bạn đã từ chối yêu cầu.", "You refused the request."),
    "revoked": (
        "Đã thu hồi sự đồng ý. Cơ quan không tải được giấy tờ nữa.",
        "Consent withdrawn. The agency can no longer fetch the papers.",
    ),
    "delegated": ("Đã tạo uỷ quyền.", "The delegation was created."),
    "delegation_ended": ("Đã chấm dứt uỷ quyền.", "The delegation ended."),
    "signed_out": ("Bạn đã đăng xuất.", "You are signed out."),
    "erased": (
        "Tài khoản của bạn đã được xoá. Mọi giấy tờ không còn đọc được.",
        "Your account was erased. No paper of yours can be read any more.",
    ),
    "digitised": (
        "Đã số hoá và lưu giấy tờ vào kho của công dân. Công dân sẽ nhận được thông báo.",
        "The paper was digitised into the citizen's store. The citizen is notified.",
    ),
}


def done_message(t: Texts, key: str | None) -> str | None:
    pair = DONE.get(key or "")
    return t(*pair) if pair else None


def status_kind(status: str) -> str:
    if status == RequestStatus.pending:
        return "pending"
    if status in (RequestStatus.granted, RequestStatus.partially_granted):
        return "good"
    if status in (RequestStatus.denied, RequestStatus.withdrawn):
        return "bad"
    return "neutral"


def grant_kind(status: str) -> str:
    return {"active": "good", "revoked": "bad"}.get(status, "neutral")


def safe_next(value: str | None) -> str:
    """Only a path of the pages themselves (no open redirect)."""
    if not value or len(value) > 512:
        return "/web/"
    if not value.startswith("/web/") and value != "/web":
        return "/web/"
    if "//" in value or "\\" in value or any(ord(c) < 0x20 for c in value):
        return "/web/"
    return value


def document_types(session: Session) -> list[Any]:
    return list(DocumentRepository(session).document_types())


def type_names(session: Session, t: Texts) -> dict[str, str]:
    return {d.code: t(d.name_vi, d.name_en) for d in document_types(session)}


def procedure_names(session: Session, t: Texts) -> dict[str, str]:
    return {p.code: t(p.name_vi, p.name_en) for p in session.scalars(select(Procedure))}


def owner_actor(user: PageUser) -> OwnerActor:
    return OwnerActor(owner_id=user.account_id, account_id=user.account_id)


# -- the frame: home, sign-in, static files -------------------------------------------------------


@router.get("")
def root() -> RedirectResponse:
    return RedirectResponse("/web/", status_code=308)


@router.get("/")
def home(page: PageDep, session: DbSession, state: str | None = None) -> Response:
    message = done_message(page.t, state) if state in ("signed_out", "erased") else None
    if page.user is None:
        return page.render("home.html", title=page.t("Trang chủ", "Home"), message=message)
    user = page.user
    count = session.scalar(
        select(func.count())
        .select_from(Document)
        .where(Document.owner_id == user.account_id, Document.deleted_at.is_(None))
    )
    consents = get_consent_service(page.container, session)
    pending = consents.inbox(user.account_id, RequestStatus.pending, 5)
    return page.render(
        "home.html",
        title=page.t("Tổng quan", "Overview"),
        nav="home",
        message=message,
        documents_count=int(count or 0),
        pending=pending,
    )


@router.get("/login")
def login(
    page: PageDep,
    session: DbSession,
    container: ContainerDep,
    next: Annotated[str | None, Query(max_length=512)] = None,
    reauth: int = 0,
) -> Response:
    signin = WebSignIn(session, container)
    row, secret, location = signin.begin(page.row, safe_next(next), reauthenticate=bool(reauth))
    page.row = row
    response = RedirectResponse(location, status_code=303)
    if secret is not None:
        set_session_cookie(page, response, secret)
        page.clear_cookie = False
    return response


@router.get("/callback")
def callback(
    request: Request,
    page: PageDep,
    session: DbSession,
    container: ContainerDep,
    code: Annotated[str | None, Query(max_length=512)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=128)] = None,
    iss: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    signin = WebSignIn(session, container)
    row = page.row
    if page.user is not None and (row is None or row.login_state_hash is None):
        # A reload of the callback after the sign-in completed: nothing left to do.
        return RedirectResponse("/web/", status_code=303)
    if row is None:
        # A signed-in row whose tokens lapsed is not ``page.row``; look the cookie up directly.
        row = signin.store.find(request.cookies.get(COOKIE_NAME))
    _fresh, secret, next_path = signin.complete(row, state=state, code=code, error=error, iss=iss)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(page, response, secret)
    page.clear_cookie = False
    return response


@router.post("/logout")
def logout(page: PageDep, form: FormDep, session: DbSession, container: ContainerDep) -> Response:
    assert page.user is not None
    location = WebSignIn(session, container).sign_out(page.user.row, state="signed_out")
    page.clear_cookie = True
    return RedirectResponse(location, status_code=303)


@router.get("/static/{name}")
def static(name: str) -> Response:
    path = HERE / "static" / name
    suffix = path.suffix
    if (
        "/" in name
        or name.startswith(".")
        or suffix not in STATIC_TYPES
        or not path.is_file()
        or path.parent != HERE / "static"
    ):
        raise PageNotFound()
    return Response(
        path.read_bytes(),
        media_type=STATIC_TYPES[suffix],
        headers={"Cache-Control": "public, max-age=3600"},
    )


# -- the store ----------------------------------------------------------------------------------


def _grouped(documents: list[DocumentOut], session: Session) -> list[dict[str, Any]]:
    names = {d.code: d for d in document_types(session)}
    groups: dict[str, dict[str, Any]] = {}
    for doc in documents:
        kind = names.get(doc.type_code)
        group = groups.setdefault(
            doc.type_code,
            {
                "code": doc.type_code,
                "name_vi": kind.name_vi if kind else doc.type_code,
                "name_en": kind.name_en if kind else doc.type_code,
                "documents": [],
            },
        )
        group["documents"].append(doc)
    return sorted(groups.values(), key=lambda g: str(g["name_vi"]))


def render_store(
    page: Page,
    user: PageUser,
    session: Session,
    documents: Documents,
    *,
    cursor: str | None = None,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    rows, next_cursor = documents.list_documents(user.account_id, cursor=cursor, limit=100)
    return page.render(
        "store.html",
        status=status,
        title=page.t("Giấy tờ của tôi", "My papers"),
        nav="store",
        groups=_grouped([documents.describe(r) for r in rows], session),
        next_cursor=next_cursor,
        types=document_types(session),
        errors=dict(errors or {}),
        values=dict(values or {}),
        message=message,
        max_bytes=page.container.settings.max_upload_bytes,
    )


@router.get("/store")
def store(
    page: PageDep,
    user: UserDep,
    session: DbSession,
    documents: Documents,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    done: str | None = None,
) -> Response:
    return render_store(
        page, user, session, documents, cursor=cursor, message=done_message(page.t, done)
    )


def _check_length(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + FORM_OVERHEAD:
        raise ContentTooLarge(extra={"limit_bytes": limit})


def checked_put_upload(
    request: Request, page: Page, csrf: str
) -> tuple[dict[str, str], str | None]:
    """A JavaScript upload (the file as the raw body): origin, the CSRF header and the declared
    size checked; the form's fields (``X-Upload-Fields``) and the file name returned."""
    check_origin(request, page.container.issuer_url)
    check_csrf(csrf, request.headers.get("x-csrf-token"))
    _check_length(request, page.container.settings.max_upload_bytes)
    values = fields_from_header(request.headers.get("x-upload-fields"))
    return values, filename_from_disposition(request.headers.get("content-disposition"))


@router.get("/documents")
def documents_index() -> RedirectResponse:
    return RedirectResponse("/web/store", status_code=303)


@router.post("/documents")
async def upload_form(
    request: Request, page: PageDep, user: UserDep, session: DbSession, documents: Documents
) -> Response:
    """No JavaScript: a multipart form, read as a stream (see ``api.web.uploads``)."""
    check_origin(request, page.container.issuer_url)
    page.back = "/web/store"

    def work() -> Response:
        upload = MultipartUpload(body_chunks(request), request.headers.get("content-type"))
        chosen = upload.until_file()
        check_csrf(user.csrf, upload.incoming.fields.get("csrf"))
        try:
            result = upload_new(
                session=session,
                documents=documents,
                owner_id=user.account_id,
                values=upload.incoming.fields,
                filename=upload.incoming.filename,
                chunks=upload.file_chunks() if chosen else None,
                t=page.t,
            )
        except UploadFormInvalid as exc:
            return render_store(
                page, user, session, documents, errors=exc.fields, values=exc.values, status=422
            )
        upload.finish()
        return RedirectResponse(
            f"/web/documents/{result.document.id}?done=uploaded", status_code=303
        )

    _check_length(request, page.container.settings.max_upload_bytes)
    return await anyio.to_thread.run_sync(work)


@router.put("/documents")
async def upload_put(
    request: Request, page: PageDep, user: UserDep, session: DbSession, documents: Documents
) -> Response:
    """With JavaScript: the file as the raw body (progress bar), fields in a header."""
    values, filename = checked_put_upload(request, page, user.csrf)

    def work() -> uuid.UUID:
        result = upload_new(
            session=session,
            documents=documents,
            owner_id=user.account_id,
            values=values,
            filename=filename,
            chunks=body_chunks(request),
            t=page.t,
        )
        return result.document.id

    document_id = await anyio.to_thread.run_sync(work)
    return JSONResponse(
        {"redirect": f"/web/documents/{document_id}?done=uploaded"}, status_code=201
    )


def render_document(
    page: Page,
    user: PageUser,
    session: Session,
    documents: Documents,
    document_id: uuid.UUID,
    *,
    errors: Mapping[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    doc = documents.describe(documents.get(user.account_id, document_id))
    versions = [v for v in documents.versions(user.account_id, document_id)]
    versions.sort(key=lambda v: v.version, reverse=True)
    provenance = _provenance(page, session, documents, user.account_id, document_id)
    return page.render(
        "document.html",
        status=status,
        title=doc.title,
        nav="store",
        doc=doc,
        versions=[content_out(v) for v in versions],
        type_name=type_names(session, page.t).get(doc.type_code, doc.type_code),
        provenance=provenance,
        errors=dict(errors or {}),
        values={},
        message=message,
        max_bytes=page.container.settings.max_upload_bytes,
    )


def _provenance(
    page: Page, session: Session, documents: Documents, owner: uuid.UUID, document_id: uuid.UUID
) -> str | None:
    """Who vouches for the current version (issued by / digitised by an agency)."""
    info = IssuanceService(session, page.container.clock, documents).provenance(owner, document_id)
    if not info:
        return None
    latest = info[max(info, key=int)]
    agencies = AgencyRepository(session)
    t = page.t
    code = latest.get("issued_by") or latest.get("digitised_by_agency")
    if not code:
        return None
    agency = agencies.by_code(str(code))
    name = agency.name_vi if agency else str(code)
    if latest.get("issued_by"):
        revoked = t(" (đã bị thu hồi)", " (revoked)") if latest.get("revoked") else ""
        return t("Do ", "Issued by ") + name + t(" cấp", "") + revoked
    return t("Số hoá tại quầy của ", "Digitised at the desk of ") + name


@router.get("/documents/{document_id}")
def document_page(
    document_id: uuid.UUID,
    page: PageDep,
    user: UserDep,
    session: DbSession,
    documents: Documents,
    done: str | None = None,
) -> Response:
    return render_document(
        page, user, session, documents, document_id, message=done_message(page.t, done)
    )


@router.post("/documents/{document_id}/versions")
async def version_form(
    document_id: uuid.UUID,
    request: Request,
    page: PageDep,
    user: UserDep,
    session: DbSession,
    documents: Documents,
) -> Response:
    check_origin(request, page.container.issuer_url)
    page.back = f"/web/documents/{document_id}"

    def work() -> Response:
        upload = MultipartUpload(body_chunks(request), request.headers.get("content-type"))
        chosen = upload.until_file()
        check_csrf(user.csrf, upload.incoming.fields.get("csrf"))
        try:
            upload_version(
                session=session,
                documents=documents,
                owner_id=user.account_id,
                document_id=document_id,
                filename=upload.incoming.filename,
                chunks=upload.file_chunks() if chosen else None,
                t=page.t,
            )
        except UploadFormInvalid as exc:
            return render_document(
                page, user, session, documents, document_id, errors=exc.fields, status=422
            )
        upload.finish()
        return RedirectResponse(f"/web/documents/{document_id}?done=uploaded", status_code=303)

    _check_length(request, page.container.settings.max_upload_bytes)
    return await anyio.to_thread.run_sync(work)


@router.put("/documents/{document_id}/content")
async def version_put(
    document_id: uuid.UUID,
    request: Request,
    page: PageDep,
    user: UserDep,
    session: DbSession,
    documents: Documents,
) -> Response:
    _fields, filename = checked_put_upload(request, page, user.csrf)

    def work() -> None:
        upload_version(
            session=session,
            documents=documents,
            owner_id=user.account_id,
            document_id=document_id,
            filename=filename,
            chunks=body_chunks(request),
            t=page.t,
        )

    await anyio.to_thread.run_sync(work)
    return JSONResponse(
        {"redirect": f"/web/documents/{document_id}?done=uploaded"}, status_code=201
    )


@router.get("/documents/{document_id}/content")
def download(
    document_id: uuid.UUID,
    user: UserDep,
    documents: Documents,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
    inline: int = 0,
) -> Response:
    opened = documents.open_content(user.account_id, document_id, version)
    response = stream_content(opened)
    media = opened.version.media_type or ""
    if inline and (media == "application/pdf" or media.startswith("image/")):
        response.headers["Content-Disposition"] = content_disposition(
            opened.version.filename or "tai-lieu", inline=True
        )
    # The bytes are a PDF or an image (checked at upload), never a page of this site.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        "object-src 'self'; frame-ancestors 'none'"
    )
    return response


@router.get("/documents/{document_id}/delete")
def confirm_delete(
    document_id: uuid.UUID, page: PageDep, user: UserDep, documents: Documents
) -> Response:
    doc = documents.describe(documents.get(user.account_id, document_id))
    count = len(documents.versions(user.account_id, document_id))
    return page.render(
        "document_delete.html",
        title=page.t("Xoá giấy tờ", "Delete the paper"),
        nav="store",
        doc=doc,
        versions_count=count,
    )


@router.post("/documents/{document_id}/delete")
def delete_document(
    document_id: uuid.UUID, page: PageDep, form: FormDep, user: UserDep, documents: Documents
) -> Response:
    page.back = f"/web/documents/{document_id}"
    documents.delete(user.account_id, document_id)
    return RedirectResponse("/web/store?done=deleted", status_code=303)


# -- consent --------------------------------------------------------------------------------------


def _consents(page: Page, session: Session) -> Any:
    return get_consent_service(page.container, session)


@router.get("/consents")
def inbox(page: PageDep, user: UserDep, session: DbSession) -> Response:
    items = _consents(page, session).inbox(user.account_id, None, 100)
    items.sort(key=lambda s: (s.request.status != RequestStatus.pending,))
    return page.render(
        "consents.html",
        title=page.t("Yêu cầu chia sẻ", "Requests"),
        nav="consents",
        items=items,
        procedure_names=procedure_names(session, page.t),
        status_kind=status_kind,
        grant_kind=grant_kind,
    )


def render_consent(
    page: Page,
    user: PageUser,
    session: Session,
    summary: ConsentSummary,
    *,
    errors: Mapping[str, str] | None = None,
    chosen: set[uuid.UUID] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    request = summary.request
    preselected = chosen
    if preselected is None:
        # The best paper (highest assurance, newest) of each item is proposed.
        preselected = {item.matches[0].document_id for item in request.items if item.matches}
    titles = {
        str(d.id): d.title
        for d in session.scalars(select(Document).where(Document.owner_id == user.account_id))
    }
    names = procedure_names(session, page.t)
    return page.render(
        "consent.html",
        status=status,
        title=page.t("Yêu cầu chia sẻ", "Request"),
        nav="consents",
        summary=summary,
        procedure_name=names.get(request.procedure_code, request.procedure_code),
        type_names=type_names(session, page.t),
        doc_titles=titles,
        preselected=preselected,
        errors=dict(errors or {}),
        message=message,
        status_kind=status_kind,
        grant_kind=grant_kind,
    )


@router.get("/consents/{request_id}")
def consent_page(
    request_id: uuid.UUID,
    page: PageDep,
    user: UserDep,
    session: DbSession,
    done: str | None = None,
) -> Response:
    summary = _consents(page, session).describe(owner_actor(user), request_id)
    return render_consent(page, user, session, summary, message=done_message(page.t, done))


@router.post("/consents/{request_id}/decision")
def decide(
    request_id: uuid.UUID, page: PageDep, form: FormDep, user: UserDep, session: DbSession
) -> Response:
    page.back = f"/web/consents/{request_id}"
    consents = _consents(page, session)
    decision = form.get("decision")
    chosen: list[uuid.UUID] = []
    for raw in form.getlist("document_id"):
        try:
            chosen.append(uuid.UUID(raw))
        except ValueError:
            continue
    if decision not in ("grant", "deny"):
        raise InvalidInput("Hãy chọn đồng ý hoặc từ chối.", "Choose to grant or to refuse.")
    if decision == "grant" and not chosen:
        summary = consents.describe(owner_actor(user), request_id)
        return render_consent(
            page,
            user,
            session,
            summary,
            errors={
                "document_id": page.t(
                    "Chọn ít nhất một giấy tờ để chia sẻ, hoặc bấm “Từ chối”.",
                    "Choose at least one paper to share, or press “Refuse”.",
                )
            },
            chosen=set(),
            status=422,
        )
    body = DecisionIn(decision=decision, document_ids=chosen if decision == "grant" else None)
    consents.decide(owner_actor(user), request_id, body)
    done = "granted" if decision == "grant" else "denied"
    return RedirectResponse(f"/web/consents/{request_id}?done={done}", status_code=303)


@router.post("/grants/{grant_id}/revoke")
def revoke(
    grant_id: uuid.UUID, page: PageDep, form: FormDep, user: UserDep, session: DbSession
) -> Response:
    page.back = "/web/consents"
    grant = _consents(page, session).revoke(owner_actor(user), grant_id)
    return RedirectResponse(f"/web/consents/{grant.request_id}?done=revoked", status_code=303)


# -- the access log -----------------------------------------------------------------------------

PAGE_SIZE = 50


def _who(t: Texts, entry: AccessLogEntry, agencies: AgencyRepository) -> str:
    kind = t.label(ACTOR_KIND, entry.actor_kind)
    if entry.actor_kind in ("owner", "delegate"):
        return kind
    if entry.agency_id is not None:
        agency = agencies.get(entry.agency_id)
        if agency is not None:
            name = t(agency.name_vi, agency.name_en or agency.name_vi)
            return name if entry.actor_kind == "agency" else f"{kind} — {name}"
    return kind


@router.get("/access-log")
def access_log(
    page: PageDep,
    user: UserDep,
    session: DbSession,
    container: ContainerDep,
    upto: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    # Anything the page loader wrote (a token refresh) is committed first: the verification
    # below reads one snapshot of the log in a session of its own.
    session.commit()
    log = get_access_log(container, session)
    head = int(
        session.scalar(
            select(func.max(AccessLogEntry.seq)).where(AccessLogEntry.owner_id == user.account_id)
        )
        or 0
    )
    top = min(upto or head, head)
    after = max(0, top - PAGE_SIZE)
    entries = log.entries(user.account_id, after_seq=after, limit=top - after) if top else []
    agencies = AgencyRepository(session)
    titles = {
        d.id: d.title
        for d in session.scalars(select(Document).where(Document.owner_id == user.account_id))
    }
    # "Why": an entry made under a grant carries the purpose the owner consented to.
    purposes = {
        grant_id: (request_id, purpose)
        for grant_id, request_id, purpose in session.execute(
            select(Grant.id, ConsentRequest.id, ConsentRequest.purpose)
            .join(ConsentRequest, ConsentRequest.id == Grant.request_id)
            .where(Grant.subject_id == user.account_id)
        )
    }
    rows = [
        {
            "seq": e.seq,
            "occurred_at": e.occurred_at,
            "who": _who(page.t, e, agencies),
            "action": e.action,
            "document": titles.get(e.document_id) if e.document_id else None,
            "purpose": e.purpose or (purposes[e.grant_id][1] if e.grant_id in purposes else None),
            "request_id": purposes[e.grant_id][0] if e.grant_id in purposes else None,
            "reason": e.reason,
            "decision": e.decision,
        }
        for e in reversed(entries)
    ]
    with container.sessions() as fresh:
        report = AccessLog(
            fresh, container.clock, ProviderJwsSigner(container.signing_keys)
        ).verify_owner(user.account_id)
        fresh.rollback()
    try:
        proof: Any = log.proof(user.account_id)
    except NoCheckpointYet:
        proof = None
    return page.render(
        "access_log.html",
        title=page.t("Nhật ký truy cập", "Access log"),
        nav="log",
        rows=rows,
        head=head,
        report=report,
        proof=proof,
        newer=min(head, top + PAGE_SIZE) if top < head else None,
        older=after if after > 0 else None,
    )


# -- delegations ----------------------------------------------------------------------------------


def render_delegations(
    page: Page,
    user: PageUser,
    session: Session,
    *,
    errors: Mapping[str, str] | None = None,
    form_error: str | None = None,
    values: Mapping[str, Any] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    service = DelegationService(session, page.container.clock)
    given, received = service.list_for(user.account_id)
    return page.render(
        "delegations.html",
        status=status,
        title=page.t("Uỷ quyền", "Delegations"),
        nav="delegations",
        given=[service.describe(d) for d in given],
        received=[service.describe(d) for d in received],
        errors=dict(errors or {}),
        form_error=form_error,
        values=dict(values or {}),
        message=message,
    )


@router.get("/delegations")
def delegations(
    page: PageDep, user: UserDep, session: DbSession, done: str | None = None
) -> Response:
    return render_delegations(page, user, session, message=done_message(page.t, done))


def _end_of_day_vietnam(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59, 59), VIETNAM).astimezone(dt.UTC)


@router.post("/delegations")
def create_delegation(
    page: PageDep, form: FormDep, user: UserDep, session: DbSession, container: ContainerDep
) -> Response:
    t = page.t
    page.back = "/web/delegations"
    values: dict[str, Any] = {
        "delegate_personal_id": form.get("delegate_personal_id"),
        "scope": form.getlist("scope"),
        "kind": form.get("kind") or "delegation",
        "valid_until": form.get("valid_until"),
    }
    errors: dict[str, str] = {}
    pin = values["delegate_personal_id"]
    if not (pin.isdigit() and len(pin) == 12):
        errors["delegate_personal_id"] = t(
            "Số định danh cá nhân gồm đúng 12 chữ số.", "The personal ID is exactly 12 digits."
        )
    scopes = [s for s in values["scope"] if s in {m.value for m in DelegationScope}]
    if not scopes:
        errors["scope"] = t("Chọn ít nhất một quyền.", "Choose at least one permission.")
    kind = values["kind"] if values["kind"] in {k.value for k in DelegationKind} else "delegation"
    until: dt.datetime | None = None
    if values["valid_until"]:
        try:
            until = _end_of_day_vietnam(dt.date.fromisoformat(values["valid_until"]))
        except ValueError:
            errors["valid_until"] = t("Ngày không hợp lệ.", "Not a valid date.")
    elif kind == "delegation":
        errors["valid_until"] = t(
            "Chọn ngày hết hiệu lực của uỷ quyền.", "Choose when the delegation ends."
        )
    if errors:
        return render_delegations(page, user, session, errors=errors, values=values, status=422)
    try:
        body = DelegationCreate(
            delegate_personal_id=pin,
            scope={DelegationScope(s) for s in scopes},
            kind=DelegationKind(kind),
            valid_until=until,
        )
    except ValidationError:
        return render_delegations(
            page,
            user,
            session,
            errors={"delegate_personal_id": t("Dữ liệu không hợp lệ.", "Invalid input.")},
            values=values,
            status=422,
        )
    service = DelegationService(session, container.clock)
    try:
        service.create_for_personal_id(
            user.account_id,
            body.delegate_personal_id,
            scope=body.scope,
            kind=body.kind,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
        )
    except CitizenNotFound as exc:
        session.rollback()
        title, _detail = t.error(exc)
        return render_delegations(
            page,
            user,
            session,
            errors={"delegate_personal_id": title},
            values=values,
            status=404,
        )
    except KhoError as exc:
        session.rollback()
        title, detail = t.error(exc)
        return render_delegations(
            page,
            user,
            session,
            errors={"delegate_personal_id": f"{title}{': ' + detail if detail else ''}"},
            form_error=f"{title} ({exc.code})",
            values=values,
            status=exc.status,
        )
    return RedirectResponse("/web/delegations?done=delegated", status_code=303)


@router.post("/delegations/{delegation_id}/revoke")
def end_delegation(
    delegation_id: uuid.UUID,
    page: PageDep,
    form: FormDep,
    user: UserDep,
    session: DbSession,
    container: ContainerDep,
) -> Response:
    page.back = "/web/delegations"
    DelegationService(session, container.clock).revoke(user.account_id, delegation_id)
    return RedirectResponse("/web/delegations?done=delegation_ended", status_code=303)


# -- notifications ---------------------------------------------------------------------------------


@router.get("/notifications")
def notifications(
    page: PageDep, user: UserDep, session: DbSession, container: ContainerDep
) -> Response:
    rows = NotificationRepository(session).visible(user.account_id, container.clock.now())
    items = []
    for r in rows:
        data = r.data or {}
        link = None
        if data.get("request_id"):
            link = f"/web/consents/{uuid.UUID(str(data['request_id']))}"
        elif data.get("document_id"):
            link = f"/web/documents/{uuid.UUID(str(data['document_id']))}"
        items.append(
            {
                "id": r.id,
                "subject_vi": r.subject_vi,
                "subject_en": r.subject_en,
                "created_at": r.visible_from,
                "read": r.read_at is not None,
                "link": link,
            }
        )
    return page.render(
        "notifications.html",
        title=page.t("Thông báo", "Notifications"),
        nav="notifications",
        items=items,
    )


@router.post("/notifications/{notification_id}/read")
def mark_read(
    notification_id: uuid.UUID,
    form: FormDep,
    user: UserDep,
    session: DbSession,
    container: ContainerDep,
) -> Response:
    NotificationRepository(session).mark_read(
        user.account_id, notification_id, container.clock.now()
    )
    return RedirectResponse("/web/notifications", status_code=303)


# -- the account ---------------------------------------------------------------------------------


def render_account(
    page: Page,
    user: PageUser,
    identity: Identity,
    *,
    errors: Mapping[str, str] | None = None,
    reauth: bool = False,
    status: int = 200,
) -> Response:
    citizen = identity.citizen(user.account_id)
    return page.render(
        "account.html",
        status=status,
        title=page.t("Tài khoản", "Account"),
        nav="account",
        birth_date=citizen.birth_date if citizen else None,
        errors=dict(errors or {}),
        reauth=reauth,
        word=ERASE_WORDS[page.lang],
        message=None,
    )


@router.get("/account")
def account(page: PageDep, user: UserDep, identity: Identity) -> Response:
    return render_account(page, user, identity)


@router.post("/account/export")
def export(form: FormDep, user: UserDep, documents: Documents) -> Response:
    return StreamingResponse(
        documents.export(user.account_id),
        media_type="application/zip",
        headers={"Content-Disposition": content_disposition("kho-export.zip")},
    )


def _normalised(word: str) -> str:
    text = unicodedata.normalize("NFC", word.strip()).upper()
    return text.replace("XÓA", "XOÁ")


@router.post("/account/erase")
def erase(
    page: PageDep,
    form: FormDep,
    user: UserDep,
    session: DbSession,
    identity: Identity,
    documents: Documents,
    container: ContainerDep,
) -> Response:
    page.back = "/web/account"
    t = page.t
    if _normalised(form.get("confirm")) not in (ERASE_WORDS["vi"], ERASE_WORDS["en"]):
        return render_account(
            page,
            user,
            identity,
            errors={
                "confirm": t(
                    f"Gõ đúng chữ {ERASE_WORDS['vi']} để xác nhận xoá tài khoản.",
                    f"Type {ERASE_WORDS['en']} exactly to confirm.",
                )
            },
            status=422,
        )
    age = container.clock.now() - user.auth_time
    if age > RECENT_LOGIN:
        # The same rule as DELETE /v1/me (``reauthentication_required``): sign in again.
        return render_account(page, user, identity, reauth=True, status=401)
    documents.erase_owner(user.account_id)
    identity.mark_erased(user.account_id)
    location = WebSignIn(session, container).sign_out(user.row, state="erased")
    page.clear_cookie = True
    return RedirectResponse(location, status_code=303)
