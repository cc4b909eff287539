"""Sign-on rules: SSO sessions, the authorization flow around upstream login, logout.

The flow of ``/oauth2/authorize``:

1. authlib validates the request (client, exact redirect URI, PKCE S256, nonce, prompt);
   errors that may not be redirected become an error page, the others go back to the client.
2. If there is no SSO session, or ``prompt=login``, or the session is older than ``max_age``,
   or its level is below ``acr_values``, the person is sent to the national e-ID: the original
   request is kept server-side under a one-time ``state``.
3. Otherwise a code is issued and the browser goes back to the client with ``code``, ``state``
   and ``iss`` (RFC 9207).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oidc.core.errors import LoginRequiredError
from joserfc import jwt
from sqlalchemy.orm import Session

from common.clock import Clock
from identity.service import IdentityService
from sso.federation import (
    UpstreamLoginFailed,
    UpstreamProvider,
    acr_to_level,
    level_to_acr,
    pkce_pair,
)
from sso.http import Headers, HttpRequest, HttpResponse
from sso.keys import CachedKeys
from sso.models import FederationLogin, OAuthClient, SsoSession
from sso.provider import CLIENT_CACHE, EndUser, KhoAuthorizationServer, ProviderContext, digest
from sso.repository import SsoRepository
from sso.tokens import TokenIssuer
from storage.db import after_commit

SESSION_COOKIE = "kho_sso"
SESSION_LIFETIME = dt.timedelta(hours=8)
FEDERATION_LIFETIME = dt.timedelta(minutes=10)
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class Outcome:
    """What the web layer must do: a response, maybe with the session cookie set or cleared."""

    response: HttpResponse
    set_session: str | None = None
    clear_session: bool = False
    page: dict[str, Any] = field(default_factory=dict)


def _with_params(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


class SignOnService:
    def __init__(
        self,
        session: Session,
        clock: Clock,
        *,
        issuer: str,
        keys: CachedKeys,
        tokens: TokenIssuer,
        upstream: UpstreamProvider,
        http: httpx.Client | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.issuer = issuer
        self.repo = SsoRepository(session)
        self.keys = keys
        self.tokens = tokens
        self.upstream = upstream
        self.http = http
        self.ctx = ProviderContext(session, clock, issuer, keys, tokens)

    def server(self) -> KhoAuthorizationServer:
        return KhoAuthorizationServer(self.ctx)

    # -- sessions -----------------------------------------------------------------------------

    def current_user(self, secret: str | None) -> EndUser | None:
        if not secret:
            return None
        row = self.repo.live_session(digest(secret), self.clock.now())
        if row is None:
            return None
        return EndUser(row.account_id, row.acr, row.auth_time, row.id)

    def _start_session(
        self, account_id: uuid.UUID, acr: str, id_token: str
    ) -> tuple[SsoSession, str]:
        secret = secrets.token_urlsafe(32)
        now = self.clock.now()
        row = SsoSession(
            id=uuid.uuid4(),
            secret_hash=digest(secret),
            account_id=account_id,
            acr=acr,
            auth_time=now,
            upstream_id_token=id_token,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
        self.repo.add(row)
        self.session.flush()
        return row, secret

    # -- authorization ------------------------------------------------------------------------

    def authorize(self, request: HttpRequest, session_secret: str | None) -> Outcome:
        server = self.server()
        user = self.current_user(session_secret)
        oauth_request = server.create_oauth2_request(request)
        try:
            grant = server.get_consent_grant(oauth_request, end_user=user)
        except OAuth2Error as refused:
            return Outcome(self._error(server, oauth_request, refused))
        params = oauth_request.payload.data
        if self._needs_login(user, params):
            if "none" in (params.get("prompt") or "").split():
                login_required = LoginRequiredError(redirect_uri=params["redirect_uri"])
                login_required.state = params.get("state")
                return Outcome(self._error(server, oauth_request, login_required))
            return Outcome(self._send_upstream(request))
        unmet = self._unmet_acr(user, params)
        if unmet is not None:
            return Outcome(self._error(server, oauth_request, unmet))
        assert user is not None
        response = server.create_authorization_response(oauth_request, grant_user=user, grant=grant)
        return Outcome(response)

    def _needs_login(self, user: EndUser | None, params: dict[str, str]) -> bool:
        if user is None:
            return True
        prompts = (params.get("prompt") or "").split()
        if "login" in prompts:
            return True
        max_age = params.get("max_age")
        if max_age is not None:
            try:
                age_limit = int(max_age)
            except ValueError:
                age_limit = 0
            if (self.clock.now() - user.auth_time).total_seconds() > age_limit:
                return True
        return False

    def _unmet_acr(self, user: EndUser | None, params: dict[str, str]) -> OAuth2Error | None:
        wanted = (params.get("acr_values") or "").split()
        if not wanted or user is None:
            return None
        level = acr_to_level(user.acr)
        if any(acr_to_level(acr) and acr_to_level(acr) <= level for acr in wanted):
            return None
        error = OAuth2Error(
            description="The e-ID level of this account is below what the client requires.",
            redirect_uri=params["redirect_uri"],
        )
        error.error = "unmet_authentication_requirements"
        error.state = params.get("state")
        return error

    def _error(
        self, server: KhoAuthorizationServer, oauth_request: Any, error: OAuth2Error
    ) -> HttpResponse:
        response: HttpResponse = server.handle_error_response(oauth_request, error)
        location = response.location
        if location:
            # RFC 9207: error responses carry the issuer too.
            response.location = _with_params(location, {"iss": self.issuer})
        return response

    def _send_upstream(self, request: HttpRequest) -> HttpResponse:
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        now = self.clock.now()
        # A fresh login satisfies prompt=login and max_age: they are not replayed on resume.
        resume = {k: list(v) for k, v in request.params.items() if k not in ("prompt", "max_age")}
        self.repo.add(
            FederationLogin(
                state_hash=digest(state),
                nonce=nonce,
                code_verifier=verifier,
                resume=resume,
                created_at=now,
                expires_at=now + FEDERATION_LIFETIME,
            )
        )
        self.session.flush()
        prompts = (request.params.get("prompt") or [""])[0].split()
        url = self.upstream.authorization_url(
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            prompt="login" if "login" in prompts or "max_age" in request.params else None,
        )
        return HttpResponse(302, "", [("Location", url)])

    def complete_upstream(
        self, *, state: str | None, code: str | None, error: str | None
    ) -> Outcome:
        """The national e-ID sent the person back: enrol, open a session, resume the request."""
        if not state:
            raise UpstreamLoginFailed()
        login = self.repo.federation_login(digest(state))
        now = self.clock.now()
        if login is None or login.used_at is not None or login.expires_at <= now:
            raise UpstreamLoginFailed()
        login.used_at = now
        resume = login.resume
        if error or not code:
            # The person cancelled at the e-ID: tell the client, as OpenID Connect says.
            redirect_uri = (resume.get("redirect_uri") or [""])[0]
            client = self.repo.client((resume.get("client_id") or [""])[0])
            if client is None or redirect_uri not in client.redirect_uris:
                raise UpstreamLoginFailed()
            params = {"error": "access_denied", "iss": self.issuer}
            if resume.get("state"):
                params["state"] = resume["state"][0]
            return Outcome(
                HttpResponse(302, "", [("Location", _with_params(redirect_uri, params))])
            )
        identity = self.upstream.exchange(
            code=code, code_verifier=login.code_verifier, nonce=login.nonce
        )
        account = IdentityService(self.session, self.clock).enrol_citizen(identity.profile)
        _row, secret = self._start_session(account.id, identity.acr, identity.id_token)
        request = HttpRequest(
            method="GET",
            url=self.issuer + "/oauth2/authorize",
            headers=Headers({}),
            query=resume,
        )
        outcome = self.authorize(request, secret)
        outcome.set_session = secret
        return outcome

    # -- tokens and logout --------------------------------------------------------------------

    def token(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.server().create_token_response(request)
        return response

    def introspect(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.server().create_endpoint_response("introspection", request)
        return response

    def revoke(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.server().create_endpoint_response("revocation", request)
        return response

    def end_session(
        self,
        session_secret: str | None,
        *,
        id_token_hint: str | None,
        post_logout_redirect_uri: str | None,
        state: str | None,
        client_id: str | None,
    ) -> Outcome:
        """RP-initiated logout: end the SSO session, revoke its tokens, tell every client."""
        client: OAuthClient | None = None
        hinted_session: uuid.UUID | None = None
        if id_token_hint:
            try:
                hint = jwt.decode(id_token_hint, self.keys.key_set(), algorithms=["ES256"])
                if hint.claims.get("iss") == self.issuer:
                    aud = hint.claims.get("aud")
                    client_id = client_id or (aud[0] if isinstance(aud, list) else aud)
                    sid = hint.claims.get("sid")
                    hinted_session = uuid.UUID(sid) if isinstance(sid, str) else None
            except (ValueError, TypeError, IndexError, Exception):  # noqa: BLE001 - any bad hint is ignored
                hinted_session = None
        if client_id:
            client = self.repo.client(client_id)
        target: SsoSession | None = None
        if session_secret:
            target = self.repo.live_session(digest(session_secret), self.clock.now())
        if target is None and hinted_session is not None:
            target = self.repo.session_by_id(hinted_session)
        if target is not None and target.ended_at is None:
            self._end(target)
        redirect = "/"
        if post_logout_redirect_uri:
            if client is None or post_logout_redirect_uri not in client.post_logout_redirect_uris:
                return Outcome(
                    HttpResponse(
                        400,
                        {
                            "error": "invalid_request",
                            "error_description": "post_logout_redirect_uri is not registered",
                        },
                    ),
                    clear_session=True,
                )
            redirect = post_logout_redirect_uri
            if state:
                redirect = _with_params(redirect, {"state": state})
        return Outcome(HttpResponse(302, "", [("Location", redirect)]), clear_session=True)

    def _end(self, target: SsoSession) -> None:
        now = self.clock.now()
        target.ended_at = now
        self.repo.revoke_session_tokens(target.id, now)
        notices: list[tuple[str, str]] = []
        for client_id in self.repo.participants(target.id):
            client = self.repo.client(client_id)
            if client is not None and client.backchannel_logout_uri:
                notices.append(
                    (client.backchannel_logout_uri, self._logout_token(client_id, target))
                )
        self.session.flush()
        if notices and self.http is not None:
            http = self.http

            def notify() -> None:
                for uri, token in notices:
                    try:
                        http.post(uri, data={"logout_token": token}, timeout=5)
                    except httpx.HTTPError:
                        continue

            after_commit(self.session, notify)

    def _logout_token(self, client_id: str, target: SsoSession) -> str:
        key = self.keys.signing_key()
        now = int(self.clock.now().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_urlsafe(16),
            "sub": str(target.account_id),
            "sid": str(target.id),
            "events": {BACKCHANNEL_EVENT: {}},
        }
        return jwt.encode(
            {"alg": "ES256", "kid": key.kid or "", "typ": "logout+jwt"},
            claims,
            key,
            algorithms=["ES256"],
        )

    def discovery(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": base + "/oauth2/authorize",
            "token_endpoint": base + "/oauth2/token",
            "userinfo_endpoint": base + "/oauth2/userinfo",
            "jwks_uri": base + "/.well-known/jwks.json",
            "introspection_endpoint": base + "/oauth2/introspect",
            "revocation_endpoint": base + "/oauth2/revoke",
            "end_session_endpoint": base + "/oauth2/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "token_endpoint_auth_signing_alg_values_supported": [
                "ES256",
                "RS256",
                "PS256",
                "EdDSA",
            ],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": [
                "openid",
                "profile",
                "personal_id",
                "offline_access",
                "kho:agency",
            ],
            "claims_supported": [
                "sub",
                "name",
                "birthdate",
                "personal_id",
                "eid_level",
                "acr",
                "sid",
                "auth_time",
            ],
            "acr_values_supported": [level_to_acr(1), level_to_acr(2)],
            "authorization_response_iss_parameter_supported": True,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "request_parameter_supported": False,
            "claims_parameter_supported": False,
        }


@dataclass(frozen=True)
class ClientRegistration:
    client_id: str
    name: str
    kind: str
    token_endpoint_auth_method: str
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    grant_types: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ("kho-api",)
    jwks: dict[str, Any] | None = None
    agency_id: uuid.UUID | None = None


class ClientService:
    """Registration of the provider's clients (operators and the embedded default's demo)."""

    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.repo = SsoRepository(session)
        self.clock = clock

    def register(self, registration: ClientRegistration) -> tuple[OAuthClient, str | None]:
        """Create or replace a client; returns it and, for secret-based clients, a new secret."""
        secret: str | None = None
        if registration.token_endpoint_auth_method in ("client_secret_basic", "client_secret_post"):
            secret = secrets.token_urlsafe(32)
        row = self.repo.client(registration.client_id)
        if row is None:
            row = OAuthClient(client_id=registration.client_id, created_at=self.clock.now())
            self.repo.add(row)
        row.name = registration.name
        row.kind = registration.kind  # type: ignore[assignment]
        row.token_endpoint_auth_method = registration.token_endpoint_auth_method
        row.secret_hash = digest(secret) if secret else None
        row.jwks = registration.jwks
        row.redirect_uris = list(registration.redirect_uris)
        row.post_logout_redirect_uris = list(registration.post_logout_redirect_uris)
        row.backchannel_logout_uri = registration.backchannel_logout_uri
        row.grant_types = list(registration.grant_types)
        row.scopes = list(registration.scopes)
        row.audiences = list(registration.audiences)
        row.agency_id = registration.agency_id
        row.active = True
        self.session.flush()
        CLIENT_CACHE.forget(row.client_id)
        return row, secret
