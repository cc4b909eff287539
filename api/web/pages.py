"""The frame every page shares: who is signed in, in which language, templates, errors.

``WebRoute`` wraps every page handler: a ``KhoError`` becomes an HTML error page in the page's
language with its stable ``code`` (or a JSON body for the JavaScript upload), a missing sign-in
becomes a redirect to sign-in, and every response gets the security headers and cookies.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api.container import Container
from api.deps import REQUEST_FAILED, ContainerDep, DbSession
from api.web import i18n
from api.web.i18n import LANG_COOKIE, Lang, Texts, pick_language
from api.web.security import CsrfFailed, Form, apply_security_headers, check_origin, read_urlencoded
from api.web.session import COOKIE_NAME, COOKIE_PATH, csrf_matches
from api.web.signin import SignedIn, SignInRequired, WebSignIn
from common.errors import InvalidInput, KhoError, NotFound
from consent.errors import NotAnOfficial
from consent.models import ConsentRequest, Notification, RequestStatus
from identity.repository import AccountRepository, AgencyRepository
from sso.models import WebSession
from storage.db import DatabaseUnavailable

log = structlog.get_logger("kho.web")

HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Post:
    """One official post of the signed-in person."""

    official_id: uuid.UUID
    agency_id: uuid.UUID
    agency_name: str
    roles: frozenset[str]


@dataclass
class PageUser:
    account_id: uuid.UUID
    full_name: str | None
    personal_id: str | None
    eid_level: int | None
    acr: str | None
    auth_time: dt.datetime
    csrf: str
    row: WebSession
    posts: list[Post] = field(default_factory=list)
    pending_requests: int = 0
    unread_notifications: int = 0

    @property
    def is_official(self) -> bool:
        return bool(self.posts)


@dataclass
class Page:
    """Everything a page handler and its template need about the request."""

    request: Request
    container: Container
    lang: Lang
    t: Texts
    set_lang: bool
    user: PageUser | None = None
    row: WebSession | None = None
    clear_cookie: bool = False
    back: str | None = None

    @property
    def dev(self) -> bool:
        return not self.container.settings.is_production

    @property
    def https(self) -> bool:
        return self.container.issuer_url.startswith("https://")

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(
            TEMPLATES.get_template(template).render(page_context(self, context)),
            status_code=status,
            headers={"Content-Language": self.lang},
        )


def page_context(page: Page, context: dict[str, Any]) -> dict[str, Any]:
    request = page.request
    return {
        "page": page,
        "t": page.t,
        "lang": page.lang,
        "user": page.user,
        "csrf": page.user.csrf if page.user else "",
        "dev": page.dev,
        # The language switch reloads this page; after a POST, the page the form came from.
        "path": request.url.path if request.method == "GET" else (page.back or "/web/"),
        "labels": i18n,
        "nav": context.pop("nav", ""),
        "title": context.pop("title", ""),
        **context,
    }


def _lang_of(request: Request) -> tuple[Lang, bool]:
    return pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def _posts(container: Container, session: DbSession, account_id: uuid.UUID) -> list[Post]:
    agencies = AgencyRepository(session)
    posts: list[Post] = []
    for official in agencies.officials_of_account(account_id):
        agency = agencies.get(official.agency_id)
        posts.append(
            Post(
                official_id=official.id,
                agency_id=official.agency_id,
                agency_name=agency.name_vi if agency else "",
                roles=frozenset(role.value for role in official.roles),
            )
        )
    return posts


def load_page(request: Request, container: ContainerDep, session: DbSession) -> Page:
    """The ``Page`` of this request, with the signed-in person if there is one."""
    lang, set_lang = _lang_of(request)
    page = Page(request, container, lang, Texts(lang), set_lang)
    request.state.web = page
    cookie = request.cookies.get(COOKIE_NAME)
    row, signed = WebSignIn(session, container).current(cookie)
    page.row = row
    page.clear_cookie = cookie is not None and row is None
    if signed is not None:
        page.user = _user(container, session, signed)
    return page


def _user(container: Container, session: DbSession, signed: SignedIn) -> PageUser:
    accounts = AccountRepository(session)
    citizen = accounts.citizen(signed.account_id)
    now = container.clock.now()
    pending = session.scalar(
        select(func.count())
        .select_from(ConsentRequest)
        .where(
            ConsentRequest.subject_id == signed.account_id,
            ConsentRequest.status == RequestStatus.pending,
            ConsentRequest.lapses_at > now,
        )
    )
    unread = session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.owner_id == signed.account_id,
            Notification.visible_from <= now,
            Notification.read_at.is_(None),
        )
    )
    return PageUser(
        account_id=signed.account_id,
        full_name=citizen.full_name if citizen else None,
        personal_id=citizen.personal_id if citizen else None,
        eid_level=citizen.eid_level if citizen else None,
        acr=signed.acr,
        auth_time=signed.auth_time,
        csrf=signed.csrf,
        row=signed.row,
        posts=_posts(container, session, signed.account_id),
        pending_requests=int(pending or 0),
        unread_notifications=int(unread or 0),
    )


PageDep = Annotated[Page, Depends(load_page)]


def require_user(page: PageDep) -> PageUser:
    if page.user is None:
        raise SignInRequired()
    return page.user


UserDep = Annotated[PageUser, Depends(require_user)]


async def checked_form(request: Request, page: PageDep) -> Form:
    """A POSTed urlencoded form from a signed-in page: same origin and the right CSRF token."""
    check_origin(request, page.container.issuer_url)
    if page.user is None:
        raise SignInRequired()
    form = await read_urlencoded(request)
    if not csrf_matches(page.user.row, form.get("csrf")):
        raise CsrfFailed()
    return form


FormDep = Annotated[Form, Depends(checked_form)]


def require_official(user: UserDep) -> PageUser:
    if not user.posts:
        raise NotAnOfficial()
    return user


OfficialDep = Annotated[PageUser, Depends(require_official)]


def official_post(user: PageUser, agency_id: str | None) -> Post:
    """The post the official acts in: the one asked for, or their only one."""
    posts = user.posts
    if agency_id:
        posts = [p for p in posts if str(p.agency_id) == agency_id]
    if len(posts) != 1:
        raise NotAnOfficial()
    return posts[0]


# -- errors and the route class ---------------------------------------------------------------


def _fallback_page(request: Request) -> Page:
    page: Page | None = getattr(request.state, "web", None)
    if page is not None:
        return page
    lang, set_lang = _lang_of(request)
    container: Container = request.app.state.container
    return Page(request, container, lang, Texts(lang), set_lang)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (("?" + request.url.query) if request.url.query else "")
    return RedirectResponse("/web/login?" + urlencode({"next": target}), status_code=303)


def error_response(request: Request, exc: KhoError) -> Response:
    page = _fallback_page(request)
    title, detail = page.t.error(exc)
    if request.method == "PUT" or request.headers.get("x-requested-with") == "kho-upload":
        body: dict[str, Any] = {
            "code": exc.code,
            "title": title,
            "detail": detail,
            "status": exc.status,
        }
        fields = exc.extra.get("fields")
        if isinstance(fields, dict):
            body["fields"] = fields
        return JSONResponse(body, status_code=exc.status)
    if exc.status >= 500:
        log.error("page_failed", code=exc.code, error_type=type(exc).__name__)
    return page.render(
        "error.html",
        status=exc.status,
        title=title,
        error_title=title,
        error_detail=detail,
        error_code=exc.code,
        back=page.back,
        sign_in=isinstance(exc, SignInRequired) or exc.code == "reauthentication_required",
    )


class PageNotFound(NotFound):
    code = "page_not_found"
    title_vi = "Không tìm thấy trang"
    title_en = "Page not found"


class InternalPageError(KhoError):
    code = "internal_error"
    status = 500
    title_vi = "Lỗi hệ thống"
    title_en = "Internal error"


def finish(request: Request, response: Response) -> Response:
    page = _fallback_page(request)
    cacheable = request.url.path.startswith("/web/static/")
    apply_security_headers(response, https=page.https, cacheable=cacheable)
    if page.set_lang:
        response.set_cookie(
            LANG_COOKIE,
            page.lang,
            max_age=365 * 24 * 3600,
            path="/",
            secure=page.https,
            httponly=True,
            samesite="lax",
        )
    if page.clear_cookie and COOKIE_NAME not in _set_cookie_names(response):
        response.delete_cookie(
            COOKIE_NAME, path=COOKIE_PATH, secure=page.https, httponly=True, samesite="lax"
        )
    return response


def _set_cookie_names(response: Response) -> set[str]:
    names = set()
    for key, value in response.raw_headers:
        if key == b"set-cookie":
            names.add(value.split(b"=", 1)[0].decode("latin-1"))
    return names


def set_session_cookie(page: Page, response: Response, secret: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        secret,
        path=COOKIE_PATH,
        secure=page.https,
        httponly=True,
        samesite="lax",
    )


class WebRoute(APIRoute):
    """Page routes: HTML errors, sign-in redirects, security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                try:
                    response = await original(request)
                except BaseException:
                    # The error page below is the response: tell the request's unit of work
                    # that it failed, so that it rolls back instead of committing.
                    setattr(request.state, REQUEST_FAILED, True)
                    raise
            except SignInRequired as exc:
                if request.method == "GET":
                    response = login_redirect(request)
                else:
                    response = error_response(request, exc)
            except KhoError as exc:
                response = error_response(request, exc)
            except RequestValidationError:
                response = error_response(request, PageNotFound())
            except HTTPException as exc:
                response = error_response(
                    request, PageNotFound() if exc.status_code == 404 else InternalPageError()
                )
            except DataError as exc:
                # The database refused a value the form or address carried (PostgreSQL: a NUL
                # character, a number beyond a column's range): the caller's input, as in the API.
                log.warning("page_data_refused", error_type=type(exc.orig).__name__)
                response = error_response(request, InvalidInput())
            except OperationalError:
                log.warning("page_database_unavailable")
                response = error_response(request, DatabaseUnavailable())
            except Exception:
                log.exception("page_crashed")
                response = error_response(request, InternalPageError())
            return finish(request, response)

        return handler
