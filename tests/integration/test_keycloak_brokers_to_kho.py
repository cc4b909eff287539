"""Interoperability: the real Keycloak as a third-party client of Kho's OpenID provider.

A real ``kho serve`` (embedded default, development e-ID simulator upstream) and the real
Keycloak, every hop over real HTTP: a fresh Keycloak realm brokers to Kho through an OIDC
identity provider configured from Kho's discovery document (PKCE S256, ID-token signature checked
against Kho's JWKS, confidential client with ``client_secret_basic``). A browser-less login starts
at the realm, goes through Kho and its e-ID simulator, and comes back to the realm's client with a
code; Keycloak then holds a user carrying the personal ID Kho asserted, linked to Kho.

Nothing in Kho is relaxed for Keycloak: the client is registered like any relying party.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from keycloak import KeycloakAdmin
from sqlalchemy import select

from sso.models import IssuedToken
from sso.service import ClientRegistration
from storage.db import session_scope
from tests.kho_server import HttpBrowser, KhoServer, parse_forms, pkce_pair, query_of, running_kho
from tests.services import SERVICES_DIR, KeycloakService, require_keycloak

pytestmark = pytest.mark.keycloak

CITIZEN = "019090001234"  # Nguyễn Văn An, a sample citizen of the e-ID simulator
CALLBACK = "http://127.0.0.1:9/cb"  # never connected to: the flow stops at the redirect
BROKER_CLIENT = "keycloak-broker"
PORTAL = "interop-portal"
IDP_ALIAS = "kho"
# Keycloak's OIDC broker authenticates the way its `clientAuthMethod` says; Kho registers a client
# for exactly one method and refuses the others. Each method Keycloak offers and Kho accepts is
# tried: the secret in HTTP Basic or in the form, or a JWT signed with the realm's own RSA key
# (Kho then holds the realm's public key, as it would hold any relying party's).
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


@dataclass(frozen=True)
class Interop:
    kc: KeycloakService
    kho: KhoServer
    admin: KeycloakAdmin
    realm: str
    auth_method: str

    @property
    def issuer(self) -> str:
        return f"{self.kc.url}/realms/{self.realm}"

    @property
    def broker_endpoint(self) -> str:
        return f"{self.issuer}/broker/{IDP_ALIAS}/endpoint"


def _admin(kc: KeycloakService) -> KeycloakAdmin:
    return KeycloakAdmin(
        server_url=kc.url,
        username=kc.admin,
        password=kc.admin_password,
        realm_name="master",
        user_realm_name="master",
    )


def _user_profile(admin: KeycloakAdmin) -> None:
    """Keep what the mappers write, and ask nothing Kho does not assert.

    Keycloak 26 drops attributes its user profile does not declare unless the unmanaged-attribute
    policy allows them; and Kho asserts no email, given or family name, so making those required
    would stop the first login at a "review profile" form.
    """
    profile = admin.get_realm_users_profile()
    profile["unmanagedAttributePolicy"] = "ENABLED"
    for attribute in profile.get("attributes", []):
        if attribute.get("name") in ("email", "firstName", "lastName"):
            attribute.pop("required", None)
    admin.update_realm_users_profile(profile)


def _no_review_profile(admin: KeycloakAdmin) -> None:
    """First broker login without the "review profile" page: the e-ID data is not editable."""
    for execution in admin.get_authentication_flow_executions("first broker login"):
        if execution.get("providerId") == "idp-review-profile" and execution.get(
            "authenticationConfig"
        ):
            config_id = execution["authenticationConfig"]
            config = admin.get_authenticator_config(config_id)
            config.setdefault("config", {})["update.profile.on.first.login"] = "off"
            admin.update_authenticator_config(config, config_id)


def _realm_signing_jwks(admin: KeycloakAdmin, kc: KeycloakService, realm: str) -> dict[str, Any]:
    """The realm's RS256 public keys, which sign its client assertions."""
    certs = httpx.get(f"{kc.url}/realms/{realm}/protocol/openid-connect/certs", timeout=10).json()
    keys = [k for k in certs["keys"] if k.get("use") == "sig" and k.get("alg") == "RS256"]
    assert keys, certs
    return {"keys": keys}


