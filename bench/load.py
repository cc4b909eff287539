"""A mixed citizen-and-agency load, and a soak, against two API processes (locust, headless).

    python -m bench.load [--users 40] [--spawn-rate 10] [--seconds 60] [--workers 2]
    python -m bench.load --soak-minutes 30 [--sample-seconds 30]

A real Kho (``kho serve --workers 2``: two API processes sharing one socket) on PostgreSQL and
MinIO from ``scripts/services.sh``, on loopback. Before the load, through the API: ``--owners``
citizens with three small papers each (10 KB PDFs), an agency with a back-end client, a
repeated-access grant from every owner to the agency and one pending request in every inbox.
Rate limiting stays on (every request pays its counter), with budgets far above this load.

Locust's Python API (``locust.env.Environment`` and a local runner) drives ``--users``
simulated users, three citizens to one agency back-end, each waiting 0.2-0.8 s between tasks:

* citizen: list my papers, download one, upload a new 10 KB version, read my consent inbox;
* agency: fetch a paper under a grant (the grant check, the atomic use and the access-log
  entry before the first byte), list what a grant covers; the agency refreshes its
  client-credentials token every 5 minutes.

The report: per request type, the count, failures, median, p95 and p99 (ms) and the rate. With
``--soak-minutes`` the same load runs that long instead and the API processes' resident sets
(``/proc``, through psutil) are sampled every ``--sample-seconds``: growth is the last sample
over the first one taken after one minute of warm-up (target: under 10 %). Every run is bounded:
at most 500 users and 120 minutes.

Locust patches the standard library for gevent when it is imported, so this module imports it
first and everything that opens sockets (httpx, the database drivers) afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import gevent  # type: ignore[import-untyped]
import psutil  # type: ignore[import-untyped]
from locust import FastHttpUser, between, task
from locust.env import Environment

if TYPE_CHECKING:
    from tests.kho_server import KhoServer

MAX_USERS = 500
MAX_MINUTES = 120
PAPER_BYTES = 10_000
TOKEN_REFRESH_SECONDS = 300.0


def small_pdf(seed: str, size: int = PAPER_BYTES) -> bytes:
    head = b"%PDF-1.4\n% " + hashlib.sha256(seed.encode()).hexdigest().encode() + b"\n"
    return head + b"0" * (size - len(head) - 6) + b"\n%%EOF"


@dataclass
class OwnerData:
    headers: dict[str, str]
    documents: list[str]
    scratch: str  # the paper that uploads add versions to
    grant: str
    granted_document: str


@dataclass
class World:
    """What the set-up made; the users read it (one process, no locking needed)."""

    url: str
    owners: list[OwnerData] = field(default_factory=list)
    agency_client: str = ""
    agency_secret: str = ""
    _next: Iterator[int] = field(default_factory=itertools.count)

    def next_owner(self) -> OwnerData:
        return self.owners[next(self._next) % len(self.owners)]


class _Current:
    world: World | None = None


def world() -> World:
    if _Current.world is None:
        raise RuntimeError("bench.load: the users run only after set-up (python -m bench.load)")
    return _Current.world


class Citizen(FastHttpUser):
    weight = 3
    wait_time = between(0.2, 0.8)

    def on_start(self) -> None:
        self.owner = world().next_owner()

    @task(4)
    def list_documents(self) -> None:
        self.client.get("/v1/documents", headers=self.owner.headers, name="citizen: list papers")

    @task(3)
    def download(self) -> None:
        document = secrets.choice(self.owner.documents)
        self.client.get(
            f"/v1/documents/{document}/content",
            headers=self.owner.headers,
            name="citizen: download 10 KB",
        )

    @task(1)
    def upload(self) -> None:
        self.client.put(
            f"/v1/documents/{self.owner.scratch}/content",
            # New bytes every time: the same bytes again would be stored, then found to be an
            # existing version and dropped. (Bytes are sent as they are; locust types str | dict.)
            data=cast(str, small_pdf(f"upload-{uuid.uuid4()}")),
            headers={**self.owner.headers, "Content-Type": "application/pdf"},
            name="citizen: upload 10 KB",
        )

    @task(2)
    def inbox(self) -> None:
        self.client.get("/v1/consents", headers=self.owner.headers, name="citizen: consent inbox")


class Agency(FastHttpUser):
    weight = 1
    wait_time = between(0.2, 0.8)
    _token: ClassVar[tuple[float, str] | None] = None

    def headers(self) -> dict[str, str]:
        """The agency's client-credentials token, shared by its users, renewed every 5 min."""
        cached = Agency._token
        if cached is None or time.monotonic() - cached[0] > TOKEN_REFRESH_SECONDS:
            state = world()
            response = self.client.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "kho:agency"},
                auth=(state.agency_client, state.agency_secret),
                name="agency: client-credentials token",
            )
            token = str(response.json()["access_token"])
            cached = Agency._token = (time.monotonic(), token)
        return {"Authorization": f"Bearer {cached[1]}"}

    @task(5)
    def fetch(self) -> None:
        owner = world().next_owner()
        self.client.get(
            f"/v1/agency/grants/{owner.grant}/documents/{owner.granted_document}/content",
            headers=self.headers(),
            name="agency: fetch under grant",
        )

    @task(1)
    def grant_documents(self) -> None:
        owner = world().next_owner()
        self.client.get(
            f"/v1/agency/grants/{owner.grant}/documents",
            headers=self.headers(),
            name="agency: grant's documents",
        )


