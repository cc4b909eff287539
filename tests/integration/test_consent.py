"""Consent end to end through the HTTP API: agencies ask, owners decide, grants are checked at
every fetch, and every decision — allowed or refused — lands in the owner's access log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import select

from common.clock import OffsetClock
from consent.models import AccessLogEntry
from tests.agencies import AgencyClient, make_agency
from tests.conftest import KhoEnv, Owner
from tests.integration.test_documents_api import create_document, pdf_bytes, upload


@pytest.fixture
def world(kho_env: KhoEnv) -> tuple[KhoEnv, AgencyClient, AgencyClient]:
    x = make_agency(kho_env, "CA-TN", "Công an tỉnh Thái Nguyên")
    y = make_agency(kho_env, "STP-TN", "Sở Tư pháp tỉnh Thái Nguyên")
    return kho_env, x, y


def paper(env: KhoEnv, owner: Owner, type_code: str, seed: int) -> tuple[str, bytes]:
    doc = create_document(env, owner, type_code=type_code, title=type_code)
    data = pdf_bytes(100_000 + seed, seed=seed)
    assert upload(env, owner, doc["id"], data).status_code == 201
    return doc["id"], data


def log_of(env: KhoEnv, owner: Owner) -> list[AccessLogEntry]:
    with env.container.sessions() as session:
        return list(
            session.scalars(
                select(AccessLogEntry)
                .where(AccessLogEntry.owner_id == owner.account_id)
                .order_by(AccessLogEntry.seq)
            )
        )


def decide(env: KhoEnv, owner: Owner, request_id: str, **body: Any) -> dict[str, Any]:
    response = env.client.post(
        f"/v1/consents/{request_id}/decision", json=body, headers=env.headers(owner)
    )
    assert response.status_code == 200, response.text
    decided: dict[str, Any] = response.json()
    return decided


def fetch(agency: AgencyClient, grant_id: str, document_id: str) -> Any:
    return agency.env.client.get(
        f"/v1/agency/grants/{grant_id}/documents/{document_id}/content", headers=agency.headers()
    )


def test_lifecycle_partial_grant_once_and_exhaustion(
    world: tuple[KhoEnv, AgencyClient, AgencyClient],
) -> None:
    env, x, _y = world
    owner = env.citizen()
    birth_id, birth = paper(env, owner, "birth_certificate", 1)
    cccd_id, _cccd = paper(env, owner, "cccd", 2)
    created = x.request(
        owner.personal_id, [{"document_type": "birth_certificate"}, {"document_type": "cccd"}]
    )
    assert created["status"] == "pending"

    inbox = env.client.get("/v1/consents", headers=env.headers(owner)).json()["items"]
    assert [i["request"]["id"] for i in inbox] == [created["id"]]
    detail = env.client.get(f"/v1/consents/{created['id']}", headers=env.headers(owner)).json()
    previewed = {m["document_id"] for item in detail["request"]["items"] for m in item["matches"]}
    assert previewed == {birth_id, cccd_id}
    assert detail["request"]["agency_name_vi"] == "Công an tỉnh Thái Nguyên"

    decided = decide(env, owner, created["id"], decision="grant", document_ids=[birth_id])
    assert decided["request"]["status"] == "partially_granted"
    grant = decided["grant"]
    assert [d["document_id"] for d in grant["documents"]] == [birth_id]

    # The artefact verifies with a generic JOSE library and only Kho's published keys.
    keys = KeySet.import_key_set(env.client.get("/.well-known/jwks.json").json())
    artefact = jws.deserialize_compact(grant["artefact"], keys, algorithms=["ES256"])
    assert artefact.headers()["typ"] == "kho-consent+jwt"
    import json

    claims = json.loads(artefact.payload)
    assert claims["jti"] == grant["id"]
    assert claims["documents"][0]["sha256"] == grant["documents"][0]["sha256"]
    assert claims["purpose"] == "Giải quyết thủ tục đăng ký thường trú"
    assert owner.personal_id not in artefact.payload.decode()

    followed = env.client.get(
        f"/v1/agency/consent-requests/{created['id']}", headers=x.headers()
    ).json()
    assert followed["request"]["status"] == "partially_granted"
    assert followed["grant"]["id"] == grant["id"]

    first = fetch(x, grant["id"], birth_id)
    assert first.status_code == 200
    assert first.content == birth
    again = fetch(x, grant["id"], birth_id)
    assert again.status_code == 403
    assert again.json()["code"] == "grant_exhausted"
    other = fetch(x, grant["id"], cccd_id)
    assert other.status_code == 404
    assert other.json()["code"] == "document_not_in_grant"

    entries = log_of(env, owner)
    summary = [(e.action, e.decision, e.reason) for e in entries]
    assert ("consent.request", "allowed", None) in summary
    assert ("consent.decide", "allowed", None) in summary
    assert summary.count(("document.fetch", "allowed", None)) == 1
    assert ("document.fetch", "denied", "grant_exhausted") in summary
    assert ("document.fetch", "denied", "document_not_in_grant") in summary
    receipt = env.client.get(f"/v1/grants/{grant['id']}/receipt", headers=env.headers(owner)).json()
    assert receipt["record_id"] == grant["id"]
    assert receipt["consent"]["status"] == "exhausted"


def test_repeated_window_expiry_revocation_and_lapse(
    world: tuple[KhoEnv, AgencyClient, AgencyClient],
) -> None:
    env, x, _y = world
    clock = env.container.clock
    assert isinstance(clock, OffsetClock)
    owner = env.citizen()
    birth_id, _birth = paper(env, owner, "birth_certificate", 3)
    until = (clock.now() + dt.timedelta(days=2)).isoformat()
    created = x.request(
        owner.personal_id,
        [{"document_type": "birth_certificate"}],
        access_mode="repeated",
        max_uses=3,
        access_until=until,
    )
    grant = decide(env, owner, created["id"], decision="grant")["grant"]
    assert grant["status"] == "active"
    for _ in range(3):
        assert fetch(x, grant["id"], birth_id).status_code == 200
    used_up = fetch(x, grant["id"], birth_id)
    assert used_up.status_code == 403
    assert used_up.json()["code"] == "grant_exhausted"

    second = x.request(
        owner.personal_id,
        [{"document_type": "birth_certificate"}],
        access_mode="repeated",
        max_uses=50,
        access_until=until,
    )
    window = decide(env, owner, second["id"], decision="grant")["grant"]
    assert fetch(x, window["id"], birth_id).status_code == 200
    clock.advance(dt.timedelta(days=3))
    expired = fetch(x, window["id"], birth_id)
    assert expired.status_code == 403
    assert expired.json()["code"] == "grant_expired"

    until = (clock.now() + dt.timedelta(days=2)).isoformat()
    third = x.request(
        owner.personal_id,
        [{"document_type": "birth_certificate"}],
        access_mode="repeated",
        max_uses=50,
        access_until=until,
    )
    revocable = decide(env, owner, third["id"], decision="grant")["grant"]
    assert fetch(x, revocable["id"], birth_id).status_code == 200
    revoked = env.client.post(f"/v1/grants/{revocable['id']}/revoke", headers=env.headers(owner))
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    refused = fetch(x, revocable["id"], birth_id)
    assert refused.status_code == 403
    assert refused.json()["code"] == "grant_revoked"

    lapsing = x.request(
        owner.personal_id, [{"document_type": "birth_certificate"}], lapses_in_days=1
    )
    denied = x.request(owner.personal_id, [{"document_type": "birth_certificate"}])
    assert decide(env, owner, denied["id"], decision="deny")["request"]["status"] == "denied"
    clock.advance(dt.timedelta(days=2))
    late = env.client.post(
        f"/v1/consents/{lapsing['id']}/decision",
        json={"decision": "grant"},
        headers=env.headers(owner),
    )
    assert late.status_code == 409
    assert late.json()["code"] == "consent_request_lapsed"
    statuses = {
        i["request"]["id"]: i["request"]["status"]
        for i in env.client.get("/v1/consents", headers=env.headers(owner)).json()["items"]
    }
    assert statuses[lapsing["id"]] == "lapsed"
    assert statuses[denied["id"]] == "denied"
    twice = env.client.post(
        f"/v1/consents/{denied['id']}/decision",
        json={"decision": "grant"},
        headers=env.headers(owner),
    )
    assert twice.status_code == 409


def test_authorization_matrix_refusals_are_logged(
    world: tuple[KhoEnv, AgencyClient, AgencyClient],
) -> None:
    env, x, y = world
    alice, bob = env.citizen(), env.citizen()
    birth_id, _ = paper(env, alice, "birth_certificate", 5)
    cccd_id, _ = paper(env, alice, "cccd", 6)
    created = x.request(alice.personal_id, [{"document_type": "birth_certificate"}])
    grant = decide(env, alice, created["id"], decision="grant")["grant"]

    # Agency Y using agency X's grant.
    stolen = fetch(y, grant["id"], birth_id)
    assert stolen.status_code == 404
    assert stolen.json()["code"] == "grant_not_found"
    listing = env.client.get(f"/v1/agency/grants/{grant['id']}/documents", headers=y.headers())
    assert listing.status_code == 404
    # A grant for document A used for document B.
    wrong_doc = fetch(x, grant["id"], cccd_id)
    assert wrong_doc.status_code == 404
    assert wrong_doc.json()["code"] == "document_not_in_grant"
    # A citizen reading, deciding on or revoking another citizen's consents.
    for method, url, body in (
        ("GET", f"/v1/consents/{created['id']}", None),
        ("POST", f"/v1/consents/{created['id']}/decision", {"decision": "deny"}),
        ("GET", f"/v1/grants/{grant['id']}", None),
        ("POST", f"/v1/grants/{grant['id']}/revoke", None),
    ):
        r = env.client.request(method, url, json=body, headers=env.headers(bob))
        assert r.status_code == 404, (url, r.text)
    assert env.client.get("/v1/consents", headers=env.headers(bob)).json()["items"] == []
    # Y cannot follow X's request; a citizen token cannot use the agency API at all.
    assert (
        env.client.get(
            f"/v1/agency/consent-requests/{created['id']}", headers=y.headers()
        ).status_code
        == 404
    )
    assert (
        env.client.get(
            f"/v1/agency/consent-requests/{created['id']}", headers=env.headers(alice)
        ).status_code
        == 403
    )

    denied = [
        (e.action, e.reason, e.actor_id) for e in log_of(env, alice) if e.decision == "denied"
    ]
    assert ("document.fetch", "grant_not_found", y.client_id) in denied
    assert ("grant.documents", "grant_not_found", y.client_id) in denied
    assert ("document.fetch", "document_not_in_grant", x.client_id) in denied
    assert ("consent.read", "consent_request_not_found", str(bob.account_id)) in denied
    assert ("consent.decide", "consent_request_not_found", str(bob.account_id)) in denied
    # The grant still works for its agency after all that.
    assert fetch(x, grant["id"], birth_id).status_code == 200


def test_a_delegate_decides_and_both_identities_are_logged(
    world: tuple[KhoEnv, AgencyClient, AgencyClient],
) -> None:
    env, x, _y = world
    owner, helper = env.citizen(), env.citizen()
    paper(env, owner, "birth_certificate", 7)
    delegated = env.client.post(
        "/v1/delegations",
        json={
            "delegate_personal_id": helper.personal_id,
            "scope": ["consents:decide"],
            "kind": "delegation",
            "valid_until": (env.container.clock.now() + dt.timedelta(days=30)).isoformat(),
        },
        headers=env.headers(owner),
    )
    assert delegated.status_code == 201, delegated.text
    created = x.request(owner.personal_id, [{"document_type": "birth_certificate"}])
    as_owner = {"X-On-Behalf-Of": str(owner.account_id)}
    decision = env.client.post(
        f"/v1/consents/{created['id']}/decision",
        json={"decision": "grant"},
        headers=env.headers(helper, **as_owner),
    )
    assert decision.status_code == 200, decision.text
    entry = next(e for e in log_of(env, owner) if e.action == "consent.decide")
    assert entry.actor_kind == "delegate"
    assert entry.actor_id == str(helper.account_id)
    assert entry.on_behalf_of == str(owner.account_id)
    stranger = env.citizen()
    refused = env.client.get("/v1/consents", headers=env.headers(stranger, **as_owner))
    assert refused.status_code == 403


def test_bad_requests_get_clear_errors(world: tuple[KhoEnv, AgencyClient, AgencyClient]) -> None:
    env, x, _y = world
    owner = env.citizen()
    for body, code in (
        ({"subject_personal_id": "019090009999"}, "subject_not_found"),
        ({"items": []}, "invalid_consent_request"),
        ({"items": [{"document_type": "cccd", "document_id": str(uuid.uuid4())}]}, "invalid_input"),
        ({"access_mode": "repeated"}, "invalid_input"),
        ({"retention_days": -1}, "invalid_input"),
    ):
        full = {
            "subject_personal_id": owner.personal_id,
            "purpose": "Kiểm tra",
            "procedure_code": "1.0",
            "items": [{"document_type": "cccd"}],
            "retention_days": 10,
            **body,
        }
        r = env.client.post("/v1/agency/consent-requests", json=full, headers=x.headers())
        assert r.status_code in (404, 422), r.text
        assert r.json()["code"] == code
    created = x.request(owner.personal_id, [{"document_type": "cccd"}])
    nothing = env.client.post(
        f"/v1/consents/{created['id']}/decision",
        json={"decision": "grant"},
        headers=env.headers(owner),
    )
    assert nothing.status_code == 422
    assert nothing.json()["code"] == "invalid_decision"
