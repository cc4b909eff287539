"""``kho backup DIR`` and ``kho restore DIR``: a consistent copy of the database and the bucket,
and its restore onto empty servers, with the erasures made since replayed.

The files and their consistency are :mod:`storage.backup`'s; this module adds what needs the
vault and consent layers: which objects and master-key versions a snapshot needs, a check value
of each master key (so a restore refuses the wrong key before it touches anything), the erasure
list kept *outside* the backups and its replay, and the checks after a restore (the access log
verifies, every live version's object is there and decrypts to its SHA-256).

The erasure list is the erasure journal (``KHO_ERASURE_LIST``, :mod:`storage.erasures`) that
every account erasure and document deletion is appended to before it is answered; ``kho restore``
replays it unless ``--erasure-list FILE`` names another list or ``--no-erasure-replay`` is given.
``kho backup --erasure-list FILE`` still merges the database's erasures into ``FILE`` (only
appending, so ``FILE`` may be the live journal).

**The master key is never copied into a backup.** Both commands say so on every run.

Exit status: 0 done; 1 the restore finished but a check after it failed; 2 nothing was done
(refused, damaged backup, wrong or missing master key, configuration).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from common.errors import KhoError
from common.settings import Settings, load_settings
from storage.erasures import (
    Erasure,
    ErasureJournalUnavailable,
    ErasureListDamaged,
    FileErasureJournal,
)

if TYPE_CHECKING:
    from api.container import Container
    from vault.keys import KeyProvider

backup_app = typer.Typer(
    help="Backups: a consistent copy of the database and every object (never the master key), "
    "and its restore onto empty servers.",
    no_args_is_help=True,
)

MiB = 1024 * 1024
KEY_CHECK_LABEL = b"kho/backup/master-key-check/v1"
LOUD_NOTICE = (
    "*** THE MASTER KEY IS NOT IN THIS BACKUP. Keep master-key version(s) {versions} apart from "
    "it (another medium, another custodian): a restore needs them, and anyone holding both can "
    "read every paper. ***"
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"kho: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def _settings() -> Settings:
    try:
        return load_settings()
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")


def _container(settings: Settings) -> Container:
    from api.container import build_container

    try:
        return build_container(settings)
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")


def key_check_value(key: bytes) -> str:
    """A check value of a master key: HMAC-SHA256 of a fixed label (it reveals nothing usable
    about the key, and tells the right key from another with the same version number)."""
    return hmac.new(key, KEY_CHECK_LABEL, hashlib.sha256).hexdigest()[:32]


def _check_values(keys: KeyProvider) -> dict[int, str]:
    return {version: key_check_value(keys.get(version)) for version in keys.versions()}


class VaultSnapshot:
    """:class:`storage.backup.SnapshotInspector` over Kho's tables."""

    def referenced_objects(self, connection: Connection) -> set[str]:
        from vault.models import DocumentVersion, VersionStatus

        rows = connection.execute(
            select(DocumentVersion.object_key).where(
                DocumentVersion.status == VersionStatus.committed,
                DocumentVersion.wrapped_data_key.is_not(None),
                DocumentVersion.shredded_at.is_(None),
            )
        )
        return {str(key) for (key,) in rows}

    def master_key_versions(self, connection: Connection) -> list[int]:
        from sso.models import SigningKey
        from vault.models import VaultKey

        versions = {
            int(v)
            for (v,) in connection.execute(
                select(VaultKey.master_key_version)
                .where(VaultKey.wrapped_key.is_not(None))
                .distinct()
            )
        }
        # Sealed secrets start with the master-key version that sealed them (u32, big-endian).
        for (sealed,) in connection.execute(select(SigningKey.sealed_private_key)):
            if sealed is not None and len(sealed) >= 4:
                versions.add(struct.unpack(">I", bytes(sealed[:4]))[0])
        return sorted(versions)


# -- the erasure list --------------------------------------------------------------------------


def read_erasure_list(path: Path) -> list[Erasure]:
    """The list at ``path`` (the journal the API appends to, or an operator's copy)."""
    try:
        return FileErasureJournal(path).entries()
    except ErasureListDamaged as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")


