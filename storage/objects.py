"""The object-store contract shared by every backend.

An :class:`ObjectStore` keeps opaque byte objects under keys. Kho stores only encrypted objects
under random keys, so a store never sees plaintext or personal data; what it must guarantee is
that writes are streamed with bounded memory, replace an object atomically, and that reads can be
ranged. The MinIO/S3 backend (``storage.s3``) and the development filesystem backend
(``storage.local``) pass the same contract suite (``tests/contract/test_object_store.py``).

Rules both backends share, defined here once:

* Keys (:func:`validate_key`): 1..512 characters from ``[A-Za-z0-9!_.*'()/-]``, split by ``/``
  into segments that are non-empty, not ``.`` or ``..``, and at most 240 characters (so that a
  segment is also a valid file name with room for the local store's suffix); no leading ``/``.
* A key must not also be the "directory" of another key (``a`` and ``a/b`` together): MinIO
  accepts both but then lists only ``a`` (its documented "conflicting objects" limit). Stores do
  not check this, since it would cost a lookup per write; key schemes must avoid it by design.
* Metadata (:func:`validate_metadata`): arbitrary Unicode keys and values, round-tripped exactly;
  its portable encoding (:func:`encode_metadata`) must fit S3's 2 KB user-metadata budget.
* Ranges: ``get(key, offset=o, length=n)`` returns the bytes ``data[o:o+n]`` exactly as Python
  slicing would (``length=None`` means to the end). An offset at or beyond the end gives an empty
  reader, not an error; a negative offset or length is a programming error (``ValueError``).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Protocol, Self
from urllib.parse import quote, unquote

from storage.errors import InvalidObjectKey, InvalidObjectMetadata

MiB = 1024 * 1024

#: Size of the chunks a reader yields (the last one may be shorter).
CHUNK_SIZE = 1 * MiB

MAX_KEY_LENGTH = 512
MAX_SEGMENT_LENGTH = 240

#: Longest accepted :func:`encode_metadata` output; S3 allows 2 KB of user metadata in total.
MAX_METADATA_ENCODED = 2000

_KEY_CHARS = re.compile(r"[A-Za-z0-9!_.*'()/-]*")
# JSON punctuation stays readable in the header; everything else outside the unreserved set,
# notably spaces (S3 signing collapses runs of them) and non-ASCII, is percent-encoded.
_METADATA_SAFE = '{}:,"'


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    ``etag`` changes whenever the content changes; its form is backend-specific (the local store
    uses the SHA-256 hex digest, S3 its own ETag) and must be treated as opaque. ``metadata`` is
    empty in :meth:`ObjectStore.list` results (call :meth:`ObjectStore.stat` for it). ``modified``
    may be ``None`` when the backend does not report it (S3 ``put``).
    """

    key: str
    size: int
    etag: str | None
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)
    modified: datetime | None = None

    def __post_init__(self) -> None:
        # Freeze the mapping too, so an ObjectInfo handed around cannot be changed under its owner.
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


class ObjectReader(Protocol):
    """The content of an object being read: an iterable of byte chunks that must be closed.

    Iterate once; use it as a context manager (or call :meth:`close`) so the file or HTTP
    connection behind it is released even when the caller stops early.
    """

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ObjectStore(Protocol):
    """A flat namespace of byte objects under validated keys."""

    def put(
        self, key: str, chunks: Iterable[bytes], *, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Store the concatenation of ``chunks`` under ``key``, replacing any previous object.

        The length need not be known in advance and memory stays bounded whatever the total size.
        The replacement is atomic: readers see the old object or the new one, never a mix, and
        if ``chunks`` raises, the old object (or its absence) is left as it was.
        """
        ...

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectReader:
        """Open the object (or the ``[offset, offset+length)`` slice of it) for reading.

        Raises :class:`~storage.errors.ObjectNotFound` here, at call time, not on iteration.
        """
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size, etag, metadata and modification time; :class:`ObjectNotFound` if absent."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a key that does not exist is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key (code-point order)."""
        ...

    def ping(self) -> None:
        """Check readiness; raises :class:`ObjectStoreUnavailable` if the store cannot be used."""
        ...


class BaseObjectReader(ABC):
    """Context-manager plumbing shared by the backends' readers."""

    @abstractmethod
    def __iter__(self) -> Iterator[bytes]: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EmptyReader(BaseObjectReader):
    """A reader with no content (a range that starts at or past the end of an object)."""

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        pass


def _key_problem(key: str) -> str | None:
    if not key:
        return "an object key must not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"an object key is at most {MAX_KEY_LENGTH} characters"
    if not _KEY_CHARS.fullmatch(key):
        return "an object key may contain only A-Z a-z 0-9 ! _ . * ' ( ) / -"
    if key.startswith("/"):
        return "an object key must not start with '/'"
    for segment in key.split("/"):
        if not segment:
            return "an object key must not contain an empty segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return "an object key must not contain a '.' or '..' segment"
        if len(segment) > MAX_SEGMENT_LENGTH:
            return f"an object key segment is at most {MAX_SEGMENT_LENGTH} characters"
    return None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise :class:`InvalidObjectKey`."""
    problem = _key_problem(key)
    if problem is not None:
        raise InvalidObjectKey(detail_en=problem)
    return key


def prefix_can_match(prefix: str) -> bool:
    """Whether some valid key could start with ``prefix`` (``list`` of any other prefix is empty).

    Every complete segment of the prefix must be a valid segment; the last, possibly partial,
    segment need only use key characters.
    """
    if not isinstance(prefix, str):
        raise TypeError("a prefix must be a string")
    if len(prefix) > MAX_KEY_LENGTH or not _KEY_CHARS.fullmatch(prefix):
        return False
    if prefix.startswith("/"):
        return False
    *complete, _partial = prefix.split("/")
    return all(s and s not in (".", "..") and len(s) <= MAX_SEGMENT_LENGTH for s in complete)


def check_range(offset: int, length: int | None) -> None:
    """Reject a negative offset or length (a caller's bug, not a user's input)."""
    if offset < 0:
        raise ValueError("offset must not be negative")
    if length is not None and length < 0:
        raise ValueError("length must not be negative")


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """The portable, ASCII-only form of metadata: percent-encoded compact JSON (UTF-8).

    One value carries the whole mapping, so keys keep their case and any character even though
    S3 metadata travels in case-insensitive, ASCII-only HTTP headers.
    """
    text = json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return quote(text, safe=_METADATA_SAFE, encoding="utf-8", errors="strict")


def decode_metadata(encoded: str) -> dict[str, str]:
    """Inverse of :func:`encode_metadata`."""
    value = json.loads(unquote(encoded, encoding="utf-8", errors="strict"))
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("stored object metadata is not a mapping of strings")
    return value


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """A plain copy of ``metadata`` if every backend can store it.

    Raises :class:`InvalidObjectMetadata` for non-string entries, lone surrogates, or metadata
    too large for S3's user-metadata budget once encoded.
    """
    if metadata is None:
        return {}
    result: dict[str, str] = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidObjectMetadata(detail_en="object metadata keys and values must be strings")
        try:
            k.encode("utf-8")
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidObjectMetadata(
                detail_en="object metadata must be encodable as UTF-8 (no lone surrogates)"
            ) from None
        result[k] = v
    if len(encode_metadata(result)) > MAX_METADATA_ENCODED:
        raise InvalidObjectMetadata(
            detail_en=f"object metadata is too large (over {MAX_METADATA_ENCODED} bytes encoded)"
        )
    return result
