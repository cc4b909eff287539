"""The vault end to end: Kho's HTTP API against the raw ``minio`` SDK, in one run.

    python -m bench.vault [--sizes 16,256] [--rounds 3] [--memory-mib 1024]

A real Kho server (``kho serve``, PostgreSQL + MinIO from ``scripts/services.sh``) runs in a
child process. Side by side, interleaved:

* upload of N MiB through ``PUT /v1/documents/{id}/content`` (streamed, encrypted, multipart)
  versus the raw SDK's ``put_object`` of the same bytes to the same MinIO;
* download through ``GET /v1/documents/{id}/content`` (decrypted, streamed) versus the raw SDK's
  ``get_object``;
* the crypto core alone (``vault.crypto`` encrypt and decrypt of 256 MiB, one thread).

Then one upload and one download of ``--memory-mib`` MiB, sampling the *server* process's peak
resident set (``VmHWM`` after resetting it through ``/proc/PID/clear_refs``): the growth over its
resident set before the transfer is what the target (<= 64 MiB) is about.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from minio import Minio

from api.app import prepare
from api.container import API_AUDIENCE, build_container
from bench.harness import Bench, markdown
from common.settings import Settings
from identity.service import CitizenProfile, IdentityService
from storage.db import session_scope
from storage.migrate import upgrade
from tests.services import setting
from vault import crypto

MiB = 1024 * 1024


def _require(name: str) -> str:
    value = setting(name)
    if not value:
        sys.exit(f"{name} is not set: start the test servers (scripts/services.sh start)")
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _chunks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


def _rss(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="16,256", help="MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-mib", type=int, default=1024)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    endpoint = _require("KHO_TEST_S3_ENDPOINT")
    access = _require("KHO_TEST_S3_ACCESS_KEY")
    secret = _require("KHO_TEST_S3_SECRET_KEY")
    admin_url = _require("KHO_TEST_PG_ADMIN_URL")
    db_url = _require("KHO_TEST_DATABASE_URL")

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    db_name = f"kho_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    url = make_url(db_url).set(database=db_name).render_as_string(hide_password=False)
    bucket = f"kho-bench-{secrets.token_hex(4)}"
    raw_bucket = f"kho-bench-raw-{secrets.token_hex(4)}"
    workdir = Path(tempfile.mkdtemp(prefix="kho-bench-"))
    env = {
        "KHO_DATA_DIR": str(workdir / "var"),
        "KHO_DATABASE_URL": url,
        "KHO_OBJECT_STORE": "s3",
        "KHO_S3_ENDPOINT": endpoint,
        "KHO_S3_ACCESS_KEY": access,
        "KHO_S3_SECRET_KEY": secret,
        "KHO_S3_BUCKET": bucket,
        "KHO_MAX_UPLOAD_BYTES": str(max([*sizes, args.memory_mib]) * MiB + MiB),
        "KHO_LOG_LEVEL": "WARNING",
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env["KHO_PUBLIC_URL"] = base
    os.environ.update(env)
    settings = Settings()
    container = build_container(settings)
    upgrade(url)
    prepare(container)
    with session_scope(container.sessions) as session:
        account = IdentityService(session, container.clock).enrol_citizen(
            CitizenProfile(f"bench-{uuid.uuid4()}", "019090001234", "Bench", None, 2)
        )
        owner_id = account.id
    token = container.issuer.access_token(
        subject=str(owner_id),
        audience=API_AUDIENCE,
        client_id="bench",
        lifetime=dt.timedelta(hours=2),
    )
    kho = Path(sys.executable).with_name("kho")
    server = subprocess.Popen(
        [str(kho), "serve", "--no-migrate", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=600)
    raw = Minio(endpoint, access_key=access, secret_key=secret, secure=False)
    raw.make_bucket(raw_bucket)
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                if client.get("/healthz").status_code == 200:
                    break
            time.sleep(0.2)

        def new_document() -> str:
            r = client.post("/v1/documents", json={"type_code": "other", "title": "bench"})
            r.raise_for_status()
            doc_id: str = r.json()["id"]
            return doc_id

        bench = Bench(rounds=args.rounds, warmup=1, memory=False)
        for size in sizes:
            data = b"%PDF-1.7\n" + os.urandom(size * MiB - 9)
            state: dict[str, str] = {}

            def api_put(data: bytes = data, state: dict[str, str] = state) -> None:
                doc = new_document()
                r = client.put(f"/v1/documents/{doc}/content", content=_chunks(data))
                assert r.status_code == 201, r.text
                state["doc"] = doc

            def raw_put(data: bytes = data, size: int = size) -> None:
                raw.put_object(raw_bucket, f"raw-{size}", io.BytesIO(data), len(data))

            def api_get(state: dict[str, str] = state) -> None:
                with client.stream("GET", f"/v1/documents/{state['doc']}/content") as r:
                    assert r.status_code == 200
                    for _chunk in r.iter_raw(MiB):
                        pass

            def raw_get(size: int = size) -> None:
                response = raw.get_object(raw_bucket, f"raw-{size}")
                try:
                    for _chunk in response.stream(MiB):
                        pass
                finally:
                    response.close()
                    response.release_conn()

            group = f"upload {size} MiB"
            bench.add(group, "raw minio SDK put_object", raw_put, nbytes=len(data), baseline=True)
            bench.add(group, "Kho API PUT (encrypt + stream)", api_put, nbytes=len(data))
            group = f"download {size} MiB"
            bench.add(group, "raw minio SDK get_object", raw_get, nbytes=len(data), baseline=True)
            bench.add(group, "Kho API GET (decrypt + stream)", api_get, nbytes=len(data))

        blob = os.urandom(MiB) * 256
        key = crypto.new_key()
        context = b"bench"
        sealed = b"".join(crypto.encrypt_stream(key, _chunks(blob), key_id=b"k", context=context))

        def encrypt() -> None:
            for _piece in crypto.encrypt_stream(key, _chunks(blob), key_id=b"k", context=context):
                pass

        def decrypt() -> None:
            for _piece in crypto.decrypt_stream(key, _chunks(sealed), context=context):
                pass

        bench.add("crypto core 256 MiB", "encrypt_stream", encrypt, nbytes=len(blob), baseline=True)
        bench.add("crypto core 256 MiB", "decrypt_stream", decrypt, nbytes=len(blob))
        results = bench.run()
        print(markdown(results))
        print("### Throughput ratio (Kho / raw SDK; target >= 0.8)\n")
        print("| operation | ratio |\n|---|---:|")
        for group, rows in results.items():
            if group.startswith("crypto"):
                continue
            base_row = next(r for r in rows if r.case.baseline)
            ours = next(r for r in rows if not r.case.baseline)
            print(f"| {group} | {base_row.median / ours.median:.2f} |")
        for row in results["crypto core 256 MiB"]:
            print(f"\ncrypto {row.case.label}: {(row.throughput or 0) / 1000:.2f} GB/s (one core)")

        # Server memory during a large upload and download.
        big = args.memory_mib
        print(f"\n### Server memory, {big} MiB upload and download\n")
        pid = server.pid

        def big_body() -> Iterator[bytes]:
            yield b"%PDF-1.7\n"
            block = os.urandom(MiB)
            for _ in range(big):
                yield block

        def measured(label: str, work: object) -> None:
            before = _rss(pid, "VmRSS")
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            started = time.perf_counter()
            assert callable(work)
            work()
            seconds = time.perf_counter() - started
            peak = _rss(pid, "VmHWM")
            print(
                f"| {label} | {before / MiB:.0f} MiB | {peak / MiB:.0f} MiB | "
                f"{(peak - before) / MiB:.1f} MiB | {big * MiB / 1e6 / seconds:.0f} MB/s |"
            )

        print("| transfer | server RSS before | peak during | growth | throughput |")
        print("|---|---:|---:|---:|---:|")
        doc = new_document()

        def upload_big() -> None:
            r = client.put(f"/v1/documents/{doc}/content", content=big_body())
            assert r.status_code == 201, r.text

        def download_big() -> None:
            with client.stream("GET", f"/v1/documents/{doc}/content") as r:
                assert r.status_code == 200
                for _chunk in r.iter_raw(MiB):
                    pass

        measured(f"upload {big} MiB", upload_big)
        measured(f"download {big} MiB", download_big)
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        container.close()
        for name in (raw_bucket,):
            for obj in raw.list_objects(name, recursive=True):
                raw.remove_object(name, obj.object_name or "")
            raw.remove_bucket(name)
        for obj in raw.list_objects(bucket, recursive=True):
            raw.remove_object(bucket, obj.object_name or "")
        with contextlib.suppress(Exception):
            raw.remove_bucket(bucket)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
