"""Errors of the consent domain, each with a stable code."""

from __future__ import annotations

from common.errors import Conflict, Forbidden, InvalidInput, NotFound


class ConsentRequestNotFound(NotFound):
    code = "consent_request_not_found"
    title_vi = "Không tìm thấy yêu cầu chia sẻ"
    title_en = "Consent request not found"


class SubjectNotFound(NotFound):
    code = "subject_not_found"
    title_vi = "Không tìm thấy chủ thể dữ liệu"
    title_en = "No account for this person"


class GrantNotFound(NotFound):
    code = "grant_not_found"
    title_vi = "Không tìm thấy sự đồng ý"
    title_en = "Grant not found"


class DocumentNotInGrant(NotFound):
    code = "document_not_in_grant"
    title_vi = "Giấy tờ này không nằm trong phạm vi đã đồng ý"
    title_en = "This document is not covered by the grant"


class GrantRevoked(Forbidden):
    code = "grant_revoked"
    title_vi = "Chủ thể đã thu hồi sự đồng ý"
    title_en = "The owner revoked this grant"


class GrantExpired(Forbidden):
    code = "grant_expired"
    title_vi = "Sự đồng ý đã hết hạn"
    title_en = "The grant has expired"


class GrantExhausted(Forbidden):
    code = "grant_exhausted"
    title_vi = "Đã dùng hết số lần truy cập được đồng ý"
    title_en = "The grant has been used up"


class RequestNotPending(Conflict):
    code = "consent_request_not_pending"
    title_vi = "Yêu cầu không còn chờ quyết định"
    title_en = "The request is no longer awaiting a decision"


class RequestLapsed(Conflict):
    code = "consent_request_lapsed"
    title_vi = "Yêu cầu đã hết hạn trả lời"
    title_en = "The request lapsed"


class InvalidDecision(InvalidInput):
    code = "invalid_decision"
    title_vi = "Quyết định không hợp lệ"
    title_en = "Invalid decision"


class InvalidConsentRequest(InvalidInput):
    code = "invalid_consent_request"
    title_vi = "Yêu cầu chia sẻ không hợp lệ"
    title_en = "Invalid consent request"


class NotAnAgencyClient(Forbidden):
    code = "not_an_agency_client"
    title_vi = "Ứng dụng không gắn với cơ quan nào"
    title_en = "The client is not bound to an agency"


class StatutoryAccessNotFound(NotFound):
    code = "statutory_access_not_found"
    title_vi = "Không tìm thấy yêu cầu truy cập theo quy định pháp luật"
    title_en = "Statutory access not found"


class NotAnOfficial(Forbidden):
    code = "not_an_official"
    title_vi = "Tài khoản không phải cán bộ của cơ quan"
    title_en = "The account is not an official of that agency"


class SecondApproverRequired(Forbidden):
    code = "second_approver_required"
    title_vi = "Cần một người phê duyệt khác người đề nghị"
    title_en = "A second official, not the requester, must approve"


class StatutoryAccessNotApproved(Forbidden):
    code = "statutory_access_not_approved"
    title_vi = "Yêu cầu truy cập chưa được phê duyệt hoặc đã hết hạn"
    title_en = "The statutory access is not approved, or has expired"


class NotTheRequestingOfficial(Forbidden):
    code = "not_the_requesting_official"
    title_vi = "Chỉ cán bộ đã đề nghị truy cập mới được xem giấy tờ"
    title_en = "Only the official who asked for this access may read under it"
    detail_vi = (
        "Truy cập theo quy định pháp luật gắn với cán bộ xử lý đã đề nghị, khi cán bộ đó vẫn "
        "giữ vai trò xử lý."
    )
    detail_en = (
        "A statutory access is bound to the processing official who asked for it, while they "
        "still hold a processing role."
    )


class NotificationNotFound(NotFound):
    code = "notification_not_found"
    title_vi = "Không tìm thấy thông báo"
    title_en = "Notification not found"
