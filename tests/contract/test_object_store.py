"""The object-store contract: the same behaviour from the filesystem backend and from MinIO.

Each case states something a user of the store would notice if it broke: lost or mixed-up bytes,
a wrong range, lost metadata, a half-written object after a failure, an escape from the store's
directory, or a hang when the server is gone.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from minio import Minio

from storage.errors import (
    InvalidObjectKey,
    InvalidObjectMetadata,
    ObjectNotFound,
    ObjectStoreUnavailable,
)
from storage.local import LocalObjectStore
from storage.objects import CHUNK_SIZE, MiB, ObjectStore
from storage.s3 import S3ObjectStore
from tests.services import MinioService

# Deliberately awkward chunk sizes: prime, tiny and larger than a read chunk.
ODD_CHUNKS = (1, 7, 65_537, 1_000_003, 3 * MiB + 11, 4093)
BLOCK = 256 * 1024 - 3


class Payload:
    """Cheap pseudo-random content of a given size: a random block, each copy numbered.

    Nothing holds the whole content: it is produced piecewise for ``put`` and hashed on the fly.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._block = os.urandom(BLOCK)

    def _pieces(self) -> Iterator[bytes]:
        left = self.size
        for n in itertools.count():
            if left <= 0:
                return
            piece = (n.to_bytes(8, "big") + self._block)[:left]
            left -= len(piece)
            yield piece

    def chunks(self, sizes: Iterable[int] = ODD_CHUNKS) -> Iterator[bytes]:
        """The content re-cut into chunks of ``sizes`` (cycled)."""
        buf = bytearray()
        pieces = self._pieces()
        for want in itertools.cycle(sizes):
            while len(buf) < want:
                piece = next(pieces, None)
                if piece is None:
                    if buf:
                        yield bytes(buf)
                    return
                buf += piece
            yield bytes(buf[:want])
            del buf[:want]

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self._pieces():
            digest.update(piece)
        return digest.hexdigest()


def read_all(store: ObjectStore, key: str, offset: int = 0, length: int | None = None) -> bytes:
    with store.get(key, offset=offset, length=length) as reader:
        return b"".join(reader)


def read_digest(store: ObjectStore, key: str) -> tuple[str, int, int]:
    """SHA-256, size and largest chunk of an object, read as a stream."""
    digest = hashlib.sha256()
    size = biggest = 0
    with store.get(key) as reader:
        for chunk in reader:
            digest.update(chunk)
            size += len(chunk)
            biggest = max(biggest, len(chunk))
    return digest.hexdigest(), size, biggest


class SourceBrokeError(Exception):
    """Raised by a chunk source that fails mid-upload."""


def breaking_source(good_bytes: int) -> Iterator[bytes]:
    sent = 0
    while sent < good_bytes:
        piece = os.urandom(min(MiB, good_bytes - sent))
        sent += len(piece)
        yield piece
    raise SourceBrokeError("the upload's source failed")


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, 5 * MiB - 1, 5 * MiB, 5 * MiB + 1, 64 * MiB],
    ids=["0", "1", "5MiB-1", "5MiB", "5MiB+1", "64MiB"],
)
def test_round_trip_keeps_every_byte(store: ObjectStore, size: int) -> None:
    payload = Payload(size)
    info = store.put("rt/object.bin", payload.chunks())
    assert info.key == "rt/object.bin"
    assert info.size == size
    digest, read_size, biggest = read_digest(store, "rt/object.bin")
    assert read_size == size
    assert digest == payload.sha256()
    assert biggest <= CHUNK_SIZE  # readers hand out bounded chunks, whatever the object's size
    stat = store.stat("rt/object.bin")
    assert (stat.size, stat.etag) == (size, info.etag)


