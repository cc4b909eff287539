"""A real Kho server for tests and benches: ``kho serve`` in a child process, over real HTTP.

:func:`running_kho` starts ``kho serve --port <free port>`` on 127.0.0.1 with
``KHO_PUBLIC_URL=http://127.0.0.1:<port>`` (the issuer is the URL it is reached at), its own data
directory under ``tmp_path`` and its own database (SQLite there, or a fresh PostgreSQL database
on the test server with ``postgres=True``, dropped afterwards). It waits, bounded, for
``/healthz``, yields a :class:`KhoServer`, and stops the child on exit (SIGTERM, a bounded wait,
then SIGKILL). The child's stdout and stderr go to a file, never a pipe that could fill; its tail
is attached to any exception raised inside the ``with`` block.

:class:`KhoServer` also reaches the *same* database in-process (``build_container`` with the
same settings), to register clients and to look at rows, while the child serves HTTP.

:class:`HttpBrowser` is a browser without a browser for real servers: it follows redirects by
hand and keeps one cookie jar per host, sending Keycloak's ``Secure`` cookies back over plain
loopback HTTP as a browser does for ``http://127.0.0.1`` (httpx's own jar would not).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.cookiejar
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from api.container import Container, build_container
from common.settings import Settings
from sso.service import ClientRegistration, ClientService
from storage.db import session_scope

__all__ = [
    "Form",
    "HttpBrowser",
    "KhoServer",
    "KhoServerError",
    "cookieless_client",
    "free_port",
    "parse_forms",
    "pkce_pair",
    "query_of",
    "running_kho",
]

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
LOG_TAIL_BYTES = 8000


class KhoServerError(RuntimeError):
    """The Kho child process did not start or died; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _env_name(name: str) -> str:
    return name if name.upper().startswith("KHO_") else "KHO_" + name.upper()


def _kho_command(port: int, migrate: bool) -> list[str]:
    script = Path(sys.executable).with_name("kho")
    head = (
        [str(script)]
        if script.is_file()
        else [sys.executable, "-c", "from api.cli import main; main()"]
    )
    return [*head, "serve", "--host", "127.0.0.1", "--port", str(port)] + (
        [] if migrate else ["--no-migrate"]
    )


