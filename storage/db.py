"""Database engine and sessions (SQLite for the embedded default, PostgreSQL in production).

One request is one transaction: :func:`session_scope` yields a session and commits once when the
work succeeds, rolls back otherwise. Services never commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import DateTime, MetaData, String, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from common.errors import ServiceUnavailable

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class UUIDString(TypeDecorator[uuid.UUID]):
    """UUIDs stored as 36-character strings, identical on SQLite and PostgreSQL."""

    impl = String(36)
    cache_ok = True

    def process_bind_param(self, value: uuid.UUID | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=10)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    title_vi = "Cơ sở dữ liệu tạm thời không sẵn sàng"
    title_en = "Database temporarily unavailable"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the unit of work has committed (never if it rolls back).

    For effects outside the database that must only follow a durable change: deleting the
    objects of a shredded document, notifying clients of a logout.
    """
    session.info.setdefault("after_commit", []).append(callback)


def run_after_commit(session: Session) -> list[Callable[[], None]]:
    """Take the callbacks registered on ``session`` (the unit of work runs them)."""
    session.info.pop("after_rollback", None)
    callbacks: list[Callable[[], None]] = session.info.pop("after_commit", [])
    return callbacks


def after_rollback(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the unit of work has rolled back (never if it commits).

    For records that must survive the failure they describe: a refused access is logged after
    the refused request's transaction is gone, so it never waits on that transaction's locks.
    """
    session.info.setdefault("after_rollback", []).append(callback)


def run_after_rollback(session: Session) -> list[Callable[[], None]]:
    session.info.pop("after_commit", None)
    callbacks: list[Callable[[], None]] = session.info.pop("after_rollback", [])
    return callbacks


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit once on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        for rollback_callback in run_after_rollback(session):
            rollback_callback()
        raise
    finally:
        session.close()
    for callback in run_after_commit(session):
        callback()


def ping(engine: Engine) -> None:
    """Readiness: raise DatabaseUnavailable if the database does not answer."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        raise DatabaseUnavailable() from None
