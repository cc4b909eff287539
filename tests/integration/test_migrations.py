"""Migrations run up, down and up again on SQLite and on the real PostgreSQL, without drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from storage.migrate import alembic_config, check, current_heads, downgrade, upgrade
from tests.conftest import drop_postgres_database, fresh_postgres_database

HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    url = fresh_postgres_database("kho_migrations")
    yield url
    drop_postgres_database(url)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_up_down_up_without_drift(database_url: str) -> None:
    upgrade(database_url)
    assert current_heads(database_url) == (HEAD,)
    assert {"accounts", "citizens", "documents", "document_versions", "vault_keys"} <= _tables(
        database_url
    )
    check(database_url)  # raises on any difference between models and migrations
    downgrade(database_url, "base")
    assert _tables(database_url) == set()
    assert current_heads(database_url) == ()
    upgrade(database_url)
    check(database_url)
