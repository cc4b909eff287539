"""Resource limits of a real ``kho serve``: oversized, deep and slow bodies, floods, rate limits.

Every refusal is checked for its status and problem code, and the server must answer
``/healthz`` and ``/readyz`` afterwards. Memory is the server process's resident set read from
``/proc/PID/status``. The last test runs two ``kho serve`` processes on one PostgreSQL database
and checks that a limit is exact across them. Rate-limit windows are fixed one-minute windows
aligned on the clock, so the tests that count wait for a fresh window when fewer than
``MIN_WINDOW_LEFT`` seconds of the current one remain.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import json
import math
import os
import secrets
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from api.container import API_AUDIENCE
from api.limits import LimitConfig, Principal, PrincipalResolver, json_too_deep
from common.clock import FixedClock
from common.settings import Settings
from sso.errors import InvalidToken
from sso.tokens import AccessClaims
from storage.db import Base
from storage.ratelimit import RateLimitStore, window_of
from tests.assurance.test_scale_out import kho_pair
from tests.conftest import drop_postgres_database, fresh_postgres_database, make_citizen
from tests.kho_server import KhoServer, running_kho

MiB = 1024 * 1024
MIN_WINDOW_LEFT = 25.0
PROBLEM = "application/problem+json"


# -- helpers ----------------------------------------------------------------------------------


def fresh_window(min_left: float = MIN_WINDOW_LEFT) -> None:
    """Wait for the next one-minute window if the current one is nearly over."""
    left = 60 - time.time() % 60
    if left < min_left:
        time.sleep(left + 0.5)


def rss(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def owner_headers(server: KhoServer) -> tuple[dict[str, str], uuid.UUID]:
    owner = make_citizen(server.container)
    token = server.container.issuer.access_token(
        subject=str(owner.account_id),
        audience=API_AUDIENCE,
        client_id="limits-test",
        acr="vneid-2",
        auth_time=server.container.clock.now(),
        lifetime=dt.timedelta(hours=1),
    )
    return {"Authorization": f"Bearer {token}"}, owner.account_id


def client_headers(server: KhoServer) -> dict[str, str]:
    """A client-credentials token (``sub`` is the client): an operator tool."""
    token = server.container.issuer.access_token(
        subject="limits-operator",
        audience=API_AUDIENCE,
        client_id="limits-operator",
        scopes=["kho:admin"],
    )
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == status, body
    assert body["request_id"]
    return body


def assert_healthy(server: KhoServer) -> None:
    assert server.alive()
    with server.http() as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int
    seconds: float

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class RawRequest:
    """One HTTP/1.1 request over a plain socket, sent piece by piece, stopping as soon as the
    server answers (a server that refuses early must not wait for the whole body)."""

    server: KhoServer
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0

    def open(self) -> socket.socket:
        """Connect and send the request line and headers; the body is the caller's."""
        host, port = self.server.url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=self.timeout)
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return sock

    def send(self, pieces: Iterable[bytes] = (), *, pause: float = 0.0) -> RawAnswer:
        started = time.monotonic()
        sent = 0
        with self.open() as sock:
            for piece in pieces:
                if _readable(sock, 0):
                    break
                try:
                    sock.sendall(piece)
                except OSError:
                    break
                sent += len(piece)
                if pause:
                    time.sleep(pause)
            return _read_answer(sock, started, sent, self.timeout)


def _readable(sock: socket.socket, timeout: float) -> bool:
    ready, _, _ = select.select([sock], [], [], timeout)
    return bool(ready)


def _read_answer(sock: socket.socket, started: float, sent: int, timeout: float) -> RawAnswer:
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer within {timeout} s")
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without an answer: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return RawAnswer(int(status_line.split()[1]), headers, rest, sent, time.monotonic() - started)


