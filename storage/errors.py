"""Errors raised by the storage layer.

A flat module of :class:`~common.errors.KhoError` subclasses; other parts of ``storage/`` append
theirs here. Messages name what went wrong, never credentials, endpoints' secrets or object
contents.
"""

from __future__ import annotations

from common.errors import InvalidInput, KhoError, NotFound, ServiceUnavailable


class ObjectNotFound(NotFound):
    code = "object_not_found"
    title_vi = "Không tìm thấy đối tượng lưu trữ"
    title_en = "Stored object not found"


class InvalidObjectKey(InvalidInput):
    code = "invalid_object_key"
    title_vi = "Khóa đối tượng không hợp lệ"
    title_en = "Invalid object key"


class InvalidObjectMetadata(InvalidInput):
    code = "invalid_object_metadata"
    title_vi = "Siêu dữ liệu đối tượng không hợp lệ"
    title_en = "Invalid object metadata"


class ObjectStoreUnavailable(ServiceUnavailable):
    code = "object_store_unavailable"
    title_vi = "Kho lưu trữ đối tượng tạm thời không sẵn sàng"
    title_en = "Object store temporarily unavailable"


class ObjectCorrupt(KhoError):
    """A stored object or its metadata is damaged; never expected in normal operation."""

    code = "object_corrupt"
    status = 500
    title_vi = "Đối tượng lưu trữ bị hỏng"
    title_en = "Stored object is damaged"
