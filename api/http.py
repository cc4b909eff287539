"""Small HTTP header helpers: Range, Content-Disposition (RFC 6266 / RFC 5987)."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_single_range(header: str | None) -> tuple[int | None, int | None] | None:
    """``bytes=a-b``, ``bytes=a-`` or ``bytes=-n``; None when absent, several or malformed.

    A server may ignore a Range it does not support (RFC 9110 §14.2), which is what None means:
    the whole representation is sent.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    return (int(first) if first else None, int(last) if last else None)


def content_disposition(filename: str, *, inline: bool = False) -> str:
    ascii_name = (
        unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode() or "download"
    )
    ascii_name = re.sub(r'["\\\r\n;]', "_", ascii_name)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([\w-]+)'[^']*'([^;]+)", re.IGNORECASE)
_FILENAME = re.compile(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"|filename\s*=\s*([^;]+)', re.IGNORECASE)


def filename_from_disposition(header: str | None) -> str | None:
    if not header:
        return None
    star = _FILENAME_STAR.search(header)
    if star:
        charset, value = star.groups()
        try:
            return unquote(value.strip(), encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            return None
    plain = _FILENAME.search(header)
    if plain:
        return (plain.group(1) or plain.group(2) or "").strip() or None
    return None


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return etag in candidates
