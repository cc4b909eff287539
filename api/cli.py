"""The ``kho`` command: serve, migrate, doctor, storage sweep, keys."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from api.cli_audit import audit_app
from api.cli_backup import backup_app
from api.cli_catalogue import catalogue_app
from api.cli_clients import clients_app
from api.cli_keycloak import keycloak_app
from common.errors import KhoError
from common.settings import Settings, load_settings

app = typer.Typer(
    help="Kho — kho dữ liệu công dân (citizen data vault).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
migrate_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
storage_app = typer.Typer(help="Object-store maintenance.", no_args_is_help=True)
keys_app = typer.Typer(help="Master keys.", no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")
app.add_typer(storage_app, name="storage")
app.add_typer(keys_app, name="keys")
app.add_typer(keycloak_app, name="keycloak")
app.add_typer(audit_app, name="audit")
app.add_typer(clients_app, name="clients")
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(backup_app)

T = TypeVar("T")


def _fail(message: str) -> None:
    typer.echo(f"kho: {message}", err=True)
    raise typer.Exit(2)


def _settings() -> Settings:
    try:
        return load_settings()
    except KhoError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _guard(action: Callable[[], T]) -> T:
    """Run ``action``; a Kho error becomes one line on stderr, not a traceback."""
    try:
        return action()
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")
        raise


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default KHO_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default KHO_PORT)")] = None,
    migrate: Annotated[bool, typer.Option(help="Apply migrations first")] = True,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="API processes (default KHO_WORKERS)")
    ] = None,
) -> None:
    """Serve Kho. With no configuration: SQLite and objects under ./var, a generated dev key."""
    import uvicorn

    from api.app import create_app, prepare
    from api.container import build_container
    from storage.migrate import upgrade

    settings = _settings()
    container = _guard(lambda: build_container(settings))
    if migrate:
        upgrade(settings.effective_database_url)
    if not settings.is_production:
        backends = (
            f"{container.engine.url.get_backend_name()}, {settings.object_store.value} object "
            f"store, {'generated' if settings.uses_generated_master_key else 'configured'} "
            f"master key, {'e-ID simulator' if settings.eid_simulator else 'national e-ID'}"
        )
        typer.echo(
            f"*** Kho — CHẾ ĐỘ PHÁT TRIỂN / DEVELOPMENT MODE: {backends} "
            f"(data in {settings.data_dir}). Not for real data. ***",
            err=True,
        )
    processes = workers or settings.workers
    # KHO_MAX_CONCURRENCY is enforced per request by LimitsMiddleware (a problem+json 503).
    # uvicorn counts connections, idle keep-alive ones and clients still sending headers
    # included, and answers plain text: it keeps only a looser backstop against those.
    connection_limit = (
        None if settings.max_concurrency is None else 2 * settings.max_concurrency + 16
    )
    if processes > 1:
        # Each worker process builds its own app from the same KHO_* settings; everything
        # shared (sessions, keys, rate state) lives in the database, so they are interchangeable.
        # Start-up work runs once here, so the workers find it done and do not race on it.
        prepare(container)
        container.close()
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            workers=processes,
            host=host or settings.host,
            port=port or settings.port,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            timeout_keep_alive=settings.keep_alive_seconds,
            limit_concurrency=connection_limit,
        )
        return
    application = create_app(settings, container=container)
    uvicorn.run(
        application,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=connection_limit,
    )


@migrate_app.command("up")
def migrate_up(revision: str = "head") -> None:
    """Apply migrations up to REVISION."""
    from storage.migrate import upgrade

    settings = _settings()
    if not settings.is_production:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"migrated to {revision}")


@migrate_app.command("down")
def migrate_down(revision: str = "base") -> None:
    """Revert migrations down to REVISION."""
    from storage.migrate import downgrade

    downgrade(_settings().effective_database_url, revision)
    typer.echo(f"reverted to {revision}")


@migrate_app.command("check")
def migrate_check() -> None:
    """Fail if the models and the migrations disagree (run on a migrated database)."""
    from alembic.util.exc import CommandError

    from storage.migrate import check

    try:
        check(_settings().effective_database_url)
    except CommandError as exc:
        _fail(f"migration drift: {exc}")
    typer.echo("no drift: models match the migrations")


@app.command()
def doctor() -> None:
    """Which backends are configured, and whether they answer."""
    from api.container import build_container
    from storage.db import ping

    settings = _settings()
    container = _guard(lambda: build_container(settings))
    rows: list[tuple[str, str, str]] = []
    url = container.engine.url
    rows.append(("database", f"{url.get_backend_name()} {url.host or url.database}", ""))
    rows.append(("object store", settings.object_store.value, ""))
    rows.append(("erasure journal", str(settings.effective_erasure_list), ""))
    rows.append(("master key", f"versions {container.keys.versions()}", "ok"))
    ok = True
    probes: list[tuple[str, Callable[[], None]]] = [
        ("database", lambda: ping(container.engine)),
        ("object store", container.objects.ping),
        ("erasure journal", container.erasures.ping),
    ]
    for index, (name, check) in enumerate(probes):
        try:
            check()
            rows[index] = (rows[index][0], rows[index][1], "ok")
        except KhoError as exc:
            ok = False
            rows[index] = (rows[index][0], rows[index][1], f"FAILED ({exc.code})")
        del name
    rows.append(("e-ID", "simulator" if settings.eid_simulator else "national e-ID", ""))
    rows.append(("environment", settings.env.value, ""))
    for name, what, state in rows:
        typer.echo(f"{name:<16} {what:<40} {state}")
    container.close()
    if not ok:
        raise typer.Exit(1)


@storage_app.command("sweep")
def storage_sweep(
    grace_minutes: Annotated[int, typer.Option(min=0, help="Leave younger things alone")] = 60,
) -> None:
    """Remove orphaned objects and abandoned uploads; safe to run at any time."""
    import datetime as dt

    from api.container import build_container
    from vault.service import StorageSweeper

    settings = _settings()
    container = _guard(lambda: build_container(settings))
    report = _guard(
        lambda: StorageSweeper(
            container.sessions,
            container.objects,
            container.clock,
            grace=dt.timedelta(minutes=grace_minutes),
        ).run()
    )
    typer.echo(
        f"pending uploads removed: {report.pending_removed}; "
        f"orphan objects removed: {report.orphan_objects_removed}; "
        f"shredded objects removed: {report.shredded_objects_removed}"
    )
    container.close()


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a master-key version (file provider) and rewrap every vault key under it."""
    from api.container import build_container
    from storage.db import session_scope
    from vault.keyring import Keyring
    from vault.keys import FileKeyProvider, add_key_version

    settings = _settings()
    path = settings.master_key_file or settings.generated_master_key_file
    if settings.master_keys is not None:
        _fail("KHO_MASTER_KEYS: rotate environment keys by adding a version to the variable")
    version = _guard(lambda: add_key_version(path))
    container = _guard(lambda: build_container(settings))
    container.keys = FileKeyProvider(path)

    def rewrap() -> int:
        with session_scope(container.sessions) as session:
            return Keyring(session, container.keys, container.clock).rewrap_all()

    count = _guard(rewrap)
    typer.echo(f"master key version {version} is current; {count} vault keys rewrapped")
    container.close()


def main() -> None:
    try:
        app()
    except KhoError as exc:
        typer.echo(f"kho: {exc.code}: {exc}", err=True)
        sys.exit(2)
