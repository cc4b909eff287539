"""The owner's store of papers: metadata, streamed encrypted content, versions, export.

Reading and adding papers is open to a delegate acting for the owner named in
``X-On-Behalf-Of`` (``documents:read``, ``documents:write``); each such request is one entry in
the owner's access log, committed before the response starts. Deleting a paper and exporting
the whole store stay the owner's alone (ADR 0010).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from api.deps import (
    ContainerDep,
    DelegateLog,
    DocumentReader,
    Documents,
    DocumentWriter,
    SoleOwner,
)
from api.http import (
    content_disposition,
    etag_matches,
    filename_from_disposition,
    parse_single_range,
)
from consent.service import DelegateAction
from vault.errors import ContentTooLarge
from vault.models import Assurance
from vault.schemas import (
    DocumentCreate,
    DocumentOut,
    DocumentPage,
    DocumentTypeOut,
    UploadOut,
    VersionList,
)
from vault.service import OpenedContent, content_out

router = APIRouter(prefix="/v1", tags=["documents"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such document for this owner"}
}
_READ: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "X-On-Behalf-Of names an owner who gave the caller no active "
        "documents:read delegation"
    }
}
_WRITE: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "X-On-Behalf-Of names an owner who gave the caller no active "
        "documents:write delegation"
    }
}
_OWNER_ONLY: dict[int | str, dict[str, Any]] = {
    403: {"description": "Sent with X-On-Behalf-Of: never delegated (owner_only)"}
}
# Versions are 32-bit integer columns: a larger number was a 500 on PostgreSQL (out of range).
MAX_VERSION = 2**31 - 1
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=255, pattern=r"^[\x21-\x7e]+$")
]


@router.get("/document-types", summary="The catalogue of document types")
def document_types(documents: Documents) -> list[DocumentTypeOut]:
    return [
        DocumentTypeOut(
            code=t.code,
            name_vi=t.name_vi,
            name_en=t.name_en,
            expires=t.expires,
            official_code=t.official_code,
        )
        for t in documents.repo.document_types()
    ]


@router.get("/documents", summary="List my papers (filter, cursor pagination)", responses=_READ)
def list_documents(
    actor: DocumentReader,
    documents: Documents,
    delegate_log: DelegateLog,
    type_code: Annotated[str | None, Query(max_length=64)] = None,
    assurance: Assurance | None = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DocumentPage:
    rows, next_cursor = documents.list_documents(
        actor.owner_id, type_code=type_code, assurance=assurance, cursor=cursor, limit=limit
    )
    delegate_log.record(actor, DelegateAction.list)
    return DocumentPage(items=[documents.describe(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "/documents",
    status_code=status.HTTP_201_CREATED,
    summary="Create a paper from JSON metadata (content is uploaded separately)",
    responses=_WRITE,
)
def create_document(
    body: DocumentCreate,
    actor: DocumentWriter,
    documents: Documents,
    delegate_log: DelegateLog,
    response: Response,
) -> DocumentOut:
    document = documents.create(actor.owner_id, body)
    delegate_log.record(actor, DelegateAction.create, document_id=document.id)
    response.headers["Location"] = f"/v1/documents/{document.id}"
    return documents.describe(document)


@router.get(
    "/documents/{document_id}",
    summary="Metadata of one paper",
    responses={**_NOT_FOUND, **_READ},
)
def get_document(
    document_id: uuid.UUID,
    actor: DocumentReader,
    documents: Documents,
    delegate_log: DelegateLog,
    response: Response,
) -> DocumentOut:
    described = documents.describe(documents.get(actor.owner_id, document_id))
    delegate_log.record(
        actor,
        DelegateAction.metadata,
        document_id=document_id,
        document_version=described.current_version,
    )
    response.headers["ETag"] = f'W/"{described.updated_at.timestamp()}-{described.current_version}"'
    return described


@router.get(
    "/documents/{document_id}/versions",
    summary="Every version of a paper",
    responses={**_NOT_FOUND, **_READ},
)
def list_versions(
    document_id: uuid.UUID, actor: DocumentReader, documents: Documents, delegate_log: DelegateLog
) -> VersionList:
    versions = documents.versions(actor.owner_id, document_id)
    delegate_log.record(actor, DelegateAction.versions, document_id=document_id)
    return VersionList(items=[content_out(v) for v in versions])


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decrypt the first segment before the status line is sent.

    A missing object, a wrong key or a tampered header then becomes a proper problem response
    instead of a 200 whose body breaks off.
    """
    first = next(chunks, None)
    if first is None:
        return iter(())
    return itertools.chain((first,), chunks)


BODY_BATCH = 1 << 20


def body_chunks(request: Request) -> Iterator[bytes]:
    """The request body as a blocking iterator, for a worker thread (nothing is spooled).

    Each hop to the event loop gathers up to ``BODY_BATCH`` bytes, so a large upload costs a
    few hundred thread switches rather than one per network read.
    """
    stream: AsyncIterator[bytes] = request.stream().__aiter__()

    async def receive() -> bytes:
        batch = bytearray()
        while len(batch) < BODY_BATCH:
            try:
                batch += await stream.__anext__()
            except StopAsyncIteration:
                break
        return bytes(batch)

    while True:
        chunk = anyio.from_thread.run(receive)
        if not chunk:
            return
        yield chunk


_END = object()


