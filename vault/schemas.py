"""API shapes of the vault (pydantic); ORM rows never leave the service layer unconverted."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vault.models import Assurance


class DocumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type_code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    title: str = Field(min_length=1, max_length=255)
    number: str | None = Field(default=None, max_length=64)
    issuer: str | None = Field(default=None, max_length=255)
    issued_on: dt.date | None = None
    expires_on: dt.date | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.issued_on and self.expires_on and self.expires_on < self.issued_on:
            raise ValueError("expires_on must not be before issued_on")
        return self


class ContentOut(BaseModel):
    version: int
    size: int
    sha256: str
    media_type: str
    filename: str | None
    assurance: Assurance
    created_at: dt.datetime


class DocumentOut(BaseModel):
    id: uuid.UUID
    type_code: str
    title: str
    number: str | None
    issuer: str | None
    issued_on: dt.date | None
    expires_on: dt.date | None
    assurance: Assurance
    current_version: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    content: ContentOut | None = None


class DocumentPage(BaseModel):
    items: list[DocumentOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; absent on the last"
    )


class VersionList(BaseModel):
    items: list[ContentOut]


class UploadOut(BaseModel):
    document_id: uuid.UUID
    created: bool = Field(description="false when these exact bytes were already stored")
    content: ContentOut


class DocumentTypeOut(BaseModel):
    code: str
    name_vi: str
    name_en: str
    expires: bool
    official_code: bool