def test_put_memory_stays_bounded(store: ObjectStore) -> None:
    # 64 MiB through the store must not be buffered whole: well under the object's size.
    payload = Payload(64 * MiB)
    tracemalloc.start()
    try:
        store.put("mem/big.bin", payload.chunks((MiB + 1, 64 * 1024)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * MiB, f"peak {peak / MiB:.1f} MiB while putting 64 MiB"
    assert store.stat("mem/big.bin").size == 64 * MiB


def test_chunk_types_are_accepted(store: ObjectStore) -> None:
    store.put("types/mixed", [b"ab", bytearray(b"cd"), memoryview(b"ef")])  # type: ignore[list-item]
    assert read_all(store, "types/mixed") == b"abcdef"


# -- ranges ------------------------------------------------------------------------------------

RANGE_SIZE = 2 * MiB + 12_345  # spans several read chunks


@pytest.fixture
def ranged(store: ObjectStore) -> bytes:
    data = os.urandom(RANGE_SIZE)
    store.put("range/object", [data[i : i + 300_001] for i in range(0, len(data), 300_001)])
    return data


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 1),  # start
        (0, 100),
        (1_234_567, 1_000_000),  # middle, across chunk boundaries
        (RANGE_SIZE - 10, 10),  # end
        (RANGE_SIZE - 10, None),  # to the end
        (1, None),
        (RANGE_SIZE - 5, 100),  # running past the end is clipped
        (RANGE_SIZE, None),  # at the end: empty
        (RANGE_SIZE, 5),
        (RANGE_SIZE + 1000, 5),  # beyond the end: empty, not an error
        (RANGE_SIZE + 1000, None),
        (10, 0),  # empty range
        (0, None),  # the whole object
    ],
)
def test_ranged_get_returns_exactly_the_slice(
    store: ObjectStore, ranged: bytes, offset: int, length: int | None
) -> None:
    end = None if length is None else offset + length
    assert read_all(store, "range/object", offset=offset, length=length) == ranged[offset:end]


def test_ranges_of_an_empty_object_are_empty(store: ObjectStore) -> None:
    store.put("range/empty", [])
    for offset, length in [(0, None), (0, 5), (3, None), (3, 2), (0, 0)]:
        assert read_all(store, "range/empty", offset=offset, length=length) == b""


def test_negative_range_is_a_programming_error(store: ObjectStore, ranged: bytes) -> None:
    with pytest.raises(ValueError, match="offset"):
        store.get("range/object", offset=-1)
    with pytest.raises(ValueError, match="length"):
        store.get("range/object", length=-1)


def test_closing_a_reader_early_frees_it(store: ObjectStore, ranged: bytes) -> None:
    for _ in range(20):  # more than the connection pool holds, if connections leaked
        with store.get("range/object") as reader:
            first = next(iter(reader))
            assert first == ranged[: len(first)]
    assert read_all(store, "range/object") == ranged


# -- stat and metadata -------------------------------------------------------------------------


