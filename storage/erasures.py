"""The erasure journal: every account erasure and document deletion, recorded outside the
database before the request that made it answers, so a restore of an older backup can replay it.

A backup taken before an erasure still holds the owner's wrapped vault key and their objects
(ADR 0004): restored as is, their papers would be readable again. ``kho restore`` therefore
replays a list of erasures kept outside the backups and the database (ADR 0009). The format is
UTF-8 text, one entry a line, ``#`` lines are comments::

    account <account id> <erased at, ISO 8601>
    document <document id> <deleted at, ISO 8601>

Ids are random UUIDs: the list holds no personal data. The same format is written by the
request path (:meth:`FileErasureJournal.append`, one fsync'd line per erasure) and by ``kho
backup --erasure-list FILE`` (:meth:`FileErasureJournal.merge`, the database's erasures not yet
listed), and read by ``kho restore``.

Writers never rewrite the file: every write is one ``write()`` of whole lines on a descriptor
opened with ``O_APPEND``, under an exclusive ``flock`` (so threads and processes, including a
``kho backup --erasure-list`` merging into the live journal, never interleave or lose a line),
followed by ``fsync`` (and an ``fsync`` of the directory when the write created the file). A
failure raises :class:`ErasureJournalUnavailable` (503); the vault appends before it changes
anything in the request's transaction, so no erasure is committed that the journal does not
hold.

:class:`ErasureJournal` is the protocol the vault uses; another backend (an object in a
separate, separately replicated bucket) can implement it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from common.errors import KhoError, ServiceUnavailable

ErasureKind = Literal["account", "document"]
KINDS: tuple[ErasureKind, ...] = ("account", "document")

ERASURE_LIST_HEADER = (
    "# Kho erasure list: one 'account <id> <erased at>' or 'document <id> <deleted at>' per "
    "line.\n# Keep it OUTSIDE the backups and the database; `kho restore` replays it "
    "(KHO_ERASURE_LIST, or --erasure-list FILE).\n"
)


class ErasureJournalUnavailable(ServiceUnavailable):
    """The erasure could not be recorded durably; nothing of it was committed."""

    code = "erasure_journal_unavailable"
    title_vi = "Nhật ký xoá dữ liệu tạm thời không sẵn sàng"
    title_en = "Erasure journal temporarily unavailable"

    def __init__(self) -> None:
        super().__init__(
            "Chưa ghi được yêu cầu xoá vào nhật ký xoá nên chưa xoá gì; vui lòng thử lại sau.",
            "The erasure could not be recorded in the erasure journal, so nothing was deleted; "
            "please retry later.",
        )


class ErasureListDamaged(KhoError):
    """A line of an erasure list is not ``account|document <uuid> [time]``."""

    code = "erasure_list_damaged"
    status = 500
    title_vi = "Danh sách xoá dữ liệu bị hỏng"
    title_en = "The erasure list is damaged"


@dataclass(frozen=True)
class Erasure:
    """One erased account or deleted document, and when (ISO 8601; may be empty)."""

    kind: ErasureKind
    id: uuid.UUID
    when: str = ""

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return (self.kind, self.id)

    def line(self) -> str:
        return f"{self.kind} {self.id} {self.when}".rstrip()


def parse_erasure_list(text: str, source: str) -> list[Erasure]:
    """The entries of an erasure list's text; ``source`` names it in the error."""
    entries: list[Erasure] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        kind = next((k for k in KINDS if k == parts[0]), None)
        try:
            if kind is None or len(parts) > 3:
                raise ValueError(parts[0])
            entries.append(Erasure(kind, uuid.UUID(parts[1]), parts[2] if len(parts) > 2 else ""))
        except (ValueError, IndexError):
            raise ErasureListDamaged(
                detail_en=f"{source}, line {number}: expected 'account|document <uuid> [time]'"
            ) from None
    return entries


def read_erasure_list(path: Path) -> list[Erasure]:
    """Every entry of the list at ``path``, in file order (OSError if it cannot be read)."""
    return parse_erasure_list(path.read_text(encoding="utf-8"), str(path))


class ErasureJournal(Protocol):
    """Where erasures are recorded, outside the database and the backups."""

    def append(self, erasure: Erasure) -> None:
        """Record ``erasure`` durably before returning, or raise
        :class:`ErasureJournalUnavailable`."""
        ...

    def entries(self) -> list[Erasure]:
        """Every recorded erasure, oldest first."""
        ...

    def ping(self) -> None:
        """Raise :class:`ErasureJournalUnavailable` if an append would fail now (readiness);
        writes nothing."""
        ...


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileErasureJournal:
    """An append-only, fsync'd file of erasure-list lines (``KHO_ERASURE_LIST``).

    Its directory must exist: a missing directory (say, an unmounted volume) fails the erasure
    rather than journal to the wrong disk. Each call opens the file anew, so a journal moved
    aside by an operator is simply started again, and ``flock`` works between threads too (each
    open is its own lock holder).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, erasure: Erasure) -> None:
        try:
            with self._locked() as fd:
                self._write(fd, [erasure])
        except OSError as exc:
            raise ErasureJournalUnavailable() from exc

    def entries(self) -> list[Erasure]:
        if not self.path.exists():
            return []
        return read_erasure_list(self.path)

    def ping(self) -> None:
        target = self.path if self.path.exists() else self.path.parent
        if not target.exists() or not os.access(target, os.W_OK):
            raise ErasureJournalUnavailable()
        if target == self.path and not self.path.is_file():
            raise ErasureJournalUnavailable()

    def merge(self, erasures: Iterable[Erasure]) -> tuple[int, int]:
        """Append the ``erasures`` not listed yet (sorted by time); returns (new, total).

        Safe while requests append to the same file: it reads and appends under the lock.
        """
        try:
            with self._locked() as fd:
                size = os.fstat(fd).st_size
                known = parse_erasure_list(os.pread(fd, size, 0).decode("utf-8"), str(self.path))
                seen = {entry.key for entry in known}
                new: dict[tuple[str, uuid.UUID], Erasure] = {}
                for entry in erasures:
                    if entry.key not in seen:
                        new.setdefault(entry.key, entry)
                ordered = sorted(new.values(), key=lambda e: (e.when, e.kind, str(e.id)))
                if ordered or size == 0:
                    self._write(fd, ordered)
        except OSError as exc:
            raise ErasureJournalUnavailable() from exc
        return len(ordered), len(known) + len(ordered)

    @contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _write(self, fd: int, erasures: list[Erasure]) -> None:
        """One ``write()`` of whole lines at the end, then ``fsync``; the caller holds the lock.

        A new (empty) file starts with the header and its directory is fsync'd too. If the file
        does not end in a newline (a write torn by a crash, never acknowledged), the new lines
        start on a line of their own.
        """
        size = os.fstat(fd).st_size
        if size == 0:
            prefix = ERASURE_LIST_HEADER
        elif os.pread(fd, 1, size - 1) != b"\n":
            prefix = "\n"
        else:
            prefix = ""
        data = (prefix + "".join(entry.line() + "\n" for entry in erasures)).encode("utf-8")
        if data:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")
        os.fsync(fd)
        if size == 0:
            _fsync_directory(self.path.parent)


__all__ = [
    "ERASURE_LIST_HEADER",
    "Erasure",
    "ErasureJournal",
    "ErasureJournalUnavailable",
    "ErasureKind",
    "ErasureListDamaged",
    "FileErasureJournal",
    "parse_erasure_list",
    "read_erasure_list",
]