def zeros(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    block = b"0" * piece
    for _ in range(total // piece):
        yield block


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


# -- no server: the depth scanner and the counter store ----------------------------------------


def test_json_depth_is_measured_outside_strings_in_linear_time() -> None:
    assert not json_too_deep(b'{"a": [1, {"b": [2]}]}', 4)
    assert json_too_deep(b'{"a": [1, {"b": [2]}]}', 3)
    assert not json_too_deep(b'{"t": "' + b"[" * 500 + b'"}', 2)  # brackets inside a string
    assert not json_too_deep(b'{"t": "\\"[[[[", "u": "\\\\"}', 2)  # escaped quote, backslash
    assert json_too_deep(b'{"t": "\\\\", "u": [[[[1]]]]}', 3)  # an escaped backslash ends "t"
    assert json_too_deep(b"[" * 100 + b"]" * 100, 32)
    assert not json_too_deep(b"[" * 32 + b"]" * 32, 32)
    assert not json_too_deep(b"[]" * 100_000, 1)  # wide, not deep
    nasty = b'["' + b'\\"' * 400_000  # an unterminated string full of escaped quotes
    started = time.perf_counter()
    json_too_deep(nasty + b"[" * 40, 32)
    json_too_deep(b"[" * MiB, 32)
    assert time.perf_counter() - started < 1.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RateLimitStore]:
    url = (
        f"sqlite:///{tmp_path / 'limits.db'}"
        if request.param == "sqlite"
        else fresh_postgres_database("kho_limits")
    )
    engine = create_engine(url, connect_args={"timeout": 30} if request.param == "sqlite" else {})
    Base.metadata.tables["rate_limits"].create(engine)
    try:
        yield RateLimitStore(engine, window_seconds=60)
    finally:
        engine.dispose()
        if request.param == "postgresql":
            drop_postgres_database(url)


def test_the_store_counts_each_request_exactly_once_and_sweeps_ended_windows(
    store: RateLimitStore,
) -> None:
    now = window_of(time.time(), 60) + 10.0
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda _: store.hit("owner:read:k", now).count, range(200)))
    assert sorted(counts) == list(range(1, 201))  # no two requests saw the same count
    hit = store.hit("owner:read:k", now)
    assert (hit.count, hit.window_end - hit.window_start) == (201, 60)
    assert hit.retry_after(now) == 50
    assert store.hit("owner:read:other", now).count == 1
    assert store.hit("owner:read:k", now + 60).count == 1  # the next window starts at 1
    assert store.sweep(now + 45) == 0
    assert store.sweep(now + 50) == 2  # both rows of the window that ended
    assert store.count("owner:read:k", now) == 0
    assert store.count("owner:read:k", now + 60) == 1


def test_rate_limits_are_on_in_production_unless_turned_off(tmp_path: Path) -> None:
    def enabled(**values: object) -> bool:
        return LimitConfig.from_settings(Settings(data_dir=tmp_path, **values)).rate_limit_enabled  # type: ignore[arg-type]

    assert enabled(env="production")
    assert not enabled(env="production", rate_limit_enabled=False)
    assert not enabled()  # the embedded development default: one person on a laptop
    assert enabled(rate_limit_enabled=True)
    defaults = LimitConfig.from_settings(Settings(data_dir=tmp_path))
    assert (defaults.max_json_bytes, defaults.max_json_depth) == (MiB, 32)
    assert (defaults.owner_per_minute, defaults.client_per_minute) == (600, 6000)
    assert defaults.anonymous_per_minute == 300
    assert defaults.max_concurrency is None  # no limit on requests in flight


class _Validator:
    """Stands in for the token validator: tokens are ``owner:<sub>`` or ``client:<id>``."""

    def __init__(self) -> None:
        self.calls = 0
        self.good: set[str] = set()

    def validate(self, token: str) -> AccessClaims:
        self.calls += 1
        if token not in self.good:
            raise InvalidToken()
        kind, _, name = token.partition(":")
        return AccessClaims(
            subject=name,
            issuer="i",
            audience=("kho-api",),
            client_id=name if kind == "client" else "portal",
            scopes=frozenset(),
            acr=None,
            auth_time=None,
            token_id=None,
            expires_at=int(CLOCK_START.timestamp()) + 600,
            raw={},
        )


CLOCK_START = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)


def test_principals_come_from_verified_tokens_only() -> None:
    validator = _Validator()
    clock = FixedClock(CLOCK_START)
    resolver = PrincipalResolver(validator, clock)  # type: ignore[arg-type]
    validator.good |= {"owner:alice", "client:agency-x"}
    assert resolver.verify("owner:alice") == Principal("owner", "alice")
    assert resolver.verify("client:agency-x") == Principal("client", "agency-x")
    assert resolver.verify("owner:mallory-says-alice") is None
    assert resolver.cached("owner:alice") == (True, Principal("owner", "alice"))
    assert resolver.cached("owner:mallory-says-alice") == (True, None)
    assert resolver.cached("never-seen") == (False, None)
    # A failure is retried after a minute (a key rotated in elsewhere, an early iat) ...
    validator.good.add("owner:mallory-says-alice")
    clock.advance(dt.timedelta(seconds=61))
    assert resolver.cached("owner:mallory-says-alice") == (False, None)
    # ... and a verified token stops naming its owner when it expires.
    clock.advance(dt.timedelta(seconds=600))
    assert resolver.cached("owner:alice") == (True, None)


