"""Keycloak mode against the real Keycloak: provisioning a realm, a brokered login through the
national e-ID without a browser, the Kho API accepting the resulting token, and the tokens the
validator refuses."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.cookiejar
import json
import secrets
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import KeySet, RSAKey
from keycloak import KeycloakAdmin, KeycloakOpenID
from typer.testing import CliRunner

from api.app import create_app
from api.cli_keycloak import keycloak_app
from common.clock import FixedClock, SystemClock
from sso.errors import InvalidToken
from sso.keycloak import (
    KeycloakProvisioner,
    eid_acr,
    keycloak_issuer,
    keycloak_token_validator,
    profile_from_keycloak_claims,
)
from tests.conftest import build_ready_container, settings_for
from tests.services import KeycloakService, require_keycloak

CITIZEN = "019090001234"
CITIZEN_NAME = "Nguyễn Văn An"
PASSWORD = "Test@12345"
REDIRECT_URI = "http://127.0.0.1:9/cb"  # never connected to: the flow stops at the redirect
EID_CLIENT_ID = "kho"  # the national-eid realm's client for Kho (scripts/keycloak)
EID_CLIENT_SECRET = "kho-national-eid-secret"
AUDIENCE = "kho-api"

pytestmark = pytest.mark.keycloak


# --- A browser without a browser ---------------------------------------------------------------


class _LoopbackIsSecure(http.cookiejar.DefaultCookiePolicy):
    """Keycloak marks its cookies Secure; browsers send them to http://127.0.0.1 (a secure
    context), http.cookiejar does not. Only loopback hosts get this exception."""

    def return_ok_secure(
        self, cookie: http.cookiejar.Cookie, request: urllib.request.Request
    ) -> bool:
        host = urlsplit(request.get_full_url()).hostname
        return host in ("127.0.0.1", "localhost") or super().return_ok_secure(cookie, request)


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    has_password: bool = False


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") == "password":
                self.forms[-1].has_password = True
            if a.get("type") not in ("submit", "button", "image", "reset"):
                self.forms[-1].fields[a["name"]] = a.get("value", "")


class Browser:
    """Follows redirects by hand, keeps cookies, fills the e-ID's login form."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=15)
        self.cookies = httpx.Cookies(http.cookiejar.CookieJar(policy=_LoopbackIsSecure()))
        self.pages: list[str] = []  # the URLs visited, for failure messages
        self.forms_submitted: list[str] = []

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        request = httpx.Request(method, url, data=data)
        self.cookies.set_cookie_header(request)
        response = self.http.send(request)
        self.cookies.extract_cookies(response)
        self.pages.append(f"{method} {url.split('?', maxsplit=1)[0]} -> {response.status_code}")
        return response

    def login(self, start_url: str, username: str, password: str) -> dict[str, list[str]]:
        """From the authorization request to the redirect back to REDIRECT_URI (its query)."""
        response = self.request("GET", start_url)
        for _ in range(25):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if target.startswith(REDIRECT_URI):
                    return parse_qs(urlsplit(target).query)
                response = self.request("GET", target)
                continue
            parser = _FormParser()
            parser.feed(response.text)
            if response.status_code != 200 or not parser.forms:
                pytest.fail(f"unexpected page ({response.status_code}) after {self.pages}")
            form = parser.forms[0]
            fields = dict(form.fields)
            if form.has_password:
                fields.update(username=username, password=password)
                self.forms_submitted.append("login")
            else:
                # Any other form on the way (e.g. first-broker-login "review profile") is
                # submitted as filled in by Keycloak.
                self.forms_submitted.append(form.action.split("?")[0])
            action = urljoin(str(response.url), form.action)
            response = self.request(form.method.upper(), action, fields)
        pytest.fail(f"too many steps: {self.pages}")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class LoginResult:
    tokens: dict[str, Any]
    forms_submitted: list[str]
    callback: dict[str, list[str]]


