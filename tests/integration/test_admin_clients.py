"""Operators register the provider's clients over HTTP: ``/v1/admin/clients`` (kho:admin)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from sso.demo import ensure_demo_clients
from storage.db import session_scope
from tests.conftest import KhoEnv

ORIGIN = "http://127.0.0.1:8000"

PORTAL: dict[str, Any] = {
    "client_id": "cong-dvc-thai-nguyen",
    "name": "Cổng dịch vụ công tỉnh Thái Nguyên",
    "kind": "portal",
    "token_endpoint_auth_method": "none",
    "redirect_uris": ["https://dichvucong.thainguyen.gov.vn/callback"],
    "post_logout_redirect_uris": ["https://dichvucong.thainguyen.gov.vn/"],
    "backchannel_logout_uri": "https://dichvucong.thainguyen.gov.vn/backchannel-logout",
    "grant_types": ["authorization_code", "refresh_token"],
    "scopes": ["openid", "profile", "personal_id"],
}
AGENCY: dict[str, Any] = {
    "client_id": "so-tu-phap",
    "name": "Sở Tư pháp",
    "kind": "agency",
    "token_endpoint_auth_method": "client_secret_basic",
    "grant_types": ["client_credentials"],
    "scopes": ["kho:agency"],
}


def put(env: KhoEnv, body: dict[str, Any], client_id: str | None = None) -> httpx.Response:
    response: httpx.Response = env.client.put(
        f"/v1/admin/clients/{client_id or body['client_id']}",
        json=body,
        headers=env.operator_headers(),
    )
    return response


def client_credentials(env: KhoEnv, client_id: str, secret: str) -> httpx.Response:
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response: httpx.Response = env.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "kho:agency"},
        headers={"Authorization": f"Basic {credentials}"},
    )
    return response


def test_register_portal_and_agency_secret_shown_once(kho_env: KhoEnv) -> None:
    env = kho_env
    portal = put(env, PORTAL)
    assert portal.status_code == 201, portal.text
    assert portal.json()["client_secret"] is None
    assert portal.json()["redirect_uris"] == PORTAL["redirect_uris"]
    assert portal.json()["backchannel_logout_uri"] == PORTAL["backchannel_logout_uri"]
    assert portal.json()["active"] is True

    agency = put(env, AGENCY)
    assert agency.status_code == 201, agency.text
    assert agency.headers["cache-control"] == "no-store"
    first = agency.json()["client_secret"]
    assert isinstance(first, str)
    assert len(first) >= 40
    assert client_credentials(env, "so-tu-phap", first).status_code == 200

    listed = env.client.get("/v1/admin/clients", headers=env.operator_headers())
    assert listed.status_code == 200, listed.text
    by_id = {c["client_id"]: c for c in listed.json()}
    assert set(by_id) >= {"cong-dvc-thai-nguyen", "so-tu-phap"}
    assert all(c["client_secret"] is None for c in listed.json())
    assert first not in listed.text
    assert by_id["so-tu-phap"]["kind"] == "agency"

    again = put(env, AGENCY)
    assert again.status_code == 200, again.text
    second = again.json()["client_secret"]
    assert isinstance(second, str)
    assert second != first
    stale = client_credentials(env, "so-tu-phap", first)
    assert stale.status_code == 401
    assert stale.json()["error"] == "invalid_client"
    assert client_credentials(env, "so-tu-phap", second).status_code == 200


@pytest.mark.parametrize(
    ("changes", "path_id"),
    [
        ({"token_endpoint_auth_method": "private_key_jwt"}, None),  # no jwks
        (  # authorization_code without a redirect URI
            {"grant_types": ["authorization_code"], "redirect_uris": []},
            None,
        ),
        ({"scopes": ["kho:agency", "kho:admin"]}, None),  # kho:admin on a non-operator
        ({}, "another-client"),  # path and body disagree
        ({"client_id": "X"}, "X"),  # not a valid client_id
        ({"kind": "operator"}, None),  # an operator without kho:admin
        ({"grant_types": []}, None),
    ],
    ids=[
        "private_key_jwt-without-jwks",
        "code-without-redirect-uri",
        "admin-scope-on-agency",
        "path-body-mismatch",
        "bad-client-id",
        "operator-without-admin-scope",
        "no-grant-types",
    ],
)
def test_invalid_registrations_are_refused(
    kho_env: KhoEnv, changes: dict[str, Any], path_id: str | None
) -> None:
    response = put(kho_env, {**AGENCY, **changes}, path_id)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_input"
    listed = kho_env.client.get("/v1/admin/clients", headers=kho_env.operator_headers())
    assert listed.status_code == 200
    assert {c["client_id"] for c in listed.json()}.isdisjoint({"so-tu-phap", "X"})


def test_only_operators_may_register(kho_env: KhoEnv) -> None:
    env = kho_env
    citizen = env.headers(env.citizen())
    as_citizen = env.client.put(
        f"/v1/admin/clients/{AGENCY['client_id']}", json=AGENCY, headers=citizen
    )
    assert as_citizen.status_code == 403
    assert as_citizen.json()["code"] == "forbidden"
    assert env.client.get("/v1/admin/clients", headers=citizen).status_code == 403
    anonymous = env.client.put(f"/v1/admin/clients/{AGENCY['client_id']}", json=AGENCY)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
    assert env.client.get("/v1/admin/clients").status_code == 401
    assert env.client.post(f"/v1/admin/clients/{AGENCY['client_id']}/deactivate").status_code == 401
    listed = env.client.get("/v1/admin/clients", headers=env.operator_headers())
    assert AGENCY["client_id"] not in {c["client_id"] for c in listed.json()}


def test_deactivated_client_gets_no_tokens(kho_env: KhoEnv) -> None:
    env = kho_env
    secret = put(env, AGENCY).json()["client_secret"]
    key = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"})
    signed = put(
        env,
        {
            **AGENCY,
            "client_id": "ubnd-xa",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
        },
    )
    assert signed.status_code == 201, signed.text
    assert signed.json()["client_secret"] is None
    assert client_credentials(env, "so-tu-phap", secret).status_code == 200

    stopped = env.client.post(
        "/v1/admin/clients/so-tu-phap/deactivate", headers=env.operator_headers()
    )
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["active"] is False
    assert stopped.json()["client_secret"] is None
    refused = client_credentials(env, "so-tu-phap", secret)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    listed = {
        c["client_id"]: c
        for c in env.client.get("/v1/admin/clients", headers=env.operator_headers()).json()
    }
    assert listed["so-tu-phap"]["active"] is False
    assert listed["ubnd-xa"]["active"] is True

    unknown = env.client.post(
        "/v1/admin/clients/no-such-client/deactivate", headers=env.operator_headers()
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "client_not_found"


def test_embedded_default_demo_clients(embedded_env: KhoEnv) -> None:
    """The demo portal and agency: idempotent, no predictable secret, a usable 0600 key file."""
    env = embedded_env
    data_dir = env.settings.data_dir
    for _ in range(2):
        with session_scope(env.container.sessions) as session:
            ensure_demo_clients(session, env.container.clock, env.settings.public_url, data_dir)
    key_file = data_dir / "demo-agency-key.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    document = json.loads(key_file.read_text())
    assert document["client_id"] == "kho-demo-agency"
    key = ECKey.import_key(document["keys"][0])
    assert key.is_private

    listed = env.client.get("/v1/admin/clients", headers=env.operator_headers()).json()
    by_id = {c["client_id"]: c for c in listed}
    portal = by_id["kho-demo-portal"]
    assert portal["token_endpoint_auth_method"] == "none"
    assert portal["redirect_uris"] == [ORIGIN + "/dev/portal/callback"]
    assert portal["post_logout_redirect_uris"] == [ORIGIN + "/"]
    assert portal["scopes"] == ["openid", "profile", "personal_id", "offline_access"]
    agency = by_id["kho-demo-agency"]
    assert agency["token_endpoint_auth_method"] == "private_key_jwt"
    assert agency["grant_types"] == ["client_credentials"]

    def assertion() -> str:
        now = int(time.time())
        claims = {
            "iss": "kho-demo-agency",
            "sub": "kho-demo-agency",
            "aud": ORIGIN + "/oauth2/token",
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(12),
        }
        header = {"alg": "ES256", "kid": key.kid or ""}
        return jwt.encode(header, claims, key, algorithms=["ES256"])

    form = {
        "grant_type": "client_credentials",
        "scope": "kho:agency",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    issued = env.client.post("/oauth2/token", data={**form, "client_assertion": assertion()})
    assert issued.status_code == 200, issued.text

    # A new key file (the developer deleted the old one) is picked up at the next start.
    key_file.unlink()
    with session_scope(env.container.sessions) as session:
        ensure_demo_clients(session, env.container.clock, env.settings.public_url, data_dir)
    stale = env.client.post("/oauth2/token", data={**form, "client_assertion": assertion()})
    assert stale.status_code in (400, 401)
    assert stale.json()["error"] == "invalid_client"
    key = ECKey.import_key(json.loads(key_file.read_text())["keys"][0])
    fresh = env.client.post("/oauth2/token", data={**form, "client_assertion": assertion()})
    assert fresh.status_code == 200, fresh.text


def test_a_private_key_is_never_accepted_as_a_client_key(embedded_env: KhoEnv) -> None:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    body = {
        "client_id": "leaky-agency",
        "name": "Leaky",
        "kind": "agency",
        "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["client_credentials"],
        "scopes": ["kho:agency"],
        "jwks": {"keys": [key.as_dict(private=True)]},
    }
    refused = embedded_env.client.put(
        "/v1/admin/clients/leaky-agency", json=body, headers=embedded_env.operator_headers()
    )
    assert refused.status_code == 422
    assert "private key material" in refused.text
    body["jwks"] = {"keys": [key.as_dict(private=False)]}
    accepted = embedded_env.client.put(
        "/v1/admin/clients/leaky-agency", json=body, headers=embedded_env.operator_headers()
    )
    assert accepted.status_code == 201, accepted.text