def erasures_in_database(container: Container) -> list[Erasure]:
    """The erased accounts, and the deleted documents of accounts that are not erased (an
    account's line covers its documents, as in the journal the requests write)."""
    from identity.models import Account, AccountStatus
    from vault.models import Document

    erased = select(Account.id).where(Account.status == AccountStatus.erased)
    with container.sessions() as session:
        accounts = session.execute(
            select(Account.id, Account.erased_at).where(Account.status == AccountStatus.erased)
        ).all()
        documents = session.execute(
            select(Document.id, Document.deleted_at).where(
                Document.deleted_at.is_not(None), Document.owner_id.not_in(erased)
            )
        ).all()
    return [Erasure("account", i, when.isoformat() if when else "") for i, when in accounts] + [
        Erasure("document", i, when.isoformat() if when else "") for i, when in documents
    ]


def update_erasure_list(container: Container, path: Path) -> tuple[int, int]:
    """Merge the database's erased accounts and deleted documents into ``path``: (new, total).

    Only appends (under the journal's lock), so ``path`` may be the live journal
    (``KHO_ERASURE_LIST``) that requests append to at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return FileErasureJournal(path).merge(erasures_in_database(container))
    except ErasureListDamaged as exc:
        _fail(str(exc))
    except ErasureJournalUnavailable as exc:
        _fail(f"{exc.code}: {path}: {exc.__cause__ or exc}")


@dataclass
class ReplayReport:
    accounts_erased: int = 0
    documents_shredded: int = 0
    already_done: int = 0
    not_in_backup: int = 0


def replay_erasures(container: Container, entries: list[Erasure]) -> ReplayReport:
    """Erase again what was erased after the backup: destroy the accounts' vault keys (every
    paper of theirs unreadable at once), shred deleted documents' data keys, then remove their
    objects. Idempotent; accounts the database marks erased are included whatever the list says.
    """
    from identity.models import Account, AccountStatus
    from identity.service import IdentityService
    from storage.db import session_scope
    from vault.keyring import Keyring
    from vault.models import Document, VaultKey
    from vault.service import DocumentService, UploadJournal

    report = ReplayReport()
    todo = {(e.kind, e.id) for e in entries}
    todo |= {(e.kind, e.id) for e in erasures_in_database(container) if e.kind == "account"}
    for kind, ident in sorted(todo, key=lambda item: (item[0], str(item[1]))):
        with session_scope(container.sessions) as session:
            documents = DocumentService(
                session,
                container.objects,
                Keyring(session, container.keys, container.clock),
                UploadJournal(container.sessions, container.keys, container.clock),
                container.clock,
                max_upload_bytes=container.settings.max_upload_bytes,
            )
            if kind == "account":
                account = session.get(Account, ident)
                if account is None:
                    report.not_in_backup += 1
                    continue
                live_keys = session.scalar(
                    select(func.count())
                    .select_from(VaultKey)
                    .where(VaultKey.owner_id == ident, VaultKey.wrapped_key.is_not(None))
                )
                if account.status == AccountStatus.erased and not live_keys:
                    report.already_done += 1
                    continue
                documents.erase_owner(ident)
                if account.status != AccountStatus.erased:
                    IdentityService(session, container.clock).mark_erased(ident)
                report.accounts_erased += 1
            else:
                document = session.get(Document, ident)
                if document is None:
                    report.not_in_backup += 1
                elif document.deleted_at is not None:
                    report.already_done += 1
                else:
                    documents.delete(document.owner_id, ident)
                    report.documents_shredded += 1
    return report


# -- checks after a restore --------------------------------------------------------------------


@dataclass
class RestoreCheck:
    log_ok: bool = False
    log_entries: int = 0
    log_first_failure: str | None = None
    live_versions: int = 0
    missing_objects: int = 0
    decrypted: int = 0
    decrypt_failures: int = 0

    @property
    def ok(self) -> bool:
        return self.log_ok and not self.missing_objects and not self.decrypt_failures


def check_restored(container: Container, *, decrypt: bool) -> RestoreCheck:
    from consent.audit import AccessLog
    from sso.keys import ProviderJwsSigner
    from vault.keyring import Keyring
    from vault.models import Document, DocumentVersion, VersionStatus
    from vault.service import DocumentService, UploadJournal

    check = RestoreCheck()
    with container.sessions() as session:
        report = AccessLog(
            session, container.clock, ProviderJwsSigner(container.signing_keys)
        ).verify_all()
        session.rollback()
        check.log_ok = report.ok
        check.log_entries = report.entries_checked
        check.log_first_failure = None if report.ok else str(report.first_failure)
        live = session.execute(
            select(
                Document.owner_id,
                DocumentVersion.document_id,
                DocumentVersion.version,
                DocumentVersion.object_key,
                DocumentVersion.sha256,
            )
            .join(Document, Document.id == DocumentVersion.document_id)
            .where(
                DocumentVersion.status == VersionStatus.committed,
                DocumentVersion.wrapped_data_key.is_not(None),
                DocumentVersion.shredded_at.is_(None),
                Document.deleted_at.is_(None),
            )
        ).all()
    check.live_versions = len(live)
    present = {info.key for info in container.objects.list("")}
    check.missing_objects = sum(1 for row in live if row.object_key not in present)
    if not decrypt:
        return check
    with container.sessions() as session:
        documents = DocumentService(
            session,
            container.objects,
            Keyring(session, container.keys, container.clock),
            UploadJournal(container.sessions, container.keys, container.clock),
            container.clock,
            max_upload_bytes=container.settings.max_upload_bytes,
        )
        for owner_id, document_id, version, _key, sha in live:
            digest = hashlib.sha256()
            try:
                for chunk in documents.open_content(owner_id, document_id, version).iter_bytes():
                    digest.update(chunk)
            except KhoError:
                check.decrypt_failures += 1
                continue
            if digest.hexdigest() == sha:
                check.decrypted += 1
            else:
                check.decrypt_failures += 1
        session.rollback()
    return check


# -- the commands ------------------------------------------------------------------------------


def _inside(path: Path, directory: Path) -> bool:
    path, directory = path.resolve(), directory.resolve()
    return path == directory or directory in path.parents


@backup_app.command("backup")
def backup_command(
    directory: Annotated[Path, typer.Argument(help="A new (or empty) directory for the backup")],
    erasure_list: Annotated[
        Path | None,
        typer.Option(
            "--erasure-list",
            help="Also merge the erased accounts and deleted documents into this list, kept "
            "OUTSIDE the backups (a restore replays it)",
        ),
    ] = None,
) -> None:
    """Back up the database (consistent snapshot) and every object. Never the master key."""
    from storage.backup import backup

    if erasure_list is not None and _inside(erasure_list, directory):
        _fail("--erasure-list must be outside the backup directory (it outlives the backups)")
    settings = _settings()
    container = _container(settings)
    try:
        report = backup(
            directory,
            database_url=settings.effective_database_url,
            objects=container.objects,
            inspector=VaultSnapshot(),
            key_check_values=_check_values(container.keys),
            now=container.clock.now(),
        )
        listed = update_erasure_list(container, erasure_list) if erasure_list else None
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")
    except SQLAlchemyError as exc:
        _fail(f"database: {str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}")
    finally:
        container.close()
    manifest = report.manifest
    versions = ", ".join(str(v) for v in manifest.master_key_versions) or "(none yet)"
    typer.echo(
        f"backup written to {report.directory}: database {report.database_bytes / MiB:.1f} MiB "
        f"({manifest.dialect}, {report.database_seconds:.2f} s), {manifest.objects:,} objects "
        f"{manifest.object_bytes / MiB:.1f} MiB ({report.objects_seconds:.2f} s), SHA-256 of "
        f"{len(manifest.files):,} files in {report.directory / 'manifest.json'}; "
        f"{report.seconds:.2f} s in all"
    )
    if listed is not None:
        typer.echo(f"erasure list {erasure_list}: {listed[0]} new, {listed[1]} in all")
    missing = [v for v in manifest.master_key_versions if v not in container.keys.versions()]
    if missing:
        typer.echo(
            f"warning: master-key version(s) {missing} are needed but not configured here",
            err=True,
        )
    typer.echo(LOUD_NOTICE.format(versions=versions), err=True)


@backup_app.command("restore")
def restore_command(
    directory: Annotated[Path, typer.Argument(help="A directory written by `kho backup`")],
    erasure_list: Annotated[
        Path | None,
        typer.Option(
            "--erasure-list",
            help="The erasure list kept outside the backups: its accounts and documents are "
            "erased again after the restore [default: the erasure journal, KHO_ERASURE_LIST, "
            "if it exists]",
        ),
    ] = None,
    no_erasure_replay: Annotated[
        bool,
        typer.Option(
            "--no-erasure-replay",
            help="Restore without an erasure list (papers erased after the backup become "
            "readable again): say so explicitly",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Restore over a database with tables / a bucket with objects"),
    ] = False,
    check_documents: Annotated[
        bool,
        typer.Option(help="Decrypt every live document afterwards and compare its SHA-256"),
    ] = True,
) -> None:
    """Restore a backup onto an empty database and an empty bucket (the same master key
    configured as when it was made), replay the erasures made since, and check the result."""
    from storage.backup import read_manifest, restore, verify_backup
    from storage.migrate import upgrade
    from storage.s3 import S3ObjectStore

    if erasure_list is not None and not erasure_list.is_file():
        _fail(f"--erasure-list {erasure_list}: no such file")
    settings = _settings()
    if erasure_list is None and not no_erasure_replay:
        # The journal every erasure and deletion was appended to before it was answered.
        journal = settings.effective_erasure_list
        if not journal.is_file():
            _fail(
                f"no erasure list: the erasure journal KHO_ERASURE_LIST ({journal}) does not "
                "exist here; point KHO_ERASURE_LIST at it or give --erasure-list FILE (papers "
                "erased after the backup must not come back), or --no-erasure-replay to restore "
                "without it"
            )
        erasure_list = journal
    if settings.uses_generated_master_key and not settings.generated_master_key_file.exists():
        _fail(
            f"no master key at {settings.generated_master_key_file}: the backup does not contain "
            "it; put the master key file there (or set KHO_MASTER_KEY_FILE / KHO_MASTER_KEYS)"
        )
    try:
        manifest = read_manifest(directory)
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")
    container = _container(settings)
    started = time.perf_counter()
    try:
        available = container.keys.versions()
        for text_version, expected in manifest.master_key_check_values.items():
            version = int(text_version)
            if version not in available:
                _fail(
                    f"master-key version {version} is needed and not configured; the backup does "
                    "not contain it: configure the key the backup was made with"
                )
            if key_check_value(container.keys.get(version)) != expected:
                _fail(
                    f"the configured master-key version {version} is not the one this backup was "
                    "made with (check values differ); nothing was restored"
                )
        for version in manifest.master_key_versions:
            if version not in available:
                _fail(f"master-key version {version} is needed and not configured")
        entries = read_erasure_list(erasure_list) if erasure_list is not None else []
        verifying = time.perf_counter()
        manifest = verify_backup(directory)
        verify_seconds = time.perf_counter() - verifying
        if isinstance(container.objects, S3ObjectStore):
            container.objects.ensure_bucket()
        report = restore(
            directory,
            database_url=settings.effective_database_url,
            objects=container.objects,
            force=force,
            manifest=manifest,
        )
        upgrade(settings.effective_database_url)
        container.signing_keys.invalidate()
        replayed = replay_erasures(container, entries)
        check = check_restored(container, decrypt=check_documents)
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")
    except SQLAlchemyError as exc:
        _fail(f"database: {str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}")
    finally:
        container.close()
    typer.echo(
        f"restored {directory} ({manifest.created_at}): database {report.database_seconds:.2f} s, "
        f"{report.objects:,} objects {report.object_bytes / MiB:.1f} MiB "
        f"{report.objects_seconds:.2f} s (every file's SHA-256 checked first: "
        f"{verify_seconds:.2f} s); "
        f"{time.perf_counter() - started:.2f} s in all"
    )
    typer.echo(
        f"erasures replayed: {replayed.accounts_erased} accounts erased, "
        f"{replayed.documents_shredded} documents shredded, {replayed.already_done} already "
        f"done, {replayed.not_in_backup} not in this backup"
        + (
            f" (erasure list {erasure_list}: {len(entries):,} entries)"
            if erasure_list
            else " (NO erasure list given: --no-erasure-replay)"
        )
    )
    decrypted = (
        f", {check.decrypted:,} decrypted to their SHA-256, {check.decrypt_failures} failed"
        if check_documents
        else ""
    )
    typer.echo(
        f"checks: access log {'verifies' if check.log_ok else 'does NOT verify'} "
        f"({check.log_entries:,} entries); {check.live_versions:,} live versions, "
        f"{check.missing_objects} objects missing{decrypted}"
    )
    typer.echo(
        "reminder: the master key was not in the backup; the same key is configured here.",
        err=True,
    )
    if not check.ok:
        if check.log_first_failure:
            typer.echo(f"first access-log failure: {check.log_first_failure}", err=True)
        raise typer.Exit(1)


__all__ = [
    "VaultSnapshot",
    "backup_app",
    "backup_command",
    "check_restored",
    "key_check_value",
    "read_erasure_list",
    "replay_erasures",
    "restore_command",
    "update_erasure_list",
]
