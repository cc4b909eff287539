"""CSRF, origin checks, form bodies and the security headers of every page response.

CSRF: a synchroniser token. Each web session row has its own random ``csrf_secret``; every form
carries it in a hidden ``csrf`` field (the JavaScript upload sends it as ``X-CSRF-Token``), and
every POST/PUT compares it in constant time with the session's. On top of that a request whose
``Origin`` is another origin, or whose ``Sec-Fetch-Site`` says ``cross-site``, is refused before
the token is even looked at; the session cookie is ``SameSite=Lax`` as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from starlette.responses import Response

from common.errors import Forbidden, InvalidInput

MAX_FORM_BYTES = 64 * 1024


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    title_vi = "Biểu mẫu đã hết hạn hoặc không hợp lệ"
    title_en = "The form expired or is not valid"

    def __init__(self) -> None:
        super().__init__(
            "Vì an toàn, yêu cầu này bị từ chối. Hãy tải lại trang rồi thử lại.",
            "For your safety this request was refused. Reload the page and try again.",
        )


class FormTooLarge(InvalidInput):
    code = "form_too_large"
    status = 413
    title_vi = "Biểu mẫu quá lớn"
    title_en = "Form too large"


@dataclass
class Form:
    """A parsed ``application/x-www-form-urlencoded`` body."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        found = self.values.get(name)
        return found[0].strip() if found else default

    def getlist(self, name: str) -> list[str]:
        return [v.strip() for v in self.values.get(name, [])]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_origin(request: Request, public_url: str) -> None:
    """Refuse state-changing requests that come from another site."""
    origin = request.headers.get("origin")
    # ``Referrer-Policy: no-referrer`` makes browsers send ``Origin: null`` on their own
    # same-origin form posts (Fetch, "serializing a request origin"), so "null" proves nothing
    # either way; the CSRF token decides then.
    if origin is not None and origin not in ("null", origin_of(public_url)):
        raise CsrfFailed()
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfFailed()


async def read_urlencoded(request: Request) -> Form:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise InvalidInput(
            "Biểu mẫu phải gửi dạng application/x-www-form-urlencoded.",
            "Expected an application/x-www-form-urlencoded form.",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge()
    return Form(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))


def content_security_policy(form_targets: tuple[str, ...] = ()) -> str:
    form_action = " ".join(("'self'", *form_targets))
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            f"form-action {form_action}",
        )
    )


def apply_security_headers(response: Response, *, https: bool, cacheable: bool = False) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy())
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if https:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    if not cacheable:
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
