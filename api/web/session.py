"""Server-side web sessions of the pages (the ``kho_web`` cookie holds only a random secret).

A row is created when someone starts signing in (it then holds the pending ``state``, ``nonce``
and PKCE verifier) and replaced by a fresh row, under a new cookie secret, once the sign-in
completes (no session fixation). A signed-in row holds the account, the tokens Kho's provider
issued to the ``kho-web`` client (sealed under the master key, bound to the row's id), the access
token's expiry, the sign-in time and the CSRF secret. Nothing lives in process memory: any API
process can serve any request.

The ``WebSession`` table lives with the other sign-on tables in ``sso/models.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from common.clock import Clock
from sso.models import WebSession
from vault.keyring import MasterKeySealer
from vault.keys import KeyProvider

COOKIE_NAME = "kho_web"
COOKIE_PATH = "/web"
PENDING_LIFETIME = dt.timedelta(minutes=15)
SESSION_LIFETIME = dt.timedelta(hours=8)
_SEAL_AAD = b"kho-web-session\x00"


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class WebSessionStore:
    """Reads and writes web sessions inside the request's unit of work."""

    def __init__(self, session: Session, clock: Clock, keys: KeyProvider) -> None:
        self.session = session
        self.clock = clock
        self.sealer = MasterKeySealer(keys)

    # -- lookup ---------------------------------------------------------------------------------

    def find(self, secret: str | None, *, for_update: bool = False) -> WebSession | None:
        if not secret or len(secret) > 128:
            return None
        query = select(WebSession).where(WebSession.secret_hash == secret_digest(secret))
        if for_update:
            query = query.with_for_update()
        row = self.session.scalars(query).first()
        if row is None or row.expires_at <= self.clock.now():
            return None
        return row

    def reload_for_update(self, row: WebSession) -> WebSession | None:
        self.session.expire(row)
        return self.session.scalars(
            select(WebSession).where(WebSession.id == row.id).with_for_update()
        ).first()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, *, lifetime: dt.timedelta = PENDING_LIFETIME) -> tuple[WebSession, str]:
        """A new row and its cookie secret (returned once, stored only as a digest)."""
        secret = secrets.token_urlsafe(32)
        now = self.clock.now()
        row = WebSession(
            id=uuid.uuid4(),
            secret_hash=secret_digest(secret),
            csrf_secret=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + lifetime,
        )
        self.session.add(row)
        self.session.flush()
        return row, secret

    def end(self, row: WebSession) -> None:
        self.session.delete(row)
        self.session.flush()

    def purge_expired(self, limit: int = 500) -> None:
        """Opportunistic clean-up (at each sign-in): rows past their expiry are dead weight."""
        now = self.clock.now()
        stale = self.session.scalars(
            select(WebSession.id).where(WebSession.expires_at <= now).limit(limit)
        ).all()
        if stale:
            self.session.execute(
                delete(WebSession)
                .where(WebSession.id.in_(stale))
                .execution_options(synchronize_session=False)
            )

    # -- sealed secrets -------------------------------------------------------------------------

    def seal(self, row: WebSession, value: str) -> bytes:
        return self.sealer.seal(value.encode(), aad=_SEAL_AAD + row.id.bytes)

    def open(self, row: WebSession, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        return self.sealer.open(sealed, aad=_SEAL_AAD + row.id.bytes).decode()


def csrf_matches(row: WebSession, supplied: str | None) -> bool:
    if not supplied:
        return False
    return hmac.compare_digest(row.csrf_secret.encode(), supplied.encode())
