"""The authorization matrix: every route of the app times every principal, each cell asserted.

The routes are enumerated from the app at test time. A route without a declared policy in
``tests/assurance/policies.py`` fails, and so does a policy (or a request recipe here) for a
route that no longer exists. Then, on a world built once per backend (``conftest.World``), one
minimal valid request per route is sent as each principal and the response's outcome class
(ok, 401, 403, 404, ...) is compared with the policy. Cells that change what they touch make
their own fresh resources; they run after the read-only cells, and erasing accounts runs last.

On failure the whole matrix is printed, mismatches marked ``got≠expected``. To regenerate the
table in ``docs/assurance/authorization.md``::

    KHO_WRITE_MATRIX=1 .venv/bin/pytest tests/assurance/test_authorization_matrix.py \
        -k sqlite-local
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from tests.assurance.conftest import (
    PROCEDURE,
    SAMPLE_CITIZEN,
    WEB_COOKIE,
    World,
    expect,
    tiny_pdf,
    valid_tax_code,
)
from tests.assurance.policies import (
    HELD,
    KNOWN,
    POLICIES,
    SHORT,
    Outcome,
    Policy,
    Principal,
    Route,
    classify,
)
from tests.conftest import Owner

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "assurance" / "authorization.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"

# Phases: read-only cells first, then cells that make and consume their own resources, then
# the signing-key rotation, then account erasure (which ends the world's citizens).
READ, WRITE, ROTATE, ERASE = 0, 1, 2, 3


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    content: bytes | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)


Build = Callable[[World, Principal], Call]


@dataclass(frozen=True)
class Case:
    phase: int
    build: Build
    # For a cell that changes something: when the cell was refused, check that nothing changed
    # (given the path that was called). A refusal that still deletes or revokes is a failure.
    untouched: Callable[[World, str], str | None] | None = None


def app_routes(app: FastAPI) -> set[Route]:
    """Every (method, path template) the app serves through an APIRoute, included routers and
    routes hidden from the OpenAPI document alike."""
    found: set[Route] = set()
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue  # Starlette's own routes: /openapi.json and the docs pages
        assert context.path is not None
        for method in context.methods or ():
            found.add((method, context.path))
    return found


def principal_headers(world: World, principal: Principal) -> dict[str, str]:
    env = world.env
    match principal:
        case Principal.ANONYMOUS:
            return {}
        case Principal.OWNER_A:
            return env.headers(world.owner_a)
        case Principal.OWNER_B:
            return env.headers(world.owner_b)
        case Principal.DELEGATE:
            return env.headers(world.delegate, **{"X-On-Behalf-Of": str(world.owner_a.account_id)})
        case Principal.READER:
            return env.headers(world.reader, **{"X-On-Behalf-Of": str(world.owner_a.account_id)})
        case Principal.AGENCY_X:
            return world.x.headers()
        case Principal.AGENCY_Y:
            return world.y.headers()
        case Principal.OFFICIAL:
            return world.as_official(world.official, world.x)
        case Principal.OFFICIAL_Y:
            return world.as_official(world.official_y, world.y)
        case Principal.OPERATOR:
            return env.operator_headers()


# -- request recipes ----------------------------------------------------------------------------


def get(
    path: Callable[[World], str], params: Callable[[World], dict[str, str]] | None = None
) -> Case:
    return Case(READ, lambda w, _p: Call("GET", path(w), params=params(w) if params else None))


def static(method: str, path: str, phase: int = READ, **fields: Any) -> Case:
    return Case(phase, lambda _w, _p: Call(method, path, **fields))


def _later(world: World, days: int) -> str:
    return (world.now() + dt.timedelta(days=days)).isoformat()


def _consent_request_body(world: World) -> dict[str, Any]:
    return {
        "subject_personal_id": world.owner_a.personal_id,
        "purpose": "Giải quyết thủ tục đăng ký thường trú",
        "procedure_code": PROCEDURE,
        "items": [{"document_type": "birth_certificate"}],
        "retention_days": 30,
    }


def _statutory_body(world: World) -> dict[str, Any]:
    return {
        "subject_personal_id": world.owner_a.personal_id,
        "legal_reference": "Điều 11.3 Quyết định 55/2024/QĐ-UBND",
        "purpose": "Xác minh theo yêu cầu của cơ quan điều tra",
        "document_ids": [world.doc_a],
    }


def _issued_upload(world: World, _p: Principal) -> Call:
    document_id, data = world.fresh_issued_slot()
    return Call("PUT", f"/v1/agency/issued-documents/{document_id}/content", content=data)


def _import_current(world: World, _p: Principal) -> Call:
    current = expect(world.client.get("/v1/admin/catalogue/export", headers=world.ops()), 200)
    return Call("POST", "/v1/admin/catalogue/import", json=current.json())


def _new_agency(world: World, _p: Principal) -> Call:
    return Call(
        "POST",
        "/v1/admin/agencies",
        json={"code": f"MATRIX-N{world.serial()}", "name_vi": "Cơ quan mới", "level": "province"},
    )


def person_of(world: World, principal: Principal) -> Owner | None:
    """The citizen behind a principal, for the pages; None for those who have no page session."""
    return {
        Principal.OWNER_A: world.owner_a,
        Principal.OWNER_B: world.owner_b,
        Principal.DELEGATE: world.delegate,
        Principal.READER: world.reader,
        Principal.OFFICIAL: world.official,
        Principal.OFFICIAL_Y: world.official_y,
    }.get(principal)


def page_headers(world: World, principal: Principal) -> dict[str, str]:
    """On a page: the principal's page session, or (no citizen) their bearer token."""
    person = person_of(world, principal)
    if person is None:
        return principal_headers(world, principal)
    secret, _csrf = world.page_session(person)
    return {"Cookie": f"{WEB_COOKIE}={secret}"}


