"""Rate-limit counters shared by every API process, in the database (fixed windows).

One row per (key, window): ``INSERT ... ON CONFLICT DO UPDATE SET count = count + 1 RETURNING
count`` counts a request and answers how many the key has made in the window, atomically, on
PostgreSQL and on SQLite (3.35 or later) alike: one statement in autocommit, one round trip
(on PostgreSQL its commit does not wait for the WAL flush: counters need no crash safety).
Concurrent requests of one key serialise on its row, so two processes never both see the last
allowed count: a limit holds exactly across processes. Windows are aligned on multiples of
their length (epoch seconds); rows of ended windows are deleted by
:meth:`RateLimitStore.sweep`, which :meth:`RateLimitStore.hit` runs at most once per
``sweep_interval`` in each process.

Keys are opaque to this module; the caller (``api.limits``) builds them from a principal kind,
a route class and a digest of the principal, so no identifier or address is stored in clear.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, String, bindparam, delete, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import Executable

from common.errors import ServiceUnavailable
from storage.db import Base

MAX_KEY_LENGTH = 96


class RateLimitCounter(Base):
    """Requests one key made in one fixed window (``window_start`` in epoch seconds)."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    # The window's end, epoch seconds: rows whose end has passed are swept.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


_SQLITE_UPSERT = (
    sqlite.insert(RateLimitCounter)
    .values(
        key=bindparam("key"),
        window_start=bindparam("window_start"),
        count=1,
        expires_at=bindparam("expires_at"),
    )
    .on_conflict_do_update(
        index_elements=[RateLimitCounter.key, RateLimitCounter.window_start],
        set_={"count": RateLimitCounter.count + 1},
    )
    .returning(RateLimitCounter.count)
)
# The same on PostgreSQL, plus: a counter need not survive a crash, so its commit does not wait
# for the WAL flush (``synchronous_commit`` off for this statement's own transaction only).
_POSTGRES_UPSERT = text(
    "WITH no_sync AS (SELECT set_config('synchronous_commit', 'off', true)) "
    "INSERT INTO rate_limits (key, window_start, count, expires_at) "
    "SELECT :key, :window_start, 1, :expires_at FROM no_sync "
    "ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1 "
    "RETURNING count"
)


class RateLimitUnavailable(ServiceUnavailable):
    code = "rate_limit_unavailable"
    title_vi = "Không đếm được số yêu cầu"
    title_en = "Rate-limit counters unavailable"


@dataclass(frozen=True)
class Hit:
    """The count after this request, and the window it fell in (epoch seconds)."""

    count: int
    window_start: int
    window_end: int

    def retry_after(self, now: float) -> int:
        """Whole seconds until the window ends (at least 1)."""
        return max(1, math.ceil(self.window_end - now))


def window_of(now: float, window_seconds: int) -> int:
    """The start of the fixed window holding ``now``."""
    return int(now // window_seconds) * window_seconds


class RateLimitStore:
    """Counts requests per key and window in the ``rate_limits`` table."""

    def __init__(
        self, engine: Engine, *, window_seconds: int = 60, sweep_interval: float = 60.0
    ) -> None:
        if window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")
        self.engine = engine
        self.window_seconds = window_seconds
        self.sweep_interval = sweep_interval
        if engine.dialect.name == "postgresql":
            self._upsert: Executable = _POSTGRES_UPSERT
        elif engine.dialect.name == "sqlite":
            self._upsert = _SQLITE_UPSERT
        else:
            raise ValueError(f"no rate-limit upsert for {engine.dialect.name}")
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._last_sweep = time.monotonic()
        self._sweep_lock = threading.Lock()

    def hit(self, key: str, now: float) -> Hit:
        """Count one request of ``key`` at ``now`` (epoch seconds); return the new count.

        Raises :class:`RateLimitUnavailable` when the database does not answer (the caller
        decides whether to let the request through).
        """
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError("rate-limit key too long")
        start = window_of(now, self.window_seconds)
        end = start + self.window_seconds
        values = {"key": key, "window_start": start, "expires_at": end}
        try:
            # One statement in autocommit: one round trip, no BEGIN/COMMIT of its own.
            with self._autocommit.connect() as connection:
                count = int(connection.execute(self._upsert, values).scalar_one())
        except SQLAlchemyError:
            raise RateLimitUnavailable() from None
        self._maybe_sweep(now)
        return Hit(count, start, end)

    def count(self, key: str, now: float) -> int:
        """The count of ``key`` in the window holding ``now`` (0 if none)."""
        start = window_of(now, self.window_seconds)
        with self.engine.connect() as connection:
            value = connection.execute(
                select(RateLimitCounter.count).where(
                    RateLimitCounter.key == key, RateLimitCounter.window_start == start
                )
            ).scalar_one_or_none()
        return int(value or 0)

    def sweep(self, now: float) -> int:
        """Delete the rows of windows that have ended; returns how many."""
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(RateLimitCounter).where(RateLimitCounter.expires_at <= int(now))
            )
        return int(getattr(result, "rowcount", 0) or 0)

    def _maybe_sweep(self, now: float) -> None:
        if time.monotonic() - self._last_sweep < self.sweep_interval:
            return
        if not self._sweep_lock.acquire(blocking=False):
            return
        try:
            self._last_sweep = time.monotonic()
            self.sweep(now)
        except SQLAlchemyError:
            pass  # the next sweep retries; stale rows only cost space
        finally:
            self._sweep_lock.release()
