"""Signing keys of a remote OpenID provider (Keycloak, the national e-ID), fetched and cached.

:class:`RemoteKeySource` is the :class:`sso.tokens.KeySource` of a provider Kho does not run. It
finds the JWKS through the provider's discovery document, refuses a document that names another
issuer, and keeps only public signing keys of the allowed types. The key set is refreshed when it
is older than the TTL and when a token names a key it has not seen (that is how a rotation at the
provider is picked up), but never more often than ``min_refresh_interval``: a flood of tokens
with random ``kid`` values costs the provider one request per interval, not one per token. When
the provider cannot be reached the keys already fetched keep working; with none fetched yet,
validation fails with :class:`KeysUnavailable` (503), not with "invalid token" (401), so a
client is not told to sign in again because of an outage.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, KeySet, RSAKey

from common.errors import ServiceUnavailable

log = structlog.get_logger("kho.sso.jwks")

DISCOVERY_PATH = "/.well-known/openid-configuration"
ALLOWED_KEY_TYPES = ("RSA", "EC")
MIN_RSA_BITS = 2048
# A discovery document or a JWKS is a few kilobytes; a bigger answer is refused unread.
MAX_DOCUMENT_BYTES = 256 * 1024


class KeysUnavailable(ServiceUnavailable):
    code = "identity_provider_unavailable"
    title_vi = "Nhà cung cấp định danh tạm thời không sẵn sàng"
    title_en = "The identity provider is temporarily unavailable"


class _FetchFailed(Exception):
    """Why a refresh failed; logged, never shown to a caller."""


@dataclass(frozen=True)
class _Snapshot:
    key_set: KeySet
    kids: frozenset[str]
    fetched_at: float


class RemoteKeySource:
    """The published signing keys of ``issuer``, cached per process and safe across threads."""

    def __init__(
        self,
        issuer: str,
        http: httpx.Client | None = None,
        ttl_seconds: float = 300.0,
        min_refresh_interval: float = 10.0,
        *,
        key_types: Sequence[str] = ALLOWED_KEY_TYPES,
        timeout_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout_seconds, follow_redirects=False)
        self._ttl = ttl_seconds
        self._min_interval = min_refresh_interval
        self._key_types = frozenset(key_types)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._last_attempt = -math.inf
        self._jwks_uri: str | None = None

    def key_set(self, kid: str | None = None) -> KeySet:
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._refresh(wait=True)
            if snapshot is None:
                raise KeysUnavailable(
                    "Không lấy được khoá ký của nhà cung cấp định danh.",
                    "The identity provider's signing keys could not be fetched.",
                )
            return snapshot.key_set
        if kid is not None and kid not in snapshot.kids:
            # A key we have not seen: maybe the provider rotated. Wait for the refresh.
            snapshot = self._refresh(wait=True) or snapshot
        elif self._monotonic() - snapshot.fetched_at > self._ttl:
            # Only stale: if another thread is already refreshing, serve what we have.
            snapshot = self._refresh(wait=False) or snapshot
        return snapshot.key_set

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def _refresh(self, *, wait: bool) -> _Snapshot | None:
        if not self._lock.acquire(blocking=wait):
            return self._snapshot
        try:
            now = self._monotonic()
            # Rate limit; this also stops threads that queued behind a refresh from repeating it.
            if now - self._last_attempt < self._min_interval:
                return self._snapshot
            self._last_attempt = now
            try:
                self._snapshot = self._fetch(now)
            except _FetchFailed as exc:
                log.warning(
                    "jwks_refresh_failed",
                    issuer=self.issuer,
                    reason=str(exc),
                    serving_cached=self._snapshot is not None,
                )
            return self._snapshot
        finally:
            self._lock.release()

    def _fetch(self, now: float) -> _Snapshot:
        jwks_uri = self._jwks_uri or self._discover()
        try:
            document = self._get_json(jwks_uri)
        except _FetchFailed:
            self._jwks_uri = None  # discover again next time: the provider may have moved it
            raise
        keys = self._signing_keys(document)
        if not keys:
            # Never replace working keys by an empty set because of one odd answer.
            raise _FetchFailed("the JWKS holds no usable signing key")
        self._jwks_uri = jwks_uri
        kids = frozenset(k.kid for k in keys if k.kid)
        return _Snapshot(KeySet([k for k in keys]), kids, now)

    def _discover(self) -> str:
        document = self._get_json(self.issuer.rstrip("/") + DISCOVERY_PATH)
        if document.get("issuer") != self.issuer:
            # Exact comparison (OpenID Connect Discovery 1.0, section 4.3): a provider that
            # answers for another issuer is misconfigured or an impostor.
            log.error(
                "jwks_issuer_mismatch", expected=self.issuer, announced=document.get("issuer")
            )
            raise _FetchFailed("the discovery document names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise _FetchFailed("the discovery document has no jwks_uri")
        scheme = urlsplit(jwks_uri).scheme
        issuer_scheme = urlsplit(self.issuer).scheme
        if scheme not in ("https", issuer_scheme) or not urlsplit(jwks_uri).netloc:
            raise _FetchFailed("the jwks_uri is not an absolute URL as secure as the issuer")
        return jwks_uri

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"{url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise _FetchFailed(f"{url}: HTTP {response.status_code}")
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise _FetchFailed(f"{url}: answer too large")
        try:
            value = json.loads(response.content)
        except ValueError:
            raise _FetchFailed(f"{url}: not JSON") from None
        if not isinstance(value, dict):
            raise _FetchFailed(f"{url}: not a JSON object")
        return value

    def _signing_keys(self, document: dict[str, Any]) -> list[RSAKey | ECKey]:
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise _FetchFailed("the JWKS has no key list")
        keys: list[RSAKey | ECKey] = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue  # Keycloak also publishes an encryption key ("use": "enc")
            if entry.get("kty") not in self._key_types or "d" in entry:
                continue  # symmetric, unknown or private material never verifies here
            ops = entry.get("key_ops")
            if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
                continue
            try:
                key = JWKRegistry.import_key(entry)
            except (JoseError, ValueError, TypeError):
                log.warning("jwks_key_skipped", issuer=self.issuer, kid=entry.get("kid"))
                continue
            if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
                continue
            if isinstance(key, RSAKey | ECKey):
                keys.append(key)
        return keys
