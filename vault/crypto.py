"""The cryptographic core of the vault: key wrapping and the streaming encrypted object format.

This is the only module of Kho that touches AES-GCM. Everything else handles keys and
ciphertext as opaque bytes and calls the functions below. The object format is specified in
``docs/encrypted-object-format.md``; in short::

    object  = header || segment_0 || ... || segment_{n-1}
    header  = "KHOv" | version u8 | segment_size u32 | key_id_len u8 | key_id | salt[32]
              | nonce_prefix[7] | commitment[32]
    segment = AES-256-GCM(segment_key, nonce_prefix || i u32 || last u8,
                          plaintext_i, aad = SHA-256(header) || context)

``segment_key`` and a commitment key come from HKDF-SHA256(data_key, salt); the commitment is an
HMAC-SHA256 under the commitment key of the header fields before it and the caller's context, so
one object opens under exactly one (data key, context) pair, and it is checked before any segment
is decrypted.

Every authentication failure raises :class:`~vault.errors.DecryptionFailed` with one message.
Misuse by the caller (a key of the wrong length, a segment size out of range, an impossible range)
raises :class:`ValueError`: those are bugs, not properties of the ciphertext.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.errors import DecryptionFailed

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "FORMAT_VERSION",
    "HEADER_PREFIX_LENGTH",
    "KEY_SIZE",
    "MAGIC",
    "MAX_HEADER_LENGTH",
    "MAX_KEY_ID_LENGTH",
    "MAX_SEGMENT_SIZE",
    "MIN_HEADER_LENGTH",
    "MIN_SEGMENT_SIZE",
    "TAG_SIZE",
    "WRAPPED_KEY_SIZE",
    "BytesLike",
    "ObjectHeader",
    "SegmentSpan",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_range",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "header_length_from_prefix",
    "new_key",
    "plaintext_size",
    "read_header",
    "segment_span",
    "unwrap_key",
    "wrap_key",
]

BytesLike = bytes | bytearray | memoryview

KEY_SIZE = 32
TAG_SIZE = 16

# --- key wrapping -------------------------------------------------------------------------------

WRAP_VERSION = 1
_WRAP_NONCE_SIZE = 12
_WRAP_OVERHEAD = 1 + _WRAP_NONCE_SIZE + TAG_SIZE
WRAPPED_KEY_SIZE = _WRAP_OVERHEAD + KEY_SIZE  # for a 32-byte key
MAX_WRAPPED_SECRET = 64 * 1024

# --- object format ------------------------------------------------------------------------------

MAGIC = b"KHOv"
FORMAT_VERSION = 1
DEFAULT_SEGMENT_SIZE = 64 * 1024
MIN_SEGMENT_SIZE = 4 * 1024
MAX_SEGMENT_SIZE = 8 * 1024 * 1024
MAX_KEY_ID_LENGTH = 255
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
COMMITMENT_SIZE = 32
MAX_SEGMENTS = 2**32  # the segment counter is a u32

# magic, version, segment size, key id length: enough to know the whole header's length
HEADER_PREFIX_LENGTH = 4 + 1 + 4 + 1
MIN_HEADER_LENGTH = HEADER_PREFIX_LENGTH + SALT_SIZE + NONCE_PREFIX_SIZE + COMMITMENT_SIZE
MAX_HEADER_LENGTH = MIN_HEADER_LENGTH + MAX_KEY_ID_LENGTH

_SEGMENT_KEY_INFO = b"KHO object v1 segment key"
_COMMITMENT_KEY_INFO = b"KHO object v1 commitment key"
_NOT_LAST = b"\x00"
_LAST = b"\x01"


def new_key() -> bytes:
    """A fresh random 256-bit key (data key or vault key)."""
    return os.urandom(KEY_SIZE)


def _require_key(key: BytesLike, name: str) -> None:
    # The message names the argument, never its value.
    if not isinstance(key, bytes | bytearray | memoryview) or len(key) != KEY_SIZE:
        raise ValueError(f"{name} must be {KEY_SIZE} bytes")


def wrap_key(kek: bytes, key: bytes, *, aad: bytes) -> bytes:
    """Encrypt ``key`` under the key-encryption key ``kek``, bound to ``aad``.

    Output: ``0x01 || nonce (12 random bytes) || AES-256-GCM(kek, nonce, key, aad=0x01 || aad)``,
    :data:`WRAPPED_KEY_SIZE` (61) bytes for a 32-byte key. ``aad`` must encode what the key
    belongs to (owner, document, version) so that a wrapped key copied elsewhere does not unwrap.
    ``key`` is usually a 32-byte key but may be any small secret (1 byte to 64 KiB).
    """
    _require_key(kek, "kek")
    if not 1 <= len(key) <= MAX_WRAPPED_SECRET:
        raise ValueError(f"key must be 1 to {MAX_WRAPPED_SECRET} bytes")
    version = bytes([WRAP_VERSION])
    nonce = os.urandom(_WRAP_NONCE_SIZE)
    return version + nonce + AESGCM(kek).encrypt(nonce, bytes(key), version + bytes(aad))


def unwrap_key(kek: bytes, wrapped: bytes, *, aad: bytes) -> bytes:
    """Reverse :func:`wrap_key`; any failure raises :class:`DecryptionFailed`."""
    _require_key(kek, "kek")
    wrapped = bytes(wrapped)
    if len(wrapped) < _WRAP_OVERHEAD + 1 or wrapped[0] != WRAP_VERSION:
        raise DecryptionFailed()
    nonce = wrapped[1 : 1 + _WRAP_NONCE_SIZE]
    try:
        return AESGCM(kek).decrypt(nonce, wrapped[1 + _WRAP_NONCE_SIZE :], wrapped[:1] + bytes(aad))
    except InvalidTag:
        raise DecryptionFailed() from None


# --- header -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectHeader:
    """The parsed header of an encrypted object. Every field is public (no secret in it)."""

    format_version: int
    segment_size: int
    key_id: bytes
    salt: bytes
    nonce_prefix: bytes
    commitment: bytes
    header_length: int


def _check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(
            f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes"
        )


def header_length_from_prefix(prefix: BytesLike) -> int:
    """The total header length, from the first :data:`HEADER_PREFIX_LENGTH` bytes of an object.

    Lets a caller fetch exactly the header before anything else. Fetching
    :data:`MAX_HEADER_LENGTH` bytes (or the whole object if it is shorter) and calling
    :func:`read_header` is the one-round-trip alternative.
    """
    if len(prefix) < HEADER_PREFIX_LENGTH:
        raise DecryptionFailed()
    prefix = bytes(prefix[:HEADER_PREFIX_LENGTH])
    if prefix[:4] != MAGIC or prefix[4] != FORMAT_VERSION:
        raise DecryptionFailed()
    if not MIN_SEGMENT_SIZE <= int.from_bytes(prefix[5:9], "big") <= MAX_SEGMENT_SIZE:
        raise DecryptionFailed()
    return MIN_HEADER_LENGTH + prefix[9]


def read_header(data: BytesLike) -> ObjectHeader:
    """Parse the header at the start of ``data`` (which may continue past the header).

    This checks the format only; nothing is authenticated until the header is used with the data
    key, which verifies the commitment.
    """
    length = header_length_from_prefix(data)
    if len(data) < length:
        raise DecryptionFailed()
    raw = bytes(data[:length])
    pos = HEADER_PREFIX_LENGTH
    key_id = raw[pos : pos + raw[9]]
    pos += len(key_id)
    salt = raw[pos : pos + SALT_SIZE]
    pos += SALT_SIZE
    nonce_prefix = raw[pos : pos + NONCE_PREFIX_SIZE]
    pos += NONCE_PREFIX_SIZE
    return ObjectHeader(
        format_version=raw[4],
        segment_size=int.from_bytes(raw[5:9], "big"),
        key_id=key_id,
        salt=salt,
        nonce_prefix=nonce_prefix,
        commitment=raw[pos:],
        header_length=length,
    )


def _header_fields(segment_size: int, key_id: bytes, salt: bytes, nonce_prefix: bytes) -> bytes:
    """The header without its trailing commitment."""
    return b"".join(
        (
            MAGIC,
            bytes([FORMAT_VERSION]),
            segment_size.to_bytes(4, "big"),
            bytes([len(key_id)]),
            key_id,
            salt,
            nonce_prefix,
        )
    )


# --- per-object keys and segment sealing ----------------------------------------------------------


def _hkdf(data_key: BytesLike, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(
        bytes(data_key)
    )


def _commitment(commitment_key: bytes, header_fields: bytes, context: bytes) -> hmac.HMAC:
    # header_fields is self-delimiting (fixed widths and a length-prefixed key id), so appending
    # the context is unambiguous.
    mac = hmac.HMAC(commitment_key, hashes.SHA256())
    mac.update(header_fields)
    mac.update(context)
    return mac


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


class _SegmentCipher:
    """AES-256-GCM under one object's segment key; built once per object, reused per segment."""

    __slots__ = ("_aad", "_aead", "_nonce_prefix")

    def __init__(
        self, segment_key: bytes, nonce_prefix: bytes, header: bytes, context: bytes
    ) -> None:
        self._aead = AESGCM(segment_key)
        self._nonce_prefix = nonce_prefix
        self._aad = _sha256(header) + bytes(context)

    def _nonce(self, index: int, last: bool) -> bytes:
        return self._nonce_prefix + index.to_bytes(4, "big") + (_LAST if last else _NOT_LAST)

    def seal(self, index: int, plaintext: BytesLike, last: bool) -> bytes:
        if index >= MAX_SEGMENTS:
            raise ValueError("object too large for its segment size")
        return self._aead.encrypt(self._nonce(index, last), plaintext, self._aad)

    def open(self, index: int, ciphertext: BytesLike, last: bool) -> bytes:
        if index >= MAX_SEGMENTS:
            raise DecryptionFailed()
        try:
            return self._aead.decrypt(self._nonce(index, last), ciphertext, self._aad)
        except InvalidTag:
            raise DecryptionFailed() from None


