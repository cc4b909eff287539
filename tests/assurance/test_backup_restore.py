"""Backup and restore (``kho backup DIR`` / ``kho restore DIR``, the typer app in
``api/cli_backup.py`` until ``api/cli.py`` registers it).

On PostgreSQL + MinIO: owners, papers (versions, a multipart one), consent requests, grants,
allowed and refused fetches, a shredded document, an erased owner and signed checkpoints are
backed up; then, *after* the backup, another owner is erased and a document deleted through the
API (only the erasure journal, ``KHO_ERASURE_LIST``, kept outside the backups and appended to by
each request before it answers, records them). The backup is restored onto a fresh
database and a fresh bucket with the same master key: every surviving paper reads back byte for
byte, the erasures made after the backup are replayed (those papers stay unreadable and their
objects are gone), the access log verifies and holds exactly the entries it held at backup
time. The same cycle on SQLite + the local store, and the refusals: a non-empty target, the
wrong master key, a damaged file, a backup over a non-empty directory, no erasure list.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio import Minio
from sqlalchemy import select
from typer.testing import CliRunner

from api.app import create_app
from api.cli_backup import backup_app
from api.container import build_container
from common.clock import OffsetClock
from common.settings import Settings
from consent.audit import AccessLog
from consent.models import AccessLogEntry, LogCheckpoint
from sso.keys import ProviderJwsSigner
from storage.backup import MANIFEST, NOTICE, read_manifest
from tests.agencies import AgencyClient, make_agency
from tests.conftest import (
    KhoEnv,
    Owner,
    build_ready_container,
    drop_postgres_database,
    settings_for,
)
from tests.services import require_minio
from vault.models import DocumentVersion

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "assurance"
MiB = 1024 * 1024


def env_of(settings: Settings, key_file: Path) -> dict[str, str]:
    """The ``KHO_*`` variables a ``kho`` command needs to reach these servers with this key."""
    env = {
        "KHO_DATA_DIR": str(settings.data_dir),
        "KHO_MASTER_KEY_FILE": str(key_file),
        "KHO_LOG_LEVEL": "WARNING",
        "KHO_DATABASE_URL": settings.effective_database_url,
        "KHO_OBJECT_STORE": settings.object_store.value,
    }
    if settings.object_store.value == "s3":
        assert settings.s3_endpoint and settings.s3_access_key and settings.s3_secret_key
        env.update(
            KHO_S3_ENDPOINT=settings.s3_endpoint,
            KHO_S3_ACCESS_KEY=settings.s3_access_key,
            KHO_S3_SECRET_KEY=settings.s3_secret_key.get_secret_value(),
            KHO_S3_BUCKET=settings.s3_bucket,
        )
    return env


def kho(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``kho backup|restore ...`` through the typer app: (exit code, output, seconds)."""
    started = time.perf_counter()
    result = CliRunner().invoke(backup_app, args, env=env)
    seconds = time.perf_counter() - started
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output, seconds


def paper(size: int) -> bytes:
    head = b"%PDF-1.7\n%"
    return head + secrets.token_bytes(size - len(head))


@dataclass
class Filled:
    """What a store holds, as its owners and agencies know it."""

    env: KhoEnv
    agency: AgencyClient
    owners: list[Owner] = field(default_factory=list)
    papers: dict[tuple[uuid.UUID, str, int], bytes] = field(default_factory=dict)
    shredded: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    erased: list[Owner] = field(default_factory=list)

    def document(self, owner: Owner, type_code: str) -> str:
        response = self.env.client.post(
            "/v1/documents",
            json={"type_code": type_code, "title": type_code},
            headers=self.env.headers(owner),
        )
        assert response.status_code == 201, response.text
        document_id: str = response.json()["id"]
        return document_id

    def upload(self, owner: Owner, document_id: str, data: bytes) -> None:
        response = self.env.client.put(
            f"/v1/documents/{document_id}/content",
            content=data,
            headers=self.env.headers(owner, **{"Idempotency-Key": secrets.token_hex(8)}),
        )
        assert response.status_code == 201, response.text
        version = int(response.json()["content"]["version"])
        self.papers[(owner.account_id, document_id, version)] = data

    def delete_document(self, owner: Owner, document_id: str) -> None:
        response = self.env.client.delete(
            f"/v1/documents/{document_id}", headers=self.env.headers(owner)
        )
        assert response.status_code == 204
        self.shredded.append((owner.account_id, document_id))
        for key in [k for k in self.papers if k[1] == document_id]:
            del self.papers[key]

    def erase(self, owner: Owner) -> None:
        response = self.env.client.delete("/v1/me", headers=self.env.headers(owner))
        assert response.status_code == 204, response.text
        self.erased.append(owner)
        for key in [k for k in self.papers if k[0] == owner.account_id]:
            del self.papers[key]

    def checkpoint(self) -> None:
        response = self.env.client.post(
            "/v1/admin/access-log/checkpoints", headers=self.env.operator_headers()
        )
        assert response.status_code == 201, response.text


