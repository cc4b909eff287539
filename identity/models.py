"""Owners of papers: citizens and organisations share one ``accounts`` row each."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base, UTCDateTime, UUIDString


class AccountKind(StrEnum):
    citizen = "citizen"
    organisation = "organisation"


class AccountStatus(StrEnum):
    active = "active"
    erased = "erased"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    kind: Mapped[AccountKind] = mapped_column(String(16))
    status: Mapped[AccountStatus] = mapped_column(String(16), default=AccountStatus.active)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Citizen(Base):
    """A person, keyed by the national e-ID subject and the 12-digit personal ID number."""

    __tablename__ = "citizens"

    account_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    national_subject: Mapped[str] = mapped_column(String(255), unique=True)
    personal_id: Mapped[str] = mapped_column(String(12), unique=True)
    full_name: Mapped[str] = mapped_column(String(255))
    birth_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    eid_level: Mapped[int] = mapped_column(Integer, default=1)
