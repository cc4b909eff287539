"""Kho as a relying party of the national e-ID: the real `national-eid` Keycloak realm standing
in for VNeID, and the checks on what comes back."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.errors import KhoError
from sso.federation import UpstreamLoginFailed, pkce_pair
from sso.service import ClientRegistration, ClientService
from storage.db import session_scope
from tests.browserless import Browser, authorize_url, pkce, query
from tests.conftest import KhoEnv, build_ready_container, settings_for
from tests.integration.test_oidc_provider import CALLBACK, ORIGIN
from tests.services import require_keycloak

CITIZEN = "019090001234"
PASSWORD = "Test@12345"


@pytest.fixture
def eid_env(tmp_path: Path) -> Iterator[KhoEnv]:
    kc = require_keycloak()
    settings = settings_for(
        "sqlite-local",
        tmp_path,
        eid_simulator=False,
        eid_discovery_url=f"{kc.url}/realms/national-eid/.well-known/openid-configuration",
        eid_client_id="kho",
        eid_client_secret="kho-national-eid-secret",
    )
    container = build_ready_container(settings)
    with session_scope(container.sessions) as session:
        ClientService(session, container.clock).register(
            ClientRegistration(
                client_id="portal-a",
                name="Cổng dịch vụ công tỉnh",
                kind="portal",
                token_endpoint_auth_method="none",
                redirect_uris=(CALLBACK,),
                grant_types=("authorization_code", "refresh_token"),
                scopes=("openid", "profile", "personal_id"),
            )
        )
    with TestClient(create_app(settings, container=container)) as client:
        yield KhoEnv("sqlite-local", settings, container, client)
    container.close()


def test_login_through_the_national_eid_realm(eid_env: KhoEnv) -> None:
    browser = Browser(eid_env.client, ORIGIN, stop_at=CALLBACK)
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    url, page = browser.go(
        authorize_url(
            ORIGIN,
            response_type="code",
            client_id="portal-a",
            redirect_uri=CALLBACK,
            scope="openid profile personal_id",
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert "/realms/national-eid/" in url, browser.history
    assert page.status_code == 200
    final = browser.submit_login(url, page, CITIZEN, PASSWORD)
    got = query(final)
    assert got["state"] == state
    assert got["iss"] == ORIGIN
    tokens = eid_env.client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": CALLBACK,
            "client_id": "portal-a",
            "code_verifier": verifier,
        },
    ).json()
    me = eid_env.client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["personal_id"] == CITIZEN
    assert body["full_name"] == "Nguyễn Văn An"
    assert body["birth_date"] == "1990-03-15"
    assert body["eid_level"] == 2
    assert body["acr"] == "vneid-2"
    # A second login of the same person finds the same account.
    browser2 = Browser(eid_env.client, ORIGIN, stop_at=CALLBACK)
    _verifier2, challenge2 = pkce()
    url, page = browser2.go(
        authorize_url(
            ORIGIN,
            response_type="code",
            client_id="portal-a",
            redirect_uri=CALLBACK,
            scope="openid",
            state="s2",
            nonce="n2",
            code_challenge=challenge2,
            code_challenge_method="S256",
        )
    )
    assert "code" in query(browser2.submit_login(url, page, CITIZEN, PASSWORD))


def test_a_forged_or_replayed_state_is_refused(eid_env: KhoEnv) -> None:
    r = eid_env.client.get("/oauth2/eid/callback", params={"state": "forged", "code": "x"})
    assert r.status_code == 400
    assert r.json()["code"] == "upstream_login_failed"


def test_nonce_mismatch_and_tampering_are_refused(embedded_env: KhoEnv) -> None:
    """With the simulator upstream: an ID token for another nonce, or edited, is not accepted."""
    env = embedded_env
    simulator = env.container.simulator
    assert simulator is not None
    upstream = env.container.upstream
    verifier, challenge = pkce_pair()
    params = {
        "client_id": simulator.client_id,
        "response_type": "code",
        "redirect_uri": upstream.redirect_uri,
        "scope": "openid",
        "state": "st",
        "nonce": "the-right-nonce",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    code = query(simulator.approve(params, CITIZEN))["code"]
    with pytest.raises(UpstreamLoginFailed):
        upstream.exchange(code=code, code_verifier=verifier, nonce="another-nonce")
    code = query(simulator.approve(params, CITIZEN))["code"]
    with pytest.raises(KhoError):
        upstream.exchange(code=code, code_verifier="wrong-verifier", nonce="the-right-nonce")
    token = simulator.token(
        {
            "grant_type": "authorization_code",
            "client_id": simulator.client_id,
            "client_secret": simulator.client_secret,
            "code": query(simulator.approve(params, CITIZEN))["code"],
            "redirect_uri": upstream.redirect_uri,
            "code_verifier": verifier,
        }
    )["id_token"]
    head, body, signature = token.split(".")
    tampered = f"{head}.{body[:-2]}AA.{signature}"
    with pytest.raises(UpstreamLoginFailed):
        upstream.validate_id_token(tampered, nonce="the-right-nonce")
    assert upstream.validate_id_token(token, nonce="the-right-nonce").profile.personal_id == CITIZEN