def fill(env: KhoEnv, *, owners: int = 4, big: int = 0) -> Filled:
    agency = make_agency(env, "BK-" + secrets.token_hex(2).upper(), "Sở Sao lưu tỉnh Thái Nguyên")
    filled = Filled(env, agency)
    client = env.client
    for index in range(owners):
        owner = env.citizen()
        filled.owners.append(owner)
        birth = filled.document(owner, "birth_certificate")
        filled.upload(owner, birth, paper(40_000 + index * 7_000))
        cccd = filled.document(owner, "cccd")
        filled.upload(owner, cccd, paper(90_000 + index))
        filled.upload(owner, cccd, paper(20_000 + index))  # a second version
        if index == 0 and big:
            large = filled.document(owner, "marriage_certificate")
            filled.upload(owner, large, paper(big))
        until = (env.container.clock.now() + dt.timedelta(days=5)).isoformat()
        created = agency.request(
            owner.personal_id,
            [{"document_type": "birth_certificate"}, {"document_type": "cccd"}],
            access_mode="repeated",
            max_uses=10,
            access_until=until,
        )
        decided = client.post(
            f"/v1/consents/{created['id']}/decision",
            json={"decision": "grant"},
            headers=env.headers(owner),
        )
        assert decided.status_code == 200, decided.text
        grant = decided.json()["grant"]["id"]
        for document_id in (birth, cccd):
            fetched = client.get(
                f"/v1/agency/grants/{grant}/documents/{document_id}/content",
                headers=agency.headers(),
            )
            assert fetched.status_code == 200
        refused = client.get(
            f"/v1/agency/grants/{uuid.uuid4()}/documents/{birth}/content",
            headers=agency.headers(),
        )
        assert refused.status_code == 404
        if index == 1:
            filled.delete_document(owner, birth)
        filled.checkpoint()
    leaver = env.citizen()
    leaving = filled.document(leaver, "cccd")
    filled.upload(leaver, leaving, paper(12_345))
    filled.erase(leaver)
    filled.checkpoint()
    return filled


def log_rows(settings: Settings) -> tuple[list[tuple[Any, ...]], int]:
    """Every access-log entry (owner, seq, hash) and the number of checkpoints."""
    container = build_container(settings)
    try:
        with container.sessions() as session:
            entries = [
                (str(o), s, bytes(h))
                for o, s, h in session.execute(
                    select(
                        AccessLogEntry.owner_id, AccessLogEntry.seq, AccessLogEntry.entry_hash
                    ).order_by(AccessLogEntry.owner_id, AccessLogEntry.seq)
                )
            ]
            checkpoints = len(session.scalars(select(LogCheckpoint.id)).all())
    finally:
        container.close()
    return entries, checkpoints


