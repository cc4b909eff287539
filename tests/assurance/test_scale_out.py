"""Two ``kho serve`` processes on one PostgreSQL database and one MinIO bucket, behind a balancer.

:func:`kho_pair` starts two API processes with the same settings (database, bucket, master key
file, public URL) and nothing else in common: each has its own data directory and port. The
public URL is a small loopback TCP balancer (:class:`Balancer`) whose target the test moves
between the processes, as a load balancer would; direct calls go to ``pair.a.url`` and
``pair.b.url``. What a citizen or an agency starts on one process must carry on on the other:
the sign-in (provider session, tokens, refresh rotation, page session), a consent from request to
revocation, and an access log that verifies and holds every entry in order.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import secrets
import selectors
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from api.app import prepare
from api.container import API_AUDIENCE, build_container
from common.settings import Settings
from identity.service import CitizenProfile, IdentityService
from sso.service import ClientRegistration
from storage.db import session_scope
from storage.migrate import upgrade
from tests.conftest import random_personal_id
from tests.integration.test_access_log import owner_side_check
from tests.kho_server import (
    HttpBrowser,
    KhoServer,
    _drop_postgres,
    _fresh_postgres,
    _kho_command,
    _wait_healthy,
    cookieless_client,
    free_port,
    pkce_pair,
    query_of,
)
from tests.services import require_minio
from vault.keys import generate_key_file

CALLBACK = "http://127.0.0.1:9/cb"
PORTAL = "scale-portal"
CITIZEN = "019090001234"  # the e-ID simulator's Nguyễn Văn An


# -- a loopback balancer ----------------------------------------------------------------------


class Balancer:
    """Accepts on a loopback port and relays each new connection to the current target port.

    Connections stay with the process they were opened to (as with a connection-level balancer);
    a client that wants the other process opens a new connection after :attr:`target` moves.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.target: int | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            target = self.target
            try:
                if target is None:
                    raise OSError("no target")
                backend = socket.create_connection(("127.0.0.1", target), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, backend))
            threading.Thread(target=self._relay, args=(client, backend), daemon=True).start()

    def _relay(self, client: socket.socket, backend: socket.socket) -> None:
        """Copy bytes both ways until either side closes (HTTP needs no half-close)."""
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, backend)
        selector.register(backend, selectors.EVENT_READ, client)
        try:
            while not self._closed:
                for key, _events in selector.select(timeout=1.0):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            with self._lock:
                self._open.discard(client)
                self._open.discard(backend)
            client.close()
            backend.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._open.clear()


# -- two processes ----------------------------------------------------------------------------


@dataclass
class Pair:
    a: KhoServer
    b: KhoServer
    balancer: Balancer
    settings: Settings

    @property
    def url(self) -> str:
        """The public URL (the balancer)."""
        return self.balancer.url

    def to(self, server: KhoServer) -> None:
        """Send new connections through the balancer to ``server``."""
        self.balancer.target = int(server.url.rsplit(":", 1)[1])

    def servers(self) -> tuple[KhoServer, KhoServer]:
        return self.a, self.b


