"""Fixtures for the object-store contract suite: every test runs on each backend.

``store`` is parametrised over the development filesystem backend and MinIO. The MinIO bucket is
created once per test module under a random name and emptied after every test, then removed with
its contents when the module ends. A missing MinIO fails the MinIO half of the suite (it is never
skipped). The S3 store uses 5 MiB parts, S3's minimum, so that the 5 MiB ± 1 cases straddle the
single-request / multipart boundary.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from storage.local import LocalObjectStore
from storage.objects import MiB, ObjectStore
from storage.s3 import S3ObjectStore
from tests.services import MinioService, require_minio

BACKENDS = ["local", pytest.param("minio", marks=pytest.mark.minio)]


@pytest.fixture(scope="module")
def minio_service() -> MinioService:
    return require_minio()


@pytest.fixture(scope="module")
def minio_store(minio_service: MinioService) -> Iterator[S3ObjectStore]:
    bucket = f"kho-contract-{secrets.token_hex(6)}"
    store = S3ObjectStore(
        minio_service.endpoint,
        minio_service.access_key,
        minio_service.secret_key,
        bucket,
        part_size=5 * MiB,
    )
    store.ensure_bucket()
    yield store
    _remove_bucket(minio_service, bucket)


def _remove_bucket(service: MinioService, bucket: str) -> None:
    client = Minio(
        service.endpoint, access_key=service.access_key, secret_key=service.secret_key, secure=False
    )
    if not client.bucket_exists(bucket):
        return
    for obj in client.list_objects(bucket, recursive=True):
        client.remove_object(bucket, obj.object_name)
    for upload in client._list_multipart_uploads(bucket).uploads:
        if upload.object_name and upload.upload_id:
            client._abort_multipart_upload(bucket, upload.object_name, upload.upload_id)
    client.remove_bucket(bucket)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "store")
        return
    s3: S3ObjectStore = request.getfixturevalue("minio_store")
    yield s3
    for info in list(s3.list()):
        s3.delete(info.key)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "store")