def check_restored(
    settings: Settings,
    filled: Filled,
    gone_after_backup: list[tuple[uuid.UUID, str]],
) -> dict[str, int]:
    """Read every surviving paper back over HTTP from the restored stores; check the log and
    that shredded and erased papers stay unreadable. Returns a few counts."""
    container = build_container(settings, clock=OffsetClock())
    app = create_app(settings, container=container)
    restored = KhoEnv("restored", settings, container, TestClient(app))
    with restored.client:
        read = 0
        for (owner_id, document_id, version), data in filled.papers.items():
            if (owner_id, document_id) in gone_after_backup:
                continue
            owner = next(o for o in filled.owners if o.account_id == owner_id)
            response = restored.client.get(
                f"/v1/documents/{document_id}/content",
                params={"version": version},
                headers=restored.headers(owner),
            )
            assert response.status_code == 200, response.text
            assert hashlib.sha256(response.content).digest() == hashlib.sha256(data).digest()
            read += 1
        for owner_id, document_id in [*filled.shredded, *gone_after_backup]:
            holder = next((o for o in filled.owners if o.account_id == owner_id), None)
            if holder is None:
                continue
            response = restored.client.get(
                f"/v1/documents/{document_id}/content", headers=restored.headers(holder)
            )
            assert response.status_code in (401, 403, 404, 410), response.text
        with container.sessions() as session:
            report = AccessLog(
                session, container.clock, ProviderJwsSigner(container.signing_keys)
            ).verify_all()
            session.rollback()
            assert report.ok, report.first_failure
            live = {
                v.object_key
                for v in session.scalars(select(DocumentVersion))
                if v.wrapped_data_key is not None and v.shredded_at is None
            }
        keys = {info.key for info in container.objects.list("")}
        assert keys == live, (sorted(keys - live), sorted(live - keys))
    container.close()
    return {
        "papers_read_back": read,
        "log_entries_after_restore": report.entries_checked,
        "objects_after_restore_and_replay": len(keys),
    }


@pytest.fixture
def pg_env(tmp_path: Path) -> Iterator[KhoEnv]:
    settings = settings_for("postgres-minio", tmp_path / "source")
    container = build_ready_container(settings)
    app = create_app(settings, container=container)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield KhoEnv("postgres-minio", settings, container, client)
    container.close()
    drop_postgres_database(settings.effective_database_url)


def _remove_bucket(settings: Settings) -> None:
    minio = require_minio()
    client = Minio(minio.endpoint, minio.access_key, minio.secret_key, secure=False)
    if client.bucket_exists(settings.s3_bucket):
        for obj in client.list_objects(settings.s3_bucket, recursive=True):
            client.remove_object(settings.s3_bucket, obj.object_name)
        client.remove_bucket(settings.s3_bucket)


