"""The catalogue: public reads of document types and procedures; operators' edits, imports,
versions and the reuse statistics.

The reads are public on purpose (anyone may know which papers a procedure needs); every
``/v1/admin/...`` route needs an operator token (scope ``kho:admin``), said in its signature.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response, status

from api.deps import ContainerDep, CurrentOperator, DbSession
from common.errors import InvalidInput
from vault.catalogue import (
    PROCEDURE_CODE_PATTERN,
    TYPE_CODE_PATTERN,
    CatalogueService,
    CatalogueVersionOut,
    DocumentTypeEntry,
    DocumentTypeFields,
    ImportOut,
    ProcedureFields,
    ProcedureOut,
    ProcedureSummary,
)
from vault.reuse import ReusePlanner, ReuseStatistics

router = APIRouter(tags=["catalogue"])


def get_catalogue(container: ContainerDep, session: DbSession) -> CatalogueService:
    return CatalogueService(session, container.clock)


def get_planner(container: ContainerDep, session: DbSession) -> ReusePlanner:
    return ReusePlanner(session, container.clock)


Catalogue = Annotated[CatalogueService, Depends(get_catalogue)]
Planner = Annotated[ReusePlanner, Depends(get_planner)]
ProcedureCode = Annotated[str, Path(max_length=64, pattern=PROCEDURE_CODE_PATTERN)]
TypeCode = Annotated[str, Path(max_length=64, pattern=TYPE_CODE_PATTERN)]

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "No operator token"},
    403: {"description": "The token lacks the kho:admin scope"},
}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "invalid_catalogue: every problem in `errors` with its location, e.g. "
        '`["procedures", "3", "requirements", "1", "document_type"]`'
    }
}


def _actor(operator: CurrentOperator) -> str:
    return f"operator:{operator.client_id or operator.subject}"


# -- public ------------------------------------------------------------------------------------


@router.get(
    "/v1/catalogue/document-types",
    summary="Document types of the catalogue (public)",
)
def document_types(catalogue: Catalogue) -> list[DocumentTypeEntry]:
    return catalogue.document_types()


@router.get("/v1/catalogue/procedures", summary="Administrative procedures (public)")
def procedures(
    catalogue: Catalogue,
    level: Annotated[str | None, Query(pattern="^(province|commune)$")] = None,
) -> list[ProcedureSummary]:
    return catalogue.procedures(level=level)


@router.get(
    "/v1/catalogue/procedures/{code}",
    summary="One procedure and the papers it needs (public)",
    responses={404: {"description": "procedure_not_found"}},
)
def procedure(code: ProcedureCode, catalogue: Catalogue) -> ProcedureOut:
    return catalogue.procedure(code)


# -- operators ---------------------------------------------------------------------------------


@router.put(
    "/v1/admin/catalogue/document-types/{code}",
    summary="Create or replace a document type (versioned)",
    responses={
        **_AUTH,
        **_INVALID,
        200: {"description": "Replaced (or unchanged)"},
        201: {"description": "Created"},
        409: {"description": "document_type_in_use: active procedures still need it"},
    },
)
def put_document_type(
    code: TypeCode,
    body: DocumentTypeFields,
    operator: CurrentOperator,
    catalogue: Catalogue,
    response: Response,
) -> DocumentTypeEntry:
    entry, created = catalogue.put_document_type(code, body, actor=_actor(operator))
    if created:
        response.status_code = status.HTTP_201_CREATED
    return entry


@router.put(
    "/v1/admin/catalogue/procedures/{code}",
    summary="Create or replace a procedure and its requirements (versioned)",
    responses={
        **_AUTH,
        **_INVALID,
        200: {"description": "Replaced (or unchanged)"},
        201: {"description": "Created"},
    },
)
def put_procedure(
    code: ProcedureCode,
    body: ProcedureFields,
    operator: CurrentOperator,
    catalogue: Catalogue,
    response: Response,
) -> ProcedureOut:
    procedure_out, created = catalogue.put_procedure(code, body, actor=_actor(operator))
    if created:
        response.status_code = status.HTTP_201_CREATED
    return procedure_out


@router.post(
    "/v1/admin/catalogue/import",
    summary="Import a whole catalogue (the shape of vault/catalogue_data.json)",
    description="Entries the document leaves out are deactivated, never deleted. Importing what "
    "is already there records no version and answers `changed: false`.",
    responses={**_AUTH, **_INVALID},
)
def import_catalogue(
    body: Annotated[dict[str, Any], Body()],
    operator: CurrentOperator,
    catalogue: Catalogue,
) -> ImportOut:
    return catalogue.import_catalogue(body, source="api", actor=_actor(operator)).out()


@router.get(
    "/v1/admin/catalogue/export",
    summary="The whole catalogue, inactive entries included, ready to edit and import",
    responses=_AUTH,
)
def export_catalogue(operator: CurrentOperator, catalogue: Catalogue) -> dict[str, Any]:
    return catalogue.export_catalogue()


@router.get(
    "/v1/admin/catalogue/versions",
    summary="Every change to the catalogue, newest first",
    responses=_AUTH,
)
def versions(
    operator: CurrentOperator,
    catalogue: Catalogue,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CatalogueVersionOut]:
    return catalogue.versions(limit)


@router.get(
    "/v1/admin/statistics/reuse",
    summary="Reuse rate per procedure and per agency over a period",
    description="See `definition` in the answer for exactly what is counted.",
    responses={**_AUTH, 422: {"description": "`from` is not before `to`"}},
)
def reuse_statistics(
    operator: CurrentOperator,
    planner: Planner,
    start: Annotated[dt.datetime, Query(alias="from")],
    end: Annotated[dt.datetime, Query(alias="to")],
) -> ReuseStatistics:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput(
            "Thời điểm cần có múi giờ.", "from and to need a timezone (e.g. 2026-01-01T00:00Z)."
        )
    if start >= end:
        raise InvalidInput("`from` phải trước `to`.", "`from` must be before `to`.")
    return planner.statistics(start, end)
