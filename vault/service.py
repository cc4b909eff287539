"""Rules of the vault: documents, versions, streamed encrypted content, shredding and export.

Services never commit: the caller's unit of work does. Work that must only happen once the
transaction is durable (deleting objects after a shred) is registered with :func:`after_commit`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import secrets
import struct
import unicodedata
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common.clock import Clock
from consent.service import DocumentRef, ReadCapability
from storage.db import after_commit
from storage.erasures import Erasure, ErasureJournal
from storage.objects import ObjectStore
from storage.repository import IdempotencyRepository
from vault import crypto
from vault.errors import (
    ContentHashMismatch,
    ContentTooLarge,
    DocumentHasNoContent,
    DocumentNotFound,
    EmptyContent,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidCursor,
    RangeNotSatisfiable,
    UnknownDocumentType,
    UnsupportedMediaType,
    UploadConflict,
)
from vault.keyring import Keyring, object_context
from vault.keys import KeyProvider
from vault.models import Assurance, Document, DocumentVersion, VersionStatus
from vault.repository import DocumentRepository
from vault.schemas import ContentOut, DocumentCreate, DocumentOut

OBJECT_PREFIX = "v1/"
SNIFF_BYTES = 8

_MEDIA_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
_EXTENSIONS = {
    "application/pdf": ".pdf",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/tiff": ".tiff",
}


def sniff_media_type(prefix: bytes) -> str | None:
    """The media type decided from the first bytes, or None when it is not one Kho accepts."""
    for signature, media_type in _MEDIA_SIGNATURES:
        if prefix.startswith(signature):
            return media_type
    return None


_UNSAFE_FILENAME = re.compile(r"[^\w.\- ()]+", re.UNICODE)


def sanitise_filename(name: str | None, media_type: str) -> str:
    """A display name safe in any header or file system: no paths, controls or odd characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = _UNSAFE_FILENAME.sub("_", base).strip(" ._")[:120]
    if not base:
        base = "tai-lieu"
    extension = _EXTENSIONS[media_type]
    _stem, dot, ext = base.rpartition(".")
    if dot and ("." + ext.lower()) in (extension, ".jpeg", ".tif"):
        return base
    return base + extension


def _key_id(version_id: uuid.UUID, vault_key_version: int) -> bytes:
    return version_id.bytes + struct.pack(">I", vault_key_version)


