"""Time as a collaborator, so that expiry rules can be tested without sleeping."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock for tests: it only moves when told to."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at

    def now(self) -> dt.datetime:
        return self._at

    def advance(self, delta: dt.timedelta) -> None:
        self._at += delta


class OffsetClock:
    """Real time shifted by an adjustable offset: tests move it forward without sleeping,
    while everything time-dependent (tokens, windows, lapses) stays consistent."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta
