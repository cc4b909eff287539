"""Backups of Kho's two stores, and their restore onto empty servers.

A backup directory holds::

    manifest.json                     format, time, what the database and objects are, the
                                      master-key versions the backup needs, and the size and
                                      SHA-256 of every other file (written last: no manifest,
                                      no backup)
    MASTER-KEY-NOT-INCLUDED.txt       says so, loudly
    database.pgdump                   ``pg_dump --format=custom`` (PostgreSQL), or
    database.sqlite3                  SQLite's online backup API (a consistent copy)
    objects/<key>                     every object of the bucket, byte for byte (encrypted)

**The master key is not in the backup.** The database dump holds the *wrapped* vault keys (the
``vault_keys`` rows) and the sealed signing keys; without the master-key versions named in the
manifest nothing in the backup can be decrypted. The operator keeps master keys separately
(another medium, another custodian). The dump does hold account metadata (names, personal ID
numbers, document metadata, the access log) in clear: protect the directory (it is created
0700, files 0600) like the production database.

Consistency. On PostgreSQL the caller's queries (which objects the database references, which
master-key versions it needs) and ``pg_dump`` run in the *same* exported snapshot
(``pg_export_snapshot`` in a REPEATABLE READ transaction, ``pg_dump --snapshot``); on SQLite
they run on the consistent copy the backup API made. Objects are written once under random keys
and never changed, so mirroring them *after* the snapshot captures every object the snapshot
references — unless one was deleted in between (a document shredded or an account erased during
the backup); the backup then fails naming how many are missing, and is simply run again.
Objects newer than the snapshot are copied too; after a restore they are unreferenced and
``kho storage sweep`` removes them.

Restore verifies every file against the manifest first, refuses a target database that has any
table or a bucket that has any object (unless ``force``), then restores the database
(``pg_restore --no-owner --no-privileges --single-transaction``, or the backup API into the
SQLite file) and puts every object back under its key through the :class:`ObjectStore`
protocol. Checking master keys, replaying erasures and verifying the result need the vault and
consent layers: ``api/cli_backup.py`` does that around these functions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url

from common.errors import Conflict, KhoError
from storage.errors import ObjectNotFound
from storage.objects import ObjectStore, validate_key

FORMAT = "kho-backup/1"
MANIFEST = "manifest.json"
NOTICE = "MASTER-KEY-NOT-INCLUDED.txt"
PG_DUMP_FILE = "database.pgdump"
SQLITE_FILE = "database.sqlite3"
OBJECTS_DIR = "objects"
PG_BIN = Path(os.environ.get("KHO_PG_BIN", "/usr/lib/postgresql/15/bin"))
_CHUNK = 1 << 20
_COPY_THREADS = 8

NOTICE_TEXT = """\
THE MASTER KEY IS NOT IN THIS BACKUP.

Everything a citizen stored is encrypted under keys wrapped by Kho's master key. This backup
holds the database (with the wrapped keys) and the encrypted objects, but NOT the master key.
To restore it you need the master-key version(s) listed in manifest.json
("master_key_versions"), from where the operator keeps them (KHO_MASTER_KEY_FILE or
KHO_MASTER_KEYS, or the KMS/HSM). Without them nothing here can be decrypted; with them,
everything can: keep the two apart.

The database dump holds account metadata (names, personal ID numbers, document metadata, the
access log) in clear. Protect this directory like the production database.

A restore must replay the erasures made after this backup was taken: kho restore replays the
erasure journal (KHO_ERASURE_LIST, kept outside the backups and the database) or the list given
with --erasure-list FILE. Without it the erased citizens' papers are readable again.
"""


class BackupFailed(KhoError):
    code = "backup_failed"
    status = 500
    title_vi = "Sao lưu không thành công"
    title_en = "The backup failed"


class BackupCorrupt(KhoError):
    code = "backup_corrupt"
    status = 422
    title_vi = "Bản sao lưu bị hỏng hoặc không đầy đủ"
    title_en = "The backup is damaged or incomplete"


class RestoreRefused(Conflict):
    code = "restore_refused"
    title_vi = "Từ chối khôi phục"
    title_en = "Restore refused"


class SnapshotInspector(Protocol):
    """What the database of a snapshot needs, asked inside that very snapshot."""

    def referenced_objects(self, connection: Connection) -> set[str]:
        """Keys of the objects the database cannot do without (committed, unshredded versions)."""
        ...

    def master_key_versions(self, connection: Connection) -> list[int]:
        """The master-key versions that wrap the database's keys."""
        ...


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the backup directory, with "/"
    size: int
    sha256: str


