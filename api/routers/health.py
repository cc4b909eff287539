"""Liveness, readiness and metrics; public by declaration."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ContainerDep
from api.errors import problem
from common.errors import KhoError
from storage.db import ping as ping_database

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database, the object store and the erasure journal answer",
    responses={503: {"description": "A backend does not answer"}},
)
def readyz(request: Request, container: ContainerDep) -> Response:
    checks: dict[str, str] = {}
    failed: KhoError | None = None
    probes: list[tuple[str, Callable[[], None]]] = [
        ("database", lambda: ping_database(container.engine)),
        ("object_store", container.objects.ping),
        # Erasures and deletions fail (503) without it: a process that cannot journal them
        # should not take traffic (ADR 0009).
        ("erasure_journal", container.erasures.ping),
    ]
    for name, check in probes:
        try:
            check()
            checks[name] = "ok"
        except KhoError as exc:
            checks[name] = exc.code
            failed = failed or exc
    if failed is not None:
        return problem(
            request,
            status=503,
            code="not_ready",
            title_vi="Dịch vụ chưa sẵn sàng",
            title_en="Not ready",
            extra={"checks": checks},
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "checks": checks})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
