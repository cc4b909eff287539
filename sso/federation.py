"""Kho as an OpenID relying party of the national e-ID (VNeID, or the development simulator).

Every upstream login uses PKCE (S256), a fresh ``state`` and ``nonce``; the ID token is checked
with a pinned algorithm list against keys from the provider's published JWKS, and its issuer,
audience, expiry, issue time and nonce must all match. Only then is the person enrolled.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError

from common.clock import Clock
from common.errors import KhoError, ServiceUnavailable
from identity.service import CitizenProfile
from sso.tokens import KeySource

ID_TOKEN_ALGORITHMS = ("RS256", "ES256", "PS256")
LEEWAY_SECONDS = 60


class UpstreamLoginFailed(KhoError):
    """The national e-ID did not vouch for the person (an opaque reason is logged, not shown)."""

    code = "upstream_login_failed"
    status = 400
    title_vi = "Đăng nhập qua VNeID không thành công"
    title_en = "Sign-in through VNeID failed"


class UpstreamUnavailable(ServiceUnavailable):
    code = "upstream_unavailable"
    title_vi = "Hệ thống định danh điện tử quốc gia tạm thời không phản hồi"
    title_en = "The national e-ID does not answer"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


@dataclass(frozen=True)
class UpstreamIdentity:
    profile: CitizenProfile
    acr: str
    id_token: str


def level_to_acr(level: int) -> str:
    return f"vneid-{level}"


def acr_to_level(acr: str | None) -> int:
    if acr and acr.startswith("vneid-") and acr[6:].isdigit():
        return int(acr[6:])
    return 0


class UpstreamProvider:
    def __init__(
        self,
        *,
        discovery_url: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        http: httpx.Client,
        keys_factory: Any,
        clock: Clock,
        scope: str = "openid profile",
    ) -> None:
        self.discovery_url = discovery_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.http = http
        self.clock = clock
        self.scope = scope
        self._keys_factory = keys_factory
        self._keys: KeySource | None = None
        self._metadata: dict[str, Any] | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None or time.monotonic() - self._loaded_at > 3600:
                try:
                    response = self.http.get(self.discovery_url, timeout=10)
                    response.raise_for_status()
                    data = response.json()
                except (httpx.HTTPError, ValueError):
                    if self._metadata is None:
                        raise UpstreamUnavailable() from None
                    return self._metadata
                issuer = data.get("issuer")
                if not isinstance(issuer, str) or not self.discovery_url.startswith(issuer):
                    raise UpstreamUnavailable(
                        detail_en="the e-ID discovery document names another issuer"
                    )
                self._metadata = data
                self._loaded_at = time.monotonic()
                self._keys = self._keys_factory(issuer, self.http)
            return self._metadata

    @property
    def issuer(self) -> str:
        return str(self.metadata()["issuer"])

    def authorization_url(
        self, *, state: str, nonce: str, code_challenge: str, prompt: str | None = None
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        if prompt:
            params["prompt"] = prompt
        endpoint = str(self.metadata()["authorization_endpoint"])
        separator = "&" if "?" in endpoint else "?"
        return endpoint + separator + urlencode(params)

    def exchange(self, *, code: str, code_verifier: str, nonce: str) -> UpstreamIdentity:
        metadata = self.metadata()
        try:
            response = self.http.post(
                str(metadata["token_endpoint"]),
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "code_verifier": code_verifier,
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
                timeout=15,
            )
        except httpx.HTTPError:
            raise UpstreamUnavailable() from None
        if response.status_code != 200:
            raise UpstreamLoginFailed()
        try:
            id_token = str(response.json()["id_token"])
        except (ValueError, KeyError, TypeError):
            raise UpstreamLoginFailed() from None
        return self.validate_id_token(id_token, nonce=nonce)

    def validate_id_token(self, id_token: str, *, nonce: str) -> UpstreamIdentity:
        issuer = self.issuer
        assert self._keys is not None
        try:
            kid = _kid(id_token)
            decoded = jwt.decode(
                id_token, self._keys.key_set(kid), algorithms=list(ID_TOKEN_ALGORITHMS)
            )
            now = int(self.clock.now().timestamp())
            jwt.JWTClaimsRegistry(
                now=now,
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                iat={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError, TypeError, IndexError):
            raise UpstreamLoginFailed() from None
        claims = decoded.claims
        azp = claims.get("azp")
        if azp is not None and azp != self.client_id:
            raise UpstreamLoginFailed()
        return UpstreamIdentity(profile_from_claims(claims), _acr(claims), id_token)


def _kid(token: str) -> str | None:
    head = token.split(".", maxsplit=1)[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def _acr(claims: dict[str, Any]) -> str:
    try:
        level = int(str(claims.get("eid_level", "1")))
    except ValueError:
        level = 1
    return level_to_acr(level if level in (1, 2) else 1)


def profile_from_claims(claims: dict[str, Any]) -> CitizenProfile:
    pin = claims.get("personal_id")
    name = claims.get("name")
    if not isinstance(pin, str) or not isinstance(name, str):
        raise UpstreamLoginFailed()
    birth = claims.get("birthdate")
    try:
        birth_date = dt.date.fromisoformat(birth) if isinstance(birth, str) else None
    except ValueError:
        birth_date = None
    return CitizenProfile(
        national_subject=str(claims["sub"]),
        personal_id=pin,
        full_name=name,
        birth_date=birth_date,
        eid_level=acr_to_level(_acr(claims)),
    )