def _identity_provider(
    admin: KeycloakAdmin, realm: str, kho: KhoServer, auth_method: str, secret: str | None
) -> None:
    """The OIDC identity provider ``kho``, its endpoints read from Kho's discovery document by
    Keycloak itself (the admin console's "import from URL")."""
    discovery = f"{kho.url}/.well-known/openid-configuration"
    imported = admin.connection.raw_post(
        f"admin/realms/{realm}/identity-provider/import-config",
        data=json.dumps({"providerId": "oidc", "fromUrl": discovery}),
    )
    assert imported.status_code == 200, imported.text
    config: dict[str, str] = imported.json()
    # What Keycloak understood of the discovery document.
    assert config["issuer"] == kho.url
    assert config["authorizationUrl"] == f"{kho.url}/oauth2/authorize"
    assert config["tokenUrl"] == f"{kho.url}/oauth2/token"
    assert config["userInfoUrl"] == f"{kho.url}/oauth2/userinfo"
    assert config["jwksUrl"] == f"{kho.url}/.well-known/jwks.json"
    assert config.get("logoutUrl") == f"{kho.url}/oauth2/logout"
    if secret is not None:
        config["clientSecret"] = secret
    config.update(
        {
            "clientId": BROKER_CLIENT,
            "clientAuthMethod": auth_method,
            "validateSignature": "true",
            "useJwksUrl": "true",
            "pkceEnabled": "true",
            "pkceMethod": "S256",
            "defaultScope": "openid profile personal_id",
            "syncMode": "FORCE",
            "backchannelSupported": "false",
        }
    )
    admin.create_idp(
        {
            "alias": IDP_ALIAS,
            "displayName": "Kho",
            "providerId": "oidc",
            "enabled": True,
            "trustEmail": False,
            "storeToken": False,
            "linkOnly": False,
            "firstBrokerLoginFlowAlias": "first broker login",
            "config": config,
        }
    )
    admin.add_mapper_to_idp(
        IDP_ALIAS,
        {
            "name": "personal_id",
            "identityProviderAlias": IDP_ALIAS,
            "identityProviderMapper": "oidc-user-attribute-idp-mapper",
            "config": {
                "syncMode": "INHERIT",
                "claim": "personal_id",
                "user.attribute": "personal_id",
            },
        },
    )


def _portal(admin: KeycloakAdmin) -> None:
    admin.create_client(
        {
            "clientId": PORTAL,
            "name": "Interop portal",
            "enabled": True,
            "protocol": "openid-connect",
            "publicClient": True,
            "standardFlowEnabled": True,
            "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "serviceAccountsEnabled": False,
            "redirectUris": [CALLBACK],
            "webOrigins": [],
            "attributes": {"pkce.code.challenge.method": "S256"},
            "protocolMappers": [
                {
                    "name": "personal_id",
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-usermodel-attribute-mapper",
                    "config": {
                        "user.attribute": "personal_id",
                        "claim.name": "personal_id",
                        "jsonType.label": "String",
                        "id.token.claim": "true",
                        "access.token.claim": "true",
                        "userinfo.token.claim": "true",
                    },
                }
            ],
        }
    )


@pytest.fixture(params=AUTH_METHODS)
def interop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Interop]:
    auth_method: str = request.param
    kc = require_keycloak()
    realm = f"kho-interop-{secrets.token_hex(4)}"
    admin = _admin(kc)
    with running_kho(tmp_path) as kho:
        admin.create_realm(
            {
                "realm": realm,
                "enabled": True,
                "registrationAllowed": False,
                "loginWithEmailAllowed": False,
                "bruteForceProtected": True,
            }
        )
        try:
            secret = kho.register_client(
                ClientRegistration(
                    client_id=BROKER_CLIENT,
                    name="Keycloak (interoperability test)",
                    kind="relying_party",
                    token_endpoint_auth_method=auth_method,
                    redirect_uris=(f"{kc.url}/realms/{realm}/broker/{IDP_ALIAS}/endpoint",),
                    grant_types=("authorization_code", "refresh_token"),
                    scopes=("openid", "profile", "personal_id"),
                    jwks=_realm_signing_jwks(admin, kc, realm)
                    if auth_method == "private_key_jwt"
                    else None,
                )
            )
            assert (secret is None) == (auth_method == "private_key_jwt")
            admin.change_current_realm(realm)
            _user_profile(admin)
            _no_review_profile(admin)
            _identity_provider(admin, realm, kho, auth_method, secret)
            _portal(admin)
            yield Interop(kc, kho, admin, realm, auth_method)
        finally:
            # Shown by pytest with a failure: what the Kho server said.
            print(f"kho serve log tail:\n{kho.log()}")
            admin.change_current_realm("master")
            admin.delete_realm(realm)


def _keycloak_log(realm: str, lines: int = 6) -> str:
    """What the Keycloak started by scripts/services.sh logged about ``realm`` (its broker logs
    Kho's error responses there)."""
    path = SERVICES_DIR / "keycloak.log"
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path})"
    relevant = [line for line in text if realm in line or "AbstractOAuth2IdentityProvider" in line]
    return "\n".join(relevant[-lines:])


def _hop(browser: HttpBrowser, prefix: str) -> str:
    """The URL of the (first) request made to ``prefix``."""
    for step in browser.history:
        url = step.split(" ", 2)[1]
        if url.startswith(prefix):
            return url
    raise AssertionError(f"no request to {prefix}: {browser.history}")


