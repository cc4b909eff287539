"""The app factory: the only place that reads Settings and builds the process's collaborators."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.container import Container, build_container
from api.errors import install_error_handlers
from api.observability import Metrics, RequestContextMiddleware, configure_logging
from api.routers import (
    admin,
    admin_clients,
    delegations,
    dev_eid,
    documents,
    health,
    me,
    oidc,
    wellknown,
)
from common.settings import Settings, load_settings
from sso.keys import SigningKeyService
from storage.db import session_scope
from storage.s3 import S3ObjectStore
from vault.catalogue import ensure_starter_catalogue
from vault.keyring import MasterKeySealer

API_DESCRIPTION = """
Kho — kho dữ liệu công dân. Citizens' and organisations' papers, encrypted per owner, reused
across public services with the owner's consent. Errors are RFC 9457 `application/problem+json`
with a stable `code`; Vietnamese by default, English with `Accept-Language: en`.
"""


def prepare(container: Container) -> None:
    """Idempotent start-up work on a migrated database: signing keys and the starter catalogue."""
    if isinstance(container.objects, S3ObjectStore):
        container.objects.ensure_bucket()
    with session_scope(container.sessions) as session:
        SigningKeyService(
            session, MasterKeySealer(container.keys), container.clock
        ).ensure_current()
        ensure_starter_catalogue(session)
    container.signing_keys.invalidate()


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    settings = settings or (container.settings if container else load_settings())
    configure_logging(settings.log_level, json=settings.log_json)
    owned = container is None
    if settings.public_url.startswith(("http://127.0.0.1", "http://localhost")):
        # authlib refuses plain-HTTP URLs unless told otherwise; only a loopback issuer (the
        # embedded default, tests) may run without TLS. Production requires https (Settings).
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    container = container or build_container(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        prepare(container)
        yield
        if owned:
            container.close()

    app = FastAPI(
        title="Kho",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    metrics = Metrics()
    app.state.container = container
    app.state.metrics = metrics
    install_error_handlers(app)
    for module in (health, wellknown, oidc, me, documents, delegations, admin, admin_clients):
        app.include_router(module.router)
    if settings.eid_simulator and not settings.is_production:
        app.include_router(dev_eid.router)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