def brokered_login(kc: KeycloakService, realm: str, username: str = CITIZEN) -> LoginResult:
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = urlencode(
        {
            "client_id": "portal",
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": REDIRECT_URI,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "kc_idp_hint": "national-eid",
        }
    )
    browser = Browser()
    try:
        start = f"{keycloak_issuer(kc.url, realm)}/protocol/openid-connect/auth?{query}"
        callback = browser.login(start, username, PASSWORD)
        assert callback["state"] == [state]
        assert callback["iss"] == [keycloak_issuer(kc.url, realm)]
        response = httpx.post(
            f"{keycloak_issuer(kc.url, realm)}/protocol/openid-connect/token",
            data={
                "grant_type": "authorization_code",
                "code": callback["code"][0],
                "redirect_uri": REDIRECT_URI,
                "client_id": "portal",
                "code_verifier": verifier,
            },
            timeout=15,
        )
        assert response.status_code == 200, response.text
        return LoginResult(response.json(), browser.forms_submitted, callback)
    finally:
        browser.close()


# --- JWT crafting --------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_part(part: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    return _json_part(head), _json_part(body)


def forge(header: dict[str, Any], claims: dict[str, Any], sign: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if sign is None:
        return signing_input + "."
    signature = hmac.new(sign, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


# --- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kc() -> KeycloakService:
    return require_keycloak()


def master_admin(kc: KeycloakService) -> KeycloakAdmin:
    return KeycloakAdmin(
        server_url=kc.url,
        username=kc.admin,
        password=kc.admin_password,
        realm_name="master",
        user_realm_name="master",
    )


def provisioner(
    kc: KeycloakService, realm: str, secret: str = EID_CLIENT_SECRET
) -> KeycloakProvisioner:
    return KeycloakProvisioner(
        kc.url,
        kc.admin,
        kc.admin_password,
        realm=realm,
        eid_discovery_url=f"{kc.url}/realms/national-eid/.well-known/openid-configuration",
        eid_client_id=EID_CLIENT_ID,
        eid_client_secret=secret,
        portal_redirect_uris=[REDIRECT_URI],
        api_audience=AUDIENCE,
    )


@dataclass(frozen=True)
class Provisioned:
    realm: str
    first: Any
    second: Any


@pytest.fixture(scope="module")
def provisioned(kc: KeycloakService) -> Iterator[Provisioned]:
    realm = f"kho-prov-{secrets.token_hex(4)}"
    try:
        first = provisioner(kc, realm).provision()
        second = provisioner(kc, realm).provision()
        yield Provisioned(realm, first, second)
    finally:
        admin = master_admin(kc)
        if any(r["realm"] == realm for r in admin.get_realms()):
            admin.delete_realm(realm)


@pytest.fixture(scope="module")
def kho_login(kc: KeycloakService) -> LoginResult:
    """One brokered login through the committed `kho` realm, shared by the refusal tests."""
    return brokered_login(kc, "kho")


def realm_admin(kc: KeycloakService, realm: str) -> KeycloakAdmin:
    admin = master_admin(kc)
    admin.change_current_realm(realm)
    return admin


# --- Provisioning --------------------------------------------------------------------------------


def test_provisioning_a_fresh_realm_twice_changes_nothing_the_second_time(
    kc: KeycloakService, provisioned: Provisioned
) -> None:
    first, second = provisioned.first, provisioned.second
    assert first.changed
    assert f"realm {provisioned.realm}" in {c.what for c in first.changes if c.action == "created"}
    assert not second.changed
    assert {c.action for c in second.changes} == {"unchanged"}
    assert [c.what for c in second.changes] == [c.what for c in first.changes]

    admin = realm_admin(kc, provisioned.realm)
    realm = admin.get_realm(provisioned.realm)
    assert realm["enabled"] is True
    assert realm["registrationAllowed"] is False
    assert realm["defaultSignatureAlgorithm"] == "RS256"

    idp = admin.get_idp("national-eid")
    config = idp["config"]
    assert idp["providerId"] == "oidc"
    assert config["issuer"] == f"{kc.url}/realms/national-eid"
    assert (
        config["authorizationUrl"] == f"{kc.url}/realms/national-eid/protocol/openid-connect/auth"
    )
    assert config["jwksUrl"] == f"{kc.url}/realms/national-eid/protocol/openid-connect/certs"
    assert (config["pkceEnabled"], config["pkceMethod"]) == ("true", "S256")
    assert (config["validateSignature"], config["useJwksUrl"]) == ("true", "true")
    assert config["clientAuthMethod"] == "client_secret_post"
    assert config["syncMode"] == "FORCE"
    assert config["defaultScope"] == "openid profile"
    assert config["clientSecret"] != EID_CLIENT_SECRET  # masked; only its salted digest is kept
    assert EID_CLIENT_SECRET not in json.dumps(idp)

    mappers = {m["name"]: m for m in admin.get_idp_mappers("national-eid")}
    assert mappers["username from personal_id"]["config"]["template"] == "${CLAIM.personal_id}"
    for attribute in ("personal_id", "birthdate", "eid_level"):
        assert mappers[attribute]["identityProviderMapper"] == "oidc-user-attribute-idp-mapper"
        assert mappers[attribute]["config"]["claim"] == attribute
        assert mappers[attribute]["config"]["user.attribute"] == attribute

    profile = {a["name"]: a for a in admin.get_realm_users_profile()["attributes"]}
    for attribute in ("personal_id", "birthdate", "eid_level", "full_name"):
        assert profile[attribute]["permissions"]["edit"] == ["admin"]
    assert "required" not in profile["email"]

    clients = {c["clientId"]: c for c in admin.get_clients()}
    portal = clients["portal"]
    assert portal["publicClient"] is True
    assert portal["standardFlowEnabled"] is True
    assert portal["implicitFlowEnabled"] is False
    assert portal["directAccessGrantsEnabled"] is False
    assert portal["serviceAccountsEnabled"] is False
    assert portal["redirectUris"] == [REDIRECT_URI]
    assert portal["attributes"]["pkce.code.challenge.method"] == "S256"
    portal_mappers = {m["name"]: m for m in admin.get_mappers_from_client(portal["id"])}
    audience = portal_mappers["audience kho-api"]
    assert audience["protocolMapper"] == "oidc-audience-mapper"
    assert audience["config"]["included.custom.audience"] == AUDIENCE
    portal_scopes = {s["name"] for s in admin.get_client_default_client_scopes(portal["id"])}
    assert "national-eid" in portal_scopes

    agency = clients["kho-agency-demo"]
    assert agency["publicClient"] is False
    assert agency["serviceAccountsEnabled"] is True
    assert agency["standardFlowEnabled"] is False
    agency_mappers = {m["name"] for m in admin.get_mappers_from_client(agency["id"])}
    assert "audience kho-api" in agency_mappers

    scope = admin.get_client_scope_by_name("national-eid")
    assert scope is not None
    claims = {
        m["config"]["claim.name"]: m["config"]["user.attribute"]
        for m in admin.get_mappers_from_client_scope(scope["id"])
    }
    assert claims == {
        "personal_id": "personal_id",
        "eid_level": "eid_level",
        "birthdate": "birthdate",
        "name": "full_name",
    }


def test_provisioning_repairs_drift_and_applies_a_new_secret(
    kc: KeycloakService, provisioned: Provisioned
) -> None:
    admin = realm_admin(kc, provisioned.realm)
    portal_id = admin.get_client_id("portal")
    assert portal_id is not None
    portal = admin.get_client(portal_id)
    admin.update_client(portal_id, dict(portal, redirectUris=["http://127.0.0.1*"]))
    idp = admin.get_idp("national-eid")
    idp["config"]["pkceEnabled"] = "false"
    admin.update_idp("national-eid", idp)

    repaired = provisioner(kc, provisioned.realm).provision()
    updated = {c.what for c in repaired.changes if c.action == "updated"}
    assert updated == {
        "client portal",
        f"identity provider national-eid ({kc.url}/realms/national-eid)",
    }
    assert admin.get_client(portal_id)["redirectUris"] == [REDIRECT_URI]
    assert admin.get_idp("national-eid")["config"]["pkceEnabled"] == "true"

    rotated = provisioner(kc, provisioned.realm, secret="a-new-secret").provision()
    assert [c.what for c in rotated.changes if c.action != "unchanged"] == [
        f"identity provider national-eid ({kc.url}/realms/national-eid), client secret"
    ]
    # Back to the secret the national-eid realm knows, for the login test.
    back = provisioner(kc, provisioned.realm).provision()
    assert back.changed
    assert not provisioner(kc, provisioned.realm).provision().changed


def test_cli_provision_reports_no_changes_on_a_provisioned_realm(
    kc: KeycloakService, provisioned: Provisioned
) -> None:
    env = {
        "KHO_KEYCLOAK_URL": kc.url,
        "KHO_KEYCLOAK_REALM": provisioned.realm,
        "KHO_KEYCLOAK_ADMIN_USER": kc.admin,
        "KHO_KEYCLOAK_ADMIN_PASSWORD": kc.admin_password,
        "KHO_EID_DISCOVERY_URL": f"{kc.url}/realms/national-eid/.well-known/openid-configuration",
        "KHO_EID_CLIENT_ID": EID_CLIENT_ID,
        "KHO_EID_CLIENT_SECRET": EID_CLIENT_SECRET,
    }
    runner = CliRunner()
    result = runner.invoke(keycloak_app, ["provision", "--redirect-uri", REDIRECT_URI], env=env)
    assert result.exit_code == 0, result.output
    assert "no changes" in result.stdout
    assert "unchanged client portal" in result.stdout
    assert kc.admin_password not in result.output
    assert EID_CLIENT_SECRET not in result.output

    refused = runner.invoke(
        keycloak_app,
        ["provision", "--redirect-uri", REDIRECT_URI],
        env=dict(env, KHO_KEYCLOAK_ADMIN_PASSWORD="wrong-password"),
    )
    assert refused.exit_code == 2
    assert refused.stderr.startswith("kho: keycloak_error: 400: Invalid user credentials")
    assert "wrong-password" not in refused.output
    assert len(refused.stderr.strip().splitlines()) == 1

    wildcard = runner.invoke(
        keycloak_app, ["provision", "--redirect-uri", "http://127.0.0.1*"], env=env
    )
    assert wildcard.exit_code == 2
    assert "--redirect-uri" in wildcard.stderr

    unreachable = runner.invoke(
        keycloak_app,
        ["provision", "--redirect-uri", REDIRECT_URI],
        env=dict(env, KHO_KEYCLOAK_URL="http://127.0.0.1:1"),
    )
    assert unreachable.exit_code == 2
    assert unreachable.stderr.strip() == "kho: keycloak_error: Can't connect to server"

    missing = runner.invoke(
        keycloak_app,
        ["provision", "--redirect-uri", REDIRECT_URI],
        env=dict(env, KHO_EID_CLIENT_SECRET=""),
    )
    assert missing.exit_code == 2
    assert (
        missing.stderr.strip() == "kho: KHO_EID_CLIENT_SECRET: required by `kho keycloak provision`"
    )


def test_brokered_login_works_on_the_provisioned_realm(
    kc: KeycloakService, provisioned: Provisioned
) -> None:
    login = brokered_login(kc, provisioned.realm)
    validator = keycloak_token_validator(kc.url, provisioned.realm, AUDIENCE, SystemClock())
    claims = validator.validate(login.tokens["access_token"])
    assert claims.raw["personal_id"] == CITIZEN
    assert claims.raw["name"] == CITIZEN_NAME  # family name first, not the Western order
    assert claims.raw["eid_level"] == "2"
    assert claims.raw["birthdate"] == "1990-03-15"
    assert claims.client_id == "portal"
    assert login.forms_submitted == ["login"]  # no "review profile" form on first login


# --- The committed `kho` realm, and the Kho API -------------------------------------------------


def test_brokered_login_through_the_kho_realm_yields_a_valid_token(
    kc: KeycloakService, kho_login: LoginResult
) -> None:
    validator = keycloak_token_validator(kc.url, "kho", AUDIENCE, SystemClock())
    claims = validator.validate(kho_login.tokens["access_token"])
    assert claims.issuer == f"{kc.url}/realms/kho"
    assert AUDIENCE in claims.audience
    assert claims.raw["personal_id"] == CITIZEN
    # Only the very first login of this citizen in this Keycloak is a "first broker login";
    # whatever form came up was submitted by the Browser as Keycloak filled it in.
    assert kho_login.forms_submitted[0] == "login"

    profile = profile_from_keycloak_claims(claims.raw)
    assert profile.personal_id == CITIZEN
    assert profile.national_subject == f"{kc.url}/realms/kho#{claims.subject}"
    assert profile.full_name == CITIZEN_NAME
    assert profile.birth_date == dt.date(1990, 3, 15)
    assert profile.eid_level == 2


def test_the_kho_api_accepts_keycloak_tokens_and_enrols_the_citizen(
    kc: KeycloakService, kho_login: LoginResult, tmp_path: Path
) -> None:
    """Waits on the wiring in api/container.py and api/deps.py (see the Keycloak-mode report)."""
    settings = settings_for(
        "sqlite-local", tmp_path, sso_mode="keycloak", keycloak_url=kc.url, keycloak_realm="kho"
    )
    container = build_ready_container(settings)
    app = create_app(settings, container=container)
    bearer = {"Authorization": f"Bearer {kho_login.tokens['access_token']}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.get("/v1/me", headers=bearer)
        assert first.status_code == 200, first.text
        me = first.json()
        assert me["personal_id"] == CITIZEN
        assert me["full_name"] == CITIZEN_NAME
        assert me["birth_date"] == "1990-03-15"
        assert me["eid_level"] == 2
        assert me["acr"] == eid_acr(2)
        again = client.get("/v1/me", headers=bearer)
        assert again.json()["id"] == me["id"]  # enrolled once, found afterwards

        service = KeycloakOpenID(
            server_url=kc.url,
            realm_name="kho",
            client_id="kho-api-test",
            client_secret_key="kho-api-test-secret",
        ).token(grant_type="client_credentials")
        not_a_citizen = client.get(
            "/v1/me", headers={"Authorization": f"Bearer {service['access_token']}"}
        )
        assert not_a_citizen.status_code == 401
    container.close()


# --- What the validator refuses ------------------------------------------------------------------


def kho_validator(kc: KeycloakService, **overrides: Any) -> Any:
    values: dict[str, Any] = {"audience": AUDIENCE, "clock": SystemClock()}
    values.update(overrides)
    return keycloak_token_validator(kc.url, "kho", values["audience"], values["clock"])


def test_a_token_from_another_realm_is_refused(kc: KeycloakService) -> None:
    national = KeycloakOpenID(
        server_url=kc.url,
        realm_name="national-eid",
        client_id="kho-test",
        client_secret_key="kho-test-secret",
    ).token(CITIZEN, PASSWORD, scope="openid")
    with pytest.raises(InvalidToken):
        kho_validator(kc).validate(national["access_token"])
    # Even a validator that trusts the national-eid realm's keys refuses it as Kho's audience.
    with pytest.raises(InvalidToken):
        keycloak_token_validator(kc.url, "national-eid", AUDIENCE, SystemClock()).validate(
            national["access_token"]
        )


def test_a_token_for_another_audience_is_refused(
    kc: KeycloakService, kho_login: LoginResult
) -> None:
    # The ID token is signed by the same realm key but is for the portal, not the API.
    with pytest.raises(InvalidToken):
        kho_validator(kc).validate(kho_login.tokens["id_token"])
    # And an API with another audience refuses Kho's access token.
    with pytest.raises(InvalidToken):
        kho_validator(kc, audience="other-api").validate(kho_login.tokens["access_token"])


def test_tampered_expired_and_refresh_tokens_are_refused(
    kc: KeycloakService, kho_login: LoginResult
) -> None:
    token = kho_login.tokens["access_token"]
    head, body, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    _, claims = unverified(token)
    other_citizen = b64(json.dumps(dict(claims, personal_id="001185004321")).encode())
    later = FixedClock(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    for bad in (f"{head}.{body}.{flipped}", f"{head}.{other_citizen}.{signature}"):
        with pytest.raises(InvalidToken):
            kho_validator(kc).validate(bad)
    with pytest.raises(InvalidToken):
        kho_validator(kc, clock=later).validate(token)
    with pytest.raises(InvalidToken):
        kho_validator(kc).validate(kho_login.tokens["refresh_token"])


def test_alg_none_and_hs256_with_the_public_key_are_refused(
    kc: KeycloakService, kho_login: LoginResult
) -> None:
    header, claims = unverified(kho_login.tokens["access_token"])
    validator = kho_validator(kc)
    for alg in ("none", "None", "NONE"):
        with pytest.raises(InvalidToken):
            validator.validate(forge(dict(header, alg=alg), claims, None))

    # The classic key-confusion attack: HMAC keyed with the realm's public key, as PEM and DER.
    jwks = httpx.get(f"{kc.url}/realms/kho/protocol/openid-connect/certs", timeout=10).json()
    public = KeySet.import_key_set(jwks).get_by_kid(header["kid"])
    assert isinstance(public, RSAKey)
    for secret in (
        public.as_pem(private=False),
        public.as_der(private=False),
        json.dumps(public.as_dict(private=False)).encode(),
    ):
        with pytest.raises(InvalidToken):
            validator.validate(forge(dict(header, alg="HS256"), claims, secret))

    # The untouched token passes the same validator: the refusals above are about the forgery.
    assert validator.validate(kho_login.tokens["access_token"]).raw["personal_id"] == CITIZEN


def test_a_service_account_token_is_valid_but_not_a_citizen(kc: KeycloakService) -> None:
    service = KeycloakOpenID(
        server_url=kc.url,
        realm_name="kho",
        client_id="kho-api-test",
        client_secret_key="kho-api-test-secret",
    ).token(grant_type="client_credentials")
    claims = kho_validator(kc).validate(service["access_token"])
    assert claims.client_id == "kho-api-test"
    with pytest.raises(InvalidToken):
        profile_from_keycloak_claims(claims.raw)


# --- From claims to a citizen (no server needed) -------------------------------------------------

GOOD_CLAIMS: dict[str, Any] = {
    "iss": "http://kc.test/realms/kho",
    "sub": "5a0f3c1e-0000-4000-8000-000000000001",
    "personal_id": CITIZEN,
    "birthdate": "1990-03-15",
    "eid_level": "2",
    "name": CITIZEN_NAME,
}


@pytest.mark.parametrize(
    "change",
    [
        {"personal_id": None},
        {"personal_id": "01909000123"},  # 11 digits
        {"birthdate": "1991-03-15"},  # disagrees with the PIN's birth year
        {"birthdate": "15/03/1990"},
        {"eid_level": "3"},
        {"eid_level": "²"},
        {"eid_level": True},
        {"eid_level": None},
        {"sub": None},
    ],
)
def test_claims_that_do_not_make_a_citizen_are_refused(change: dict[str, Any]) -> None:
    claims = {k: v for k, v in {**GOOD_CLAIMS, **change}.items() if v is not None}
    with pytest.raises(InvalidToken):
        profile_from_keycloak_claims(claims)


def test_claims_make_a_profile_keyed_by_realm_and_subject() -> None:
    profile = profile_from_keycloak_claims(dict(GOOD_CLAIMS, eid_level=1, name=None))
    assert profile.national_subject == f"{GOOD_CLAIMS['iss']}#{GOOD_CLAIMS['sub']}"
    assert profile.eid_level == 1
    assert profile.full_name == CITIZEN  # no name asserted: the PIN stands in
    named = profile_from_keycloak_claims(
        {**GOOD_CLAIMS, "name": None, "family_name": "Nguyễn", "given_name": "Văn An"}
    )
    assert named.full_name == CITIZEN_NAME
