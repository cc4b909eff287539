"""Browser tests of the pages: a real ``kho serve`` (``tests.kho_server.running_kho``), Debian's
Chromium driven by Playwright (``executable_path``; nothing is downloaded), axe-core injected
into every page we own. Screenshots go to ``test-artifacts/screenshots/`` (git-ignored).

axe-core is installed by ``scripts/axe.sh`` under ``$KHO_CACHE_DIR/npm``; a missing copy fails
the tests (it is never skipped).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from identity.models import AgencyLevel, OfficialRole
from identity.schemas import AgencyCreate, OfficialCreate
from identity.service import AgencyService
from sso.service import ClientRegistration, ClientService
from storage.db import session_scope
from tests.kho_server import KhoServer, running_kho
from tests.services import require_chromium, require_minio

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Impacts axe reports that must not appear on any page.
BLOCKING = ("serious", "critical")


def axe_path() -> Path:
    cache = Path(os.environ.get("KHO_CACHE_DIR", "/var/cache/kho"))
    return cache / "npm" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def axe_source() -> str:
    path = axe_path()
    if not path.is_file():
        pytest.fail(
            f"axe-core is not installed ({path} is missing). Run `scripts/axe.sh` (the test "
            "command does it).",
            pytrace=False,
        )
    return path.read_text()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = require_chromium()
    with sync_playwright() as playwright:
        # launch() gives every run a fresh, temporary user-data directory.
        instance = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@dataclass
class Tab:
    """One browser context and its page, with the checks every page of ours must pass."""

    context: BrowserContext
    page: Page
    axe: str
    name: str
    javascript: bool = True
    console: list[str] = field(default_factory=list)
    axe_results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    shots: int = 0
    browser: Browser | None = None
    helper: BrowserContext | None = None
    run_axe: bool = True

    def goto(self, url: str) -> None:
        response = self.page.goto(url)
        assert response is not None

    def check(self, label: str, *, axe: bool = True) -> None:
        """Screenshot the page and, for our own pages, run axe: no serious or critical
        violation, and no Content-Security-Policy violation in the console."""
        self.shots += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(
            path=str(SCREENSHOTS / f"{self.name}-{self.shots:02d}-{label}.png"), full_page=True
        )
        csp = [m for m in self.console if "Content Security Policy" in m]
        assert not csp, f"{label}: CSP violations: {csp}"
        if not (axe and self.run_axe):
            return
        target = self.page if self.javascript else self._mirror()
        target.evaluate(self.axe)
        result = target.evaluate(
            """async () => {
                const r = await axe.run(document, {resultTypes: ['violations']});
                return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' + n.failureSummary)}));
            }"""
        )
        if target is not self.page:
            target.close()
        self.axe_results[label] = result
        blocking = [v for v in result if v["impact"] in BLOCKING]
        if result:
            print(f"[axe] {self.name}/{label}: " + json.dumps(result, ensure_ascii=False)[:4000])
        assert not blocking, f"axe found serious/critical violations on {label}: {blocking}"

    def _mirror(self) -> Page:
        """The current page's exact HTML, served at its own URL in a script-enabled page.

        axe is asynchronous (timers) and does not finish in a page whose scripts are disabled;
        the mirror shows the same server-rendered markup (with the site's stylesheet) to it.
        """
        assert self.browser is not None
        if self.helper is None:
            self.helper = self.browser.new_context(viewport={"width": 1280, "height": 900})
        url = self.page.url
        markup = self.page.content()
        mirror = self.helper.new_page()
        mirror.route(
            url,
            lambda route: route.fulfill(
                status=200, body=markup, content_type="text/html; charset=utf-8"
            ),
        )
        mirror.goto(url)
        return mirror


@contextlib.contextmanager
def open_tab(
    browser: Browser, axe: str, name: str, *, javascript: bool = True, run_axe: bool = True
) -> Iterator[Tab]:
    context = browser.new_context(
        java_script_enabled=javascript,
        locale="vi-VN",
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    tab = Tab(context, page, axe, name, javascript, browser=browser, run_axe=run_axe)
    page.on("console", lambda message: _keep(tab, message))
    try:
        yield tab
    finally:
        if tab.helper is not None:
            tab.helper.close()
        context.close()


def _keep(tab: Tab, message: ConsoleMessage) -> None:
    tab.console.append(message.text)


# -- the server ---------------------------------------------------------------------------------


def backend_settings(backend: str) -> dict[str, Any]:
    """Settings of a Kho server on the embedded backends, or on PostgreSQL and MinIO."""
    if backend == "sqlite-local":
        return {}
    minio = require_minio()
    return {
        "postgres": True,
        "object_store": "s3",
        "s3_endpoint": minio.endpoint,
        "s3_access_key": minio.access_key,
        "s3_secret_key": minio.secret_key,
        "s3_bucket": f"kho-web-{secrets.token_hex(4)}",
    }


@contextlib.contextmanager
def web_kho(tmp_path: Path, **settings: Any) -> Iterator[KhoServer]:
    """A running Kho for the browser tests."""
    settings.setdefault("webhook_interval_seconds", 0)
    with running_kho(tmp_path, **settings) as server:
        try:
            yield server
        finally:
            if settings.get("object_store") == "s3":
                store = server.container.objects
                for info in store.list(""):
                    store.delete(info.key)


@dataclass
class Agency:
    server: KhoServer
    agency_id: Any
    client_id: str
    secret: str

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=30)

    def token(self) -> str:
        with self.http() as client:
            response = client.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "kho:agency"},
                auth=(self.client_id, self.secret),
            )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def ask(self, personal_id: str, items: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        body = {
            "subject_personal_id": personal_id,
            "purpose": "Giải quyết thủ tục đăng ký thường trú",
            "procedure_code": "1.004222",
            "dossier_ref": "HS-2026-000123",
            "items": items,
            "retention_days": 30,
            **fields,
        }
        with self.http() as client:
            response = client.post("/v1/agency/consent-requests", json=body, headers=self.headers())
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def follow(self, request_id: str) -> dict[str, Any]:
        with self.http() as client:
            response = client.get(
                f"/v1/agency/consent-requests/{request_id}", headers=self.headers()
            )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def fetch(self, grant_id: str, document_id: str) -> httpx.Response:
        with self.http() as client:
            return client.get(
                f"/v1/agency/grants/{grant_id}/documents/{document_id}/content",
                headers=self.headers(),
            )


def make_agency(server: KhoServer, code: str, name: str) -> Agency:
    """An agency and its back-end client, registered through the server's own database."""
    container = server.container
    with session_scope(container.sessions) as session:
        agency = AgencyService(session, container.clock).create(
            AgencyCreate(code=code, name_vi=name, level=AgencyLevel.province)
        )
        agency_id = agency.id
        client_id = code.lower() + "-backend"
        _row, secret = ClientService(session, container.clock).register(
            ClientRegistration(
                client_id=client_id,
                name=name,
                kind="agency",
                token_endpoint_auth_method="client_secret_basic",
                grant_types=("client_credentials",),
                scopes=("kho:agency",),
                agency_id=agency_id,
            )
        )
    assert secret is not None
    return Agency(server, agency_id, client_id, secret)


def register_official(server: KhoServer, agency: Agency, personal_id: str, name: str) -> None:
    container = server.container
    with session_scope(container.sessions) as session:
        AgencyService(session, container.clock).register_official(
            agency.agency_id,
            OfficialCreate(
                personal_id=personal_id, full_name=name, roles={OfficialRole.receptionist}
            ),
        )


# -- test files ----------------------------------------------------------------------------------


def pdf_file(path: Path, size: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    data = b"%PDF-1.7\n" + rng.randbytes(max(0, size - 9))
    path.write_bytes(data)
    return data


def png_file(path: Path, width: int = 240, height: int = 160, seed: int = 0) -> bytes:
    """A real (small) PNG: a coloured card, so previews show something."""
    rng = random.Random(seed)
    base = (rng.randrange(60, 200), rng.randrange(60, 200), rng.randrange(60, 200))
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            stripe = 40 if (y // 20) % 2 == 0 and 20 < x < width - 20 else 0
            rows += bytes(min(255, c + stripe) for c in base)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return data
