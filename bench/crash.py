"""Crash consistency under fire: ``kho serve``, MinIO and PostgreSQL killed during uploads.

    python -m bench.crash [--api-kills 200] [--minio-kills 20] [--pg-stops 20] [--seed N]
    python -m bench.crash --backup-drill 1000      (time kho backup / kho restore instead)

Everything runs on servers of its own, never on the shared test servers (other people's tests
use those): a private PostgreSQL 15 cluster (``initdb`` into a temporary directory as the
``postgres`` OS user, a free loopback port, a non-superuser application role), a private MinIO
(the pinned binary ``scripts/services.sh`` built, a temporary data directory, a free port) and a
``kho serve`` child on a fixed free port. All three are stopped and their directories removed at
the end, whatever happens.

While uploader threads stream papers (a few KiB to 14 MiB, some of them multipart) through
``PUT /v1/documents/{id}/content`` with an ``Idempotency-Key`` and an agency fetches papers
under a grant, a conductor injects faults one at a time, in a shuffled order, each while at
least one upload is in flight:

* ``api``: SIGKILL the ``kho serve`` process, start it again;
* ``minio``: SIGKILL MinIO, leave it down a moment (uploads fail with 503), start it again;
* ``pg``: ``pg_ctl stop -m immediate`` (transactions die mid-way), start it again.

Clients behave as the API asks of them: an upload whose outcome is unknown (connection broken,
5xx) is retried with the *same* idempotency key until it gets a 2xx. Afterwards one
``StorageSweeper`` pass with grace 0 runs, then the run checks:

* 0 acknowledged uploads lost: every 2xx upload reads back over HTTP with its SHA-256;
* 0 duplicates: the committed versions are exactly the acknowledged ones, one per upload, and
  every idempotency record names its acknowledged version;
* 0 readable orphans: every object in the bucket belongs to a committed, unshredded version,
  and no pending version is left;
* the access log verifies (``AccessLog.verify_all``) and its allowed fetch entries equal the
  grant's use count, which is at least the number of fetches the agency saw succeed.

The CI test (``tests/assurance/test_crash_consistency.py``) runs :func:`run_chaos` with small
counts; this command runs the full ones and prints the figures (``--json`` for a machine).
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from sqlalchemy import func, select

from api.container import API_AUDIENCE, Container, build_container
from common.settings import Settings
from consent.audit import AccessLog
from consent.models import AccessLogEntry, Grant
from identity.service import CitizenProfile, IdentityService
from sso.keys import ProviderJwsSigner
from storage.db import session_scope
from storage.models import IdempotencyRecord
from vault.keys import generate_key_file
from vault.models import Document, DocumentVersion, VersionStatus
from vault.service import StorageSweeper

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
CACHE_DIR = Path(os.environ.get("KHO_CACHE_DIR", "/var/cache/kho"))
# Private services live here, not under pytest's tmp_path: the postgres OS user must be able to
# enter the directory, and /tmp/pytest-of-root is 0700.
PRIVATE_ROOT = Path(os.environ.get("KHO_PRIVATE_SERVICES_DIR", "/var/tmp"))
MiB = 1024 * 1024


class PrivateServiceError(RuntimeError):
    """A private server did not start or stop; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"(no log: {exc})"
    return data[-limit:].decode("utf-8", "replace")


def _private_dir(prefix: str) -> Path:
    PRIVATE_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=PRIVATE_ROOT))
    root.chmod(0o755)
    return root


# -- a private PostgreSQL cluster -----------------------------------------------------------------


