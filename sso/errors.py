"""Errors of the sign-on layer; token problems never say more than needed."""

from __future__ import annotations

from common.errors import Unauthenticated


class InvalidToken(Unauthenticated):
    code = "invalid_token"
    title_vi = "Mã truy cập không hợp lệ"
    title_en = "Invalid access token"