async def _prefetch(chunks: Iterator[bytes], depth: int = 4) -> AsyncIterator[bytes]:
    """Produce ``chunks`` in a worker thread while the event loop sends earlier ones.

    Reading from the object store and decrypting overlap the network write; at most ``depth``
    chunks wait in between, so memory stays bounded. If the client goes away, the producer is
    told to stop and the queue is drained so it never blocks.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def produce() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    break
                put(chunk)
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(exc)

    producer = loop.run_in_executor(None, produce)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        while not producer.done():
            while not queue.empty():
                queue.get_nowait()
            await asyncio.sleep(0.001)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _coalesce(chunks: Iterator[bytes], size: int = BODY_BATCH) -> Iterator[bytes]:
    """Re-cut decrypted segments into larger pieces: fewer thread hops and socket writes."""
    batch = bytearray()
    for chunk in chunks:
        batch += chunk
        if len(batch) >= size:
            yield bytes(batch)
            batch.clear()
    if batch:
        yield bytes(batch)


def declared_length(request: Request) -> int | None:
    """The request's ``Content-Length``, read from the headers rather than declared as a
    parameter (a client does not choose it). Not a non-negative integer: 422, as when it was
    a parameter."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        error = {
            "type": "int_parsing",
            "msg": "Input should be a valid integer, unable to parse string as an integer",
        }
    else:
        if length >= 0:
            return length
        error = {"type": "greater_than_equal", "msg": "Input should be greater than or equal to 0"}
    raise RequestValidationError([{**error, "loc": ("header", "content-length"), "input": value}])


@router.put(
    "/documents/{document_id}/content",
    summary="Upload a new version: the raw request body, streamed and encrypted on the way",
    responses={
        200: {"description": "These exact bytes were already stored; that version is returned"},
        201: {"description": "A new version was stored"},
        403: _WRITE[403],
        404: _NOT_FOUND[404],
        413: {"description": "Larger than the configured limit"},
        415: {"description": "Not a PDF, JPEG, PNG or TIFF"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_content(
    document_id: uuid.UUID,
    request: Request,
    actor: DocumentWriter,
    documents: Documents,
    delegate_log: DelegateLog,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    limit = container.settings.max_upload_bytes
    content_length = declared_length(request)
    if content_length is not None and content_length > limit:
        raise ContentTooLarge(extra={"limit_bytes": limit})
    filename = filename_from_disposition(request.headers.get("content-disposition"))

    def work() -> UploadOut:
        result = documents.upload(
            actor.owner_id,
            document_id,
            body_chunks(request),
            filename=filename,
            actor_id=actor.account_id,
            idempotency_key=idempotency_key,
        )
        delegate_log.record(
            actor,
            DelegateAction.upload,
            document_id=document_id,
            document_version=result.version.version,
        )
        return UploadOut(
            document_id=document_id, created=result.created, content=content_out(result.version)
        )

    out = await anyio.to_thread.run_sync(work)
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=status.HTTP_201_CREATED if out.created else status.HTTP_200_OK,
        headers={"ETag": f'"{out.content.sha256}"'},
    )


@router.get(
    "/documents/{document_id}/content",
    summary="The decrypted bytes of the current (or a given) version; Range and ETag supported",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/pdf": {}, "image/jpeg": {}, "image/png": {}}},
        206: {"description": "Partial content"},
        304: {"description": "Not modified"},
        403: _READ[403],
        404: _NOT_FOUND[404],
        416: {"description": "Range not satisfiable"},
    },
)
def download_content(
    document_id: uuid.UUID,
    actor: DocumentReader,
    documents: Documents,
    delegate_log: DelegateLog,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    opened = documents.open_content(actor.owner_id, document_id, version)
    # A delegate's read is in the owner's log, in this request's transaction, which commits
    # before the response starts: no entry, no bytes (as for an agency's fetch).
    delegate_log.record(
        actor,
        DelegateAction.download,
        document_id=document_id,
        document_version=opened.version.version,
    )
    return stream_content(opened, range_header=range_header, if_none_match=if_none_match)


def stream_content(
    opened: OpenedContent,
    *,
    range_header: str | None = None,
    if_none_match: str | None = None,
) -> Response:
    """A decrypted version as a streamed response (Range, ETag); shared by owner and agency."""
    headers = {
        "ETag": opened.etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "Content-Disposition": content_disposition(opened.version.filename or "tai-lieu"),
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(if_none_match, opened.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    media_type = opened.version.media_type or "application/octet-stream"
    wanted = parse_single_range(range_header)
    if wanted is not None:
        byte_range = opened.resolve_range(*wanted)
        headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end - 1}/{opened.size}"
        headers["Content-Length"] = str(byte_range.length)
        return StreamingResponse(
            _prefetch(_primed(_coalesce(opened.iter_bytes(byte_range)))),
            status_code=status.HTTP_206_PARTIAL_CONTENT,
            media_type=media_type,
            headers=headers,
        )
    headers["Content-Length"] = str(opened.size)
    return StreamingResponse(
        _prefetch(_primed(_coalesce(opened.iter_bytes()))), media_type=media_type, headers=headers
    )


@router.delete(
    "/documents/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a paper: its keys are destroyed, then its objects removed (owner only)",
    responses={**_NOT_FOUND, **_OWNER_ONLY},
)
def delete_document(document_id: uuid.UUID, owner: SoleOwner, documents: Documents) -> Response:
    documents.delete(owner.account_id, document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/export",
    summary="Everything I hold, as a streamed zip (documents and a JSON of their metadata); "
    "owner only",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}, **_OWNER_ONLY},
)
def export(owner: SoleOwner, documents: Documents) -> StreamingResponse:
    return StreamingResponse(
        documents.export(owner.account_id),
        media_type="application/zip",
        headers={
            "Content-Disposition": content_disposition("kho-export.zip"),
            "Cache-Control": "private, no-store",
        },
    )
