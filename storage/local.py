"""The local-filesystem object store — FOR DEVELOPMENT ONLY.

.. warning::

   **NOT FOR PRODUCTION.** This backend exists so that one command shows the whole product on a
   laptop. It has no replication, no erasure coding, no cross-machine sharing and it was not
   hardened against a hostile local user. Production start-up (``KHO_ENV=production``) refuses
   it; use :class:`storage.s3.S3ObjectStore` with MinIO or another S3 server there.

Layout under ``root``::

    root/.tmp/<random>.part        writes in progress (never listed; stale ones removed at start)
    root/objects/a/b/c~obj         the object with key "a/b/c"

Key segments become directories; the last one gets the suffix ``~obj``. ``~`` cannot occur in a
key, so the object ``a`` (file ``a~obj``) and the objects under ``a/`` (directory ``a``) never
collide. On a case-insensitive file system keys differing only in case would collide; Kho's keys
are random lower-case identifiers.

One file per object holds the content followed by a trailer, so content and metadata are replaced
together by a single rename::

    <content: size bytes> <trailer: UTF-8 JSON {"v", "size", "etag", "metadata"}>
    <footer: 8-byte big-endian trailer length, 8-byte magic b"KHOLOBJ1">

``put`` streams into a temporary file in ``root/.tmp`` while hashing (the ETag is the SHA-256 hex
digest of the content), appends the trailer, fsyncs the file, renames it over the object, then
fsyncs the directory. Readers hold an open descriptor, so a concurrent overwrite never changes
what they read. Every path is walked one component at a time from a descriptor of
``root/objects`` with ``O_NOFOLLOW``; a key whose path would leave the root (including through a
symlink placed inside it) is refused, and symlinks are never followed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat as stat_mod
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storage.errors import InvalidObjectKey, ObjectCorrupt, ObjectNotFound, ObjectStoreUnavailable
from storage.objects import (
    CHUNK_SIZE,
    BaseObjectReader,
    EmptyReader,
    ObjectInfo,
    ObjectReader,
    check_range,
    prefix_can_match,
    validate_key,
    validate_metadata,
)

__all__ = ["LocalObjectStore"]

_SUFFIX = "~obj"
_MAGIC = b"KHOLOBJ1"
_FOOTER = struct.Struct(">Q8s")
_FORMAT_VERSION = 1
_STALE_TEMP_SECONDS = 24 * 3600

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _NotPlainError(Exception):
    """A path component is missing, a symlink or not a directory."""


class _FileReader(BaseObjectReader):
    """Reads ``[start, end)`` of an open file in :data:`CHUNK_SIZE` pieces with ``pread``."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        # A FileIO owns the descriptor, so it is closed even if the caller forgets to.
        self._file = open(fd, "rb", buffering=0, closefd=True)  # noqa: SIM115
        self._start = start
        self._end = end

    def __iter__(self) -> Iterator[bytes]:
        pos = self._start
        while pos < self._end:
            data = os.pread(self._file.fileno(), min(CHUNK_SIZE, self._end - pos), pos)
            if not data:
                raise ObjectCorrupt(detail_en="stored object is shorter than its trailer says")
            pos += len(data)
            yield data

    def close(self) -> None:
        self._file.close()