# -- bodies -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KhoServer]:
    with running_kho(
        tmp_path_factory.mktemp("bodies"),
        body_timeout_seconds=2,
        body_idle_seconds=1,
        body_min_rate=4096,
        keep_alive_seconds=1,
        max_upload_bytes=8 * MiB,
    ) as server:
        yield server


def new_document(server: KhoServer, headers: dict[str, str]) -> str:
    with server.http() as http:
        created = http.post(
            "/v1/documents", json={"type_code": "other", "title": "giới hạn"}, headers=headers
        )
    assert created.status_code == 201, created.text
    document_id: str = created.json()["id"]
    return document_id


def test_an_oversized_json_body_is_413_before_it_is_read(bodies: KhoServer) -> None:
    headers, _ = owner_headers(bodies)
    declared = RawRequest(
        bodies,
        "POST",
        "/v1/documents",
        {**headers, "Content-Type": "application/json", "Content-Length": str(200 * 1000**2)},
        timeout=10,
    ).send()  # the body is never sent: the answer comes from the declared length
    assert declared.status == 413 and declared.headers["connection"] == "close"
    assert declared.json()["code"] == "payload_too_large"
    assert declared.json()["max_bytes"] == MiB

    streamed = RawRequest(
        bodies,
        "POST",
        "/v1/documents",
        {**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    ).send(chunked(zeros(200 * 1000**2)))
    assert streamed.status == 413 and streamed.json()["code"] == "payload_too_large"
    assert streamed.sent < 16 * MiB  # cut off near the limit, not after 200 MB
    # A body type FastAPI would buffer anyway (not JSON) on a JSON route: the same limit.
    other = RawRequest(
        bodies,
        "POST",
        "/v1/documents",
        {**headers, "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"},
    ).send(chunked(zeros(50 * MiB)))
    assert other.status == 413 and other.sent < 16 * MiB
    # Content uploads keep their own, larger limit (8 MiB here) and their own streaming.
    document = new_document(bodies, headers)
    with bodies.http() as http:
        fine = http.put(
            f"/v1/documents/{document}/content",
            content=b"%PDF-1.7\n" + os.urandom(2 * MiB),
            headers=headers,
        )
        assert fine.status_code == 201, fine.text
    assert_healthy(bodies)


def test_json_nested_too_deep_is_422_before_parsing(bodies: KhoServer) -> None:
    headers, _ = owner_headers(bodies)
    with bodies.http() as http:
        deep = b'{"type_code": "other", "title": "x", "x": ' + b"[" * 100 + b"]" * 100 + b"}"
        for content_type in ("application/json", "application/merge-patch+json", None):
            sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
            body = assert_problem(
                http.post("/v1/documents", content=deep, headers=sent), 422, "invalid_input"
            )
            assert body["max_depth"] == 32
        # Brackets inside strings do not count; moderate nesting reaches the normal validation.
        titled = http.post(
            "/v1/documents",
            json={"type_code": "other", "title": "[" * 100 + "{" * 100},
            headers=headers,
        )
        assert titled.status_code == 201, titled.text
        nested: Any = 1
        for _ in range(20):
            nested = [nested]
        ordinary = http.post(
            "/v1/documents", json={"type_code": "other", "title": "x", "x": nested}, headers=headers
        )
        assert_problem(ordinary, 422, "invalid_input")
        assert "max_depth" not in ordinary.json() and ordinary.json()["errors"]
    assert_healthy(bodies)


def test_a_trickling_json_body_is_408(bodies: KhoServer) -> None:
    headers, _ = owner_headers(bodies)
    answer = RawRequest(
        bodies,
        "POST",
        "/v1/documents",
        {**headers, "Content-Type": "application/json", "Content-Length": "200"},
    ).send((b" " for _ in range(200)), pause=0.4)  # 2.5 bytes/s, never idle for 1 s
    assert answer.status == 408 and answer.headers["connection"] == "close"
    assert answer.json()["code"] == "request_timeout"
    assert 1.5 < answer.seconds < 6, answer.seconds
    assert answer.sent < 200
    assert_healthy(bodies)


def test_a_stalled_upload_is_408_and_stores_nothing(bodies: KhoServer) -> None:
    headers, _ = owner_headers(bodies)
    document = new_document(bodies, headers)
    path = f"/v1/documents/{document}/content"

    answer = RawRequest(
        bodies,
        "PUT",
        path,
        {**headers, "Content-Type": "application/pdf", "Content-Length": str(MiB)},
    ).send([b"%PDF-1.7\n" + b"x" * 10_000])  # then nothing: the client stalls
    assert answer.status == 408 and answer.json()["code"] == "request_timeout"
    assert 0.8 < answer.seconds < 4, answer.seconds  # body_idle_seconds is 1
    with bodies.http() as http:
        versions = http.get(f"/v1/documents/{document}/versions", headers=headers)
        assert versions.status_code == 200 and versions.json()["items"] == []
        again = http.put(path, content=b"%PDF-1.7\n" + b"y" * 1000, headers=headers)
        assert again.status_code == 201, again.text
    assert_healthy(bodies)


def _put_outcomes(server: KhoServer) -> dict[str, float]:
    """The upload route's request counts by status, from /metrics."""
    prefix = 'kho_http_requests_total{method="PUT",route="/v1/documents/{document_id}/content",'
    with server.http() as http:
        text = http.get("/metrics").text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('status="')[1].rstrip('"}')] = float(value)
    return counts


