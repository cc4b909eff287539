"""Results issued by agencies (signed), digitisation at the desk, public verification and
re-requests — refused with clear codes when anything does not fit."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from tests.agencies import AgencyClient, make_agency
from tests.conftest import KhoEnv
from tests.integration.test_consent import paper
from tests.integration.test_documents_api import pdf_bytes
from tests.integration.test_statutory_access import official


def sign(key: ECKey, digest: str) -> str:
    """A detached compact JWS over the hex SHA-256 (RFC 7515 appendix F)."""
    full = jws.serialize_compact({"alg": "ES256", "kid": key.kid or ""}, digest.encode(), key)
    head, _payload, signature = full.split(".")
    return f"{head}..{signature}"


@pytest.fixture
def issuer(kho_env: KhoEnv) -> tuple[KhoEnv, AgencyClient, ECKey]:
    env = kho_env
    justice = make_agency(env, "STP-TN", "Sở Tư pháp tỉnh Thái Nguyên")
    key = ECKey.generate_key("P-256", parameters={"kid": "stp-tn-2026"})
    ops = env.operator_headers()
    rights = env.client.put(
        f"/v1/admin/agencies/{justice.agency_id}/issuing-rights",
        json={"document_types": ["birth_certificate", "judicial_record"]},
        headers=ops,
    )
    assert rights.status_code == 200, rights.text
    added = env.client.post(
        f"/v1/admin/agencies/{justice.agency_id}/signing-keys",
        json={"jwk": key.as_dict(private=False)},
        headers=ops,
    )
    assert added.status_code == 201, added.text
    return env, justice, key


def declare(env: KhoEnv, agency: AgencyClient, body: dict[str, Any]) -> Any:
    return env.client.post("/v1/agency/issued-documents", json=body, headers=agency.headers())


def issue(
    env: KhoEnv, agency: AgencyClient, key: ECKey, personal_id: str, data: bytes
) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    declared = declare(
        env,
        agency,
        {
            "subject_personal_id": personal_id,
            "document": {
                "type_code": "birth_certificate",
                "title": "Trích lục khai sinh",
                "number": "123/2026/TLKS",
                "issued_on": "2026-11-20",
            },
            "sha256": digest,
            "signature": sign(key, digest),
        },
    )
    assert declared.status_code == 201, declared.text
    slot = declared.json()
    uploaded = env.client.put(slot["upload_url"], content=data, headers=agency.headers())
    assert uploaded.status_code == 201, uploaded.text
    result: dict[str, Any] = uploaded.json()
    return result


def test_an_issued_result_lands_as_issued_and_verifies(
    issuer: tuple[KhoEnv, AgencyClient, ECKey],
) -> None:
    env, justice, key = issuer
    owner = env.citizen()
    data = pdf_bytes(50_000, seed=31)
    result = issue(env, justice, key, owner.personal_id, data)
    assert result["content"]["assurance"] == "issued"
    assert result["content"]["sha256"] == hashlib.sha256(data).hexdigest()
    doc_id = result["document_id"]
    mine = env.client.get(f"/v1/documents/{doc_id}", headers=env.headers(owner)).json()
    assert mine["assurance"] == "issued"
    assert (
        env.client.get(f"/v1/documents/{doc_id}/content", headers=env.headers(owner)).content
        == data
    )
    kinds = [
        n["kind"] for n in env.client.get("/v1/notifications", headers=env.headers(owner)).json()
    ]
    assert "document.issued" in kinds

    checked = env.client.get("/v1/verify", params={"qr": result["verify_qr"]}).json()
    assert checked["valid"] is True
    assert checked["issuer_code"] == "STP-TN"
    assert checked["number"] == "123/2026/TLKS"
    assert owner.personal_id not in str(checked)
    wrong = env.client.get(
        "/v1/verify", params={"document_id": doc_id, "sha256": hashlib.sha256(b"x").hexdigest()}
    ).json()
    assert wrong == {**wrong, "valid": False, "issuer_code": None}
    revoked = env.client.post(
        f"/v1/agency/issued-documents/{doc_id}/revoke",
        json={"reason": "Cấp nhầm"},
        headers=justice.headers(),
    )
    assert revoked.status_code == 200
    after = env.client.get("/v1/verify", params={"qr": result["verify_qr"]}).json()
    assert after["valid"] is False
    assert after["revoked"] is True
    assert after["revocation_reason"] == "Cấp nhầm"


def test_forged_signature_other_key_wrong_hash_and_type_are_refused(
    issuer: tuple[KhoEnv, AgencyClient, ECKey],
) -> None:
    env, justice, key = issuer
    owner = env.citizen()
    data = pdf_bytes(20_000, seed=32)
    digest = hashlib.sha256(data).hexdigest()
    base = {
        "subject_personal_id": owner.personal_id,
        "document": {"type_code": "birth_certificate", "title": "Trích lục khai sinh"},
        "sha256": digest,
    }
    # A signature over other bytes.
    forged = declare(
        env, justice, {**base, "signature": sign(key, hashlib.sha256(b"other").hexdigest())}
    )
    assert forged.status_code == 422
    assert forged.json()["code"] == "invalid_issuer_signature"
    # A key of another agency (registered to it, not to this one).
    police = make_agency(env, "CA-TN", "Công an tỉnh")
    police_key = ECKey.generate_key("P-256", parameters={"kid": "ca-tn-1"})
    env.client.post(
        f"/v1/admin/agencies/{police.agency_id}/signing-keys",
        json={"jwk": police_key.as_dict(private=False)},
        headers=env.operator_headers(),
    )
    other_key = declare(env, justice, {**base, "signature": sign(police_key, digest)})
    assert other_key.status_code == 422
    assert other_key.json()["code"] == "unknown_issuer_key"
    # A key nobody registered, claiming this agency's kid.
    impostor = ECKey.generate_key("P-256", parameters={"kid": "stp-tn-2026"})
    impersonated = declare(env, justice, {**base, "signature": sign(impostor, digest)})
    assert impersonated.status_code == 422
    assert impersonated.json()["code"] == "invalid_issuer_signature"
    # A type this agency may not issue.
    passport = declare(
        env,
        justice,
        {
            **base,
            "document": {"type_code": "passport", "title": "Hộ chiếu"},
            "signature": sign(key, digest),
        },
    )
    assert passport.status_code == 403
    assert passport.json()["code"] == "not_allowed_to_issue"
    # Bytes that do not hash to the signed value: refused, nothing kept.
    slot = declare(env, justice, {**base, "signature": sign(key, digest)}).json()
    objects_before = len(list(env.container.objects.list("")))
    tampered = env.client.put(slot["upload_url"], content=data + b"x", headers=justice.headers())
    assert tampered.status_code == 422
    assert tampered.json()["code"] == "content_hash_mismatch"
    assert len(list(env.container.objects.list(""))) == objects_before
    # Another agency cannot fill this agency's slot.
    stolen = env.client.put(slot["upload_url"], content=data, headers=police.headers())
    assert stolen.status_code == 404
    ok = env.client.put(slot["upload_url"], content=data, headers=justice.headers())
    assert ok.status_code == 201


def test_digitisation_at_the_desk_records_the_official(kho_env: KhoEnv) -> None:
    env = kho_env
    desk = make_agency(env, "UBND-XA-1", "UBND xã Phúc Hà")
    receptionist = official(env, desk, ["receptionist"])
    processor = official(env, desk, ["processor"])
    citizen = env.citizen()
    body = {
        "subject_personal_id": citizen.personal_id,
        "document": {"type_code": "marriage_certificate", "title": "Giấy chứng nhận kết hôn"},
    }
    refused = env.client.post(
        "/v1/agency/desk/documents", json=body, headers=env.headers(processor)
    )
    assert refused.status_code == 403
    opened = env.client.post(
        "/v1/agency/desk/documents", json=body, headers=env.headers(receptionist)
    )
    assert opened.status_code == 201, opened.text
    scan = b"\xff\xd8\xff\xe0" + pdf_bytes(30_000, seed=33)[4:]
    done = env.client.put(
        opened.json()["upload_url"], content=scan, headers=env.headers(receptionist)
    )
    assert done.status_code == 201, done.text
    assert done.json()["content"]["assurance"] == "digitised"
    assert done.json()["content"]["media_type"] == "image/jpeg"
    doc_id = opened.json()["document_id"]
    provenance = env.client.get(
        f"/v1/documents/{doc_id}/provenance", headers=env.headers(citizen)
    ).json()
    assert provenance["1"]["digitised_by_agency"] == "UBND-XA-1"
    assert provenance["1"]["assurance"] == "digitised"


def test_asking_again_for_a_held_paper_is_recorded_and_reported(kho_env: KhoEnv) -> None:
    env = kho_env
    agency = make_agency(env, "CA-TN", "Công an tỉnh")
    owner = env.citizen()
    first = env.client.post(
        "/v1/agency/document-requests",
        json={"subject_personal_id": owner.personal_id, "document_type": "cccd"},
        headers=agency.headers(),
    ).json()
    assert first["already_held"] is False
    paper(env, owner, "cccd", 34)
    again = env.client.post(
        "/v1/agency/document-requests",
        json={"subject_personal_id": owner.personal_id, "document_type": "cccd"},
        headers=agency.headers(),
    ).json()
    assert again["already_held"] is True
    assert again["re_request_id"]
    kinds = [
        n["kind"] for n in env.client.get("/v1/notifications", headers=env.headers(owner)).json()
    ]
    assert "document.requested_again" in kinds
    report = env.client.get("/v1/admin/reports/re-requests", headers=env.operator_headers()).json()
    assert {k: v for k, v in report[0].items() if k != "agency_id"} == {
        "agency_code": "CA-TN",
        "re_requests": 1,
    }