def csrf(world: World, principal: Principal) -> str:
    person = person_of(world, principal)
    return world.page_session(person)[1] if person is not None else "no-session"


def _desk_fields(world: World) -> dict[str, str]:
    return {
        "personal_id": world.owner_a.personal_id,
        "type_code": "marriage_certificate",
        "title": "Đăng ký kết hôn (quầy)",
    }


def _web_logout(world: World, principal: Principal) -> Call:
    """Signing out ends the session: a fresh one of the principal's, not the shared one."""
    person = person_of(world, principal)
    if person is None:
        return Call("POST", "/web/logout", data={"csrf": "no-session"})
    secret, token = world.page_session(person, fresh=True)
    world.page_sessions.pop(person.account_id)
    return Call(
        "POST",
        "/web/logout",
        data={"csrf": token},
        headers={"Cookie": f"{WEB_COOKIE}={secret}"},
    )


def _web_erase(world: World, principal: Principal) -> Call:
    """Erasure ends the account: each citizen principal erases a stand-in of the same kind."""
    stand_ins: dict[Principal, Callable[[], Owner]] = {
        Principal.OFFICIAL: lambda: world.fresh_official_person(world.x),
        Principal.OFFICIAL_Y: lambda: world.fresh_official_person(world.y),
    }
    stand_in = stand_ins.get(principal, world.fresh_citizen)
    if person_of(world, principal) is None:
        return Call("POST", "/web/account/erase", data={"csrf": "no-session", "confirm": "XOÁ"})
    person = stand_in()
    secret, token = world.page_session(person)
    return Call(
        "POST",
        "/web/account/erase",
        data={"csrf": token, "confirm": "XOÁ"},
        headers={"Cookie": f"{WEB_COOKIE}={secret}"},
    )


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _owner_view(world: World, path: str) -> dict[str, Any]:
    response = world.client.get(path, headers=world.as_owner(world.owner_a))
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    body: dict[str, Any] = response.json()
    return body


def document_kept(world: World, path: str) -> str | None:
    document_id = _UUID.findall(path)[0]
    response = world.client.get(
        f"/v1/documents/{document_id}", headers=world.as_owner(world.owner_a)
    )
    return None if response.status_code == 200 else f"document {document_id} is gone"


def no_new_version(world: World, path: str) -> str | None:
    document_id = _UUID.findall(path)[0]
    versions = _owner_view(world, f"/v1/documents/{document_id}/versions")["items"]
    return f"document {document_id} has {len(versions)} versions" if versions else None


def grant_active(world: World, path: str) -> str | None:
    grant = _owner_view(world, f"/v1/grants/{_UUID.findall(path)[0]}")
    return None if grant["status"] == "active" else f"grant is {grant['status']}"


def request_pending(world: World, path: str) -> str | None:
    summary = _owner_view(world, f"/v1/consents/{_UUID.findall(path)[0]}")
    status = summary["request"]["status"]
    return None if status == "pending" else f"request is {status}"


def delegation_live(world: World, path: str) -> str | None:
    delegation = _owner_view(world, f"/v1/delegations/{_UUID.findall(path)[0]}")
    return None if delegation["revoked_at"] is None else "delegation was revoked"


def access_awaiting(world: World, path: str) -> str | None:
    response = world.client.get(
        f"/v1/agency/statutory-access/{_UUID.findall(path)[0]}",
        headers=world.as_official(world.second_official, world.x),
    )
    status = response.json()["status"]
    return None if status == "awaiting_approval" else f"access is {status}"


def issued_valid(world: World, path: str) -> str | None:
    document_id = _UUID.findall(path)[0]
    provenance = _owner_view(world, f"/v1/documents/{document_id}/provenance")
    latest = provenance[max(provenance, key=int)]
    return "issued paper was revoked" if latest.get("revoked") else None


def _web_callback(world: World, _p: Principal) -> Call:
    path, headers = world.fresh_web_callback()
    return Call("GET", path, headers=headers)


def _new_client(world: World, _p: Principal) -> Call:
    client_id = f"matrix-put-{world.serial()}-{secrets.token_hex(3)}"
    return Call("PUT", f"/v1/admin/clients/{client_id}", json=world.client_body(client_id))


def A(world: World) -> str:  # noqa: N802 - reads as "owner A's document" in the table below
    return world.doc_a