def test_a_client_gone_mid_upload_is_not_an_error_and_stores_nothing(bodies: KhoServer) -> None:
    headers, _ = owner_headers(bodies)
    document = new_document(bodies, headers)
    before = _put_outcomes(bodies)
    sock = RawRequest(
        bodies,
        "PUT",
        f"/v1/documents/{document}/content",
        {**headers, "Content-Type": "application/pdf", "Content-Length": str(MiB)},
    ).open()
    sock.sendall(b"%PDF-1.7\n" + b"x" * 200_000)
    sock.close()  # gone, with most of the body unsent
    deadline = time.monotonic() + 10
    while _put_outcomes(bodies).get("400", 0) == before.get("400", 0):
        assert time.monotonic() < deadline, (_put_outcomes(bodies), bodies.log(4000))
        time.sleep(0.1)
    # Counted as the client's doing (400 client_disconnected), not a server error, and no
    # traceback from the server (the server's own log is unbuffered stderr).
    assert _put_outcomes(bodies).get("500", 0) == before.get("500", 0)
    assert "Exception in ASGI application" not in bodies.log(10**6)
    with bodies.http() as http:
        versions = http.get(f"/v1/documents/{document}/versions", headers=headers)
        assert versions.status_code == 200 and versions.json()["items"] == []
    assert_healthy(bodies)


def test_a_slow_but_steady_upload_earns_its_time(bodies: KhoServer) -> None:
    headers, _ = owner_headers(bodies)
    document = new_document(bodies, headers)
    pieces = [b"%PDF-1.7\n" + b"s" * 10_231] + [b"s" * 10_240] * 15  # 160 KiB
    answer = RawRequest(
        bodies,
        "PUT",
        f"/v1/documents/{document}/content",
        {
            **headers,
            "Content-Type": "application/pdf",
            "Content-Length": str(sum(map(len, pieces))),
        },
    ).send(pieces, pause=0.25)  # ~40 KiB/s for 4 s: past body_timeout_seconds, above the rate
    assert answer.status == 201, answer.body[:300]
    assert answer.seconds > 3


def test_idle_keep_alive_connections_are_closed(bodies: KhoServer) -> None:
    host, port = bodies.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        answer = _read_answer(sock, time.monotonic(), 0, 10)
        assert answer.status == 200
        idle = time.monotonic()
        assert _readable(sock, 5), "the server kept an idle connection open"
        assert sock.recv(1) == b""  # closed by the server (keep_alive_seconds=1)
        assert time.monotonic() - idle < 3


# -- requests in flight -----------------------------------------------------------------------