@contextlib.contextmanager
def kho_pair(tmp_path: Path, *, s3: bool = True, **settings_env: object) -> Iterator[Pair]:
    """Two ``kho serve`` processes on one fresh PostgreSQL database (and one MinIO bucket)."""
    root = Path(tmp_path).resolve() / f"pair-{secrets.token_hex(3)}"
    root.mkdir(parents=True)
    key_file = root / "master.key"
    generate_key_file(key_file)
    balancer = Balancer()
    url, admin_url = _fresh_postgres("kho_pair")
    env: dict[str, str] = {
        "KHO_DATABASE_URL": url,
        "KHO_MASTER_KEY_FILE": str(key_file),
        "KHO_PUBLIC_URL": balancer.url,
        "KHO_LOG_LEVEL": "WARNING",
        "KHO_WEBHOOK_INTERVAL_SECONDS": "0",
    }
    if s3:
        minio = require_minio()
        env.update(
            KHO_OBJECT_STORE="s3",
            KHO_S3_ENDPOINT=minio.endpoint,
            KHO_S3_ACCESS_KEY=minio.access_key,
            KHO_S3_SECRET_KEY=minio.secret_key,
            KHO_S3_BUCKET=f"kho-pair-{secrets.token_hex(4)}",
        )
    for name, value in settings_env.items():
        variable = name if name.upper().startswith("KHO_") else "KHO_" + name.upper()
        env[variable] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    servers: list[KhoServer] = []
    setup = None
    try:
        # Migrations and start-up work once, here, so that the two processes do not race on them.
        values = {k.removeprefix("KHO_").lower(): v for k, v in env.items()}
        settings = Settings.model_validate({**values, "data_dir": str(root / "setup")})
        upgrade(url)
        setup = build_container(settings)
        prepare(setup)
        for name in ("a", "b"):
            port = free_port()
            child = {**env, "KHO_DATA_DIR": str(root / name / "var"), "KHO_PORT": str(port)}
            (root / name).mkdir()
            log_path = root / name / "kho-serve.log"
            base = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    _kho_command(port, migrate=False),
                    env={**base, **child},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root / name,
                )
            server = KhoServer(f"http://127.0.0.1:{port}", child, process, log_path)
            servers.append(server)
            _wait_healthy(server, 60)
        pair = Pair(servers[0], servers[1], balancer, settings)
        pair.to(pair.a)
        try:
            yield pair
        except BaseException as exc:
            for server in servers:
                exc.add_note(f"kho serve ({server.url}) log tail:\n{server.log(4000)}")
            raise
    finally:
        for server in servers:
            server.close()
        balancer.close()
        if setup is not None:
            if s3:
                with contextlib.suppress(Exception):
                    for info in setup.objects.list(""):
                        setup.objects.delete(info.key)
            setup.close()
        _drop_postgres(url, admin_url)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with kho_pair(tmp_path_factory.mktemp("scale-out")) as running:
        yield running


# -- helpers ----------------------------------------------------------------------------------


def tiny_pdf(seed: str) -> bytes:
    marker = hashlib.sha256(seed.encode()).hexdigest().encode()
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% " + marker + b"\n%%EOF\n"


def ok(response: httpx.Response, *codes: int) -> Any:
    assert response.status_code in (codes or (200,)), (
        f"{response.request.method} {response.request.url} -> {response.status_code}: "
        f"{response.text[:400]}"
    )
    return response.json() if response.content else None


def owner_token(pair: Pair, account_id: uuid.UUID) -> str:
    return pair.a.container.issuer.access_token(
        subject=str(account_id),
        audience=API_AUDIENCE,
        client_id="scale-test",
        acr="vneid-2",
        auth_time=pair.a.container.clock.now(),
    )


def operator_headers(pair: Pair) -> dict[str, str]:
    token = pair.a.container.issuer.access_token(
        subject="operator-scale",
        audience=API_AUDIENCE,
        client_id="operator-scale",
        scopes=["kho:admin"],
    )
    return {"Authorization": f"Bearer {token}"}


def enrol(pair: Pair) -> tuple[uuid.UUID, str]:
    pin = random_personal_id(1991)
    container = pair.a.container
    with session_scope(container.sessions) as session:
        account = IdentityService(session, container.clock).enrol_citizen(
            CitizenProfile(f"sub-{uuid.uuid4()}", pin, "Lê Thị Thử", dt.date(1991, 2, 3), 2)
        )
        return account.id, pin


def authorize_url(pair: Pair, **extra: str) -> tuple[str, str, str]:
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": PORTAL,
        "redirect_uri": CALLBACK,
        "scope": "openid profile offline_access",
        "state": state,
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{pair.url}/oauth2/authorize?{urlencode(params)}", verifier, state


def through(pair: Pair, browser: HttpBrowser, server: KhoServer) -> None:
    """Point the balancer at ``server`` and give the browser fresh connections."""
    pair.to(server)
    browser.http.close()
    browser.http = cookieless_client()


# -- sign-in ----------------------------------------------------------------------------------


def test_a_sign_in_on_one_process_holds_on_the_other(pair: Pair) -> None:
    pair.a.register_client(
        ClientRegistration(
            client_id=PORTAL,
            name="Cổng thử",
            kind="portal",
            token_endpoint_auth_method="none",
            redirect_uris=(CALLBACK,),
            grant_types=("authorization_code", "refresh_token"),
            scopes=("openid", "profile", "personal_id", "offline_access"),
        )
    )
    browser = HttpBrowser()
    through(pair, browser, pair.a)
    url, verifier, state = authorize_url(pair)
    landed, page = browser.go(url, stop_at=CALLBACK)
    assert page is not None and "/dev/eid/authorize" in landed, browser.history
    # The e-ID simulator keeps its codes in process memory: its leg stays on process A.
    chosen = {**query_of(landed), "personal_id": CITIZEN}
    landed, _ = browser.go(f"{pair.url}/dev/eid/authorize", "POST", chosen, stop_at=CALLBACK)
    got = query_of(landed)
    assert got.get("state") == state and "code" in got, browser.history

    with httpx.Client(timeout=30) as http:
        # The code issued by A is redeemed at B.
        tokens = ok(
            http.post(
                f"{pair.b.url}/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": got["code"],
                    "redirect_uri": CALLBACK,
                    "client_id": PORTAL,
                    "code_verifier": verifier,
                },
            )
        )
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        me_b = ok(http.get(f"{pair.b.url}/v1/me", headers=bearer))
        me_a = ok(http.get(f"{pair.a.url}/v1/me", headers=bearer))
        assert me_a == me_b and me_b["personal_id"] == CITIZEN

        # Refresh rotation on A; replaying the old refresh token on B is caught as reuse.
        rotated = ok(
            http.post(
                f"{pair.a.url}/oauth2/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "client_id": PORTAL,
                },
            )
        )
        assert rotated["refresh_token"] != tokens["refresh_token"]
        replay = http.post(
            f"{pair.b.url}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": PORTAL,
            },
        )
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"

    # The provider's session cookie, set by A, signs the browser in at B without the e-ID.
    through(pair, browser, pair.b)
    before = len(browser.history)
    url, _verifier, state = authorize_url(pair, prompt="none")
    landed, _ = browser.go(url, stop_at=CALLBACK)
    assert query_of(landed).get("state") == state and "code" in query_of(landed), landed
    assert not any("/dev/eid/" in step for step in browser.history[before:])

    # The pages' session: signed in through A, used on B.
    through(pair, browser, pair.a)
    landed, page = browser.go(f"{pair.url}/web/login?next=/web/store")
    assert page is not None and page.status_code == 200, browser.history[-6:]
    assert landed.endswith("/web/store"), browser.history[-6:]
    through(pair, browser, pair.b)
    landed, page = browser.go(f"{pair.url}/web/store")
    assert page is not None and page.status_code == 200 and landed.endswith("/web/store")
    assert "Nguyễn Văn An" in page.text


# -- consent ----------------------------------------------------------------------------------


