"""The owner's store through the HTTP API, on the embedded backends and on PostgreSQL + MinIO."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import Response

from storage.db import session_scope
from storage.repository import IdempotencyRepository
from tests.conftest import KhoEnv, Owner


def pdf_bytes(size: int, seed: int = 0) -> bytes:
    head = b"%PDF-1.7\n"
    rng = random.Random(seed)
    return head + rng.randbytes(max(0, size - len(head)))


def create_document(env: KhoEnv, owner: Owner, **fields: object) -> dict[str, Any]:
    body = {"type_code": "birth_certificate", "title": "Giấy khai sinh", **fields}
    response = env.client.post("/v1/documents", json=body, headers=env.headers(owner))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def upload(env: KhoEnv, owner: Owner, document_id: str, data: bytes, **headers: str) -> Response:
    response: Response = env.client.put(
        f"/v1/documents/{document_id}/content",
        content=data,
        headers=env.headers(owner, **headers),
    )
    return response


def test_upload_download_round_trip_with_metadata(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    doc = create_document(kho_env, owner, number="123/2024", issued_on="2024-01-02")
    data = pdf_bytes(300_000, seed=1)
    response = upload(
        kho_env,
        owner,
        doc["id"],
        data,
        **{"Content-Disposition": "attachment; filename*=UTF-8''Gi%E1%BA%A5y%20khai%20sinh.pdf"},
    )
    assert response.status_code == 201, response.text
    content = response.json()["content"]
    assert content["sha256"] == hashlib.sha256(data).hexdigest()
    assert content["media_type"] == "application/pdf"
    assert content["filename"] == "Giấy khai sinh.pdf"
    assert content["version"] == 1

    got = kho_env.client.get(f"/v1/documents/{doc['id']}/content", headers=kho_env.headers(owner))
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["etag"] == f'"{content["sha256"]}"'
    assert got.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''Gi%E1%BA%A5y%20khai%20sinh.pdf" in got.headers["content-disposition"]

    meta = kho_env.client.get(f"/v1/documents/{doc['id']}", headers=kho_env.headers(owner)).json()
    assert meta["current_version"] == 1
    assert meta["content"]["size"] == len(data)
    assert meta["assurance"] == "self_declared"


def test_ranges_and_conditional_requests(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    doc = create_document(kho_env, owner)
    data = pdf_bytes(200_003, seed=2)
    assert upload(kho_env, owner, doc["id"], data).status_code == 201
    url = f"/v1/documents/{doc['id']}/content"
    rng = random.Random(7)
    for _ in range(12):
        start = rng.randrange(0, len(data))
        end = rng.randrange(start, len(data))
        r = kho_env.client.get(url, headers=kho_env.headers(owner, Range=f"bytes={start}-{end}"))
        assert r.status_code == 206
        assert r.content == data[start : end + 1]
        assert r.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    suffix = kho_env.client.get(url, headers=kho_env.headers(owner, Range="bytes=-100"))
    assert suffix.status_code == 206 and suffix.content == data[-100:]
    beyond = kho_env.client.get(url, headers=kho_env.headers(owner, Range=f"bytes={len(data)}-"))
    assert beyond.status_code == 416
    assert beyond.headers["content-type"] == "application/problem+json"
    etag = kho_env.client.get(url, headers=kho_env.headers(owner)).headers["etag"]
    cached = kho_env.client.get(url, headers=kho_env.headers(owner, **{"If-None-Match": etag}))
    assert cached.status_code == 304 and cached.content == b""


def test_versions_dedupe_and_idempotency(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    doc = create_document(kho_env, owner)
    first, second = pdf_bytes(5000, seed=3), pdf_bytes(7000, seed=4)
    assert upload(kho_env, owner, doc["id"], first).status_code == 201
    assert upload(kho_env, owner, doc["id"], second).status_code == 201
    again = upload(kho_env, owner, doc["id"], first)
    assert again.status_code == 200
    assert again.json()["created"] is False and again.json()["content"]["version"] == 1

    key = {"Idempotency-Key": "upload-" + uuid.uuid4().hex}
    third = pdf_bytes(9000, seed=5)
    created = upload(kho_env, owner, doc["id"], third, **key)
    replay = upload(kho_env, owner, doc["id"], third, **key)
    assert created.status_code == 201 and replay.status_code == 201
    assert replay.json()["content"] == created.json()["content"]
    misuse = upload(kho_env, owner, doc["id"], pdf_bytes(9000, seed=6), **key)
    assert misuse.status_code == 422 and misuse.json()["code"] == "idempotency_key_reused"

    versions = kho_env.client.get(
        f"/v1/documents/{doc['id']}/versions", headers=kho_env.headers(owner)
    ).json()["items"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    old = kho_env.client.get(
        f"/v1/documents/{doc['id']}/content?version=1", headers=kho_env.headers(owner)
    )
    assert old.content == first


def test_a_retry_that_loses_the_race_for_its_key_is_409_and_adds_no_version(
    kho_env: KhoEnv,
) -> None:
    """The original request and its retry both pass the replay check; the one that records the
    key second answers 409 idempotency_key_in_use (never a 500), and adds no version."""
    owner = kho_env.citizen()
    doc = create_document(kho_env, owner)
    first = pdf_bytes(6000, seed=8)
    assert upload(kho_env, owner, doc["id"], first).status_code == 201
    key = "upload-" + uuid.uuid4().hex
    racing = pdf_bytes(9000, seed=9)

    def body() -> Iterator[bytes]:
        yield racing[:4000]
        # The other request, which passed the same check, records the key now.
        with session_scope(kho_env.container.sessions) as session:
            IdempotencyRepository(session).add(
                principal_id=owner.account_id,
                scope=f"upload:{doc['id']}",
                key=key,
                fingerprint=hashlib.sha256(racing).hexdigest(),
                status_code=201,
                body={"version": 1, "created": True},
                now=kho_env.container.clock.now(),
            )
        yield racing[4000:]

    lost = kho_env.client.put(
        f"/v1/documents/{doc['id']}/content",
        content=body(),
        headers=kho_env.headers(
            owner,
            **{
                "Content-Type": "application/pdf",
                "Content-Length": str(len(racing)),
                "Idempotency-Key": key,
            },
        ),
    )
    assert lost.status_code == 409, lost.text
    assert lost.headers["content-type"].startswith("application/problem+json")
    assert lost.json()["code"] == "idempotency_key_in_use"
    versions = kho_env.client.get(
        f"/v1/documents/{doc['id']}/versions", headers=kho_env.headers(owner)
    ).json()["items"]
    assert [v["version"] for v in versions] == [1]


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "empty_content"),
        (b"PK\x03\x04 a zip file, not a paper", 415, "unsupported_media_type"),
        (b"<html><script>alert(1)</script>", 415, "unsupported_media_type"),
        (b"%PD", 415, "unsupported_media_type"),
    ],
)
def test_bad_content_is_refused_and_nothing_is_stored(
    embedded_env: KhoEnv, data: bytes, status: int, code: str
) -> None:
    owner = embedded_env.citizen()
    doc = create_document(embedded_env, owner)
    response = upload(embedded_env, owner, doc["id"], data)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    meta = embedded_env.client.get(
        f"/v1/documents/{doc['id']}", headers=embedded_env.headers(owner)
    )
    assert meta.json()["current_version"] is None
    assert list(embedded_env.container.objects.list("")) == []


def test_media_types_are_decided_from_the_bytes(embedded_env: KhoEnv) -> None:
    owner = embedded_env.citizen()
    samples = {
        "image/jpeg": b"\xff\xd8\xff\xe0" + os.urandom(100),
        "image/png": b"\x89PNG\r\n\x1a\n" + os.urandom(100),
        "image/tiff": b"II*\x00" + os.urandom(100),
    }
    for media_type, data in samples.items():
        doc = create_document(embedded_env, owner)
        r = upload(embedded_env, owner, doc["id"], data, **{"Content-Type": "application/pdf"})
        assert r.status_code == 201
        assert r.json()["content"]["media_type"] == media_type


def test_size_limit_before_and_during_streaming(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.conftest import build_ready_container, make_citizen, settings_for

    settings = settings_for("sqlite-local", tmp_path, max_upload_bytes=100_000)
    container = build_ready_container(settings)
    with TestClient(create_app(settings, container=container)) as client:
        env = KhoEnv("sqlite-local", settings, container, client)
        owner = make_citizen(container)
        doc = create_document(env, owner)
        declared = client.put(
            f"/v1/documents/{doc['id']}/content",
            content=pdf_bytes(150_000),
            headers=env.headers(owner),
        )
        assert declared.status_code == 413
        assert declared.json()["code"] == "content_too_large"

        def chunked() -> Iterator[bytes]:
            data = pdf_bytes(150_000)
            for i in range(0, len(data), 10_000):
                yield data[i : i + 10_000]

        streamed = client.put(
            f"/v1/documents/{doc['id']}/content", content=chunked(), headers=env.headers(owner)
        )
        assert streamed.status_code == 413
        assert list(container.objects.list("")) == []
    container.close()


def test_list_filters_and_cursor_pagination(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    made = [create_document(kho_env, owner, title=f"Giấy {i}") for i in range(7)]
    made.append(create_document(kho_env, owner, type_code="passport", title="Hộ chiếu"))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = kho_env.client.get("/v1/documents", params=params, headers=kho_env.headers(owner))
        assert page.status_code == 200
        body = page.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [d["id"] for d in made]
    passports = kho_env.client.get(
        "/v1/documents", params={"type_code": "passport"}, headers=kho_env.headers(owner)
    ).json()["items"]
    assert [d["title"] for d in passports] == ["Hộ chiếu"]
    bad = kho_env.client.get(
        "/v1/documents", params={"cursor": "not-a-cursor"}, headers=kho_env.headers(owner)
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"


def test_another_owner_gets_404_on_every_document_route(kho_env: KhoEnv) -> None:
    a, b = kho_env.citizen(), kho_env.citizen()
    doc = create_document(kho_env, a)
    assert upload(kho_env, a, doc["id"], pdf_bytes(1000)).status_code == 201
    base = f"/v1/documents/{doc['id']}"
    calls = [
        ("GET", base, None),
        ("GET", base + "/content", None),
        ("GET", base + "/versions", None),
        ("PUT", base + "/content", pdf_bytes(500, seed=9)),
        ("DELETE", base, None),
    ]
    for method, url, body in calls:
        r = kho_env.client.request(method, url, content=body, headers=kho_env.headers(b))
        assert r.status_code == 404, (method, url, r.text)
        assert r.json()["code"] == "document_not_found"
    assert kho_env.client.get("/v1/documents", headers=kho_env.headers(b)).json()["items"] == []
    still = kho_env.client.get(base + "/content", headers=kho_env.headers(a))
    assert still.status_code == 200 and still.content == pdf_bytes(1000)


def test_delete_shreds_and_removes_objects(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    doc = create_document(kho_env, owner)
    assert upload(kho_env, owner, doc["id"], pdf_bytes(2000)).status_code == 201
    assert len(list(kho_env.container.objects.list(""))) == 1
    gone = kho_env.client.delete(f"/v1/documents/{doc['id']}", headers=kho_env.headers(owner))
    assert gone.status_code == 204
    assert list(kho_env.container.objects.list("")) == []
    again = kho_env.client.get(f"/v1/documents/{doc['id']}", headers=kho_env.headers(owner))
    assert again.status_code == 404


def test_export_is_a_zip_of_everything(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    files = {}
    for i in range(3):
        doc = create_document(kho_env, owner, title=f"Giấy tờ {i}")
        data = pdf_bytes(70_000 + i, seed=i)
        assert upload(kho_env, owner, doc["id"], data).status_code == 201
        files[doc["id"]] = data
    create_document(kho_env, owner, title="Chưa có tệp")
    r = kho_env.client.get("/v1/export", headers=kho_env.headers(owner))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    manifest = json.loads(archive.read("metadata.json"))
    assert len(manifest["documents"]) == 4
    for doc_id, data in files.items():
        (name,) = [n for n in archive.namelist() if n.startswith(f"documents/{doc_id}/")]
        assert archive.read(name) == data


def test_unauthenticated_and_bad_tokens_are_401(embedded_env: KhoEnv) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer " + "a" * 9000},
    ):
        r = embedded_env.client.get("/v1/documents", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] in {"unauthenticated", "invalid_token"}


def test_problem_details_follow_accept_language(embedded_env: KhoEnv) -> None:
    owner = embedded_env.citizen()
    missing = f"/v1/documents/{uuid.uuid4()}"
    vi = embedded_env.client.get(missing, headers=embedded_env.headers(owner))
    en = embedded_env.client.get(
        missing, headers=embedded_env.headers(owner, **{"Accept-Language": "en-GB,en;q=0.9"})
    )
    assert vi.json()["title"] == "Không tìm thấy giấy tờ"
    assert en.json()["title"] == "Document not found"
    assert vi.json()["code"] == en.json()["code"] == "document_not_found"
    bad = embedded_env.client.post(
        "/v1/documents",
        json={"type_code": "nope", "title": "x"},
        headers=embedded_env.headers(owner),
    )
    assert bad.status_code == 422 and bad.json()["code"] == "unknown_document_type"
    malformed = embedded_env.client.post(
        "/v1/documents",
        content=b"{not json",
        headers=embedded_env.headers(owner, **{"Content-Type": "application/json"}),
    )
    assert malformed.status_code == 422 and malformed.json()["code"] == "invalid_input"
