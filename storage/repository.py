"""Queries of the storage layer's own tables."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from storage.models import IdempotencyRecord


class IdempotencyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, principal_id: uuid.UUID, scope: str, key: str) -> IdempotencyRecord | None:
        return self.session.get(IdempotencyRecord, (principal_id, scope, key))

    def add(
        self,
        *,
        principal_id: uuid.UUID,
        scope: str,
        key: str,
        fingerprint: str,
        status_code: int,
        body: dict[str, Any],
        now: dt.datetime,
    ) -> None:
        self.session.add(
            IdempotencyRecord(
                principal_id=principal_id,
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                status_code=status_code,
                body=body,
                created_at=now,
            )
        )

    def purge_older_than(self, cutoff: dt.datetime) -> int:
        result = self.session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)