def test_a_consent_runs_across_both_processes_and_the_log_verifies(pair: Pair) -> None:
    a, b = pair.a.url, pair.b.url
    ops = operator_headers(pair)
    owner_id, pin = enrol(pair)
    owner = {"Authorization": f"Bearer {owner_token(pair, owner_id)}"}
    with httpx.Client(timeout=30) as http:
        code = f"SCALE-{secrets.token_hex(3).upper()}"
        agency = ok(
            http.post(
                f"{a}/v1/admin/agencies",
                json={"code": code, "name_vi": "Sở Tư pháp (thử)", "level": "province"},
                headers=ops,
            ),
            201,
        )
        client_id = code.lower() + "-backend"
        registered = ok(
            http.put(
                f"{b}/v1/admin/clients/{client_id}",
                json={
                    "client_id": client_id,
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
        basic = base64.b64encode(f"{client_id}:{registered['client_secret']}".encode()).decode()
        issued = ok(
            http.post(
                f"{a}/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "kho:agency"},
                headers={"Authorization": f"Basic {basic}"},
            )
        )
        as_agency = {"Authorization": f"Bearer {issued['access_token']}"}

        # A paper created on A, its content uploaded on B (one bucket).
        document = ok(
            http.post(
                f"{a}/v1/documents",
                json={"type_code": "birth_certificate", "title": "Giấy khai sinh"},
                headers=owner,
            ),
            201,
        )
        data = tiny_pdf(f"scale-{document['id']}")
        ok(http.put(f"{b}/v1/documents/{document['id']}/content", content=data, headers=owner), 201)

        # Asked on B, seen and granted on A.
        asked = ok(
            http.post(
                f"{b}/v1/agency/consent-requests",
                json={
                    "subject_personal_id": pin,
                    "purpose": "Giải quyết thủ tục đăng ký thường trú",
                    "procedure_code": "1.004222",
                    "items": [{"document_type": "birth_certificate"}],
                    "access_mode": "repeated",
                    "max_uses": 10,
                    "access_until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
                    "retention_days": 30,
                },
                headers=as_agency,
            ),
            201,
        )
        inbox = ok(http.get(f"{a}/v1/consents", headers=owner))
        assert [item["request"]["id"] for item in inbox["items"]] == [asked["id"]]
        ok(http.get(f"{b}/v1/consents/{asked['id']}", headers=owner))
        decided = ok(
            http.post(
                f"{a}/v1/consents/{asked['id']}/decision",
                json={"decision": "grant"},
                headers=owner,
            )
        )
        grant = decided["grant"]["id"]
        path = f"/v1/agency/grants/{grant}/documents/{document['id']}/content"

        # Fetched alternately through both processes; uses count on one row.
        for server in (a, b, a, b):
            fetched = http.get(server + path, headers=as_agency)
            assert fetched.status_code == 200, fetched.text
            assert fetched.content == data
        followed = ok(http.get(f"{b}/v1/grants/{grant}", headers=owner))
        assert followed["uses"] == 4

        # Revoked on A, refused on B at the next fetch.
        ok(http.post(f"{a}/v1/grants/{grant}/revoke", headers=owner))
        refused = http.get(b + path, headers=as_agency)
        assert refused.status_code == 403
        assert refused.json()["code"] == "grant_revoked"

        # The owner's log, read on B, holds every decision of both processes in order.
        entries = ok(http.get(f"{b}/v1/access-log", params={"limit": 200}, headers=owner))["items"]
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        fetches = [e for e in entries if e["action"] == "document.fetch"]
        assert [e["decision"] for e in fetches] == ["allowed"] * 4 + ["denied"]
        assert fetches[-1]["reason"] == "grant_revoked"
        actions = [e["action"] for e in entries]
        last_fetch = len(actions) - 1 - actions[::-1].index("document.fetch")
        assert actions.index("consent.request") < actions.index("consent.decide"), actions
        assert actions.index("consent.decide") < actions.index("document.fetch"), actions
        assert actions.index("consent.revoke") < last_fetch, actions
        times = [e["occurred_at_us"] for e in entries]
        assert times == sorted(times)

        # A checkpoint signed on A; the owner's proof, from B, verifies with the JWKS alone.
        ok(http.post(f"{a}/v1/admin/access-log/checkpoints", headers=ops), 201)
        proof = ok(http.get(f"{b}/v1/access-log/proof", headers=owner))
        jwks = ok(http.get(f"{b}/.well-known/jwks.json"))
        owner_side_check(proof, jwks)
        assert proof["head_seq"] == len(entries)
        report = ok(http.get(f"{b}/v1/admin/access-log/verify", headers=ops))
        assert report["ok"] is True and report["failures"] == 0, report