def _open_object(
    data_key: BytesLike, header: ObjectHeader, header_bytes: bytes, context: bytes
) -> _SegmentCipher:
    """Check the commitment (constant time), then return the object's segment cipher."""
    commitment_key = _hkdf(data_key, header.salt, _COMMITMENT_KEY_INFO)
    mac = _commitment(commitment_key, header_bytes[:-COMMITMENT_SIZE], context)
    try:
        mac.verify(header.commitment)
    except InvalidSignature:
        raise DecryptionFailed() from None
    segment_key = _hkdf(data_key, header.salt, _SEGMENT_KEY_INFO)
    return _SegmentCipher(segment_key, header.nonce_prefix, header_bytes, context)


# --- stream cutting -----------------------------------------------------------------------------


def _view(chunk: BytesLike) -> memoryview:
    view = memoryview(chunk)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def _pieces(chunks: Iterable[BytesLike], size: int) -> Iterator[tuple[BytesLike, bool]]:
    """Cut a byte stream into pieces of exactly ``size`` bytes and flag the last one.

    The last piece has 0..size bytes (0 only when the stream is empty); every other piece has
    ``size``. A full piece is held back until a further non-empty chunk (or the end) shows whether
    it is the last, so at most one held piece plus one partial piece is buffered.

    Pieces are views into the caller's chunks where possible (no copy). A yielded piece is only
    valid until the consumer asks for the next one. A piece held across a pull from ``chunks`` is
    copied unless its chunk is an immutable ``bytes``, because a producer may reuse its buffer.
    """
    partial = bytearray()
    held: BytesLike | None = None
    for chunk in chunks:
        view = _view(chunk)
        n = len(view)
        if n == 0:
            continue
        if held is not None:
            yield held, False
            held = None
        pos = 0
        if partial:
            pos = min(size - len(partial), n)
            partial += view[:pos]
            if len(partial) < size:
                continue
            if pos == n:
                held, partial = partial, bytearray()
                continue
            yield partial, False
            partial.clear()
        while n - pos > size:
            yield view[pos : pos + size], False
            pos += size
        if n - pos == size:
            held = view[pos:] if type(view.obj) is bytes else bytes(view[pos:])
        else:
            partial += view[pos:]
    if held is not None:
        yield held, True
    else:
        yield partial, True