# -- set-up -----------------------------------------------------------------------------------


def _ok(response: Any, *codes: int) -> Any:
    if response.status_code not in (codes or (200,)):
        raise SystemExit(
            f"set-up: {response.request.method} {response.request.url} -> "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response.json() if response.content else None


def set_up(server: KhoServer, owners: int, token_lifetime: dt.timedelta) -> World:
    """Owners, papers, an agency, grants and pending requests, through the API."""
    from api.container import API_AUDIENCE
    from identity.service import CitizenProfile, IdentityService
    from storage.db import session_scope

    container = server.container
    state = World(url=server.url)
    operator = container.issuer.access_token(
        subject="bench-operator",
        audience=API_AUDIENCE,
        client_id="bench-operator",
        scopes=["kho:admin"],
    )
    ops = {"Authorization": f"Bearer {operator}"}
    with server.http() as http:
        agency = _ok(
            http.post(
                "/v1/admin/agencies",
                json={"code": "LOAD-1", "name_vi": "Sở Tư pháp (tải)", "level": "province"},
                headers=ops,
            ),
            201,
        )
        state.agency_client = "load-backend"
        registered = _ok(
            http.put(
                f"/v1/admin/clients/{state.agency_client}",
                json={
                    "client_id": state.agency_client,
                    "name": "Sở Tư pháp",
                    "kind": "agency",
                    "token_endpoint_auth_method": "client_secret_basic",
                    "grant_types": ["client_credentials"],
                    "scopes": ["kho:agency"],
                    "agency_id": agency["id"],
                },
                headers=ops,
            ),
            201,
        )
        state.agency_secret = registered["client_secret"]
        issued = _ok(
            http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "kho:agency"},
                auth=(state.agency_client, state.agency_secret),
            )
        )
        as_agency = {"Authorization": f"Bearer {issued['access_token']}"}
        until = (container.clock.now() + dt.timedelta(days=2)).isoformat()
        for index in range(owners):
            pin = f"0190{90 + index // 10**6:02d}{index % 10**6:06d}"
            with session_scope(container.sessions) as session:
                account = IdentityService(session, container.clock).enrol_citizen(
                    CitizenProfile(f"load-{uuid.uuid4()}", pin, "Người Dùng Thử", None, 2)
                )
                owner_id = account.id
            token = container.issuer.access_token(
                subject=str(owner_id),
                audience=API_AUDIENCE,
                client_id="bench-load",
                acr="vneid-2",
                auth_time=container.clock.now(),
                lifetime=token_lifetime,
            )
            headers = {"Authorization": f"Bearer {token}"}
            documents = []
            for type_code in ("birth_certificate", "cccd", "other"):
                created = _ok(
                    http.post(
                        "/v1/documents",
                        json={"type_code": type_code, "title": f"{type_code} {index}"},
                        headers=headers,
                    ),
                    201,
                )
                _ok(
                    http.put(
                        f"/v1/documents/{created['id']}/content",
                        content=small_pdf(f"{owner_id}-{type_code}"),
                        headers={**headers, "Content-Type": "application/pdf"},
                    ),
                    201,
                )
                documents.append(created["id"])
            asked = _ok(
                http.post(
                    "/v1/agency/consent-requests",
                    json={
                        "subject_personal_id": pin,
                        "purpose": "Đo tải: giải quyết thủ tục",
                        "procedure_code": "1.004222",
                        "items": [{"document_type": "birth_certificate"}],
                        "access_mode": "repeated",
                        "max_uses": 100_000,
                        "access_until": until,
                        "retention_days": 0,
                    },
                    headers=as_agency,
                ),
                201,
            )
            decided = _ok(
                http.post(
                    f"/v1/consents/{asked['id']}/decision",
                    json={"decision": "grant"},
                    headers=headers,
                )
            )
            _ok(
                http.post(
                    "/v1/agency/consent-requests",
                    json={
                        "subject_personal_id": pin,
                        "purpose": "Đo tải: yêu cầu đang chờ",
                        "procedure_code": "1.004222",
                        "items": [{"document_type": "cccd"}],
                        "retention_days": 0,
                    },
                    headers=as_agency,
                ),
                201,
            )
            state.owners.append(
                OwnerData(
                    headers=headers,
                    documents=documents,
                    scratch=documents[2],
                    grant=decided["grant"]["id"],
                    granted_document=documents[0],
                )
            )
    return state


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    rss: dict[int, int]  # API process id -> resident bytes

    @property
    def total(self) -> int:
        return sum(self.rss.values())