class LocalObjectStore:
    """Objects as files under ``root`` — development only; production refuses it (see module)."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root).resolve()
        self._objects = self._root / "objects"
        self._tmp = self._root / ".tmp"
        for path in (self._root, self._objects, self._tmp):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._remove_stale_temp_files()

    @property
    def root(self) -> Path:
        return self._root

    # -- the ObjectStore protocol -------------------------------------------------------------

    def put(
        self, key: str, chunks: Iterable[bytes], *, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        validate_key(key)
        meta = validate_metadata(metadata)
        self._check_inside(key)
        tmp_dir = os.open(self._tmp, _DIR_FLAGS)
        tmp_name = f"{secrets.token_hex(16)}.part"
        renamed = False
        try:
            fd = os.open(tmp_name, _TEMP_FLAGS, 0o600, dir_fd=tmp_dir)
            with open(fd, "wb", buffering=0, closefd=True) as out:
                digest = hashlib.sha256()
                size = 0
                for chunk in chunks:
                    view = memoryview(chunk).cast("B")
                    digest.update(view)
                    _write_all(out.fileno(), view)
                    size += view.nbytes
                etag = digest.hexdigest()
                trailer = json.dumps(
                    {"v": _FORMAT_VERSION, "size": size, "etag": etag, "metadata": meta},
                    ensure_ascii=False,
                    separators=(",", ":"),
                ).encode("utf-8")
                _write_all(out.fileno(), trailer + _FOOTER.pack(len(trailer), _MAGIC))
                os.fsync(out.fileno())
                modified = datetime.fromtimestamp(os.fstat(out.fileno()).st_mtime, tz=UTC)
            parent, name = self._open_parent(key, create=True)
            try:
                os.rename(tmp_name, name, src_dir_fd=tmp_dir, dst_dir_fd=parent)
                renamed = True
                os.fsync(parent)
            except IsADirectoryError:
                raise InvalidObjectKey(
                    detail_en="the object key's path inside the store is a directory"
                ) from None
            finally:
                os.close(parent)
        finally:
            if not renamed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name, dir_fd=tmp_dir)
            os.close(tmp_dir)
        return ObjectInfo(key=key, size=size, etag=etag, metadata=meta, modified=modified)

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectReader:
        check_range(offset, length)
        fd = self._open_object(key)
        try:
            size, _etag, _meta = _read_trailer(fd)
        except BaseException:
            os.close(fd)
            raise
        start = min(offset, size)
        end = size if length is None else min(size, offset + length)
        if start >= end:
            os.close(fd)
            return EmptyReader()
        return _FileReader(fd, start, end)

    def stat(self, key: str) -> ObjectInfo:
        fd = self._open_object(key)
        try:
            return _info(fd, key, with_metadata=True)
        finally:
            os.close(fd)

    def delete(self, key: str) -> None:
        validate_key(key)
        self._check_inside(key)
        try:
            parent, name = self._open_parent(key, create=False)
        except _NotPlainError:
            return
        try:
            os.unlink(name, dir_fd=parent)
            os.fsync(parent)
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not prefix_can_match(prefix):
            return
        *dirs, partial = prefix.split("/")
        try:
            fd = self._open_dirs(dirs, create=False)
        except _NotPlainError:
            return
        try:
            yield from _walk(fd, "".join(d + "/" for d in dirs), partial)
        finally:
            os.close(fd)

    def ping(self) -> None:
        for path in (self._objects, self._tmp):
            if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
                raise ObjectStoreUnavailable(
                    detail_en="the local object store's directory is missing or not writable"
                )

    # -- paths ---------------------------------------------------------------------------------

    def _check_inside(self, key: str) -> None:
        # Belt and braces: the descriptor walk below never follows a symlink anyway.
        resolved = (self._objects / (key + _SUFFIX)).resolve()
        if not resolved.is_relative_to(self._objects):
            raise InvalidObjectKey(detail_en="the object key's path leaves the store's root")

    def _open_dirs(self, dirs: Sequence[str], *, create: bool) -> int:
        fd = os.open(self._objects, _DIR_FLAGS)
        try:
            for name in dirs:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise _NotPlainError from None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=fd)
                        os.fsync(fd)  # the new directory's entry survives a crash too
                    child = _open_plain_dir(name, fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _NotPlainError from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_parent(self, key: str, *, create: bool) -> tuple[int, str]:
        *dirs, last = key.split("/")
        try:
            return self._open_dirs(dirs, create=create), last + _SUFFIX
        except _NotPlainError:
            if create:
                raise InvalidObjectKey(
                    detail_en="the object key's path inside the store is not a plain directory"
                ) from None
            raise

    def _open_object(self, key: str) -> int:
        validate_key(key)
        self._check_inside(key)
        try:
            parent, name = self._open_parent(key, create=False)
        except _NotPlainError:
            raise ObjectNotFound(detail_en="no object with this key") from None
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise ObjectNotFound(detail_en="no object with this key") from None
            raise
        finally:
            os.close(parent)
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ObjectNotFound(detail_en="no object with this key")
        return fd

    def _remove_stale_temp_files(self) -> None:
        # Left by a crash mid-put; old enough that no live writer can still own them.
        cutoff = time.time() - _STALE_TEMP_SECONDS
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


def _open_plain_dir(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _NotPlainError from None
        raise


def _write_all(fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_trailer(fd: int) -> tuple[int, str, dict[str, str]]:
    """Content size, etag and metadata from an object file's trailer."""
    total = os.fstat(fd).st_size
    if total < _FOOTER.size:
        raise ObjectCorrupt(detail_en="stored object has no trailer")
    trailer_len, magic = _FOOTER.unpack(os.pread(fd, _FOOTER.size, total - _FOOTER.size))
    size = total - _FOOTER.size - trailer_len
    if magic != _MAGIC or size < 0:
        raise ObjectCorrupt(detail_en="stored object has a damaged trailer")
    try:
        doc: Any = json.loads(os.pread(fd, trailer_len, size).decode("utf-8"))
    except ValueError:
        raise ObjectCorrupt(detail_en="stored object has a damaged trailer") from None
    if (
        not isinstance(doc, dict)
        or doc.get("v") != _FORMAT_VERSION
        or doc.get("size") != size
        or not isinstance(doc.get("etag"), str)
        or not isinstance(doc.get("metadata"), dict)
    ):
        raise ObjectCorrupt(detail_en="stored object has a damaged trailer")
    return size, doc["etag"], doc["metadata"]


def _info(fd: int, key: str, *, with_metadata: bool) -> ObjectInfo:
    size, etag, meta = _read_trailer(fd)
    modified = datetime.fromtimestamp(os.fstat(fd).st_mtime, tz=UTC)
    return ObjectInfo(
        key=key, size=size, etag=etag, metadata=meta if with_metadata else {}, modified=modified
    )


def _walk(dir_fd: int, base: str, partial: str) -> Iterator[ObjectInfo]:
    """Objects below ``dir_fd`` whose key relative to it starts with ``partial``, sorted.

    Each entry sorts as ``segment`` (an object) or ``segment/`` (a directory, all of whose keys
    start with that), which orders the walk exactly as sorting the full keys would.
    """
    entries: list[tuple[str, str, bool]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            name = entry.name
            if name.endswith(_SUFFIX) and entry.is_file(follow_symlinks=False):
                sort_key, is_object = name[: -len(_SUFFIX)], True
            elif entry.is_dir(follow_symlinks=False):
                sort_key, is_object = name + "/", False
            else:
                continue
            if sort_key.startswith(partial):
                entries.append((sort_key, name, is_object))
    entries.sort()
    for sort_key, name, is_object in entries:
        if is_object:
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                continue  # deleted since the directory was read
            try:
                yield _info(fd, base + sort_key, with_metadata=False)
            finally:
                os.close(fd)
        else:
            try:
                child = _open_plain_dir(name, dir_fd)
            except (_NotPlainError, FileNotFoundError):
                continue
            try:
                yield from _walk(child, base + sort_key, "")
            finally:
                os.close(child)
