"""Keycloak mode: Kho accepts the access tokens a Keycloak realm issues, and provisions that realm.

* :func:`keycloak_token_validator` validates a realm's access tokens (RS256 only, issuer and the
  API audience checked, keys from the realm's JWKS through :class:`sso.jwks.RemoteKeySource`).
* :func:`profile_from_keycloak_claims` turns the claims of a brokered citizen into the
  :class:`identity.service.CitizenProfile` that enrols or finds the Kho account.
* :class:`KeycloakProvisioner` creates or updates, idempotently, the realm, the national e-ID
  identity provider and its mappers, the declarative user profile, the client scope carrying the
  e-ID claims, the ``portal`` client and a demo agency client.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx

from common.clock import Clock
from common.errors import ConfigurationError, ServiceUnavailable
from identity.errors import InvalidPersonalId
from identity.service import CitizenProfile, validate_personal_id
from sso.errors import InvalidToken
from sso.jwks import DISCOVERY_PATH, RemoteKeySource
from sso.tokens import AccessClaims, AccessTokenValidator

if TYPE_CHECKING:
    from keycloak import KeycloakAdmin

KEYCLOAK_ALGORITHMS = ("RS256",)
# Keycloak and Kho run on synchronised hosts; a minute of skew is generous, more is a fault.
KEYCLOAK_LEEWAY_SECONDS = 60
KEYCLOAK_ACCESS_TOKEN_TYPE = "Bearer"

IDP_ALIAS = "national-eid"
CLAIMS_SCOPE = "national-eid"
PORTAL_CLIENT = "portal"
AGENCY_DEMO_CLIENT = "kho-agency-demo"
EID_LEVELS = (1, 2)


# --- Tokens ------------------------------------------------------------------------------------


class KeycloakAccessTokenValidator(AccessTokenValidator):
    """Also checks Keycloak's ``typ`` claim, so an ID token whose audience happens to be the API
    (a client named like the audience) is not accepted as an access token."""

    def validate(self, token: str) -> AccessClaims:
        claims = super().validate(token)
        if claims.raw.get("typ") != KEYCLOAK_ACCESS_TOKEN_TYPE:
            raise InvalidToken()
        return claims


def keycloak_issuer(keycloak_url: str, realm: str) -> str:
    return f"{keycloak_url.rstrip('/')}/realms/{realm}"


def keycloak_token_validator(
    keycloak_url: str,
    realm: str,
    audience: str,
    clock: Clock,
    http: httpx.Client | None = None,
) -> KeycloakAccessTokenValidator:
    """The validator of ``realm``'s access tokens, keys fetched from the realm's JWKS.

    Pass the process's ``http`` client; without one the key source makes its own, closed by
    ``validator.keys.close()``. Keycloak must be configured so that the issuer it puts in tokens
    is ``{keycloak_url}/realms/{realm}`` (its hostname setting), or every token is refused.
    """
    issuer = keycloak_issuer(keycloak_url, realm)
    return KeycloakAccessTokenValidator(
        issuer=issuer,
        audience=audience,
        keys=RemoteKeySource(issuer, http),
        clock=clock,
        algorithms=KEYCLOAK_ALGORITHMS,
        leeway_seconds=KEYCLOAK_LEEWAY_SECONDS,
        # Keycloak's access tokens say `typ: JWT` in the header; `typ: Bearer` in the claims is
        # checked by KeycloakAccessTokenValidator instead.
        required_type=None,
    )


def _claim_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]  # a multivalued attribute mapper yields a one-element list
    return value.strip() if isinstance(value, str) and value.strip() else None


def eid_level_from_keycloak_claims(claims: Mapping[str, Any]) -> int:
    raw = claims.get("eid_level")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # a mapper with jsonType int
    level = _claim_str({"eid_level": raw}, "eid_level")
    if level not in {str(n) for n in EID_LEVELS}:
        raise InvalidToken()
    return int(level)


def eid_acr(level: int) -> str:
    """The ``acr`` Kho's own provider issues for an e-ID level; Keycloak's ``acr`` ("1") is its
    own level of authentication and says nothing about the e-ID."""
    return f"vneid-{level}"


def profile_from_keycloak_claims(claims: Mapping[str, Any]) -> CitizenProfile:
    """The citizen a Keycloak access token speaks for; InvalidToken when it is not a citizen's.

    The national subject is ``{issuer}#{sub}``: Keycloak's user id, qualified by the realm, so two
    realms (or Kho's own provider) can never collide. The personal ID number and the e-ID level
    come from the claims the e-ID asserted at login (copied by the identity-provider mappers).
    """
    issuer = _claim_str(claims, "iss")
    subject = _claim_str(claims, "sub")
    personal_id = _claim_str(claims, "personal_id")
    if issuer is None or subject is None or personal_id is None:
        raise InvalidToken()  # e.g. a service-account token: not a citizen
    name = _claim_str(claims, "name") or " ".join(
        part
        for part in (_claim_str(claims, "family_name"), _claim_str(claims, "given_name"))
        if part
    )
    birth_date: dt.date | None = None
    if (birthdate := _claim_str(claims, "birthdate")) is not None:
        try:
            birth_date = dt.date.fromisoformat(birthdate)
        except ValueError:
            raise InvalidToken() from None
    try:
        validate_personal_id(personal_id, birth_date)
    except InvalidPersonalId:
        raise InvalidToken() from None
    return CitizenProfile(
        national_subject=f"{issuer}#{subject}",
        personal_id=personal_id,
        full_name=name or personal_id,
        birth_date=birth_date,
        eid_level=eid_level_from_keycloak_claims(claims),
    )


# --- Provisioning ------------------------------------------------------------------------------

Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Change:
    action: Action
    what: str

    def __str__(self) -> str:
        return f"{self.action:<9} {self.what}"


@dataclass
class ProvisionReport:
    realm: str
    changes: list[Change] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def add(self, action: Action, what: str) -> None:
        self.changes.append(Change(action, what))


@dataclass(frozen=True)
class EidEndpoints:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _differs(current: Any, desired: Any) -> bool:
    """Whether ``current`` (what Keycloak holds) lacks anything ``desired`` says.

    Only the keys ``desired`` names are compared, so defaults Keycloak adds do not count as
    drift; lists compare as sets, because Keycloak does not keep their order.
    """
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return True
        return any(_differs(current.get(key), value) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(current, list):
            return True
        return sorted(map(_canonical, current)) != sorted(map(_canonical, desired))
    return bool(current != desired)


def _merged(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(current)
    for key, value in desired.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


_SECRET_DIGEST_KEY = "khoClientSecretDigest"
_SECRET_DIGEST_ITERATIONS = 200_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _secret_digest(secret: str, salt: bytes | None = None) -> str:
    """A salted, slow digest of the e-ID client secret, kept in the identity provider's config.

    Keycloak never returns the secret, so without it a re-run could not tell whether the secret
    changed. The digest is salted and stretched because realm admins can read the config.
    """
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, _SECRET_DIGEST_ITERATIONS)
    return f"pbkdf2-sha256${_SECRET_DIGEST_ITERATIONS}${_b64(salt)}${_b64(digest)}"


def _secret_matches(secret: str, stored: object) -> bool:
    if not isinstance(stored, str) or stored.count("$") != 3:
        return False
    _, _, salt_b64, _ = stored.split("$")
    try:
        salt = base64.urlsafe_b64decode(salt_b64 + "=" * (-len(salt_b64) % 4))
    except ValueError:
        return False
    return hmac.compare_digest(_secret_digest(secret, salt), stored)


def _attribute_mapper(name: str, attribute: str, claim: str) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "openid-connect",
        "protocolMapper": "oidc-usermodel-attribute-mapper",
        "consentRequired": False,
        "config": {
            "user.attribute": attribute,
            "claim.name": claim,
            "jsonType.label": "String",
            "id.token.claim": "true",
            "access.token.claim": "true",
            "userinfo.token.claim": "true",
            "introspection.token.claim": "true",
        },
    }


def _profile_attribute(name: str, display: str, validations: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "displayName": display,
        "validations": validations,
        # Asserted by the e-ID: the citizen sees them, only the e-ID (through the broker) and an
        # admin write them.
        "permissions": {"view": ["admin", "user"], "edit": ["admin"]},
        "multivalued": False,
        "group": "national-eid",
    }


PROFILE_ATTRIBUTES = (
    _profile_attribute("full_name", "Full name (family name first)", {"length": {"max": 255}}),
    _profile_attribute(
        "personal_id",
        "Personal identification number",
        {
            "pattern": {
                "pattern": "^[0-9]{12}$",
                "error-message": "The personal ID has 12 digits.",
            }
        },
    ),
    _profile_attribute(
        "birthdate",
        "Date of birth",
        {
            "pattern": {
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "error-message": "The date of birth is YYYY-MM-DD.",
            }
        },
    ),
    _profile_attribute("eid_level", "e-ID level", {"options": {"options": ["1", "2"]}}),
)
PROFILE_GROUP = {
    "name": "national-eid",
    "displayHeader": "National e-ID",
    "displayDescription": "Identity data asserted by the national e-ID",
}


def _idp_attribute_mapper(name: str, claim: str, attribute: str) -> dict[str, Any]:
    return {
        "name": name,
        "identityProviderAlias": IDP_ALIAS,
        "identityProviderMapper": "oidc-user-attribute-idp-mapper",
        "config": {"syncMode": "INHERIT", "claim": claim, "user.attribute": attribute},
    }


IDP_MAPPERS = (
    {
        "name": "username from personal_id",
        "identityProviderAlias": IDP_ALIAS,
        "identityProviderMapper": "oidc-username-idp-mapper",
        "config": {"syncMode": "INHERIT", "template": "${CLAIM.personal_id}", "target": "LOCAL"},
    },
    _idp_attribute_mapper("personal_id", "personal_id", "personal_id"),
    _idp_attribute_mapper("birthdate", "birthdate", "birthdate"),
    _idp_attribute_mapper("eid_level", "eid_level", "eid_level"),
    _idp_attribute_mapper("full_name", "name", "full_name"),
)

# The claims Kho reads, in the access token (the portal calls the API with it) and the ID token.
CLAIMS_SCOPE_MAPPERS = (
    _attribute_mapper("personal_id", "personal_id", "personal_id"),
    _attribute_mapper("eid_level", "eid_level", "eid_level"),
    _attribute_mapper("birthdate", "birthdate", "birthdate"),
    _attribute_mapper("name (family name first)", "full_name", "name"),
)
# The built-in "full name" mapper of the `profile` scope writes `name` as "given family", the
# Western order; it would race the scope's mapper for the same claim, so it is removed.
WESTERN_FULL_NAME_MAPPER = "oidc-full-name-mapper"


class KeycloakProvisioner:
    """Creates or updates Kho's realm in Keycloak; running it twice changes nothing."""

    def __init__(
        self,
        server_url: str,
        admin_user: str,
        admin_password: str,
        *,
        realm: str = "kho",
        eid_discovery_url: str,
        eid_client_id: str,
        eid_client_secret: str,
        portal_redirect_uris: Sequence[str],
        api_audience: str = "kho-api",
        admin_realm: str = "master",
        http: httpx.Client | None = None,
    ) -> None:
        if not portal_redirect_uris:
            raise ConfigurationError(detail_en="--redirect-uri: give at least one")
        for uri in portal_redirect_uris:
            parts = urlsplit(uri)
            if "*" in uri or parts.fragment or parts.scheme not in ("https", "http"):
                raise ConfigurationError(
                    detail_en=f"--redirect-uri {uri!r}: an exact http(s) URI, no wildcard or "
                    "fragment"
                )
        self.server_url = server_url.rstrip("/")
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.admin_realm = admin_realm
        self.realm = realm
        self.eid_discovery_url = eid_discovery_url
        self.eid_client_id = eid_client_id
        self.eid_client_secret = eid_client_secret
        self.portal_redirect_uris = list(dict.fromkeys(portal_redirect_uris))
        self.api_audience = api_audience
        self._http = http

    # The e-ID is read before Keycloak is touched: a wrong URL changes nothing.
    def eid_endpoints(self) -> EidEndpoints:
        try:
            if self._http is not None:
                response = self._http.get(self.eid_discovery_url)
            else:
                with httpx.Client(timeout=10, follow_redirects=False) as client:
                    response = client.get(self.eid_discovery_url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError):
            raise ServiceUnavailable(
                detail_en=f"KHO_EID_DISCOVERY_URL: {self.eid_discovery_url} could not be read"
            ) from None
        if not isinstance(document, dict):
            raise ConfigurationError(detail_en="KHO_EID_DISCOVERY_URL: not a discovery document")
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or (
            issuer.rstrip("/") + DISCOVERY_PATH != self.eid_discovery_url
        ):
            raise ConfigurationError(
                detail_en="KHO_EID_DISCOVERY_URL: the document's issuer does not match its URL"
            )
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise ConfigurationError(detail_en="KHO_EID_DISCOVERY_URL: the e-ID lacks PKCE S256")

        def required(name: str) -> str:
            value = document.get(name)
            if not isinstance(value, str) or not value:
                raise ConfigurationError(
                    detail_en=f"KHO_EID_DISCOVERY_URL: the discovery document has no {name}"
                )
            return value

        def optional(name: str) -> str | None:
            value = document.get(name)
            return value if isinstance(value, str) and value else None

        return EidEndpoints(
            issuer=issuer,
            authorization_endpoint=required("authorization_endpoint"),
            token_endpoint=required("token_endpoint"),
            jwks_uri=required("jwks_uri"),
            userinfo_endpoint=optional("userinfo_endpoint"),
            end_session_endpoint=optional("end_session_endpoint"),
        )

    def admin(self) -> KeycloakAdmin:
        from keycloak import KeycloakAdmin  # python-keycloak loads only where it is used

        return KeycloakAdmin(
            server_url=self.server_url,
            username=self.admin_user,
            password=self.admin_password,
            realm_name=self.admin_realm,
            user_realm_name=self.admin_realm,
        )

    def provision(self) -> ProvisionReport:
        eid = self.eid_endpoints()
        admin = self.admin()
        report = ProvisionReport(self.realm)
        self._realm(admin, report)
        admin.change_current_realm(self.realm)
        self._user_profile(admin, report)
        self._identity_provider(admin, eid, report)
        self._identity_provider_mappers(admin, report)
        scope_id = self._claims_scope(admin, report)
        self._profile_scope(admin, report)
        self._portal(admin, scope_id, report)
        self._agency_demo(admin, scope_id, report)
        return report

    # Realm ------------------------------------------------------------------------------------

    def realm_settings(self) -> dict[str, Any]:
        return {
            "realm": self.realm,
            "enabled": True,
            "displayName": "Kho",
            "registrationAllowed": False,
            "loginWithEmailAllowed": False,
            "duplicateEmailsAllowed": False,
            "resetPasswordAllowed": False,
            "editUsernameAllowed": False,
            "rememberMe": False,
            "bruteForceProtected": True,
            "defaultSignatureAlgorithm": KEYCLOAK_ALGORITHMS[0],
            "accessTokenLifespan": 300,
        }

    def _realm(self, admin: KeycloakAdmin, report: ProvisionReport) -> None:
        from keycloak import KeycloakGetError

        desired = self.realm_settings()
        try:
            current = admin.get_realm(self.realm)
        except KeycloakGetError as exc:
            if exc.response_code != 404:
                raise
            admin.create_realm(desired)
            report.add("created", f"realm {self.realm}")
            return
        if _differs(current, desired):
            admin.update_realm(self.realm, desired)
            report.add("updated", f"realm {self.realm}")
        else:
            report.add("unchanged", f"realm {self.realm}")

    def _user_profile(self, admin: KeycloakAdmin, report: ProvisionReport) -> None:
        """Declare the e-ID attributes: Keycloak 26 drops attributes its user profile does not
        declare (the unmanaged-attribute policy is off), so the IdP mappers would write nothing.
        Email is made optional: the e-ID asserts none, and a required one would stop every first
        login at a "review profile" form."""
        current = admin.get_realm_users_profile()
        config = copy.deepcopy(current)
        attributes: list[dict[str, Any]] = config.setdefault("attributes", [])
        by_name = {a.get("name"): a for a in attributes}
        for desired in PROFILE_ATTRIBUTES:
            existing = by_name.get(desired["name"])
            if existing is None:
                attributes.append(copy.deepcopy(desired))
            elif _differs(existing, desired):
                existing.update(copy.deepcopy(desired))
        email = by_name.get("email")
        if email is not None:
            email.pop("required", None)
        groups: list[dict[str, Any]] = config.setdefault("groups", [])
        if not any(g.get("name") == PROFILE_GROUP["name"] for g in groups):
            groups.append(dict(PROFILE_GROUP))
        if config != current:
            admin.update_realm_users_profile(config)
            report.add("updated", "user profile (e-ID attributes)")
        else:
            report.add("unchanged", "user profile (e-ID attributes)")

    # Identity provider -------------------------------------------------------------------------

    def identity_provider(self, eid: EidEndpoints) -> dict[str, Any]:
        config = {
            "issuer": eid.issuer,
            "authorizationUrl": eid.authorization_endpoint,
            "tokenUrl": eid.token_endpoint,
            "jwksUrl": eid.jwks_uri,
            "clientId": self.eid_client_id,
            "clientAuthMethod": "client_secret_post",
            "validateSignature": "true",
            "useJwksUrl": "true",
            "pkceEnabled": "true",
            "pkceMethod": "S256",
            "syncMode": "FORCE",
            "defaultScope": "openid profile",
            "backchannelSupported": "false",
            "sendIdTokenOnLogout": "true",
        }
        if eid.userinfo_endpoint:
            config["userInfoUrl"] = eid.userinfo_endpoint
        if eid.end_session_endpoint:
            config["logoutUrl"] = eid.end_session_endpoint
        return {
            "alias": IDP_ALIAS,
            "displayName": "VNeID",
            "providerId": "oidc",
            "enabled": True,
            # The e-ID asserts no email; an asserted one must not link accounts by itself.
            "trustEmail": False,
            "storeToken": False,
            "linkOnly": False,
            "firstBrokerLoginFlowAlias": "first broker login",
            "config": config,
        }

    def _identity_provider(
        self, admin: KeycloakAdmin, eid: EidEndpoints, report: ProvisionReport
    ) -> None:
        desired = self.identity_provider(eid)
        what = f"identity provider {IDP_ALIAS} ({eid.issuer})"
        current = next((p for p in admin.get_idps() if p.get("alias") == IDP_ALIAS), None)
        if current is None:
            desired["config"]["clientSecret"] = self.eid_client_secret
            desired["config"][_SECRET_DIGEST_KEY] = _secret_digest(self.eid_client_secret)
            admin.create_idp(desired)
            report.add("created", what)
            return
        secret_ok = _secret_matches(
            self.eid_client_secret, current.get("config", {}).get(_SECRET_DIGEST_KEY)
        )
        if not _differs(current, desired) and secret_ok:
            report.add("unchanged", what)
            return
        payload = _merged(current, desired)
        payload["config"]["clientSecret"] = self.eid_client_secret
        payload["config"][_SECRET_DIGEST_KEY] = _secret_digest(self.eid_client_secret)
        admin.update_idp(IDP_ALIAS, payload)
        report.add("updated", what + ("" if secret_ok else ", client secret"))

    def _identity_provider_mappers(self, admin: KeycloakAdmin, report: ProvisionReport) -> None:
        existing = {m.get("name"): m for m in admin.get_idp_mappers(IDP_ALIAS)}
        for desired in IDP_MAPPERS:
            what = f"identity provider mapper {desired['name']}"
            current = existing.get(desired["name"])
            if current is None:
                admin.add_mapper_to_idp(IDP_ALIAS, copy.deepcopy(desired))
                report.add("created", what)
            elif _differs(current, desired):
                admin.update_mapper_in_idp(IDP_ALIAS, current["id"], _merged(current, desired))
                report.add("updated", what)
            else:
                report.add("unchanged", what)

    # Client scopes -----------------------------------------------------------------------------

    def _scope_mappers(
        self,
        admin: KeycloakAdmin,
        scope_id: str,
        desired: Sequence[dict[str, Any]],
        remove: Callable[[dict[str, Any]], bool] = lambda _m: False,
    ) -> bool:
        changed = False
        current = admin.get_mappers_from_client_scope(scope_id)
        for mapper in current:
            if remove(mapper):
                admin.delete_mapper_from_client_scope(scope_id, mapper["id"])
                changed = True
        by_name = {m.get("name"): m for m in current if not remove(m)}
        for mapper in desired:
            existing = by_name.get(mapper["name"])
            if existing is None:
                admin.add_mapper_to_client_scope(scope_id, copy.deepcopy(mapper))
                changed = True
            elif _differs(existing, mapper):
                admin.update_mapper_in_client_scope(
                    scope_id, existing["id"], _merged(existing, mapper)
                )
                changed = True
        return changed

    def _claims_scope(self, admin: KeycloakAdmin, report: ProvisionReport) -> str:
        """The `national-eid` client scope: personal_id, eid_level, birthdate, name."""
        desired = {
            "name": CLAIMS_SCOPE,
            "description": "Claims the national e-ID asserted at login",
            "protocol": "openid-connect",
            "attributes": {
                "include.in.token.scope": "false",
                "display.on.consent.screen": "false",
            },
        }
        what = f"client scope {CLAIMS_SCOPE}"
        current = admin.get_client_scope_by_name(CLAIMS_SCOPE)
        action: Action = "unchanged"
        if current is None:
            scope_id: str = admin.create_client_scope(desired)
            action = "created"
        else:
            scope_id = current["id"]
            if _differs(current, desired):
                admin.update_client_scope(scope_id, _merged(current, desired))
                action = "updated"
        if self._scope_mappers(admin, scope_id, CLAIMS_SCOPE_MAPPERS) and action == "unchanged":
            action = "updated"
        # A default for clients created later too, not only for the two made here.
        defaults = {s.get("id") for s in admin.get_default_default_client_scopes()}
        if scope_id not in defaults:
            admin.add_default_default_client_scope(scope_id)
            if action == "unchanged":
                action = "updated"
        report.add(action, what)
        return scope_id

    def _profile_scope(self, admin: KeycloakAdmin, report: ProvisionReport) -> None:
        scope = admin.get_client_scope_by_name("profile")
        if scope is None:
            return
        removed = self._scope_mappers(
            admin,
            scope["id"],
            (),
            remove=lambda m: m.get("protocolMapper") == WESTERN_FULL_NAME_MAPPER,
        )
        report.add(
            "updated" if removed else "unchanged", "client scope profile (no Western full name)"
        )

    # Clients -----------------------------------------------------------------------------------

    def audience_mapper(self) -> dict[str, Any]:
        return {
            "name": f"audience {self.api_audience}",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "consentRequired": False,
            "config": {
                "included.custom.audience": self.api_audience,
                "access.token.claim": "true",
                "id.token.claim": "false",
                "introspection.token.claim": "true",
            },
        }

    def portal_client(self) -> dict[str, Any]:
        return {
            "clientId": PORTAL_CLIENT,
            "name": "Kho citizen portal",
            "enabled": True,
            "protocol": "openid-connect",
            "publicClient": True,
            "standardFlowEnabled": True,
            "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "serviceAccountsEnabled": False,
            "redirectUris": list(self.portal_redirect_uris),
            "webOrigins": ["+"],
            "fullScopeAllowed": False,
            "attributes": {
                "pkce.code.challenge.method": "S256",
                "post.logout.redirect.uris": "+",
                "oauth2.device.authorization.grant.enabled": "false",
                "oidc.ciba.grant.enabled": "false",
            },
        }

    def agency_demo_client(self) -> dict[str, Any]:
        return {
            "clientId": AGENCY_DEMO_CLIENT,
            "name": "Demo agency (client credentials)",
            "enabled": True,
            "protocol": "openid-connect",
            "publicClient": False,
            "clientAuthenticatorType": "client-secret",
            "standardFlowEnabled": False,
            "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "serviceAccountsEnabled": True,
            "redirectUris": [],
            "webOrigins": [],
            "fullScopeAllowed": False,
        }

    def _portal(self, admin: KeycloakAdmin, scope_id: str, report: ProvisionReport) -> None:
        self._client(admin, self.portal_client(), scope_id, report)

    def _agency_demo(self, admin: KeycloakAdmin, scope_id: str, report: ProvisionReport) -> None:
        self._client(admin, self.agency_demo_client(), None, report)

    def _client(
        self,
        admin: KeycloakAdmin,
        desired: dict[str, Any],
        scope_id: str | None,
        report: ProvisionReport,
    ) -> None:
        what = f"client {desired['clientId']}"
        internal_id = admin.get_client_id(desired["clientId"])
        action: Action = "unchanged"
        if internal_id is None:
            internal_id = admin.create_client(desired)
            action = "created"
        else:
            current = admin.get_client(internal_id)
            if _differs(current, desired):
                admin.update_client(internal_id, _merged(current, desired))
                action = "updated"
        mapper = self.audience_mapper()
        mappers = {m.get("name"): m for m in admin.get_mappers_from_client(internal_id)}
        existing = mappers.get(mapper["name"])
        if existing is None:
            admin.add_mapper_to_client(internal_id, mapper)
            action = "created" if action == "created" else "updated"
        elif _differs(existing, mapper):
            admin.update_client_mapper(internal_id, existing["id"], _merged(existing, mapper))
            action = "created" if action == "created" else "updated"
        if scope_id is not None:
            defaults = {s.get("id") for s in admin.get_client_default_client_scopes(internal_id)}
            if scope_id not in defaults:
                admin.add_client_default_client_scope(
                    internal_id,
                    scope_id,
                    {"realm": self.realm, "client": internal_id, "clientScopeId": scope_id},
                )
                action = "created" if action == "created" else "updated"
        report.add(action, what)