def test_requests_beyond_max_concurrency_are_503_problem_json(tmp_path: Path) -> None:
    with running_kho(
        tmp_path,
        max_concurrency=2,
        rate_limit_enabled=False,
        body_idle_seconds=5,
        max_upload_bytes=8 * MiB,
    ) as server:
        headers, _ = owner_headers(server)
        documents = [new_document(server, headers) for _ in range(2)]
        first, rest = b"%PDF-1.7\n" + b"h" * 991, b"h" * 9000
        held: list[socket.socket] = []
        try:
            for document in documents:  # two uploads that stop part way: two requests in flight
                sock = RawRequest(
                    server,
                    "PUT",
                    f"/v1/documents/{document}/content",
                    {
                        **headers,
                        "Content-Type": "application/pdf",
                        "Content-Length": str(len(first) + len(rest)),
                    },
                    timeout=15,
                ).open()
                held.append(sock)
                sock.sendall(first)
            with server.http() as http:
                deadline = time.monotonic() + 5  # until the server has both uploads in hand
                busy = http.get("/v1/documents", headers=headers)
                while busy.status_code == 200 and time.monotonic() < deadline:
                    time.sleep(0.05)
                    busy = http.get("/v1/documents", headers=headers)
                body = assert_problem(busy, 503, "server_busy")
                assert busy.headers["retry-after"] == "1" and body["title"] == "Máy chủ đang bận"
                assert "connection" not in busy.headers  # no body: the connection stays usable
                english = http.get("/v1/documents", headers={**headers, "Accept-Language": "en"})
                assert assert_problem(english, 503, "server_busy")["title"] == "Server busy"
                for path in ("/healthz", "/readyz", "/metrics"):  # never refused, not counted
                    assert http.get(path).status_code == 200, path
            with_body = RawRequest(
                server,
                "POST",
                "/v1/documents",
                {**headers, "Content-Type": "application/json", "Content-Length": "40"},
                timeout=10,
            ).send()  # the body is never sent: the refusal does not wait for it
            assert with_body.status == 503 and with_body.headers["connection"] == "close"
            assert with_body.json()["code"] == "server_busy"
            for sock in held:  # the held uploads finish, unharmed
                sock.sendall(rest)
                answer = _read_answer(sock, time.monotonic(), len(rest), 15)
                assert answer.status == 201, answer.body[:300]
        finally:
            for sock in held:
                sock.close()
        with server.http() as http:
            # The count drops when the app returns, an instant after its last byte is sent.
            deadline = time.monotonic() + 2
            again = http.get("/v1/documents", headers=headers)
            while again.status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.05)
                again = http.get("/v1/documents", headers=headers)
            assert again.status_code == 200, again.text
            assert len(again.json()["items"]) == 2
        assert_healthy(server)


# -- rate limits ------------------------------------------------------------------------------


def test_rate_limits_per_owner_client_and_address(tmp_path: Path) -> None:
    with running_kho(
        tmp_path,
        rate_limit_enabled=True,
        rate_limit_owner_per_minute=5,
        rate_limit_client_per_minute=7,
        rate_limit_anonymous_per_minute=4,
    ) as server:
        owner_a, _ = owner_headers(server)
        owner_b, _ = owner_headers(server)
        operator = client_headers(server)
        fresh_window()
        with server.http() as http:
            # Anonymous: counted per address.
            for _ in range(4):
                assert http.get("/.well-known/openid-configuration").status_code == 200
            refused = http.get("/.well-known/openid-configuration")
            body = assert_problem(refused, 429, "too_many_requests")
            retry = int(refused.headers["retry-after"])
            assert 1 <= retry <= 60 and body["retry_after"] == retry
            assert math.isclose(retry, 60 - time.time() % 60, abs_tol=2)
            assert http.get("/healthz").status_code == 200  # never limited

            # A forged token naming B is not B: it spends the address's budget, not B's.
            forged = {"Authorization": owner_b["Authorization"][:-6] + "AAAAAA"}
            for _ in range(6):
                assert_problem(http.get("/v1/documents", headers=forged), 429, "too_many_requests")
            for _ in range(5):
                assert http.get("/v1/documents", headers=owner_b).status_code == 200
            assert_problem(http.get("/v1/documents", headers=owner_b), 429, "too_many_requests")
            # Reading and writing are separate budgets; other owners are unaffected.
            created = http.post(
                "/v1/documents", json={"type_code": "other", "title": "x"}, headers=owner_b
            )
            assert created.status_code == 201, created.text
            assert http.get("/v1/documents", headers=owner_a).status_code == 200

            # A client (client-credentials token) has its own, larger budget.
            for _ in range(7):
                assert http.get("/v1/admin/agencies", headers=operator).status_code == 200
            assert_problem(
                http.get("/v1/admin/agencies", headers=operator), 429, "too_many_requests"
            )

            # Sign-on endpoints are their own class, counted per address.
            for _ in range(4):
                assert http.post("/oauth2/token", data={"grant_type": "x"}).status_code in (
                    400,
                    401,
                )
            assert_problem(
                http.post("/oauth2/token", data={"grant_type": "x"}), 429, "too_many_requests"
            )
        assert_healthy(server)