CASES: dict[Route, Case] = {
    # operations and published metadata
    ("GET", "/healthz"): static("GET", "/healthz"),
    ("GET", "/readyz"): static("GET", "/readyz"),
    ("GET", "/metrics"): static("GET", "/metrics"),
    ("GET", "/.well-known/jwks.json"): static("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/openid-configuration"): static(
        "GET", "/.well-known/openid-configuration"
    ),
    # the OpenID provider
    ("GET", "/oauth2/authorize"): Case(
        READ, lambda w, _p: Call("GET", "/oauth2/authorize", params=w.authorize_params())
    ),
    ("POST", "/oauth2/authorize"): Case(
        READ, lambda w, _p: Call("POST", "/oauth2/authorize", data=w.authorize_params())
    ),
    ("GET", "/oauth2/eid/callback"): Case(WRITE, lambda w, _p: Call("GET", w.fresh_eid_callback())),
    ("POST", "/oauth2/token"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            "/oauth2/token",
            data=w.oauth_form(grant_type="client_credentials", scope="kho:agency"),
        ),
    ),
    ("POST", "/oauth2/introspect"): Case(
        READ,
        lambda w, _p: Call(
            "POST", "/oauth2/introspect", data=w.oauth_form(token=w.fresh_client_token())
        ),
    ),
    ("POST", "/oauth2/revoke"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST", "/oauth2/revoke", data=w.oauth_form(token=w.fresh_client_token())
        ),
    ),
    ("GET", "/oauth2/userinfo"): static("GET", "/oauth2/userinfo"),
    ("POST", "/oauth2/userinfo"): static("POST", "/oauth2/userinfo"),
    ("GET", "/oauth2/logout"): Case(
        READ,
        lambda w, _p: Call(
            "GET",
            "/oauth2/logout",
            params={"client_id": "kho-demo-portal", "post_logout_redirect_uri": w.public_root()},
        ),
    ),
    ("POST", "/oauth2/logout"): Case(
        READ,
        lambda w, _p: Call(
            "POST",
            "/oauth2/logout",
            data={"client_id": "kho-demo-portal", "post_logout_redirect_uri": w.public_root()},
        ),
    ),
    # the owner's account and store
    ("GET", "/v1/me"): static("GET", "/v1/me"),
    ("DELETE", "/v1/me"): static("DELETE", "/v1/me", ERASE),
    ("GET", "/v1/document-types"): static("GET", "/v1/document-types"),
    ("GET", "/v1/documents"): static("GET", "/v1/documents"),
    ("POST", "/v1/documents"): static(
        "POST", "/v1/documents", WRITE, json={"type_code": "cccd", "title": "Căn cước"}
    ),
    ("GET", "/v1/documents/{document_id}"): get(lambda w: f"/v1/documents/{A(w)}"),
    ("GET", "/v1/documents/{document_id}/versions"): get(
        lambda w: f"/v1/documents/{A(w)}/versions"
    ),
    ("PUT", "/v1/documents/{document_id}/content"): Case(
        WRITE,
        lambda w, _p: Call(
            "PUT",
            f"/v1/documents/{w.fresh_document(content=False)}/content",
            content=tiny_pdf(secrets.token_hex(8)),
        ),
        no_new_version,
    ),
    ("GET", "/v1/documents/{document_id}/content"): get(lambda w: f"/v1/documents/{A(w)}/content"),
    ("DELETE", "/v1/documents/{document_id}"): Case(
        WRITE,
        lambda w, _p: Call("DELETE", f"/v1/documents/{w.fresh_document()}"),
        document_kept,
    ),
    ("GET", "/v1/documents/{document_id}/provenance"): get(
        lambda w: f"/v1/documents/{w.issued_doc_id}/provenance"
    ),
    ("GET", "/v1/export"): static("GET", "/v1/export"),
    ("GET", "/v1/procedures/{code}/reuse-plan"): static(
        "GET", f"/v1/procedures/{PROCEDURE}/reuse-plan"
    ),
    ("GET", "/v1/access-log"): static("GET", "/v1/access-log"),
    ("GET", "/v1/access-log/proof"): static("GET", "/v1/access-log/proof"),
    ("GET", "/v1/statutory-access"): static("GET", "/v1/statutory-access"),
    ("GET", "/v1/notifications"): static("GET", "/v1/notifications"),
    ("POST", "/v1/notifications/{notification_id}/read"): Case(
        WRITE, lambda w, _p: Call("POST", f"/v1/notifications/{w.notification_id}/read")
    ),
    # consent, owner side
    ("GET", "/v1/consents"): static("GET", "/v1/consents"),
    ("GET", "/v1/consents/{request_id}"): get(lambda w: f"/v1/consents/{w.pending_request_id}"),
    ("POST", "/v1/consents/{request_id}/decision"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST", f"/v1/consents/{w.fresh_request()}/decision", json={"decision": "deny"}
        ),
        request_pending,
    ),
    ("GET", "/v1/grants/{grant_id}"): get(lambda w: f"/v1/grants/{w.grant_id}"),
    ("POST", "/v1/grants/{grant_id}/revoke"): Case(
        WRITE, lambda w, _p: Call("POST", f"/v1/grants/{w.fresh_grant()}/revoke"), grant_active
    ),
    ("GET", "/v1/grants/{grant_id}/receipt"): get(lambda w: f"/v1/grants/{w.grant_id}/receipt"),
    # delegations
    ("GET", "/v1/delegations"): static("GET", "/v1/delegations"),
    ("POST", "/v1/delegations"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            "/v1/delegations",
            json={
                "delegate_personal_id": w.fresh_citizen().personal_id,
                "scope": ["documents:read"],
                "valid_until": _later(w, 30),
            },
        ),
    ),
    ("GET", "/v1/delegations/{delegation_id}"): get(lambda w: f"/v1/delegations/{w.delegation_id}"),
    ("POST", "/v1/delegations/{delegation_id}/revoke"): Case(
        WRITE,
        lambda w, _p: Call("POST", f"/v1/delegations/{w.fresh_delegation()}/revoke"),
        delegation_live,
    ),
    # agencies
    ("POST", "/v1/agency/consent-requests"): Case(
        WRITE,
        lambda w, _p: Call("POST", "/v1/agency/consent-requests", json=_consent_request_body(w)),
    ),
    ("GET", "/v1/agency/consent-requests/{request_id}"): get(
        lambda w: f"/v1/agency/consent-requests/{w.pending_request_id}"
    ),
    ("GET", "/v1/agency/grants/{grant_id}/documents"): get(
        lambda w: f"/v1/agency/grants/{w.grant_id}/documents"
    ),
    ("GET", "/v1/agency/grants/{grant_id}/documents/{document_id}/content"): get(
        lambda w: f"/v1/agency/grants/{w.grant_id}/documents/{A(w)}/content"
    ),
    ("GET", "/v1/agency/owners/{personal_id}/reuse-plan"): get(
        lambda w: f"/v1/agency/owners/{w.owner_a.personal_id}/reuse-plan",
        lambda _w: {"procedure": PROCEDURE},
    ),
    ("POST", "/v1/agency/issued-documents"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            "/v1/agency/issued-documents",
            json=w.issued_declaration(tiny_pdf(secrets.token_hex(8))),
        ),
    ),
    ("PUT", "/v1/agency/issued-documents/{document_id}/content"): Case(WRITE, _issued_upload),
    ("POST", "/v1/agency/issued-documents/{document_id}/revoke"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            f"/v1/agency/issued-documents/{w.fresh_issued()['document_id']}/revoke",
            json={"reason": "Cấp nhầm"},
        ),
        issued_valid,
    ),
    ("POST", "/v1/agency/document-requests"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            "/v1/agency/document-requests",
            json={"subject_personal_id": w.owner_a.personal_id, "document_type": "cccd"},
        ),
    ),
    # officials
    ("POST", "/v1/agency/statutory-access"): Case(
        WRITE, lambda w, _p: Call("POST", "/v1/agency/statutory-access", json=_statutory_body(w))
    ),
    ("GET", "/v1/agency/statutory-access/{access_id}"): get(
        lambda w: f"/v1/agency/statutory-access/{w.statutory_id}"
    ),
    ("POST", "/v1/agency/statutory-access/{access_id}/approval"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            f"/v1/agency/statutory-access/{w.fresh_statutory()}/approval",
            json={"approve": True},
        ),
        access_awaiting,
    ),
    ("GET", "/v1/agency/statutory-access/{access_id}/documents/{document_id}/content"): get(
        lambda w: f"/v1/agency/statutory-access/{w.statutory_id}/documents/{A(w)}/content"
    ),
    ("POST", "/v1/agency/desk/documents"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            "/v1/agency/desk/documents",
            json={
                "subject_personal_id": w.owner_a.personal_id,
                "document": {"type_code": "marriage_certificate", "title": "Đăng ký kết hôn"},
            },
        ),
    ),
    ("PUT", "/v1/agency/desk/documents/{document_id}/content"): Case(
        WRITE,
        lambda w, _p: Call(
            "PUT",
            f"/v1/agency/desk/documents/{w.fresh_desk_slot()}/content",
            content=tiny_pdf(secrets.token_hex(8)),
        ),
    ),
    # public checks and the catalogue
    ("GET", "/v1/verify"): get(lambda _w: "/v1/verify", lambda w: {"qr": w.verify_qr}),
    ("GET", "/v1/catalogue/document-types"): static("GET", "/v1/catalogue/document-types"),
    ("GET", "/v1/catalogue/procedures"): static("GET", "/v1/catalogue/procedures"),
    ("GET", "/v1/catalogue/procedures/{code}"): static(
        "GET", f"/v1/catalogue/procedures/{PROCEDURE}"
    ),
    # operators
    ("PUT", "/v1/admin/agencies/{agency_id}/issuing-rights"): Case(
        WRITE,
        lambda w, _p: Call(
            "PUT",
            f"/v1/admin/agencies/{w.x.agency_id}/issuing-rights",
            json={"document_types": ["birth_certificate", "judicial_record"]},
        ),
    ),
    ("POST", "/v1/admin/agencies/{agency_id}/signing-keys"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST", f"/v1/admin/agencies/{w.x.agency_id}/signing-keys", json={"jwk": w.new_jwk()}
        ),
    ),
    ("GET", "/v1/admin/reports/re-requests"): static("GET", "/v1/admin/reports/re-requests"),
    ("POST", "/v1/admin/access-log/checkpoints"): static(
        "POST", "/v1/admin/access-log/checkpoints", WRITE
    ),
    ("GET", "/v1/admin/access-log/verify"): static("GET", "/v1/admin/access-log/verify"),
    ("PUT", "/v1/admin/catalogue/document-types/{code}"): Case(
        WRITE,
        lambda w, _p: Call(
            "PUT",
            f"/v1/admin/catalogue/document-types/matrix_type_{w.serial()}",
            json={"name_vi": "Giấy thử", "name_en": "Test paper"},
        ),
    ),
    ("PUT", "/v1/admin/catalogue/procedures/{code}"): Case(
        WRITE,
        lambda w, _p: Call(
            "PUT",
            f"/v1/admin/catalogue/procedures/KHO-MX-{w.serial():04d}",
            json={"name_vi": "Thủ tục thử", "name_en": "Test procedure", "level": "province"},
        ),
    ),
    ("POST", "/v1/admin/catalogue/import"): Case(WRITE, _import_current),
    ("GET", "/v1/admin/catalogue/export"): static("GET", "/v1/admin/catalogue/export"),
    ("GET", "/v1/admin/catalogue/versions"): static("GET", "/v1/admin/catalogue/versions"),
    ("GET", "/v1/admin/statistics/reuse"): get(
        lambda _w: "/v1/admin/statistics/reuse",
        lambda w: {"from": _later(w, -30), "to": _later(w, 1)},
    ),
    ("POST", "/v1/admin/agencies"): Case(WRITE, _new_agency),
    ("GET", "/v1/admin/agencies"): static("GET", "/v1/admin/agencies"),
    ("GET", "/v1/admin/agencies/{agency_id}"): get(lambda w: f"/v1/admin/agencies/{w.x.agency_id}"),
    ("PATCH", "/v1/admin/agencies/{agency_id}"): Case(
        WRITE,
        lambda w, _p: Call(
            "PATCH", f"/v1/admin/agencies/{w.x.agency_id}", json={"name_en": "Matrix agency X"}
        ),
    ),
    ("POST", "/v1/admin/agencies/{agency_id}/officials"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            f"/v1/admin/agencies/{w.x.agency_id}/officials",
            json={
                "personal_id": w.fresh_citizen().personal_id,
                "full_name": "Cán bộ mới",
                "roles": ["receptionist"],
            },
        ),
    ),
    ("GET", "/v1/admin/agencies/{agency_id}/officials"): get(
        lambda w: f"/v1/admin/agencies/{w.x.agency_id}/officials"
    ),
    ("PATCH", "/v1/admin/agencies/{agency_id}/officials/{official_id}"): Case(
        WRITE,
        lambda w, _p: Call(
            "PATCH",
            f"/v1/admin/agencies/{w.x.agency_id}/officials/{w.fresh_official()}",
            json={"full_name": "Cán bộ đổi tên"},
        ),
    ),
    ("PUT", "/v1/admin/agencies/{agency_id}/webhook"): Case(
        WRITE,
        lambda w, _p: Call(
            "PUT",
            f"/v1/admin/agencies/{w.x.agency_id}/webhook",
            json={"url": "http://127.0.0.1:9/kho-webhook", "active": False},
        ),
    ),
    ("POST", "/v1/admin/organisations"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            "/v1/admin/organisations",
            json={
                "tax_code": valid_tax_code(),
                "name": "Công ty thử",
                "legal_representative_personal_id": w.fresh_citizen().personal_id,
            },
        ),
    ),
    ("GET", "/v1/admin/organisations/{organisation_id}"): get(
        lambda w: f"/v1/admin/organisations/{w.organisation_id}"
    ),
    ("POST", "/v1/admin/organisations/{organisation_id}/representatives"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            f"/v1/admin/organisations/{w.organisation_id}/representatives",
            json={"personal_id": w.fresh_citizen().personal_id},
        ),
    ),
    (
        "POST",
        "/v1/admin/organisations/{organisation_id}/representatives/{representative_id}/revoke",
    ): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            f"/v1/admin/organisations/{w.organisation_id}/representatives/"
            f"{w.fresh_representative()}/revoke",
        ),
    ),
    ("GET", "/v1/admin/clients"): static("GET", "/v1/admin/clients"),
    ("PUT", "/v1/admin/clients/{client_id}"): Case(WRITE, _new_client),
    ("POST", "/v1/admin/clients/{client_id}/deactivate"): Case(
        WRITE, lambda w, _p: Call("POST", f"/v1/admin/clients/{w.fresh_client()}/deactivate")
    ),
    ("POST", "/v1/admin/keys/signing/rotate"): static(
        "POST", "/v1/admin/keys/signing/rotate", ROTATE
    ),
    # the pages
    ("GET", "/web"): static("GET", "/web"),
    ("GET", "/web/"): static("GET", "/web/"),
    ("GET", "/web/login"): static("GET", "/web/login"),
    ("GET", "/web/callback"): Case(WRITE, _web_callback),
    ("GET", "/web/static/{name}"): static("GET", "/web/static/kho.css"),
    ("GET", "/web/documents"): static("GET", "/web/documents"),
    ("POST", "/web/logout"): Case(WRITE, _web_logout),
    ("GET", "/web/store"): static("GET", "/web/store"),
    ("GET", "/web/consents"): static("GET", "/web/consents"),
    ("GET", "/web/access-log"): static("GET", "/web/access-log"),
    ("GET", "/web/delegations"): static("GET", "/web/delegations"),
    ("GET", "/web/notifications"): static("GET", "/web/notifications"),
    ("GET", "/web/account"): static("GET", "/web/account"),
    ("GET", "/web/documents/{document_id}"): get(lambda w: f"/web/documents/{A(w)}"),
    ("GET", "/web/documents/{document_id}/content"): get(
        lambda w: f"/web/documents/{A(w)}/content"
    ),
    ("GET", "/web/documents/{document_id}/delete"): get(lambda w: f"/web/documents/{A(w)}/delete"),
    ("GET", "/web/consents/{request_id}"): get(lambda w: f"/web/consents/{w.pending_request_id}"),
    ("GET", "/web/desk"): static("GET", "/web/desk"),
    ("GET", "/web/desk/requests"): static("GET", "/web/desk/requests"),
    ("POST", "/web/documents"): Case(
        WRITE,
        lambda w, p: Call(
            "POST",
            "/web/documents",
            data={"csrf": csrf(w, p), "type_code": "cccd", "title": "Căn cước (trang)"},
            files={"file": ("cccd.pdf", tiny_pdf(secrets.token_hex(8)), "application/pdf")},
        ),
    ),
    ("POST", "/web/delegations"): Case(
        WRITE,
        lambda w, p: Call(
            "POST",
            "/web/delegations",
            data={
                "csrf": csrf(w, p),
                "delegate_personal_id": w.fresh_citizen().personal_id,
                "scope": "documents:read",
                "kind": "delegation",
                "valid_until": (w.now() + dt.timedelta(days=30)).date().isoformat(),
            },
        ),
    ),
    ("POST", "/web/account/export"): Case(
        READ, lambda w, p: Call("POST", "/web/account/export", data={"csrf": csrf(w, p)})
    ),
    ("POST", "/web/account/erase"): Case(WRITE, _web_erase),
    ("POST", "/web/documents/{document_id}/versions"): Case(
        WRITE,
        lambda w, p: Call(
            "POST",
            f"/web/documents/{w.fresh_document(content=False)}/versions",
            data={"csrf": csrf(w, p)},
            files={"file": ("v2.pdf", tiny_pdf(secrets.token_hex(8)), "application/pdf")},
        ),
        no_new_version,
    ),
    ("POST", "/web/documents/{document_id}/delete"): Case(
        WRITE,
        lambda w, p: Call(
            "POST", f"/web/documents/{w.fresh_document()}/delete", data={"csrf": csrf(w, p)}
        ),
        document_kept,
    ),
    ("POST", "/web/consents/{request_id}/decision"): Case(
        WRITE,
        lambda w, p: Call(
            "POST",
            f"/web/consents/{w.fresh_request()}/decision",
            data={"csrf": csrf(w, p), "decision": "deny"},
        ),
        request_pending,
    ),
    ("POST", "/web/grants/{grant_id}/revoke"): Case(
        WRITE,
        lambda w, p: Call(
            "POST", f"/web/grants/{w.fresh_grant()}/revoke", data={"csrf": csrf(w, p)}
        ),
        grant_active,
    ),
    ("POST", "/web/notifications/{notification_id}/read"): Case(
        WRITE,
        lambda w, p: Call(
            "POST", f"/web/notifications/{w.notification_id}/read", data={"csrf": csrf(w, p)}
        ),
    ),
    ("POST", "/web/delegations/{delegation_id}/revoke"): Case(
        WRITE,
        lambda w, p: Call(
            "POST",
            f"/web/delegations/{w.fresh_delegation()}/revoke",
            data={"csrf": csrf(w, p)},
        ),
        delegation_live,
    ),
    ("POST", "/web/desk"): Case(
        WRITE,
        lambda w, p: Call(
            "POST",
            "/web/desk",
            data={"csrf": csrf(w, p), **_desk_fields(w)},
            files={"file": ("scan.pdf", tiny_pdf(secrets.token_hex(8)), "application/pdf")},
        ),
    ),
    ("PUT", "/web/desk"): Case(
        WRITE,
        lambda w, p: Call(
            "PUT",
            "/web/desk",
            content=tiny_pdf(secrets.token_hex(8)),
            headers={"X-CSRF-Token": csrf(w, p), "X-Upload-Fields": urlencode(_desk_fields(w))},
        ),
    ),
    ("PUT", "/web/documents"): Case(
        WRITE,
        lambda w, p: Call(
            "PUT",
            "/web/documents",
            content=tiny_pdf(secrets.token_hex(8)),
            headers={
                "X-CSRF-Token": csrf(w, p),
                "X-Upload-Fields": urlencode({"type_code": "cccd", "title": "Căn cước (JS)"}),
            },
        ),
    ),
    ("PUT", "/web/documents/{document_id}/content"): Case(
        WRITE,
        lambda w, p: Call(
            "PUT",
            f"/web/documents/{w.fresh_document(content=False)}/content",
            content=tiny_pdf(secrets.token_hex(8)),
            headers={"X-CSRF-Token": csrf(w, p)},
        ),
        no_new_version,
    ),
    ("GET", "/web/{rest:path}"): static("GET", "/web/no-such-page"),
    ("POST", "/web/{rest:path}"): static("POST", "/web/no-such-page"),
    ("PUT", "/web/{rest:path}"): static("PUT", "/web/no-such-page"),
    ("DELETE", "/web/{rest:path}"): static("DELETE", "/web/no-such-page"),
    # the development e-ID simulator
    ("GET", "/dev/eid/.well-known/openid-configuration"): static(
        "GET", "/dev/eid/.well-known/openid-configuration"
    ),
    ("GET", "/dev/eid/jwks"): static("GET", "/dev/eid/jwks"),
    ("GET", "/dev/eid/authorize"): Case(
        READ, lambda w, _p: Call("GET", "/dev/eid/authorize", params=w.simulator_params())
    ),
    ("POST", "/dev/eid/authorize"): Case(
        WRITE,
        lambda w, _p: Call(
            "POST",
            "/dev/eid/authorize",
            data={**w.simulator_params(), "personal_id": SAMPLE_CITIZEN},
        ),
    ),
    ("POST", "/dev/eid/token"): static(
        "POST",
        "/dev/eid/token",
        data={"grant_type": "authorization_code", "code": "not-a-code", "redirect_uri": "x"},
    ),
}