def _segment_count(plaintext_size: int, segment_size: int) -> int:
    return max(1, -(-plaintext_size // segment_size))


# --- encryption ---------------------------------------------------------------------------------


def encrypt_stream(
    data_key: bytes,
    chunks: Iterable[BytesLike],
    *,
    key_id: bytes,
    context: bytes,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> Iterator[bytes]:
    """Encrypt a stream of plaintext chunks (any sizes) into an object, yielding its bytes.

    Yields the header, then one ciphertext segment at a time; memory stays within about two
    segments whatever the object's size. ``key_id`` is stored in the header as is (at most 255
    bytes, e.g. the wrapped data key's id and version). ``context`` must be an unambiguous
    encoding of what the object is (owner, document, version): decryption under any other
    context fails. Arguments are checked when this is called, not on first iteration.
    """
    _require_key(data_key, "data_key")
    _check_segment_size(segment_size)
    if len(key_id) > MAX_KEY_ID_LENGTH:
        raise ValueError(f"key_id must be at most {MAX_KEY_ID_LENGTH} bytes")
    salt = os.urandom(SALT_SIZE)
    nonce_prefix = os.urandom(NONCE_PREFIX_SIZE)
    fields = _header_fields(segment_size, bytes(key_id), salt, nonce_prefix)
    commitment_key = _hkdf(data_key, salt, _COMMITMENT_KEY_INFO)
    header = fields + _commitment(commitment_key, fields, bytes(context)).finalize()
    cipher = _SegmentCipher(
        _hkdf(data_key, salt, _SEGMENT_KEY_INFO), nonce_prefix, header, bytes(context)
    )
    return _encrypt(cipher, header, chunks, segment_size)


def _encrypt(
    cipher: _SegmentCipher, header: bytes, chunks: Iterable[BytesLike], segment_size: int
) -> Iterator[bytes]:
    yield header
    for index, (piece, last) in enumerate(_pieces(chunks, segment_size)):
        yield cipher.seal(index, piece, last)


def encrypt_bytes(
    data_key: bytes,
    plaintext: BytesLike,
    *,
    key_id: bytes,
    context: bytes,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> bytes:
    """Encrypt a whole plaintext held in memory (small objects, tests)."""
    return b"".join(
        encrypt_stream(
            data_key, (plaintext,), key_id=key_id, context=context, segment_size=segment_size
        )
    )


# --- decryption ---------------------------------------------------------------------------------


def _take_header(chunks: Iterator[BytesLike]) -> tuple[bytes, memoryview]:
    """Read exactly the header from the stream; return it and the rest of the chunk it ended in."""
    head = bytearray()
    need = HEADER_PREFIX_LENGTH
    for chunk in chunks:
        view = _view(chunk)
        pos = 0
        while True:
            take = min(need - len(head), len(view) - pos)
            head += view[pos : pos + take]
            pos += take
            if len(head) < need:
                break
            if need == HEADER_PREFIX_LENGTH:
                need = header_length_from_prefix(head)
                continue
            return bytes(head), view[pos:]
    raise DecryptionFailed()


def decrypt_stream(
    data_key: bytes, chunks: Iterable[BytesLike], *, context: bytes
) -> Iterator[bytes]:
    """Decrypt an object arriving as chunks of any sizes, yielding verified plaintext segments.

    Each yielded piece is authenticated before it is yielded, but truncation or extension of the
    object is only detected at the end: a consumer must treat the whole output as failed if the
    iterator raises :class:`DecryptionFailed` (e.g. abort the HTTP response, discard the file).
    """
    _require_key(data_key, "data_key")
    return _decrypt(data_key, iter(chunks), bytes(context))


def _decrypt(data_key: bytes, chunks: Iterator[BytesLike], context: bytes) -> Iterator[bytes]:
    header_bytes, rest = _take_header(chunks)
    header = read_header(header_bytes)
    cipher = _open_object(data_key, header, header_bytes, context)
    segment_length = header.segment_size + TAG_SIZE
    for index, (piece, last) in enumerate(_pieces(chain((rest,), chunks), segment_length)):
        # Only an empty object has an empty (tag-only) segment, and it is then the only one.
        if last and (len(piece) < TAG_SIZE or (index > 0 and len(piece) == TAG_SIZE)):
            raise DecryptionFailed()
        plaintext = cipher.open(index, piece, last)
        if plaintext:
            yield plaintext


def decrypt_bytes(data_key: bytes, ciphertext: BytesLike, *, context: bytes) -> bytes:
    """Decrypt a whole object held in memory (small objects, tests)."""
    return b"".join(decrypt_stream(data_key, (ciphertext,), context=context))


# --- sizes and ranges ---------------------------------------------------------------------------


def ciphertext_size(
    plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE, *, key_id: bytes = b""
) -> int:
    """The total size of the object (header included) for a plaintext of ``plaintext_size``.

    ``key_id`` is the one passed to :func:`encrypt_stream`; its length changes the header's.
    """
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise ValueError("plaintext_size must not be negative")
    if len(key_id) > MAX_KEY_ID_LENGTH:
        raise ValueError(f"key_id must be at most {MAX_KEY_ID_LENGTH} bytes")
    segments = _segment_count(plaintext_size, segment_size)
    if segments > MAX_SEGMENTS:
        raise ValueError("object too large for its segment size")
    return MIN_HEADER_LENGTH + len(key_id) + plaintext_size + segments * TAG_SIZE


def plaintext_size(ciphertext_size: int, header: ObjectHeader) -> int:
    """The plaintext size of an object of ``ciphertext_size`` bytes in total (header included).

    Raises :class:`DecryptionFailed` if no valid object has that size. The size itself is not
    authenticated until the last segment is decrypted (which :func:`decrypt_range` does whenever
    a range reaches the end); a caller that knows the expected size should compare.
    """
    body = ciphertext_size - header.header_length
    segment_length = header.segment_size + TAG_SIZE
    full, rest = divmod(body, segment_length)
    if body < TAG_SIZE or (rest == 0 and full == 0):
        raise DecryptionFailed()
    if rest == 0:
        segments, size = full, full * header.segment_size
    elif rest < TAG_SIZE or (rest == TAG_SIZE and full > 0):
        raise DecryptionFailed()
    else:
        segments, size = full + 1, full * header.segment_size + rest - TAG_SIZE
    if segments > MAX_SEGMENTS:
        raise DecryptionFailed()
    return size


@dataclass(frozen=True, slots=True)
class SegmentSpan:
    """What to fetch and keep for a plaintext range; made by :func:`segment_span`.

    ``start``/``end`` are the ciphertext byte range [start, end) to fetch, counted from the start
    of the object (header included). ``first_segment`` and ``segment_count`` name the segments in
    it; ``skip`` plaintext bytes are dropped from the first one and ``length`` bytes are returned
    in total. ``plaintext_size`` (of the whole object) fixes which segment must carry the
    last-segment flag. An empty range fetches nothing (``start == end``, no segments).
    """

    start: int
    end: int
    first_segment: int
    segment_count: int
    skip: int
    length: int
    plaintext_size: int


def segment_span(
    header: ObjectHeader, plaintext_size: int, offset: int, length: int
) -> SegmentSpan:
    """The segments holding plaintext[offset : offset + length] (clamped to the object's end)."""
    if plaintext_size < 0 or length < 0 or not 0 <= offset <= plaintext_size:
        raise ValueError("range outside the object")
    size = header.segment_size
    if _segment_count(plaintext_size, size) > MAX_SEGMENTS:
        raise ValueError("object too large for its segment size")
    stop = min(offset + length, plaintext_size)
    if stop == offset:
        start = header.header_length
        return SegmentSpan(start, start, 0, 0, 0, 0, plaintext_size)
    first = offset // size
    last = (stop - 1) // size
    segment_length = size + TAG_SIZE
    start = header.header_length + first * segment_length
    last_plaintext = min(size, plaintext_size - last * size)
    end = header.header_length + last * segment_length + last_plaintext + TAG_SIZE
    return SegmentSpan(
        start=start,
        end=end,
        first_segment=first,
        segment_count=last - first + 1,
        skip=offset - first * size,
        length=stop - offset,
        plaintext_size=plaintext_size,
    )


def decrypt_range(
    data_key: bytes,
    header: ObjectHeader,
    header_bytes: bytes,
    ciphertext_chunks: Iterable[BytesLike],
    span: SegmentSpan,
    *,
    context: bytes,
) -> Iterator[bytes]:
    """Decrypt only the segments of ``span`` and yield exactly the requested plaintext bytes.

    ``ciphertext_chunks`` must be the object's bytes [span.start, span.end), in chunks of any
    sizes. The header and its commitment are checked when this is called (so a wrong key or
    context fails before anything is streamed); each segment is authenticated as it arrives, and
    the segment that ends the object must carry the last-segment flag.
    """
    _require_key(data_key, "data_key")
    header_bytes = bytes(header_bytes)
    if read_header(header_bytes) != header or len(header_bytes) != header.header_length:
        raise DecryptionFailed()
    offset = span.first_segment * header.segment_size + span.skip
    expected = segment_span(header, span.plaintext_size, offset, span.length)
    if span != expected:
        raise ValueError("span does not belong to this header")
    cipher = _open_object(data_key, header, header_bytes, bytes(context))
    return _decrypt_range(cipher, header, ciphertext_chunks, span)


def _decrypt_range(
    cipher: _SegmentCipher,
    header: ObjectHeader,
    chunks: Iterable[BytesLike],
    span: SegmentSpan,
) -> Iterator[bytes]:
    if span.segment_count == 0:
        return
    size = header.segment_size
    last_index = _segment_count(span.plaintext_size, size) - 1
    index = span.first_segment
    stop = index + span.segment_count
    skip, remaining = span.skip, span.length
    for piece, _ in _pieces(chunks, size + TAG_SIZE):
        if index >= stop:
            raise DecryptionFailed()
        is_last = index == last_index
        expected = (span.plaintext_size - index * size if is_last else size) + TAG_SIZE
        if len(piece) != expected:
            raise DecryptionFailed()
        plaintext = cipher.open(index, piece, is_last)
        index += 1
        if skip == 0 and remaining >= len(plaintext):
            out = plaintext
        else:
            out = plaintext[skip : skip + remaining]
            skip = 0
        remaining -= len(out)
        if out:
            yield out
    if index != stop:
        raise DecryptionFailed()
