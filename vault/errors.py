"""Errors raised by the vault.

A flat module of :class:`~common.errors.KhoError` subclasses; ``api/errors.py`` maps each to an
HTTP problem once. Messages never carry key material, plaintext or which integrity check failed.
"""

from __future__ import annotations

from common.errors import Conflict, Forbidden, InvalidInput, KhoError, NotFound, ServiceUnavailable


class DecryptionFailed(KhoError):
    """A wrapped key or an encrypted object could not be authenticated and decrypted.

    Raised with one message for every cause (wrong key, wrong context, edited header, flipped
    byte, truncated, extended or reordered segments): telling the causes apart would give an
    attacker an oracle, and an operator learns nothing useful from them that the audit log does
    not already say.
    """

    code = "decryption_failed"
    status = 500
    title_vi = "Không giải mã được dữ liệu"
    title_en = "Decryption failed"


class KeyUnavailable(ServiceUnavailable):
    """A master key version is unknown to the key provider, or the provider cannot be reached."""

    code = "key_unavailable"
    status = 503
    title_vi = "Khóa mã hóa tạm thời không sẵn sàng"
    title_en = "Encryption key unavailable"


class InvalidKeyMaterial(KhoError):
    """A key file or key variable is malformed or unsafe; the message names it, never the key."""

    code = "invalid_key_material"
    status = 500
    title_vi = "Khóa mã hóa không hợp lệ"
    title_en = "Invalid key material"


class DocumentNotFound(NotFound):
    code = "document_not_found"
    title_vi = "Không tìm thấy giấy tờ"
    title_en = "Document not found"


class DocumentHasNoContent(NotFound):
    code = "document_has_no_content"
    title_vi = "Giấy tờ chưa có tệp nội dung"
    title_en = "The document has no content yet"


class UnknownDocumentType(InvalidInput):
    code = "unknown_document_type"
    title_vi = "Loại giấy tờ không có trong danh mục"
    title_en = "Unknown document type"


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    title_vi = "Con trỏ phân trang không hợp lệ"
    title_en = "Invalid pagination cursor"


class ContentTooLarge(KhoError):
    code = "content_too_large"
    status = 413
    title_vi = "Tệp vượt quá dung lượng cho phép"
    title_en = "The file is larger than allowed"


class UnsupportedMediaType(KhoError):
    code = "unsupported_media_type"
    status = 415
    title_vi = "Định dạng tệp không được hỗ trợ (chỉ nhận PDF, JPEG, PNG, TIFF)"
    title_en = "Unsupported file type (PDF, JPEG, PNG and TIFF only)"


class EmptyContent(InvalidInput):
    code = "empty_content"
    title_vi = "Tệp rỗng"
    title_en = "The file is empty"


class RangeNotSatisfiable(KhoError):
    code = "range_not_satisfiable"
    status = 416
    title_vi = "Khoảng dữ liệu yêu cầu không hợp lệ"
    title_en = "Requested range not satisfiable"


class UploadConflict(Conflict):
    code = "upload_conflict"
    title_vi = "Có tải lên khác đang diễn ra cho giấy tờ này"
    title_en = "Another upload to this document is in progress"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"
    title_vi = "Một yêu cầu khác với cùng Idempotency-Key vừa được xử lý"
    title_en = "Another request with this Idempotency-Key was just processed"
    detail_vi = "Gửi lại yêu cầu với cùng khoá để nhận kết quả của yêu cầu kia."
    detail_en = "Send the request again with the same key to get that request's result."


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"
    title_vi = "Khoá Idempotency-Key đã được dùng cho một yêu cầu khác"
    title_en = "The Idempotency-Key was already used for a different request"


class ContentHashMismatch(InvalidInput):
    code = "content_hash_mismatch"
    title_vi = "Nội dung tệp không khớp với mã băm đã ký"
    title_en = "The content does not match the signed SHA-256"


class InvalidIssuerSignature(InvalidInput):
    code = "invalid_issuer_signature"
    title_vi = "Chữ ký của cơ quan cấp không hợp lệ"
    title_en = "The issuing agency's signature does not verify"


class UnknownIssuerKey(InvalidInput):
    code = "unknown_issuer_key"
    title_vi = "Khoá ký không phải của cơ quan này"
    title_en = "The signing key is not registered to this agency"


class NotAllowedToIssue(Forbidden):
    code = "not_allowed_to_issue"
    title_vi = "Cơ quan không có thẩm quyền cấp loại giấy tờ này"
    title_en = "This agency may not issue this document type"


class IssuedDocumentNotFound(NotFound):
    code = "issued_document_not_found"
    title_vi = "Không tìm thấy giấy tờ do cơ quan cấp"
    title_en = "Issued document not found"
