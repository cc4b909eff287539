"""Kho's own OpenID provider, end to end over HTTP, with the development e-ID simulator upstream.

Each refusal the OAuth 2.0 Security BCP asks for has its own test."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from sso.service import ClientRegistration, ClientService
from storage.db import session_scope
from tests.browserless import Browser, authorize_url, pkce, query
from tests.conftest import KhoEnv

ORIGIN = "http://127.0.0.1:8000"
CALLBACK = "http://127.0.0.1:9/cb"
CITIZEN = "019090001234"  # Nguyễn Văn An, level 2
LEVEL_ONE = "048200005678"  # Võ Đức Thắng, level 1


@dataclass
class Clients:
    agency_secret: str
    agency_key: ECKey


def register(env: KhoEnv, registration: ClientRegistration) -> str | None:
    with session_scope(env.container.sessions) as session:
        _row, secret = ClientService(session, env.container.clock).register(registration)
        return secret


@pytest.fixture
def oidc(embedded_env: KhoEnv) -> tuple[KhoEnv, Clients]:
    for client_id, redirect in (("portal-a", CALLBACK), ("portal-b", "http://127.0.0.1:9/b")):
        register(
            embedded_env,
            ClientRegistration(
                client_id=client_id,
                name=client_id,
                kind="portal",
                token_endpoint_auth_method="none",
                redirect_uris=(redirect,),
                post_logout_redirect_uris=("http://127.0.0.1:9/bye",),
                grant_types=("authorization_code", "refresh_token"),
                scopes=("openid", "profile", "personal_id", "offline_access"),
            ),
        )
    secret = register(
        embedded_env,
        ClientRegistration(
            client_id="agency-basic",
            name="Sở Tư pháp",
            kind="agency",
            token_endpoint_auth_method="client_secret_basic",
            grant_types=("client_credentials",),
            scopes=("kho:agency",),
        ),
    )
    key = ECKey.generate_key("P-256", parameters={"kid": "agency-key-1", "alg": "ES256"})
    register(
        embedded_env,
        ClientRegistration(
            client_id="agency-jwt",
            name="UBND xã",
            kind="agency",
            token_endpoint_auth_method="private_key_jwt",
            grant_types=("client_credentials",),
            scopes=("kho:agency",),
            jwks={"keys": [key.as_dict(private=False)]},
        ),
    )
    assert secret
    return embedded_env, Clients(secret, key)


def login(
    env: KhoEnv,
    browser: Browser | None = None,
    *,
    client_id: str = "portal-a",
    redirect_uri: str = CALLBACK,
    citizen: str = CITIZEN,
    scope: str = "openid profile personal_id offline_access",
    **extra: str,
) -> tuple[Browser, dict[str, str], str, str]:
    """Authorize through the simulator; returns the browser, the callback query, verifier, nonce."""
    browser = browser or Browser(env.client, ORIGIN, stop_at=redirect_uri)
    browser.stop_at = redirect_uri
    verifier, challenge = pkce()
    nonce = secrets.token_urlsafe(16)
    state = secrets.token_urlsafe(16)
    url, page = browser.go(
        authorize_url(
            ORIGIN,
            response_type="code",
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            code_challenge_method="S256",
            **extra,
        )
    )
    if not url.startswith(redirect_uri):
        assert "/dev/eid/authorize" in url, (url, page.text[:300])
        params = query(url)
        params["personal_id"] = citizen
        url, _ = browser.go(ORIGIN + "/dev/eid/authorize", "POST", params)
    got = query(url)
    assert got.get("state") == state, (url, browser.history)
    return browser, got, verifier, nonce


def exchange(env: KhoEnv, code: str, verifier: str, **extra: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "client_id": "portal-a",
        "code_verifier": verifier,
        **extra,
    }
    response: httpx.Response = env.client.post("/oauth2/token", data=data)
    return response


def jwks(env: KhoEnv) -> KeySet:
    return KeySet.import_key_set(env.client.get("/.well-known/jwks.json").json())


def test_full_login_enrols_the_citizen_and_signs_tokens(oidc: tuple[KhoEnv, Clients]) -> None:
    env, _ = oidc
    _browser, got, verifier, nonce = login(env)
    assert got["iss"] == ORIGIN  # RFC 9207
    response = exchange(env, got["code"], verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert response.headers["cache-control"] == "no-store"
    # Any JOSE library verifies them with the published keys alone.
    id_token = jwt.decode(tokens["id_token"], jwks(env), algorithms=["ES256"])
    assert id_token.claims["nonce"] == nonce
    assert id_token.claims["aud"] == ["portal-a"]
    assert id_token.claims["iss"] == ORIGIN
    assert id_token.claims["acr"] == "vneid-2"
    assert id_token.claims["personal_id"] == CITIZEN
    access = jwt.decode(tokens["access_token"], jwks(env), algorithms=["ES256"])
    assert access.header["typ"] == "at+jwt"
    assert access.claims["aud"] == ["kho-api"]
    me = env.client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["personal_id"] == CITIZEN
    assert body["full_name"] == "Nguyễn Văn An"
    assert body["eid_level"] == 2
    assert body["acr"] == "vneid-2"
    info = env.client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()
    assert info["sub"] == body["id"]
    assert info["name"] == "Nguyễn Văn An"


def test_single_sign_on_across_portals_and_prompt_handling(oidc: tuple[KhoEnv, Clients]) -> None:
    env, _ = oidc
    browser, _got, _v, _n = login(env)
    # Second portal, same browser: no trip to the e-ID.
    before = len(browser.history)
    _b, got, _v2, _n2 = login(
        env, browser, client_id="portal-b", redirect_uri="http://127.0.0.1:9/b"
    )
    assert "code" in got
    assert not any("/dev/eid/" in step for step in browser.history[before:])
    # prompt=login forces the e-ID again.
    before = len(browser.history)
    login(env, browser, prompt="login")
    assert any("/dev/eid/" in step for step in browser.history[before:])
    # prompt=none without a session: login_required, sent back to the client with iss.
    stranger = Browser(env.client, ORIGIN, stop_at=CALLBACK)
    _verifier, challenge = pkce()
    url, _ = stranger.go(
        authorize_url(
            ORIGIN,
            response_type="code",
            client_id="portal-a",
            redirect_uri=CALLBACK,
            scope="openid",
            state="s1",
            nonce="n1",
            code_challenge=challenge,
            code_challenge_method="S256",
            prompt="none",
        )
    )
    assert query(url) == {"error": "login_required", "state": "s1", "iss": ORIGIN}


def test_acr_values_and_max_age(oidc: tuple[KhoEnv, Clients]) -> None:
    env, _ = oidc
    browser = Browser(env.client, ORIGIN, stop_at=CALLBACK)
    _b, got, _v, _n = login(env, browser, citizen=LEVEL_ONE, acr_values="vneid-2")
    assert got["error"] == "unmet_authentication_requirements"
    _b, got, _verifier, _n = login(env, browser, acr_values="vneid-1 vneid-2")
    assert "code" in got
    time.sleep(1.1)
    before = len(browser.history)
    login(env, browser, max_age="0")
    assert any("/dev/eid/" in step for step in browser.history[before:])


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"nonce": None}, "invalid_request"),
    ],
)
def test_pkce_and_nonce_are_required(
    oidc: tuple[KhoEnv, Clients], params: dict[str, str | None], error: str
) -> None:
    env, _ = oidc
    _verifier, challenge = pkce()
    base: dict[str, Any] = {
        "response_type": "code",
        "client_id": "portal-a",
        "redirect_uri": CALLBACK,
        "scope": "openid",
        "state": "st",
        "nonce": "nn",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    base.update(params)
    url, _ = Browser(env.client, ORIGIN, stop_at=CALLBACK).go(authorize_url(ORIGIN, **base))
    got = query(url)
    assert got["error"] == error
    assert got["iss"] == ORIGIN


def test_wrong_or_missing_verifier_is_refused(oidc: tuple[KhoEnv, Clients]) -> None:
    env, _ = oidc
    _b, got, _verifier, _n = login(env)
    wrong = exchange(env, got["code"], pkce()[0])
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    _b, got, _verifier, _n = login(env)
    data = {
        "grant_type": "authorization_code",
        "code": got["code"],
        "redirect_uri": CALLBACK,
        "client_id": "portal-a",
    }
    missing = env.client.post("/oauth2/token", data=data)
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        CALLBACK + "/",
        CALLBACK + "?extra=1",
        "http://127.0.0.1:10/cb",
        "http://127.0.0.1:9/CB",
        "HTTP://127.0.0.1:9/cb",
        "http://localhost:9/cb",
    ],
)
def test_redirect_uri_must_match_exactly(oidc: tuple[KhoEnv, Clients], redirect_uri: str) -> None:
    env, _ = oidc
    _verifier, challenge = pkce()
    url, response = Browser(env.client, ORIGIN, stop_at="http://never").go(
        authorize_url(
            ORIGIN,
            response_type="code",
            client_id="portal-a",
            redirect_uri=redirect_uri,
            scope="openid",
            state="st",
            nonce="nn",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    # Never redirected anywhere: an error page from Kho itself.
    assert url.startswith(ORIGIN)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "oauth_invalid_request"


def test_code_reuse_fails_and_revokes_what_the_first_use_issued(
    oidc: tuple[KhoEnv, Clients],
) -> None:
    env, _ = oidc
    _b, got, verifier, _n = login(env)
    first = exchange(env, got["code"], verifier)
    assert first.status_code == 200
    tokens = first.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert env.client.get("/v1/me", headers=headers).status_code == 200
    second = exchange(env, got["code"], verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert env.client.get("/v1/me", headers=headers).status_code == 401
    refreshed = env.client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "portal-a",
        },
    )
    assert refreshed.status_code == 400


def test_refresh_tokens_rotate_and_reuse_revokes_the_family(oidc: tuple[KhoEnv, Clients]) -> None:
    env, _ = oidc
    _b, got, verifier, _n = login(env)
    tokens = exchange(env, got["code"], verifier).json()

    def refresh(token: str) -> httpx.Response:
        response: httpx.Response = env.client.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": token, "client_id": "portal-a"},
        )
        return response

    rotated = refresh(tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    newer = rotated.json()
    assert newer["refresh_token"] != tokens["refresh_token"]
    reuse = refresh(tokens["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    # The whole family is gone, including the token the legitimate holder had.
    assert refresh(newer["refresh_token"]).status_code == 400
    me = env.client.get("/v1/me", headers={"Authorization": f"Bearer {newer['access_token']}"})
    assert me.status_code == 401


def _assertion(
    client_id: str, key: ECKey, audience: str = ORIGIN + "/oauth2/token", jti: str | None = None
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": jti or secrets.token_urlsafe(12),
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid or ""}, claims, key, algorithms=["ES256"])


def test_client_credentials_for_agencies(oidc: tuple[KhoEnv, Clients]) -> None:
    env, clients = oidc
    basic = base64.b64encode(f"agency-basic:{clients.agency_secret}".encode()).decode()
    ok = env.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "kho:agency"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert ok.status_code == 200, ok.text
    assert "refresh_token" not in ok.json()
    claims = jwt.decode(ok.json()["access_token"], jwks(env), algorithms=["ES256"]).claims
    assert claims["sub"] == "agency-basic"
    assert claims["client_id"] == "agency-basic"
    bad = base64.b64encode(b"agency-basic:wrong").decode()
    refused = env.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {bad}"},
    )
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"

    assertion = _assertion("agency-jwt", clients.agency_key)
    form = {
        "grant_type": "client_credentials",
        "scope": "kho:agency",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    signed = env.client.post("/oauth2/token", data=form)
    assert signed.status_code == 200, signed.text
    replay = env.client.post("/oauth2/token", data=form)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_client"
    other_key = ECKey.generate_key("P-256", parameters={"kid": "agency-key-1"})
    form["client_assertion"] = _assertion("agency-jwt", other_key)
    forged = env.client.post("/oauth2/token", data=form)
    assert forged.status_code == 400
    assert forged.json()["error"] == "invalid_client"
    form["client_assertion"] = _assertion(
        "agency-jwt", clients.agency_key, audience="https://elsewhere"
    )
    wrong_audience = env.client.post("/oauth2/token", data=form)
    assert wrong_audience.status_code == 400
    assert wrong_audience.json()["error"] == "invalid_client"


def test_introspection_and_revocation(oidc: tuple[KhoEnv, Clients]) -> None:
    env, clients = oidc
    _b, got, verifier, _n = login(env)
    tokens = exchange(env, got["code"], verifier).json()
    basic = base64.b64encode(f"agency-basic:{clients.agency_secret}".encode()).decode()
    # Another client may not learn about portal-a's token.
    other = env.client.post(
        "/oauth2/introspect",
        data={"token": tokens["access_token"]},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert other.status_code == 200
    assert other.json() == {"active": False}
    revoked = env.client.post(
        "/oauth2/revoke", data={"token": tokens["refresh_token"], "client_id": "portal-a"}
    )
    assert revoked.status_code == 200
    again = env.client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "portal-a",
        },
    )
    assert again.status_code == 400
    me = env.client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 401


def test_logout_ends_the_session_everywhere(oidc: tuple[KhoEnv, Clients]) -> None:
    env, _ = oidc
    browser, got, verifier, _n = login(env)
    tokens = exchange(env, got["code"], verifier).json()
    browser.stop_at = "http://127.0.0.1:9/bye"
    url, _ = browser.go(
        ORIGIN
        + "/oauth2/logout?"
        + httpx.QueryParams(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "http://127.0.0.1:9/bye",
                "state": "bye1",
            }
        ).__str__()
    )
    assert query(url) == {"state": "bye1"}
    me = env.client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 401
    before = len(browser.history)
    login(env, browser)
    assert any("/dev/eid/" in step for step in browser.history[before:])
    unregistered = env.client.get(
        "/oauth2/logout",
        params={"post_logout_redirect_uri": "https://evil.example/", "client_id": "portal-a"},
    )
    assert unregistered.status_code == 400


def test_discovery_document(oidc: tuple[KhoEnv, Clients]) -> None:
    env, _ = oidc
    meta = env.client.get("/.well-known/openid-configuration").json()
    assert meta["issuer"] == ORIGIN
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert "none" not in meta["id_token_signing_alg_values_supported"]


def test_client_credentials_tokens_introspect_and_revoke(oidc: tuple[KhoEnv, Clients]) -> None:
    env, clients = oidc
    basic = {
        "Authorization": "Basic "
        + base64.b64encode(f"agency-basic:{clients.agency_secret}".encode()).decode()
    }
    token = env.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "kho:agency"},
        headers=basic,
    ).json()["access_token"]
    live = env.client.post("/oauth2/introspect", data={"token": token}, headers=basic).json()
    assert live["active"] is True
    assert live["client_id"] == "agency-basic"
    assert live["scope"] == "kho:agency"
    probe = f"/v1/agency/consent-requests/{uuid.uuid4()}"
    # Not bound to an agency: refused for that reason while the token itself is good.
    assert env.client.get(probe, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert (
        env.client.post("/oauth2/revoke", data={"token": token}, headers=basic).status_code == 200
    )
    dead = env.client.post("/oauth2/introspect", data={"token": token}, headers=basic).json()
    assert dead == {"active": False}
    after = env.client.get(probe, headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401
    assert after.json()["code"] == "invalid_token"


def test_signing_key_rotation_keeps_old_tokens_valid(oidc: tuple[KhoEnv, Clients]) -> None:
    env, _ = oidc
    _b, got, verifier, _n = login(env)
    old = exchange(env, got["code"], verifier).json()
    old_kid = jwt.decode(old["access_token"], jwks(env), algorithms=["ES256"]).header["kid"]
    rotated = env.client.post("/v1/admin/keys/signing/rotate", headers=env.operator_headers())
    assert rotated.status_code == 200, rotated.text
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid
    published = {k["kid"] for k in env.client.get("/.well-known/jwks.json").json()["keys"]}
    assert {old_kid, new_kid} <= published
    me = env.client.get("/v1/me", headers={"Authorization": f"Bearer {old['access_token']}"})
    assert me.status_code == 200
    _b, got, verifier, _n = login(env)
    new = exchange(env, got["code"], verifier).json()
    assert jwt.decode(new["id_token"], jwks(env), algorithms=["ES256"]).header["kid"] == new_kid
