"""The pages as a first-party client (``kho-web``) of Kho's own OpenID provider.

Sign-in is the authorization-code flow with PKCE S256, ``state`` and ``nonce``, all three kept in
the server-side web session. The code is exchanged in-process through the provider's own token
endpoint logic (the same authlib grant as ``POST /oauth2/token``), so the pages hold real tokens:
the access token (validated on every request, revocation included, so a logout elsewhere ends
the page session too), the refresh token (rotated when the access token is about to expire) and
the ID token (the ``id_token_hint`` at logout). Tokens never reach the browser.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.container import Container
from api.routers.oidc import get_sign_on
from api.web.session import (
    SESSION_LIFETIME,
    WebSessionStore,
    secret_digest,
)
from common.errors import KhoError, Unauthenticated
from identity.errors import AccountNotFound
from identity.models import AccountStatus
from identity.repository import AccountRepository
from sso.errors import InvalidToken
from sso.federation import pkce_pair
from sso.http import Headers, HttpRequest, HttpResponse
from sso.models import WebSession
from sso.repository import SsoRepository
from sso.service import ClientRegistration, ClientService
from sso.tokens import AccessClaims, AccessTokenValidator
from storage.db import session_scope

WEB_CLIENT_ID = "kho-web"
WEB_SCOPES = ("openid", "profile", "personal_id", "offline_access")
REFRESH_MARGIN = dt.timedelta(seconds=60)


class SignInRequired(Unauthenticated):
    code = "web_sign_in_required"
    title_vi = "Cần đăng nhập"
    title_en = "Sign-in required"


class SignInFailed(KhoError):
    code = "web_sign_in_failed"
    status = 400
    title_vi = "Đăng nhập không thành công"
    title_en = "Sign-in did not complete"


class SignInCancelled(SignInFailed):
    code = "web_sign_in_cancelled"
    title_vi = "Bạn đã huỷ đăng nhập"
    title_en = "You cancelled the sign-in"


def callback_url(container: Container) -> str:
    return container.issuer_url + "/web/callback"


def home_url(container: Container) -> str:
    return container.issuer_url + "/web/"


def web_client_registration(public_url: str) -> ClientRegistration:
    base = public_url.rstrip("/")
    return ClientRegistration(
        client_id=WEB_CLIENT_ID,
        name="Kho — trang web cho công dân và cán bộ",
        kind="portal",
        token_endpoint_auth_method="none",
        redirect_uris=(base + "/web/callback",),
        post_logout_redirect_uris=(base + "/web/",),
        grant_types=("authorization_code", "refresh_token"),
        scopes=WEB_SCOPES,
    )


def ensure_web_client(session: Session, container: Container) -> None:
    """Register ``kho-web`` unless it is already registered exactly so (idempotent, no write
    when nothing changed)."""
    wanted = web_client_registration(container.settings.public_url)
    row = SsoRepository(session).client(WEB_CLIENT_ID)
    if (
        row is not None
        and row.active
        and row.token_endpoint_auth_method == wanted.token_endpoint_auth_method
        and list(row.redirect_uris) == list(wanted.redirect_uris)
        and list(row.post_logout_redirect_uris) == list(wanted.post_logout_redirect_uris)
        and list(row.grant_types) == list(wanted.grant_types)
        and list(row.scopes) == list(wanted.scopes)
    ):
        return
    ClientService(session, container.clock).register(wanted)


def prepare_web(container: Container) -> None:
    """Start-up work of the pages, for ``api.app.prepare``: the ``kho-web`` client.

    Several API processes may start at once: the loser of the insert race finds the winner's
    row on its second look, identical, and writes nothing.
    """
    for attempt in range(2):
        try:
            with session_scope(container.sessions) as session:
                ensure_web_client(session, container)
            return
        except IntegrityError:
            if attempt:
                raise


def _form_request(container: Container, path: str, form: dict[str, str]) -> HttpRequest:
    return HttpRequest(
        "POST",
        container.issuer_url + path,
        Headers({"content-type": "application/x-www-form-urlencoded"}),
        {},
        {k: [v] for k, v in form.items()},
    )


@dataclass(frozen=True)
class SignedIn:
    """The person behind a signed-in web session."""

    row: WebSession
    account_id: uuid.UUID
    acr: str | None
    auth_time: dt.datetime
    csrf: str


class WebSignIn:
    def __init__(self, session: Session, container: Container) -> None:
        self.session = session
        self.container = container
        self.clock = container.clock
        self.store = WebSessionStore(session, container.clock, container.keys)
        self.validator = AccessTokenValidator(
            issuer=container.issuer_url,
            audience=container.settings.api_audience,
            keys=container.signing_keys,
            clock=container.clock,
        )

    # -- the authorization request --------------------------------------------------------------

    def begin(
        self, row: WebSession | None, next_path: str, *, reauthenticate: bool
    ) -> tuple[WebSession, str | None, str]:
        """Record state, nonce and PKCE verifier; returns the row, a new cookie secret (when a
        row was created) and where to send the browser."""
        ensure_web_client(self.session, self.container)
        secret: str | None = None
        self.store.purge_expired()
        if row is None:
            row, secret = self.store.start()
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        row.login_state_hash = secret_digest(state)
        row.login_nonce = nonce
        row.login_verifier = self.store.seal(row, verifier)
        row.login_next = next_path
        if row.account_id is None:
            row.expires_at = max(row.expires_at, self.clock.now() + dt.timedelta(minutes=15))
        self.session.flush()
        params = {
            "response_type": "code",
            "client_id": WEB_CLIENT_ID,
            "redirect_uri": callback_url(self.container),
            "scope": " ".join(WEB_SCOPES),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if reauthenticate:
            params["prompt"] = "login"
            params["max_age"] = "0"
        return row, secret, "/oauth2/authorize?" + urlencode(params)

    # -- the callback ---------------------------------------------------------------------------

    def complete(
        self,
        row: WebSession | None,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        iss: str | None,
    ) -> tuple[WebSession, str, str]:
        """Check the response, exchange the code, open a fresh session; returns it, its cookie
        secret and where to go next."""
        if row is None or row.login_state_hash is None or not state:
            raise SignInFailed(
                "Phiên đăng nhập đã hết hạn hoặc không khớp; vui lòng đăng nhập lại.",
                "The sign-in expired or does not match this browser; please sign in again.",
            )
        if not hmac.compare_digest(row.login_state_hash, secret_digest(state)):
            raise SignInFailed(
                "Phản hồi đăng nhập không khớp với yêu cầu (state); vui lòng đăng nhập lại.",
                "The sign-in response does not match the request (state); please sign in again.",
            )
        next_path = row.login_next or "/web/"
        nonce = row.login_nonce
        verifier = self.store.open(row, row.login_verifier)
        row.login_state_hash = row.login_nonce = row.login_verifier = row.login_next = None
        # Single use, whatever follows: committed now, so a refused response (which rolls the
        # request back) cannot leave the state open for another try.
        self.session.commit()
        if iss is not None and iss != self.container.issuer_url:
            raise SignInFailed(detail_en="Unexpected issuer in the authorization response.")
        if error:
            if error == "access_denied":
                raise SignInCancelled()
            raise SignInFailed(extra={"error": error[:64]})
        if not code or not verifier or not nonce:
            raise SignInFailed()
        sign_on = get_sign_on(self.container, self.session)
        response = sign_on.token(
            _form_request(
                self.container,
                "/oauth2/token",
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": callback_url(self.container),
                    "client_id": WEB_CLIENT_ID,
                    "code_verifier": verifier,
                },
            )
        )
        tokens = _token_body(response)
        id_claims = self._validate_id_token(str(tokens.get("id_token", "")), nonce)
        access = self.validator.validate(str(tokens.get("access_token", "")))
        if access.subject != id_claims["sub"]:
            raise SignInFailed(detail_en="The ID token and the access token disagree.")
        account_id = _account_id(access)
        self._check_account(account_id)
        old_refresh = self.store.open(row, row.refresh_token) if row.account_id else None
        self.store.end(row)
        if old_refresh:
            self._revoke(old_refresh)
        fresh, secret = self.store.start(lifetime=SESSION_LIFETIME)
        auth_time = id_claims.get("auth_time") or access.auth_time
        fresh.account_id = account_id
        fresh.acr = access.acr
        fresh.auth_time = (
            dt.datetime.fromtimestamp(int(auth_time), dt.UTC)
            if auth_time is not None
            else self.clock.now()
        )
        self._store_tokens(fresh, tokens, access)
        self.store.purge_expired()
        self.session.flush()
        return fresh, secret, next_path

    def _validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(id_token, self.container.signing_keys.key_set(), ["ES256"])
            registry = jwt.JWTClaimsRegistry(
                now=int(self.clock.now().timestamp()),
                leeway=60,
                iss={"essential": True, "value": self.container.issuer_url},
                aud={"essential": True, "value": WEB_CLIENT_ID},
                exp={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError, TypeError):
            raise SignInFailed(detail_en="The ID token did not validate.") from None
        return dict(decoded.claims)

    def _store_tokens(self, row: WebSession, tokens: dict[str, Any], access: AccessClaims) -> None:
        row.access_token = self.store.seal(row, str(tokens["access_token"]))
        refresh = tokens.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            row.refresh_token = self.store.seal(row, refresh)
        id_token = tokens.get("id_token")
        if isinstance(id_token, str) and id_token:
            row.id_token = self.store.seal(row, id_token)
        row.access_expires_at = dt.datetime.fromtimestamp(access.expires_at, dt.UTC)

    def _check_account(self, account_id: uuid.UUID) -> None:
        account = AccountRepository(self.session).get(account_id)
        if account is None or account.status != AccountStatus.active:
            raise AccountNotFound()

    # -- every request --------------------------------------------------------------------------

    def current(self, secret: str | None) -> tuple[WebSession | None, SignedIn | None]:
        """The browser's web session and, if it is signed in and its tokens still hold, who.

        An access token about to expire is refreshed (the row is locked so that two requests
        do not both rotate the refresh token, which the provider would treat as reuse). A
        revoked token (logout elsewhere, back-channel logout, erasure) ends the session.
        """
        row = self.store.find(secret)
        if row is None or row.account_id is None:
            return row, None
        now = self.clock.now()
        if row.access_expires_at is None or row.access_expires_at - REFRESH_MARGIN <= now:
            locked = self.store.reload_for_update(row)
            if locked is None:
                return None, None
            row = locked
            if (
                row.access_expires_at is None or row.access_expires_at - REFRESH_MARGIN <= now
            ) and not self._refresh(row):
                self.store.end(row)
                return None, None
        try:
            access = self.validator.validate(self.store.open(row, row.access_token) or "")
        except InvalidToken:
            self.store.end(row)
            return None, None
        if access.token_id is None or SsoRepository(self.session).revoked_jti(access.token_id):
            self.store.end(row)
            return None, None
        account_id = _account_id(access)
        account = AccountRepository(self.session).get(account_id)
        if (
            account is None
            or account.status != AccountStatus.active
            or account_id != row.account_id
        ):
            self.store.end(row)
            return None, None
        return row, SignedIn(
            row=row,
            account_id=account_id,
            acr=row.acr,
            auth_time=row.auth_time or row.created_at,
            csrf=row.csrf_secret,
        )

    def _refresh(self, row: WebSession) -> bool:
        refresh = self.store.open(row, row.refresh_token)
        if not refresh:
            return False
        sign_on = get_sign_on(self.container, self.session)
        response = sign_on.token(
            _form_request(
                self.container,
                "/oauth2/token",
                {
                    "grant_type": "refresh_token",
                    "refresh_token": refresh,
                    "client_id": WEB_CLIENT_ID,
                },
            )
        )
        try:
            tokens = _token_body(response)
            access = self.validator.validate(str(tokens.get("access_token", "")))
        except (SignInFailed, InvalidToken):
            return False
        self._store_tokens(row, tokens, access)
        self.session.flush()
        return True

    # -- sign-out -------------------------------------------------------------------------------

    def sign_out(self, row: WebSession, *, state: str | None = None) -> str:
        """End the page session and its tokens; returns the provider's logout URL (which ends
        the SSO session too and comes back to ``/web/``)."""
        id_token = self.store.open(row, row.id_token)
        refresh = self.store.open(row, row.refresh_token)
        self.store.end(row)
        if refresh:
            self._revoke(refresh)
        params = {
            "client_id": WEB_CLIENT_ID,
            "post_logout_redirect_uri": home_url(self.container),
        }
        if id_token:
            params["id_token_hint"] = id_token
        if state:
            params["state"] = state
        return "/oauth2/logout?" + urlencode(params)

    def _revoke(self, refresh: str) -> None:
        sign_on = get_sign_on(self.container, self.session)
        sign_on.revoke(
            _form_request(
                self.container,
                "/oauth2/revoke",
                {
                    "token": refresh,
                    "token_type_hint": "refresh_token",
                    "client_id": WEB_CLIENT_ID,
                },
            )
        )


def _token_body(response: HttpResponse) -> dict[str, Any]:
    body = response.body
    if response.status != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        raise SignInFailed(
            "Không đổi được mã đăng nhập lấy mã truy cập; vui lòng đăng nhập lại.",
            "The sign-in code could not be exchanged for tokens; please sign in again.",
            extra={"error": str(error)[:64]} if error else None,
        )
    return body


def _account_id(access: AccessClaims) -> uuid.UUID:
    try:
        return uuid.UUID(access.subject)
    except ValueError:
        raise SignInFailed() from None
