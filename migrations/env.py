"""Alembic environment. The URL comes from the caller (``kho migrate``) via config attributes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

import consent.models
import identity.models
import sso.models
import storage.models
import storage.ratelimit
import vault.models
from storage.db import Base, create_db_engine

# The imports register every table on Base.metadata.
_MODELS = (
    consent.models,
    identity.models,
    sso.models,
    storage.models,
    storage.ratelimit,
    vault.models,
)
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the migrations")
    engine: Engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


run_migrations_online()
