"""The app factory: the only place that reads Settings and builds the process's collaborators."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import structlog
from fastapi import FastAPI

from api.container import Container, HttpWebhookPoster, build_container
from api.errors import install_error_handlers
from api.limits import LimitsMiddleware
from api.observability import Metrics, RequestContextMiddleware, configure_logging
from api.openapi import install_openapi
from api.routers import (
    access_log,
    admin,
    admin_clients,
    admin_keys,
    admin_webhooks,
    agency,
    catalogue,
    consents,
    delegations,
    dev_eid,
    documents,
    health,
    issuance,
    me,
    oidc,
    reuse,
    statutory,
    wellknown,
)
from api.web import prepare_web
from api.web import router as web_router
from common.settings import Settings, load_settings
from consent.service import WebhookDispatcher
from sso.demo import ensure_demo_clients
from sso.keys import ProviderJwsSigner, SigningKeyService
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
        settings = container.settings
        if settings.eid_simulator and not settings.is_production:
            ensure_demo_clients(session, container.clock, container.issuer_url, settings.data_dir)
    container.signing_keys.invalidate()
    prepare_web(container)


async def _deliver_webhooks(container: Container) -> None:
    """Drain the webhook outbox in the background; each process may run it (rows are claimed)."""
    dispatcher = WebhookDispatcher(
        container.sessions,
        container.clock,
        signer=ProviderJwsSigner(container.signing_keys),
        poster=HttpWebhookPoster(container.http),
        issuer=container.issuer_url,
    )
    log = structlog.get_logger("kho.webhooks")
    while True:
        await asyncio.sleep(container.settings.webhook_interval_seconds)
        try:
            report = await anyio.to_thread.run_sync(dispatcher.run_once)
        except Exception:  # noqa: BLE001 - the next round retries; the outbox keeps the work
            log.warning("webhook_round_failed")
            continue
        if report.delivered or report.failed or report.retried:
            log.info(
                "webhooks",
                delivered=report.delivered,
                retried=report.retried,
                failed=report.failed,
            )


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
        worker = (
            asyncio.create_task(_deliver_webhooks(container))
            if settings.webhook_interval_seconds > 0
            else None
        )
        yield
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
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
    install_openapi(app)
    metrics = Metrics()
    app.state.container = container
    app.state.metrics = metrics
    install_error_handlers(app)
    for module in (
        health,
        wellknown,
        oidc,
        me,
        documents,
        consents,
        delegations,
        agency,
        statutory,
        issuance,
        access_log,
        catalogue,
        reuse,
        admin,
        admin_clients,
        admin_keys,
        admin_webhooks,
    ):
        app.include_router(module.router)
    app.include_router(web_router)
    if settings.eid_simulator and not settings.is_production:
        app.include_router(dev_eid.router)
    app.add_middleware(LimitsMiddleware, container=container)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
