"""A development stand-in for the national e-ID (VNeID), for the embedded default only.

It is a small but honest OpenID provider: discovery, JWKS, an authorization endpoint where a
developer picks one of the sample citizens, and a token endpoint that checks the client secret,
the redirect URI and the PKCE verifier and returns an RS256-signed ID token. Kho talks to it
through exactly the same relying-party code as to the real e-ID; only the transport differs
(``transport()`` answers in-process, so the embedded default needs no second server).
Production start-up refuses it (``KHO_EID_SIMULATOR``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from common.clock import Clock


@dataclass(frozen=True)
class SampleCitizen:
    personal_id: str
    full_name: str
    birthdate: str
    eid_level: int
    gender: str

    @property
    def subject(self) -> str:
        # A stable, opaque subject per sample citizen, like a real provider's.
        return "sim-" + hashlib.sha256(self.personal_id.encode()).hexdigest()[:24]


SAMPLE_CITIZENS: tuple[SampleCitizen, ...] = (
    SampleCitizen("019090001234", "Nguyễn Văn An", "1990-03-15", 2, "male"),
    SampleCitizen("001185004321", "Trần Thị Bình", "1985-11-02", 2, "female"),
    SampleCitizen("079312000789", "Phạm Ngọc Hân", "2012-09-05", 2, "female"),
    SampleCitizen("048200005678", "Võ Đức Thắng", "2000-12-24", 1, "male"),
    SampleCitizen("036158000111", "Đặng Thị Hoa", "1958-06-30", 2, "female"),
)


class SimulatorError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass
class _PendingCode:
    citizen: SampleCitizen
    nonce: str
    redirect_uri: str
    code_challenge: str
    expires_at: dt.datetime


class EidSimulator:
    def __init__(self, *, issuer: str, client_id: str, client_secret: str, clock: Clock) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock
        self.key = RSAKey.generate_key(
            2048, parameters={"kid": "sim-1", "use": "sig", "alg": "RS256"}
        )
        self._codes: dict[str, _PendingCode] = {}
        self._lock = threading.Lock()

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet([self.key]).as_dict(private=False))

    def check_authorize(self, params: dict[str, str]) -> None:
        """Validate an authorization request before showing the citizen picker."""
        if params.get("client_id") != self.client_id:
            raise SimulatorError("unauthorized_client", "unknown client")
        if params.get("response_type") != "code":
            raise SimulatorError("unsupported_response_type", "only 'code'")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise SimulatorError("invalid_request", "PKCE S256 required")
        if not params.get("nonce") or not params.get("state"):
            raise SimulatorError("invalid_request", "state and nonce required")
        if not params.get("redirect_uri"):
            raise SimulatorError("invalid_request", "redirect_uri required")

    def approve(self, params: dict[str, str], personal_id: str) -> str:
        """The developer picked a citizen: the redirect back to the client, with a code."""
        self.check_authorize(params)
        citizen = next((c for c in SAMPLE_CITIZENS if c.personal_id == personal_id), None)
        if citizen is None:
            raise SimulatorError("access_denied", "unknown sample citizen")
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _PendingCode(
                citizen,
                params["nonce"],
                params["redirect_uri"],
                params["code_challenge"],
                self.clock.now() + dt.timedelta(minutes=2),
            )
        query = urlencode({"code": code, "state": params["state"]})
        return params["redirect_uri"] + ("&" if "?" in params["redirect_uri"] else "?") + query

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != "authorization_code":
            raise SimulatorError("unsupported_grant_type", "only authorization_code")
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            raise SimulatorError("invalid_client", "bad client credentials")
        with self._lock:
            pending = self._codes.pop(form.get("code", ""), None)
        if pending is None or pending.expires_at <= self.clock.now():
            raise SimulatorError("invalid_grant", "unknown or expired code")
        if form.get("redirect_uri") != pending.redirect_uri:
            raise SimulatorError("invalid_grant", "redirect_uri mismatch")
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if not hmac.compare_digest(challenge, pending.code_challenge):
            raise SimulatorError("invalid_grant", "PKCE verification failed")
        now = int(self.clock.now().timestamp())
        citizen = pending.citizen
        claims = {
            "iss": self.issuer,
            "sub": citizen.subject,
            "aud": self.client_id,
            "azp": self.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "nonce": pending.nonce,
            "personal_id": citizen.personal_id,
            "name": citizen.full_name,
            "birthdate": citizen.birthdate,
            "eid_level": str(citizen.eid_level),
            "gender": citizen.gender,
        }
        id_token = jwt.encode(
            {"alg": "RS256", "kid": "sim-1"}, claims, self.key, algorithms=["RS256"]
        )
        return {
            "token_type": "Bearer",
            "access_token": secrets.token_urlsafe(24),
            "id_token": id_token,
            "expires_in": 300,
        }

    def transport(self) -> httpx.MockTransport:
        """Answers discovery, JWKS and token requests in-process."""

        def handle(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            base = httpx.URL(self.issuer).path.rstrip("/")
            if request.method == "GET" and path == base + "/.well-known/openid-configuration":
                return httpx.Response(200, json=self.discovery())
            if request.method == "GET" and path == base + "/jwks":
                return httpx.Response(200, json=self.jwks())
            if request.method == "POST" and path == base + "/token":
                form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
                try:
                    return httpx.Response(200, json=self.token(form))
                except SimulatorError as exc:
                    return httpx.Response(
                        400, json={"error": exc.error, "error_description": exc.description}
                    )
            return httpx.Response(404, json={"error": "not_found"})

        return httpx.MockTransport(handle)
