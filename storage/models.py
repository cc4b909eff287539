"""Tables owned by the storage layer: cross-cutting records that any domain may use."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base, UTCDateTime, UUIDString


class IdempotencyRecord(Base):
    """The answer given to a request carrying an ``Idempotency-Key``, replayed on retry."""

    __tablename__ = "idempotency_records"

    principal_id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
