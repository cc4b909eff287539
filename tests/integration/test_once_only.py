"""Once-only, end to end: an agency issues a paper, a later procedure finds it in the store, the
next agency asks by procedure, the owner grants, and the agency receives exactly the issued
bytes."""

from __future__ import annotations

import hashlib

from joserfc.jwk import ECKey

from tests.agencies import AgencyClient, make_agency
from tests.conftest import KhoEnv
from tests.integration.test_consent import decide
from tests.integration.test_documents_api import pdf_bytes
from tests.integration.test_issuance import issue, issuer  # noqa: F401 - the fixture
from tests.integration.test_statutory_access import official

PROCEDURE = "KHO-BHYT-001"  # cấp thẻ bảo hiểm y tế: CCCD (digitised) + birth certificate


def test_issued_once_reused_by_procedure(issuer: tuple[KhoEnv, AgencyClient, ECKey]) -> None:  # noqa: F811
    env, justice, key = issuer
    owner = env.citizen()
    # The Department of Justice issues a birth-registration extract into the citizen's store.
    extract = pdf_bytes(60_000, seed=41)
    issued = issue(env, justice, key, owner.personal_id, extract)
    # The citizen's identity card is digitised at a commune desk.
    desk = make_agency(env, "UBND-XA-2", "UBND xã Quyết Thắng")
    receptionist = official(env, desk, ["receptionist"])
    opened = env.client.post(
        "/v1/agency/desk/documents",
        json={
            "subject_personal_id": owner.personal_id,
            "document": {"type_code": "cccd", "title": "Căn cước công dân"},
        },
        headers=env.headers(receptionist),
    ).json()
    scan = env.client.put(
        opened["upload_url"], content=pdf_bytes(30_000, seed=42), headers=env.headers(receptionist)
    )
    assert scan.status_code == 201, scan.text

    # Later the citizen starts a procedure: the store already meets it.
    plan = env.client.get(
        f"/v1/procedures/{PROCEDURE}/reuse-plan", headers=env.headers(owner)
    ).json()
    assert plan["complete"] is True
    by_type = {r["document_type"]: r for r in plan["requirements"]}
    assert by_type["birth_certificate"]["status"] == "met"
    assert by_type["birth_certificate"]["document"]["document_id"] == issued["document_id"]

    # The social-insurance office asks by procedure, without listing papers.
    insurance = make_agency(env, "BHXH-TN", "Bảo hiểm xã hội tỉnh Thái Nguyên")
    request = insurance.request(owner.personal_id, [], procedure_code=PROCEDURE)
    asked = {i["document_type"] for i in request["items"]}
    assert {"cccd", "birth_certificate"} <= asked
    grant = decide(env, owner, request["id"], decision="grant")["grant"]
    shared = {d["document_type"]: d for d in grant["documents"]}
    assert shared["birth_certificate"]["sha256"] == hashlib.sha256(extract).hexdigest()
    fetched = env.client.get(
        f"/v1/agency/grants/{grant['id']}/documents/{issued['document_id']}/content",
        headers=insurance.headers(),
    )
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == hashlib.sha256(extract).hexdigest()
    verified = env.client.get("/v1/verify", params={"qr": issued["verify_qr"]}).json()
    assert verified["valid"] is True
    assert verified["issuer_code"] == "STP-TN"
