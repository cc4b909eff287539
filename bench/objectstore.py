"""Object-store throughput: Kho's stores against the raw ``minio`` SDK on the same MinIO.

    python -m bench.objectstore [--sizes 1,16,256] [--rounds 5]

For each size (MiB) it times put and get through

* the raw SDK (baseline): ``put_object`` with a known length from a ``BytesIO`` (the SDK's own
  5 MiB parts, three in parallel) and ``get_object`` read to the end in 1 MiB chunks;
* :class:`~storage.s3.S3ObjectStore`: streamed put of unknown length (8 MiB parts, sequential,
  and with ``parallel_uploads=3``) and a streamed get;
* :class:`~storage.local.LocalObjectStore` in a temporary directory.

Put sources are one random buffer (raw SDK) or the same bytes cut into 1 MiB chunks before
timing (Kho's stores), so no case pays for generating or splitting data. MinIO's
coordinates come from ``KHO_TEST_S3_ENDPOINT`` / ``KHO_TEST_S3_ACCESS_KEY`` /
``KHO_TEST_S3_SECRET_KEY`` (or the services file, see ``tests/services.py``). A fresh bucket is
created and removed afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from minio import Minio

from bench.harness import Bench, markdown
from storage.local import LocalObjectStore
from storage.objects import CHUNK_SIZE, MiB, ObjectStore
from storage.s3 import S3ObjectStore


def _setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        from tests.services import setting

        value = setting(name)
    if not value:
        sys.exit(f"{name} is not set: start MinIO (scripts/services.sh start) or export it")
    return value


def _split(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]


def _putter(store: ObjectStore, key: str, chunks: list[bytes]) -> Callable[[], object]:
    return lambda: store.put(key, chunks)


def _getter(store: ObjectStore, key: str) -> Callable[[], object]:
    return lambda: _drain_store(store, key)


def _drain_store(store: ObjectStore, key: str) -> None:
    with store.get(key) as reader:
        for _ in reader:
            pass


def _put_raw(client: Minio, bucket: str, key: str, data: bytes) -> None:
    client.put_object(bucket, key, io.BytesIO(data), length=len(data))


def _get_raw(client: Minio, bucket: str, key: str) -> None:
    response = client.get_object(bucket, key)
    try:
        for _ in response.stream(CHUNK_SIZE):
            pass
    finally:
        response.close()
        response.release_conn()


def _remove_bucket(client: Minio, bucket: str) -> None:
    for obj in client.list_objects(bucket, recursive=True):
        client.remove_object(bucket, obj.object_name)
    client.remove_bucket(bucket)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.objectstore", description=__doc__)
    parser.add_argument("--sizes", default="1,16,256", help="object sizes in MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory-peak run")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    endpoint = _setting("KHO_TEST_S3_ENDPOINT")
    access = _setting("KHO_TEST_S3_ACCESS_KEY")
    secret = _setting("KHO_TEST_S3_SECRET_KEY")
    bucket = f"kho-bench-{secrets.token_hex(6)}"
    raw = Minio(endpoint, access_key=access, secret_key=secret, secure=False)
    s3 = S3ObjectStore(endpoint, access, secret, bucket)
    s3_parallel = S3ObjectStore(endpoint, access, secret, bucket, parallel_uploads=3)
    s3.ensure_bucket()

    bench = Bench(rounds=args.rounds, warmup=args.warmup, memory=not args.no_memory)
    with tempfile.TemporaryDirectory(prefix="kho-bench-") as tmp:
        local = LocalObjectStore(Path(tmp))
        try:
            for size_mib in sizes:
                data = os.urandom(size_mib * MiB)
                chunks = _split(data)  # split before timing, so no case pays for it
                n = len(data)
                put, get = f"put {size_mib} MiB", f"get {size_mib} MiB"
                bench.add(
                    put,
                    "minio SDK put_object, known length",
                    partial(_put_raw, raw, bucket, f"raw/{n}", data),
                    nbytes=n,
                    baseline=True,
                )
                bench.add(
                    put, "S3ObjectStore.put, streamed", _putter(s3, f"s3/{n}", chunks), nbytes=n
                )
                bench.add(
                    put,
                    "S3ObjectStore.put, streamed, parallel_uploads=3",
                    _putter(s3_parallel, f"s3p/{n}", chunks),
                    nbytes=n,
                )
                bench.add(
                    put, "LocalObjectStore.put", _putter(local, f"local/{n}", chunks), nbytes=n
                )
                _put_raw(raw, bucket, f"get/{n}", data)
                local.put(f"get/{n}", chunks)
                bench.add(
                    get,
                    "minio SDK get_object",
                    partial(_get_raw, raw, bucket, f"get/{n}"),
                    nbytes=n,
                    baseline=True,
                )
                bench.add(get, "S3ObjectStore.get", _getter(s3, f"get/{n}"), nbytes=n)
                bench.add(get, "LocalObjectStore.get", _getter(local, f"get/{n}"), nbytes=n)
            results = bench.run()
        finally:
            _remove_bucket(raw, bucket)
    print(markdown(results))


if __name__ == "__main__":
    main()