def test_backup_and_restore_on_postgres_and_minio(pg_env: KhoEnv, tmp_path: Path) -> None:
    env = pg_env
    key_file = env.settings.generated_master_key_file
    filled = fill(env, owners=4, big=9 * MiB)
    entries_at_backup, checkpoints_at_backup = log_rows(env.settings)

    backup_dir = tmp_path / "backups" / "nightly"
    erasures = tmp_path / "operator" / "erasures.txt"
    journal = env.settings.effective_erasure_list  # every erasure was appended to it
    assert journal.is_file()
    code, output, backup_seconds = kho(
        ["backup", str(backup_dir), "--erasure-list", str(erasures)], env_of(env.settings, key_file)
    )
    assert code == 0, output
    # `kho backup --erasure-list` still writes its list, and finds the journal complete.
    assert f"erasure list {erasures}: 2 new, 2 in all" in output
    code, output, _ = kho(
        ["backup", str(tmp_path / "backups" / "second"), "--erasure-list", str(journal)],
        env_of(env.settings, key_file),
    )
    assert code == 0, output
    assert f"erasure list {journal}: 0 new, 2 in all" in output
    assert "THE MASTER KEY IS NOT IN THIS BACKUP" in output
    manifest = read_manifest(backup_dir)
    assert manifest.dialect == "postgresql"
    assert manifest.master_key_versions == [1]
    assert manifest.master_key_included is False
    assert (backup_dir / NOTICE).read_text().startswith("THE MASTER KEY IS NOT IN THIS BACKUP")
    assert not any(p.name == key_file.name for p in backup_dir.rglob("*"))
    key_text = key_file.read_text().split(":", 1)[1].strip()
    for path in backup_dir.rglob("*"):
        if path.is_file():
            assert key_text.encode() not in path.read_bytes()
    # Every object of the bucket, and the SHA-256 of every file.
    assert manifest.objects == len(list(env.container.objects.list(""))) >= 9
    assert {e.path for e in manifest.files} == {
        p.relative_to(backup_dir).as_posix()
        for p in backup_dir.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    assert (backup_dir.stat().st_mode & 0o777) == 0o700

    # After the backup: an owner is erased and a document deleted through the API, and NO
    # `kho backup --erasure-list` runs after them: only the erasure journal, which each request
    # appended to before answering, knows of them.
    late_owner = filled.owners[2]
    late_docs = [(o, d) for (o, d, _v) in filled.papers if o == late_owner.account_id]
    erased_papers = dict(filled.papers)
    journal_before = journal.read_text()
    filled.erase(late_owner)
    deleted_owner = filled.owners[3]
    deleted_doc = next(d for (o, d, _v) in filled.papers if o == deleted_owner.account_id)
    filled.delete_document(deleted_owner, deleted_doc)
    appended = journal.read_text().removeprefix(journal_before).splitlines()
    assert [line.rsplit(" ", 1)[0] for line in appended] == [
        f"account {late_owner.account_id}",
        f"document {deleted_doc}",
    ]
    stale = erasures.read_text()
    assert str(late_owner.account_id) not in stale and deleted_doc not in stale
    filled.papers = erased_papers  # the restore must bring back all but the erased ones
    gone_after_backup = [*late_docs, (deleted_owner.account_id, deleted_doc)]

    # The disaster: restore onto a fresh database and an empty, new bucket. The new
    # installation is configured with the same journal (KHO_ERASURE_LIST), which `kho restore`
    # replays by default.
    target = settings_for("postgres-minio", tmp_path / "restored", master_key_file=key_file)
    target_env = {**env_of(target, key_file), "KHO_ERASURE_LIST": str(journal)}
    try:
        code, output, restore_seconds = kho(["restore", str(backup_dir)], target_env)
        assert code == 0, output
        assert "access log verifies" in output
        assert "1 accounts erased, 1 documents shredded, 2 already done" in output
        assert f"(erasure list {journal}: 4 entries)" in output
        assert "decrypted to their SHA-256, 0 failed" in output
        counts = check_restored(target, filled, gone_after_backup)
        entries, checkpoints = log_rows(target)
        assert entries == entries_at_backup
        assert checkpoints == checkpoints_at_backup >= 5
        # Restoring again over the restored stores needs --force, and gives the same result;
        # the journal read as an explicit --erasure-list FILE (the same format) works alike.
        again = ["restore", str(backup_dir), "--erasure-list", str(journal)]
        code, output, _ = kho(again, env_of(target, key_file))
        assert code == 2
        assert "not empty" in output
        code, output, _ = kho([*again, "--force"], env_of(target, key_file))
        assert code == 0, output
        assert "1 accounts erased, 1 documents shredded, 2 already done" in output
        assert check_restored(target, filled, gone_after_backup) == counts
        assert log_rows(target) == (entries_at_backup, checkpoints_at_backup)
    finally:
        drop_postgres_database(target.effective_database_url)
        _remove_bucket(target)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(),
        "backend": "postgresql+minio",
        "objects_backed_up": manifest.objects,
        "object_bytes_backed_up": manifest.object_bytes,
        "database_bytes": next(e.size for e in manifest.files if e.path == manifest.database_file),
        "backup_seconds": round(backup_seconds, 3),
        "restore_seconds": round(restore_seconds, 3),
        "log_entries_at_backup": len(entries_at_backup),
        "checkpoints": checkpoints_at_backup,
        **counts,
    }
    (ARTIFACTS / "backup-postgres.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


@pytest.fixture
def sqlite_env(tmp_path: Path) -> Iterator[KhoEnv]:
    settings = settings_for("sqlite-local", tmp_path / "source")
    container = build_ready_container(settings)
    app = create_app(settings, container=container)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield KhoEnv("sqlite-local", settings, container, client)
    container.close()


def test_backup_and_restore_on_sqlite_and_the_local_store(
    sqlite_env: KhoEnv, tmp_path: Path
) -> None:
    env = sqlite_env
    key_file = env.settings.generated_master_key_file
    filled = fill(env, owners=2)
    entries_at_backup, checkpoints = log_rows(env.settings)
    backup_dir = tmp_path / "backup"
    code, output, _seconds = kho(["backup", str(backup_dir)], env_of(env.settings, key_file))
    assert code == 0, output
    assert read_manifest(backup_dir).dialect == "sqlite"
    target = settings_for("sqlite-local", tmp_path / "restored", master_key_file=key_file)
    code, output, _seconds = kho(
        ["restore", str(backup_dir), "--no-erasure-replay"], env_of(target, key_file)
    )
    assert code == 0, output
    assert "NO erasure list given" in output
    check_restored(target, filled, [])
    assert log_rows(target) == (entries_at_backup, checkpoints)


def test_restore_refuses_what_it_must(sqlite_env: KhoEnv, tmp_path: Path) -> None:
    env = sqlite_env
    key_file = env.settings.generated_master_key_file
    filled = fill(env, owners=1)
    assert filled.papers
    source_env = env_of(env.settings, key_file)
    backup_dir = tmp_path / "backup"
    assert kho(["backup", str(backup_dir)], source_env)[0] == 0

    # A backup never goes over something else.
    code, output, _ = kho(["backup", str(backup_dir)], source_env)
    assert code == 2
    assert "not an empty directory" in output
    code, output, _ = kho(
        ["backup", str(tmp_path / "b2"), "--erasure-list", str(tmp_path / "b2" / "e.txt")],
        source_env,
    )
    assert code == 2
    assert "outside the backup directory" in output

    fresh = env_of(settings_for("sqlite-local", tmp_path / "fresh"), key_file)
    # No erasure list, and no explicit --no-erasure-replay: the configured journal is used
    # only if it exists.
    code, output, _ = kho(["restore", str(backup_dir)], fresh)
    assert code == 2
    assert "--erasure-list" in output
    lost = {**fresh, "KHO_ERASURE_LIST": str(tmp_path / "lost" / "erasures.log")}
    code, output, _ = kho(["restore", str(backup_dir)], lost)
    assert code == 2
    assert "KHO_ERASURE_LIST" in output and "does not exist" in output
    # A non-empty target: the source itself.
    code, output, _ = kho(["restore", str(backup_dir), "--no-erasure-replay"], source_env)
    assert code == 2
    assert "not empty" in output
    # The wrong master key (same version number, other key).
    other_key = tmp_path / "other" / "master.key"
    other_key.parent.mkdir()
    other_key.write_text("1:" + base64.b64encode(secrets.token_bytes(32)).decode())
    other_key.chmod(0o600)
    wrong = {**fresh, "KHO_MASTER_KEY_FILE": str(other_key)}
    code, output, _ = kho(["restore", str(backup_dir), "--no-erasure-replay"], wrong)
    assert code == 2
    assert "not the one this backup was made with" in output
    # A restored target is no longer empty; --force restores over it.
    second = env_of(
        settings_for("sqlite-local", tmp_path / "second", master_key_file=key_file), key_file
    )
    assert kho(["restore", str(backup_dir), "--no-erasure-replay"], second)[0] == 0
    code, output, _ = kho(["restore", str(backup_dir), "--no-erasure-replay"], second)
    assert code == 2
    assert "not empty" in output
    code, output, _ = kho(["restore", str(backup_dir), "--no-erasure-replay", "--force"], second)
    assert code == 0, output
    assert "0 failed" in output
    # A damaged object file.
    victim = next(p for p in (backup_dir / "objects").rglob("*") if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    code, output, _ = kho(["restore", str(backup_dir), "--no-erasure-replay"], fresh)
    assert code == 2
    assert "does not match its SHA-256" in output
    # Nothing was written to the fresh target by any refused restore.
    assert not (tmp_path / "fresh" / "var" / "kho.db").exists()
    assert not any((tmp_path / "fresh" / "var" / "objects").rglob("*~obj"))