@dataclass
class Manifest:
    format: str
    created_at: str
    dialect: str  # "postgresql" or "sqlite"
    database_file: str
    objects: int
    object_bytes: int
    referenced_objects: int
    master_key_versions: list[int]
    master_key_included: bool
    # version -> a check value of that master key (an HMAC of a fixed label under it): lets a
    # restore tell "the right key" from "a key with the right number" before touching anything
    master_key_check_values: dict[str, str] = field(default_factory=dict)
    files: list[FileEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        files = [FileEntry(**entry) for entry in data.get("files", [])]
        return cls(**{**data, "files": files})

    def object_files(self) -> Iterator[tuple[str, FileEntry]]:
        """(object key, its file) for every mirrored object."""
        prefix = OBJECTS_DIR + "/"
        for entry in self.files:
            if entry.path.startswith(prefix):
                yield entry.path.removeprefix(prefix), entry


@dataclass
class BackupReport:
    directory: Path
    manifest: Manifest
    database_seconds: float
    objects_seconds: float
    seconds: float
    database_bytes: int


@dataclass
class RestoreReport:
    database_seconds: float
    objects_seconds: float
    verify_seconds: float
    objects: int
    object_bytes: int


# -- small file helpers ----------------------------------------------------------------------


def _private_file(path: Path) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)


def _hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dialect(url: URL) -> str:
    name = url.get_backend_name()
    if name not in ("postgresql", "sqlite"):
        raise BackupFailed(detail_en=f"backups support PostgreSQL and SQLite, not {name}")
    return name


