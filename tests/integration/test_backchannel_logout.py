"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0) to real HTTP endpoints.

A small HTTP server on 127.0.0.1 stands in for three portals' back ends. A citizen signs in to
two of them through the e-ID simulator (one SSO session), then logs out at one: each portal that
took part receives exactly one ``logout_token`` it can verify with Kho's published keys alone;
the portal that did not take part receives nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from sso.service import ClientRegistration, ClientService
from storage.db import session_scope
from tests.browserless import query
from tests.conftest import KhoEnv
from tests.integration.test_oidc_provider import CALLBACK, ORIGIN, exchange, login

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SECOND_CALLBACK = "http://127.0.0.1:9/second"
GOODBYE = "http://127.0.0.1:9/bye"
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    content_type: str
    form: dict[str, list[str]]


@dataclass
class Receiver:
    """Every request the portals' back ends received, in order."""

    base_url: str
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server in a thread: bounded bodies, and it stops itself after 60 s at most."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            body = self.rfile.read(length).decode("utf-8", "replace")
            record = Received(
                "POST", self.path, self.headers.get("Content-Type", ""), parse_qs(body)
            )
            with box[0].lock:
                box[0].requests.append(record)
            self.send_response(200)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with box[0].lock:
                box[0].requests.append(Received("GET", self.path, "", {}))
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 0.1
    host, port = server.server_address[0], server.server_address[1]
    box.append(Receiver(f"http://{host!s}:{port}"))
    stop = threading.Event()
    deadline = time.monotonic() + 60

    def serve() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            server.handle_request()

    thread = threading.Thread(target=serve, name="backchannel-receiver", daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.server_close()


def register_portal(env: KhoEnv, client_id: str, redirect_uri: str, backchannel: str) -> None:
    with session_scope(env.container.sessions) as session:
        ClientService(session, env.container.clock).register(
            ClientRegistration(
                client_id=client_id,
                name=client_id,
                kind="portal",
                token_endpoint_auth_method="none",
                redirect_uris=(redirect_uri,),
                post_logout_redirect_uris=(GOODBYE,),
                backchannel_logout_uri=backchannel,
                grant_types=("authorization_code", "refresh_token"),
                scopes=("openid", "profile", "offline_access"),
            )
        )


def verify_logout_token(env: KhoEnv, token: str, client_id: str, id_claims: dict[str, Any]) -> None:
    keys = KeySet.import_key_set(env.client.get("/.well-known/jwks.json").json())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["alg"] == "ES256"
    assert decoded.header["typ"] == "logout+jwt"
    claims = decoded.claims
    assert claims["iss"] == ORIGIN
    aud = claims["aud"]
    assert (aud if isinstance(aud, list) else [aud]) == [client_id]
    assert BACKCHANNEL_EVENT in claims["events"]
    assert claims["events"][BACKCHANNEL_EVENT] == {}
    assert claims["sid"] == id_claims["sid"]
    assert claims["sub"] == id_claims["sub"]
    assert "nonce" not in claims
    assert isinstance(claims["jti"], str) and claims["jti"]
    now = time.time()
    assert claims["iat"] <= now + 5
    assert now < claims["exp"] <= now + 300


def test_logout_tells_every_participating_portal_and_no_other(
    embedded_env: KhoEnv, receiver: Receiver
) -> None:
    env = embedded_env
    register_portal(env, "portal-a", CALLBACK, receiver.base_url + "/a/logout")
    register_portal(env, "portal-b", SECOND_CALLBACK, receiver.base_url + "/b/logout")
    register_portal(env, "portal-c", "http://127.0.0.1:9/third", receiver.base_url + "/c/logout")
    scope = "openid profile offline_access"

    browser, got, verifier, _nonce = login(env, scope=scope)
    first = exchange(env, got["code"], verifier)
    assert first.status_code == 200, first.text
    # The second portal joins the same SSO session (no trip to the e-ID).
    _b, got, verifier, _nonce = login(
        env, browser, client_id="portal-b", redirect_uri=SECOND_CALLBACK, scope=scope
    )
    second = exchange(
        env, got["code"], verifier, client_id="portal-b", redirect_uri=SECOND_CALLBACK
    )
    assert second.status_code == 200, second.text
    keys = KeySet.import_key_set(env.client.get("/.well-known/jwks.json").json())
    id_a = jwt.decode(first.json()["id_token"], keys, algorithms=["ES256"]).claims
    id_b = jwt.decode(second.json()["id_token"], keys, algorithms=["ES256"]).claims
    assert id_a["sid"] == id_b["sid"]
    assert receiver.requests == []

    browser.stop_at = GOODBYE
    url, _ = browser.go(
        ORIGIN
        + "/oauth2/logout?"
        + str(
            httpx.QueryParams(
                {
                    "id_token_hint": first.json()["id_token"],
                    "post_logout_redirect_uri": GOODBYE,
                    "state": "bye",
                }
            )
        )
    )
    assert query(url) == {"state": "bye"}

    # Notices are sent after the logout's commit, before its response: already delivered.
    for path, client_id, id_claims in (
        ("/a/logout", "portal-a", id_a),
        ("/b/logout", "portal-b", id_b),
    ):
        received = receiver.at(path)
        assert len(received) == 1, receiver.requests
        notice = received[0]
        assert notice.method == "POST"
        assert notice.content_type.startswith("application/x-www-form-urlencoded")
        assert list(notice.form) == ["logout_token"]
        assert len(notice.form["logout_token"]) == 1
        verify_logout_token(env, notice.form["logout_token"][0], client_id, id_claims)
    assert receiver.at("/c/logout") == []
    assert len(receiver.requests) == 2

    # Both portals' tokens are dead, and logging out again tells nobody twice.
    for tokens in (first.json(), second.json()):
        me = env.client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 401
    again = env.client.get(
        "/oauth2/logout",
        params={"id_token_hint": second.json()["id_token"]},
        follow_redirects=False,
    )
    assert again.status_code == 302
    assert len(receiver.requests) == 2


def test_a_portal_that_does_not_answer_does_not_block_logout(
    embedded_env: KhoEnv, receiver: Receiver
) -> None:
    env = embedded_env
    # Nothing listens on port 9 (discard): the notice fails, the logout still completes.
    register_portal(env, "portal-a", CALLBACK, "http://127.0.0.1:9/logout")
    register_portal(env, "portal-b", SECOND_CALLBACK, receiver.base_url + "/b/logout")
    browser, got, verifier, _n = login(env, scope="openid")
    tokens = exchange(env, got["code"], verifier).json()
    _b, got, verifier, _n = login(
        env, browser, client_id="portal-b", redirect_uri=SECOND_CALLBACK, scope="openid"
    )
    second = exchange(
        env, got["code"], verifier, client_id="portal-b", redirect_uri=SECOND_CALLBACK
    )
    assert second.status_code == 200, second.text
    response = env.client.get(
        "/oauth2/logout",
        params={"id_token_hint": tokens["id_token"]},
        follow_redirects=False,
    )
    assert response.status_code == 302
    assert len(receiver.at("/b/logout")) == 1
    me = env.client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 401
