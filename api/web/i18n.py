"""Language of the pages: Vietnamese unless the person chose English (``?lang=en`` or the
``lang`` cookie that choice sets). Templates write both texts side by side, Vietnamese first:
``{{ t("Giấy tờ của tôi", "My papers") }}``; labels of stable codes live here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Literal

from common.errors import KhoError

Lang = Literal["vi", "en"]
LANG_COOKIE = "lang"
VIETNAM = dt.timezone(dt.timedelta(hours=7), "ICT")


def pick_language(query_value: str | None, cookie_value: str | None) -> tuple[Lang, bool]:
    """The page language and whether the ``lang`` cookie must be (re)set."""
    if query_value in ("vi", "en"):
        return ("en" if query_value == "en" else "vi"), query_value != cookie_value
    return ("en" if cookie_value == "en" else "vi"), False


class Texts:
    """Everything language-dependent a template needs."""

    def __init__(self, lang: Lang) -> None:
        self.lang: Lang = lang

    @property
    def english(self) -> bool:
        return self.lang == "en"

    def __call__(self, vi: str, en: str) -> str:
        return en if self.english else vi

    def label(self, table: dict[str, tuple[str, str]], code: object) -> str:
        key = str(code.value if hasattr(code, "value") else code)
        pair = table.get(key)
        if pair is None:
            return key
        return pair[1] if self.english else pair[0]

    # -- formatting -----------------------------------------------------------------------------

    def when(self, value: dt.datetime | None) -> str:
        if value is None:
            return "—"
        local = value.astimezone(VIETNAM)
        return local.strftime("%d/%m/%Y %H:%M")

    def day(self, value: dt.date | dt.datetime | None) -> str:
        if value is None:
            return "—"
        if isinstance(value, dt.datetime):
            value = value.astimezone(VIETNAM).date()
        return value.strftime("%d/%m/%Y")

    def size(self, n: int | None) -> str:
        if n is None:
            return "—"
        units = ["B", "KB", "MB", "GB"]
        value = float(n)
        unit = units[0]
        for unit in units:
            if value < 1024 or unit == units[-1]:
                break
            value /= 1024
        text = f"{value:.0f}" if unit == "B" else f"{value:.1f}"
        return (text if self.english else text.replace(".", ",")) + " " + unit

    def error(self, exc: KhoError) -> tuple[str, str | None]:
        """Title and detail of an error in the page language (no English detail on a
        Vietnamese page: the Vietnamese title says it)."""
        if self.english:
            return exc.title_en, exc.detail_en or exc.detail_vi
        return exc.title_vi, exc.detail_vi

    def code_title(self, code: str | None) -> str:
        """The title of a stable error code (denial reasons in the access log)."""
        if not code:
            return ""
        error = error_classes().get(code)
        if error is None:
            return code
        return error.title_en if self.english else error.title_vi


def _all_errors(cls: type[KhoError]) -> Iterator[type[KhoError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_errors(sub)


def error_classes() -> dict[str, type[KhoError]]:
    """Every KhoError subclass loaded in the process, by code (first definition wins)."""
    found: dict[str, type[KhoError]] = {}
    for cls in _all_errors(KhoError):
        found.setdefault(cls.code, cls)
    return found


ASSURANCE: dict[str, tuple[str, str]] = {
    "self_declared": ("Tự khai", "Self-declared"),
    "digitised": ("Đã số hoá tại quầy", "Digitised at a desk"),
    "issued": ("Do cơ quan cấp", "Issued by an agency"),
}

REQUEST_STATUS: dict[str, tuple[str, str]] = {
    "pending": ("Chờ bạn quyết định", "Awaiting your decision"),
    "granted": ("Đã đồng ý", "Granted"),
    "partially_granted": ("Đồng ý một phần", "Partly granted"),
    "denied": ("Đã từ chối", "Refused"),
    "lapsed": ("Đã hết hạn trả lời", "Lapsed"),
    "withdrawn": ("Cơ quan đã rút", "Withdrawn"),
}

OFFICIAL_REQUEST_STATUS: dict[str, tuple[str, str]] = {
    **REQUEST_STATUS,
    "pending": ("Chờ công dân quyết định", "Awaiting the citizen"),
}

GRANT_STATUS: dict[str, tuple[str, str]] = {
    "active": ("Đang hiệu lực", "Active"),
    "revoked": ("Đã thu hồi", "Revoked"),
    "expired": ("Đã hết hạn", "Expired"),
    "exhausted": ("Đã dùng hết lượt", "Used up"),
}

DELEGATION_STATUS: dict[str, tuple[str, str]] = {
    "pending": ("Chưa bắt đầu", "Not started"),
    "active": ("Đang hiệu lực", "Active"),
    "expired": ("Đã hết hạn", "Expired"),
    "revoked": ("Đã chấm dứt", "Ended"),
}

DELEGATION_SCOPE: dict[str, tuple[str, str]] = {
    "documents:read": ("Xem giấy tờ", "Read papers"),
    "documents:write": ("Thêm, sửa giấy tờ", "Add and change papers"),
    "consents:decide": ("Quyết định chia sẻ", "Decide on sharing"),
    "access_log:read": ("Xem nhật ký truy cập", "Read the access log"),
}

DELEGATION_KIND: dict[str, tuple[str, str]] = {
    "delegation": ("Uỷ quyền", "Delegation"),
    "guardian": ("Người giám hộ", "Guardian"),
}

ACTOR_KIND: dict[str, tuple[str, str]] = {
    "agency": ("Cơ quan", "Agency"),
    "owner": ("Bạn", "You"),
    "delegate": ("Người được uỷ quyền", "Your delegate"),
    "official": ("Cán bộ", "Official"),
    "operator": ("Quản trị viên", "Operator"),
    "system": ("Hệ thống", "System"),
}

ACTION: dict[str, tuple[str, str]] = {
    "consent.request": ("Gửi yêu cầu chia sẻ", "Asked for papers"),
    "consent.read": ("Xem yêu cầu chia sẻ", "Read a request"),
    "consent.decide": ("Quyết định chia sẻ", "Decision on sharing"),
    "consent.revoke": ("Thu hồi đồng ý", "Consent withdrawn"),
    "grant.documents": ("Xem danh sách giấy tờ được chia sẻ", "Listed the shared papers"),
    "document.fetch": ("Tải giấy tờ", "Fetched a paper"),
    "statutory.fetch": ("Tải giấy tờ theo quy định pháp luật", "Fetched a paper under the law"),
    "reuse_plan.read": ("Kiểm tra giấy tờ cho thủ tục", "Checked papers for a procedure"),
    # A delegate acting for the owner (X-On-Behalf-Of): "Who" already says it was the delegate.
    "delegate.list": ("Xem danh sách giấy tờ thay bạn", "Listed your papers for you"),
    "delegate.metadata": ("Xem thông tin giấy tờ thay bạn", "Read a paper's details for you"),
    "delegate.versions": (
        "Xem các phiên bản giấy tờ thay bạn",
        "Listed a paper's versions for you",
    ),
    "delegate.download": ("Tải giấy tờ về thay bạn", "Downloaded a paper for you"),
    "delegate.create": ("Thêm giấy tờ thay bạn", "Added a paper for you"),
    "delegate.upload": ("Tải lên phiên bản mới thay bạn", "Uploaded a new version for you"),
    "delegate.access_log": ("Xem nhật ký truy cập thay bạn", "Read your access log for you"),
    "delegate.access_log_proof": (
        "Xem bằng chứng nhật ký truy cập thay bạn",
        "Read your access-log proof for you",
    ),
}

DECISION: dict[str, tuple[str, str]] = {
    "allowed": ("Được phép", "Allowed"),
    "denied": ("Bị từ chối", "Refused"),
}

ROLE: dict[str, tuple[str, str]] = {
    "receptionist": ("Tiếp nhận", "Receptionist"),
    "processor": ("Xử lý", "Processor"),
    "approver": ("Phê duyệt", "Approver"),
    "agency_admin": ("Quản trị cơ quan", "Agency administrator"),
}

ACCESS_MODE: dict[str, tuple[str, str]] = {
    "once": ("Một lần", "Once"),
    "repeated": ("Nhiều lần", "Repeatedly"),
}
