"""Signing keys of Kho's OpenID provider: ES256, rotated with overlap, private halves sealed.

The private scalar of each key is sealed by a :class:`Sealer` (the vault's master key, wired in
``api/``), so no private key is ever stored in clear. Public keys are published as a JWKS while
they may still verify tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.clock import Clock
from sso.models import SigningKey

ALGORITHM = "ES256"
# A retired key stays published this long, so tokens it signed still verify until they expire.
RETIREMENT_OVERLAP = dt.timedelta(days=2)
ROTATION_PERIOD = dt.timedelta(days=30)


class Sealer(Protocol):
    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes: ...

    def open(self, sealed: bytes, *, aad: bytes) -> bytes: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _aad(kid: str) -> bytes:
    return b"kho/sso/signing-key\x00" + kid.encode()


class SigningKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> list[SigningKey]:
        return list(self.session.scalars(select(SigningKey).order_by(SigningKey.activates_at)))

    def add(self, key: SigningKey) -> None:
        self.session.add(key)


class SigningKeyService:
    """Creates, rotates and loads the provider's signing keys (in the caller's transaction)."""

    def __init__(self, session: Session, sealer: Sealer, clock: Clock) -> None:
        self.repo = SigningKeyRepository(session)
        self.sealer = sealer
        self.clock = clock

    def create(self) -> SigningKey:
        now = self.clock.now()
        private = ec.generate_private_key(ec.SECP256R1())
        numbers = private.public_key().public_numbers()
        kid = secrets.token_urlsafe(12)
        public_jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
            "kid": kid,
            "use": "sig",
            "alg": ALGORITHM,
        }
        d = private.private_numbers().private_value.to_bytes(32, "big")
        key = SigningKey(
            kid=kid,
            alg=ALGORITHM,
            public_jwk=public_jwk,
            sealed_private_key=self.sealer.seal(d, aad=_aad(kid)),
            created_at=now,
            activates_at=now,
            retires_at=None,
        )
        self.repo.add(key)
        return key

    def ensure_current(self) -> None:
        """Create a key when none is active, rotate when the active one is old."""
        now = self.clock.now()
        active = [k for k in self.repo.all() if k.retires_at is None]
        if not active:
            self.create()
            return
        newest = max(active, key=lambda k: k.activates_at)
        if now - newest.activates_at >= ROTATION_PERIOD:
            self.rotate()

    def rotate(self) -> SigningKey:
        """A new key signs from now on; the old ones stay published for the overlap."""
        now = self.clock.now()
        for key in self.repo.all():
            if key.retires_at is None:
                key.retires_at = now + RETIREMENT_OVERLAP
        return self.create()

    def published(self) -> list[SigningKey]:
        now = self.clock.now()
        return [k for k in self.repo.all() if k.retires_at is None or k.retires_at > now]

    def signing_key(self) -> ECKey:
        """The private key that signs now (the newest one that is not retired)."""
        active = [k for k in self.repo.all() if k.retires_at is None]
        if not active:
            raise LookupError("no active signing key; run ensure_current first")
        row = max(active, key=lambda k: k.activates_at)
        d = self.sealer.open(row.sealed_private_key, aad=_aad(row.kid))
        jwk = dict(row.public_jwk)
        jwk["d"] = _b64(d)
        return ECKey.import_key(jwk)


class CachedKeys:
    """Per-process cache of the published key set and the current signing key.

    Safe across processes: every process reads the same rows; a key unknown to the cache triggers
    one reload (rate-limited), which is how a rotation made by another process is picked up.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sealer: Sealer,
        clock: Clock,
        ttl_seconds: float = 60.0,
    ) -> None:
        self._sessions = sessions
        self._sealer = sealer
        self._clock = clock
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._key_set = KeySet([])
        self._signing: ECKey | None = None
        self._kids: set[str] = set()

    def _load(self) -> None:
        with self._sessions() as session:
            service = SigningKeyService(session, self._sealer, self._clock)
            published = service.published()
            signing = service.signing_key() if published else None
        self._key_set = KeySet([ECKey.import_key(dict(k.public_jwk)) for k in published])
        self._kids = {k.kid for k in published}
        self._signing = signing
        self._loaded_at = time.monotonic()

    def _fresh(self, force: bool = False) -> None:
        with self._lock:
            age = time.monotonic() - self._loaded_at
            if force and age < 1.0:
                return
            if force or age > self._ttl:
                self._load()

    def key_set(self, kid: str | None = None) -> KeySet:
        self._fresh()
        if kid is not None and kid not in self._kids:
            self._fresh(force=True)
        return self._key_set

    def signing_key(self) -> ECKey:
        self._fresh()
        if self._signing is None:
            self._fresh(force=True)
        if self._signing is None:
            raise LookupError("no active signing key")
        return self._signing

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")


class ProviderJwsSigner:
    """Implements ``consent.signing.JwsSigner`` with the provider's current ES256 key."""

    def __init__(self, keys: CachedKeys) -> None:
        self.keys = keys

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        key = self.keys.signing_key()
        header = {"alg": ALGORITHM, "kid": key.kid or "", "typ": typ}
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return jws.serialize_compact(header, payload.encode(), key, algorithms=[ALGORITHM])

    def verify(self, token: str, *, typ: str) -> dict[str, Any]:
        try:
            obj = jws.deserialize_compact(token, self.keys.key_set(), algorithms=[ALGORITHM])
        except JoseError as exc:
            raise ValueError("invalid signature") from exc
        if obj.headers().get("typ") != typ:
            raise ValueError("unexpected type")
        claims = json.loads(obj.payload)
        if not isinstance(claims, dict):
            raise ValueError("unexpected payload")
        return claims
