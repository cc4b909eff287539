"""Shared fixtures: Kho wired to the embedded backends and to the real servers.

``kho_env`` is parametrised over ``sqlite-local`` (the embedded default) and
``postgres-minio`` (PostgreSQL and MinIO started by ``scripts/services.sh``); tests that use it
run on both. Every test makes its own owners, so tests never see each other's data.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app, prepare
from api.container import API_AUDIENCE, Container, build_container
from common.clock import OffsetClock
from common.settings import Settings
from identity.service import CitizenProfile, IdentityService
from storage.db import session_scope
from storage.migrate import upgrade
from tests.services import require_minio, require_postgres


def fresh_postgres_database(prefix: str = "kho_test") -> str:
    """Create an empty database on the test server and return its URL."""
    pg = require_postgres()
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(pg.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(pg.url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    pg = require_postgres()
    name = make_url(url).database
    admin = create_engine(pg.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def settings_for(backend: str, tmp: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp / "var",
        "log_json": True,
        "log_level": "WARNING",
        "max_upload_bytes": 80 * 1024 * 1024,
        # Tests drive the webhook dispatcher themselves; no background rounds.
        "webhook_interval_seconds": 0,
    }
    if backend == "postgres-minio":
        minio = require_minio()
        values.update(
            database_url=fresh_postgres_database(),
            object_store="s3",
            s3_endpoint=minio.endpoint,
            s3_access_key=minio.access_key,
            s3_secret_key=minio.secret_key,
            s3_bucket=f"kho-test-{secrets.token_hex(4)}",
        )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def build_ready_container(settings: Settings) -> Container:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    container = build_container(settings, clock=OffsetClock())
    upgrade(settings.effective_database_url)
    prepare(container)
    return container


@dataclass
class KhoEnv:
    backend: str
    settings: Settings
    container: Container
    client: TestClient

    def citizen(self, *, eid_level: int = 2) -> Owner:
        return make_citizen(self.container, eid_level=eid_level)

    def token_for(self, owner: Owner, *, auth_age: dt.timedelta = dt.timedelta(0)) -> str:
        now = self.container.clock.now()
        return self.container.issuer.access_token(
            subject=str(owner.account_id),
            audience=API_AUDIENCE,
            client_id="test-portal",
            acr=f"vneid-{owner.eid_level}",
            auth_time=now - auth_age,
        )

    def headers(self, owner: Owner, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_for(owner)}", **extra}

    def operator_headers(self, **extra: str) -> dict[str, str]:
        """Headers of an operator tool holding the ``kho:admin`` scope."""
        token = self.container.issuer.access_token(
            subject="operator-test",
            audience=API_AUDIENCE,
            client_id="operator-cli",
            scopes=["kho:admin"],
        )
        return {"Authorization": f"Bearer {token}", **extra}


@dataclass(frozen=True)
class Owner:
    account_id: uuid.UUID
    personal_id: str
    eid_level: int


def random_personal_id(birth_year: int = 1990, female: bool = False) -> str:
    century = 0 if birth_year < 2000 else 2
    sex = century + (1 if female else 0)
    return f"019{sex}{birth_year % 100:02d}{secrets.randbelow(10**6):06d}"


def make_citizen(container: Container, *, eid_level: int = 2) -> Owner:
    pin = random_personal_id()
    with session_scope(container.sessions) as session:
        account = IdentityService(session, container.clock).enrol_citizen(
            CitizenProfile(
                national_subject=f"sub-{uuid.uuid4()}",
                personal_id=pin,
                full_name="Nguyễn Văn Thử",
                birth_date=dt.date(1990, 5, 17),
                eid_level=eid_level,
            )
        )
        account_id = account.id
    return Owner(account_id, pin, eid_level)


@pytest.fixture(params=["sqlite-local", "postgres-minio"])
def kho_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KhoEnv]:
    settings = settings_for(request.param, tmp_path)
    container = build_ready_container(settings)
    app = create_app(settings, container=container)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield KhoEnv(request.param, settings, container, client)
    container.close()
    if request.param == "postgres-minio":
        store = container.objects
        for info in store.list(""):
            store.delete(info.key)
        drop_postgres_database(settings.effective_database_url)


@pytest.fixture
def embedded_env(tmp_path: Path) -> Iterator[KhoEnv]:
    settings = settings_for("sqlite-local", tmp_path)
    container = build_ready_container(settings)
    app = create_app(settings, container=container)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield KhoEnv("sqlite-local", settings, container, client)
    container.close()
