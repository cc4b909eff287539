"""The real Keycloak started for the tests: the `national-eid` realm stands in for VNeID and the
`kho` realm brokers to it."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from keycloak import KeycloakAdmin, KeycloakOpenID, KeycloakPostError

from tests.services import require_keycloak

CITIZEN = "019090001234"
PASSWORD = "Test@12345"


def national_eid() -> tuple[KeycloakOpenID, str]:
    kc = require_keycloak()
    client = KeycloakOpenID(
        server_url=kc.url,
        realm_name="national-eid",
        client_id="kho-test",
        client_secret_key="kho-test-secret",
    )
    return client, kc.url


def test_token_from_national_eid_verifies_against_published_keys() -> None:
    client, url = national_eid()
    tokens = client.token(CITIZEN, PASSWORD, scope="openid")
    issuer = f"{url}/realms/national-eid"
    jwks: dict[str, Any] = client.certs()
    signing = KeySet.import_key_set(
        {"keys": [k for k in jwks["keys"] if k.get("use") == "sig" and k["alg"] == "RS256"]}
    )
    # The algorithm is pinned: the token must be RS256 and signed by a published key.
    decoded = jwt.decode(tokens["id_token"], signing, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": "kho-test"},
        exp={"essential": True},
    ).validate(decoded.claims)
    claims = decoded.claims
    assert claims["personal_id"] == CITIZEN
    assert claims["eid_level"] == "2"
    assert claims["birthdate"] == "1990-03-15"
    assert claims["name"] == "Nguyễn Văn An"

    access = jwt.decode(tokens["access_token"], signing, algorithms=["RS256"])
    assert access.claims["iss"] == issuer
    assert access.claims["personal_id"] == CITIZEN

    token = tokens["id_token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(BadSignatureError):
        jwt.decode(forged, signing, algorithms=["RS256"])


def test_wrong_password_is_refused() -> None:
    client, _ = national_eid()
    with pytest.raises(KeycloakPostError) as refused:
        client.token(CITIZEN, "wrong-password")
    assert refused.value.response_code == 400
    assert b"invalid_grant" in (refused.value.response_body or b"")


def test_kho_realm_brokers_to_national_eid() -> None:
    kc = require_keycloak()
    admin = KeycloakAdmin(
        server_url=kc.url,
        username=kc.admin,
        password=kc.admin_password,
        realm_name="kho",
        user_realm_name="master",
    )
    providers = {idp["alias"]: idp for idp in admin.get_idps()}
    idp = providers["national-eid"]
    assert idp["config"]["pkceEnabled"] == "true"
    assert idp["config"]["pkceMethod"] == "S256"
    assert idp["config"]["issuer"] == f"{kc.url}/realms/national-eid"
    clients = {c["clientId"]: c for c in admin.get_clients()}
    portal = clients["portal"]
    assert portal["publicClient"] is True
    assert portal["attributes"]["pkce.code.challenge.method"] == "S256"
    discovery = KeycloakOpenID(server_url=kc.url, realm_name="kho", client_id="portal")
    assert discovery.well_known()["issuer"] == f"{kc.url}/realms/kho"
