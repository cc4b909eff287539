"""Kho's OpenID provider, assembled from authlib's server components.

authlib supplies the protocol machinery (request validation, grants, client authentication,
PKCE, OpenID ID tokens, introspection, revocation, RFC 9207's ``iss``); this module supplies the
storage, the rules Kho insists on, and a framework-free request type (``sso.http``):

* PKCE is required on every authorization-code request, and only ``S256`` is accepted.
* Redirect URIs match exactly (no prefix, no trailing slash, no case folding).
* ``nonce`` is required with the ``openid`` scope and may not repeat for a client.
* A code is single-use: its second presentation fails *and* revokes every token the first
  one produced (RFC 9700 §4.5).
* Refresh tokens rotate; presenting a rotated one revokes the whole family.
* Access tokens are RFC 9068 JWTs (ES256, ``typ: at+jwt``) with audiences per client.
* Agency and operator clients authenticate with ``private_key_jwt`` (preferred) or
  ``client_secret_basic``; assertion ``jti`` values are remembered to stop replay.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from common.clock import Clock
from identity.service import IdentityService
from sso.http import HttpRequest, HttpResponse
from sso.keys import CachedKeys
from sso.models import AuthorizationCode, ClientKind, IssuedToken, OAuthClient
from sso.repository import SsoRepository
from sso.tokens import TokenIssuer

ACCESS_TOKEN_LIFETIME = dt.timedelta(minutes=10)
REFRESH_TOKEN_LIFETIME = dt.timedelta(days=1)
CODE_LIFETIME = dt.timedelta(minutes=2)
DEFAULT_AUDIENCE = "kho-api"
SCOPES_SUPPORTED = ["openid", "profile", "personal_id", "offline_access", "kho:agency", "kho:admin"]
CLIENT_ASSERTION_ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"]


def digest(value: str) -> str:
    """Codes, refresh tokens and session secrets are stored only as SHA-256 digests."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class EndUser:
    """The signed-in person behind an authorization: account, level and session."""

    account_id: uuid.UUID
    acr: str
    auth_time: dt.datetime
    session_id: uuid.UUID | None

    def get_user_id(self) -> str:
        return str(self.account_id)


@dataclass
class ProviderContext:
    session: Session
    clock: Clock
    issuer: str
    keys: CachedKeys
    tokens: TokenIssuer

    @property
    def repo(self) -> SsoRepository:
        return SsoRepository(self.session)

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/oauth2/token"


