"""Kho's OpenID provider over HTTP: discovery, authorize, token, userinfo, introspection,
revocation, logout, and the return from the national e-ID. The protocol rules live in ``sso/``;
this module only translates between HTTP and the framework-free request type."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Cookie, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from api.deps import ContainerDep, DbSession
from api.errors import problem
from common.errors import InvalidInput, Unauthenticated
from sso.http import Headers, HttpRequest, HttpResponse
from sso.provider import EndUser, user_info
from sso.repository import SsoRepository
from sso.service import SESSION_COOKIE, Outcome, SignOnService

router = APIRouter(tags=["sign-on"])

MAX_FORM_BYTES = 64 * 1024
SessionCookie = Annotated[str | None, Cookie(alias=SESSION_COOKIE)]


def get_sign_on(container: ContainerDep, session: DbSession) -> SignOnService:
    return SignOnService(
        session,
        container.clock,
        issuer=container.issuer_url,
        keys=container.signing_keys,
        tokens=container.issuer,
        upstream=container.upstream,
        http=container.http,
    )


SignOn = Annotated[SignOnService, Depends(get_sign_on)]


class FormTooLarge(InvalidInput):
    code = "form_too_large"
    status = 413
    title_vi = "Biểu mẫu quá lớn"
    title_en = "Form too large"


async def to_http_request(request: Request, container: ContainerDep) -> HttpRequest:
    form: dict[str, list[str]] = {}
    if request.method == "POST":
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise FormTooLarge()
        content_type = request.headers.get("content-type", "")
        if body and not content_type.startswith("application/x-www-form-urlencoded"):
            raise InvalidInput(
                "Cần application/x-www-form-urlencoded.",
                "Expected application/x-www-form-urlencoded.",
            )
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    # The issuer's own URL (not the Host header) is what authlib sees.
    url = container.issuer_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return HttpRequest(request.method, url, Headers(dict(request.headers)), query, form)


OAuthRequest = Annotated[HttpRequest, Depends(to_http_request)]


def to_response(result: HttpResponse) -> Response:
    headers = {name: value for name, value in result.headers}
    if isinstance(result.body, dict | list):
        headers.pop("Content-Type", None)
        return JSONResponse(result.body, status_code=result.status, headers=headers)
    body = result.body if isinstance(result.body, str | bytes) else json.dumps(result.body)
    return Response(body, status_code=result.status, headers=headers)


def _session_cookie(response: Response, value: str | None, *, secure: bool) -> None:
    if value is None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="lax"
        )
        return
    response.set_cookie(
        SESSION_COOKIE,
        value,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
        max_age=8 * 3600,
    )


def to_browser(request: Request, outcome: Outcome, container: ContainerDep) -> Response:
    result = outcome.response
    if result.location is None and result.status >= 400:
        body = result.body if isinstance(result.body, dict) else {}
        error = str(body.get("error", "invalid_request"))
        response: Response = problem(
            request,
            status=400,
            code=f"oauth_{error}",
            title_vi="Yêu cầu đăng nhập không hợp lệ",
            title_en="Invalid sign-in request",
            detail_en=str(body.get("error_description") or error),
            extra={"error": error},
        )
    else:
        response = to_response(result)
    secure = container.issuer_url.startswith("https://")
    if outcome.set_session:
        _session_cookie(response, outcome.set_session, secure=secure)
    if outcome.clear_session:
        _session_cookie(response, None, secure=secure)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/.well-known/openid-configuration", summary="OpenID provider metadata")
def discovery(sign_on: SignOn) -> dict[str, Any]:
    return sign_on.discovery()


# One decorator per method (not ``api_route(methods=[...])``): each method then gets its own
# operationId; with one route FastAPI gave both the same id (a duplicate in /openapi.json).
_AUTHORIZE: dict[str, Any] = {
    "summary": "Authorization endpoint (code flow, PKCE S256 required)",
    "response_class": RedirectResponse,
    "status_code": 302,
}


@router.get("/oauth2/authorize", **_AUTHORIZE)
@router.post("/oauth2/authorize", **_AUTHORIZE)
def authorize(
    request: Request,
    http: OAuthRequest,
    sign_on: SignOn,
    container: ContainerDep,
    kho_sso: SessionCookie = None,
) -> Response:
    return to_browser(request, sign_on.authorize(http, kho_sso), container)


@router.get(
    "/oauth2/eid/callback",
    summary="Return from the national e-ID",
    response_class=RedirectResponse,
    status_code=302,
)
def eid_callback(
    request: Request,
    sign_on: SignOn,
    container: ContainerDep,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Response:
    return to_browser(
        request, sign_on.complete_upstream(state=state, code=code, error=error), container
    )


@router.post("/oauth2/token", summary="Token endpoint")
def token(http: OAuthRequest, sign_on: SignOn) -> Response:
    return to_response(sign_on.token(http))


@router.post("/oauth2/introspect", summary="Token introspection (RFC 7662)")
def introspect(http: OAuthRequest, sign_on: SignOn) -> Response:
    return to_response(sign_on.introspect(http))


@router.post("/oauth2/revoke", summary="Token revocation (RFC 7009)")
def revoke(http: OAuthRequest, sign_on: SignOn) -> Response:
    return to_response(sign_on.revoke(http))


@router.get("/oauth2/userinfo", summary="OpenID UserInfo")
@router.post("/oauth2/userinfo", summary="OpenID UserInfo")
def userinfo(request: Request, container: ContainerDep, session: DbSession) -> dict[str, Any]:
    header = request.headers.get("authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw:
        raise Unauthenticated()
    claims = container.tokens.validate(raw.strip())
    if claims.token_id is None or SsoRepository(session).revoked_jti(claims.token_id):
        raise Unauthenticated()
    import uuid

    try:
        account_id = uuid.UUID(claims.subject)
    except ValueError:
        raise Unauthenticated() from None
    user = EndUser(account_id, claims.acr or "", container.clock.now(), None)
    info: dict[str, Any] = dict(user_info(session, container.clock, user, " ".join(claims.scopes)))
    return info


_LOGOUT: dict[str, Any] = {
    "summary": "RP-initiated logout (ends the SSO session, back-channel logout to clients)",
    "response_class": RedirectResponse,
    "status_code": 302,
}


@router.get("/oauth2/logout", **_LOGOUT)
@router.post("/oauth2/logout", **_LOGOUT)
def logout(
    request: Request,
    http: OAuthRequest,
    sign_on: SignOn,
    container: ContainerDep,
    kho_sso: SessionCookie = None,
) -> Response:
    params = {k: v[0] for k, v in http.params.items() if v}
    outcome = sign_on.end_session(
        kho_sso,
        id_token_hint=params.get("id_token_hint"),
        post_logout_redirect_uri=params.get("post_logout_redirect_uri"),
        state=params.get("state"),
        client_id=params.get("client_id"),
    )
    return to_browser(request, outcome, container)
