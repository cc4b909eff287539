"""The declared authorization policy of every route, and what it means for each principal.

``POLICIES`` maps every route of the app (method and path template, as FastAPI registers it) to
one :class:`Policy`. A policy names who may call the route and what everyone else gets back, as
an outcome class per principal. ``tests/assurance/test_authorization_matrix.py`` enumerates the
app's routes at test time and fails when a route has no policy here, or a policy names a route
that is gone; then it sends one minimal valid request per (route, principal) cell and checks the
outcome class. So a new route cannot ship without someone deciding, here, who may call it.

The principals (``Principal``) are built by ``tests/assurance/conftest.py``: every identifier in
a path belongs to owner A or to agency X, so owner B, A's delegates (outside the routes a
delegation opens), agency Y and Y's official are always the wrong party. A's two delegates
(``DELEGATES``) always send ``X-On-Behalf-Of: A``; each holds a delegation from A with the
scopes ``HELD`` names: the delegate every scope, the reader only ``documents:read``. On a route
that asks for a scope (``acting_for``: papers, consents, the access log) a delegate holding it
acts for A and one without it gets 403; on owner-only routes (delete a paper, export, erase the
account) the header is refused with 403 ``owner_only``; elsewhere it is ignored and they are on
their own account.

How to read the outcome of the wrong credential, as the code does it:

* a citizen route (``CurrentOwner``) validates the token and reads its subject as an account:
  agency and operator tokens carry no account, so they get **401**;
* an agency route (``CurrentAgency``) needs the ``kho:agency`` scope: citizen and operator tokens
  get **403**;
* an operator route (``CurrentOperator``) needs ``kho:admin``: every other token gets **403**;
* an official route (``CurrentOfficial``) is a citizen route first (agency and operator tokens:
  **401**), then needs an official post (a citizen who holds none: **403** ``not_an_official``);
* someone else's resource is **404**, never 403, so its existence does not leak;
* pages (``/web``) use their own cookie session: there, each citizen principal comes with a page
  session of their own (cookie and CSRF token); anonymous, agency and operator callers have none
  and send their bearer token, which must open nothing (a page sends them to sign in, a form
  post or an upload is 401).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Principal(StrEnum):
    ANONYMOUS = "anonymous"
    OWNER_A = "owner A"
    OWNER_B = "owner B"
    DELEGATE = "A's delegate"
    READER = "A's reader"
    AGENCY_X = "agency X"
    AGENCY_Y = "agency Y"
    OFFICIAL = "official of X"
    OFFICIAL_Y = "official of Y"
    OPERATOR = "operator"


SHORT: dict[Principal, str] = {
    Principal.ANONYMOUS: "anon",
    Principal.OWNER_A: "A",
    Principal.OWNER_B: "B",
    Principal.DELEGATE: "dlg",
    Principal.READER: "rdr",
    Principal.AGENCY_X: "X",
    Principal.AGENCY_Y: "Y",
    Principal.OFFICIAL: "offX",
    Principal.OFFICIAL_Y: "offY",
    Principal.OPERATOR: "op",
}

CITIZENS = (
    Principal.OWNER_A,
    Principal.OWNER_B,
    Principal.DELEGATE,
    Principal.READER,
    Principal.OFFICIAL,
    Principal.OFFICIAL_Y,
)
AGENCIES = (Principal.AGENCY_X, Principal.AGENCY_Y)

# The delegation scopes (``identity.schemas.DelegationScope``), and what each of A's delegates
# holds from A: ``conftest.build_world`` gives them exactly these, and the matrix checks that it
# did before it runs.
DOCUMENTS_READ = "documents:read"
DOCUMENTS_WRITE = "documents:write"
CONSENTS_DECIDE = "consents:decide"
ACCESS_LOG_READ = "access_log:read"
SCOPES = (DOCUMENTS_READ, DOCUMENTS_WRITE, CONSENTS_DECIDE, ACCESS_LOG_READ)
HELD: dict[Principal, frozenset[str]] = {
    Principal.DELEGATE: frozenset(SCOPES),
    Principal.READER: frozenset({DOCUMENTS_READ}),
}
DELEGATES = tuple(HELD)


class Outcome(StrEnum):
    OK = "ok"  # 2xx, or a 3xx that is not a sign-in redirect
    SIGN_IN = "login"  # a page's 303 to /web/login
    REFUSED = "400"  # 400 or 422: refused on the request's own merits, not on who asks
    UNAUTHENTICATED = "401"
    FORBIDDEN = "403"
    NOT_FOUND = "404"


def classify(status: int, location: str | None = None) -> str:
    """The outcome class of a response; any other status is returned as its number."""
    if 200 <= status < 300:
        return Outcome.OK
    if 300 <= status < 400:
        if location is not None and location.startswith("/web/login"):
            return Outcome.SIGN_IN
        return Outcome.OK
    if status in (400, 422):
        return Outcome.REFUSED
    if status == 401:
        return Outcome.UNAUTHENTICATED
    if status == 403:
        return Outcome.FORBIDDEN
    if status == 404:
        return Outcome.NOT_FOUND
    return str(status)


@dataclass(frozen=True)
class Policy:
    name: str
    rule: str
    expected: Mapping[Principal, Outcome]

    def __post_init__(self) -> None:
        missing = set(Principal) - set(self.expected)
        assert not missing, f"policy {self.name} says nothing about {sorted(missing)}"


_OK, _401, _403, _404 = Outcome.OK, Outcome.UNAUTHENTICATED, Outcome.FORBIDDEN, Outcome.NOT_FOUND


def _everyone(outcome: Outcome) -> dict[Principal, Outcome]:
    return dict.fromkeys(Principal, outcome)


def _citizens(outcome: Outcome) -> dict[str, Outcome]:
    """Every citizen principal (the ``**allowed`` of the helpers below) with ``outcome``."""
    return {principal.name: outcome for principal in CITIZENS}


def _delegated(scope: str | None) -> dict[str, Outcome]:
    """What A's delegates, who send ``X-On-Behalf-Of: A``, get on a route that reads that header:
    ok where they hold ``scope``, else 403 (no delegation of that scope from A). ``None``: an
    owner-only route, where the header itself is refused (403 ``owner_only``)."""
    assert scope is None or scope in SCOPES, scope
    return {p.name: _OK if scope in HELD[p] else _403 for p in DELEGATES}


def _citizen_route(**allowed: Outcome) -> dict[Principal, Outcome]:
    """A ``CurrentOwner`` route: anonymous, agency and operator tokens get 401."""
    cells = _everyone(_401)
    for principal in CITIZENS:
        cells[principal] = _404
    cells.update({Principal[k]: v for k, v in allowed.items()})
    return cells


def _agency_route(**allowed: Outcome) -> dict[Principal, Outcome]:
    """A ``CurrentAgency`` route: anonymous 401; citizen and operator tokens 403."""
    cells = _everyone(_403)
    cells[Principal.ANONYMOUS] = _401
    cells.update({Principal[k]: v for k, v in allowed.items()})
    return cells


def _official_route(**allowed: Outcome) -> dict[Principal, Outcome]:
    """A ``CurrentOfficial`` route: a citizen route first, then an official post."""
    cells = _everyone(_401)
    for principal in CITIZENS:
        cells[principal] = _403
    cells.update({Principal[k]: v for k, v in allowed.items()})
    return cells


PUBLIC = Policy("PUBLIC", "anyone, signed in or not, gets the same answer", _everyone(_OK))
PROTOCOL = Policy(
    "PROTOCOL",
    "an OAuth/OpenID endpoint: the request carries its own client authentication or "
    "authorization state; the caller's bearer token plays no part",
    _everyone(_OK),
)
SELF = Policy(
    "SELF",
    "any signed-in citizen, on their own account (the query is scoped to the caller; "
    "X-On-Behalf-Of plays no part)",
    _citizen_route(**_citizens(_OK)),
)
SELF_ONLY = Policy(
    "SELF_ONLY",
    "any signed-in citizen on their own account; never delegated (destructive or bulk): a "
    "request with X-On-Behalf-Of gets 403 owner_only",
    _citizen_route(**{**_citizens(_OK), **_delegated(None)}),
)


def self_or_delegate(scope: str) -> Policy:
    """``api.deps.acting_for(scope)`` on an account-wide route: the caller's own account, or
    the owner named in X-On-Behalf-Of when the caller holds an active delegation of ``scope``
    from them (else 403, whether or not that owner exists)."""
    return Policy(
        f"SELF_OR_DELEGATE({scope})",
        "any signed-in citizen on their own account, or a delegate with "
        f"{scope} acting for the owner named in X-On-Behalf-Of (without such a delegation: 403)",
        _citizen_route(**{**_citizens(_OK), **_delegated(scope)}),
    )


def owner_or_delegate(scope: str) -> Policy:
    """``api.deps.acting_for(scope)`` on a resource of A."""
    return Policy(
        f"OWNER_OR_DELEGATE({scope})",
        f"the owner (A), or A's delegate with {scope} and X-On-Behalf-Of: A; others 404 "
        "(a delegate without that scope: 403)",
        _citizen_route(OWNER_A=_OK, **_delegated(scope)),
    )


OWNER = Policy(
    "OWNER",
    "the owner of the resource (A); another citizen gets 404 (X-On-Behalf-Of plays no part)",
    _citizen_route(OWNER_A=_OK),
)
OWNER_ONLY = Policy(
    "OWNER_ONLY",
    "the owner of the resource (A); another citizen gets 404; never delegated (destructive): "
    "a request with X-On-Behalf-Of gets 403 owner_only",
    _citizen_route(OWNER_A=_OK, **_delegated(None)),
)
# The delegation in the path is the one A gave the delegate (the reader, holding another one
# from A, is not a party to it).
DELEGATION_PARTY = Policy(
    "DELEGATION_PARTY",
    "either party of the delegation: the owner who gave it (A) or the delegate who received "
    "it; others 404 (another delegate of A's included)",
    _citizen_route(OWNER_A=_OK, DELEGATE=_OK),
)
AGENCY = Policy(
    "AGENCY",
    "the agency that owns the request, grant or slot (X); another agency gets 404",
    _agency_route(AGENCY_X=_OK, AGENCY_Y=_404),
)
ANY_AGENCY = Policy(
    "ANY_AGENCY",
    "any agency back-end (a kho:agency client bound to an active agency)",
    _agency_route(AGENCY_X=_OK, AGENCY_Y=_OK),
)
ISSUING_AGENCY = Policy(
    "ISSUING_AGENCY",
    "an agency holding issuing rights for the type and a registered signing key (X); "
    "another agency gets 403 (not_allowed_to_issue)",
    _agency_route(AGENCY_X=_OK, AGENCY_Y=_403),
)


def official(role: str, *, of_resource: bool) -> Policy:
    """An official route. ``of_resource``: the path names a resource of X (Y's official: 404);
    otherwise any official holding ``role`` may act (for their own agency)."""
    if of_resource:
        holding = "whatever their role" if role == "any" else f"holding the {role} role"
        return Policy(
            f"OFFICIAL_OF_X({role})",
            f"an official of the agency that owns the resource (X), {holding}; an official of "
            "another agency gets 404",
            _official_route(OFFICIAL=_OK, OFFICIAL_Y=_404),
        )
    return Policy(
        f"OFFICIAL({role})",
        f"any official holding the {role} role, acting for their own agency",
        _official_route(OFFICIAL=_OK, OFFICIAL_Y=_OK),
    )


STATUTORY_REQUESTER = Policy(
    "STATUTORY_REQUESTER",
    "the official of X who asked for the statutory access, while holding a processing role "
    "(another official of X gets 403 not_the_requesting_official); an official of another "
    "agency gets 404",
    _official_route(OFFICIAL=_OK, OFFICIAL_Y=_404),
)
OPERATOR = Policy(
    "OPERATOR",
    "a token with the kho:admin scope; any other token 403",
    {**_everyone(_403), Principal.ANONYMOUS: _401, Principal.OPERATOR: _OK},
)
DEV_ONLY = Policy(
    "DEV_ONLY",
    "the development e-ID simulator: mounted only when the simulator is on outside production; "
    "public there",
    _everyone(_OK),
)
DEV_ONLY_REFUSED = Policy(
    "DEV_ONLY_TOKEN",
    "the development e-ID simulator's token endpoint: only Kho itself holds a valid code and "
    "client secret, so every caller's request is refused on its merits (400)",
    _everyone(Outcome.REFUSED),
)
WEB_PUBLIC = Policy("WEB_PUBLIC", "a page anyone may open", _everyone(_OK))


def _page(signed_in: Outcome, **allowed: Outcome) -> dict[Principal, Outcome]:
    """A page: citizens come with their own page session; anonymous, agency and operator
    callers have none (their bearer tokens are sent and must count for nothing)."""
    cells = _everyone(signed_in)
    cells.update({Principal[k]: v for k, v in allowed.items()})
    return cells


_LOGIN = Outcome.SIGN_IN
# Pages have no on-behalf-of: a delegate's page session is their own, as B's is.
_ALL_CITIZENS_OK = _citizens(_OK)
_OWNER_PAGE = {**_citizens(_404), "OWNER_A": _OK}
_PARTY_PAGE = {**_OWNER_PAGE, "DELEGATE": _OK}  # the delegation A gave the delegate
_DESK_PAGE = {**_citizens(_403), "OFFICIAL": _OK, "OFFICIAL_Y": _OK}

WEB_SELF = Policy(
    "WEB_SELF",
    "a page of the signed-in citizen's own account (page session); without one: sign in",
    _page(_LOGIN, **_ALL_CITIZENS_OK),
)
WEB_OWNER = Policy(
    "WEB_OWNER",
    "a page of the owner's paper or request (A's page session); another citizen's session 404; "
    "without one: sign in",
    _page(_LOGIN, **_OWNER_PAGE),
)
WEB_DESK = Policy(
    "WEB_DESK",
    "a desk page: a page session of an official (any agency, for their own); a citizen who is "
    "no official 403; without a session: sign in",
    _page(_LOGIN, **_DESK_PAGE),
)
WEB_SELF_FORM = Policy(
    "WEB_SELF_FORM",
    "a form post (page session, same origin, CSRF token) on the citizen's own account; "
    "without a session 401",
    _page(_401, **_ALL_CITIZENS_OK),
)
WEB_OWNER_FORM = Policy(
    "WEB_OWNER_FORM",
    "a form post on the owner's paper, request or grant (A's session and CSRF token); another "
    "citizen's session 404; without a session 401",
    _page(_401, **_OWNER_PAGE),
)
WEB_PARTY_FORM = Policy(
    "WEB_PARTY_FORM",
    "a form post on a delegation by either party (A who gave it, the delegate who holds it); "
    "others 404; without a session 401",
    _page(_401, **_PARTY_PAGE),
)
WEB_DESK_FORM = Policy(
    "WEB_DESK_FORM",
    "a desk upload (form post or the page's JavaScript PUT) by an official with the "
    "receptionist role; a citizen who is no official 403; without a session 401",
    _page(_401, **_DESK_PAGE),
)
WEB_SELF_UPLOAD = Policy(
    "WEB_SELF_UPLOAD",
    "the page's JavaScript upload of a new paper (session, X-CSRF-Token header); without a "
    "session 401",
    _page(_401, **_ALL_CITIZENS_OK),
)
WEB_OWNER_UPLOAD = Policy(
    "WEB_OWNER_UPLOAD",
    "the page's JavaScript upload of a new version of the owner's paper; another citizen 404; "
    "without a session 401",
    _page(_401, **_OWNER_PAGE),
)
WEB_NOT_FOUND = Policy("WEB_NOT_FOUND", "any other /web path: 404 for everyone", _everyone(_404))


Route = tuple[str, str]

POLICIES: dict[Route, Policy] = {
    # operations and published metadata
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("GET", "/.well-known/openid-configuration"): PUBLIC,
    # the OpenID provider
    ("GET", "/oauth2/authorize"): PROTOCOL,
    ("POST", "/oauth2/authorize"): PROTOCOL,
    ("GET", "/oauth2/eid/callback"): PROTOCOL,
    ("POST", "/oauth2/token"): PROTOCOL,
    ("POST", "/oauth2/introspect"): PROTOCOL,
    ("POST", "/oauth2/revoke"): PROTOCOL,
    ("GET", "/oauth2/userinfo"): SELF,
    ("POST", "/oauth2/userinfo"): SELF,
    ("GET", "/oauth2/logout"): PROTOCOL,
    ("POST", "/oauth2/logout"): PROTOCOL,
    # the owner's account and store
    ("GET", "/v1/me"): SELF,
    ("DELETE", "/v1/me"): SELF_ONLY,
    ("GET", "/v1/document-types"): PUBLIC,
    ("GET", "/v1/documents"): self_or_delegate("documents:read"),
    ("POST", "/v1/documents"): self_or_delegate("documents:write"),
    ("GET", "/v1/documents/{document_id}"): owner_or_delegate("documents:read"),
    ("GET", "/v1/documents/{document_id}/versions"): owner_or_delegate("documents:read"),
    ("PUT", "/v1/documents/{document_id}/content"): owner_or_delegate("documents:write"),
    ("GET", "/v1/documents/{document_id}/content"): owner_or_delegate("documents:read"),
    ("DELETE", "/v1/documents/{document_id}"): OWNER_ONLY,
    ("GET", "/v1/documents/{document_id}/provenance"): OWNER,
    ("GET", "/v1/export"): SELF_ONLY,
    ("GET", "/v1/procedures/{code}/reuse-plan"): SELF,
    ("GET", "/v1/access-log"): self_or_delegate("access_log:read"),
    ("GET", "/v1/access-log/proof"): self_or_delegate("access_log:read"),
    ("GET", "/v1/statutory-access"): SELF,
    ("GET", "/v1/notifications"): SELF,
    ("POST", "/v1/notifications/{notification_id}/read"): OWNER,
    # consent, owner side
    ("GET", "/v1/consents"): self_or_delegate("consents:decide"),
    ("GET", "/v1/consents/{request_id}"): owner_or_delegate("consents:decide"),
    ("POST", "/v1/consents/{request_id}/decision"): owner_or_delegate("consents:decide"),
    ("GET", "/v1/grants/{grant_id}"): owner_or_delegate("consents:decide"),
    ("POST", "/v1/grants/{grant_id}/revoke"): owner_or_delegate("consents:decide"),
    ("GET", "/v1/grants/{grant_id}/receipt"): owner_or_delegate("consents:decide"),
    # delegations
    ("GET", "/v1/delegations"): SELF,
    ("POST", "/v1/delegations"): SELF,
    ("GET", "/v1/delegations/{delegation_id}"): DELEGATION_PARTY,
    ("POST", "/v1/delegations/{delegation_id}/revoke"): DELEGATION_PARTY,
    # agencies
    ("POST", "/v1/agency/consent-requests"): ANY_AGENCY,
    ("GET", "/v1/agency/consent-requests/{request_id}"): AGENCY,
    ("GET", "/v1/agency/grants/{grant_id}/documents"): AGENCY,
    ("GET", "/v1/agency/grants/{grant_id}/documents/{document_id}/content"): AGENCY,
    ("GET", "/v1/agency/owners/{personal_id}/reuse-plan"): AGENCY,
    ("POST", "/v1/agency/issued-documents"): ISSUING_AGENCY,
    ("PUT", "/v1/agency/issued-documents/{document_id}/content"): AGENCY,
    ("POST", "/v1/agency/issued-documents/{document_id}/revoke"): AGENCY,
    ("POST", "/v1/agency/document-requests"): ANY_AGENCY,
    # officials
    ("POST", "/v1/agency/statutory-access"): official("processor", of_resource=False),
    ("GET", "/v1/agency/statutory-access/{access_id}"): official("any", of_resource=True),
    ("POST", "/v1/agency/statutory-access/{access_id}/approval"): official(
        "approver", of_resource=True
    ),
    (
        "GET",
        "/v1/agency/statutory-access/{access_id}/documents/{document_id}/content",
    ): STATUTORY_REQUESTER,
    ("POST", "/v1/agency/desk/documents"): official("receptionist", of_resource=False),
    ("PUT", "/v1/agency/desk/documents/{document_id}/content"): official("any", of_resource=True),
    # public checks and the catalogue
    ("GET", "/v1/verify"): PUBLIC,
    ("GET", "/v1/catalogue/document-types"): PUBLIC,
    ("GET", "/v1/catalogue/procedures"): PUBLIC,
    ("GET", "/v1/catalogue/procedures/{code}"): PUBLIC,
    # operators
    ("PUT", "/v1/admin/agencies/{agency_id}/issuing-rights"): OPERATOR,
    ("POST", "/v1/admin/agencies/{agency_id}/signing-keys"): OPERATOR,
    ("GET", "/v1/admin/reports/re-requests"): OPERATOR,
    ("POST", "/v1/admin/access-log/checkpoints"): OPERATOR,
    ("GET", "/v1/admin/access-log/verify"): OPERATOR,
    ("PUT", "/v1/admin/catalogue/document-types/{code}"): OPERATOR,
    ("PUT", "/v1/admin/catalogue/procedures/{code}"): OPERATOR,
    ("POST", "/v1/admin/catalogue/import"): OPERATOR,
    ("GET", "/v1/admin/catalogue/export"): OPERATOR,
    ("GET", "/v1/admin/catalogue/versions"): OPERATOR,
    ("GET", "/v1/admin/statistics/reuse"): OPERATOR,
    ("POST", "/v1/admin/agencies"): OPERATOR,
    ("GET", "/v1/admin/agencies"): OPERATOR,
    ("GET", "/v1/admin/agencies/{agency_id}"): OPERATOR,
    ("PATCH", "/v1/admin/agencies/{agency_id}"): OPERATOR,
    ("POST", "/v1/admin/agencies/{agency_id}/officials"): OPERATOR,
    ("GET", "/v1/admin/agencies/{agency_id}/officials"): OPERATOR,
    ("PATCH", "/v1/admin/agencies/{agency_id}/officials/{official_id}"): OPERATOR,
    ("PUT", "/v1/admin/agencies/{agency_id}/webhook"): OPERATOR,
    ("POST", "/v1/admin/organisations"): OPERATOR,
    ("GET", "/v1/admin/organisations/{organisation_id}"): OPERATOR,
    ("POST", "/v1/admin/organisations/{organisation_id}/representatives"): OPERATOR,
    (
        "POST",
        "/v1/admin/organisations/{organisation_id}/representatives/{representative_id}/revoke",
    ): OPERATOR,
    ("GET", "/v1/admin/clients"): OPERATOR,
    ("PUT", "/v1/admin/clients/{client_id}"): OPERATOR,
    ("POST", "/v1/admin/clients/{client_id}/deactivate"): OPERATOR,
    ("POST", "/v1/admin/keys/signing/rotate"): OPERATOR,
    # the pages (cookie sessions; see WEB_* above)
    ("GET", "/web"): WEB_PUBLIC,
    ("GET", "/web/"): WEB_PUBLIC,
    ("GET", "/web/login"): WEB_PUBLIC,
    ("GET", "/web/callback"): WEB_PUBLIC,
    ("GET", "/web/static/{name}"): WEB_PUBLIC,
    ("GET", "/web/documents"): WEB_PUBLIC,  # a redirect to /web/store, which then asks
    ("POST", "/web/logout"): WEB_SELF_FORM,
    ("GET", "/web/store"): WEB_SELF,
    ("GET", "/web/consents"): WEB_SELF,
    ("GET", "/web/access-log"): WEB_SELF,
    ("GET", "/web/delegations"): WEB_SELF,
    ("GET", "/web/notifications"): WEB_SELF,
    ("GET", "/web/account"): WEB_SELF,
    ("GET", "/web/documents/{document_id}"): WEB_OWNER,
    ("GET", "/web/documents/{document_id}/content"): WEB_OWNER,
    ("GET", "/web/documents/{document_id}/delete"): WEB_OWNER,
    ("GET", "/web/consents/{request_id}"): WEB_OWNER,
    ("GET", "/web/desk"): WEB_DESK,
    ("GET", "/web/desk/requests"): WEB_DESK,
    ("POST", "/web/documents"): WEB_SELF_FORM,
    ("POST", "/web/delegations"): WEB_SELF_FORM,
    ("POST", "/web/account/export"): WEB_SELF_FORM,
    ("POST", "/web/account/erase"): WEB_SELF_FORM,
    ("POST", "/web/documents/{document_id}/versions"): WEB_OWNER_FORM,
    ("POST", "/web/documents/{document_id}/delete"): WEB_OWNER_FORM,
    ("POST", "/web/consents/{request_id}/decision"): WEB_OWNER_FORM,
    ("POST", "/web/grants/{grant_id}/revoke"): WEB_OWNER_FORM,
    ("POST", "/web/notifications/{notification_id}/read"): WEB_OWNER_FORM,
    ("POST", "/web/delegations/{delegation_id}/revoke"): WEB_PARTY_FORM,
    ("POST", "/web/desk"): WEB_DESK_FORM,
    ("PUT", "/web/desk"): WEB_DESK_FORM,
    ("PUT", "/web/documents"): WEB_SELF_UPLOAD,
    ("PUT", "/web/documents/{document_id}/content"): WEB_OWNER_UPLOAD,
    ("GET", "/web/{rest:path}"): WEB_NOT_FOUND,
    ("POST", "/web/{rest:path}"): WEB_NOT_FOUND,
    ("PUT", "/web/{rest:path}"): WEB_NOT_FOUND,
    ("DELETE", "/web/{rest:path}"): WEB_NOT_FOUND,
    # the development e-ID simulator (embedded default only)
    ("GET", "/dev/eid/.well-known/openid-configuration"): DEV_ONLY,
    ("GET", "/dev/eid/jwks"): DEV_ONLY,
    ("GET", "/dev/eid/authorize"): DEV_ONLY,
    ("POST", "/dev/eid/authorize"): DEV_ONLY,
    ("POST", "/dev/eid/token"): DEV_ONLY_REFUSED,
}


# Cells where the app is known to differ from its declared policy, with the outcome it gives and
# why. Such a cell passes while it keeps that outcome and shows as ``got*`` in the table; once it
# matches the policy the test fails until the entry is removed, so a fix cannot go unnoticed.
KNOWN: dict[tuple[Route, Principal], tuple[Outcome, str]] = {}
