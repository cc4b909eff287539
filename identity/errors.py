"""Errors of the identity domain."""

from __future__ import annotations

from common.errors import InvalidInput, NotFound, Unauthenticated


class AccountNotFound(NotFound):
    code = "account_not_found"
    title_vi = "Không tìm thấy tài khoản"
    title_en = "Account not found"


class AccountErased(Unauthenticated):
    code = "account_erased"
    title_vi = "Tài khoản đã bị xoá"
    title_en = "The account was erased"


class InvalidPersonalId(InvalidInput):
    code = "invalid_personal_id"
    title_vi = "Số định danh cá nhân không hợp lệ"
    title_en = "Invalid personal identification number"
