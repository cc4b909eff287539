"""Tables of the sign-on layer: the provider's signing keys."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base, UTCDateTime


class SigningKey(Base):
    """An ES256 key of Kho's provider; the private half is sealed, never stored in clear."""

    __tablename__ = "sso_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    activates_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