# -- running and reporting ------------------------------------------------------------------------


@dataclass
class Cell:
    route: Route
    principal: Principal
    expected: str
    got: str = ""
    detail: str = ""

    @property
    def known(self) -> str | None:
        """The outcome a known deviation (``policies.KNOWN``) gives instead, if any."""
        entry = KNOWN.get((self.route, self.principal))
        return entry[0] if entry else None

    @property
    def ok(self) -> bool:
        if self.known is not None:
            return self.got == self.known
        return self.got == self.expected

    def shown(self) -> str:
        if not self.ok:
            return f"**{self.got}≠{self.expected}**"
        return f"{self.got}*" if self.known is not None else self.got


def run_cell(world: World, route: Route, principal: Principal) -> tuple[str, str]:
    world.client.cookies.clear()
    call = CASES[route].build(world, principal)
    assert call.method == route[0], (route, call.method)
    world.client.cookies.clear()
    on_page = route[1].startswith("/web")
    credentials = page_headers(world, principal) if on_page else principal_headers(world, principal)
    response = world.client.request(
        call.method,
        call.path,
        params=call.params,
        json=call.json,
        data=call.data,
        content=call.content,
        files=call.files,
        headers={**credentials, **call.headers},
        follow_redirects=False,
    )
    got = classify(response.status_code, response.headers.get("location"))
    detail = f"{response.status_code} {response.text[:160]!r}"
    check = CASES[route].untouched
    if check is not None and got != Outcome.OK:
        changed = check(world, call.path)
        if changed:
            return f"{got}+changed", f"{detail}; refused but changed: {changed}"
    return got, detail