def _as_postgres(*args: str) -> list[str]:
    """Run a PostgreSQL binary as the postgres OS user (initdb and the server refuse root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    import pwd

    if pwd.getpwuid(os.geteuid()).pw_name == "postgres":
        return list(args)
    raise PrivateServiceError(
        "a private PostgreSQL cluster needs root (to run initdb as the postgres user) or the "
        "postgres user itself"
    )


class _PrivateServer(abc.ABC):
    """A server of this run's own: ``set_up`` on entering (torn down again if that fails),
    ``destroy`` (stop it, remove its files) on leaving."""

    @abc.abstractmethod
    def set_up(self) -> None: ...

    @abc.abstractmethod
    def destroy(self) -> None: ...

    def __enter__(self) -> Self:
        try:
            self.set_up()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()


class PrivatePostgres(_PrivateServer):
    """A PostgreSQL 15 cluster of our own on a free loopback port.

    ``app_url`` is a *non-superuser* role (``kho_app``) that owns the database ``kho`` (so
    privileges and triggers apply to it); ``admin_url`` is a superuser (``kho_admin``) for the
    test's own inspection and sabotage. Durability: ``fsync=off`` (the tests kill processes,
    never the machine: what a process wrote survives it) but ``synchronous_commit=on``, so a
    commit is acknowledged only once its WAL is written and an immediate stop loses nothing
    acknowledged.
    """

    def __init__(self) -> None:
        self.root = _private_dir("kho-private-pg-")
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.app_password = secrets.token_hex(16)
        self.admin_password = secrets.token_hex(16)
        self._initialised = False

    @property
    def app_url(self) -> str:
        return f"postgresql+psycopg://kho_app:{self.app_password}@127.0.0.1:{self.port}/kho"

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://kho_admin:{self.admin_password}@127.0.0.1:{self.port}/kho"

    def _run(self, args: list[str], *, stdin: str | None = None, timeout: float = 120) -> None:
        result = subprocess.run(
            args,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        if result.returncode != 0:
            raise PrivateServiceError(
                f"{' '.join(args[-6:])} failed ({result.returncode}): "
                f"{result.stderr.strip()[-2000:]}\n{_tail(self.log)}"
            )

    def init(self) -> None:
        for d in (self.data, self.run_dir):
            d.mkdir()
            shutil.chown(d, "postgres", "postgres")
        self.data.chmod(0o700)
        self.log.touch()
        shutil.chown(self.log, "postgres", "postgres")
        self._run(
            _as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
            )
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# --- private cluster of bench/crash.py ---\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.run_dir}'\n"
                "max_connections = 100\n"
                "fsync = off\n"
                "synchronous_commit = on\n"
                "full_page_writes = off\n"
                "log_min_messages = warning\n"
                "timezone = 'UTC'\n"
                "log_timezone = 'UTC'\n"
            )
        self.start()
        sql = (
            f"CREATE ROLE kho_admin LOGIN SUPERUSER PASSWORD '{self.admin_password}';\n"
            f"CREATE ROLE kho_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            f"PASSWORD '{self.app_password}';\n"
            "CREATE DATABASE kho OWNER kho_app;\n"
        )
        self.psql(sql, database="postgres")
        self._initialised = True

    def create_database(self, name: str) -> str:
        """A new database owned by the application role; returns its URL (as that role)."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError("database names here are lower-case identifiers")
        self.psql(f"CREATE DATABASE {name} OWNER kho_app;\n", database="postgres")
        return self.app_url.rsplit("/", 1)[0] + "/" + name

    def psql(self, sql: str, *, database: str = "kho") -> None:
        """Run SQL as the postgres superuser over the private socket (statements on stdin)."""
        self._run(
            _as_postgres(
                str(PG_BIN / "psql"),
                "-h",
                str(self.run_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-XqAt",
                "-v",
                "ON_ERROR_STOP=1",
            ),
            stdin=sql,
        )

    def start(self) -> None:
        # pg_ctl leaves the postmaster running in the background: it gets no pipe of ours.
        result = subprocess.run(
            _as_postgres(
                str(PG_BIN / "pg_ctl"),
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=90,
            cwd=self.root,
            check=False,
            start_new_session=True,
        )
        if result.returncode != 0:
            raise PrivateServiceError(f"private PostgreSQL did not start:\n{_tail(self.log)}")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``; ``immediate`` aborts every transaction at once."""
        if not self.running():
            return
        self._run(
            _as_postgres(
                str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60"
            ),
            timeout=90,
        )

    def running(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        result = subprocess.run(
            _as_postgres(str(PG_BIN / "pg_ctl"), "status", "-D", str(self.data)),
            capture_output=True,
            timeout=30,
            cwd=self.root,
            check=False,
        )
        return result.returncode == 0

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def set_up(self) -> None:
        self.init()


# -- a private MinIO ------------------------------------------------------------------------------


def minio_binary() -> Path:
    """The MinIO binary pinned in ``scripts/services.sh`` (built there, cached outside the repo)."""
    script = (ROOT / "scripts" / "services.sh").read_text()
    match = re.search(r"^MINIO_VERSION=(\S+)", script, re.MULTILINE)
    if match is None:
        raise PrivateServiceError("scripts/services.sh does not pin MINIO_VERSION")
    binary = CACHE_DIR / "bin" / f"minio-{match.group(1)}" / "minio"
    if not binary.is_file():
        raise PrivateServiceError(
            f"no MinIO binary at {binary}: run `scripts/services.sh start minio` once to build it"
        )
    return binary


class PrivateMinio(_PrivateServer):
    """A MinIO server of our own: its own data directory, loopback ports and credentials."""

    def __init__(self) -> None:
        self.binary = minio_binary()
        self.root = _private_dir("kho-private-minio-")
        self.data = self.root / "data"
        self.data.mkdir()
        self.log = self.root / "minio.log"
        self.port = free_port()
        self.console_port = free_port()
        self.access_key = "kho" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_UPDATE": "off",
            "MINIO_BROWSER": "off",
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "server",
                    str(self.data),
                    "--address",
                    self.endpoint,
                    "--console-address",
                    f"127.0.0.1:{self.console_port}",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise PrivateServiceError(f"private MinIO exited:\n{_tail(self.log)}")
                with contextlib.suppress(httpx.TransportError):
                    ready = client.get(f"http://{self.endpoint}/minio/health/ready")
                    if ready.status_code == 200:
                        return
                time.sleep(0.1)
        raise PrivateServiceError(f"private MinIO not ready in {timeout:.0f} s:\n{_tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL, as a crash: no chance to finish anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def set_up(self) -> None:
        self.start()


# -- a kho serve child that can be killed and started again ---------------------------------------


def kho_command() -> list[str]:
    script = Path(sys.executable).with_name("kho")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from api.cli import main; main()"]


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a child started with ``env`` (and no other ``KHO_*``) builds."""
    values = {k.removeprefix("KHO_").lower(): v for k, v in env.items() if k.startswith("KHO_")}
    return Settings.model_validate(values)


class KhoProcess:
    """``kho serve`` on one fixed loopback port, restarted on the same port after each kill, so
    its issuer URL (and every token already issued) stays valid."""

    def __init__(self, root: Path, env: dict[str, str], port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "KHO_PORT": str(self.port), "KHO_PUBLIC_URL": self.url}
        self.log = root / "kho-serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def settings(self) -> Settings:
        return settings_of(self.env)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *, migrate: bool = False, timeout: float = 60) -> float:
        """Start and wait for ``/healthz``; returns the seconds it took."""
        began = time.monotonic()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
        child_env.update(self.env)
        args = [*kho_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if not migrate:
            args.append("--no-migrate")
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                args,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        self.starts += 1
        deadline = began + timeout
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise PrivateServiceError(
                        f"kho serve exited with {self.process.returncode}:\n{_tail(self.log)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return time.monotonic() - began
                time.sleep(0.05)
        raise PrivateServiceError(f"kho serve not healthy in {timeout:.0f} s:\n{_tail(self.log)}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


# -- the world over HTTP: citizens, an agency, a grant ---------------------------------------------


def owner_token(container: Container, owner_id: uuid.UUID) -> str:
    """An access token for a citizen, minted with Kho's own signing key (as a portal gets one)."""
    return container.issuer.access_token(
        subject=str(owner_id),
        audience=API_AUDIENCE,
        client_id="assurance",
        acr="vneid-2",
        auth_time=container.clock.now(),
    )


def operator_token(container: Container) -> str:
    return container.issuer.access_token(
        subject="operator-assurance",
        audience=API_AUDIENCE,
        client_id="operator-cli",
        scopes=["kho:admin"],
    )


def enrol_citizen(container: Container) -> tuple[uuid.UUID, str]:
    """A new citizen in the server's database: (account id, 12-digit personal ID number)."""
    pin = f"019090{secrets.randbelow(10**6):06d}"  # a man born in 1990, province 019
    with session_scope(container.sessions) as session:
        account = IdentityService(session, container.clock).enrol_citizen(
            CitizenProfile(
                national_subject=f"sub-{uuid.uuid4()}",
                personal_id=pin,
                full_name="Nguyễn Thị Kiểm Thử",
                birth_date=dt.date(1990, 1, 1),
                eid_level=2,
            )
        )
        return account.id, pin


def _ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {response.text[:500]}"
        )
    body: dict[str, Any] = response.json()
    return body


@dataclass(frozen=True)
class Agency:
    agency_id: str
    client_id: str
    secret: str

    def token(self, http: httpx.Client) -> str:
        response = http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "kho:agency"},
            auth=(self.client_id, self.secret),
        )
        token: str = _ok(response, 200)["access_token"]
        return token


def make_agency(http: httpx.Client, operator: str, code: str, name: str) -> Agency:
    headers = {"Authorization": f"Bearer {operator}"}
    agency = _ok(
        http.post(
            "/v1/admin/agencies",
            json={"code": code, "name_vi": name, "level": "province"},
            headers=headers,
        ),
        201,
    )
    client_id = code.lower() + "-backend"
    created = _ok(
        http.put(
            f"/v1/admin/clients/{client_id}",
            json={
                "client_id": client_id,
                "name": name,
                "kind": "agency",
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["client_credentials"],
                "scopes": ["kho:agency"],
                "agency_id": agency["id"],
            },
            headers=headers,
        ),
        201,
    )
    return Agency(agency["id"], client_id, created["client_secret"])


def paper_bytes(size: int, marker: bytes = b"") -> bytes:
    """A 'PDF' of ``size`` bytes (random after the signature), with ``marker`` near the end."""
    head = b"%PDF-1.7\n%"
    body = os.urandom(max(0, size - len(head) - len(marker)))
    return head + body[: len(body) // 2] + marker + body[len(body) // 2 :]


def create_document(
    http: httpx.Client, token: str, type_code: str = "birth_certificate", title: str = "Giấy tờ"
) -> str:
    body = _ok(
        http.post(
            "/v1/documents",
            json={"type_code": type_code, "title": title},
            headers={"Authorization": f"Bearer {token}"},
        ),
        201,
    )
    document_id: str = body["id"]
    return document_id


def upload(
    http: httpx.Client, token: str, document_id: str, data: bytes, key: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return http.put(f"/v1/documents/{document_id}/content", content=data, headers=headers)


def grant_repeated(
    http: httpx.Client,
    agency: Agency,
    owner_token_: str,
    personal_id: str,
    document_types: list[str],
    *,
    max_uses: int = 100_000,
) -> str:
    """An agency asks for ``document_types`` (repeated access for two days) and the owner grants
    everything; returns the grant id."""
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    created = _ok(
        http.post(
            "/v1/agency/consent-requests",
            json={
                "subject_personal_id": personal_id,
                "purpose": "Kiểm thử độ bền (assurance)",
                "procedure_code": "1.004222",
                "dossier_ref": "HS-" + secrets.token_hex(3),
                "items": [{"document_type": t} for t in document_types],
                "access_mode": "repeated",
                "max_uses": max_uses,
                "access_until": until,
                "retention_days": 30,
            },
            headers={"Authorization": f"Bearer {agency.token(http)}"},
        ),
        201,
    )
    decided = _ok(
        http.post(
            f"/v1/consents/{created['id']}/decision",
            json={"decision": "grant"},
            headers={"Authorization": f"Bearer {owner_token_}"},
        ),
        200,
    )
    grant_id: str = decided["grant"]["id"]
    return grant_id


def checkpoint(http: httpx.Client, operator: str) -> None:
    _ok(
        http.post(
            "/v1/admin/access-log/checkpoints", headers={"Authorization": f"Bearer {operator}"}
        ),
        201,
    )


# -- the chaos run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosPlan:
    api_kills: int = 200
    minio_kills: int = 20
    pg_stops: int = 20
    uploaders: int = 3
    owners: int = 6
    seed: int | None = None
    # After each fault: load runs this long (uniform) before the next one is armed.
    load_window: tuple[float, float] = (0.2, 1.2)
    # MinIO and PostgreSQL stay down this long (uniform) before they are started again.
    outage: tuple[float, float] = (0.2, 1.0)
    resolve_timeout: float = 240.0
    # This share of first attempts stop waiting for the answer after 1 ms, as if the response
    # were lost: the retry (same key) races the original request, or finds it committed.
    lost_response_rate: float = 0.05


@dataclass
class Ack:
    """An upload that got a 2xx."""

    owner_id: uuid.UUID
    document_id: str
    version: int
    sha256: str
    size: int
    key: str
    attempts: int
    replayed: bool  # the 2xx came from a retry, but the commit was an earlier attempt's
    dropped: bool = False  # the first attempt's response was dropped on purpose


@dataclass
class ChaosReport:
    plan: ChaosPlan
    seed: int
    started: str = ""
    seconds: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    inflight_at_fault: list[int] = field(default_factory=list)
    api_restart_seconds: list[float] = field(default_factory=list)
    unexpected_api_exits: int = 0
    uploads_acknowledged: int = 0
    new_versions_acknowledged: int = 0
    upload_attempts: int = 0
    responses_dropped: int = 0
    uploads_retried: int = 0
    replayed_commits: int = 0
    replayed_after_drop: int = 0
    bytes_acknowledged: int = 0
    attempt_outcomes: Counter[str] = field(default_factory=Counter)
    documents_created: int = 0
    empty_documents: int = 0
    sweep: dict[str, int] = field(default_factory=dict)
    second_sweep: dict[str, int] = field(default_factory=dict)
    objects_in_bucket: int = 0
    committed_versions: int = 0
    read_back: int = 0
    fetches_ok: int = 0
    fetch_attempts: int = 0
    grant_uses: int = 0
    allowed_fetch_entries: int = 0
    log_entries_checked: int = 0
    log_checkpoints_checked: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            k: (dict(v) if isinstance(v, Counter) else v)
            for k, v in self.__dict__.items()
            if k != "plan"
        }
        data["plan"] = self.plan.__dict__
        data["ok"] = self.ok
        return data

    def summary(self) -> str:
        inflight = self.inflight_at_fault
        restarts = sorted(self.api_restart_seconds)
        lines = [
            f"crash run (seed {self.seed}) started {self.started}, {self.seconds:.0f} s",
            f"faults: api SIGKILL {self.faults['api']}, MinIO SIGKILL {self.faults['minio']}, "
            f"PostgreSQL stop -m immediate {self.faults['pg']}; uploads in flight at the fault: "
            f"min {min(inflight, default=0)}, median "
            f"{sorted(inflight)[len(inflight) // 2] if inflight else 0}, "
            f"max {max(inflight, default=0)}, with none {sum(1 for i in inflight if i == 0)}",
            f"kho serve restarts: {len(restarts)}, median "
            f"{restarts[len(restarts) // 2] if restarts else 0:.2f} s to /healthz; "
            f"unexpected exits {self.unexpected_api_exits}",
            f"uploads acknowledged: {self.uploads_acknowledged} "
            f"({self.new_versions_acknowledged} of them new versions, "
            f"{self.bytes_acknowledged / MiB:.0f} MiB) in {self.upload_attempts} attempts; "
            f"{self.uploads_retried} needed a retry, {self.replayed_commits} of those had "
            "committed before the failure (the retry got the same version back: "
            f"{self.replayed_after_drop} after a response dropped on purpose, the rest after a "
            f"fault); {self.responses_dropped} first attempts dropped their response on purpose",
            "attempt outcomes: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.attempt_outcomes.items())),
            f"documents created {self.documents_created}, empty (create answered but lost, "
            f"or never uploaded) {self.empty_documents}",
            f"sweep (grace 0): {self.sweep}; second sweep: {self.second_sweep}",
            f"after the sweep: {self.objects_in_bucket} objects, {self.committed_versions} "
            f"committed versions, {self.read_back} acknowledged uploads read back with their "
            "SHA-256",
            f"agency fetches: {self.fetches_ok} complete and correct of {self.fetch_attempts} "
            f"attempts; grant uses {self.grant_uses}, allowed fetch entries "
            f"{self.allowed_fetch_entries}",
            f"access log: verify_all ok={not any('access log' in f for f in self.failures)}, "
            f"{self.log_entries_checked} entries, {self.log_checkpoints_checked} checkpoints",
            f"failures: {len(self.failures)}",
            *(f"  - {f}" for f in self.failures[:50]),
        ]
        return "\n".join(lines)


def _document_type(rng: random.Random) -> str:
    return rng.choice(["birth_certificate", "cccd", "marriage_certificate"])


class _Chaos:
    def __init__(self, plan: ChaosPlan, report: ChaosReport, workdir: Path) -> None:
        self.plan = plan
        self.report = report
        self.workdir = workdir
        self.rng = random.Random(report.seed)
        self.lock = threading.Lock()
        self.up = threading.Event()
        self.stop = threading.Event()
        self.inflight = 0
        self.acks: list[Ack] = []
        self.documents: list[str] = []
        self.fetch_docs: dict[str, str] = {}  # document id -> sha256
        self.grant_id = ""
        self.owners: list[uuid.UUID] = []
        self._tokens: dict[uuid.UUID, tuple[float, str]] = {}
        self.pg: PrivatePostgres
        self.minio: PrivateMinio
        self.kho: KhoProcess
        self.container: Container
        self.agency: Agency

    # -- helpers shared by the threads --

    def count(self, outcome: str, n: int = 1) -> None:
        with self.lock:
            self.report.attempt_outcomes[outcome] += n

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        with self.lock:
            self.inflight += 1
        try:
            yield
        finally:
            with self.lock:
                self.inflight -= 1

    def token(self, owner: uuid.UUID) -> str:
        """A cached owner token (minting may need the database, which may be down)."""
        now = time.monotonic()
        with self.lock:
            cached = self._tokens.get(owner)
        if cached is not None and now - cached[0] < 240:
            return cached[1]
        for _ in range(200):
            try:
                token = owner_token(self.container, owner)
            except Exception:  # noqa: BLE001 - the database may be down for a moment
                if cached is not None and now - cached[0] < 540:
                    return cached[1]
                time.sleep(0.1)
                continue
            with self.lock:
                self._tokens[owner] = (now, token)
            return token
        raise RuntimeError("could not mint an owner token for 20 s")

    def client(self, read_timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.kho.url, timeout=httpx.Timeout(60.0, connect=5.0, read=read_timeout)
        )

    # -- uploads --

    def create_document(self, http: httpx.Client, owner: uuid.UUID, rng: random.Random) -> str:
        deadline = time.monotonic() + self.plan.resolve_timeout
        while time.monotonic() < deadline:
            self.up.wait(timeout=60)
            try:
                response = http.post(
                    "/v1/documents",
                    json={"type_code": _document_type(rng), "title": "Giấy tờ thử"},
                    headers={"Authorization": f"Bearer {self.token(owner)}"},
                )
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if response.status_code == 201:
                document_id: str = response.json()["id"]
                with self.lock:
                    self.documents.append(document_id)
                    self.report.documents_created += 1
                return document_id
            time.sleep(0.1)
        raise TimeoutError("could not create a document")

    def upload_until_resolved(
        self, http: httpx.Client, owner: uuid.UUID, document_id: str, data: bytes
    ) -> Ack | None:
        key = "crash-" + secrets.token_hex(12)
        sha = hashlib.sha256(data).hexdigest()
        deadline = time.monotonic() + self.plan.resolve_timeout
        attempts = 0
        drop = random.random() < self.plan.lost_response_rate
        while time.monotonic() < deadline:
            self.up.wait(timeout=60)
            attempts += 1
            began = dt.datetime.now(dt.UTC)
            try:
                with self.in_flight():
                    if drop and attempts == 1:
                        self.report.responses_dropped += 1
                        with self.client(read_timeout=0.001) as impatient:
                            response = upload(impatient, self.token(owner), document_id, data, key)
                    else:
                        response = upload(http, self.token(owner), document_id, data, key)
            except httpx.TransportError as exc:
                self.count(f"transport:{type(exc).__name__}")
                time.sleep(0.05)
                continue
            status = response.status_code
            if status in (200, 201):
                self.count(f"http:{status}")
                body = response.json()
                content = body["content"]
                if content["sha256"] != sha:
                    self.report.fail(
                        f"upload {document_id}: 2xx with sha256 {content['sha256']}, sent {sha}"
                    )
                committed = dt.datetime.fromisoformat(content["created_at"])
                return Ack(
                    owner_id=owner,
                    document_id=document_id,
                    version=int(content["version"]),
                    sha256=content["sha256"],
                    size=len(data),
                    key=key,
                    attempts=attempts,
                    replayed=attempts > 1 and committed < began,
                    dropped=drop,
                )
            code = ""
            with contextlib.suppress(ValueError):
                code = str(response.json().get("code", ""))
            self.count(f"http:{status}:{code}")
            if status >= 500 or status in (401, 409, 429):
                time.sleep(0.1 + random.random() * 0.2)
                continue
            self.report.fail(f"upload {document_id}: definitive {status} {code}")
            return None
        self.report.fail(f"upload {document_id} (key {key}) unresolved after {attempts} attempts")
        return None

    def uploader(self, index: int) -> None:
        rng = random.Random(self.report.seed * 1000 + index)
        mine: list[Ack] = []
        with self.client() as http:
            while not self.stop.is_set():
                owner = rng.choice(self.owners)
                roll = rng.random()
                if roll < 0.75:
                    size = rng.randint(2 * 1024, 128 * 1024)
                elif roll < 0.95:
                    size = rng.randint(128 * 1024, 2 * MiB)
                else:
                    size = rng.randint(9 * MiB, 12 * MiB)  # multipart in MinIO (8 MiB parts)
                previous = [a for a in mine if a.owner_id == owner]
                try:
                    if previous and rng.random() < 0.2:
                        document_id = rng.choice(previous).document_id
                        new_version = True
                    else:
                        document_id = self.create_document(http, owner, rng)
                        new_version = False
                    ack = self.upload_until_resolved(http, owner, document_id, paper_bytes(size))
                except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                    self.report.fail(f"uploader {index}: {type(exc).__name__}: {exc}")
                    return
                if ack is None:
                    continue
                mine.append(ack)
                with self.lock:
                    self.acks.append(ack)
                    self.report.uploads_acknowledged += 1
                    self.report.new_versions_acknowledged += int(new_version)
                    self.report.bytes_acknowledged += ack.size
                    self.report.upload_attempts += ack.attempts
                    self.report.uploads_retried += int(ack.attempts > 1)
                    self.report.replayed_commits += int(ack.replayed)
                    self.report.replayed_after_drop += int(ack.replayed and ack.dropped)
                time.sleep(rng.uniform(0, 0.03))

    # -- agency fetches --

    def fetcher(self) -> None:
        token: str | None = None
        documents = list(self.fetch_docs)
        with self.client() as http:
            while not self.stop.is_set():
                self.up.wait(timeout=60)
                try:
                    if token is None:
                        token = self.agency.token(http)
                    document_id = random.choice(documents)
                    self.report.fetch_attempts += 1
                    response = http.get(
                        f"/v1/agency/grants/{self.grant_id}/documents/{document_id}/content",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except (httpx.TransportError, AssertionError):
                    time.sleep(0.1)
                    continue
                if response.status_code == 200:
                    digest = hashlib.sha256(response.content).hexdigest()
                    if digest != self.fetch_docs[document_id]:
                        self.report.fail(f"agency fetch of {document_id}: 200 with other bytes")
                    else:
                        self.report.fetches_ok += 1
                elif response.status_code == 401:
                    token = None
                time.sleep(0.05)

    # -- faults --

    def arm(self, timeout: float = 20.0) -> int:
        """Wait for uploads in flight, then a random moment (0-50 ms) into them: the number
        still in flight then (0 only if none could be caught within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                busy = self.inflight > 0
            if not busy:
                time.sleep(0.002)
                continue
            time.sleep(self.rng.uniform(0, 0.05))
            with self.lock:
                if self.inflight > 0:
                    return self.inflight
        return 0

    def restart_api(self) -> None:
        self.up.clear()
        self.kho.kill()
        seconds = self.kho.start()
        self.report.api_restart_seconds.append(seconds)
        self.up.set()

    def conduct(self) -> None:
        plan = self.plan
        faults = ["api"] * plan.api_kills + ["minio"] * plan.minio_kills + ["pg"] * plan.pg_stops
        self.rng.shuffle(faults)
        for number, fault in enumerate(faults, start=1):
            time.sleep(self.rng.uniform(*plan.load_window))
            if not self.kho.alive():
                self.report.unexpected_api_exits += 1
                self.restart_api()
            self.report.inflight_at_fault.append(self.arm())
            if fault == "api":
                self.restart_api()
            elif fault == "minio":
                self.minio.kill()
                time.sleep(self.rng.uniform(*plan.outage))
                self.minio.start()
            else:
                self.pg.stop("immediate")
                time.sleep(self.rng.uniform(*plan.outage))
                self.pg.start()
            self.report.faults[fault] += 1
            if number % 10 == 0:
                print(
                    f"[crash] {number}/{len(faults)} faults, "
                    f"{self.report.uploads_acknowledged} uploads acknowledged",
                    file=sys.stderr,
                    flush=True,
                )

    # -- the run --

    def run(self) -> None:
        with PrivatePostgres() as pg, PrivateMinio() as minio:
            self.pg, self.minio = pg, minio
            key_file = self.workdir / "keys" / "master.key"
            generate_key_file(key_file)
            env = {
                "KHO_DATA_DIR": str(self.workdir / "var"),
                "KHO_DATABASE_URL": pg.app_url,
                "KHO_OBJECT_STORE": "s3",
                "KHO_S3_ENDPOINT": minio.endpoint,
                "KHO_S3_ACCESS_KEY": minio.access_key,
                "KHO_S3_SECRET_KEY": minio.secret_key,
                "KHO_S3_BUCKET": "kho-crash",
                "KHO_MASTER_KEY_FILE": str(key_file),
                "KHO_MAX_UPLOAD_BYTES": str(32 * MiB),
                "KHO_LOG_LEVEL": "WARNING",
                "KHO_WEBHOOK_INTERVAL_SECONDS": "0",
            }
            self.kho = KhoProcess(self.workdir, env)
            self.kho.start(migrate=True)
            self.container = build_container(self.kho.settings)
            try:
                self._run_with_server()
            finally:
                self.stop.set()
                self.kho.stop()
                self.container.close()

    def _run_with_server(self) -> None:
        started = time.monotonic()
        self.owners = [enrol_citizen(self.container)[0] for _ in range(self.plan.owners)]
        fetch_owner, pin = enrol_citizen(self.container)
        with self.client() as http:
            operator = operator_token(self.container)
            self.agency = make_agency(http, operator, "CRASH-TN", "Sở Kiểm thử tỉnh Thái Nguyên")
            token = owner_token(self.container, fetch_owner)
            for type_code in ("birth_certificate", "cccd"):
                document_id = create_document(http, token, type_code)
                data = paper_bytes(300_000)
                key = "crash-" + secrets.token_hex(12)
                body = _ok(upload(http, token, document_id, data, key), 201)
                self.fetch_docs[document_id] = hashlib.sha256(data).hexdigest()
                self.documents.append(document_id)
                self.acks.append(
                    Ack(
                        fetch_owner,
                        document_id,
                        1,
                        body["content"]["sha256"],
                        len(data),
                        key,
                        1,
                        False,
                    )
                )
            self.grant_id = grant_repeated(
                http, self.agency, token, pin, ["birth_certificate", "cccd"]
            )
            checkpoint(http, operator)
        self.up.set()
        threads = [
            threading.Thread(target=self.uploader, args=(i,), name=f"uploader-{i}", daemon=True)
            for i in range(self.plan.uploaders)
        ]
        threads.append(threading.Thread(target=self.fetcher, name="fetcher", daemon=True))
        for thread in threads:
            thread.start()
        try:
            self.conduct()
            time.sleep(1.0)
        finally:
            if not self.kho.alive():
                self.report.unexpected_api_exits += 1
                self.restart_api()
            if not self.minio.alive():
                self.minio.start()
            if not self.pg.running():
                self.pg.start()
            self.up.set()
            self.stop.set()
            for thread in threads:
                thread.join(timeout=self.plan.resolve_timeout + 60)
                if thread.is_alive():
                    self.report.fail(f"{thread.name} did not finish")
        with self.client() as http:
            checkpoint(http, operator_token(self.container))
        self.verify()
        self.report.seconds = time.monotonic() - started

    # -- after the chaos --

    def verify(self) -> None:
        report = self.report
        container = self.container
        sweeper = StorageSweeper(
            container.sessions, container.objects, container.clock, grace=dt.timedelta(0)
        )
        report.sweep = dict(sweeper.run().__dict__)
        report.second_sweep = dict(sweeper.run().__dict__)
        if any(report.second_sweep.values()):
            report.fail(f"a second sweep still found work: {report.second_sweep}")
        acks = {(a.document_id, a.version): a for a in self.acks}
        if len(acks) != len(self.acks):
            report.fail(f"{len(self.acks) - len(acks)} acknowledgements named a version twice")
        with container.sessions() as session:
            rows = session.execute(
                select(
                    DocumentVersion.document_id,
                    DocumentVersion.version,
                    DocumentVersion.status,
                    DocumentVersion.sha256,
                    DocumentVersion.object_key,
                    DocumentVersion.wrapped_data_key.is_not(None),
                    DocumentVersion.shredded_at,
                )
            ).all()
            documents = session.execute(select(Document.id, Document.current_version)).all()
            records = {
                (r.principal_id, r.scope, r.key): int(r.body.get("version", -1))
                for r in session.scalars(
                    select(IdempotencyRecord).where(IdempotencyRecord.scope.like("upload:%"))
                )
            }
            grant = session.get(Grant, uuid.UUID(self.grant_id))
            report.grant_uses = grant.uses if grant is not None else -1
            report.allowed_fetch_entries = int(
                session.scalar(
                    select(func.count())
                    .select_from(AccessLogEntry)
                    .where(
                        AccessLogEntry.grant_id == uuid.UUID(self.grant_id),
                        AccessLogEntry.action == "document.fetch",
                        AccessLogEntry.decision == "allowed",
                    )
                )
                or 0
            )
            log = AccessLog(session, container.clock, ProviderJwsSigner(container.signing_keys))
            verified = log.verify_all()
            session.rollback()
        report.log_entries_checked = verified.entries_checked
        report.log_checkpoints_checked = verified.checkpoints_checked
        if not verified.ok:
            report.fail(f"access log does not verify: {verified.first_failure}")
        if report.allowed_fetch_entries != report.grant_uses:
            report.fail(
                f"access log has {report.allowed_fetch_entries} allowed fetches, the grant "
                f"counted {report.grant_uses} uses"
            )
        if report.fetches_ok > report.grant_uses:
            report.fail(f"{report.fetches_ok} fetches served but only {report.grant_uses} logged")

        pending = [r for r in rows if r.status != VersionStatus.committed]
        if pending:
            report.fail(f"{len(pending)} pending versions left after the sweep")
        committed = {
            (str(r.document_id), r.version): r for r in rows if r.status == VersionStatus.committed
        }
        report.committed_versions = len(committed)
        for lost in sorted(set(acks) - set(committed)):
            report.fail(f"acknowledged upload lost: document {lost[0]} version {lost[1]}")
        for extra in sorted(set(committed) - set(acks)):
            report.fail(f"committed version nobody was acknowledged for: {extra}")
        shas: dict[str, set[str]] = {}
        for (document_id, version), row in committed.items():
            ack = acks.get((document_id, version))
            if ack is not None and row.sha256 != ack.sha256:
                report.fail(f"{document_id} v{version}: stored sha256 differs from the ack")
            seen = shas.setdefault(document_id, set())
            if row.sha256 in seen:
                report.fail(f"duplicate content in {document_id} (v{version})")
            seen.add(row.sha256)
        for ack in self.acks:
            recorded = records.get((ack.owner_id, f"upload:{ack.document_id}", ack.key))
            if recorded != ack.version:
                report.fail(f"idempotency record of {ack.document_id} v{ack.version} is wrong")
        latest: dict[str, int] = {}
        for ack in self.acks:
            latest[ack.document_id] = max(latest.get(ack.document_id, 0), ack.version)
        for row_id, current in documents:
            expected = latest.get(str(row_id))
            if expected is None:
                report.empty_documents += int(current is None)
                if current is not None:
                    report.fail(f"{row_id} has content nobody was acknowledged for")
            elif current != expected:
                report.fail(f"{row_id}: current version {current}, acknowledged {expected}")

        live = {row.object_key for row in committed.values() if row[5] and row.shredded_at is None}
        keys = [info.key for info in container.objects.list("")]
        report.objects_in_bucket = len(keys)
        for key in keys:
            if key not in live:
                report.fail(f"object {key} belongs to no committed, unshredded version")
        for key in live - set(keys):
            report.fail(f"object {key} of a committed version is missing")

        with self.client() as http:
            for ack in self.acks:
                digest = hashlib.sha256()
                with http.stream(
                    "GET",
                    f"/v1/documents/{ack.document_id}/content",
                    params={"version": ack.version},
                    headers={"Authorization": f"Bearer {self.token(ack.owner_id)}"},
                ) as response:
                    if response.status_code != 200:
                        report.fail(
                            f"acknowledged {ack.document_id} v{ack.version} reads "
                            f"{response.status_code}"
                        )
                        continue
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                if digest.hexdigest() != ack.sha256:
                    report.fail(f"acknowledged {ack.document_id} v{ack.version}: other bytes")
                else:
                    report.read_back += 1


def run_chaos(plan: ChaosPlan, workdir: Path | None = None) -> ChaosReport:
    """Run the faults of ``plan`` against private servers; every check's failure is in the
    report (``report.ok``), which also carries the figures."""
    seed = plan.seed if plan.seed is not None else secrets.randbelow(2**31)
    report = ChaosReport(plan=plan, seed=seed, started=dt.datetime.now(dt.UTC).isoformat())
    own = workdir is None
    root = _private_dir("kho-crash-") if workdir is None else workdir
    try:
        _Chaos(plan, report, root).run()
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return report


# -- a backup drill on the same private servers ----------------------------------------------------


def _backup_cli(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """``kho backup|restore`` as an operator runs it (a child process), timed."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
    clean.update(env)
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", "from api.cli_backup import backup_app; backup_app()", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        cwd=ROOT,
    )
    return result.returncode, result.stdout + result.stderr, time.perf_counter() - began


def backup_drill(papers: int = 1000, owners: int = 200, fetches: int = 2000) -> dict[str, Any]:
    """Fill private PostgreSQL + MinIO through the API (papers of 100-500 KB, one in a hundred
    of 8 MiB; grants and agency fetches; checkpoints), then time ``kho backup`` and ``kho
    restore`` onto a fresh database and bucket, with and without the decrypt check."""
    root = _private_dir("kho-drill-")
    try:
        with PrivatePostgres() as pg, PrivateMinio() as minio:
            key_file = root / "keys" / "master.key"
            generate_key_file(key_file)
            env = {
                "KHO_DATA_DIR": str(root / "var"),
                "KHO_DATABASE_URL": pg.app_url,
                "KHO_OBJECT_STORE": "s3",
                "KHO_S3_ENDPOINT": minio.endpoint,
                "KHO_S3_ACCESS_KEY": minio.access_key,
                "KHO_S3_SECRET_KEY": minio.secret_key,
                "KHO_S3_BUCKET": "kho-source",
                "KHO_MASTER_KEY_FILE": str(key_file),
                "KHO_MAX_UPLOAD_BYTES": str(32 * MiB),
                "KHO_LOG_LEVEL": "WARNING",
                "KHO_WEBHOOK_INTERVAL_SECONDS": "0",
            }
            kho = KhoProcess(root, env)
            kho.start(migrate=True)
            container = build_container(kho.settings)
            people = [enrol_citizen(container) for _ in range(owners)]
            stored: list[tuple[uuid.UUID, str]] = []
            lock = threading.Lock()
            began = time.perf_counter()

            def fill(start: int) -> None:
                with httpx.Client(base_url=kho.url, timeout=60) as http:
                    for i in range(start, papers, 4):
                        owner = people[i % owners][0]
                        token = owner_token(container, owner)
                        document_id = create_document(
                            http, token, ("birth_certificate", "cccd")[i % 2]
                        )
                        size = 8 * MiB if i % 100 == 0 else 100_000 + (i * 7919) % 400_000
                        _ok(upload(http, token, document_id, paper_bytes(size)), 201)
                        with lock:
                            stored.append((owner, document_id))

            workers = [threading.Thread(target=fill, args=(k,)) for k in range(4)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            fill_seconds = time.perf_counter() - began
            with httpx.Client(base_url=kho.url, timeout=60) as http:
                agency = make_agency(http, operator_token(container), "DRILL-TN", "Sở Diễn tập")
                grants = {
                    owner: grant_repeated(
                        http,
                        agency,
                        owner_token(container, owner),
                        pin,
                        ["birth_certificate", "cccd"],
                    )
                    for owner, pin in people[:50]
                }
                shared = [(o, d) for o, d in stored if o in grants]
                token = agency.token(http)
                for n in range(fetches):
                    owner, document_id = shared[n % len(shared)]
                    http.get(
                        f"/v1/agency/grants/{grants[owner]}/documents/{document_id}/content",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    if n % 500 == 499:
                        checkpoint(http, operator_token(container))
                        token = agency.token(http)
                checkpoint(http, operator_token(container))
            kho.stop()
            container.close()
            backup_dir, erasures = root / "backup", root / "operator" / "erasures.txt"
            code, out, backup_seconds = _backup_cli(
                ["backup", str(backup_dir), "--erasure-list", str(erasures)], env
            )
            if code != 0:
                raise RuntimeError(out)
            timings: dict[str, float] = {}
            for name, extra in (
                ("restore_checked", []),
                ("restore_unchecked", ["--no-check-documents"]),
            ):
                target = {
                    **env,
                    "KHO_DATABASE_URL": pg.create_database(name),
                    "KHO_S3_BUCKET": "kho-" + name.replace("_", "-"),
                    "KHO_DATA_DIR": str(root / name),
                }
                code, out, seconds = _backup_cli(
                    ["restore", str(backup_dir), "--erasure-list", str(erasures), *extra], target
                )
                if code != 0:
                    raise RuntimeError(out)
                print(out, file=sys.stderr)
                timings[name] = seconds
            manifest = json.loads((backup_dir / "manifest.json").read_text())
            return {
                "measured_at": dt.datetime.now(dt.UTC).isoformat(),
                "owners": owners,
                "papers": papers,
                "fetches": fetches,
                "fill_seconds": round(fill_seconds, 1),
                "objects": manifest["objects"],
                "object_mib": round(manifest["object_bytes"] / MiB, 1),
                "database_file_bytes": next(
                    f["size"] for f in manifest["files"] if f["path"] == manifest["database_file"]
                ),
                "backup_seconds": round(backup_seconds, 2),
                "restore_seconds_with_decrypt_check": round(timings["restore_checked"], 2),
                "restore_seconds_without": round(timings["restore_unchecked"], 2),
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--api-kills", type=int, default=200)
    parser.add_argument("--minio-kills", type=int, default=20)
    parser.add_argument("--pg-stops", type=int, default=20)
    parser.add_argument("--uploaders", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--backup-drill",
        type=int,
        metavar="PAPERS",
        default=None,
        help="instead of the crash run: fill PAPERS papers, time kho backup and kho restore",
    )
    args = parser.parse_args(argv)
    if args.backup_drill is not None:
        figures = backup_drill(papers=args.backup_drill)
        print(json.dumps(figures, indent=2))
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0
    plan = ChaosPlan(
        api_kills=args.api_kills,
        minio_kills=args.minio_kills,
        pg_stops=args.pg_stops,
        uploaders=args.uploaders,
        seed=args.seed,
    )
    report = run_chaos(plan)
    print(report.summary())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
