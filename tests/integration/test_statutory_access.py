"""Access without consent under a legal provision: two officials, and the owner is shown it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from common.clock import OffsetClock
from tests.agencies import AgencyClient, make_agency
from tests.conftest import KhoEnv, Owner
from tests.integration.test_consent import log_of, paper


def official(env: KhoEnv, agency: AgencyClient, roles: list[str]) -> Owner:
    person = env.citizen()
    response = env.client.post(
        f"/v1/admin/agencies/{agency.agency_id}/officials",
        json={"personal_id": person.personal_id, "full_name": "Cán bộ thử", "roles": roles},
        headers=env.operator_headers(),
    )
    assert response.status_code == 201, response.text
    return person


def ask(env: KhoEnv, processor: Owner, body: dict[str, Any]) -> Any:
    return env.client.post("/v1/agency/statutory-access", json=body, headers=env.headers(processor))


def test_statutory_access_needs_a_second_approver_and_is_shown_to_the_owner(
    kho_env: KhoEnv,
) -> None:
    env = kho_env
    clock = env.container.clock
    assert isinstance(clock, OffsetClock)
    police = make_agency(env, "CA-TN", "Công an tỉnh Thái Nguyên")
    processor = official(env, police, ["processor"])
    approver = official(env, police, ["approver"])
    owner = env.citizen()
    doc_id, data = paper(env, owner, "cccd", 11)
    base = {
        "subject_personal_id": owner.personal_id,
        "legal_reference": "Điều 11.3 Quyết định 55/2024/QĐ-UBND",
        "purpose": "Xác minh theo yêu cầu của cơ quan điều tra",
        "document_ids": [doc_id],
    }

    # Disclosed at once.
    created = ask(env, processor, base)
    assert created.status_code == 201, created.text
    access = created.json()
    assert access["status"] == "awaiting_approval"
    url = f"/v1/agency/statutory-access/{access['id']}"
    too_early = env.client.get(f"{url}/documents/{doc_id}/content", headers=env.headers(processor))
    assert too_early.status_code == 403
    assert too_early.json()["code"] == "statutory_access_not_approved"
    self_approval = env.client.post(
        f"{url}/approval", json={"approve": True}, headers=env.headers(processor)
    )
    assert self_approval.status_code == 403
    assert self_approval.json()["code"] == "second_approver_required"
    approved = env.client.post(
        f"{url}/approval", json={"approve": True}, headers=env.headers(approver)
    )
    assert approved.status_code == 200, approved.text
    got = env.client.get(f"{url}/documents/{doc_id}/content", headers=env.headers(processor))
    assert got.status_code == 200
    assert got.content == data
    # Bound to the official who asked: not the approver, not a colleague with the same role.
    colleague = official(env, police, ["processor", "receptionist"])
    for someone in (approver, colleague):
        refused = env.client.get(f"{url}/documents/{doc_id}/content", headers=env.headers(someone))
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "not_the_requesting_official"
        assert b"%PDF" not in refused.content
    shown = env.client.get("/v1/statutory-access", headers=env.headers(owner)).json()
    assert [a["id"] for a in shown] == [access["id"]]
    assert shown[0]["legal_reference"] == base["legal_reference"]
    kinds = [
        n["kind"] for n in env.client.get("/v1/notifications", headers=env.headers(owner)).json()
    ]
    assert "statutory.approved" in kinds

    # Disclosed only when the stated date passes.
    later = (clock.now() + dt.timedelta(days=10)).isoformat()
    deferred = ask(env, processor, {**base, "disclose_at": later}).json()
    env.client.post(
        f"/v1/agency/statutory-access/{deferred['id']}/approval",
        json={"approve": True},
        headers=env.headers(approver),
    )
    ids = [
        a["id"] for a in env.client.get("/v1/statutory-access", headers=env.headers(owner)).json()
    ]
    assert deferred["id"] not in ids
    clock.advance(dt.timedelta(days=11))
    ids = [
        a["id"] for a in env.client.get("/v1/statutory-access", headers=env.headers(owner)).json()
    ]
    assert deferred["id"] in ids

    entries = [(e.action, e.decision, e.reason) for e in log_of(env, owner)]
    assert ("statutory.fetch", "allowed", None) in entries
    assert ("statutory.fetch", "denied", "statutory_access_not_approved") in entries
    assert entries.count(("statutory.fetch", "denied", "not_the_requesting_official")) == 2

    # Another agency's officials see nothing; a citizen who is no official cannot ask.
    other = make_agency(env, "STP-TN", "Sở Tư pháp")
    outsider = official(env, other, ["processor", "approver"])
    assert env.client.get(url, headers=env.headers(outsider)).status_code == 404
    assert ask(env, env.citizen(), base).status_code == 403


def test_a_deferred_statutory_access_is_withheld_from_the_log_until_its_date(
    kho_env: KhoEnv,
) -> None:
    env = kho_env
    clock = env.container.clock
    assert isinstance(clock, OffsetClock)
    police = make_agency(env, "CA-TN", "Công an tỉnh Thái Nguyên")
    processor = official(env, police, ["processor"])
    approver = official(env, police, ["approver"])
    owner = env.citizen()
    doc_id, _data = paper(env, owner, "cccd", 12)
    later = (clock.now() + dt.timedelta(days=5)).isoformat()
    access = ask(
        env,
        processor,
        {
            "subject_personal_id": owner.personal_id,
            "legal_reference": "Điều 11.3 Quyết định 55/2024/QĐ-UBND",
            "purpose": "Điều tra",
            "document_ids": [doc_id],
            "disclose_at": later,
        },
    ).json()
    url = f"/v1/agency/statutory-access/{access['id']}"
    env.client.post(f"{url}/approval", json={"approve": True}, headers=env.headers(approver))
    assert (
        env.client.get(
            f"{url}/documents/{doc_id}/content", headers=env.headers(processor)
        ).status_code
        == 200
    )
    env.client.post("/v1/admin/access-log/checkpoints", headers=env.operator_headers())

    def statutory_items() -> list[dict[str, Any]]:
        items = env.client.get("/v1/access-log", headers=env.headers(owner)).json()["items"]
        return [i for i in items if i.get("withheld") or i.get("action") == "statutory.fetch"]

    hidden = statutory_items()
    assert len(hidden) == 1
    assert hidden[0]["withheld"] is True
    assert hidden[0]["action"] is None
    assert hidden[0]["agency_id"] is None
    # The proof still checks out with the withheld entry in the chain.
    from consent.audit import InclusionProof, verify_inclusion

    proof = env.client.get("/v1/access-log/proof", headers=env.headers(owner)).json()
    jwks = env.client.get("/.well-known/jwks.json").json()
    verify_inclusion(InclusionProof.from_json(proof), proof["entries"], jwks)
    clock.advance(dt.timedelta(days=6))
    shown = statutory_items()
    assert shown[0]["withheld"] is False
    assert shown[0]["action"] == "statutory.fetch"
    assert shown[0]["statutory_id"] == access["id"]