@dataclass
class KhoServer:
    """A running ``kho serve`` child and an in-process view of the same database."""

    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    _container: Container | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The child's settings, exactly: built from :attr:`env` alone (not this process's)."""
        values = {k.removeprefix("KHO_").lower(): v for k, v in self.env.items()}
        return Settings.model_validate(values)

    @property
    def container(self) -> Container:
        """Collaborators built in-process over the child's database, data directory and keys."""
        if self._container is None:
            self._container = build_container(self.settings)
        return self._container

    @property
    def pid(self) -> int:
        return self.process.pid

    def register_client(self, registration: ClientRegistration) -> str | None:
        """Create (or replace) a client of the provider; returns its new secret, if any."""
        container = self.container
        with session_scope(container.sessions) as session:
            _row, secret = ClientService(session, container.clock).register(registration)
            return secret

    def http(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **options)  # type: ignore[arg-type]

    def log(self, limit: int = LOG_TAIL_BYTES) -> str:
        """The tail of the child's stdout and stderr."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - limit))
                return handle.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        _stop(self.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _wait_healthy(server: KhoServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                raise KhoServerError(
                    f"kho serve exited with {server.process.returncode} before answering "
                    f"/healthz; its log:\n{server.log()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get("/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise KhoServerError(
        f"kho serve did not answer {server.url}/healthz within {timeout:.0f} s; its log:\n"
        f"{server.log()}"
    )


def _fresh_postgres(prefix: str) -> tuple[str, str]:
    """A new, empty database on the test server: (its URL, the admin URL to drop it)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.services import require_postgres

    pg = require_postgres()
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(pg.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(pg.url).set(database=name).render_as_string(hide_password=False), pg.admin_url


def _drop_postgres(url: str, admin_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def running_kho(
    tmp_path: Path,
    *,
    postgres: bool = False,
    migrate: bool = True,
    startup_timeout: float = STARTUP_TIMEOUT,
    **settings_env: object,
) -> Iterator[KhoServer]:
    """Run ``kho serve`` on a free loopback port until the block ends.

    ``settings_env`` are extra settings, named like :class:`Settings` fields (``eid_simulator=
    False``) or like their variables (``KHO_EID_SIMULATOR="false"``); they override the defaults
    chosen here (data directory and SQLite under ``tmp_path``, ``KHO_LOG_LEVEL=WARNING``). The
    child sees no other ``KHO_*`` variable of this process. ``postgres=True`` gives the server a
    fresh database on the PostgreSQL test server, dropped on exit.
    """
    root = Path(tmp_path).resolve() / f"kho-{secrets.token_hex(3)}"
    root.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {
        "KHO_DATA_DIR": str(root / "var"),
        "KHO_LOG_LEVEL": "WARNING",
    }
    pg_admin: str | None = None
    if postgres:
        env["KHO_DATABASE_URL"], pg_admin = _fresh_postgres("kho_srv")
    env.update({_env_name(k): _env_value(v) for k, v in settings_env.items()})
    log_path = root / "kho-serve.log"
    server: KhoServer | None = None
    try:
        for attempt in range(3):
            port = free_port()
            env["KHO_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
            env["KHO_PORT"] = str(port)
            child_env = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
            child_env.update(env)
            with log_path.open("ab") as log:
                log.write(f"--- kho serve, attempt {attempt + 1}, port {port}\n".encode())
                log.flush()
                process = subprocess.Popen(
                    _kho_command(port, migrate),
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                )
            server = KhoServer(f"http://127.0.0.1:{port}", dict(env), process, log_path)
            try:
                _wait_healthy(server, startup_timeout)
                break
            except KhoServerError:
                _stop(process)
                # Another process may have taken the port between probe and bind: try again.
                if attempt == 2 or "address already in use" not in server.log().lower():
                    raise
        assert server is not None
        try:
            yield server
        except BaseException as exc:
            exc.add_note(f"kho serve ({server.url}) log tail:\n{server.log()}")
            raise
    finally:
        if server is not None:
            server.close()
        if pg_admin is not None:
            _drop_postgres(env["KHO_DATABASE_URL"], pg_admin)


# --- A browser without a browser, over real HTTP -------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    has_password: bool = False


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), (a.get("method") or "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind == "password":
                self.forms[-1].has_password = True
            if kind not in ("submit", "button", "image", "reset", "checkbox", "radio"):
                self.forms[-1].fields[a["name"]] = a.get("value", "")


def parse_forms(page: str) -> list[Form]:
    """The forms of an HTML page, their actions unescaped, their inputs' initial values."""
    parser = _FormParser()
    parser.feed(page)
    parser.close()
    return parser.forms


def cookieless_client(**options: object) -> httpx.Client:
    """An ``httpx.Client`` whose own cookie jar keeps nothing: :class:`HttpBrowser` manages the
    cookies, so a keep-alive client can be shared by many independent logins."""
    jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    options.setdefault("timeout", 30)
    return httpx.Client(cookies=jar, **options)  # type: ignore[arg-type]


def _path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 §5.1.4."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    )


def _default_path(request_path: str) -> str:
    """RFC 6265 §5.1.4: the directory of the request path."""
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[: request_path.rindex("/")]


@dataclass
class HttpBrowser:
    """Follows redirects across real servers, with cookie jars per host (``host:port``) and path.

    Paths matter: two Keycloak realms on one host both set ``AUTH_SESSION_ID``, each under its
    own ``/realms/<name>/``. Domains and the ``Secure`` flag are not looked at (every host here is
    a loopback ``http://`` origin, which browsers treat as secure). Give it a shared keep-alive
    ``httpx.Client`` and a fresh browser per login to measure full logins.
    """

    http: httpx.Client = field(default_factory=cookieless_client)
    # host -> (name, path) -> value
    cookies: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    max_hops: int = 25

    def cookie(self, host: str, name: str) -> str | None:
        """A cookie's value on ``host`` (any path)."""
        return next((v for (n, _p), v in self.cookies.get(host, {}).items() if n == name), None)

    def request(
        self, method: str, url: str, data: Mapping[str, str] | None = None
    ) -> httpx.Response:
        parts = urlsplit(url)
        path = parts.path or "/"
        jar = self.cookies.setdefault(parts.netloc, {})
        # Longer paths first, as browsers send them.
        matching = sorted(
            ((p, n, v) for (n, p), v in jar.items() if _path_matches(path, p)),
            key=lambda c: -len(c[0]),
        )
        headers = {"Cookie": "; ".join(f"{n}={v}" for _p, n, v in matching)} if matching else {}
        response = self.http.request(
            method, url, data=dict(data) if data is not None else None, headers=headers
        )
        for value in response.headers.get_list("set-cookie"):
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value)
            except CookieError:
                continue
            for name, morsel in cookie.items():
                key = (name, morsel["path"] or _default_path(path))
                if morsel["max-age"] == "0" or morsel.value == "":
                    jar.pop(key, None)
                else:
                    jar[key] = morsel.value
        self.http.cookies.clear()  # belt and braces: only this browser's jars count
        self.history.append(f"{method} {url} -> {response.status_code}")
        return response

    def go(
        self,
        url: str,
        method: str = "GET",
        data: Mapping[str, str] | None = None,
        *,
        stop_at: str | None = None,
    ) -> tuple[str, httpx.Response | None]:
        """Follow redirects to a page (non-3xx): its URL and response. A redirect to a URL that
        starts with ``stop_at`` is not followed: its URL and ``None``."""
        for _ in range(self.max_hops):
            if stop_at is not None and url.startswith(stop_at):
                return url, None
            response = self.request(method, url, data)
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                method, data = "GET", None
                continue
            return url, response
        raise AssertionError("redirect loop: " + " | ".join(self.history))

    def submit(
        self,
        page_url: str,
        form: Form,
        extra: Mapping[str, str] | None = None,
        *,
        stop_at: str | None = None,
    ) -> tuple[str, httpx.Response | None]:
        fields = {**form.fields, **(extra or {})}
        action = urljoin(page_url, form.action or page_url)
        return self.go(action, form.method.upper(), fields, stop_at=stop_at)