class _MeteredSource:
    """Counts, hashes, size-limits and sniffs the plaintext as it streams past."""

    def __init__(self, chunks: Iterable[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.media_type: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        sniffed = False
        for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self._limit:
                raise ContentTooLarge(extra={"limit_bytes": self._limit})
            self.sha256.update(chunk)
            if sniffed:
                yield chunk
                continue
            pending += chunk
            if len(pending) >= SNIFF_BYTES:
                self._sniff(pending)
                sniffed = True
                yield pending
                pending = b""
        if not sniffed:
            if not pending:
                raise EmptyContent()
            self._sniff(pending)
            yield pending

    def _sniff(self, prefix: bytes) -> None:
        media_type = sniff_media_type(prefix)
        if media_type is None:
            raise UnsupportedMediaType()
        self.media_type = media_type


@dataclass(frozen=True)
class UploadResult:
    document: Document
    version: DocumentVersion
    created: bool


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


class OpenedContent:
    """A version ready to stream: DB work is done, only the object store is touched after."""

    def __init__(
        self,
        objects: ObjectStore,
        version: DocumentVersion,
        data_key: bytes,
        context: bytes,
    ) -> None:
        self.objects = objects
        self.version = version
        self._data_key = data_key
        self._context = context

    @property
    def size(self) -> int:
        return self.version.size or 0

    @property
    def etag(self) -> str:
        return f'"{self.version.sha256}"'

    def resolve_range(self, start: int | None, end: int | None) -> ByteRange:
        """``bytes=start-end`` (end inclusive), ``start-`` or ``-suffix`` to a checked range."""
        size = self.size
        if start is None:
            if end is None or end <= 0:
                raise RangeNotSatisfiable(extra={"size": size})
            return ByteRange(max(0, size - end), size)
        if start >= size or (end is not None and end < start):
            raise RangeNotSatisfiable(extra={"size": size})
        stop = size if end is None else min(end + 1, size)
        return ByteRange(start, stop)

    def iter_bytes(self, byte_range: ByteRange | None = None) -> Iterator[bytes]:
        key = self.version.object_key
        if byte_range is None or (byte_range.start == 0 and byte_range.end == self.size):
            with closing(self.objects.get(key)) as reader:
                yield from crypto.decrypt_stream(self._data_key, reader, context=self._context)
            return
        with closing(self.objects.get(key, offset=0, length=crypto.MAX_HEADER_LENGTH)) as reader:
            prefix = b"".join(reader)
        header = crypto.read_header(prefix)
        header_bytes = prefix[: header.header_length]
        span = crypto.segment_span(header, self.size, byte_range.start, byte_range.length)
        with closing(
            self.objects.get(key, offset=span.start, length=span.end - span.start)
        ) as reader:
            yield from crypto.decrypt_range(
                self._data_key, header, header_bytes, reader, span, context=self._context
            )


class UploadJournal:
    """Records an upload's pending version in its own, immediately committed transaction.

    This is the one deliberate exception to one-request-one-transaction: the pending row must be
    durable *before* the object is written, so that a crash at any later point leaves a row that
    ``kho storage sweep`` can find and clean up, and never an object nobody knows about.
    """

    def __init__(self, sessions: sessionmaker[Session], keys: KeyProvider, clock: Clock) -> None:
        self.sessions = sessions
        self.keys = keys
        self.clock = clock

    def begin(
        self,
        *,
        owner_id: uuid.UUID,
        document_id: uuid.UUID,
        version_id: uuid.UUID,
        object_key: str,
        assurance: Assurance,
        actor_id: uuid.UUID | None,
    ) -> tuple[int, int, bytes]:
        """Allocate the version number; returns (number, vault-key version, data key)."""
        for _attempt in range(8):
            with self.sessions() as session:
                keyring = Keyring(session, self.keys, self.clock)
                number = DocumentRepository(session).next_version_number(document_id)
                data_key, wrapped, vault_version = keyring.new_data_key(
                    owner_id, document_id, number
                )
                session.add(
                    DocumentVersion(
                        id=version_id,
                        document_id=document_id,
                        version=number,
                        status=VersionStatus.pending,
                        object_key=object_key,
                        vault_key_version=vault_version,
                        wrapped_data_key=wrapped,
                        assurance=assurance,
                        created_by=actor_id,
                        created_at=self.clock.now(),
                    )
                )
                try:
                    session.commit()
                except IntegrityError:
                    session.rollback()
                    continue
                return number, vault_version, data_key
        raise UploadConflict()

    def abandon(self, version_id: uuid.UUID) -> None:
        with self.sessions() as session:
            DocumentRepository(session).delete_version_unscoped(version_id)
            session.commit()


def _encode_cursor(document: Document) -> str:
    raw = json.dumps([document.created_at.isoformat(), str(document.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        when = dt.datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError
        return when, uuid.UUID(ident)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise InvalidCursor() from None


def content_out(version: DocumentVersion) -> ContentOut:
    return ContentOut(
        version=version.version,
        size=version.size or 0,
        sha256=version.sha256 or "",
        media_type=version.media_type or "application/octet-stream",
        filename=version.filename,
        assurance=version.assurance,
        created_at=version.committed_at or version.created_at,
    )


class DocumentService:
    def __init__(
        self,
        session: Session,
        objects: ObjectStore,
        keyring: Keyring,
        journal: UploadJournal,
        clock: Clock,
        *,
        max_upload_bytes: int,
        segment_size: int = crypto.DEFAULT_SEGMENT_SIZE,
        erasures: ErasureJournal | None = None,
    ) -> None:
        """``erasures``, when given, records every deletion and erasure before the caller's
        commit (the API always gives it; a restore's replay does not re-record what it reads)."""
        self.session = session
        self.repo = DocumentRepository(session)
        self.idempotency = IdempotencyRepository(session)
        self.objects = objects
        self.keyring = keyring
        self.journal = journal
        self.clock = clock
        self.max_upload_bytes = max_upload_bytes
        self.segment_size = segment_size
        self.erasures = erasures

    # -- metadata -----------------------------------------------------------------------------

    def create(self, owner_id: uuid.UUID, data: DocumentCreate) -> Document:
        if self.repo.document_type(data.type_code) is None:
            raise UnknownDocumentType(extra={"type_code": data.type_code})
        now = self.clock.now()
        document = Document(
            id=uuid.uuid4(),
            owner_id=owner_id,
            type_code=data.type_code,
            title=data.title,
            number=data.number,
            issuer=data.issuer,
            issued_on=data.issued_on,
            expires_on=data.expires_on,
            assurance=Assurance.self_declared,
            current_version=None,
            created_at=now,
            updated_at=now,
        )
        self.repo.add(document)
        self.session.flush()
        return document

    def get(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> Document:
        document = self.repo.get_for_owner(owner_id, document_id)
        if document is None:
            raise DocumentNotFound()
        return document

    def describe(self, document: Document) -> DocumentOut:
        current = (
            self.repo.version(document.id, document.current_version)
            if document.current_version
            else None
        )
        return DocumentOut(
            id=document.id,
            type_code=document.type_code,
            title=document.title,
            number=document.number,
            issuer=document.issuer,
            issued_on=document.issued_on,
            expires_on=document.expires_on,
            assurance=document.assurance,
            current_version=document.current_version,
            created_at=document.created_at,
            updated_at=document.updated_at,
            content=content_out(current) if current else None,
        )

    def list_documents(
        self,
        owner_id: uuid.UUID,
        *,
        type_code: str | None = None,
        assurance: Assurance | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Document], str | None]:
        after = _decode_cursor(cursor) if cursor else None
        rows = list(
            self.repo.list_for_owner(
                owner_id, type_code=type_code, assurance=assurance, after=after, limit=limit + 1
            )
        )
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return rows[:limit], next_cursor

    def versions(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> list[DocumentVersion]:
        self.get(owner_id, document_id)
        return list(self.repo.versions(document_id))

    # -- content ------------------------------------------------------------------------------

    def upload(
        self,
        owner_id: uuid.UUID,
        document_id: uuid.UUID,
        chunks: Iterable[bytes],
        *,
        filename: str | None,
        actor_id: uuid.UUID | None,
        assurance: Assurance = Assurance.self_declared,
        idempotency_key: str | None = None,
        expect_sha256: str | None = None,
    ) -> UploadResult:
        """Stream ``chunks`` encrypted into the object store as a new version.

        Order: pending row (committed at once) -> object -> the caller's commit. If these exact
        bytes are already a version of the document, that version is returned instead.
        """
        document = self.get(owner_id, document_id)
        scope = f"upload:{document_id}"
        if idempotency_key is not None:
            replay = self._replay_upload(owner_id, scope, idempotency_key, document, chunks)
            if replay is not None:
                return replay
        result = self._upload(
            owner_id, document, chunks, filename, actor_id, assurance, expect_sha256
        )
        if idempotency_key is not None:
            try:
                with self.session.begin_nested():
                    self.idempotency.add(
                        principal_id=owner_id,
                        scope=scope,
                        key=idempotency_key,
                        fingerprint=result.version.sha256 or "",
                        status_code=201 if result.created else 200,
                        body={"version": result.version.version, "created": result.created},
                        now=self.clock.now(),
                    )
            except IntegrityError:
                # A retry raced its original request and the other one recorded the key first:
                # this one rolls back (its pending version is swept), the client's next retry
                # with the key gets the recorded result. Never two versions for one key.
                raise IdempotencyKeyInUse() from None
        return result

    def _replay_upload(
        self,
        owner_id: uuid.UUID,
        scope: str,
        key: str,
        document: Document,
        chunks: Iterable[bytes],
    ) -> UploadResult | None:
        record = self.idempotency.get(owner_id, scope, key)
        if record is None:
            return None
        # The body is read (never stored) to tell a retry from a different request.
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        if digest.hexdigest() != record.fingerprint:
            raise IdempotencyKeyReused()
        version = self.repo.version(document.id, int(record.body["version"]))
        if version is None or version.status != VersionStatus.committed:
            raise DocumentHasNoContent()
        return UploadResult(document, version, created=bool(record.body["created"]))

    def _upload(
        self,
        owner_id: uuid.UUID,
        document: Document,
        chunks: Iterable[bytes],
        filename: str | None,
        actor_id: uuid.UUID | None,
        assurance: Assurance,
        expect_sha256: str | None = None,
    ) -> UploadResult:
        document_id = document.id
        object_key = OBJECT_PREFIX + secrets.token_hex(16)
        version_id = uuid.uuid4()
        number, vault_version, data_key = self.journal.begin(
            owner_id=owner_id,
            document_id=document_id,
            version_id=version_id,
            object_key=object_key,
            assurance=assurance,
            actor_id=actor_id,
        )
        source = _MeteredSource(chunks, self.max_upload_bytes)
        try:
            encrypted = crypto.encrypt_stream(
                data_key,
                source,
                key_id=_key_id(version_id, vault_version),
                context=object_context(owner_id, document_id, number),
                segment_size=self.segment_size,
            )
            info = self.objects.put(object_key, encrypted)
        except BaseException:
            with suppress(Exception):
                self.objects.delete(object_key)
                self.journal.abandon(version_id)
            raise
        version = self.repo.version_by_id_unscoped(version_id)
        assert version is not None
        sha = source.sha256.hexdigest()
        if expect_sha256 is not None and sha != expect_sha256.lower():
            # The bytes are not what was signed: nothing of them is kept.
            self.objects.delete(object_key)
            self.session.delete(version)
            self.session.flush()
            raise ContentHashMismatch()
        existing = self.repo.committed_with_hash(document_id, sha)
        if existing is not None:
            self.objects.delete(object_key)
            self.session.delete(version)
            self.session.flush()
            return UploadResult(document, existing, created=False)
        now = self.clock.now()
        version.status = VersionStatus.committed
        version.size = source.size
        version.stored_size = info.size
        version.sha256 = sha
        version.media_type = source.media_type
        version.filename = sanitise_filename(filename, source.media_type or "application/pdf")
        version.committed_at = now
        document.current_version = version.version
        # The document is as trustworthy as its current content, no more.
        document.assurance = assurance
        document.updated_at = now
        self.session.flush()
        return UploadResult(document, version, created=True)

    def open_content(
        self, owner_id: uuid.UUID, document_id: uuid.UUID, version_number: int | None = None
    ) -> OpenedContent:
        document = self.get(owner_id, document_id)
        number = version_number if version_number is not None else document.current_version
        if number is None:
            raise DocumentHasNoContent()
        version = self.repo.version(document_id, number)
        if version is None or version.status != VersionStatus.committed:
            raise DocumentHasNoContent()
        data_key = self.keyring.open_data_key(
            owner_id,
            document_id,
            version.version,
            version.vault_key_version,
            version.wrapped_data_key,
        )
        return OpenedContent(
            self.objects, version, data_key, object_context(owner_id, document_id, version.version)
        )

    def open_under(self, capability: ReadCapability) -> OpenedContent:
        """Open the exact version a consent capability names (for an agency's fetch).

        The capability was minted by the consent service after its check and its log entry in
        this transaction; the version and hash it pins are what the owner agreed to share.
        """
        found = self.repo.committed_version_with_key(
            capability.owner_id, capability.document_id, capability.version
        )
        if found is None or found[0].sha256 != capability.sha256:
            raise DocumentHasNoContent()
        # ``_key_row`` is held so that the keyring below finds it loaded (one round trip less).
        version, _key_row = found
        data_key = self.keyring.open_data_key(
            capability.owner_id,
            capability.document_id,
            version.version,
            version.vault_key_version,
            version.wrapped_data_key,
        )
        return OpenedContent(
            self.objects,
            version,
            data_key,
            object_context(capability.owner_id, capability.document_id, version.version),
        )

    # -- erasure and export -------------------------------------------------------------------

    def delete(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> None:
        """Shred every version's data key now; remove the objects once that is committed.

        The deletion is in the erasure journal before anything changes (so before the commit):
        a journal that cannot be written fails the deletion with nothing touched (ADR 0009)."""
        document = self.get(owner_id, document_id)
        now = self.clock.now()
        self._record(Erasure("document", document_id, now.isoformat()))
        keys: list[str] = []
        for version in self.repo.versions(document_id, committed_only=False):
            version.wrapped_data_key = None
            version.shredded_at = now
            keys.append(version.object_key)
        document.deleted_at = now
        document.updated_at = now
        self.session.flush()
        self._delete_objects_after_commit(keys)

    def erase_owner(self, owner_id: uuid.UUID) -> int:
        """Destroy the owner's vault keys first (all unreadable at once), then the rest.

        The account's erasure is in the erasure journal before anything changes (so before the
        commit): a journal that cannot be written fails the erasure with nothing touched (ADR
        0009)."""
        now = self.clock.now()
        self._record(Erasure("account", owner_id, now.isoformat()))
        self.keyring.destroy_owner(owner_id)
        keys: list[str] = []
        for version in self.repo.versions_of_owner(owner_id):
            version.wrapped_data_key = None
            version.shredded_at = version.shredded_at or now
            keys.append(version.object_key)
        for document in self.repo.all_for_owner(owner_id):
            document.deleted_at = now
            document.updated_at = now
        self.session.flush()
        self._delete_objects_after_commit(keys)
        return len(keys)

    def _record(self, erasure: Erasure) -> None:
        """Append to the erasure journal, durably, before the session is touched: on
        ErasureJournalUnavailable (503) this unit of work holds nothing of the erasure, even
        where a caller turns the error into a page and lets the session commit. An entry whose
        commit then fails is harmless: its replay only does what the owner asked for."""
        if self.erasures is not None:
            self.erasures.append(erasure)

    def _delete_objects_after_commit(self, keys: list[str]) -> None:
        def remove() -> None:
            for key in keys:
                self.objects.delete(key)

        after_commit(self.session, remove)

    def export(self, owner_id: uuid.UUID) -> Iterator[bytes]:
        """A streamed zip of every current document and a JSON of all metadata.

        Keys are opened now (inside the unit of work); the returned iterator touches only the
        object store, with memory bounded by one segment and the zip writer's buffer.
        """
        documents = list(self.repo.all_for_owner(owner_id))
        metadata = []
        opened: list[tuple[str, OpenedContent]] = []
        for document in documents:
            described = self.describe(document)
            metadata.append(json.loads(described.model_dump_json()))
            if document.current_version:
                content = self.open_content(owner_id, document.id)
                name = f"documents/{document.id}/{content.version.filename or 'content'}"
                opened.append((name, content))
        manifest = json.dumps(
            {"exported_at": self.clock.now().isoformat(), "documents": metadata},
            ensure_ascii=False,
            indent=2,
        ).encode()
        return _stream_zip(manifest, opened)


class DocumentDirectory:
    """The owner's current papers as the consent domain sees them (``OwnerDocuments``)."""

    def __init__(self, session: Session) -> None:
        self.repo = DocumentRepository(session)

    def current(self, owner_id: uuid.UUID) -> list[DocumentRef]:
        return [
            DocumentRef(
                document_id=document.id,
                owner_id=owner_id,
                document_type=document.type_code,
                title=document.title,
                version=version.version,
                sha256=version.sha256 or "",
                size=version.size or 0,
                media_type=version.media_type or "application/octet-stream",
                assurance=str(document.assurance),
                expires_on=document.expires_on,
                created_at=document.created_at,
            )
            for document, version in self.repo.current_versions_of_owner(owner_id)
        ]


class _ZipSink:
    """A write-only, non-seekable file whose bytes are drained by the zip generator."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.position = 0

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        return None

    def drain(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def _stream_zip(manifest: bytes, contents: list[tuple[str, OpenedContent]]) -> Iterator[bytes]:
    sink = _ZipSink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]
        archive.writestr("metadata.json", manifest)
        yield sink.drain()
        for name, content in contents:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            with archive.open(info, mode="w", force_zip64=True) as member:
                for chunk in content.iter_bytes():
                    member.write(chunk)
                    if len(sink.buffer) >= 1 << 20:
                        yield sink.drain()
            yield sink.drain()
    yield sink.drain()


@dataclass
class SweepReport:
    pending_removed: int = 0
    orphan_objects_removed: int = 0
    shredded_objects_removed: int = 0


class StorageSweeper:
    """Removes what interrupted uploads and erasures left behind; safe to run at any time.

    Only things older than ``grace`` are touched, so an upload in flight is never disturbed, and
    nothing a committed, unshredded version points to is ever removed.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        objects: ObjectStore,
        clock: Clock,
        grace: dt.timedelta = dt.timedelta(hours=1),
    ) -> None:
        self.sessions = sessions
        self.objects = objects
        self.clock = clock
        self.grace = grace

    def run(self) -> SweepReport:
        report = SweepReport()
        cutoff = self.clock.now() - self.grace
        with self.sessions() as session:
            repo = DocumentRepository(session)
            for version in repo.stale_pending_unscoped(cutoff):
                self.objects.delete(version.object_key)
                repo.delete_version_unscoped(version.id)
                session.commit()
                report.pending_removed += 1
        batch: list[str] = []
        for info in self.objects.list(OBJECT_PREFIX):
            if info.modified is not None and info.modified >= cutoff:
                continue
            batch.append(info.key)
            if len(batch) >= 500:
                self._sweep_batch(batch, report)
                batch = []
        if batch:
            self._sweep_batch(batch, report)
        return report

    def _sweep_batch(self, keys: list[str], report: SweepReport) -> None:
        with self.sessions() as session:
            repo = DocumentRepository(session)
            live = repo.live_object_keys_unscoped(keys)
            known = repo.known_object_keys_unscoped(keys)
        for key in keys:
            if key in live:
                continue
            self.objects.delete(key)
            if key in known:
                report.shredded_objects_removed += 1
            else:
                report.orphan_objects_removed += 1
