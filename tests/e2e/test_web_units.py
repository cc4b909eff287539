"""Small, browser-free checks of the pages' building blocks: the streaming multipart reader,
the redirect-target filter, the language choice and the security headers.

(They live here because the pages' tests do; they would sit as well under ``tests/unit``.)
"""

from __future__ import annotations

import random

import pytest

from api.web.i18n import Texts, pick_language
from api.web.multipart import InvalidForm, MultipartReader, boundary_of
from api.web.routes import safe_next
from api.web.security import content_security_policy
from api.web.uploads import MultipartUpload

BOUNDARY = b"----WebKitFormBoundaryQm9yYm9yWQ"


def form(fields: list[tuple[str, str]], data: bytes, filename: str = "giấy tờ.pdf") -> bytes:
    out = b"preamble that is ignored\r\n"
    for name, value in fields:
        out += b"--" + BOUNDARY + b"\r\n"
        out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    out += b"--" + BOUNDARY + b"\r\n"
    out += f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
    out += b"Content-Type: application/pdf\r\n\r\n" + data + b"\r\n"
    out += b"--" + BOUNDARY + b"--\r\n"
    return out


def cut(body: bytes, rng: random.Random) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randrange(1, 40))))
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def read_all(reader: MultipartReader) -> None:
    while reader.next_part() is not None:
        reader.read_field()


def read(chunks: list[bytes]) -> tuple[dict[str, str], str | None, bytes]:
    upload = MultipartUpload(iter(chunks), "multipart/form-data; boundary=" + BOUNDARY.decode())
    chosen = upload.until_file()
    data = b"".join(upload.file_chunks()) if chosen else b""
    upload.finish()
    return upload.incoming.fields, upload.incoming.filename, data


def test_the_reader_streams_any_cut_of_the_body() -> None:
    rng = random.Random(20261129)
    for trial in range(200):
        data = rng.randbytes(rng.randrange(0, 40_000))
        if trial % 5 == 0:
            # Content that looks like a delimiter, but is not one.
            data = b"\r\n--" + BOUNDARY[:-1] + data + b"\r\n--" + BOUNDARY[:10]
        body = form([("csrf", "token-1"), ("title", "Giấy khai sinh")], data)
        fields, filename, got = read(cut(body, rng))
        assert fields == {"csrf": "token-1", "title": "Giấy khai sinh"}
        assert filename == "giấy tờ.pdf"
        assert got == data


def test_no_file_chosen_and_rfc5987_names() -> None:
    body = form([("csrf", "t")], b"", filename="")
    fields, filename, data = read([body])
    assert fields == {"csrf": "t"}
    assert filename is None
    assert data == b""
    starred = (
        b"--" + BOUNDARY + b"\r\n"
        b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''gi%E1%BA%A5y.pdf\r\n"
        b"\r\n%PDF\r\n--" + BOUNDARY + b"--\r\n"
    )
    _fields, filename, data = read([starred])
    assert filename == "giấy.pdf"
    assert data == b"%PDF"


@pytest.mark.parametrize(
    "body",
    [
        b"no delimiter at all",
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue',
        b"--" + BOUNDARY + b"\r\nX-Nothing: here\r\n\r\nvalue\r\n--" + BOUNDARY + b"--",
        b"--" + BOUNDARY + b'\r\nContent-Disposition: attachment; name="a"\r\n\r\nv\r\n',
    ],
)
def test_malformed_forms_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidForm):
        read_all(MultipartReader([body], BOUNDARY))


def test_limits_on_fields_and_parts() -> None:
    big = form([("title", "x" * 20_000)], b"%PDF")
    reader = MultipartReader([big], BOUNDARY, max_field_bytes=16 * 1024)
    assert reader.next_part() is not None
    with pytest.raises(InvalidForm):
        reader.read_field()
    many = form([(f"f{i}", "v") for i in range(50)], b"%PDF")
    with pytest.raises(InvalidForm):
        read_all(MultipartReader([many], BOUNDARY, max_parts=40))


def test_boundary_parsing() -> None:
    assert boundary_of('multipart/form-data; boundary="abc def"') == b"abc def"
    for bad in (None, "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"):
        with pytest.raises(InvalidForm):
            boundary_of(bad)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("/web/store", "/web/store"),
        ("/web/account#erase", "/web/account#erase"),
        ("/web", "/web"),
        (None, "/web/"),
        ("https://evil.example/web/", "/web/"),
        ("//evil.example/web/", "/web/"),
        ("/web//evil.example", "/web/"),
        ("/web/\\evil.example", "/web/"),
        ("/v1/me", "/web/"),
        ("/web/\r\nSet-Cookie: x=y", "/web/"),
    ],
)
def test_only_the_pages_are_redirect_targets(wanted: str | None, expected: str) -> None:
    assert safe_next(wanted) == expected


def test_language_choice() -> None:
    assert pick_language(None, None) == ("vi", False)
    assert pick_language("en", None) == ("en", True)
    assert pick_language(None, "en") == ("en", False)
    assert pick_language("vi", "en") == ("vi", True)
    assert pick_language("fr", None) == ("vi", False)
    assert Texts("vi").size(1536) == "1,5 KB"
    assert Texts("en").size(1536) == "1.5 KB"


def test_the_content_security_policy_is_strict() -> None:
    policy = content_security_policy()
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "form-action 'self'" in policy