def test_a_flood_and_a_200_mb_body_leave_memory_where_it_was(tmp_path: Path) -> None:
    with running_kho(
        tmp_path,
        rate_limit_enabled=True,
        rate_limit_anonymous_per_minute=50,
        rate_limit_owner_per_minute=100_000,
        max_upload_bytes=8 * MiB,
    ) as server:
        headers, _ = owner_headers(server)
        document = new_document(server, headers)
        pid = server.pid

        def flood(count: int, *, forged: bool = False) -> dict[int, int]:
            statuses: dict[int, int] = {}
            lock = threading.Lock()

            def work(n: int) -> None:
                with server.http() as http:
                    for i in range(n):
                        sent = (
                            {"Authorization": f"Bearer x.{secrets.token_urlsafe(24)}.{i}"}
                            if forged
                            else {}
                        )
                        status = http.get("/v1/document-types", headers=sent).status_code
                        with lock:
                            statuses[status] = statuses.get(status, 0) + 1

            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(work, [count // 16] * 16))
            return statuses

        def oversized() -> None:
            for path, kind in (
                ("/v1/documents", "application/json"),
                (f"/v1/documents/{document}/content", "application/pdf"),
            ):
                answer = RawRequest(
                    server,
                    "POST" if kind.endswith("json") else "PUT",
                    path,
                    {**headers, "Content-Type": kind, "Transfer-Encoding": "chunked"},
                ).send(chunked(itertools.chain([b"%PDF-1.7\n"], zeros(200 * 1000**2))))
                assert answer.status == 413, answer.body[:300]
                assert answer.sent < 32 * MiB

        # Warm up (imports, pools, caches), then measure.
        flood(320)
        oversized()
        before = rss(pid)
        statuses = flood(2000)
        assert statuses.get(429, 0) >= 1900, statuses
        statuses = flood(800, forged=True)
        assert set(statuses) == {429}, statuses
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM)
        oversized()
        peak = rss(pid, "VmHWM")
        after = rss(pid)
        print(
            f"\nserver RSS before {before / MiB:.1f} MiB, after {after / MiB:.1f} MiB, "
            f"peak during 200 MB bodies {peak / MiB:.1f} MiB"
        )
        assert after - before < 8 * MiB, (before, after)
        assert peak - before < 16 * MiB, (before, peak)
        assert_healthy(server)


def test_a_limit_holds_exactly_across_two_processes(tmp_path: Path) -> None:
    with kho_pair(
        tmp_path,
        s3=False,
        rate_limit_enabled=True,
        rate_limit_owner_per_minute=20,
        rate_limit_anonymous_per_minute=10,
    ) as pair:
        headers, _ = owner_headers(pair.a)
        fresh_window()

        def burst(count: int, sent: dict[str, str], path: str) -> list[int]:
            urls = [server.url for server in pair.servers()] * 2  # two clients per process

            def work(index: int) -> list[int]:
                with httpx.Client(base_url=urls[index], timeout=30) as http:
                    return [
                        http.get(path, headers=sent).status_code for _ in range(count // len(urls))
                    ]

            with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
                return [status for part in pool.map(work, range(len(urls))) for status in part]

        owner = burst(60, headers, "/v1/documents")
        assert (owner.count(200), owner.count(429), len(owner)) == (20, 40, 60), owner
        anonymous = burst(40, {}, "/v1/document-types")
        assert (anonymous.count(200), anonymous.count(429)) == (10, 30), anonymous
        for server in pair.servers():
            assert_healthy(server)
