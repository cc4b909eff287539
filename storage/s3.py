"""The S3 object store: MinIO in production, or any server that speaks plain S3.

Only ordinary S3 calls are made (PutObject, multipart upload, GetObject with Range, HeadObject,
DeleteObject, ListObjectsV2, HeadBucket, CreateBucket), all through the ``minio`` SDK, so another
S3 server can replace MinIO.

* ``put`` of unknown length reads one part (``part_size``, 8 MiB by default) at a time from an
  adapter over the chunk iterator. A source that ends within the first part is one PutObject
  (including an empty one). Otherwise Kho drives the multipart upload itself (CreateMultipart,
  UploadPart, Complete, or Abort on any failure) with up to ``parallel_uploads`` parts in flight
  (2 by default) while the next part is read, so reading and encrypting overlap the network.
  This uses four of the SDK's underscore methods, because its public ``put_object`` with
  parallel parts leaves threads blocked when the source fails mid-upload (SDK 7.2); the object
  store contract suite pins the behaviour.
* Metadata travels as a single ``x-amz-meta-kho`` header holding
  :func:`storage.objects.encode_metadata` (percent-encoded UTF-8 JSON), because S3 user metadata
  is ASCII-only and its header names are case-insensitive.
* An offset at or past the end of the object gives an empty reader (S3 answers 416); see
  :mod:`storage.objects` for the shared range rule.
* Errors: a missing key or bucket on ``get``/``stat`` is :class:`ObjectNotFound`; anything that
  makes the store unusable — connection failures, time-outs, server errors, refused credentials,
  a missing bucket on write — is :class:`ObjectStoreUnavailable`. Timeouts are short and retries
  few, so an absent server fails within seconds.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, cast

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import genheaders
from urllib3.response import BaseHTTPResponse

from storage.errors import ObjectCorrupt, ObjectNotFound, ObjectStoreUnavailable
from storage.objects import (
    CHUNK_SIZE,
    BaseObjectReader,
    EmptyReader,
    MiB,
    ObjectInfo,
    ObjectReader,
    check_range,
    decode_metadata,
    encode_metadata,
    prefix_can_match,
    validate_key,
    validate_metadata,
)

__all__ = ["METADATA_HEADER", "S3ObjectStore"]

#: The one user-metadata header Kho writes (the SDK sends it as given).
METADATA_HEADER = "X-Amz-Meta-Kho"

_MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
_MAX_PART_SIZE = 5 * 1024 * MiB
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket"})
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

_T = TypeVar("_T")


class _SourceFailedError(Exception):
    """Marks that the caller's chunk iterator, not the store, raised during a put."""