def _login(env: Interop) -> tuple[HttpBrowser, dict[str, Any], str]:
    """The browser-less login: returns the browser, Keycloak's tokens, and the nonce sent."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    start = f"{env.issuer}/protocol/openid-connect/auth?" + urlencode(
        {
            "client_id": PORTAL,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": CALLBACK,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "kc_idp_hint": IDP_ALIAS,
        }
    )
    browser = HttpBrowser()
    kho = env.kho.url
    # Keycloak → Kho's authorization endpoint → Kho's e-ID simulator page.
    page_url, page = browser.go(start, stop_at=CALLBACK)
    assert page is not None, browser.history
    assert page_url.startswith(f"{kho}/dev/eid/authorize"), (page_url, browser.history)
    assert page.status_code == 200, page.text[:500]
    # The request Keycloak's broker sent to Kho: PKCE S256, a nonce, the exact redirect URI.
    sent = query_of(_hop(browser, f"{kho}/oauth2/authorize"))
    assert sent["client_id"] == BROKER_CLIENT
    assert sent["response_type"] == "code"
    assert sent["redirect_uri"] == env.broker_endpoint
    assert sent["code_challenge_method"] == "S256"
    assert len(sent["code_challenge"]) == 43
    assert sent.get("nonce")
    assert set(sent["scope"].split()) == {"openid", "profile", "personal_id"}
    # The developer picks the citizen on the simulator's page.
    forms = parse_forms(page.text)
    assert len(forms) == 1, page.text[:500]
    final, stuck = browser.submit(page_url, forms[0], {"personal_id": CITIZEN}, stop_at=CALLBACK)
    if stuck is not None:
        said = re.search(r'class="instruction">([^<]+)<', stuck.text)
        pytest.fail(
            f"the login stopped at {final.split('?')[0]} ({stuck.status_code}): "
            f"{said.group(1).strip() if said else stuck.text[:300]}\n"
            f"Keycloak's log about the realm:\n{_keycloak_log(env.realm)}\n"
            f"hops: {browser.history}"
        )
    # Kho sent the browser back to Keycloak's broker endpoint with a code and its issuer.
    back = query_of(_hop(browser, env.broker_endpoint))
    assert back.get("code")
    assert back.get("state")
    assert back["iss"] == kho  # RFC 9207
    # The broker exchanged the code at Kho and let the person through to the portal.
    got = query_of(final)
    assert got["state"] == state, final
    assert got["iss"] == env.issuer
    response = browser.http.post(
        f"{env.issuer}/protocol/openid-connect/token",
        data={
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": CALLBACK,
            "client_id": PORTAL,
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return browser, tokens, nonce


def test_keycloak_brokers_to_kho(interop: Interop) -> None:
    certs = httpx.get(f"{interop.issuer}/protocol/openid-connect/certs", timeout=10).json()
    keys = KeySet.import_key_set(
        {"keys": [k for k in certs["keys"] if k.get("use") == "sig" and k["alg"] == "RS256"]}
    )
    # Twice, each time a new browser: the first login creates the user in Keycloak (first
    # broker login, no form), the second finds it through the link to Kho.
    for _ in range(2):
        browser, tokens, nonce = _login(interop)
        browser.http.close()
        # Keycloak's own ID token, for the brokered user, carries what Kho asserted.
        id_token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": interop.issuer},
            aud={"essential": True, "value": PORTAL},
            nonce={"essential": True, "value": nonce},
        ).validate(id_token.claims)
        assert id_token.claims["personal_id"] == CITIZEN

    # Kho issued tokens to the broker once per login (the server-to-server code exchanges,
    # authenticated by the method under test) ...
    with session_scope(interop.kho.container.sessions) as session:
        issued = list(
            session.scalars(select(IssuedToken).where(IssuedToken.client_id == BROKER_CLIENT))
        )
    assert len(issued) == 2
    assert len({row.account_id for row in issued}) == 1
    kho_account = str(issued[0].account_id)
    for row in issued:
        assert set(row.scope.split()) == {"openid", "profile", "personal_id"}
        assert row.acr == "vneid-2"

    # ... and Keycloak holds one user, its personal ID copied by the mapper, linked to Kho under
    # Kho's subject.
    users = interop.admin.get_users({"q": f"personal_id:{CITIZEN}"})
    assert len(users) == 1, users
    user = interop.admin.get_user(users[0]["id"])
    assert user["attributes"]["personal_id"] == [CITIZEN]
    links = interop.admin.get_user_social_logins(user["id"])
    assert [(link["identityProvider"], link["userId"]) for link in links] == [
        (IDP_ALIAS, kho_account)
    ]
