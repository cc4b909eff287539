"""A test that needs a server fails, naming it, when the server is missing — it never skips."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens once the socket is closed


@pytest.mark.parametrize(
    ("service", "variable", "value", "node"),
    [
        (
            "MinIO",
            "KHO_TEST_S3_ENDPOINT",
            None,
            "tests/integration/test_documents_api.py::test_ranges_and_conditional_requests",
        ),
        (
            "PostgreSQL",
            "KHO_TEST_DATABASE_URL",
            None,
            "tests/integration/test_migrations.py::test_up_down_up_without_drift",
        ),
        (
            "Keycloak",
            "KHO_TEST_KEYCLOAK_URL",
            None,
            "tests/integration/test_keycloak.py::test_wrong_password_is_refused",
        ),
    ],
)
def test_ci_run_fails_and_names_the_missing_server(
    service: str, variable: str, value: str | None, node: str, tmp_path: Path
) -> None:
    env = dict(os.environ)
    env["CI"] = "true"
    env["KHO_SERVICES_DIR"] = str(tmp_path / "no-services")
    port = _closed_port()
    if variable == "KHO_TEST_S3_ENDPOINT":
        env[variable] = f"127.0.0.1:{port}"
        env.setdefault("KHO_TEST_S3_ACCESS_KEY", "x")
        env.setdefault("KHO_TEST_S3_SECRET_KEY", "y")
    elif variable == "KHO_TEST_DATABASE_URL":
        env[variable] = f"postgresql+psycopg://kho:x@127.0.0.1:{port}/kho"
        env["KHO_TEST_PG_ADMIN_URL"] = f"postgresql+psycopg://kho:x@127.0.0.1:{port}/postgres"
    else:
        env[variable] = f"http://127.0.0.1:{port}"
        env.setdefault("KHO_TEST_KEYCLOAK_ADMIN", "admin")
        env.setdefault("KHO_TEST_KEYCLOAK_ADMIN_PASSWORD", "x")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", node],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{service} is not available for the tests" in output
    assert "skipped" not in output