def api_processes(pid: int) -> list[psutil.Process]:
    """The processes that serve requests: uvicorn's workers, or the server itself."""
    root = psutil.Process(pid)
    workers = [
        child
        for child in root.children(recursive=True)
        if "resource_tracker" not in " ".join(child.cmdline())
    ]
    return workers or [root]


def sample(pid: int, started: float) -> Sample:
    sizes: dict[int, int] = {}
    for process in api_processes(pid):
        try:
            sizes[process.pid] = process.memory_info().rss
        except psutil.Error:
            continue
    return Sample(time.monotonic() - started, sizes)


def stats_table(environment: Environment, seconds: float) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    entries = sorted(environment.stats.entries.values(), key=lambda e: e.name)
    for entry in [*entries, environment.stats.total]:
        rows.append(
            {
                "name": entry.name if entry in entries else "all requests",
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "p50_ms": entry.get_response_time_percentile(0.5),
                "p95_ms": entry.get_response_time_percentile(0.95),
                "p99_ms": entry.get_response_time_percentile(0.99),
                "rps": entry.num_requests / seconds if seconds else 0.0,
            }
        )
    lines = [
        "| request | count | failures | p50 ms | p95 ms | p99 ms | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['requests']} | {row['failures']} | {row['p50_ms']:.0f} | "
            f"{row['p95_ms']:.0f} | {row['p99_ms']:.0f} | {row['rps']:.1f} |"
        )
    errors = [
        f"- {error.method} {error.name}: {error.error} ×{error.occurrences}"
        for error in environment.stats.errors.values()
    ]
    if errors:
        lines += ["", "Errors:", *errors]
    return "\n".join(lines), rows


def run_load(
    url: str,
    users: int,
    spawn_rate: float,
    seconds: float,
    pid: int,
    sample_seconds: float,
) -> tuple[Environment, list[Sample], float]:
    environment = Environment(user_classes=[Citizen, Agency], host=url)
    runner = environment.create_local_runner()
    samples: list[Sample] = []
    started = time.monotonic()

    def sampler() -> None:
        while True:
            samples.append(sample(pid, started))
            gevent.sleep(sample_seconds)

    watcher = gevent.spawn(sampler)
    runner.start(users, spawn_rate=spawn_rate)
    gevent.spawn_later(seconds, runner.quit)
    runner.greenlet.join(timeout=seconds + 120)
    watcher.kill()
    samples.append(sample(pid, started))
    return environment, samples, time.monotonic() - started


