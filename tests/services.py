"""Where the real test servers are, and a loud failure when one is missing.

``scripts/services.sh start`` starts PostgreSQL, MinIO, Keycloak (and installs Chromium) and
writes their coordinates to ``$KHO_SERVICES_DIR/services.env`` (default
``/var/tmp/kho-services``). The test command sources that file; running ``pytest`` by hand reads
it directly. A test that needs a server and cannot reach it fails, naming the server: it never
skips, with or without ``CI=true``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICES_DIR = Path(os.environ.get("KHO_SERVICES_DIR", "/var/tmp/kho-services"))


def _env_file_values() -> dict[str, str]:
    path = SERVICES_DIR / "services.env"
    values: dict[str, str] = {}
    if path.is_file():
        for raw in path.read_text().splitlines():
            line = raw.strip().removeprefix("export ")
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip("'\"")
    return values


def setting(name: str) -> str | None:
    return os.environ.get(name) or _env_file_values().get(name)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _missing(service: str, why: str) -> None:
    pytest.fail(
        f"{service} is not available for the tests: {why}. "
        "Start the test servers with `scripts/services.sh start` (the test command does it).",
        pytrace=False,
    )


@dataclass(frozen=True)
class MinioService:
    endpoint: str
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class PostgresService:
    url: str
    admin_url: str


@dataclass(frozen=True)
class KeycloakService:
    url: str
    admin: str
    admin_password: str


def require_minio() -> MinioService:
    endpoint = setting("KHO_TEST_S3_ENDPOINT")
    access = setting("KHO_TEST_S3_ACCESS_KEY")
    secret = setting("KHO_TEST_S3_SECRET_KEY")
    if not (endpoint and access and secret):
        _missing(
            "MinIO", "KHO_TEST_S3_ENDPOINT / KHO_TEST_S3_ACCESS_KEY / KHO_TEST_S3_SECRET_KEY unset"
        )
    assert endpoint and access and secret
    host, _, port = endpoint.rpartition(":")
    if not _reachable(host, int(port)):
        _missing("MinIO", f"nothing answers at {endpoint}")
    return MinioService(endpoint, access, secret)


def require_postgres() -> PostgresService:
    url = setting("KHO_TEST_DATABASE_URL")
    admin = setting("KHO_TEST_PG_ADMIN_URL")
    if not (url and admin):
        _missing("PostgreSQL", "KHO_TEST_DATABASE_URL / KHO_TEST_PG_ADMIN_URL unset")
    assert url and admin
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if not _reachable(u.host or "127.0.0.1", u.port or 5432):
        _missing("PostgreSQL", f"nothing answers at {u.host}:{u.port}")
    return PostgresService(url, admin)


def require_keycloak() -> KeycloakService:
    url = setting("KHO_TEST_KEYCLOAK_URL")
    admin = setting("KHO_TEST_KEYCLOAK_ADMIN")
    password = setting("KHO_TEST_KEYCLOAK_ADMIN_PASSWORD")
    if not (url and admin and password):
        _missing("Keycloak", "KHO_TEST_KEYCLOAK_URL / KHO_TEST_KEYCLOAK_ADMIN(_PASSWORD) unset")
    assert url and admin and password
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not _reachable(parts.hostname or "127.0.0.1", parts.port or 80):
        _missing("Keycloak", f"nothing answers at {url}")
    return KeycloakService(url.rstrip("/"), admin, password)


def require_chromium() -> str:
    path = setting("KHO_TEST_CHROMIUM") or "/usr/bin/chromium"
    if not Path(path).is_file():
        _missing("Chromium", f"no browser at {path}")
    return path