def test_stat_reports_size_etag_time_and_metadata(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    info = store.put("meta/a", [b"hello ", b"world"], metadata={"kind": "birth-certificate"})
    stat = store.stat("meta/a")
    assert stat.key == "meta/a"
    assert stat.size == 11
    assert stat.etag
    assert stat.etag == info.etag
    assert dict(stat.metadata) == {"kind": "birth-certificate"}
    assert stat.modified is not None
    assert before < stat.modified < datetime.now(UTC) + timedelta(minutes=5)


@pytest.mark.parametrize(
    "metadata",
    [
        {"tên-tệp": "Giấy khai sinh – Nguyễn Văn Ánh.pdf"},
        {"Case": "upper", "case": "lower", "CASE": "all"},  # header names fold case; ours don't
        {"spaces": "  two  spaces  ", "percent": "100% %20 %zz", "": ""},
        {"emoji": "📄✅", "newline": "a\nb\tc", "quote": "\"'\\"},
        {},
    ],
    ids=["vietnamese", "case", "spaces-percent-empty", "symbols", "none"],
)
def test_unicode_metadata_round_trips_exactly(store: ObjectStore, metadata: dict[str, str]) -> None:
    info = store.put("meta/u", [b"x"], metadata=metadata)
    assert dict(info.metadata) == metadata
    assert dict(store.stat("meta/u").metadata) == metadata


def test_metadata_that_cannot_be_stored_is_refused_alike(store: ObjectStore) -> None:
    with pytest.raises(InvalidObjectMetadata):
        store.put("meta/big", [b"x"], metadata={"k": "ư" * 400})
    with pytest.raises(InvalidObjectMetadata):
        store.put("meta/bad", [b"x"], metadata={"k": "\ud800"})  # lone surrogate
    with pytest.raises(InvalidObjectMetadata):
        store.put("meta/bad", [b"x"], metadata={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(ObjectNotFound):
        store.stat("meta/big")


# -- overwrite, failure, delete ------------------------------------------------------------------


def test_overwrite_replaces_content_and_metadata(store: ObjectStore) -> None:
    first = store.put("ow/doc", [b"first version, longer"], metadata={"v": "1", "old": "yes"})
    second = store.put("ow/doc", [b"second"], metadata={"v": "2"})
    assert read_all(store, "ow/doc") == b"second"
    stat = store.stat("ow/doc")
    assert (stat.size, dict(stat.metadata)) == (6, {"v": "2"})  # metadata replaced, not merged
    assert stat.etag == second.etag != first.etag


def test_readers_see_the_old_or_the_new_object_never_a_mix(store: ObjectStore) -> None:
    versions = [bytes([n]) * (2 * MiB + n) for n in range(3)]
    store.put("ow/hot", [versions[0]])
    stop = threading.Event()
    seen: list[bytes] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                seen.append(read_all(store, "ow/hot"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in (1, 2, 0, 1, 2):
            data = versions[n]
            store.put("ow/hot", [data[i : i + 500_000] for i in range(0, len(data), 500_000)])
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert seen
    assert all(data in versions for data in seen)


def test_failed_put_leaves_the_old_object_untouched(store: ObjectStore) -> None:
    old = store.put("fail/doc", [b"old content"], metadata={"v": "old"})
    # Fails after more than one part, so S3 has a multipart upload under way.
    with pytest.raises(SourceBrokeError):
        store.put("fail/doc", breaking_source(7 * MiB), metadata={"v": "new"})
    with pytest.raises(SourceBrokeError):
        store.put("fail/doc", breaking_source(10), metadata={"v": "new"})
    assert read_all(store, "fail/doc") == b"old content"
    stat = store.stat("fail/doc")
    assert (stat.etag, dict(stat.metadata)) == (old.etag, {"v": "old"})
    with pytest.raises(SourceBrokeError):
        store.put("fail/new", breaking_source(6 * MiB))
    with pytest.raises(ObjectNotFound):
        store.stat("fail/new")
    assert [i.key for i in store.list("fail/")] == ["fail/doc"]


def test_deleted_object_is_gone(store: ObjectStore) -> None:
    store.put("del/doc", [b"data"])
    store.delete("del/doc")
    with pytest.raises(ObjectNotFound):
        store.stat("del/doc")
    with pytest.raises(ObjectNotFound):
        store.get("del/doc")
    assert list(store.list("del/")) == []


def test_deleting_a_missing_object_is_fine(store: ObjectStore) -> None:
    store.delete("del/never-existed")
    store.delete("del/never/existed/either")
    store.put("del/twice", [b"x"])
    store.delete("del/twice")
    store.delete("del/twice")


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get("missing/doc"),
        lambda s: s.get("missing/doc", offset=5),
        lambda s: s.get("missing/doc", offset=0, length=0),
        lambda s: s.get("missing/doc", offset=10**9, length=4),
    ],
    ids=["whole", "from-offset", "empty-range", "beyond-end"],
)
def test_get_of_a_missing_object_fails_at_call_time(
    store: ObjectStore, call: Callable[[ObjectStore], object]
) -> None:
    # Raised by get() itself, before any iteration: callers can answer 404 before streaming.
    with pytest.raises(ObjectNotFound):
        call(store)
    with pytest.raises(ObjectNotFound):
        store.stat("missing/doc")


# -- listing -----------------------------------------------------------------------------------

LIST_KEYS = [
    "docs/2024/a.pdf",
    "docs/2024/b.pdf",
    "docs/2024/B.pdf",
    "docs/2024-x/y",
    "docs/2025/a.pdf",
    "docs/20",
    "docs-old/x",
    "docs.bak",
    "other/x",
    "zz",
]


@pytest.mark.parametrize(
    "prefix", ["", "docs/", "docs/2024", "docs/2024/", "docs", "docs/2024/a", "d", "nothing/", "z"]
)
def test_list_returns_exactly_the_keys_under_a_prefix_sorted(
    store: ObjectStore, prefix: str
) -> None:
    sizes = {key: n for n, key in enumerate(LIST_KEYS)}
    for key in reversed(LIST_KEYS):
        store.put(key, [b"." * sizes[key]], metadata={"k": key})
    listed = list(store.list(prefix))
    assert [i.key for i in listed] == sorted(k for k in LIST_KEYS if k.startswith(prefix))
    for info in listed:
        stat = store.stat(info.key)
        assert (info.size, info.etag) == (sizes[info.key], stat.etag)
        assert dict(info.metadata) == {}  # list leaves metadata to stat


@pytest.mark.parametrize("prefix", ["../", "/docs", "docs//", "docs/../", "a\\b", "ä"])
def test_list_of_an_impossible_prefix_is_empty(store: ObjectStore, prefix: str) -> None:
    store.put("docs/x", [b"x"])
    assert list(store.list(prefix)) == []


# -- concurrency -------------------------------------------------------------------------------


def test_concurrent_writers_to_different_keys_all_land_intact(store: ObjectStore) -> None:
    payloads = {f"conc/{n}": Payload(3 * MiB + n * 1001) for n in range(8)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(lambda kv: store.put(kv[0], kv[1].chunks()), payloads.items()))
    assert [i.key for i in infos] == list(payloads)
    for key, payload in payloads.items():
        digest, size, _ = read_digest(store, key)
        assert (digest, size) == (payload.sha256(), payload.size)
    assert [i.key for i in store.list("conc/")] == sorted(payloads)


def test_concurrent_writers_to_one_key_leave_one_whole_version(store: ObjectStore) -> None:
    versions = [bytes([n]) * (MiB + n) for n in range(8)]

    def write(data: bytes) -> None:
        half = len(data) // 2
        store.put("conc/same", [data[:half], data[half:]])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, versions))
    assert read_all(store, "conc/same") in versions


# -- keys ----------------------------------------------------------------------------------------

INVALID_KEYS = [
    "../x",
    "a/../../b",
    "a/./b",
    "..",
    ".",
    "/abs",
    "",
    "a//b",
    "a/",
    "a\x00b",
    "a\\b",
    "a b",
    "ä",
    "a~obj",
    "x" * 513,
    "a/" + "y" * 241,
]


@pytest.mark.parametrize("key", INVALID_KEYS, ids=[repr(k)[:20] for k in INVALID_KEYS])
def test_invalid_keys_are_refused_by_every_operation(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        store.put(key, [b"x"])
    with pytest.raises(InvalidObjectKey):
        store.get(key)
    with pytest.raises(InvalidObjectKey):
        store.stat(key)
    with pytest.raises(InvalidObjectKey):
        store.delete(key)
    assert list(store.list()) == []


@pytest.mark.parametrize(
    "key",
    ["!_.*'()-", "a.b/..c/...", "A/B/C", "x" * 240, "/".join(["s" * 100] * 5) + "/t" * 4],
)
def test_unusual_but_valid_keys_work(store: ObjectStore, key: str) -> None:
    assert len(key) <= 512
    store.put(key, [key.encode()])
    assert read_all(store, key) == key.encode()
    assert [i.key for i in store.list()] == [key]
    store.delete(key)


# -- local store only: the filesystem boundary ---------------------------------------------------


def test_local_symlinks_out_of_the_root_are_not_followed(tmp_path: Path) -> None:
    outside = LocalObjectStore(tmp_path / "outside")
    outside.put("secret", [b"not yours"])
    inside = LocalObjectStore(tmp_path / "store")
    objects = inside.root / "objects"
    (objects / "evil").symlink_to(outside.root / "objects", target_is_directory=True)
    (objects / "link~obj").symlink_to(outside.root / "objects" / "secret~obj")
    before = sorted(p.name for p in (outside.root / "objects").iterdir())

    with pytest.raises(InvalidObjectKey):
        inside.get("evil/secret")
    with pytest.raises(InvalidObjectKey):
        inside.stat("link")
    with pytest.raises(InvalidObjectKey):
        inside.put("evil/planted", [b"x"])
    with pytest.raises(InvalidObjectKey):
        inside.put("link", [b"x"])
    with pytest.raises(InvalidObjectKey):
        inside.delete("evil/secret")
    assert list(inside.list()) == []
    assert list(inside.list("evil/")) == []
    assert sorted(p.name for p in (outside.root / "objects").iterdir()) == before
    assert read_all(outside, "secret") == b"not yours"


def test_local_symlinks_inside_the_root_are_not_followed(local_store: LocalObjectStore) -> None:
    local_store.put("real/doc", [b"content"])
    objects = local_store.root / "objects"
    (objects / "alias").symlink_to(objects / "real", target_is_directory=True)
    (objects / "same~obj").symlink_to(objects / "real" / "doc~obj")
    with pytest.raises(ObjectNotFound):
        local_store.get("alias/doc")
    with pytest.raises(ObjectNotFound):
        local_store.get("same")
    with pytest.raises(InvalidObjectKey):
        local_store.put("alias/other", [b"x"])
    assert [i.key for i in local_store.list()] == ["real/doc"]


def test_local_temp_files_never_show_and_never_linger(local_store: LocalObjectStore) -> None:
    local_store.put("t/a", [b"a"])
    with pytest.raises(SourceBrokeError):
        local_store.put("t/b", breaking_source(3 * MiB))
    assert list((local_store.root / ".tmp").iterdir()) == []
    (local_store.root / ".tmp" / "orphan.part").write_bytes(b"partial")
    assert [i.key for i in local_store.list()] == ["t/a"]
    local_store.ping()


# -- S3 store only: reachability -----------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_s3_unreachable_server_fails_fast_as_unavailable() -> None:
    store = S3ObjectStore(f"127.0.0.1:{_closed_port()}", "kho", "not-a-real-secret", "kho-absent")
    calls: list[Callable[[], object]] = [
        store.ping,
        store.ensure_bucket,
        lambda: store.put("a/b", [b"x"]),
        lambda: store.get("a/b"),
        lambda: store.stat("a/b"),
        lambda: store.delete("a/b"),
        lambda: list(store.list()),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(ObjectStoreUnavailable) as info:
            call()
        assert time.monotonic() - started < 5
        assert "not-a-real-secret" not in str(info.value)


@pytest.mark.minio
def test_s3_ping_answers_for_a_live_bucket_only(
    minio_store: S3ObjectStore, minio_service: MinioService
) -> None:
    minio_store.ping()
    missing = S3ObjectStore(
        minio_service.endpoint, minio_service.access_key, minio_service.secret_key, "kho-no-such"
    )
    with pytest.raises(ObjectStoreUnavailable):
        missing.ping()
    with pytest.raises(ObjectNotFound):
        missing.stat("a/b")
    with pytest.raises(ObjectNotFound):
        missing.get("a/b")


@pytest.mark.minio
def test_s3_wrong_credentials_are_unavailable_without_leaking_them(
    minio_service: MinioService, minio_store: S3ObjectStore
) -> None:
    wrong = S3ObjectStore(
        minio_service.endpoint, minio_service.access_key, "wrong-secret-value", minio_store.bucket
    )
    with pytest.raises(ObjectStoreUnavailable) as info:
        wrong.ping()
    assert "wrong-secret-value" not in str(info.value)
    assert minio_service.secret_key not in str(info.value)


@pytest.mark.minio
def test_s3_failed_put_leaves_no_incomplete_upload(
    minio_store: S3ObjectStore, minio_service: MinioService
) -> None:
    with pytest.raises(SourceBrokeError):
        minio_store.put("fail/mpu", breaking_source(11 * MiB))
    client = Minio(
        minio_service.endpoint,
        access_key=minio_service.access_key,
        secret_key=minio_service.secret_key,
        secure=False,
    )
    uploads = client._list_multipart_uploads(minio_store.bucket, prefix="fail/").uploads
    assert uploads == []