def memory_report(samples: list[Sample], warmup: float) -> tuple[str, dict[str, Any]]:
    settled = [s for s in samples if s.seconds >= warmup] or samples
    base, last = settled[0], settled[-1]
    growth = (last.total - base.total) / base.total if base.total else 0.0
    peak = max(s.total for s in settled)
    lines = [
        f"API processes: {len(last.rss)}; samples: {len(samples)}",
        f"RSS (sum) after warm-up {base.total / 2**20:.1f} MiB at {base.seconds:.0f} s, "
        f"last {last.total / 2**20:.1f} MiB at {last.seconds:.0f} s, peak "
        f"{peak / 2**20:.1f} MiB; growth {growth * 100:+.1f} % (target < 10 %)",
        "",
        "| t (s) | " + " | ".join(f"pid {p} MiB" for p in sorted(last.rss)) + " | sum MiB |",
        "|---:|" + "---:|" * (len(last.rss) + 1),
    ]
    for s in samples:
        cells = [f"{s.rss.get(p, 0) / 2**20:.1f}" for p in sorted(last.rss)]
        lines.append(f"| {s.seconds:.0f} | " + " | ".join(cells) + f" | {s.total / 2**20:.1f} |")
    data = {
        "baseline_mib": base.total / 2**20,
        "last_mib": last.total / 2**20,
        "peak_mib": peak / 2**20,
        "growth": growth,
        "samples": [{"t": s.seconds, "rss": s.rss} for s in samples],
    }
    return "\n".join(lines), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mixed load and soak against two API processes")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--spawn-rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--owners", type=int, default=20)
    parser.add_argument("--no-rate-limit", action="store_true", help="measure without limits")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 1 <= args.users <= MAX_USERS:
        parser.error(f"--users must be 1..{MAX_USERS}")
    seconds = args.soak_minutes * 60 if args.soak_minutes else args.seconds
    if not 1 <= seconds <= MAX_MINUTES * 60:
        parser.error(f"a run lasts 1 s to {MAX_MINUTES} minutes")

    from tests.kho_server import running_kho
    from tests.services import require_minio

    minio = require_minio()
    workdir = Path(tempfile.mkdtemp(prefix="kho-bench-load-"))
    with running_kho(
        workdir,
        postgres=True,
        workers=args.workers,
        object_store="s3",
        s3_endpoint=minio.endpoint,
        s3_access_key=minio.access_key,
        s3_secret_key=minio.secret_key,
        s3_bucket=f"kho-load-{uuid.uuid4().hex[:8]}",
        webhook_interval_seconds=0,
        rate_limit_enabled=not args.no_rate_limit,
        rate_limit_owner_per_minute=1_000_000,
        rate_limit_client_per_minute=1_000_000,
        rate_limit_anonymous_per_minute=1_000_000,
    ) as server:
        print(f"set-up: {args.owners} owners, grants and requests ...", file=sys.stderr)
        _Current.world = set_up(server, args.owners, dt.timedelta(seconds=seconds + 3600))
        kind = f"soak {args.soak_minutes:g} min" if args.soak_minutes else f"load {seconds:g} s"
        print(f"{kind}: {args.users} users against {server.url} ...", file=sys.stderr)
        environment, samples, elapsed = run_load(
            server.url,
            args.users,
            args.spawn_rate,
            seconds,
            server.pid,
            args.sample_seconds,
        )
        alive = server.alive()
        objects = sum(1 for _ in server.container.objects.list(""))
        for info in server.container.objects.list(""):
            server.container.objects.delete(info.key)
    table, rows = stats_table(environment, elapsed)
    memory, memory_data = memory_report(samples, args.warmup_seconds)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"### {kind}, {args.users} users (3 citizens : 1 agency, 0.2-0.8 s between tasks), "
        f"{args.workers} API processes, PostgreSQL + MinIO, rate limits "
        f"{'off' if args.no_rate_limit else 'on'}\n\n"
        f"{started}; {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {elapsed:.0f} s measured; server alive after: {alive}; "
        f"objects written: {objects}\n"
    )
    print(header)
    print(table)
    print()
    print(memory)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "kind": kind,
                    "users": args.users,
                    "workers": args.workers,
                    "rate_limits": not args.no_rate_limit,
                    "elapsed": elapsed,
                    "requests": rows,
                    "memory": memory_data,
                },
                indent=2,
            )
        )
    failures = environment.stats.total.num_failures
    return 0 if alive and failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
