"""JWT access tokens (RFC 9068): issued by Kho's provider, validated by the API.

Validation pins the algorithm list, requires ``iss``, ``aud``, ``exp``, ``iat`` and ``sub``,
checks ``nbf`` and allows a bounded clock skew. Every failure is the same :class:`InvalidToken`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from common.clock import Clock
from sso.errors import InvalidToken

ACCESS_TOKEN_TYPE = "at+jwt"
MAX_TOKEN_LENGTH = 8192


class KeySource(Protocol):
    def key_set(self, kid: str | None = None) -> KeySet: ...


class SigningKeySource(Protocol):
    def signing_key(self) -> ECKey: ...


@dataclass(frozen=True)
class AccessClaims:
    subject: str
    issuer: str
    audience: tuple[str, ...]
    client_id: str | None
    scopes: frozenset[str]
    acr: str | None
    auth_time: int | None
    token_id: str | None
    expires_at: int
    raw: dict[str, Any]


class TokenIssuer:
    def __init__(self, issuer: str, keys: SigningKeySource, clock: Clock) -> None:
        self.issuer = issuer
        self.keys = keys
        self.clock = clock

    def access_token(
        self,
        *,
        subject: str,
        audience: str | Sequence[str],
        client_id: str,
        scopes: Sequence[str] = (),
        acr: str | None = None,
        auth_time: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
        extra: dict[str, Any] | None = None,
    ) -> str:
        now = self.clock.now()
        key = self.keys.signing_key()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience if isinstance(audience, str) else list(audience),
            "client_id": client_id,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + lifetime).timestamp()),
            "jti": secrets.token_urlsafe(16),
        }
        if scopes:
            claims["scope"] = " ".join(scopes)
        if acr:
            claims["acr"] = acr
        if auth_time:
            claims["auth_time"] = int(auth_time.timestamp())
        claims.update(extra or {})
        header = {"alg": "ES256", "kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
        return jwt.encode(header, claims, key, algorithms=["ES256"])


def _peek_header(token: str) -> dict[str, Any]:
    import base64

    try:
        head = token.split(".", 1)[0]
        data = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        value = json.loads(data)
    except (ValueError, IndexError):
        raise InvalidToken() from None
    if not isinstance(value, dict):
        raise InvalidToken()
    return value


class AccessTokenValidator:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySource,
        clock: Clock,
        algorithms: Sequence[str] = ("ES256",),
        leeway_seconds: int = 60,
        required_type: str | None = ACCESS_TOKEN_TYPE,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.clock = clock
        self.algorithms = list(algorithms)
        self.leeway = leeway_seconds
        self.required_type = required_type

    def validate(self, token: str) -> AccessClaims:
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken()
        header = _peek_header(token)
        if header.get("alg") not in self.algorithms:
            raise InvalidToken()
        if self.required_type and str(header.get("typ", "")).lower() not in (
            self.required_type,
            "application/" + self.required_type,
        ):
            raise InvalidToken()
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken()
        key_set = self.keys.key_set(kid)
        try:
            decoded = jwt.decode(token, key_set, algorithms=self.algorithms)
            now = int(self.clock.now().timestamp())
            registry = jwt.JWTClaimsRegistry(
                now=now,
                leeway=self.leeway,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
                iat={"essential": True},
                sub={"essential": True},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError, TypeError):
            raise InvalidToken() from None
        claims = decoded.claims
        iat = claims.get("iat")
        if not isinstance(iat, int) or iat > now + self.leeway:
            raise InvalidToken()
        aud = claims["aud"]
        audience = (aud,) if isinstance(aud, str) else tuple(str(a) for a in aud)
        scope = claims.get("scope", "")
        return AccessClaims(
            subject=str(claims["sub"]),
            issuer=str(claims["iss"]),
            audience=audience,
            client_id=claims.get("client_id") or claims.get("azp"),
            scopes=frozenset(str(scope).split()) if scope else frozenset(),
            acr=claims.get("acr"),
            auth_time=claims.get("auth_time"),
            token_id=claims.get("jti"),
            expires_at=int(claims["exp"]),
            raw=dict(claims),
        )
