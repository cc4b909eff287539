"""The encrypted object format and key wrapping (vault/crypto.py)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault import crypto
from vault.crypto import (
    DEFAULT_SEGMENT_SIZE,
    MAX_HEADER_LENGTH,
    MIN_HEADER_LENGTH,
    MIN_SEGMENT_SIZE,
    TAG_SIZE,
    ObjectHeader,
    ciphertext_size,
    decrypt_bytes,
    decrypt_range,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    header_length_from_prefix,
    plaintext_size,
    read_header,
    segment_span,
    unwrap_key,
    wrap_key,
)
from vault.errors import DecryptionFailed

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
KEY_ID = b"dk:1234/v7"
S = MIN_SEGMENT_SIZE  # small segments keep the property tests fast


def ctx(owner: int = 1, document: int = 2, version: int = 3) -> bytes:
    """An unambiguous context, as the vault builds it (fixed-width fields)."""
    return (
        b"ctx/v1\x00" + owner.to_bytes(16, "big") + document.to_bytes(16, "big") + bytes([version])
    )


CTX = ctx()


def data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def cut(blob: bytes, points: Iterable[int]) -> list[bytes]:
    """``blob`` split at the given positions (clamped, sorted); empty chunks are kept."""
    edges = [0, *sorted(min(max(p, 0), len(blob)) for p in points), len(blob)]
    return [blob[a:b] for a, b in itertools.pairwise(edges)]


def encrypt(
    plaintext: bytes, *, key: bytes = KEY, context: bytes = CTX, segment_size: int = S
) -> bytes:
    return encrypt_bytes(key, plaintext, key_id=KEY_ID, context=context, segment_size=segment_size)


def segments_of(blob: bytes) -> tuple[bytes, list[bytes]]:
    """Split an object into its header and its ciphertext segments."""
    header = read_header(blob)
    body = blob[header.header_length :]
    step = header.segment_size + TAG_SIZE
    return blob[: header.header_length], [body[i : i + step] for i in range(0, len(body), step)]


def failure(call: Callable[[], object]) -> str:
    """Run ``call`` (draining it if it returns an iterator), which must raise DecryptionFailed;
    return the message."""

    def run() -> None:
        result = call()
        if isinstance(result, Iterator):
            list(result)

    with pytest.raises(DecryptionFailed) as info:
        run()
    assert info.value.__cause__ is None  # nothing chained that would say which check failed
    assert info.value.code == "decryption_failed"
    assert info.value.status == 500
    return str(info.value)


OPAQUE = str(DecryptionFailed())


# --- round trips --------------------------------------------------------------------------------


chunk_cuts = st.lists(st.integers(min_value=0, max_value=40_000), max_size=8)


@pytest.mark.parametrize("segment_size", [S, 5000, DEFAULT_SEGMENT_SIZE])
@pytest.mark.parametrize("shape", ["zero", "one", "seg-1", "seg", "seg+1", "3seg", "3seg+7"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(in_cuts=chunk_cuts, out_cuts=chunk_cuts, seed=st.integers(0, 2**16))
def test_round_trip_with_any_chunking(
    segment_size: int, shape: str, in_cuts: list[int], out_cuts: list[int], seed: int
) -> None:
    size = {
        "zero": 0,
        "one": 1,
        "seg-1": segment_size - 1,
        "seg": segment_size,
        "seg+1": segment_size + 1,
        "3seg": 3 * segment_size,
        "3seg+7": 3 * segment_size + 7,
    }[shape]
    plaintext = data(size, seed)
    pieces = list(
        encrypt_stream(
            KEY, cut(plaintext, in_cuts), key_id=KEY_ID, context=CTX, segment_size=segment_size
        )
    )
    blob = b"".join(pieces)
    assert len(blob) == ciphertext_size(size, segment_size, key_id=KEY_ID)
    header = read_header(blob)
    assert plaintext_size(len(blob), header) == size
    # header first, then one piece per segment; every segment but the last is full
    assert len(pieces[0]) == header.header_length
    segment_count = max(1, -(-size // segment_size))
    assert len(pieces) == 1 + segment_count
    assert all(len(p) == segment_size + TAG_SIZE for p in pieces[1:-1])
    assert TAG_SIZE < len(pieces[-1]) <= segment_size + TAG_SIZE or size == 0
    out = list(decrypt_stream(KEY, cut(blob, out_cuts), context=CTX))
    assert b"".join(out) == plaintext
    assert all(out)  # never yields empty pieces


def test_round_trip_a_few_mib_with_odd_chunks() -> None:
    rng = random.Random(7)
    plaintext = data(3 * 1024 * 1024 + 12345, 1)
    points = [rng.randrange(len(plaintext)) for _ in range(60)]
    blob = b"".join(
        encrypt_stream(KEY, cut(plaintext, points), key_id=KEY_ID, context=CTX)
    )  # default 64 KiB segments
    assert len(blob) == ciphertext_size(len(plaintext), key_id=KEY_ID)
    points = [rng.randrange(len(blob)) for _ in range(60)]
    assert b"".join(decrypt_stream(KEY, cut(blob, points), context=CTX)) == plaintext
    # one huge chunk each way
    assert decrypt_bytes(KEY, blob, context=CTX) == plaintext
    assert decrypt_bytes(KEY, encrypt(plaintext, segment_size=1 << 20), context=CTX) == plaintext


def reused_buffer(blob: bytes, size: int) -> Iterator[bytearray]:
    """A producer that, like ``readinto``, refills one buffer for every chunk."""
    buffer = bytearray(size)
    for start in range(0, len(blob), size):
        piece = blob[start : start + size]
        buffer[: len(piece)] = piece
        yield buffer if len(piece) == size else buffer[: len(piece)]
        buffer[:] = b"\xee" * size  # scribble, as the next read would


@pytest.mark.parametrize("chunk", [S // 2, S, S + TAG_SIZE, 3 * S])
def test_producers_that_reuse_their_buffer(chunk: int) -> None:
    plaintext = data(5 * S + 100, 3)
    blob = b"".join(
        encrypt_stream(
            KEY, reused_buffer(plaintext, chunk), key_id=KEY_ID, context=CTX, segment_size=S
        )
    )
    assert decrypt_bytes(KEY, blob, context=CTX) == plaintext
    assert b"".join(decrypt_stream(KEY, reused_buffer(blob, chunk), context=CTX)) == plaintext


def test_memoryview_and_bytearray_chunks() -> None:
    plaintext = data(2 * S + 1)
    chunks: list[crypto.BytesLike] = [memoryview(plaintext)[: S + 3], bytearray(plaintext[S + 3 :])]
    blob = b"".join(encrypt_stream(KEY, chunks, key_id=KEY_ID, context=CTX, segment_size=S))
    assert decrypt_bytes(KEY, memoryview(blob), context=CTX) == plaintext


def test_streams_with_bounded_look_ahead() -> None:
    """Output starts before the input ends, holding at most about two segments."""
    pulled = 0

    def endless(size: int) -> Iterator[bytes]:
        nonlocal pulled
        block = b"\x5a" * size
        while True:
            pulled += size
            yield block

    encrypted = encrypt_stream(KEY, endless(1000), key_id=KEY_ID, context=CTX, segment_size=S)
    next(encrypted)  # header
    for produced in range(1, 6):
        assert len(next(encrypted)) == S + TAG_SIZE
        assert pulled <= (produced + 1) * S + 1000

    blob = encrypt(data(50 * S), segment_size=S)
    pulled = 0

    def reader() -> Iterator[bytes]:
        nonlocal pulled
        for start in range(0, len(blob), 999):
            pulled += 999
            yield blob[start : start + 999]

    plain = decrypt_stream(KEY, reader(), context=CTX)
    for produced in range(1, 6):
        assert len(next(plain)) == S
        assert pulled <= MAX_HEADER_LENGTH + (produced + 1) * (S + TAG_SIZE) + 999


def test_bad_arguments_are_refused_when_called() -> None:
    with pytest.raises(ValueError, match="data_key"):
        encrypt_stream(b"short", [b"x"], key_id=b"", context=CTX)
    with pytest.raises(ValueError, match="segment_size"):
        encrypt_stream(KEY, [b"x"], key_id=b"", context=CTX, segment_size=MIN_SEGMENT_SIZE - 1)
    with pytest.raises(ValueError, match="segment_size"):
        encrypt_stream(KEY, [b"x"], key_id=b"", context=CTX, segment_size=8 * 1024 * 1024 + 1)
    with pytest.raises(ValueError, match="key_id"):
        encrypt_stream(KEY, [b"x"], key_id=b"k" * 256, context=CTX)
    with pytest.raises(ValueError, match="data_key"):
        decrypt_stream(KEY[:16], [b"x"], context=CTX)


# --- header -------------------------------------------------------------------------------------


def test_header_layout() -> None:
    blob = encrypt(b"hello", segment_size=8192)
    header = read_header(blob)
    n = len(KEY_ID)
    assert blob[:4] == b"KHOv"
    assert blob[4] == 1
    assert int.from_bytes(blob[5:9], "big") == 8192
    assert blob[9] == n
    assert blob[10 : 10 + n] == KEY_ID
    assert header == ObjectHeader(
        format_version=1,
        segment_size=8192,
        key_id=KEY_ID,
        salt=blob[10 + n : 42 + n],
        nonce_prefix=blob[42 + n : 49 + n],
        commitment=blob[49 + n : 81 + n],
        header_length=81 + n,
    )
    assert header_length_from_prefix(blob[:10]) == header.header_length == MIN_HEADER_LENGTH + n
    # fresh salt and nonce prefix for every object, even with the same key and plaintext
    again = read_header(encrypt(b"hello", segment_size=8192))
    assert again.salt != header.salt
    assert again.nonce_prefix != header.nonce_prefix
    assert again.commitment != header.commitment


def test_longest_header_fits_max_header_length() -> None:
    blob = encrypt_bytes(KEY, b"x", key_id=b"k" * 255, context=CTX)
    assert read_header(blob).header_length == MAX_HEADER_LENGTH
    assert read_header(blob[:MAX_HEADER_LENGTH]).key_id == b"k" * 255
    assert decrypt_bytes(KEY, blob, context=CTX) == b"x"
    empty_id = encrypt_bytes(KEY, b"", key_id=b"", context=CTX)
    assert len(empty_id) == MIN_HEADER_LENGTH + TAG_SIZE
    assert decrypt_bytes(KEY, empty_id, context=CTX) == b""


def test_short_or_foreign_prefixes_are_refused() -> None:
    blob = encrypt(b"abc")
    assert failure(lambda: header_length_from_prefix(blob[:9])) == OPAQUE
    assert failure(lambda: read_header(blob[:MIN_HEADER_LENGTH])) == OPAQUE
    assert failure(lambda: read_header(b"PK\x03\x04" + blob[4:])) == OPAQUE
    assert failure(lambda: read_header(b"")) == OPAQUE


# --- sizes --------------------------------------------------------------------------------------


@given(size=st.integers(0, 10 * S), segment_size=st.sampled_from([S, 5000, 8 * S]))
def test_size_arithmetic_round_trips(size: int, segment_size: int) -> None:
    total = ciphertext_size(size, segment_size, key_id=KEY_ID)
    header = ObjectHeader(1, segment_size, KEY_ID, b"", b"", b"", MIN_HEADER_LENGTH + len(KEY_ID))
    assert plaintext_size(total, header) == size


def test_exact_multiples_end_with_a_full_segment() -> None:
    header_length = MIN_HEADER_LENGTH + len(KEY_ID)
    assert ciphertext_size(0, S, key_id=KEY_ID) == header_length + TAG_SIZE
    assert ciphertext_size(S, S, key_id=KEY_ID) == header_length + S + TAG_SIZE
    assert ciphertext_size(3 * S, S, key_id=KEY_ID) == header_length + 3 * (S + TAG_SIZE)
    assert ciphertext_size(3 * S + 1, S, key_id=KEY_ID) == header_length + 3 * S + 1 + 4 * TAG_SIZE


def test_impossible_ciphertext_sizes() -> None:
    header = read_header(encrypt(b""))
    h, c = header.header_length, S + TAG_SIZE
    for total in [0, h, h + TAG_SIZE - 1, h + c + 5, h + c + TAG_SIZE, h + 2 * c + TAG_SIZE]:
        assert failure(partial(plaintext_size, total, header)) == OPAQUE
    assert plaintext_size(h + c + TAG_SIZE + 1, header) == S + 1


# --- ranges -------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 6 * S + 3),
    segment_size=st.sampled_from([S, 5000]),
    where=st.floats(0, 1),
    length=st.integers(0, 3 * S),
    cuts=st.lists(st.integers(0, 30_000), max_size=4),
)
def test_ranges_decrypt_only_the_needed_segments(
    size: int, segment_size: int, where: float, length: int, cuts: list[int]
) -> None:
    plaintext = data(size, size)
    blob = encrypt(plaintext, segment_size=segment_size)
    header = read_header(blob[:MAX_HEADER_LENGTH])
    header_bytes = blob[: header.header_length]
    offset = min(size, int(where * size))
    span = segment_span(header, size, offset, length)

    stop = min(offset + length, size)
    if stop == offset:
        assert (span.segment_count, span.start, span.end, span.length) == (
            0,
            span.start,
            span.start,
            0,
        )
    else:
        first, last = offset // segment_size, (stop - 1) // segment_size
        step = segment_size + TAG_SIZE
        assert span.first_segment == first
        assert span.segment_count == last - first + 1
        assert span.start == header.header_length + first * step
        assert span.end == min(header.header_length + (last + 1) * step, len(blob))
        assert span.skip == offset - first * segment_size
        assert span.length == stop - offset

    fetched = blob[span.start : span.end]
    out = decrypt_range(KEY, header, header_bytes, cut(fetched, cuts), span, context=CTX)
    assert b"".join(out) == plaintext[offset : offset + length]


def test_range_reads_check_the_last_segment_flag() -> None:
    plaintext = data(3 * S)
    blob = encrypt(plaintext)
    header_bytes, segments = segments_of(blob)
    header = read_header(header_bytes)
    # Drop the last segment: the object now looks like a valid 2-segment object by its size,
    # but segment 1 was sealed as "not last".
    truncated = header_bytes + segments[0] + segments[1]
    size = plaintext_size(len(truncated), header)
    assert size == 2 * S
    span = segment_span(header, size, S, 10)
    fetched = [truncated[span.start : span.end]]
    assert (
        failure(lambda: decrypt_range(KEY, header, header_bytes, fetched, span, context=CTX))
        == OPAQUE
    )
    # ...while a range that does not reach the end still reads (only fetched segments are checked)
    early = segment_span(header, size, 0, 10)
    got = decrypt_range(
        KEY, header, header_bytes, [truncated[early.start : early.end]], early, context=CTX
    )
    assert b"".join(got) == plaintext[:10]


def test_range_reads_refuse_wrong_bytes_and_wrong_claims() -> None:
    plaintext = data(4 * S + 9)
    blob = encrypt(plaintext)
    header_bytes, segments = segments_of(blob)
    header = read_header(header_bytes)
    span = segment_span(header, len(plaintext), S + 5, 2 * S)
    right = blob[span.start : span.end]

    def attempt(fetched: bytes, span: crypto.SegmentSpan = span, hb: bytes = header_bytes) -> str:
        return failure(
            lambda: decrypt_range(KEY, read_header(hb), hb, [fetched], span, context=CTX)
        )

    assert attempt(right[:-1]) == OPAQUE  # short
    assert attempt(right + b"\x00") == OPAQUE  # long
    assert attempt(right + segments[3]) == OPAQUE  # one segment too many
    assert attempt(right + segments[4]) == OPAQUE  # the genuine next segment, also too many
    # ...and nothing beyond the requested range is released before the failure
    released = bytearray()

    def drain() -> None:
        for piece in decrypt_range(
            KEY, header, header_bytes, [right + segments[4]], span, context=CTX
        ):
            released.extend(piece)

    with pytest.raises(DecryptionFailed):
        drain()
    assert released == plaintext[S + 5 : 3 * S + 5]
    assert attempt(segments[2] + segments[1] + segments[3]) == OPAQUE  # reordered
    assert attempt(b"") == OPAQUE
    # a size claim larger than the real object: the real last segment is not where expected
    big = segment_span(header, len(plaintext) + S, 3 * S, 2 * S)
    assert attempt(blob[big.start : big.end], big) == OPAQUE
    # the header of another object (same key and context)
    other_header = segments_of(encrypt(plaintext))[0]
    assert attempt(right, span, other_header) == OPAQUE
    # a header that does not match the header bytes
    with pytest.raises(DecryptionFailed):
        decrypt_range(KEY, read_header(other_header), header_bytes, [right], span, context=CTX)
    # wrong key or context fails before anything is fetched
    with pytest.raises(DecryptionFailed):
        decrypt_range(OTHER_KEY, header, header_bytes, [right], span, context=CTX)
    with pytest.raises(DecryptionFailed):
        decrypt_range(KEY, header, header_bytes, [right], span, context=ctx(owner=9))
    # a span not made by segment_span for this header is a caller bug
    forged = crypto.SegmentSpan(
        span.start, span.end, span.first_segment, 2, 0, 3, span.plaintext_size
    )
    with pytest.raises(ValueError, match="span"):
        decrypt_range(KEY, header, header_bytes, [right], forged, context=CTX)


def test_range_arguments() -> None:
    header = read_header(encrypt(b"abc"))
    with pytest.raises(ValueError, match="range"):
        segment_span(header, 3, 4, 1)
    with pytest.raises(ValueError, match="range"):
        segment_span(header, 3, -1, 1)
    with pytest.raises(ValueError, match="range"):
        segment_span(header, 3, 0, -1)
    assert segment_span(header, 3, 1, 100).length == 2  # clamped to the end, like slicing


# --- tampering ----------------------------------------------------------------------------------


PLAINTEXT = data(3 * S + 100, 42)
BLOB = encrypt(PLAINTEXT)
N = len(KEY_ID)


def replace(blob: bytes, start: int, new: bytes) -> bytes:
    return blob[:start] + new + blob[start + len(new) :]


def flip(blob: bytes, index: int, mask: int = 1) -> bytes:
    return replace(blob, index, bytes([blob[index] ^ mask]))


HEADER_EDITS = {
    "magic": replace(BLOB, 0, b"KHOw"),
    "version": replace(BLOB, 4, b"\x02"),
    "version-0": replace(BLOB, 4, b"\x00"),
    "segment size (valid)": replace(BLOB, 5, (2 * S).to_bytes(4, "big")),
    "segment size (too small)": replace(BLOB, 5, (S - 1).to_bytes(4, "big")),
    "segment size (too big)": replace(BLOB, 5, (2**32 - 1).to_bytes(4, "big")),
    "key id length": replace(BLOB, 9, bytes([N - 1])),
    "key id": flip(BLOB, 10),
    "key id swapped": replace(BLOB, 10, b"dk:9999/v7"),
    "salt": flip(BLOB, 10 + N + 5),
    "nonce prefix": flip(BLOB, 10 + N + 32 + 3),
    "commitment": flip(BLOB, 10 + N + 39 + 31, 0x80),
}


@pytest.mark.parametrize("edit", HEADER_EDITS)
def test_every_header_field_is_authenticated(edit: str) -> None:
    tampered = HEADER_EDITS[edit]
    assert tampered != BLOB
    assert failure(lambda: decrypt_bytes(KEY, tampered, context=CTX)) == OPAQUE


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(BLOB) - 1), bit=st.integers(0, 7))
def test_any_flipped_bit_fails(index: int, bit: int) -> None:
    tampered = flip(BLOB, index, 1 << bit)
    assert failure(lambda: decrypt_bytes(KEY, tampered, context=CTX)) == OPAQUE


@settings(max_examples=100, deadline=None)
@given(length=st.integers(0, len(BLOB) - 1))
def test_any_truncation_fails(length: int) -> None:
    assert failure(lambda: decrypt_bytes(KEY, BLOB[:length], context=CTX)) == OPAQUE


@given(extra=st.binary(min_size=1, max_size=S + 2 * TAG_SIZE))
def test_any_extension_fails(extra: bytes) -> None:
    assert failure(lambda: decrypt_bytes(KEY, BLOB + extra, context=CTX)) == OPAQUE


def test_segment_surgery_fails() -> None:
    header, seg = segments_of(BLOB)
    assert len(seg) == 4
    other_header, other_seg = segments_of(encrypt(PLAINTEXT))  # same key, context, plaintext
    cases = {
        "drop last": header + seg[0] + seg[1] + seg[2],
        "drop middle": header + seg[0] + seg[2] + seg[3],
        "drop first": header + seg[1] + seg[2] + seg[3],
        "append copy of a segment": header + b"".join(seg) + seg[1],
        "append segment of another object": header + b"".join(seg) + other_seg[3],
        "swap two segments": header + seg[1] + seg[0] + seg[2] + seg[3],
        "duplicate a segment": header + seg[0] + seg[0] + seg[2] + seg[3],
        "splice header of another object": other_header + b"".join(seg),
        "splice one segment of another object": header + seg[0] + other_seg[1] + seg[2] + seg[3],
        "header only": header,
    }
    for name, blob in cases.items():
        assert failure(partial(decrypt_bytes, KEY, blob, context=CTX)) == OPAQUE, name


def test_multiple_of_segment_size_truncation_fails() -> None:
    plaintext = data(3 * S)
    header, seg = segments_of(encrypt(plaintext))
    assert len(seg) == 3
    assert failure(lambda: decrypt_bytes(KEY, header + seg[0] + seg[1], context=CTX)) == OPAQUE


def test_empty_final_segment_after_data_is_refused() -> None:
    """Only an empty object has a tag-only segment; a correctly sealed one elsewhere is refused."""
    plaintext = data(2 * S)
    blob = encrypt(plaintext)
    header_bytes = blob[: read_header(blob).header_length]
    header = read_header(header_bytes)
    cipher = crypto._open_object(KEY, header, header_bytes, CTX)
    forged = (
        header_bytes + cipher.seal(0, plaintext[:S], False) + cipher.seal(1, plaintext[S:], False)
    )
    forged += cipher.seal(2, b"", True)
    assert failure(lambda: decrypt_bytes(KEY, forged, context=CTX)) == OPAQUE


@pytest.mark.parametrize(
    "context",
    [ctx(owner=2), ctx(document=3), ctx(version=4), b"", CTX + b"\x00", CTX[:-1]],
    ids=["other owner", "other document", "other version", "empty", "longer", "shorter"],
)
def test_another_context_fails(context: bytes) -> None:
    assert failure(lambda: decrypt_bytes(KEY, BLOB, context=context)) == OPAQUE


def test_another_data_key_fails() -> None:
    assert failure(lambda: decrypt_bytes(OTHER_KEY, BLOB, context=CTX)) == OPAQUE
    empty = encrypt(b"")
    assert failure(lambda: decrypt_bytes(OTHER_KEY, empty, context=CTX)) == OPAQUE


def test_whole_objects_swapped_between_contexts_fail() -> None:
    mine = encrypt(b"owner one's paper", context=ctx(owner=1))
    theirs = encrypt(b"owner two's paper", context=ctx(owner=2))
    assert decrypt_bytes(KEY, mine, context=ctx(owner=1)) == b"owner one's paper"
    assert failure(lambda: decrypt_bytes(KEY, theirs, context=ctx(owner=1))) == OPAQUE


# --- key wrapping -------------------------------------------------------------------------------


def test_wrap_round_trip() -> None:
    data_key = crypto.new_key()
    assert len(data_key) == 32
    assert data_key != crypto.new_key()
    wrapped = wrap_key(KEY, data_key, aad=b"owner|doc|3")
    assert len(wrapped) == crypto.WRAPPED_KEY_SIZE
    assert wrapped[0] == 1
    assert data_key not in wrapped
    assert wrap_key(KEY, data_key, aad=b"owner|doc|3") != wrapped  # random nonce
    assert unwrap_key(KEY, wrapped, aad=b"owner|doc|3") == data_key
    # small secrets of other lengths
    secret = b"-----BEGIN PRIVATE KEY-----" * 10
    assert unwrap_key(KEY, wrap_key(KEY, secret, aad=b""), aad=b"") == secret


def test_unwrap_failures_are_opaque() -> None:
    wrapped = wrap_key(KEY, crypto.new_key(), aad=b"owner|doc|3")
    cases = [
        (OTHER_KEY, wrapped, b"owner|doc|3"),
        (KEY, wrapped, b"owner|doc|4"),
        (KEY, wrapped, b""),
        (KEY, flip(wrapped, 20), b"owner|doc|3"),
        (KEY, replace(wrapped, 0, b"\x02"), b"owner|doc|3"),
        (KEY, wrapped[:-1], b"owner|doc|3"),
        (KEY, wrapped + b"\x00", b"owner|doc|3"),
        (KEY, b"", b"owner|doc|3"),
    ]
    for kek, blob, aad in cases:
        assert failure(partial(unwrap_key, kek, blob, aad=aad)) == OPAQUE


def test_wrap_arguments() -> None:
    with pytest.raises(ValueError, match="kek"):
        wrap_key(KEY[:31], KEY, aad=b"")
    with pytest.raises(ValueError, match="key"):
        wrap_key(KEY, b"", aad=b"")
    with pytest.raises(ValueError, match="kek"):
        unwrap_key(KEY + b"x", b"\x01" * 61, aad=b"")


def test_error_text_reveals_nothing() -> None:
    message = failure(lambda: decrypt_bytes(OTHER_KEY, BLOB, context=CTX))
    assert message == "Decryption failed"
    for secret in (KEY, OTHER_KEY, PLAINTEXT[:16]):
        assert secret.hex() not in message
        assert repr(secret) not in message
