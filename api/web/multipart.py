"""A small streaming ``multipart/form-data`` reader for the no-JavaScript upload forms.

Why not Starlette's form parsing: it needs ``python-multipart`` and spools every file part above
1 MB to a temporary file, i.e. plaintext on disk, which Kho never allows. This reader pulls the
request body chunk by chunk (``api.routers.documents.body_chunks``) and hands the file part to
``DocumentService.upload`` as an iterator: memory is bounded by one body chunk plus the
delimiter length, and nothing is written anywhere but the encrypted object store.

Rules kept deliberately narrow (browsers send exactly this): RFC 7578 parts, each with a
``Content-Disposition: form-data; name=...`` header; text fields are small (``max_field_bytes``);
at most ``max_parts`` parts; headers of a part at most ``max_header_bytes``. Anything else is an
``InvalidForm`` error. The caller decides which fields must come before the file part (the CSRF
token and the metadata do: browsers send fields in document order).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from common.errors import InvalidInput

MAX_BOUNDARY = 200
_BOUNDARY_CHARS = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,200}$")
_PARAM = re.compile(r';\s*([A-Za-z0-9_*\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class InvalidForm(InvalidInput):
    code = "invalid_form"
    status = 400
    title_vi = "Biểu mẫu gửi lên không hợp lệ"
    title_en = "The submitted form is malformed"


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type, or InvalidForm."""
    value = content_type or ""
    media, _, params = value.partition(";")
    if media.strip().lower() != "multipart/form-data":
        raise InvalidForm(detail_en="Expected multipart/form-data.")
    for name, raw in _PARAM.findall(";" + params):
        if name.lower() == "boundary":
            boundary = str(raw).strip()
            if boundary.startswith('"') and boundary.endswith('"'):
                boundary = boundary[1:-1]
            if _BOUNDARY_CHARS.match(boundary) and not boundary.endswith(" "):
                return boundary.encode("ascii")
    raise InvalidForm(detail_en="The multipart boundary is missing or invalid.")


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None


def _unquote_param(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _parse_part_headers(block: bytes) -> Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise InvalidForm(detail_en="A part header has no colon.")
        key = key.strip().lower()
        if key == "content-disposition":
            kind, _, params = value.partition(";")
            if kind.strip().lower() != "form-data":
                raise InvalidForm(detail_en="A part is not form-data.")
            for raw_name, raw in _PARAM.findall(";" + params):
                pname = raw_name.lower()
                if pname == "name":
                    name = _unquote_param(raw)
                elif pname == "filename" and filename is None:
                    filename = _unquote_param(raw)
                elif pname == "filename*":
                    encoded = _unquote_param(raw)
                    charset, _, rest = encoded.partition("'")
                    _lang, _, text = rest.partition("'")
                    if charset.lower() == "utf-8":
                        filename = unquote(text, encoding="utf-8", errors="replace")
        elif key == "content-type":
            content_type = value.strip()
    if name is None:
        raise InvalidForm(detail_en="A part has no name.")
    return Part(name=name, filename=filename, content_type=content_type)


class MultipartReader:
    """Reads parts one after the other from an iterator of body chunks (blocking, so run it
    in a worker thread)."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        boundary: bytes,
        *,
        max_parts: int = 40,
        max_field_bytes: int = 16 * 1024,
        max_header_bytes: int = 8 * 1024,
    ) -> None:
        if not 1 <= len(boundary) <= MAX_BOUNDARY:
            raise InvalidForm()
        self._chunks = iter(chunks)
        self._delimiter = b"\r\n--" + boundary
        # A CRLF is put in front so that the first delimiter looks like every other one.
        self._buffer = bytearray(b"\r\n")
        self._eof = False
        self._in_part = False
        self._done = False
        self._parts = 0
        self.max_parts = max_parts
        self.max_field_bytes = max_field_bytes
        self.max_header_bytes = max_header_bytes
        self._skip_preamble()

    def _fill(self) -> bool:
        if self._eof:
            return False
        for chunk in self._chunks:
            if chunk:
                self._buffer += chunk
                return True
        self._eof = True
        return False

    def _skip_preamble(self) -> None:
        while True:
            index = self._buffer.find(self._delimiter)
            if index >= 0:
                del self._buffer[:index]
                return
            keep = len(self._delimiter) - 1
            if len(self._buffer) > keep:
                del self._buffer[: len(self._buffer) - keep]
            if len(self._buffer) > 64 * 1024 or not self._fill():
                raise InvalidForm(detail_en="No multipart delimiter found.")

    def _need(self, size: int) -> None:
        while len(self._buffer) < size:
            if not self._fill():
                raise InvalidForm(detail_en="The form ended too early.")

    def next_part(self) -> Part | None:
        """Move to the next part (skipping what is left of the current one); None at the end."""
        if self._done:
            return None
        if self._in_part:
            for _ in self.iter_part():
                pass
        # The buffer starts with the delimiter now.
        self._need(len(self._delimiter) + 2)
        del self._buffer[: len(self._delimiter)]
        if self._buffer[:2] == b"--":
            self._done = True
            return None
        # Optional transport padding, then CRLF.
        while True:
            self._need(2)
            if self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
                break
            if bytes(self._buffer[:1]) in (b" ", b"\t"):
                del self._buffer[:1]
                continue
            raise InvalidForm(detail_en="Bad delimiter line.")
        self._parts += 1
        if self._parts > self.max_parts:
            raise InvalidForm(detail_en="Too many parts.")
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buffer) > self.max_header_bytes or not self._fill():
                raise InvalidForm(detail_en="Part headers too long or cut off.")
        if end > self.max_header_bytes:
            raise InvalidForm(detail_en="Part headers too long.")
        block = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        self._in_part = True
        return _parse_part_headers(block)

    def iter_part(self) -> Iterator[bytes]:
        """The current part's bytes, as they arrive; stops at the next delimiter."""
        if not self._in_part:
            return
        keep = len(self._delimiter) - 1
        while True:
            index = self._buffer.find(self._delimiter)
            if index >= 0:
                if index:
                    out = bytes(self._buffer[:index])
                    del self._buffer[:index]
                    self._in_part = False
                    yield out
                else:
                    self._in_part = False
                return
            if len(self._buffer) > keep:
                out = bytes(self._buffer[: len(self._buffer) - keep])
                del self._buffer[: len(self._buffer) - keep]
                yield out
            if not self._fill():
                raise InvalidForm(detail_en="The form ended inside a part.")

    def read_field(self) -> str:
        """The current part as text, bounded by ``max_field_bytes``."""
        data = bytearray()
        for chunk in self.iter_part():
            data += chunk
            if len(data) > self.max_field_bytes:
                raise InvalidForm(detail_en="A form field is too long.")
        return data.decode("utf-8", "replace")

    def drain(self) -> None:
        """Read (and drop) everything up to the end of the form."""
        while self.next_part() is not None:
            pass
