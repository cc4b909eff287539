"""What the encryption promises, checked on the real stores: nothing readable without the right
keys in the right place, and erasure that cannot be undone from a copy."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from contextlib import closing

import pytest
from sqlalchemy import select

from storage.db import session_scope
from tests.conftest import KhoEnv
from tests.integration.test_documents_api import create_document, pdf_bytes, upload
from vault import crypto
from vault.errors import DecryptionFailed, KeyUnavailable
from vault.keyring import Keyring, object_context
from vault.models import DocumentVersion, VaultKey


def _object_key(env: KhoEnv, document_id: str) -> str:
    import uuid

    with env.container.sessions() as session:
        row = session.scalars(
            select(DocumentVersion).where(DocumentVersion.document_id == uuid.UUID(document_id))
        ).one()
        return row.object_key


def _read_object(env: KhoEnv, key: str) -> bytes:
    with closing(env.container.objects.get(key)) as reader:
        return b"".join(reader)


def _swap(env: KhoEnv, key_a: str, key_b: str) -> None:
    a, b = _read_object(env, key_a), _read_object(env, key_b)
    env.container.objects.put(key_a, [b])
    env.container.objects.put(key_b, [a])


def test_objects_swapped_between_owners_do_not_decrypt(kho_env: KhoEnv) -> None:
    alice, bob = kho_env.citizen(), kho_env.citizen()
    doc_a, doc_b = create_document(kho_env, alice), create_document(kho_env, bob)
    assert upload(kho_env, alice, doc_a["id"], pdf_bytes(90_000, seed=1)).status_code == 201
    assert upload(kho_env, bob, doc_b["id"], pdf_bytes(90_000, seed=2)).status_code == 201
    _swap(kho_env, _object_key(kho_env, doc_a["id"]), _object_key(kho_env, doc_b["id"]))
    for owner, doc in ((alice, doc_a), (bob, doc_b)):
        r = kho_env.client.get(f"/v1/documents/{doc['id']}/content", headers=kho_env.headers(owner))
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "decryption_failed"


def test_objects_swapped_between_documents_of_one_owner_do_not_decrypt(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    first, second = create_document(kho_env, owner), create_document(kho_env, owner)
    assert upload(kho_env, owner, first["id"], pdf_bytes(1000, seed=3)).status_code == 201
    assert upload(kho_env, owner, second["id"], pdf_bytes(1000, seed=4)).status_code == 201
    _swap(kho_env, _object_key(kho_env, first["id"]), _object_key(kho_env, second["id"]))
    r = kho_env.client.get(f"/v1/documents/{first['id']}/content", headers=kho_env.headers(owner))
    assert r.status_code == 500
    assert r.json()["code"] == "decryption_failed"


def test_no_plaintext_reaches_the_object_store(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    doc = create_document(kho_env, owner)
    marker = b"NGUYEN-VAN-AN-019090001234-" * 100
    data = b"%PDF-1.7\n" + marker + os.urandom(70_000) + marker
    assert upload(kho_env, owner, doc["id"], data).status_code == 201
    (info,) = list(kho_env.container.objects.list(""))
    stored = _read_object(kho_env, info.key)
    assert crypto.MAGIC in stored[:8]
    assert b"NGUYEN-VAN-AN" not in stored
    assert b"%PDF" not in stored
    if kho_env.backend == "sqlite-local":
        for path in kho_env.settings.data_dir.rglob("*"):
            if path.is_file() and path.suffix not in {".db", ".db-wal", ".db-shm"}:
                assert b"NGUYEN-VAN-AN" not in path.read_bytes(), path


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        crypto.DEFAULT_SEGMENT_SIZE - 1,
        crypto.DEFAULT_SEGMENT_SIZE,
        crypto.DEFAULT_SEGMENT_SIZE + 1,
        64 * 1024 * 1024,
    ],
)
def test_encrypted_round_trip_on_the_object_store(kho_env: KhoEnv, size: int) -> None:
    """The object format through the real store, at the segment and multipart boundaries."""
    import uuid

    block = os.urandom(1 << 20)
    data_key = crypto.new_key()
    context = object_context(uuid.uuid4(), uuid.uuid4(), 1)

    def plaintext() -> list[bytes]:
        full, rest = divmod(size, len(block))
        return [block] * full + ([block[:rest]] if rest else [])

    expected = hashlib.sha256(b"".join(plaintext())).hexdigest()
    key = "v1/roundtrip-" + uuid.uuid4().hex
    kho_env.container.objects.put(
        key, crypto.encrypt_stream(data_key, plaintext(), key_id=b"test", context=context)
    )
    digest = hashlib.sha256()
    total = 0
    with closing(kho_env.container.objects.get(key)) as reader:
        for chunk in crypto.decrypt_stream(data_key, reader, context=context):
            digest.update(chunk)
            total += len(chunk)
    assert total == size
    assert digest.hexdigest() == expected
    assert kho_env.container.objects.stat(key).size == crypto.ciphertext_size(
        size, crypto.DEFAULT_SEGMENT_SIZE, key_id=b"test"
    )


def test_large_upload_and_download_through_the_api(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    doc = create_document(kho_env, owner)
    block = os.urandom(1 << 20)

    def body() -> Iterator[bytes]:
        yield b"%PDF-1.7\n"
        for _ in range(64):
            yield block

    expected = hashlib.sha256(b"%PDF-1.7\n" + block * 64).hexdigest()
    r = kho_env.client.put(
        f"/v1/documents/{doc['id']}/content", content=body(), headers=kho_env.headers(owner)
    )
    assert r.status_code == 201, r.text
    assert r.json()["content"]["sha256"] == expected
    digest = hashlib.sha256()
    with kho_env.client.stream(
        "GET", f"/v1/documents/{doc['id']}/content", headers=kho_env.headers(owner)
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == expected


def test_erasure_leaves_nothing_decryptable_even_from_a_copy(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    other = kho_env.citizen()
    for i in range(3):
        doc = create_document(kho_env, owner, title=f"Giấy {i}")
        for v in range(2):
            data = pdf_bytes(80_000 + i, seed=10 * i + v)
            assert upload(kho_env, owner, doc["id"], data).status_code == 201
    other_doc = create_document(kho_env, other)
    assert upload(kho_env, other, other_doc["id"], pdf_bytes(5000)).status_code == 201

    # A copy of the owner's document rows and objects, as a backup or a thief would have them.
    with kho_env.container.sessions() as session:
        rows = [
            (v.document_id, v.version, v.vault_key_version, v.wrapped_data_key, v.object_key)
            for v in session.scalars(select(DocumentVersion)).all()
        ]
    copied = [(r, _read_object(kho_env, r[4])) for r in rows]
    assert len(copied) == 7

    erase = kho_env.client.delete("/v1/me", headers=kho_env.headers(owner))
    assert erase.status_code == 204

    readable = 0
    with session_scope(kho_env.container.sessions) as session:
        keyring = Keyring(session, kho_env.container.keys, kho_env.container.clock)
        owner_keys = session.scalars(
            select(VaultKey).where(VaultKey.owner_id == owner.account_id)
        ).all()
        assert owner_keys and all(k.wrapped_key is None for k in owner_keys)
        for (document_id, version, vault_version, wrapped, _key), blob in copied:
            for candidate_owner in (owner.account_id, other.account_id):
                try:
                    data_key = keyring.open_data_key(
                        candidate_owner, document_id, version, vault_version, wrapped
                    )
                    crypto.decrypt_bytes(
                        data_key,
                        blob,
                        context=object_context(candidate_owner, document_id, version),
                    )
                    readable += 1
                except (DecryptionFailed, KeyUnavailable):
                    pass
    # Only the other citizen's paper still opens; none of the erased owner's do.
    assert readable == 1
    keys_left = {info.key for info in kho_env.container.objects.list("")}
    assert keys_left == {_object_key(kho_env, other_doc["id"])}
    me = kho_env.client.get("/v1/me", headers=kho_env.headers(owner))
    assert me.status_code == 401 and me.json()["code"] == "account_erased"


def test_erasure_needs_a_recent_sign_in(embedded_env: KhoEnv) -> None:
    owner = embedded_env.citizen()
    stale = embedded_env.token_for(owner, auth_age=dt.timedelta(hours=2))
    r = embedded_env.client.delete("/v1/me", headers={"Authorization": f"Bearer {stale}"})
    assert r.status_code == 401
    assert r.json()["code"] == "reauthentication_required"
    assert embedded_env.client.get("/v1/me", headers=embedded_env.headers(owner)).status_code == 200
