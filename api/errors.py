"""Every error leaves Kho as RFC 9457 problem+json, mapped here and nowhere else.

The body always has ``type``, ``title``, ``status``, ``detail``, a stable ``code`` and the
``request_id``; the language follows ``Accept-Language`` (Vietnamese unless English is preferred).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from api.i18n import prefers_english
from common.errors import KhoError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger("kho.errors")

_HTTP_CODES: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "Yêu cầu không hợp lệ", "Bad request"),
    401: ("unauthenticated", "Chưa xác thực", "Authentication required"),
    403: ("forbidden", "Không có quyền", "Forbidden"),
    404: ("not_found", "Không tìm thấy", "Not found"),
    405: ("method_not_allowed", "Phương thức không được hỗ trợ", "Method not allowed"),
    406: ("not_acceptable", "Không thể đáp ứng định dạng yêu cầu", "Not acceptable"),
    408: ("request_timeout", "Hết thời gian chờ yêu cầu", "Request timeout"),
    411: ("length_required", "Thiếu độ dài nội dung", "Length required"),
    413: ("payload_too_large", "Nội dung quá lớn", "Payload too large"),
    415: ("unsupported_media_type", "Định dạng không được hỗ trợ", "Unsupported media type"),
    416: ("range_not_satisfiable", "Khoảng dữ liệu không hợp lệ", "Range not satisfiable"),
    422: ("invalid_input", "Dữ liệu không hợp lệ", "Invalid input"),
    429: ("too_many_requests", "Quá nhiều yêu cầu", "Too many requests"),
}


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    title_vi: str,
    title_en: str,
    detail_vi: str | None = None,
    detail_en: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    english = prefers_english(request.headers.get("accept-language"))
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title_en if english else title_vi,
        "status": status,
        "code": code,
        "detail": (detail_en or detail_vi or title_en)
        if english
        else (detail_vi or detail_en or title_vi),
        "request_id": getattr(request.state, "request_id", None),
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    response_headers = {"Content-Language": "en" if english else "vi"}
    response_headers.update(headers or {})
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=response_headers
    )


async def _kho_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KhoError)
    if exc.status >= 500:
        log.error("request_failed", code=exc.code, error_type=type(exc).__name__)
    headers = {"Retry-After": "5"} if exc.status == 503 else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="kho"'}
    return problem(
        request,
        status=exc.status,
        code=exc.code,
        title_vi=exc.title_vi,
        title_en=exc.title_en,
        detail_vi=exc.detail_vi,
        detail_en=exc.detail_en,
        extra=exc.extra,
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "location": [str(part) for part in err.get("loc", ())],
            "message": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()[:20]
    ]
    return problem(
        request,
        status=422,
        code="invalid_input",
        title_vi="Dữ liệu không hợp lệ",
        title_en="Invalid input",
        detail_vi="Một số trường không hợp lệ; xem danh sách lỗi.",
        detail_en="Some fields are invalid; see the list of errors.",
        extra={"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title_vi, title_en = _HTTP_CODES.get(
        exc.status_code, ("http_error", "Lỗi yêu cầu", "Request error")
    )
    return problem(
        request,
        status=exc.status_code,
        code=code,
        title_vi=title_vi,
        title_en=title_en,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the request carried (PostgreSQL: a NUL character in text, a
    # number out of a column's range): the caller's input, not a fault of Kho. SQLite accepts
    # such values, so this was a 500 on PostgreSQL only (found by bench/fuzz.py).
    assert isinstance(exc, DataError)
    log.warning("data_refused_by_database", error_type=type(exc.orig).__name__)
    return problem(
        request,
        status=422,
        code="invalid_input",
        title_vi="Dữ liệu không hợp lệ",
        title_en="Invalid input",
        detail_vi="Có giá trị không thể lưu (ví dụ ký tự NUL, hoặc số vượt giới hạn).",
        detail_en="A value cannot be stored as given (such as a NUL character, or a number "
        "out of range).",
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Registered for OperationalError itself (not left to the catch-all): Starlette re-raises
    # what reaches the catch-all to the server, which would log a traceback per outage request.
    log.warning("database_unavailable", error_type=type(exc).__name__)
    return problem(
        request,
        status=503,
        code="database_unavailable",
        title_vi="Cơ sở dữ liệu tạm thời không sẵn sàng",
        title_en="Database temporarily unavailable",
        headers={"Retry-After": "5"},
    )


async def _client_disconnected(request: Request, exc: Exception) -> JSONResponse:
    # The client went away while its body was being read: nobody reads this answer, and it is
    # not a fault of Kho (the request's unit of work rolls back; nothing is stored).
    log.info("client_disconnected")
    return problem(
        request,
        status=400,
        code="client_disconnected",
        title_vi="Máy khách đã ngắt kết nối",
        title_en="Client disconnected",
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The exception text and its traceback may hold personal data, SQL parameters or secrets:
    # log the type and where it was raised only.
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
    log.error("unhandled_error", error_type=type(exc).__name__, where=where)
    return problem(
        request,
        status=500,
        code="internal_error",
        title_vi="Lỗi hệ thống",
        title_en="Internal error",
        detail_vi="Đã có lỗi không mong muốn; vui lòng thử lại sau.",
        detail_en="An unexpected error occurred; please try again later.",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KhoError, _kho_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    app.add_exception_handler(Exception, unexpected_error)
