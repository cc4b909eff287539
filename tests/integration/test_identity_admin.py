"""Agencies, officials, organisations and delegations, through HTTP and through the services, on
the embedded backends and on PostgreSQL + MinIO."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from httpx import Response
from starlette.routing import NoMatchFound

from api.app import create_app
from api.routers import admin, delegations
from common.clock import FixedClock
from identity.errors import (
    AccountNotFound,
    AgencyCodeTaken,
    InvalidDelegation,
    RepresentativeExists,
)
from identity.models import (
    Agency,
    AgencyLevel,
    DelegationKind,
    DelegationScope,
    DelegationStatus,
    Representative,
    RepresentativeRole,
)
from identity.schemas import AgencyCreate
from identity.service import (
    AgencyService,
    CitizenProfile,
    DelegationService,
    IdentityService,
    OrganisationService,
    add_years,
    coming_of_age,
    vietnam_date,
)
from storage.db import session_scope
from tests.conftest import (
    KhoEnv,
    Owner,
    build_ready_container,
    drop_postgres_database,
    random_personal_id,
    settings_for,
)

READ = DelegationScope.documents_read
WRITE = DelegationScope.documents_write


def _with_identity_routes(app: FastAPI) -> FastAPI:
    # Until api/app.py registers them; skipped once it does, so routes are never doubled.
    for module, route_name in ((admin, "create_agency"), (delegations, "list_delegations")):
        try:
            app.url_path_for(route_name)
        except NoMatchFound:
            app.include_router(module.router)
    return app


@pytest.fixture(params=["sqlite-local", "postgres-minio"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KhoEnv]:
    """``kho_env`` with the identity routers mounted before start-up."""
    settings = settings_for(request.param, tmp_path)
    container = build_ready_container(settings)
    app = _with_identity_routes(create_app(settings, container=container))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield KhoEnv(request.param, settings, container, client)
    container.close()
    if request.param == "postgres-minio":
        drop_postgres_database(settings.effective_database_url)


def enrol(env: KhoEnv, birth_date: dt.date, name: str = "Nguyễn Văn Thử") -> Owner:
    """A citizen born on ``birth_date``, enrolled as on first sign-in."""
    pin = random_personal_id(birth_date.year)
    with session_scope(env.container.sessions) as session:
        account = IdentityService(session, env.container.clock).enrol_citizen(
            CitizenProfile(
                national_subject=f"sub-{uuid.uuid4()}",
                personal_id=pin,
                full_name=name,
                birth_date=birth_date,
                eid_level=2,
            )
        )
        account_id = account.id
    return Owner(account_id, pin, 2)


def years_ago(years: int) -> dt.date:
    return add_years(vietnam_date(dt.datetime.now(dt.UTC)), -years)


def ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def create_agency(env: KhoEnv, **fields: Any) -> Response:
    body = {"name_vi": f"Cơ quan {fields['code']}", **fields}
    response: Response = env.client.post(
        "/v1/admin/agencies", json=body, headers=env.operator_headers()
    )
    return response


def unique_code(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


# -- agencies ----------------------------------------------------------------------------------


def test_agency_hierarchy_and_parent_rules(env: KhoEnv) -> None:
    province = ok(
        create_agency(env, code="UBND-TN", level="province", name_en="Thai Nguyen PC"), 201
    )
    assert province["parent_id"] is None
    assert province["active"] is True
    district = ok(
        create_agency(env, code="UBND-PY", level="district", parent_id=province["id"]), 201
    )
    commune = ok(
        create_agency(env, code="UBND-PY.HT", level="commune", parent_id=district["id"]), 201
    )
    assert commune["parent_id"] == district["id"]
    # Two-tier local government (since 1 July 2025): a commune directly under its province.
    direct = ok(
        create_agency(env, code="UBND-XA-TN", level="commune", parent_id=province["id"]), 201
    )
    assert direct["parent_id"] == province["id"]

    wrong = [
        {"code": "X-1", "level": "commune", "parent_id": commune["id"]},
        {"code": "X-2", "level": "district", "parent_id": district["id"]},
        {"code": "X-3", "level": "district"},
        {"code": "X-4", "level": "province", "parent_id": province["id"]},
        {"code": "X-5", "level": "commune", "parent_id": str(uuid.uuid4())},
    ]
    for fields in wrong:
        body = problem(create_agency(env, **fields), 422, "invalid_agency_parent")
        assert body["detail"]

    en = env.client.post(
        "/v1/admin/agencies",
        json={"code": "X-6", "name_vi": "X", "level": "district", "parent_id": district["id"]},
        headers=env.operator_headers(**{"Accept-Language": "en"}),
    )
    assert "needs a province agency" in problem(en, 422, "invalid_agency_parent")["detail"]

    problem(create_agency(env, code="UBND-TN", level="province"), 409, "agency_code_taken")
    problem(create_agency(env, code="stp-tn", level="province"), 422, "invalid_input")
    problem(create_agency(env, code="A", level="province"), 422, "invalid_input")
    problem(
        create_agency(env, code="STP-TN2", level="province", unexpected=1), 422, "invalid_input"
    )

    headers = env.operator_headers()
    listed = ok(env.client.get("/v1/admin/agencies", headers=headers))["items"]
    assert [a["code"] for a in listed] == ["UBND-PY", "UBND-PY.HT", "UBND-TN", "UBND-XA-TN"]
    communes = ok(env.client.get("/v1/admin/agencies?level=commune", headers=headers))["items"]
    assert {a["id"] for a in communes} == {commune["id"], direct["id"]}
    children = ok(
        env.client.get(f"/v1/admin/agencies?parent_id={province['id']}", headers=headers)
    )["items"]
    assert {a["id"] for a in children} == {district["id"], direct["id"]}

    got = ok(env.client.get(f"/v1/admin/agencies/{district['id']}", headers=headers))
    assert got == district
    problem(
        env.client.get(f"/v1/admin/agencies/{uuid.uuid4()}", headers=headers),
        404,
        "agency_not_found",
    )

    renamed = ok(
        env.client.patch(
            f"/v1/admin/agencies/{district['id']}",
            json={"name_vi": "UBND huyện Phú Yên", "name_en": None},
            headers=headers,
        )
    )
    assert renamed["name_vi"] == "UBND huyện Phú Yên"
    assert renamed["name_en"] is None
    problem(
        env.client.patch(
            f"/v1/admin/agencies/{district['id']}", json={"name_vi": None}, headers=headers
        ),
        422,
        "invalid_input",
    )
    problem(
        env.client.patch(
            f"/v1/admin/agencies/{commune['id']}",
            json={"parent_id": direct["id"]},
            headers=headers,
        ),
        422,
        "invalid_agency_parent",
    )

    inactive = ok(
        env.client.patch(
            f"/v1/admin/agencies/{district['id']}", json={"active": False}, headers=headers
        )
    )
    assert inactive["active"] is False
    active_only = ok(env.client.get("/v1/admin/agencies?active=true", headers=headers))["items"]
    assert district["id"] not in {a["id"] for a in active_only}
    # No new agency under an inactive parent.
    problem(
        create_agency(env, code="UBND-PY.X", level="commune", parent_id=district["id"]),
        422,
        "invalid_agency_parent",
    )


# -- officials ---------------------------------------------------------------------------------


def test_officials_of_an_agency(env: KhoEnv) -> None:
    headers = env.operator_headers()
    agency = ok(create_agency(env, code=unique_code("STP"), level="province"), 201)
    other = ok(create_agency(env, code=unique_code("SYT"), level="province"), 201)
    citizen = enrol(env, dt.date(1985, 3, 2), name="Trần Thị Bình")
    officials_url = f"/v1/admin/agencies/{agency['id']}/officials"

    registered = ok(
        env.client.post(
            officials_url,
            json={
                "personal_id": citizen.personal_id,
                "full_name": "Trần Thị Bình",
                "roles": ["processor", "receptionist", "processor"],
            },
            headers=headers,
        ),
        201,
    )
    assert registered["roles"] == ["receptionist", "processor"]
    assert registered["citizen_account_id"] == str(citizen.account_id)
    assert registered["agency_id"] == agency["id"]

    # Registered before their first sign-in: linked when they enrol.
    newcomer_pin = random_personal_id(1992)
    later = ok(
        env.client.post(
            officials_url,
            json={"personal_id": newcomer_pin, "full_name": "Lê Văn Cường", "roles": ["approver"]},
            headers=headers,
        ),
        201,
    )
    assert later["citizen_account_id"] is None

    problem(
        env.client.post(
            officials_url,
            json={"personal_id": citizen.personal_id, "full_name": "X", "roles": ["approver"]},
            headers=headers,
        ),
        409,
        "official_exists",
    )
    for bad_pin in ("12345", "000090123456", "01909012345x", "0190901234567"):
        problem(
            env.client.post(
                officials_url,
                json={"personal_id": bad_pin, "full_name": "X", "roles": ["approver"]},
                headers=headers,
            ),
            422,
            "invalid_personal_id",
        )
    for bad_roles in ([], ["mayor"]):
        problem(
            env.client.post(
                officials_url,
                json={"personal_id": random_personal_id(), "full_name": "X", "roles": bad_roles},
                headers=headers,
            ),
            422,
            "invalid_input",
        )
    problem(
        env.client.post(
            f"/v1/admin/agencies/{uuid.uuid4()}/officials",
            json={"personal_id": random_personal_id(), "full_name": "X", "roles": ["approver"]},
            headers=headers,
        ),
        404,
        "agency_not_found",
    )

    with session_scope(env.container.sessions) as session:
        IdentityService(session, env.container.clock).enrol_citizen(
            CitizenProfile(f"sub-{uuid.uuid4()}", newcomer_pin, "Lê Văn Cường", None, 2)
        )
    listed = ok(env.client.get(officials_url, headers=headers))["items"]
    assert {o["id"] for o in listed} == {registered["id"], later["id"]}
    linked = next(o for o in listed if o["id"] == later["id"])
    assert linked["citizen_account_id"] is not None

    updated = ok(
        env.client.patch(
            f"{officials_url}/{registered['id']}",
            json={"roles": ["approver", "agency_admin"], "active": False},
            headers=headers,
        )
    )
    assert updated["roles"] == ["approver", "agency_admin"]
    assert updated["active"] is False
    active = ok(env.client.get(f"{officials_url}?active=true", headers=headers))["items"]
    assert [o["id"] for o in active] == [later["id"]]
    problem(
        env.client.patch(
            f"{officials_url}/{registered['id']}", json={"roles": None}, headers=headers
        ),
        422,
        "invalid_input",
    )
    # Another agency's official, or an unknown one, is not found through this agency.
    problem(
        env.client.patch(
            f"/v1/admin/agencies/{other['id']}/officials/{registered['id']}",
            json={"active": True},
            headers=headers,
        ),
        404,
        "official_not_found",
    )


# -- who may call the admin routes -------------------------------------------------------------


def test_admin_routes_need_an_operator(env: KhoEnv) -> None:
    some = uuid.uuid4()
    routes = [
        ("POST", "/v1/admin/agencies", {"code": "STP-TN", "name_vi": "X", "level": "province"}),
        ("GET", "/v1/admin/agencies", None),
        ("GET", f"/v1/admin/agencies/{some}", None),
        ("PATCH", f"/v1/admin/agencies/{some}", {"active": False}),
        ("POST", f"/v1/admin/agencies/{some}/officials", {"bad": "body"}),
        ("GET", f"/v1/admin/agencies/{some}/officials", None),
        ("PATCH", f"/v1/admin/agencies/{some}/officials/{some}", {}),
        ("POST", "/v1/admin/organisations", {}),
        ("GET", f"/v1/admin/organisations/{some}", None),
        ("POST", f"/v1/admin/organisations/{some}/representatives", {}),
        ("POST", f"/v1/admin/organisations/{some}/representatives/{some}/revoke", None),
    ]
    mounted = [
        (method, route.path)
        for route in admin.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    ]
    assert len(mounted) == len(routes), "a new admin route needs a line here"

    citizen = env.citizen()
    for method, url, body in routes:
        anonymous = env.client.request(method, url, json=body)
        problem(anonymous, 401, "unauthenticated")
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        problem(
            env.client.request(method, url, json=body, headers=env.headers(citizen)),
            403,
            "forbidden",
        )
        problem(
            env.client.request(
                method, url, json=body, headers={"Authorization": "Bearer not-a-token"}
            ),
            401,
            "invalid_token",
        )
    # Nothing was written by the refused calls.
    listed = ok(env.client.get("/v1/admin/agencies", headers=env.operator_headers()))
    assert listed["items"] == []


# -- organisations -----------------------------------------------------------------------------


def test_organisation_enrolment_and_representatives(env: KhoEnv) -> None:
    headers = env.operator_headers()
    director = env.citizen()
    staff = env.citizen()

    def enrol_org(tax_code: str, personal_id: str) -> Response:
        response: Response = env.client.post(
            "/v1/admin/organisations",
            json={
                "tax_code": tax_code,
                "name": "Công ty TNHH Thử Nghiệm",
                "legal_representative_personal_id": personal_id,
            },
            headers=headers,
        )
        return response

    created = ok(enrol_org("0100109106-001", director.personal_id), 201)
    assert created["tax_code"] == "0100109106001"
    [legal] = created["representatives"]
    assert legal["role"] == "legal_representative"
    assert legal["citizen_account_id"] == str(director.account_id)
    assert legal["active"] is True
    org_url = f"/v1/admin/organisations/{created['id']}"
    assert ok(env.client.get(org_url, headers=headers)) == created

    problem(enrol_org("0100109106001", director.personal_id), 409, "tax_code_taken")
    problem(enrol_org("0100109107", director.personal_id), 422, "invalid_tax_code")
    problem(enrol_org("0100109106-000", director.personal_id), 422, "invalid_tax_code")
    problem(enrol_org("ABC", director.personal_id), 422, "invalid_tax_code")
    problem(enrol_org("0100112437", random_personal_id()), 404, "citizen_not_found")
    problem(enrol_org("0100112437", "123"), 422, "invalid_personal_id")
    problem(
        env.client.get(f"/v1/admin/organisations/{uuid.uuid4()}", headers=headers),
        404,
        "organisation_not_found",
    )
    # The organisation is an owner like a citizen: it has an account of its own.
    second = ok(enrol_org("0100112437", director.personal_id), 201)
    assert second["id"] != created["id"]

    reps_url = f"{org_url}/representatives"
    added = ok(
        env.client.post(
            reps_url,
            json={"personal_id": staff.personal_id, "role": "authorised_staff"},
            headers=headers,
        ),
        201,
    )
    assert added["active"] is True
    problem(
        env.client.post(reps_url, json={"personal_id": staff.personal_id}, headers=headers),
        409,
        "representative_exists",
    )
    problem(
        env.client.post(reps_url, json={"personal_id": director.personal_id}, headers=headers),
        409,
        "representative_exists",
    )
    revoked = ok(env.client.post(f"{reps_url}/{added['id']}/revoke", headers=headers))
    assert revoked["active"] is False
    assert revoked["revoked_at"] is not None
    again = ok(env.client.post(f"{reps_url}/{added['id']}/revoke", headers=headers))
    assert again["revoked_at"] == revoked["revoked_at"]
    # Once revoked, the same citizen may be appointed again; the history stays.
    ok(env.client.post(reps_url, json={"personal_id": staff.personal_id}, headers=headers), 201)
    reps = ok(env.client.get(org_url, headers=headers))["representatives"]
    assert [(r["citizen_account_id"], r["active"]) for r in reps] == [
        (str(director.account_id), True),
        (str(staff.account_id), False),
        (str(staff.account_id), True),
    ]
    problem(
        env.client.post(f"{reps_url}/{uuid.uuid4()}/revoke", headers=headers),
        404,
        "representative_not_found",
    )


# -- delegations through HTTP ------------------------------------------------------------------


def delegate(env: KhoEnv, owner: Owner, delegate_pin: str, **fields: Any) -> Response:
    body: dict[str, Any] = {
        "delegate_personal_id": delegate_pin,
        "scope": ["documents:read"],
        "valid_until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat(),
        **fields,
    }
    response: Response = env.client.post("/v1/delegations", json=body, headers=env.headers(owner))
    return response


def test_delegation_lifecycle(env: KhoEnv) -> None:
    owner, helper, stranger = env.citizen(), env.citizen(), env.citizen()
    created = ok(
        delegate(env, owner, helper.personal_id, scope=["consents:decide", "documents:read"]),
        201,
    )
    assert created["status"] == "active"
    assert created["scope"] == ["documents:read", "consents:decide"]
    assert created["owner_id"] == str(owner.account_id)
    assert created["delegate_id"] == str(helper.account_id)
    assert created["effective_until"] == created["valid_until"]

    mine = ok(env.client.get("/v1/delegations", headers=env.headers(owner)))
    assert [d["id"] for d in mine["given"]] == [created["id"]]
    assert mine["received"] == []
    theirs = ok(env.client.get("/v1/delegations", headers=env.headers(helper)))
    assert theirs["given"] == []
    assert [d["id"] for d in theirs["received"]] == [created["id"]]
    assert theirs["received"][0]["owner_name"] == "Nguyễn Văn Thử"
    nobody = ok(env.client.get("/v1/delegations", headers=env.headers(stranger)))
    assert nobody == {"given": [], "received": []}

    url = f"/v1/delegations/{created['id']}"
    assert ok(env.client.get(url, headers=env.headers(helper)))["id"] == created["id"]
    # Another owner's delegation does not exist for a third party.
    problem(env.client.get(url, headers=env.headers(stranger)), 404, "delegation_not_found")
    problem(
        env.client.post(f"{url}/revoke", headers=env.headers(stranger)),
        404,
        "delegation_not_found",
    )
    problem(
        env.client.post(f"/v1/delegations/{uuid.uuid4()}/revoke", headers=env.headers(owner)),
        404,
        "delegation_not_found",
    )
    problem(env.client.get("/v1/delegations"), 401, "unauthenticated")

    revoked = ok(env.client.post(f"{url}/revoke", headers=env.headers(owner)))
    assert revoked["status"] == "revoked"
    assert revoked["revoked_at"] is not None
    seen = ok(env.client.get("/v1/delegations", headers=env.headers(helper)))["received"]
    assert seen[0]["status"] == "revoked"
    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, env.container.clock)
        assert service.active_delegation(owner.account_id, helper.account_id, READ) is None

    # The delegate may also give a delegation up.
    second = ok(delegate(env, owner, helper.personal_id), 201)
    given_up = ok(
        env.client.post(f"/v1/delegations/{second['id']}/revoke", headers=env.headers(helper))
    )
    assert given_up["status"] == "revoked"


def test_delegation_rules_over_http(env: KhoEnv) -> None:
    owner, helper = env.citizen(), env.citizen()
    now = dt.datetime.now(dt.UTC)

    self_made = problem(delegate(env, owner, owner.personal_id), 422, "invalid_delegation")
    assert "chính mình" in self_made["detail"]
    problem(delegate(env, owner, helper.personal_id, valid_until=None), 422, "invalid_delegation")
    too_long = (now + dt.timedelta(days=5 * 366 + 2)).isoformat()
    problem(
        delegate(env, owner, helper.personal_id, valid_until=too_long), 422, "invalid_delegation"
    )
    past = (now - dt.timedelta(days=1)).isoformat()
    problem(delegate(env, owner, helper.personal_id, valid_until=past), 422, "invalid_delegation")
    problem(delegate(env, owner, helper.personal_id, valid_from=past), 422, "invalid_delegation")
    problem(delegate(env, owner, random_personal_id()), 404, "citizen_not_found")
    problem(delegate(env, owner, "12345"), 422, "invalid_personal_id")
    problem(delegate(env, owner, helper.personal_id, scope=[]), 422, "invalid_input")
    problem(delegate(env, owner, helper.personal_id, scope=["vault:all"]), 422, "invalid_input")
    naive = now.replace(tzinfo=None).isoformat()
    problem(delegate(env, owner, helper.personal_id, valid_until=naive), 422, "invalid_input")

    # Close to the limit but within five years is fine; starting later is "pending".
    start = now + dt.timedelta(days=2)
    pending = ok(
        delegate(
            env,
            owner,
            helper.personal_id,
            valid_from=start.isoformat(),
            valid_until=(start + dt.timedelta(days=5 * 365)).isoformat(),
        ),
        201,
    )
    assert pending["status"] == "pending"

    # Guardianship: only for a minor owner, only by an adult.
    child = enrol(env, years_ago(12), name="Nguyễn Bé Na")
    parent = enrol(env, years_ago(40), name="Nguyễn Văn Bố")
    teenager = enrol(env, years_ago(17), name="Nguyễn Văn Anh")
    guardian = ok(
        delegate(
            env,
            child,
            parent.personal_id,
            kind="guardian",
            valid_until=None,
            scope=["documents:read", "documents:write", "consents:decide"],
        ),
        201,
    )
    assert guardian["kind"] == "guardian"
    assert guardian["status"] == "active"
    assert guardian["valid_until"] is None
    eighteenth = coming_of_age(years_ago(12))
    assert dt.datetime.fromisoformat(guardian["effective_until"]) == eighteenth
    problem(
        delegate(env, parent, child.personal_id, kind="guardian"), 422, "invalid_delegation"
    )  # the owner is an adult
    problem(
        delegate(env, child, teenager.personal_id, kind="guardian"), 422, "invalid_delegation"
    )  # the guardian is a minor
    problem(
        delegate(env, owner, helper.personal_id, kind="guardian"), 422, "invalid_delegation"
    )  # two adults
    received = ok(env.client.get("/v1/delegations", headers=env.headers(parent)))["received"]
    assert [d["owner_name"] for d in received] == ["Nguyễn Bé Na"]


# -- active_delegation, with time under control --------------------------------------------------


T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def test_active_delegation_respects_window_scope_and_revocation(env: KhoEnv) -> None:
    owner, helper, other = env.citizen(), env.citizen(), env.citizen()
    clock = FixedClock(T0)
    start, end = T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=31)
    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, clock)
        made = service.create(
            owner.account_id,
            helper.account_id,
            scope=[READ, DelegationScope.consents_decide],
            valid_from=start,
            valid_until=end,
        )
        delegation_id = made.id

    def active(
        at: dt.datetime, scope: DelegationScope = READ, who: Owner = helper
    ) -> uuid.UUID | None:
        with session_scope(env.container.sessions) as session:
            found = DelegationService(session, clock).active_delegation(
                owner.account_id, who.account_id, scope, at
            )
            return found.id if found else None

    assert active(start - dt.timedelta(seconds=1)) is None
    assert active(start) == delegation_id
    assert active(end - dt.timedelta(seconds=1)) == delegation_id
    assert active(end) is None
    assert active(start, WRITE) is None
    assert active(start, DelegationScope.consents_decide) == delegation_id
    assert active(start, who=other) is None
    with session_scope(env.container.sessions) as session:  # the other direction is not given
        assert (
            DelegationService(session, clock).active_delegation(
                helper.account_id, owner.account_id, READ, start
            )
            is None
        )

    revoked_at = start + dt.timedelta(days=10)
    clock.advance(revoked_at - T0)
    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, clock)
        revoked = service.revoke(owner.account_id, delegation_id)
        assert service.status(revoked) is DelegationStatus.revoked
    assert active(revoked_at) is None
    assert active(revoked_at + dt.timedelta(days=1)) is None
    # What held before the revocation still answers "was it active then".
    assert active(revoked_at - dt.timedelta(seconds=1)) == delegation_id

    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, FixedClock(T0))
        with pytest.raises(InvalidDelegation):  # more than five years
            service.create(
                owner.account_id,
                helper.account_id,
                scope=[READ],
                valid_until=T0.replace(year=2031) + dt.timedelta(seconds=1),
            )
        five_years = service.create(
            owner.account_id, helper.account_id, scope=[READ], valid_until=T0.replace(year=2031)
        )
        assert five_years.valid_until == T0.replace(year=2031)


def test_guardian_lapses_on_the_eighteenth_birthday(env: KhoEnv) -> None:
    birth = dt.date(2008, 6, 15)
    minor = enrol(env, birth, name="Phạm Thị Mai")
    mother = enrol(env, dt.date(1980, 1, 20), name="Phạm Thị Hoa")
    adult_at = coming_of_age(birth)
    assert adult_at == dt.datetime(2026, 6, 14, 17, 0, tzinfo=dt.UTC)  # midnight in Vietnam

    clock = FixedClock(T0)
    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, clock)
        guardian = service.create(
            minor.account_id,
            mother.account_id,
            scope=[READ, WRITE],
            kind=DelegationKind.guardian,
            valid_until=T0.replace(year=2030),  # later than the birthday: the birthday wins
        )
        guardian_id = guardian.id
        assert service.effective_until(guardian) == adult_at
        assert service.describe(guardian).effective_until == adult_at

    def active(at: dt.datetime) -> bool:
        with session_scope(env.container.sessions) as session:
            service = DelegationService(session, FixedClock(at))
            found = service.active_delegation(minor.account_id, mother.account_id, WRITE)
            return found is not None and found.id == guardian_id

    assert active(T0)
    assert active(adult_at - dt.timedelta(seconds=1))
    assert not active(adult_at)
    assert not active(adult_at + dt.timedelta(days=400))
    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, FixedClock(adult_at))
        [given], _ = service.list_for(minor.account_id)
        assert service.status(given) is DelegationStatus.expired

    # On the birthday itself (Vietnam time) the owner is no longer a minor.
    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, FixedClock(adult_at))
        with pytest.raises(InvalidDelegation):
            service.create(
                minor.account_id, mother.account_id, scope=[READ], kind=DelegationKind.guardian
            )
        # The day before, a guardian delegation may still start and lasts until midnight.
        service.clock = FixedClock(adult_at - dt.timedelta(hours=1))
        late = service.create(
            minor.account_id, mother.account_id, scope=[READ], kind=DelegationKind.guardian
        )
        assert service.effective_until(late) == adult_at


def test_no_delegation_to_or_from_an_erased_account(env: KhoEnv) -> None:
    owner, helper, leaving = env.citizen(), env.citizen(), env.citizen()
    clock = FixedClock(T0)
    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, clock)
        given = service.create(
            owner.account_id, helper.account_id, scope=[READ], valid_until=T0.replace(year=2027)
        )
        received = service.create(
            leaving.account_id, owner.account_id, scope=[READ], valid_until=T0.replace(year=2027)
        )
        to_leaving = service.create(
            owner.account_id, leaving.account_id, scope=[READ], valid_until=T0.replace(year=2027)
        )
        ids = (given.id, received.id, to_leaving.id)
        with pytest.raises(InvalidDelegation) as self_delegation:
            service.create(
                owner.account_id, owner.account_id, scope=[READ], valid_until=T0.replace(year=2027)
            )
        assert "themselves" in (self_delegation.value.detail_en or "")

    with session_scope(env.container.sessions) as session:
        IdentityService(session, clock).mark_erased(leaving.account_id)

    with session_scope(env.container.sessions) as session:
        service = DelegationService(session, clock)
        with pytest.raises(InvalidDelegation) as erased:
            service.create(
                owner.account_id,
                leaving.account_id,
                scope=[READ],
                valid_until=T0.replace(year=2027),
            )
        assert "erased" in (erased.value.detail_en or "")
        with pytest.raises(AccountNotFound):
            service.create(
                owner.account_id, uuid.uuid4(), scope=[READ], valid_until=T0.replace(year=2027)
            )
        # Erasure ended every delegation to or from the account; the others stand.
        still = service.active_delegation(owner.account_id, helper.account_id, READ)
        assert still is not None
        assert still.id == ids[0]
        assert service.active_delegation(leaving.account_id, owner.account_id, READ) is None
        assert service.active_delegation(owner.account_id, leaving.account_id, READ) is None
        given_rows, received_rows = service.list_for(owner.account_id)
        statuses = {d.id: service.status(d) for d in [*given_rows, *received_rows]}
        assert statuses == {
            ids[0]: DelegationStatus.active,
            ids[1]: DelegationStatus.revoked,
            ids[2]: DelegationStatus.revoked,
        }
        assert service.describe(next(d for d in received_rows if d.id == ids[1])).owner_name is None


def test_unique_rules_hold_in_the_database_too(env: KhoEnv) -> None:
    # Two requests can both pass the service's look-up; the constraint then answers with the same
    # conflict, and the rest of the unit of work carries on.
    director, staff = env.citizen(), env.citizen()
    clock = env.container.clock
    with session_scope(env.container.sessions) as session:
        agencies = AgencyService(session, clock)
        first = agencies.create(AgencyCreate(code="STP-TN", name_vi="Sở Tư pháp", level="province"))
        with pytest.raises(AgencyCodeTaken):
            agencies.repo.add_unique(
                Agency(
                    id=uuid.uuid4(),
                    code="STP-TN",
                    name_vi="Bản sao",
                    level=AgencyLevel.province,
                    active=True,
                    created_at=clock.now(),
                ),
                AgencyCodeTaken(),
            )
        organisations = OrganisationService(session, clock)
        organisation = organisations.enrol("0100109106", "Viettel", director.personal_id)
        organisations.add_representative(
            organisation.account_id, staff.personal_id, RepresentativeRole.authorised_staff
        )
        with pytest.raises(RepresentativeExists):
            organisations.repo.add_unique(
                Representative(
                    id=uuid.uuid4(),
                    organisation_id=organisation.account_id,
                    citizen_account_id=staff.account_id,
                    role=RepresentativeRole.authorised_staff,
                    valid_from=clock.now(),
                    created_at=clock.now(),
                ),
                RepresentativeExists(),
            )
        first_id = first.id
    with session_scope(env.container.sessions) as session:
        assert [a.id for a in AgencyService(session, clock).list_agencies()] == [first_id]
        reps = OrganisationService(session, clock).representatives(organisation.account_id)
        assert len(reps) == 2
