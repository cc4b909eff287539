"""Reuse plans on both backends: which paper meets each requirement and why not, the best of
several, never another owner's papers, two queries whatever the store's size, the agency's view
only under a grant or a pending request (and logged), and the reuse statistics."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from common.clock import OffsetClock
from consent.models import AccessLogEntry
from storage.db import session_scope
from tests.agencies import AgencyClient, make_agency
from tests.conftest import KhoEnv, Owner
from tests.integration.test_catalogue import mount
from tests.integration.test_consent import decide
from vault.keyring import Keyring
from vault.models import Assurance, ReRequest
from vault.reuse import VIET_NAM, ReusePlanner
from vault.schemas import DocumentCreate
from vault.service import DocumentService, UploadJournal

PROCEDURE = "KHO-THU-001"
REQUIREMENTS = [
    {"document_type": "cccd", "min_assurance": "digitised"},
    {"document_type": "birth_certificate", "min_assurance": "self_declared"},
    {"document_type": "judicial_record", "min_assurance": "self_declared", "max_age_days": 30},
    {"document_type": "passport", "min_assurance": "self_declared", "required": False},
    {"document_type": "marital_status", "min_assurance": "self_declared", "required": False},
]


@pytest.fixture
def env(kho_env: KhoEnv) -> KhoEnv:
    mount(kho_env)
    response = kho_env.client.put(
        f"/v1/admin/catalogue/procedures/{PROCEDURE}",
        json={
            "name_vi": "Thủ tục thử nghiệm tái sử dụng",
            "name_en": "Reuse test procedure",
            "level": "province",
            "requirements": REQUIREMENTS,
        },
        headers=kho_env.operator_headers(),
    )
    assert response.status_code == 201, response.text
    return kho_env


def today(env: KhoEnv) -> dt.date:
    return env.container.clock.now().astimezone(VIET_NAM).date()


def store(
    env: KhoEnv,
    owner: Owner,
    type_code: str,
    *,
    assurance: Assurance = Assurance.self_declared,
    issued_on: dt.date | None = None,
    expires_on: dt.date | None = None,
    versions: int = 1,
) -> uuid.UUID:
    """A paper with content, stored through the vault service (as a desk or an issuer would).

    Creation and each upload are units of work of their own, as over HTTP: an upload records
    its pending version in a transaction of its own, which on SQLite must not wait for ours.
    """
    container = env.container

    def service(session: Session) -> DocumentService:
        return DocumentService(
            session,
            container.objects,
            Keyring(session, container.keys, container.clock),
            UploadJournal(container.sessions, container.keys, container.clock),
            container.clock,
            max_upload_bytes=container.settings.max_upload_bytes,
        )

    with session_scope(container.sessions) as session:
        document_id = (
            service(session)
            .create(
                owner.account_id,
                DocumentCreate(
                    type_code=type_code,
                    title=f"{type_code} {uuid.uuid4().hex[:6]}",
                    issued_on=issued_on,
                    expires_on=expires_on,
                ),
            )
            .id
        )
    for _ in range(versions):
        with session_scope(container.sessions) as session:
            service(session).upload(
                owner.account_id,
                document_id,
                iter([b"%PDF-1.7\n" + os.urandom(2048)]),
                filename="giay.pdf",
                actor_id=owner.account_id,
                assurance=assurance,
            )
    return document_id


def plan(env: KhoEnv, owner: Owner, code: str = PROCEDURE) -> dict[str, Any]:
    response = env.client.get(f"/v1/procedures/{code}/reuse-plan", headers=env.headers(owner))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def requirement(body: dict[str, Any], type_code: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in body["requirements"] if r["document_type"] == type_code)
    return found


def test_met_with_the_chosen_document_and_version(env: KhoEnv) -> None:
    owner = env.citizen()
    cccd = store(env, owner, "cccd", assurance=Assurance.digitised)
    birth = store(env, owner, "birth_certificate", versions=2)
    record = store(env, owner, "judicial_record", issued_on=today(env) - dt.timedelta(days=3))
    body = plan(env, owner)
    assert body["procedure_code"] == PROCEDURE
    assert body["total"] == 5
    assert body["met"] == 3
    assert body["complete"] is True  # the two unmet ones are optional
    met = requirement(body, "birth_certificate")
    assert met["status"] == "met"
    assert met["document"]["document_id"] == str(birth)
    assert met["document"]["version"] == 2
    assert len(met["document"]["sha256"]) == 64
    assert requirement(body, "cccd")["document"]["document_id"] == str(cccd)
    judicial = requirement(body, "judicial_record")["document"]
    assert judicial["document_id"] == str(record)
    # The type's 6-month validity gives the paper an expiry date it did not print.
    assert judicial["expires_on"] is not None
    assert requirement(body, "passport")["status"] == "missing"
    assert requirement(body, "passport")["best_candidate"] is None


def test_missing_expired_too_weak_and_too_old(env: KhoEnv) -> None:
    owner = env.citizen()
    day = today(env)
    store(env, owner, "cccd", assurance=Assurance.self_declared)
    store(env, owner, "passport", expires_on=day - dt.timedelta(days=1))
    store(env, owner, "judicial_record", issued_on=day - dt.timedelta(days=45))
    # Six months' validity from its issue date has run out.
    store(env, owner, "marital_status", issued_on=day - dt.timedelta(days=200))
    body = plan(env, owner)
    assert body["complete"] is False
    assert body["met"] == 0
    weak = requirement(body, "cccd")
    assert weak["status"] == "assurance_too_low"
    assert weak["best_candidate"]["assurance"] == "self_declared"
    assert weak["document"] is None
    assert requirement(body, "birth_certificate")["status"] == "missing"
    expired = requirement(body, "passport")
    assert expired["status"] == "expired"
    assert expired["best_candidate"]["expires_on"] == (day - dt.timedelta(days=1)).isoformat()
    old = requirement(body, "judicial_record")
    # 45 days: still within the type's six months, but older than the procedure's 30 days.
    assert old["status"] == "too_old"
    assert old["reasons"] == ["too_old"]
    assert requirement(body, "marital_status")["status"] == "expired"


def test_too_old_counts_from_storage_when_the_issue_date_is_unknown(env: KhoEnv) -> None:
    owner = env.citizen()
    store(env, owner, "judicial_record")
    assert requirement(plan(env, owner), "judicial_record")["status"] == "met"
    clock = env.container.clock
    assert isinstance(clock, OffsetClock)
    clock.advance(dt.timedelta(days=40))
    old = requirement(plan(env, owner), "judicial_record")
    assert old["status"] == "too_old"
    assert old["reasons"] == ["too_old"]


def test_best_of_several(env: KhoEnv) -> None:
    owner = env.citizen()
    day = today(env)
    store(env, owner, "cccd", assurance=Assurance.self_declared, issued_on=day)
    store(env, owner, "cccd", assurance=Assurance.digitised, issued_on=day - dt.timedelta(days=900))
    newest_strong = store(
        env, owner, "cccd", assurance=Assurance.digitised, issued_on=day - dt.timedelta(days=100)
    )
    store(env, owner, "birth_certificate", issued_on=dt.date(1990, 5, 17))
    newer_birth = store(env, owner, "birth_certificate", issued_on=dt.date(2020, 1, 2))
    body = plan(env, owner)
    chosen = requirement(body, "cccd")
    assert chosen["candidates"] == 3
    assert chosen["document"]["document_id"] == str(newest_strong)
    assert requirement(body, "birth_certificate")["document"]["document_id"] == str(newer_birth)
    # An issued paper beats a newer digitised one.
    issued = store(
        env, owner, "cccd", assurance=Assurance.issued, issued_on=day - dt.timedelta(days=2000)
    )
    assert requirement(plan(env, owner), "cccd")["document"]["document_id"] == str(issued)


def test_never_another_owners_paper_nor_a_deleted_one(env: KhoEnv) -> None:
    owner, other = env.citizen(), env.citizen()
    theirs = store(env, other, "cccd", assurance=Assurance.issued)
    store(env, other, "birth_certificate")
    mine = store(env, owner, "birth_certificate")
    deleted = env.client.delete(f"/v1/documents/{mine}", headers=env.headers(owner))
    assert deleted.status_code in (200, 204)
    body = plan(env, owner)
    assert requirement(body, "cccd")["status"] == "missing"
    assert requirement(body, "birth_certificate")["status"] == "missing"
    assert str(theirs) not in str(body)
    assert requirement(plan(env, other), "cccd")["document"]["document_id"] == str(theirs)


def test_a_document_without_content_is_not_a_candidate(env: KhoEnv) -> None:
    owner = env.citizen()
    response = env.client.post(
        "/v1/documents",
        json={"type_code": "birth_certificate", "title": "Chưa tải lên"},
        headers=env.headers(owner),
    )
    assert response.status_code == 201
    assert requirement(plan(env, owner), "birth_certificate")["status"] == "missing"


def test_unknown_or_retired_procedure(env: KhoEnv) -> None:
    owner = env.citizen()
    response = env.client.get("/v1/procedures/KHO-KHONG-999/reuse-plan", headers=env.headers(owner))
    assert response.status_code == 404
    assert response.json()["code"] == "procedure_not_found"
    assert env.client.get(f"/v1/procedures/{PROCEDURE}/reuse-plan").status_code == 401


@contextmanager
def counted_queries(env: KhoEnv) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = env.container.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_plan_is_two_queries_however_many_papers(env: KhoEnv) -> None:
    owner = env.citizen()
    for type_code in ("cccd", "birth_certificate", "judicial_record", "passport", "diploma"):
        for _ in range(4):
            store(env, owner, type_code, assurance=Assurance.digitised)
    with env.container.sessions() as session, counted_queries(env) as statements:
        planned = ReusePlanner(session, env.container.clock).plan(owner.account_id, PROCEDURE)
    assert planned.met == 4
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, statements


# -- the agency's view -------------------------------------------------------------------------


def agency_plan(agency: AgencyClient, owner: Owner, code: str = PROCEDURE) -> Any:
    return agency.env.client.get(
        f"/v1/agency/owners/{owner.personal_id}/reuse-plan",
        params={"procedure": code},
        headers=agency.headers(),
    )


def reuse_log(env: KhoEnv, owner: Owner) -> list[tuple[str, str | None, uuid.UUID | None]]:
    with env.container.sessions() as session:
        rows = session.scalars(
            select(AccessLogEntry)
            .where(
                AccessLogEntry.owner_id == owner.account_id,
                AccessLogEntry.action == "reuse_plan.read",
            )
            .order_by(AccessLogEntry.seq)
        )
        return [(r.decision, r.reason, r.agency_id) for r in rows]


def test_agency_sees_a_plan_only_with_a_grant_or_a_pending_request(env: KhoEnv) -> None:
    x = make_agency(env, "CA-TN", "Công an tỉnh Thái Nguyên")
    y = make_agency(env, "STP-TN", "Sở Tư pháp tỉnh Thái Nguyên")
    owner = env.citizen()
    cccd = store(env, owner, "cccd", assurance=Assurance.digitised)

    refused = agency_plan(x, owner)
    assert refused.status_code == 404
    assert refused.json()["code"] == "reuse_plan_not_available"
    stranger = env.client.get(
        "/v1/agency/owners/019099000000/reuse-plan",
        params={"procedure": PROCEDURE},
        headers=x.headers(),
    )
    assert stranger.status_code == 404
    assert stranger.json()["code"] == "reuse_plan_not_available"

    pending = x.request(owner.personal_id, [{"document_type": "cccd"}], procedure_code=PROCEDURE)
    allowed = agency_plan(x, owner)
    assert allowed.status_code == 200, allowed.text
    seen = allowed.json()
    cccd_row = next(r for r in seen["requirements"] if r["document_type"] == "cccd")
    assert cccd_row["status"] == "met"
    assert cccd_row["available_assurance"] == "digitised"
    assert str(cccd) not in allowed.text  # no ids, titles or hashes for an agency
    assert "sha256" not in allowed.text
    assert agency_plan(y, owner).status_code == 404  # another agency's request does not count

    decided = decide(env, owner, pending["id"], decision="grant", document_ids=[str(cccd)])
    assert decided["grant"]["id"]
    assert agency_plan(x, owner).status_code == 200  # an active grant
    revoked = env.client.post(
        f"/v1/grants/{decided['grant']['id']}/revoke", headers=env.headers(owner)
    )
    assert revoked.status_code == 200, revoked.text
    assert agency_plan(x, owner).status_code == 404  # revoked, and nothing pending

    denied = x.request(owner.personal_id, [{"document_type": "cccd"}], procedure_code=PROCEDURE)
    decide(env, owner, denied["id"], decision="deny")
    assert agency_plan(x, owner).status_code == 404

    unknown = x.request(owner.personal_id, [{"document_type": "cccd"}])
    assert unknown["status"] == "pending"
    missing = agency_plan(x, owner, "KHO-KHONG-999")
    assert missing.status_code == 404
    assert missing.json()["code"] == "procedure_not_found"

    log = reuse_log(env, owner)
    assert log.count(("allowed", None, x.agency_id)) == 2
    assert ("denied", "reuse_plan_not_available", y.agency_id) in log
    assert log.count(("denied", "reuse_plan_not_available", x.agency_id)) == 3


# -- statistics --------------------------------------------------------------------------------


def test_reuse_statistics_per_procedure_and_agency(env: KhoEnv) -> None:
    x = make_agency(env, "CA-TN", "Công an tỉnh Thái Nguyên")
    owner = env.citizen()
    cccd = store(env, owner, "cccd", assurance=Assurance.digitised)
    birth = store(env, owner, "birth_certificate")
    started = env.container.clock.now() - dt.timedelta(minutes=1)
    asked = x.request(
        owner.personal_id,
        [{"document_type": "cccd"}, {"document_type": "birth_certificate"}],
        procedure_code=PROCEDURE,
    )
    decide(env, owner, asked["id"], decision="grant", document_ids=[str(cccd), str(birth)])
    with session_scope(env.container.sessions) as session:
        session.add(
            ReRequest(
                agency_id=x.agency_id,
                owner_id=owner.account_id,
                document_type="cccd",
                procedure_code=PROCEDURE,
                held_document_id=cccd,
                created_at=env.container.clock.now(),
            )
        )
    ended = env.container.clock.now() + dt.timedelta(minutes=1)
    response = env.client.get(
        "/v1/admin/statistics/reuse",
        params={"from": started.isoformat(), "to": ended.isoformat()},
        headers=env.operator_headers(),
    )
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["overall"] == {"shared_from_store": 2, "asked_again": 1, "reuse_rate": 0.6667}
    procedure = next(p for p in stats["procedures"] if p["procedure_code"] == PROCEDURE)
    assert procedure["name_vi"] == "Thủ tục thử nghiệm tái sử dụng"
    assert procedure["consent_requests"] == 1
    assert procedure["reuse_rate"] == 0.6667
    agency = next(a for a in stats["agencies"] if a["agency_id"] == str(x.agency_id))
    assert agency["agency_code"] == "CA-TN"
    assert (agency["shared_from_store"], agency["asked_again"]) == (2, 1)
    assert "Reuse rate" in stats["definition"]

    before = env.client.get(
        "/v1/admin/statistics/reuse",
        params={"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"},
        headers=env.operator_headers(),
    ).json()
    assert before["overall"]["reuse_rate"] is None
    assert before["procedures"] == []
    backwards = env.client.get(
        "/v1/admin/statistics/reuse",
        params={"from": ended.isoformat(), "to": started.isoformat()},
        headers=env.operator_headers(),
    )
    assert backwards.status_code == 422