class ClientCache:
    """Client registrations cached per process for a few seconds: the token endpoint is hot and
    registrations rarely change. A change made in this process is seen at once; one made in
    another process within ``ttl`` seconds. A deactivated client is refused by the API on its
    next call regardless (``api.deps`` reads the client row on every agency request)."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._rows: dict[str, tuple[float, OAuthClient]] = {}
        self._lock = threading.Lock()

    def get(self, client_id: str) -> OAuthClient | None:
        with self._lock:
            hit = self._rows.get(client_id)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            return None
        return hit[1]

    def put(self, row: OAuthClient) -> None:
        snapshot = OAuthClient(
            client_id=row.client_id,
            name=row.name,
            kind=row.kind,
            token_endpoint_auth_method=row.token_endpoint_auth_method,
            secret_hash=row.secret_hash,
            jwks=row.jwks,
            redirect_uris=list(row.redirect_uris),
            post_logout_redirect_uris=list(row.post_logout_redirect_uris),
            backchannel_logout_uri=row.backchannel_logout_uri,
            grant_types=list(row.grant_types),
            scopes=list(row.scopes),
            audiences=list(row.audiences),
            agency_id=row.agency_id,
            active=row.active,
            created_at=row.created_at,
        )
        with self._lock:
            self._rows[row.client_id] = (time.monotonic(), snapshot)

    def forget(self, client_id: str) -> None:
        with self._lock:
            self._rows.pop(client_id, None)


CLIENT_CACHE = ClientCache()


# -- models as authlib sees them --------------------------------------------------------------


class Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id
        self.id_token_signed_response_alg = "ES256"

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Always require redirect_uri: a default would hide mistakes.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.row.scopes
        if not scope:
            return " ".join(s for s in allowed if s != "offline_access")
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact, case-sensitive string comparison (RFC 9700 §4.1.3).
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.row.secret_hash:
            return False
        return hmac.compare_digest(self.row.secret_hash, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return bool(self.row.active) and method == self.row.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return bool(self.row.active) and grant_type in self.row.grant_types


class Code:
    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> str:
        return self.row.acr

    def get_amr(self) -> list[str] | None:
        return ["fed"]


class Token:
    def __init__(self, row: IssuedToken, ctx: ProviderContext, *, is_refresh: bool) -> None:
        self.row = row
        self.ctx = ctx
        self.is_refresh = is_refresh

    def check_client(self, client: Client) -> bool:
        return self.row.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        end = self.row.refresh_expires_at if self.is_refresh else self.row.access_expires_at
        assert end is not None
        return int((end - self.row.issued_at).total_seconds())

    def get_expires_at(self) -> int:
        end = self.row.refresh_expires_at if self.is_refresh else self.row.access_expires_at
        assert end is not None
        return int(end.timestamp())

    def is_expired(self) -> bool:
        end = self.row.refresh_expires_at if self.is_refresh else self.row.access_expires_at
        return end is None or end <= self.ctx.clock.now()

    def is_revoked(self) -> bool:
        if self.row.revoked_at is not None:
            return True
        return self.is_refresh and self.row.rotated_at is not None

    def get_user(self) -> EndUser | None:
        if self.row.account_id is None:
            return None
        return EndUser(
            self.row.account_id,
            self.row.acr or "",
            self.row.auth_time or self.row.issued_at,
            self.row.session_id,
        )

    def get_client(self) -> Client | None:
        row = self.ctx.repo.client(self.row.client_id)
        return Client(row) if row else None


# -- requests ---------------------------------------------------------------------------------


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: dict[str, list[str]]) -> None:
        self._datalist = defaultdict(list, params)
        self._data = {k: v[0] for k, v in params.items() if v}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class KhoOAuth2Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, request: HttpRequest) -> None:
        super().__init__(method=request.method, uri=request.url, headers=request.headers)
        self._http = request
        self.payload = _Payload({k: list(v) for k, v in request.params.items()})
        self._form = {k: v[0] for k, v in request.form.items() if v}
        self._args = {k: v[0] for k, v in request.query.items() if v}

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


# -- extensions -------------------------------------------------------------------------------


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE on every code request, S256 only; ``plain`` and a missing challenge are refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - authlib's class attribute
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE 'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("PKCE is required: missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


class KhoOpenIDCode(OpenIDCode):  # type: ignore[misc]
    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(require_nonce=True)
        self.ctx = ctx

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.ctx.repo.nonce_used(request.payload.client_id, nonce)

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.ctx.keys.signing_key()

    def get_client_algorithm(self, client: Client) -> str:
        return "ES256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "ES256", "kid": self.ctx.keys.signing_key().kid or "", "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(self.ctx.clock.now().timestamp())
        return {
            "iss": self.ctx.issuer,
            "aud": [client.get_client_id()],
            "iat": now,
            "exp": now + int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        }

    def generate_user_info(self, user: EndUser, scope: str) -> UserInfo:
        return user_info(self.ctx.session, self.ctx.clock, user, scope)


def user_info(session: Session, clock: Clock, user: EndUser, scope: str) -> UserInfo:
    """Claims about the person, released by scope: ``profile``, ``personal_id``."""
    scopes = set(scope.split())
    info = UserInfo(sub=str(user.account_id), acr=user.acr)
    if user.session_id is not None:
        info["sid"] = str(user.session_id)
    citizen = IdentityService(session, clock).citizen(user.account_id)
    if citizen is not None:
        if "profile" in scopes:
            info["name"] = citizen.full_name
            if citizen.birth_date:
                info["birthdate"] = citizen.birth_date.isoformat()
            info["eid_level"] = citizen.eid_level
        if "personal_id" in scopes:
            info["personal_id"] = citizen.personal_id
    return info


class KhoIssuerParameter(IssuerParameter):  # type: ignore[misc]
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """``private_key_jwt`` with pinned algorithms and remembered ``jti`` values."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.ctx = ctx

    def get_audiences(self) -> list[str]:
        return [self.ctx.token_endpoint, self.ctx.issuer]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        expires = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC)
        return self.ctx.repo.remember_assertion(str(claims["sub"]), str(jti), expires)

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if not client.row.jwks:
            raise InvalidClientError(description="The client has no registered keys.")
        return KeySet.import_key_set(cast("Any", client.row.jwks))

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=CLIENT_ASSERTION_ALGORITHMS)
        except JoseError as exc:
            raise InvalidClientError(description="Invalid client assertion.") from exc
        self.verify_claims(token.claims)
        return token.claims


# -- grants -----------------------------------------------------------------------------------

