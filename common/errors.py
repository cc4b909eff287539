"""The one error base of Kho.

Domain code raises subclasses of :class:`KhoError`; ``api/errors.py`` turns every one of them into
an RFC 9457 problem+json response in a single place. A subclass fixes a stable machine-readable
``code`` (clients switch on it, so it never changes once released), the HTTP status it means, and
a title in Vietnamese and English. ``detail`` arguments are shown to the caller, so they must never
carry secrets or another person's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class KhoError(Exception):
    """Base of every error Kho reports to a caller."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title_vi: ClassVar[str] = "Lỗi hệ thống"
    title_en: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail_vi: str | None = None,
        detail_en: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail_en or detail_vi or self.title_en)
        self.detail_vi = detail_vi
        self.detail_en = detail_en
        self.extra: dict[str, Any] = dict(extra or {})


class NotFound(KhoError):
    code = "not_found"
    status = 404
    title_vi = "Không tìm thấy"
    title_en = "Not found"


class InvalidInput(KhoError):
    code = "invalid_input"
    status = 422
    title_vi = "Dữ liệu không hợp lệ"
    title_en = "Invalid input"


class Conflict(KhoError):
    code = "conflict"
    status = 409
    title_vi = "Xung đột dữ liệu"
    title_en = "Conflict"


class Unauthenticated(KhoError):
    code = "unauthenticated"
    status = 401
    title_vi = "Chưa xác thực"
    title_en = "Authentication required"


class Forbidden(KhoError):
    code = "forbidden"
    status = 403
    title_vi = "Không có quyền"
    title_en = "Forbidden"


class ServiceUnavailable(KhoError):
    code = "service_unavailable"
    status = 503
    title_vi = "Dịch vụ tạm thời không sẵn sàng"
    title_en = "Service temporarily unavailable"


class ConfigurationError(KhoError):
    """A setting is missing or wrong; the message names the environment variable."""

    code = "configuration_error"
    status = 500
    title_vi = "Cấu hình không hợp lệ"
    title_en = "Invalid configuration"
