"""Signed webhooks to agencies on decisions and revocations, retried with bounded back-off."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from api.container import HttpWebhookPoster
from common.clock import OffsetClock
from consent.service import WEBHOOK_MAX_ATTEMPTS, WebhookDispatcher
from sso.keys import ProviderJwsSigner
from tests.agencies import make_agency
from tests.conftest import KhoEnv
from tests.integration.test_consent import decide, paper


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.fail_next = 0
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(min(length, 1 << 20)).decode()
                if received.fail_next > 0:
                    received.fail_next -= 1
                    self.send_response(503)
                else:
                    received.bodies.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def dispatcher(env: KhoEnv) -> WebhookDispatcher:
    c = env.container
    return WebhookDispatcher(
        c.sessions,
        c.clock,
        signer=ProviderJwsSigner(c.signing_keys),
        poster=HttpWebhookPoster(c.http),
        issuer=c.issuer_url,
    )


def test_decisions_and_revocations_reach_the_agency_signed(
    kho_env: KhoEnv, receiver: Receiver
) -> None:
    env = kho_env
    clock = env.container.clock
    assert isinstance(clock, OffsetClock)
    x = make_agency(env, "CA-TN", "Công an tỉnh")
    set_hook = env.client.put(
        f"/v1/admin/agencies/{x.agency_id}/webhook",
        json={"url": receiver.url},
        headers=env.operator_headers(),
    )
    assert set_hook.status_code == 200, set_hook.text
    owner = env.citizen()
    paper(env, owner, "birth_certificate", 21)
    created = x.request(owner.personal_id, [{"document_type": "birth_certificate"}])
    grant = decide(env, owner, created["id"], decision="grant")["grant"]
    receiver.fail_next = 1
    first = dispatcher(env).run_once()
    assert (first.delivered, first.retried) == (0, 1)
    assert dispatcher(env).run_once().delivered == 0  # not due yet: back-off holds it
    clock.advance(dt.timedelta(seconds=11))
    assert dispatcher(env).run_once().delivered == 1
    env.client.post(f"/v1/grants/{grant['id']}/revoke", headers=env.headers(owner))
    assert dispatcher(env).run_once().delivered == 1

    keys = KeySet.import_key_set(env.client.get("/.well-known/jwks.json").json())
    events = []
    for body in receiver.bodies:
        token = jws.deserialize_compact(body, keys, algorithms=["ES256"])
        assert token.headers()["typ"] == "kho-webhook+jwt"
        claims = json.loads(token.payload)
        assert claims["aud"] == str(x.agency_id)
        events.append((claims["event"], claims["data"]))
    assert events[0][0] == "consent.decided"
    assert events[0][1]["grant_id"] == grant["id"]
    assert events[0][1]["status"] == "granted"
    assert events[1] == ("grant.revoked", {**events[1][1], "grant_id": grant["id"]})


def test_a_dead_endpoint_is_given_up_after_bounded_attempts(
    kho_env: KhoEnv, receiver: Receiver
) -> None:
    env = kho_env
    clock = env.container.clock
    assert isinstance(clock, OffsetClock)
    x = make_agency(env, "CA-TN", "Công an tỉnh")
    env.client.put(
        f"/v1/admin/agencies/{x.agency_id}/webhook",
        json={"url": "http://127.0.0.1:9/closed"},
        headers=env.operator_headers(),
    )
    owner = env.citizen()
    paper(env, owner, "birth_certificate", 22)
    created = x.request(owner.personal_id, [{"document_type": "birth_certificate"}])
    decide(env, owner, created["id"], decision="deny")
    outcomes = []
    for _ in range(WEBHOOK_MAX_ATTEMPTS + 2):
        report = dispatcher(env).run_once()
        outcomes.append((report.retried, report.failed))
        clock.advance(dt.timedelta(hours=2))
    assert sum(r for r, _f in outcomes) == WEBHOOK_MAX_ATTEMPTS - 1
    assert sum(f for _r, f in outcomes) == 1
    assert receiver.bodies == []