def _pg_args(url: URL) -> tuple[list[str], dict[str, str]]:
    """libpq connection arguments and environment (the password never on a command line)."""
    host = url.host or str(url.query.get("host") or "")
    args = ["--dbname", str(url.database or "")]
    if host:
        args += ["--host", host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    env["PGCONNECT_TIMEOUT"] = "10"
    return args, env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        result = subprocess.run(  # noqa: S603 - PG_BIN's binaries, arguments built here
            args, env=env, capture_output=True, text=True, timeout=24 * 3600, check=False
        )
    except FileNotFoundError:
        raise BackupFailed(detail_en=f"{what}: {args[0]} is not installed") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BackupFailed(detail_en=f"{what} failed: {last}")


# -- backup ----------------------------------------------------------------------------------


def _check_new_directory(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupFailed(detail_en=f"{directory} exists and is not an empty directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)


def _dump_postgres(
    url: URL, target: Path, inspector: SnapshotInspector
) -> tuple[set[str], list[int]]:
    engine = create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as connection, connection.begin():
            snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            referenced = inspector.referenced_objects(connection)
            versions = inspector.master_key_versions(connection)
            args, env = _pg_args(url)
            fd = _private_file(target)  # created 0600 before pg_dump writes into it
            os.close(fd)
            _run(
                [
                    str(PG_BIN / "pg_dump"),
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    "--file",
                    str(target),
                    *args,
                ],
                env,
                "pg_dump",
            )
    finally:
        engine.dispose()
    return referenced, versions


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupFailed(detail_en="an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _dump_sqlite(
    url: URL, target: Path, inspector: SnapshotInspector
) -> tuple[set[str], list[int]]:
    source = _sqlite_path(url)
    if not source.is_file():
        raise BackupFailed(detail_en=f"no SQLite database at {source}")
    os.close(_private_file(target))
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    engine = create_engine(f"sqlite:///{target.as_posix()}")
    try:
        with engine.connect() as connection:
            return inspector.referenced_objects(connection), inspector.master_key_versions(
                connection
            )
    finally:
        engine.dispose()


def _mirror_one(objects: ObjectStore, key: str, directory: Path) -> FileEntry | None:
    validate_key(key)  # keys never contain "..": each one is a safe relative path
    path = directory / OBJECTS_DIR / key
    digest = hashlib.sha256()
    size = 0
    try:
        reader = objects.get(key)
    except ObjectNotFound:
        return None  # deleted since it was listed
    fd = _private_file(path)
    with closing(reader), os.fdopen(fd, "wb") as out:
        for chunk in reader:
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return FileEntry(f"{OBJECTS_DIR}/{key}", size, digest.hexdigest())


def backup(
    directory: Path,
    *,
    database_url: str,
    objects: ObjectStore,
    inspector: SnapshotInspector,
    key_check_values: dict[int, str] | None = None,
    now: dt.datetime | None = None,
) -> BackupReport:
    """Write a consistent backup of the database and every object into a new ``directory``."""
    started = time.perf_counter()
    directory = Path(directory)
    _check_new_directory(directory)
    url = make_url(database_url)
    dialect = _dialect(url)
    database_file = PG_DUMP_FILE if dialect == "postgresql" else SQLITE_FILE
    dump = directory / database_file
    if dialect == "postgresql":
        referenced, versions = _dump_postgres(url, dump, inspector)
    else:
        referenced, versions = _dump_sqlite(url, dump, inspector)
    database_bytes, database_sha = _hash_file(dump)
    database_seconds = time.perf_counter() - started

    mirrored_at = time.perf_counter()
    keys = [info.key for info in objects.list("")]
    with ThreadPoolExecutor(max_workers=_COPY_THREADS, thread_name_prefix="backup") as pool:
        copied = [
            entry
            for entry in pool.map(lambda key: _mirror_one(objects, key, directory), keys)
            if entry is not None
        ]
    missing = referenced - {entry.path.removeprefix(OBJECTS_DIR + "/") for entry in copied}
    if missing:
        raise BackupFailed(
            detail_en=f"{len(missing)} object(s) the database snapshot references were deleted "
            "while the backup ran (documents shredded or accounts erased meanwhile); "
            "run the backup again into a new directory"
        )
    objects_seconds = time.perf_counter() - mirrored_at

    notice = directory / NOTICE
    with os.fdopen(_private_file(notice), "w", encoding="utf-8") as handle:
        handle.write(NOTICE_TEXT)
    notice_size, notice_sha = _hash_file(notice)
    files = [
        FileEntry(database_file, database_bytes, database_sha),
        FileEntry(NOTICE, notice_size, notice_sha),
        *sorted(copied, key=lambda entry: entry.path),
    ]
    manifest = Manifest(
        format=FORMAT,
        created_at=(now or dt.datetime.now(dt.UTC)).isoformat(),
        dialect=dialect,
        database_file=database_file,
        objects=len(copied),
        object_bytes=sum(entry.size for entry in copied),
        referenced_objects=len(referenced),
        master_key_versions=sorted(set(versions)),
        master_key_included=False,
        master_key_check_values={
            str(v): c for v, c in sorted((key_check_values or {}).items()) if v in set(versions)
        },
        files=files,
    )
    temp = directory / f".{MANIFEST}.tmp"
    with os.fdopen(_private_file(temp), "w", encoding="utf-8") as handle:
        json.dump(manifest.to_json(), handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, directory / MANIFEST)
    _fsync_dir(directory)
    return BackupReport(
        directory=directory,
        manifest=manifest,
        database_seconds=database_seconds,
        objects_seconds=objects_seconds,
        seconds=time.perf_counter() - started,
        database_bytes=database_bytes,
    )


# -- restore ---------------------------------------------------------------------------------


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest.from_json(data)
    except FileNotFoundError:
        raise BackupCorrupt(
            detail_en=f"{path} is missing: not a backup, or one that did not finish"
        ) from None
    except (ValueError, TypeError) as exc:
        raise BackupCorrupt(detail_en=f"{path} cannot be read: {exc}") from None
    if manifest.format != FORMAT:
        raise BackupCorrupt(detail_en=f"unknown backup format {manifest.format!r}")
    return manifest


def verify_backup(directory: Path) -> Manifest:
    """Read the manifest and check every file it lists (size and SHA-256)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    root = directory.resolve()
    for entry in manifest.files:
        path = (directory / entry.path).resolve()
        if root not in path.parents:
            raise BackupCorrupt(detail_en=f"manifest names a file outside the backup: {entry.path}")
        if not path.is_file():
            raise BackupCorrupt(detail_en=f"{entry.path} is missing")
        size, sha = _hash_file(path)
        if (size, sha) != (entry.size, entry.sha256):
            raise BackupCorrupt(
                detail_en=f"{entry.path} does not match its SHA-256 in the manifest"
            )
    if not any(entry.path == manifest.database_file for entry in manifest.files):
        raise BackupCorrupt(detail_en="the manifest lists no database file")
    return manifest


def database_is_empty(database_url: str) -> bool:
    """No table at all (a fresh database); a missing SQLite file counts as empty."""
    url = make_url(database_url)
    if _dialect(url) == "sqlite":
        path = _sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return True
        with closing(sqlite3.connect(path)) as conn:
            count = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
            return int(count.fetchone()[0]) == 0
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                text(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            ).scalar_one()
            return int(tables) == 0
    finally:
        engine.dispose()


def bucket_is_empty(objects: ObjectStore) -> bool:
    return next(iter(objects.list("")), None) is None


def _restore_postgres(url: URL, dump: Path, *, force: bool) -> None:
    args, env = _pg_args(url)
    _run(
        [
            str(PG_BIN / "pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            *(["--clean", "--if-exists"] if force else []),
            *args,
            str(dump),
        ],
        env,
        "pg_restore",
    )


def _restore_sqlite(url: URL, copy: Path) -> None:
    target = _sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".restore-", delete=False) as tmp:
        temp = Path(tmp.name)
    try:
        with closing(sqlite3.connect(copy)) as src, closing(sqlite3.connect(temp)) as dst:
            src.backup(dst)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def restore(
    directory: Path,
    *,
    database_url: str,
    objects: ObjectStore,
    force: bool = False,
    manifest: Manifest | None = None,
) -> RestoreReport:
    """Restore a verified backup onto an empty database and an empty bucket.

    ``manifest`` is the result of :func:`verify_backup` (it is called when not given).
    """
    directory = Path(directory)
    started = time.perf_counter()
    if manifest is None:
        manifest = verify_backup(directory)
    verify_seconds = time.perf_counter() - started
    url = make_url(database_url)
    if _dialect(url) != manifest.dialect:
        raise RestoreRefused(
            detail_en=f"the backup is of a {manifest.dialect} database, the target is "
            f"{url.get_backend_name()}"
        )
    if not force:
        if not database_is_empty(database_url):
            raise RestoreRefused(
                detail_en="the target database is not empty (it has tables); restore onto a "
                "fresh database, or pass --force to replace what is there"
            )
        if not bucket_is_empty(objects):
            raise RestoreRefused(
                detail_en="the target bucket is not empty; restore onto a fresh bucket, or "
                "pass --force to write over it"
            )
    began = time.perf_counter()
    dump = directory / manifest.database_file
    if manifest.dialect == "postgresql":
        _restore_postgres(url, dump, force=force)
    else:
        _restore_sqlite(url, dump)
    database_seconds = time.perf_counter() - began

    began = time.perf_counter()
    entries = list(manifest.object_files())

    def put(item: tuple[str, FileEntry]) -> int:
        key, entry = item
        objects.put(validate_key(key), _file_chunks(directory / entry.path))
        return entry.size

    with ThreadPoolExecutor(max_workers=_COPY_THREADS, thread_name_prefix="restore") as pool:
        restored = sum(pool.map(put, entries))
    return RestoreReport(
        database_seconds=database_seconds,
        objects_seconds=time.perf_counter() - began,
        verify_seconds=verify_seconds,
        objects=len(entries),
        object_bytes=restored,
    )


__all__ = [
    "FORMAT",
    "MANIFEST",
    "NOTICE",
    "BackupCorrupt",
    "BackupFailed",
    "BackupReport",
    "FileEntry",
    "Manifest",
    "RestoreRefused",
    "RestoreReport",
    "SnapshotInspector",
    "backup",
    "bucket_is_empty",
    "database_is_empty",
    "read_manifest",
    "restore",
    "verify_backup",
]