def ordered_routes() -> list[Route]:
    return sorted(POLICIES, key=lambda r: (CASES[r].phase, r[1], r[0]))


def render_table(cells: dict[tuple[Route, Principal], Cell]) -> str:
    """A markdown table: one row per route, one column per principal."""
    head = ["route", "policy", *(SHORT[p] for p in Principal)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for route in sorted(POLICIES, key=lambda r: (r[1], r[0])):
        policy = POLICIES[route]
        row = [f"`{route[0]} {route[1]}`", policy.name]
        for principal in Principal:
            cell = cells.get((route, principal))
            row.append(policy.expected[principal] if cell is None else cell.shown())
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_counts(cells: dict[tuple[Route, Principal], Cell]) -> str:
    by_outcome = Counter(cell.expected for cell in cells.values())
    by_policy = Counter(POLICIES[route].name for route in POLICIES)
    routes = len(POLICIES)
    known = sum(c.known is not None for c in cells.values())
    lines = [
        f"- routes: {routes} (method × path template), principals: {len(Principal)}, "
        f"cells: {len(cells)}; cells asserted and passing: "
        f"{sum(c.ok for c in cells.values())}, of which known deviations (`*`, "
        f"`policies.KNOWN`): {known}",
        "- expected outcomes: "
        + ", ".join(f"{outcome} {count}" for outcome, count in sorted(by_outcome.items())),
        "- routes per policy: "
        + ", ".join(f"{name} {count}" for name, count in sorted(by_policy.items())),
    ]
    return "\n".join(lines)


def render_policies() -> str:
    """The vocabulary: each policy's rule and its outcome per principal."""
    head = ["policy", "rule", *(SHORT[p] for p in Principal)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seen: dict[str, Policy] = {}
    for policy in POLICIES.values():
        seen.setdefault(policy.name + policy.rule, policy)
    for policy in sorted(seen.values(), key=lambda p: p.name):
        cells = [policy.expected[p] for p in Principal]
        lines.append("| " + " | ".join([policy.name, policy.rule, *cells]) + " |")
    return "\n".join(lines)


def write_doc(cells: dict[tuple[Route, Principal], Cell], backend: str) -> None:
    text = DOC.read_text()
    generated = (
        f"{BEGIN}\n<!-- generated by tests/assurance/test_authorization_matrix.py on {backend}; "
        "do not edit by hand -->\n\n"
        + render_counts(cells)
        + "\n\n### Policies\n\n"
        + render_policies()
        + "\n\n### The matrix\n\n"
        + render_table(cells)
        + f"\n\n{END}"
    )
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    assert pattern.search(text), f"{DOC} lacks the {BEGIN} … {END} markers"
    DOC.write_text(pattern.sub(lambda _m: generated, text))


# -- the tests ------------------------------------------------------------------------------------


def test_every_route_has_a_declared_policy_and_a_request(assurance_app: FastAPI) -> None:
    served = app_routes(assurance_app)
    undeclared = sorted(served - set(POLICIES))
    stale = sorted(set(POLICIES) - served)
    recipes = set(CASES)
    assert not undeclared, (
        "routes without a declared authorization policy (add them to "
        f"tests/assurance/policies.py POLICIES): {undeclared}"
    )
    assert not stale, f"policies for routes the app no longer serves: {stale}"
    missing, extra = sorted(set(POLICIES) - recipes), sorted(recipes - set(POLICIES))
    assert not missing and not extra, (
        "request recipes and policies disagree (tests/assurance/test_authorization_matrix.py "
        f"CASES): missing {missing}, extra {extra}"
    )


def test_pages_refuse_values_the_database_cannot_hold(assurance_world: World) -> None:
    """A page is refused with an error page, never a 500, for a value the database refuses
    (PostgreSQL: a NUL character in text) or an out-of-range number in the address; and
    nothing is stored."""
    world = assurance_world
    owner = world.fresh_citizen()
    secret, token = world.page_session(owner)
    cookie = {"Cookie": f"{WEB_COOKIE}={secret}"}
    listed = expect(world.client.get("/v1/documents", headers=world.as_owner(owner)), 200)
    before = len(listed.json()["items"])
    response = world.client.post(
        "/web/documents",
        data={"csrf": token, "type_code": "cccd", "title": "Căn cước\x00"},
        files={"file": ("cccd.pdf", tiny_pdf(secrets.token_hex(8)), "application/pdf")},
        headers=cookie,
        follow_redirects=False,
    )
    assert response.status_code in (303, 422), (response.status_code, response.text[:300])
    after = len(
        expect(world.client.get("/v1/documents", headers=world.as_owner(owner)), 200).json()[
            "items"
        ]
    )
    if response.status_code == 422:
        assert "text/html" in response.headers["content-type"]
        assert "Dữ liệu không hợp lệ" in response.text
        assert after == before
    else:  # SQLite stores a NUL as it is: the paper is kept, as given.
        assert world.env.backend == "sqlite-local"
        assert after == before + 1
    document = world.fresh_document(owner)
    for version in (2**31, 2**40, 0):
        response = world.client.get(
            f"/web/documents/{document}/content", params={"version": version}, headers=cookie
        )
        assert response.status_code == 404, (version, response.status_code, response.text[:200])
        assert "text/html" in response.headers["content-type"]


def delegations_held(world: World) -> dict[Principal, frozenset[str]]:
    """The scopes of the delegation from A that each of A's delegates holds, as A sees them."""
    held = {
        Principal.DELEGATE: world.delegation_id,
        Principal.READER: world.reader_delegation_id,
    }
    found: dict[Principal, frozenset[str]] = {}
    for principal, delegation_id in held.items():
        delegation = _owner_view(world, f"/v1/delegations/{delegation_id}")
        assert delegation["status"] == "active", (principal, delegation)
        assert delegation["owner_id"] == str(world.owner_a.account_id), (principal, delegation)
        person = person_of(world, principal)
        assert person is not None and delegation["delegate_id"] == str(person.account_id)
        found[principal] = frozenset(delegation["scope"])
    return found


def test_authorization_matrix(assurance_world: World) -> None:
    world = assurance_world
    assert app_routes(world.client.app) == set(POLICIES)  # type: ignore[arg-type]
    # The policies' outcomes for A's delegates follow from the scopes policies.HELD says they
    # hold: the world must give them exactly those.
    assert delegations_held(world) == HELD
    cells: dict[tuple[Route, Principal], Cell] = {}
    for route in ordered_routes():
        policy: Policy = POLICIES[route]
        # Erasure runs account by account; the owner A's turn comes last of all.
        principals = list(Principal)
        if CASES[route].phase == ERASE:
            principals.remove(Principal.OWNER_A)
            principals.append(Principal.OWNER_A)
        for principal in principals:
            cell = Cell(route, principal, policy.expected[principal])
            cell.got, cell.detail = run_cell(world, route, principal)
            cells[(route, principal)] = cell
    if os.environ.get("KHO_WRITE_MATRIX"):
        write_doc(cells, world.env.backend)
    fixed = [c for c in cells.values() if c.known is not None and c.got == c.expected]
    assert not fixed, "known deviations that now match their policy (remove them from " + (
        "policies.KNOWN): "
        + ", ".join(f"{c.route[0]} {c.route[1]} as {c.principal}" for c in fixed)
    )
    wrong = [cell for cell in cells.values() if not cell.ok]
    if wrong:
        listing = "\n".join(
            f"  {c.route[0]} {c.route[1]} as {c.principal}: got {c.got}, "
            f"expected {c.expected} ({POLICIES[c.route].name}) — {c.detail}"
            for c in wrong
        )
        table = render_table(cells)
        print(table)
        raise AssertionError(
            f"{len(wrong)} of {len(cells)} cells differ from the declared policy "
            f"({world.env.backend}):\n{listing}\n\n{table}"
        )
    assert len(cells) == len(POLICIES) * len(Principal)
    assert Outcome.OK in {c.got for c in cells.values()}
