"""Fail-closed: when the access log or the master key is unavailable, no byte of a paper leaves,
and no object in the bucket is ever plaintext.

* The access-log table made unwritable on a private PostgreSQL cluster (the application role
  is not a superuser there): ``REVOKE INSERT`` from it, or a trigger that raises. An agency's
  fetch answers 503 problem+json, the grant's use is not counted, nothing is logged as allowed;
  once the table is writable again the same fetch works.
* The master-key version a running server needs is missing from its provider (the vault keys
  were rewrapped under a version another node has and this one does not, as after a rotation
  made elsewhere): owner downloads (whole, ranged, export), agency fetches and new uploads
  answer 503 ``key_unavailable`` with no paper bytes. A key file that is missing or readable by
  others stops ``kho serve`` from starting at all.
* After a mixed workload (PDF, PNG, JPEG, TIFF; single-part and multipart; new versions,
  idempotent retries, duplicates, refused uploads, deletion, erasure, agency fetches) every
  object in the bucket starts with an encrypted-object header (magic ``KHOv``, format 1) whose
  key id names its version row, has exactly the ciphertext size of its plaintext, and contains
  none of the plaintexts' marker bytes.

Private PostgreSQL (``bench.crash.PrivatePostgres``) and a bucket of its own on the shared
MinIO; the shared PostgreSQL is never touched.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio
from sqlalchemy import func, select

from bench.crash import (
    Agency,
    PrivatePostgres,
    create_document,
    enrol_citizen,
    grant_repeated,
    make_agency,
    operator_token,
    owner_token,
    paper_bytes,
    upload,
)
from consent.audit import AccessLog
from consent.models import AccessLogEntry, Grant
from sso.keys import ProviderJwsSigner
from storage.db import session_scope
from tests.kho_server import KhoServer, running_kho
from tests.services import require_minio
from vault import crypto
from vault.keyring import Keyring
from vault.keys import EnvKeyProvider
from vault.models import DocumentVersion

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as pg:
        yield pg


@pytest.fixture
def bucket() -> Iterator[dict[str, Any]]:
    """Settings for a fresh bucket on the shared MinIO, emptied and removed afterwards."""
    minio = require_minio()
    name = f"kho-fc-{secrets.token_hex(4)}"
    yield {
        "object_store": "s3",
        "s3_endpoint": minio.endpoint,
        "s3_access_key": minio.access_key,
        "s3_secret_key": minio.secret_key,
        "s3_bucket": name,
        "webhook_interval_seconds": 0,
        "max_upload_bytes": 32 * 1024 * 1024,
    }
    client = Minio(minio.endpoint, minio.access_key, minio.secret_key, secure=False)
    if client.bucket_exists(name):
        for obj in client.list_objects(name, recursive=True):
            client.remove_object(name, obj.object_name)
        client.remove_bucket(name)


@dataclass
class World:
    """A citizen with papers, an agency and a repeated grant over them, on a real server."""

    server: KhoServer
    http: httpx.Client
    owner: uuid.UUID
    personal_id: str
    agency: Agency
    grant_id: str = ""
    papers: dict[str, bytes] = field(default_factory=dict)  # document id -> bytes
    markers: list[bytes] = field(default_factory=list)

    @classmethod
    def build(cls, server: KhoServer) -> World:
        container = server.container
        http = server.http()
        owner, pin = enrol_citizen(container)
        agency = make_agency(
            http, operator_token(container), "FC-" + secrets.token_hex(3).upper(), "Sở Thử"
        )
        world = cls(server, http, owner, pin, agency)
        for type_code in ("birth_certificate", "cccd"):
            document_id = create_document(http, world.token(), type_code)
            world.put(document_id, paper_bytes(150_000 + len(world.papers), world.marker()))
        world.grant_id = grant_repeated(
            http, agency, world.token(), pin, ["birth_certificate", "cccd"]
        )
        return world

    def token(self) -> str:
        return owner_token(self.server.container, self.owner)

    def marker(self) -> bytes:
        marker = b"KHO-PLAINTEXT-MARKER-" + secrets.token_bytes(24)
        self.markers.append(marker)
        return marker

    def put(self, document_id: str, data: bytes, key: str | None = None) -> httpx.Response:
        response = upload(self.http, self.token(), document_id, data, key)
        assert response.status_code in (200, 201), response.text
        self.papers[document_id] = data
        return response

    def fetch(self, document_id: str) -> httpx.Response:
        return self.http.get(
            f"/v1/agency/grants/{self.grant_id}/documents/{document_id}/content",
            headers={"Authorization": f"Bearer {self.agency.token(self.http)}"},
        )

    def download(self, document_id: str, **headers: str) -> httpx.Response:
        return self.http.get(
            f"/v1/documents/{document_id}/content",
            headers={"Authorization": f"Bearer {self.token()}", **headers},
        )

    def grant_uses(self) -> int:
        with self.server.container.sessions() as session:
            grant = session.get(Grant, uuid.UUID(self.grant_id))
            assert grant is not None
            return grant.uses

    def allowed_fetches(self) -> int:
        with self.server.container.sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(AccessLogEntry)
                    .where(
                        AccessLogEntry.owner_id == self.owner,
                        AccessLogEntry.action == "document.fetch",
                        AccessLogEntry.decision == "allowed",
                    )
                )
                or 0
            )

    def assert_log_verifies(self) -> None:
        container = self.server.container
        with container.sessions() as session:
            report = AccessLog(
                session, container.clock, ProviderJwsSigner(container.signing_keys)
            ).verify_all()
            session.rollback()
        assert report.ok, report.first_failure


def assert_refused(response: httpx.Response, world: World, code: str) -> None:
    """503 problem+json, and not one byte of any paper in the body."""
    assert response.status_code == 503, response.text[:300]
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == code
    assert response.headers.get("retry-after")
    body = response.content
    assert len(body) < 4096
    for paper in world.papers.values():
        assert paper[:32] not in body
    for marker in world.markers:
        assert marker not in body


def _sabotage_sql(how: str) -> tuple[str, str]:
    if how == "revoke":
        return (
            "REVOKE INSERT ON access_log_entries FROM kho_app;",
            "GRANT INSERT ON access_log_entries TO kho_app;",
        )
    return (
        "CREATE FUNCTION assurance_refuse_log() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'the access log is read-only (assurance test)'; END $$;\n"
        "CREATE TRIGGER assurance_refuse_log BEFORE INSERT ON access_log_entries "
        "FOR EACH ROW EXECUTE FUNCTION assurance_refuse_log();",
        "DROP TRIGGER assurance_refuse_log ON access_log_entries;\n"
        "DROP FUNCTION assurance_refuse_log();",
    )


@pytest.mark.parametrize("how", ["revoke", "trigger"])
def test_a_fetch_serves_nothing_when_the_access_log_cannot_be_written(
    how: str, private_pg: PrivatePostgres, bucket: dict[str, Any], tmp_path: Path
) -> None:
    database = f"kho_fc_log_{how}_{secrets.token_hex(3)}"
    url = private_pg.create_database(database)
    with running_kho(tmp_path, KHO_DATABASE_URL=url, **bucket) as server:
        world = World.build(server)
        document_id, paper = next(iter(world.papers.items()))
        first = world.fetch(document_id)
        assert first.status_code == 200
        assert first.content == paper
        uses, allowed = world.grant_uses(), world.allowed_fetches()
        assert (uses, allowed) == (1, 1)

        sabotage, repair = _sabotage_sql(how)
        private_pg.psql(sabotage, database=database)
        try:
            for document_id in world.papers:
                assert_refused(world.fetch(document_id), world, "access_log_unavailable")
            # Nothing was counted or logged as allowed: the refused fetch rolled back whole.
            assert (world.grant_uses(), world.allowed_fetches()) == (uses, allowed)
        finally:
            private_pg.psql(repair, database=database)

        again = world.fetch(document_id)
        assert again.status_code == 200
        assert again.content == world.papers[document_id]
        assert (world.grant_uses(), world.allowed_fetches()) == (uses + 1, allowed + 1)
        world.assert_log_verifies()


def test_nothing_is_served_when_the_master_key_version_is_unavailable(
    private_pg: PrivatePostgres, bucket: dict[str, Any], tmp_path: Path
) -> None:
    v1 = base64.b64encode(os.urandom(32)).decode()
    v2 = base64.b64encode(os.urandom(32)).decode()
    url = private_pg.create_database(f"kho_fc_key_{secrets.token_hex(3)}")
    with running_kho(tmp_path, KHO_DATABASE_URL=url, KHO_MASTER_KEYS=f"1:{v1}", **bucket) as server:
        world = World.build(server)
        document_id, paper = next(iter(world.papers.items()))
        assert world.download(document_id).content == paper
        assert world.fetch(document_id).content == paper
        uses, allowed = world.grant_uses(), world.allowed_fetches()

        # Another node rotates: version 2 is added there and every vault key rewrapped under
        # it. This server's provider still knows version 1 only.
        container = server.container
        with session_scope(container.sessions) as session:
            rewrapped = Keyring(
                session, EnvKeyProvider(f"1:{v1},2:{v2}"), container.clock
            ).rewrap_all()
        assert rewrapped >= 1

        for document_id in world.papers:
            assert_refused(world.download(document_id), world, "key_unavailable")
            assert_refused(
                world.download(document_id, Range="bytes=100-200"), world, "key_unavailable"
            )
            assert_refused(world.fetch(document_id), world, "key_unavailable")
        export = world.http.get("/v1/export", headers={"Authorization": f"Bearer {world.token()}"})
        assert_refused(export, world, "key_unavailable")
        fresh = create_document(world.http, world.token())
        refused_upload = upload(world.http, world.token(), fresh, paper_bytes(10_000))
        assert_refused(refused_upload, world, "key_unavailable")
        # The refused fetches were neither counted nor logged as allowed.
        assert (world.grant_uses(), world.allowed_fetches()) == (uses, allowed)
        # The refused upload left no object behind.
        with container.sessions() as session:
            keys = set(session.scalars(select(DocumentVersion.object_key)))
        assert {info.key for info in container.objects.list("")} <= keys
        world.assert_log_verifies()


def _serve(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
    clean.update(env)
    kho = Path(sys.executable).with_name("kho")
    return subprocess.run(
        [str(kho), "serve", "--host", "127.0.0.1", "--port", "1", "--no-migrate"],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_or_unsafe_key_file_stops_the_server_from_starting(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "master.key"
    env = {"KHO_DATA_DIR": str(tmp_path / "var"), "KHO_MASTER_KEY_FILE": str(key_file)}
    missing = _serve(env, tmp_path)
    assert missing.returncode == 2
    assert "cannot open key file" in missing.stderr
    key_file.parent.mkdir()
    key_file.write_text(f"1:{base64.b64encode(os.urandom(32)).decode()}\n")
    key_file.chmod(0o644)
    unsafe = _serve(env, tmp_path)
    assert unsafe.returncode == 2
    assert "0600" in unsafe.stderr
    # Never a key generated in its place.
    assert not (tmp_path / "var" / "master.key").exists()


SIGNATURES = {
    "pdf": b"%PDF-1.7\n%",
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF",
    "tiff": b"II*\x00",
}


def test_every_object_in_the_bucket_is_encrypted_after_a_mixed_workload(
    private_pg: PrivatePostgres, bucket: dict[str, Any], tmp_path: Path
) -> None:
    url = private_pg.create_database(f"kho_fc_mix_{secrets.token_hex(3)}")
    with running_kho(tmp_path, KHO_DATABASE_URL=url, **bucket) as server:
        world = World.build(server)
        http, token = world.http, world.token()

        def paper(kind: str, size: int) -> bytes:
            head, marker = SIGNATURES[kind], world.marker()
            body = os.urandom(size)
            return head + body[: size // 2] + marker + body[size // 2 :]

        stored: list[str] = list(world.papers)
        for kind, size in (("pdf", 3_000), ("png", 70_000), ("jpeg", 300_000), ("tiff", 1)):
            document_id = create_document(http, token, "cccd", f"giấy {kind}")
            world.put(document_id, paper(kind, size))
            stored.append(document_id)
        big = create_document(http, token, "marriage_certificate", "lớn")
        world.put(big, paper("pdf", 9 * 1024 * 1024 + 12_345))  # multipart, 140+ segments
        versioned = stored[2]
        world.put(versioned, paper("png", 50_000), key="v2-once")
        replay = upload(http, token, versioned, world.papers[versioned], "v2-once")
        assert replay.status_code == 201
        assert replay.json()["content"]["version"] == 2
        same = upload(http, token, versioned, world.papers[versioned])
        assert (same.status_code, same.json()["content"]["version"]) == (200, 2)
        refused = create_document(http, token)
        assert upload(http, token, refused, b"plain text, not a paper").status_code == 415
        too_big = upload(http, token, refused, paper("pdf", 33 * 1024 * 1024))
        assert too_big.status_code == 413
        deleted = stored[3]
        gone = http.delete(f"/v1/documents/{deleted}", headers={"Authorization": f"Bearer {token}"})
        assert gone.status_code == 204
        for document_id in list(world.papers)[:2]:
            assert world.fetch(document_id).status_code == 200

        # A second citizen uploads and is then erased.
        leaver, _ = enrol_citizen(server.container)
        leaver_token = owner_token(server.container, leaver)
        leaving = create_document(http, leaver_token)
        assert upload(http, leaver_token, leaving, paper("pdf", 20_000)).status_code == 201
        erased = http.delete("/v1/me", headers={"Authorization": f"Bearer {leaver_token}"})
        assert erased.status_code == 204

        container = server.container
        with container.sessions() as session:
            rows = {v.object_key: v for v in session.scalars(select(DocumentVersion))}
        objects = list(container.objects.list(""))
        live = [row for row in rows.values() if row.wrapped_data_key is not None]
        # 2 + 4 + 1 big + 1 second version - 1 deleted; the erased citizen's object is gone.
        assert len(objects) == len(live) == 7
        for info in objects:
            with closing(container.objects.get(info.key)) as reader:
                blob = b"".join(reader)
            assert blob[:4] == crypto.MAGIC
            header = crypto.read_header(blob[: crypto.MAX_HEADER_LENGTH])
            assert header.format_version == crypto.FORMAT_VERSION == 1
            row = rows.get(info.key)
            assert row is not None, f"object {info.key} has no version row"
            assert header.key_id[:16] == row.id.bytes
            assert row.size is not None
            assert len(blob) == crypto.ciphertext_size(
                row.size, header.segment_size, key_id=header.key_id
            )
            for signature in SIGNATURES.values():
                assert not blob.startswith(signature)
            for marker in world.markers:
                assert marker not in blob, f"plaintext marker found in object {info.key}"
            for data in world.papers.values():
                assert hashlib.sha256(blob).hexdigest() != hashlib.sha256(data).hexdigest()
        world.assert_log_verifies()
        http.close()