class _ChunkStream:
    """A ``read(size)`` file-like over an iterator of chunks, for the SDK's streamed upload.

    ``read(n)`` returns exactly ``n`` bytes until the source ends (the SDK asks for one part
    at a time), so a part is assembled with a single join rather than repeated concatenation.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.size = 0
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ValueError("an unbounded read would hold the whole object in memory")
        parts: list[memoryview] = []
        need = size
        if self._pending:
            head = self._pending[:need]
            self._pending = self._pending[len(head) :]
            parts.append(head)
            need -= len(head)
        while need > 0:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            except BaseException as exc:
                self.error = exc
                raise _SourceFailedError from exc
            view = memoryview(chunk).cast("B")
            if len(view) > need:
                parts.append(view[:need])
                self._pending = view[need:]
                need = 0
            else:
                parts.append(view)
                need -= len(view)
        data = b"".join(parts)
        self.size += len(data)
        return data


class _ResponseReader(BaseObjectReader):
    """Streams a GetObject response; ``close`` hands the connection back (or drops it)."""

    def __init__(self, response: BaseHTTPResponse) -> None:
        self._response = response
        self._drained = False
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._response.stream(CHUNK_SIZE, decode_content=False):
                if chunk:
                    yield chunk
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ObjectStoreUnavailable(
                detail_en="the connection to the object store broke while reading an object"
            ) from exc
        self._drained = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._drained:
            # Unread body left on the wire: the connection cannot be reused.
            self._response.close()
        self._response.release_conn()


class S3ObjectStore:
    """Objects in one bucket of an S3 server, reached through the ``minio`` SDK."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        part_size: int = 8 * MiB,
        parallel_uploads: int = 2,
        connect_timeout: float = 2.0,
        read_timeout: float = 120.0,
        max_connections: int = 16,
    ) -> None:
        if not _MIN_PART_SIZE <= part_size <= _MAX_PART_SIZE:
            raise ValueError("part_size must be between 5 MiB and 5 GiB (S3's limits)")
        if parallel_uploads < 1:
            raise ValueError("parallel_uploads must be at least 1")
        if not _BUCKET_NAME.fullmatch(bucket):
            raise ValueError("bucket must be a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        self._bucket = bucket
        self._region = region
        self._part_size = part_size
        self._parallel_uploads = parallel_uploads
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=max_connections,
            cert_reqs="CERT_REQUIRED",
            # The system's trust store (or SSL_CERT_FILE), where an on-premises CA is installed.
            ca_certs=os.environ.get("SSL_CERT_FILE") or None,
            # Few, quick retries: a server that is down must fail a request in seconds, not
            # after the SDK's default of five retries with five-minute time-outs.
            retries=urllib3.Retry(
                total=3,
                connect=1,
                read=1,
                status=1,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
            ),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet (idempotent, safe under races)."""
        if self._call(lambda: self._client.bucket_exists(self._bucket)):
            return
        try:
            self._call(lambda: self._client.make_bucket(self._bucket, location=self._region))
        except ObjectStoreUnavailable as exc:
            cause = exc.__cause__
            if not (isinstance(cause, S3Error) and cause.code == "BucketAlreadyOwnedByYou"):
                raise

    # -- the ObjectStore protocol -------------------------------------------------------------

    def put(
        self, key: str, chunks: Iterable[bytes], *, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Streamed put of unknown length with bounded memory.

        The first part decides: a source that ends within one part is a single PutObject;
        otherwise a multipart upload runs with up to ``parallel_uploads`` parts in flight while
        the next part is read from the source, so reading (and encrypting) overlaps sending.
        Memory is at most ``(parallel_uploads + 1) * part_size``. If the source or the store
        fails, in-flight parts finish, the upload is aborted and the original error is raised.
        """
        validate_key(key)
        meta = validate_metadata(metadata)
        headers: dict[str, str | list[str] | tuple[str]] = (
            {METADATA_HEADER: encode_metadata(meta)} if meta else {}
        )
        stream = _ChunkStream(chunks)
        try:
            first = stream.read(self._part_size)
        except _SourceFailedError:
            assert stream.error is not None
            raise stream.error from None
        if len(first) < self._part_size:
            result = self._call(
                lambda: self._client.put_object(
                    self._bucket,
                    key,
                    io.BytesIO(first),
                    len(first),
                    metadata=cast("Any", headers or None),
                )
            )
            return ObjectInfo(key=key, size=stream.size, etag=result.etag, metadata=meta)
        etag = self._multipart(key, first, stream, headers)
        return ObjectInfo(key=key, size=stream.size, etag=etag, metadata=meta)

    def _multipart(
        self,
        key: str,
        first: bytes,
        stream: _ChunkStream,
        headers: dict[str, str | list[str] | tuple[str]],
    ) -> str:
        client = self._client
        sdk_headers = genheaders(cast("Any", headers), None, None, None, False)
        upload_id: str = self._call(
            lambda: client._create_multipart_upload(self._bucket, key, sdk_headers)
        )
        pending: deque[Future[tuple[int, str]]] = deque()
        parts: list[Part] = []

        def send(number: int, data: bytes) -> tuple[int, str]:
            etag = client._upload_part(self._bucket, key, data, None, upload_id, number)
            return number, str(etag)

        def collect(future: Future[tuple[int, str]]) -> None:
            number, etag = self._call(future.result)
            parts.append(Part(number, etag))

        pool = ThreadPoolExecutor(max_workers=self._parallel_uploads, thread_name_prefix="s3-part")
        try:
            data, number = first, 1
            while data:
                if len(pending) >= self._parallel_uploads:
                    collect(pending.popleft())
                pending.append(pool.submit(send, number, data))
                number += 1
                if len(data) < self._part_size:
                    break
                try:
                    data = stream.read(self._part_size)
                except _SourceFailedError:
                    assert stream.error is not None
                    raise stream.error from None
            while pending:
                collect(pending.popleft())
            parts.sort(key=lambda part: part.part_number)
            result = self._call(
                lambda: client._complete_multipart_upload(self._bucket, key, upload_id, parts)
            )
            return str(result.etag)
        except BaseException:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(Exception):
                client._abort_multipart_upload(self._bucket, key, upload_id)
            raise
        finally:
            pool.shutdown(wait=True)

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectReader:
        validate_key(key)
        check_range(offset, length)
        if length == 0:
            self.stat(key)  # still report a missing object now
            return EmptyReader()
        try:
            response = self._call(
                lambda: self._client.get_object(
                    self._bucket, key, offset=offset, length=length or 0
                ),
                missing_is_not_found=True,
            )
        except ObjectStoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, S3Error) and cause.code == "InvalidRange":
                return EmptyReader()  # offset at or past the end: the shared rule says empty
            raise
        return _ResponseReader(response)

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        obj = self._call(
            lambda: self._client.stat_object(self._bucket, key), missing_is_not_found=True
        )
        headers = obj.metadata or {}
        encoded = headers.get(METADATA_HEADER)
        try:
            meta = decode_metadata(encoded) if encoded else {}
        except ValueError:
            raise ObjectCorrupt(detail_en="stored object metadata cannot be decoded") from None
        return ObjectInfo(
            key=key, size=obj.size or 0, etag=obj.etag, metadata=meta, modified=obj.last_modified
        )

    def delete(self, key: str) -> None:
        validate_key(key)
        self._call(lambda: self._client.remove_object(self._bucket, key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not prefix_can_match(prefix):
            return
        objects = self._client.list_objects(self._bucket, prefix=prefix or None, recursive=True)
        while True:
            # The SDK pages lazily, so errors surface while iterating.
            obj = self._call(lambda: next(objects, None))
            if obj is None:
                return
            if obj.is_dir or obj.object_name is None:
                continue
            yield ObjectInfo(
                key=obj.object_name, size=obj.size or 0, etag=obj.etag, modified=obj.last_modified
            )

    def ping(self) -> None:
        if not self._call(lambda: self._client.bucket_exists(self._bucket)):
            raise ObjectStoreUnavailable(detail_en="the object store's bucket does not exist")

    # -- errors ----------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], _T], *, missing_is_not_found: bool = False) -> _T:
        """Run one SDK call, translating its failures into storage errors.

        The original exception is kept as ``__cause__`` for logs; the messages never carry
        credentials (the SDK's own messages do not either, but they are not shown to callers).
        """
        try:
            return fn()
        except S3Error as exc:
            if missing_is_not_found and exc.code in _NOT_FOUND_CODES:
                raise ObjectNotFound(detail_en="no object with this key") from exc
            raise ObjectStoreUnavailable(
                detail_en=f"the object store refused the request ({exc.code})"
            ) from exc
        except (ServerError, InvalidResponseError) as exc:
            raise ObjectStoreUnavailable(
                detail_en="the object store answered with a server error"
            ) from exc
        except _SourceFailedError:
            raise
        except MinioException as exc:
            raise ObjectStoreUnavailable(detail_en="the object store request failed") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ObjectStoreUnavailable(detail_en="cannot reach the object store") from exc
