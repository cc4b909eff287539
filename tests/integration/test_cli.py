"""The `kho` command as an operator meets it: one-line errors, production refusals, and the
embedded default serving /healthz from an empty folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

KHO = str(Path(sys.executable).with_name("kho"))


def run_kho(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
    clean.update(env)
    return subprocess.run(
        [KHO, *args], env=clean, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# Production's refusals, in the order they are checked: each case sets everything the ones
# before it asked for, and expects the next variable to be named.
_PRODUCTION_STEPS: list[tuple[dict[str, str], str]] = [
    ({"KHO_ENV": "production"}, "KHO_DATABASE_URL"),
    ({"KHO_DATABASE_URL": "postgresql+psycopg://h/db"}, "KHO_OBJECT_STORE"),
    (
        {
            "KHO_OBJECT_STORE": "s3",
            "KHO_S3_ENDPOINT": "127.0.0.1:1",
            "KHO_S3_ACCESS_KEY": "a",
            "KHO_S3_SECRET_KEY": "b",
        },
        "KHO_EID_SIMULATOR",
    ),
    (
        {
            "KHO_EID_SIMULATOR": "false",
            "KHO_EID_DISCOVERY_URL": "https://eid.example/.well-known/openid-configuration",
        },
        "KHO_PUBLIC_URL",
    ),
    ({"KHO_PUBLIC_URL": "https://kho.example.vn"}, "KHO_MASTER_KEY_FILE"),
    ({"KHO_MASTER_KEY_FILE": "/etc/kho/master.key"}, "KHO_ERASURE_LIST"),
]


def _production_cases() -> list[tuple[dict[str, str], str]]:
    cases: list[tuple[dict[str, str], str]] = []
    env: dict[str, str] = {}
    for added, variable in _PRODUCTION_STEPS:
        env = {**env, **added}
        cases.append((env, variable))
    return cases


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KHO_PORT": "eighty"}, "KHO_PORT"),
        ({"KHO_ENV": "staging"}, "KHO_ENV"),
        ({"KHO_OBJECT_STORE": "s3"}, "KHO_S3_ENDPOINT"),
        *_production_cases(),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    result = run_kho(["doctor"], env, tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists() or variable != "KHO_DATABASE_URL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_on_the_embedded_default_from_an_empty_folder(tmp_path: Path) -> None:
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
    process = subprocess.Popen(
        [KHO, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.json()["checks"] == {
            "database": "ok",
            "object_store": "ok",
            "erasure_journal": "ok",
        }
        key = tmp_path / "var" / "master.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "var" / "kho.db").is_file()
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'kho_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0].decode()
    assert "DEVELOPMENT" in output
    assert key.read_text() not in output


def test_doctor_reports_backends(tmp_path: Path) -> None:
    run_kho(["migrate", "up"], {}, tmp_path)
    result = run_kho(["doctor"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sqlite" in result.stdout
    assert "local" in result.stdout
    unreachable = run_kho(
        ["doctor"],
        {
            "KHO_OBJECT_STORE": "s3",
            "KHO_S3_ENDPOINT": "127.0.0.1:9",
            "KHO_S3_ACCESS_KEY": "a",
            "KHO_S3_SECRET_KEY": "b",
        },
        tmp_path,
    )
    assert unreachable.returncode == 1
    assert "object_store_unavailable" in unreachable.stdout
    journal = tmp_path / "no-such-volume" / "erasures.log"
    broken = run_kho(["doctor"], {"KHO_ERASURE_LIST": str(journal)}, tmp_path)
    assert broken.returncode == 1
    line = next(x for x in broken.stdout.splitlines() if x.startswith("erasure journal"))
    assert str(journal) in line and "erasure_journal_unavailable" in line
