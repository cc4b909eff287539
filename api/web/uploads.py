"""Uploads from the pages: a new paper, a new version, a scan at the desk.

Two transports reach the same code, and neither spools plaintext to disk:

* with JavaScript, ``static/upload.js`` sends the file as the raw body of a ``PUT`` (the fields
  go in one ``X-Upload-Fields`` header, urlencoded; the CSRF token in ``X-CSRF-Token``), so that
  ``XMLHttpRequest`` can report upload progress;
* without JavaScript, the browser POSTs ``multipart/form-data``, which ``api.web.multipart`` reads
  as a stream: the fields before the file, then the file part straight into the service.

Either way the body is pulled chunk by chunk in a worker thread (``body_chunks``) and encrypted on
its way to the object store by ``DocumentService.upload``.

Transactions: the upload journal commits the pending version in a transaction of its own, which
needs the document row to be committed already (and, on SQLite, the request's own transaction
not to hold the write lock). So the page commits first whatever it has written (a token
refresh), then the new document's metadata, then streams; if the content is refused, the
empty document is deleted again. The same two steps as the JSON API (POST, then PUT), in one
request.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.web.i18n import Texts
from api.web.multipart import InvalidForm, MultipartReader, boundary_of
from api.web.security import CsrfFailed
from common.errors import Forbidden, InvalidInput, KhoError
from identity.errors import AccountNotFound
from identity.service import validate_personal_id
from vault.errors import ContentTooLarge, EmptyContent, UnknownDocumentType, UnsupportedMediaType
from vault.issuance import IssuanceService
from vault.schemas import DocumentCreate
from vault.service import DocumentService, UploadResult

FORM_OVERHEAD = 64 * 1024
FILE_FIELD = "file"
_FILE_ERRORS = (ContentTooLarge, EmptyContent, UnsupportedMediaType)


class UploadFormInvalid(InvalidInput):
    """Field errors of an upload form; ``fields`` maps each field to its message."""

    code = "invalid_input"

    def __init__(self, fields: dict[str, str], values: Mapping[str, str]) -> None:
        super().__init__(
            "Một số thông tin chưa hợp lệ; xem các ô được đánh dấu.",
            "Some fields need attention; see the marked ones.",
            extra={"fields": fields},
        )
        self.fields = fields
        self.values = dict(values)


@dataclass
class Incoming:
    """What arrived: the text fields, and the file's name and bytes."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None


def _date(value: str, name: str, t: Texts, errors: dict[str, str]) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        errors[name] = t("Ngày không hợp lệ.", "Not a valid date.")
        return None


def document_fields(
    values: Mapping[str, str], t: Texts
) -> tuple[DocumentCreate | None, dict[str, str]]:
    """Validate the metadata fields of a new paper; returns it or the field errors."""
    errors: dict[str, str] = {}
    type_code = values.get("type_code", "").strip()
    title = values.get("title", "").strip()
    if not type_code:
        errors["type_code"] = t("Chọn loại giấy tờ.", "Choose the type of paper.")
    if not title:
        errors["title"] = t("Nhập tên giấy tờ.", "Enter a name for the paper.")
    elif len(title) > 255:
        errors["title"] = t("Tên tối đa 255 ký tự.", "At most 255 characters.")
    number = values.get("number", "").strip() or None
    if number and len(number) > 64:
        errors["number"] = t("Số hiệu tối đa 64 ký tự.", "At most 64 characters.")
    issuer = values.get("issuer", "").strip() or None
    if issuer and len(issuer) > 255:
        errors["issuer"] = t("Tối đa 255 ký tự.", "At most 255 characters.")
    issued_on = _date(values.get("issued_on", "").strip(), "issued_on", t, errors)
    expires_on = _date(values.get("expires_on", "").strip(), "expires_on", t, errors)
    if issued_on and expires_on and expires_on < issued_on:
        errors["expires_on"] = t(
            "Ngày hết hạn không được trước ngày cấp.", "The expiry date is before the issue date."
        )
    if errors:
        return None, errors
    try:
        return (
            DocumentCreate(
                type_code=type_code,
                title=title,
                number=number,
                issuer=issuer,
                issued_on=issued_on,
                expires_on=expires_on,
            ),
            {},
        )
    except ValidationError:
        return None, {"type_code": t("Chọn loại giấy tờ.", "Choose the type of paper.")}


def file_error(exc: KhoError, t: Texts) -> str:
    title, detail = t.error(exc)
    return f"{title}. {detail}" if detail else title


def _raise_for_file(exc: KhoError, t: Texts, values: Mapping[str, str]) -> None:
    raise UploadFormInvalid({FILE_FIELD: file_error(exc, t)}, values) from exc


# -- the two transports -----------------------------------------------------------------------


def fields_from_header(header: str | None) -> dict[str, str]:
    if not header:
        return {}
    if len(header) > 16 * 1024:
        raise InvalidForm(detail_en="X-Upload-Fields is too long.")
    return {k: v[0] for k, v in parse_qs(header, keep_blank_values=True).items() if v}


class MultipartUpload:
    """Reads a multipart form up to its file part: fields first, then the file as a stream."""

    def __init__(self, chunks: Iterator[bytes], content_type: str | None) -> None:
        self.reader = MultipartReader(chunks, boundary_of(content_type))
        self.incoming = Incoming()

    def until_file(self) -> bool:
        """Read the fields before the file; True when positioned at a chosen file."""
        while True:
            part = self.reader.next_part()
            if part is None:
                return False
            if part.filename is None:
                if part.name in self.incoming.fields:
                    self.reader.read_field()
                    continue
                self.incoming.fields[part.name] = self.reader.read_field()
                continue
            if part.name != FILE_FIELD:
                continue
            if not part.filename:
                # No file chosen: browsers still send an empty part.
                return False
            self.incoming.filename = part.filename
            return True

    def file_chunks(self) -> Iterator[bytes]:
        return self.reader.iter_part()

    def finish(self) -> None:
        with suppress(InvalidForm):
            self.reader.drain()