_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class KhoAuthorizationCodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _AUTH_METHODS

    @property
    def ctx(self) -> ProviderContext:
        ctx: ProviderContext = self.server.ctx
        return ctx

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: EndUser = request.user
        now = self.ctx.clock.now()
        data = request.payload.data
        self.ctx.repo.add(
            AuthorizationCode(
                code_hash=digest(code),
                client_id=request.client.get_client_id(),
                account_id=user.account_id,
                session_id=user.session_id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope or "",
                nonce=data.get("nonce"),
                code_challenge=data["code_challenge"],
                code_challenge_method=data.get("code_challenge_method", "S256"),
                acr=user.acr,
                auth_time=user.auth_time,
                created_at=now,
                expires_at=now + CODE_LIFETIME,
            )
        )
        self.ctx.session.flush()

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        row = self.ctx.repo.code(digest(code), client.get_client_id())
        if row is None:
            return None
        now = self.ctx.clock.now()
        if row.used_at is not None:
            # Replay of a used code: refuse, and revoke what its first use produced.
            self.ctx.repo.revoke_by_code(row.code_hash, now)
            return None
        if row.expires_at <= now:
            return None
        return Code(row)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        authorization_code.row.used_at = self.ctx.clock.now()

    def authenticate_user(self, authorization_code: Code) -> EndUser:
        row = authorization_code.row
        return EndUser(row.account_id, row.acr, row.auth_time, row.session_id)


class KhoRefreshTokenGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def ctx(self) -> ProviderContext:
        ctx: ProviderContext = self.server.ctx
        return ctx

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        row = self.ctx.repo.token_by_refresh(digest(refresh_token))
        if row is None:
            return None
        now = self.ctx.clock.now()
        if row.rotated_at is not None or row.revoked_at is not None:
            # Reuse of a rotated (or revoked) refresh token: the family is compromised.
            self.ctx.repo.revoke_family(row.family_id, now)
            return None
        if row.refresh_expires_at is None or row.refresh_expires_at <= now:
            return None
        return Token(row, self.ctx, is_refresh=True)

    def authenticate_user(self, refresh_token: Token) -> EndUser | None:
        return refresh_token.get_user()

    def revoke_old_credential(self, refresh_token: Token) -> None:
        refresh_token.row.rotated_at = self.ctx.clock.now()

    def issue_token(self, user: EndUser, refresh_token: Token) -> dict[str, Any]:
        self.request.previous_token = refresh_token.row
        token: dict[str, Any] = super().issue_token(user, refresh_token)
        return token


class KhoClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]  # noqa: RUF012


# -- introspection and revocation -------------------------------------------------------------


def _find_token(ctx: ProviderContext, token_string: str, hint: str | None) -> Token | None:
    if hint != "refresh_token" and token_string.count(".") == 2:
        try:
            payload = token_string.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            jti = claims.get("jti") if isinstance(claims, dict) else None
        except (ValueError, TypeError):
            jti = None
        if isinstance(jti, str):
            # Only a token Kho itself signed counts: check the signature first.
            try:
                verified = jwt.decode(token_string, ctx.keys.key_set(), algorithms=["ES256"])
            except JoseError:
                return None
            row = ctx.repo.token_by_jti(jti)
            if row is None:
                row = _stateless_row(verified.claims)
            if row is not None:
                return Token(row, ctx, is_refresh=False)
    row = ctx.repo.token_by_refresh(digest(token_string))
    if row is not None:
        return Token(row, ctx, is_refresh=True)
    return None


def _stateless_row(claims: dict[str, Any]) -> IssuedToken | None:
    """A client-credentials access token is not stored (it has no user, session or refresh
    token); introspection and revocation see it through a transient row built from its claims.
    Revoking one stores a row, which the API's revocation check then finds."""
    try:
        issued = dt.datetime.fromtimestamp(int(claims["iat"]), dt.UTC)
        expires = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC)
        client_id = str(claims["client_id"])
    except (KeyError, TypeError, ValueError):
        return None
    if claims.get("sub") != client_id:
        return None
    return IssuedToken(
        id=uuid.uuid4(),
        family_id=uuid.uuid4(),
        client_id=client_id,
        account_id=None,
        scope=str(claims.get("scope", "")),
        access_jti=str(claims["jti"]),
        issued_at=issued,
        access_expires_at=expires,
    )


class KhoIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]  # noqa: RUF012

    @property
    def ctx(self) -> ProviderContext:
        ctx: ProviderContext = self.server.ctx
        return ctx

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _find_token(self.ctx, token_string, token_type_hint)

    def check_permission(self, token: Token, client: Client, request: OAuth2Request) -> bool:
        # A client may introspect its own tokens; operator tools may introspect any.
        return token.check_client(client) or client.row.kind == ClientKind.operator

    def introspect_token(self, token: Token) -> dict[str, Any]:
        row = token.row
        return {
            "active": True,
            "client_id": row.client_id,
            "token_type": "refresh_token" if token.is_refresh else "Bearer",
            "scope": row.scope,
            "sub": str(row.account_id) if row.account_id else row.client_id,
            "aud": DEFAULT_AUDIENCE,
            "iss": self.ctx.issuer,
            "exp": token.get_expires_at(),
            "iat": int(row.issued_at.timestamp()),
            "acr": row.acr,
        }


class KhoRevocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]  # noqa: RUF012

    @property
    def ctx(self) -> ProviderContext:
        ctx: ProviderContext = self.server.ctx
        return ctx

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _find_token(self.ctx, token_string, token_type_hint)

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        now = self.ctx.clock.now()
        if token.is_refresh:
            self.ctx.repo.revoke_family(token.row.family_id, now)
            return
        token.row.revoked_at = now
        if token.row not in self.ctx.session:
            self.ctx.repo.add(token.row)


# -- the server -------------------------------------------------------------------------------


class KhoAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(scopes_supported=SCOPES_SUPPORTED)
        self.ctx = ctx
        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(ctx))
        self.register_grant(
            KhoAuthorizationCodeGrant, [S256Only(required=True), KhoOpenIDCode(ctx)]
        )
        self.register_grant(KhoRefreshTokenGrant)
        self.register_grant(KhoClientCredentialsGrant)
        self.register_endpoint(KhoIntrospection)
        self.register_endpoint(KhoRevocation)
        self.register_extension(KhoIssuerParameter(ctx.issuer))

    # authlib's integration points

    def query_client(self, client_id: str) -> Client | None:
        row = CLIENT_CACHE.get(client_id)
        if row is None:
            row = self.ctx.repo.client(client_id)
            if row is not None:
                CLIENT_CACHE.put(row)
        return Client(row) if row is not None and row.active else None

    def create_oauth2_request(self, request: HttpRequest | OAuth2Request) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return KhoOAuth2Request(request)

    def create_json_request(self, request: HttpRequest) -> OAuth2Request:
        return KhoOAuth2Request(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> HttpResponse:
        return HttpResponse(status, body, list(headers or []))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    # tokens

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: EndUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        scopes = (scope or "").split()
        audiences = client.row.audiences or [DEFAULT_AUDIENCE]
        access = self.ctx.tokens.access_token(
            subject=str(user.account_id) if user else client.get_client_id(),
            audience=audiences,
            client_id=client.get_client_id(),
            scopes=scopes,
            acr=user.acr if user else None,
            auth_time=user.auth_time if user else None,
            lifetime=ACCESS_TOKEN_LIFETIME,
            extra={"sid": str(user.session_id)} if user and user.session_id else None,
        )
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
            "scope": scope or "",
        }
        if include_refresh_token and user is not None:
            token["refresh_token"] = secrets.token_urlsafe(48)
        return token

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        user: EndUser | None = request.user
        if user is None and "refresh_token" not in token:
            # Client credentials: a short-lived JWT with nothing to rotate or end; it is not
            # stored (see _stateless_row). The API still checks the client on every call.
            return
        now = self.ctx.clock.now()
        payload = token["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        previous: IssuedToken | None = getattr(request, "previous_token", None)
        code = getattr(request, "authorization_code", None)
        refresh = token.get("refresh_token")
        row = IssuedToken(
            id=uuid.uuid4(),
            family_id=previous.family_id if previous else uuid.uuid4(),
            client_id=request.client.get_client_id(),
            account_id=user.account_id if user else None,
            session_id=user.session_id if user else None,
            code_hash=code.row.code_hash if isinstance(code, Code) else None,
            scope=token.get("scope", ""),
            acr=user.acr if user else None,
            auth_time=user.auth_time if user else None,
            access_jti=str(claims["jti"]),
            refresh_hash=digest(refresh) if refresh else None,
            issued_at=now,
            access_expires_at=now + ACCESS_TOKEN_LIFETIME,
            refresh_expires_at=now + REFRESH_TOKEN_LIFETIME if refresh else None,
        )
        self.ctx.repo.add(row)
        if user is not None and user.session_id is not None:
            self.ctx.repo.add_participant(user.session_id, request.client.get_client_id())
        self.ctx.session.flush()