# -- the three uploads ----------------------------------------------------------------------------


def _committed_first(session: Session) -> None:
    """Commit what the page wrote so far (see the module docstring)."""
    session.commit()


def upload_new(
    *,
    session: Session,
    documents: DocumentService,
    owner_id: uuid.UUID,
    values: Mapping[str, str],
    filename: str | None,
    chunks: Iterator[bytes] | None,
    t: Texts,
) -> UploadResult:
    data, errors = document_fields(values, t)
    if chunks is None:
        errors[FILE_FIELD] = t("Chọn tệp cần tải lên.", "Choose a file to upload.")
    if errors or data is None or chunks is None:
        raise UploadFormInvalid(errors, values)
    _committed_first(session)
    try:
        document = documents.create(owner_id, data)
    except UnknownDocumentType:
        raise UploadFormInvalid(
            {"type_code": t("Loại giấy tờ không có trong danh mục.", "Unknown type of paper.")},
            values,
        ) from None
    session.commit()
    document_id = document.id
    try:
        return documents.upload(owner_id, document_id, chunks, filename=filename, actor_id=owner_id)
    except BaseException as exc:
        session.rollback()
        with suppress(Exception):
            documents.delete(owner_id, document_id)
            session.commit()
        if isinstance(exc, _FILE_ERRORS):
            _raise_for_file(exc, t, values)
        raise


def upload_version(
    *,
    session: Session,
    documents: DocumentService,
    owner_id: uuid.UUID,
    document_id: uuid.UUID,
    filename: str | None,
    chunks: Iterator[bytes] | None,
    t: Texts,
) -> UploadResult:
    if chunks is None:
        raise UploadFormInvalid(
            {FILE_FIELD: t("Chọn tệp cần tải lên.", "Choose a file to upload.")}, {}
        )
    documents.get(owner_id, document_id)
    _committed_first(session)
    try:
        return documents.upload(owner_id, document_id, chunks, filename=filename, actor_id=owner_id)
    except _FILE_ERRORS as exc:
        session.rollback()
        _raise_for_file(exc, t, {})
        raise


@dataclass(frozen=True)
class DeskPost:
    agency_id: uuid.UUID
    official_id: uuid.UUID
    official_account: uuid.UUID
    roles: frozenset[str]


def desk_fields(
    values: Mapping[str, str], t: Texts
) -> tuple[DocumentCreate | None, dict[str, str]]:
    data, errors = document_fields(values, t)
    pin = values.get("personal_id", "").strip()
    if not pin.isdigit() or len(pin) != 12:
        errors["personal_id"] = t(
            "Số định danh cá nhân gồm đúng 12 chữ số.", "The personal ID is exactly 12 digits."
        )
    else:
        try:
            validate_personal_id(pin)
        except KhoError:
            errors["personal_id"] = t(
                "Số định danh cá nhân không hợp lệ.", "Not a valid personal ID number."
            )
    return (None if errors else data), errors


def upload_at_desk(
    *,
    session: Session,
    issuance: IssuanceService,
    documents: DocumentService,
    post: DeskPost,
    values: Mapping[str, str],
    filename: str | None,
    chunks: Iterator[bytes] | None,
    t: Texts,
) -> UploadResult:
    if "receptionist" not in post.roles:
        raise Forbidden("Cần vai trò tiếp nhận.", "The receptionist role is required.")
    data, errors = desk_fields(values, t)
    if chunks is None:
        errors[FILE_FIELD] = t("Chọn tệp bản quét.", "Choose the scan file.")
    if errors or data is None or chunks is None:
        raise UploadFormInvalid(errors, values)
    _committed_first(session)
    try:
        document = issuance.open_at_desk(
            agency_id=post.agency_id,
            official_id=post.official_id,
            official_account=post.official_account,
            subject_personal_id=values["personal_id"].strip(),
            document=data,
        )
    except AccountNotFound:
        session.rollback()
        raise UploadFormInvalid(
            {
                "personal_id": t(
                    "Không tìm thấy công dân có số định danh này trong Kho. Công dân cần đăng "
                    "nhập Kho bằng VNeID ít nhất một lần.",
                    "No Kho account has this personal ID. The citizen must sign in to Kho "
                    "with VNeID once first.",
                )
            },
            values,
        ) from None
    except UnknownDocumentType:
        session.rollback()
        raise UploadFormInvalid(
            {"type_code": t("Loại giấy tờ không có trong danh mục.", "Unknown type of paper.")},
            values,
        ) from None
    owner_id, document_id = document.owner_id, document.id
    session.commit()
    try:
        return issuance.upload_scan(post.agency_id, document_id, chunks, filename=filename)
    except BaseException as exc:
        session.rollback()
        with suppress(Exception):
            documents.delete(owner_id, document_id)
            session.commit()
        if isinstance(exc, _FILE_ERRORS):
            _raise_for_file(exc, t, values)
        raise


def check_csrf(expected: str, supplied: str | None) -> None:
    if not supplied or not hmac.compare_digest(expected.encode(), supplied.encode()):
        raise CsrfFailed()
