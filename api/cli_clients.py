"""``kho clients``: register the provider's clients from the command line.

The bootstrap path for operators: ``kho clients add-operator ops`` prints a ``client_id`` and a
secret once; the operator tool then obtains a ``kho:admin`` token with client credentials at
``/oauth2/token`` and uses it on ``/v1/admin/...`` (where the remaining clients can be registered
over HTTP). Works on a migrated database; nothing else of the server (keys, object store) is
touched. Errors are one line on stderr with exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from common.clock import SystemClock
from common.errors import KhoError
from common.settings import Settings, SsoMode, load_settings
from sso.repository import SsoRepository
from sso.schemas import ClientIn, public_jwks_problem
from sso.service import ClientRegistration, ClientService
from storage.db import create_db_engine, make_session_factory, session_scope

clients_app = typer.Typer(
    help="The OpenID provider's clients: operators, portals, agencies.", no_args_is_help=True
)

ADMIN_SCOPE = "kho:admin"
# Members that only a private (or symmetric) JWK carries (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).


def _fail(message: str) -> NoReturn:
    typer.echo(f"kho: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def _settings() -> Settings:
    try:
        return load_settings()
    except KhoError as exc:
        _fail(str(exc))


# -- the database -----------------------------------------------------------------------------


def _revision_problem(url: str, current: set[str]) -> str | None:
    """Why a database at ``current`` does not suit this version of Kho, or None."""
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    from storage.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(url))
    expected = set(script.get_heads())
    if current == expected:
        return None
    for revision in sorted(current):
        try:
            script.get_revision(revision)
        except CommandError:
            return (
                f"the database is at revision {revision}, which this version of Kho does not "
                "know (migrated by a newer version?)"
            )
    return (
        f"the database is at revision {', '.join(sorted(current))}, not "
        f"{', '.join(sorted(expected))}; run `kho migrate up`"
    )


@contextmanager
def _unit_of_work(settings: Settings) -> Iterator[Session]:
    """One transaction on a migrated database; anything else is one line and exit 2."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import make_url

    url = settings.effective_database_url
    parsed = make_url(url)
    not_migrated = "the database is not migrated; run `kho migrate up` first"
    database = parsed.database or ""
    sqlite_file = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    # Never create an empty SQLite file (or its folder) as a side effect.
    if sqlite_file and not Path(database).is_file():
        _fail(f"{not_migrated} (no database at {database})")
    engine = create_db_engine(url)
    try:
        try:
            with engine.connect() as conn:
                current = set(MigrationContext.configure(conn).get_current_heads())
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            _fail(f"database_unavailable: cannot reach the database ({type(cause).__name__})")
        if not current:
            _fail(not_migrated)
        problem = _revision_problem(url, current)
        if problem:
            _fail(problem)
        try:
            with session_scope(make_session_factory(engine)) as session:
                yield session
        except IntegrityError:
            _fail("conflict: another change to the same client happened at once; retry")
        except SQLAlchemyError as exc:
            _fail(f"database_unavailable: {type(exc).__name__}")
    finally:
        engine.dispose()


# -- validation -------------------------------------------------------------------------------


def _one_line(exc: ValidationError) -> str:
    """Pydantic's errors as one line, each naming its field."""
    parts: list[str] = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")


def _validated(data: Any, source: str) -> ClientIn:
    try:
        body = ClientIn.model_validate(data)
    except ValidationError as exc:
        _fail(f"{source}: {_one_line(exc)}")
    if body.jwks is not None:
        problem = public_jwks_problem(body.jwks)
        if problem:
            _fail(f"{source}: jwks: {problem}")
    return body


def _registration(body: ClientIn) -> ClientRegistration:
    return ClientRegistration(
        client_id=body.client_id,
        name=body.name,
        kind=body.kind,
        token_endpoint_auth_method=body.token_endpoint_auth_method,
        redirect_uris=tuple(str(u) for u in body.redirect_uris),
        post_logout_redirect_uris=tuple(str(u) for u in body.post_logout_redirect_uris),
        backchannel_logout_uri=str(body.backchannel_logout_uri)
        if body.backchannel_logout_uri
        else None,
        grant_types=tuple(body.grant_types),
        scopes=tuple(body.scopes),
        audiences=tuple(body.audiences),
        jwks=body.jwks,
        agency_id=body.agency_id,
    )


def _register(settings: Settings, body: ClientIn, *, replace: bool) -> str | None:
    with _unit_of_work(settings) as session:
        if SsoRepository(session).client(body.client_id) is not None and not replace:
            _fail(
                f"client '{body.client_id}' already exists; pass --replace to replace it "
                "(secret-based clients get a new secret)"
            )
        _row, secret = ClientService(session, SystemClock()).register(_registration(body))
    return secret


def _show_secret(client_id: str, secret: str | None) -> None:
    """The secret goes to stdout once, labelled; Kho keeps only its digest."""
    typer.echo(f"client_id:     {client_id}")
    if secret is not None:
        typer.echo(f"client_secret: {secret}")
        typer.echo("This secret is shown only once and cannot be recovered; store it now.")


# -- commands ---------------------------------------------------------------------------------


@clients_app.command("add-operator")
def add_operator(
    name: Annotated[str, typer.Argument(help="The client_id, e.g. 'ops'")],
    jwks_file: Annotated[
        Path | None,
        typer.Option(
            "--jwks-file",
            help="Use private_key_jwt with these PUBLIC keys (a JWKS file) instead of a secret",
        ),
    ] = None,
    display_name: Annotated[
        str | None, typer.Option("--display-name", help="Shown to people (default NAME)")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace an existing client (new secret)")
    ] = False,
) -> None:
    """Register an operator client (client credentials, scope kho:admin); print its secret once."""
    settings = _settings()
    if settings.sso_mode is SsoMode.keycloak:
        _fail(
            "KHO_SSO_MODE=keycloak: the API accepts only the realm's tokens, so an operator "
            "client of Kho's own provider could not reach /v1/admin"
        )
    jwks: Any = None
    if jwks_file is not None:
        jwks = _read_json(jwks_file, "JWKS file")
        if isinstance(jwks, dict) and "kty" in jwks:
            jwks = {"keys": [jwks]}  # a single JWK
        problem = public_jwks_problem(jwks)
        if problem:
            _fail(f"{jwks_file}: {problem}")
    body = _validated(
        {
            "client_id": name,
            "name": display_name or name,
            "kind": "operator",
            "token_endpoint_auth_method": "private_key_jwt" if jwks else "client_secret_basic",
            "grant_types": ["client_credentials"],
            "scopes": [ADMIN_SCOPE],
            "audiences": [settings.api_audience],
            "jwks": jwks,
        },
        "operator client",
    )
    secret = _register(settings, body, replace=replace)
    token_endpoint = settings.public_url.rstrip("/") + "/oauth2/token"
    typer.echo(
        f"Registered operator client '{body.client_id}' ({body.token_endpoint_auth_method})."
    )
    _show_secret(body.client_id, secret)
    how = "HTTP Basic client_id:client_secret" if secret else "a private_key_jwt client assertion"
    typer.echo(
        f"Token: POST {token_endpoint} grant_type=client_credentials scope={ADMIN_SCOPE} ({how})"
    )


@clients_app.command("register")
def register(
    file: Annotated[
        Path, typer.Option("--file", help="A JSON client registration (the API's ClientIn)")
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace an existing client (new secret)")
    ] = False,
) -> None:
    """Register a client from a JSON file shaped like PUT /v1/admin/clients/{id}."""
    settings = _settings()
    body = _validated(_read_json(file, "client file"), str(file))
    secret = _register(settings, body, replace=replace)
    typer.echo(
        f"Registered {body.kind} client '{body.client_id}' ({body.token_endpoint_auth_method})."
    )
    _show_secret(body.client_id, secret)


@clients_app.command("list")
def list_clients() -> None:
    """Every registered client: id, kind, authentication, grant types, whether active."""
    settings = _settings()
    with _unit_of_work(settings) as session:
        rows = [
            (
                row.client_id,
                str(row.kind),
                row.token_endpoint_auth_method,
                ",".join(row.grant_types) or "-",
                "yes" if row.active else "no",
            )
            for row in SsoRepository(session).clients()
        ]
    if not rows:
        typer.echo("no clients registered")
        return
    header = ("CLIENT_ID", "KIND", "AUTH METHOD", "GRANT TYPES", "ACTIVE")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for line in (header, *rows):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())


@clients_app.command("deactivate")
def deactivate(client_id: Annotated[str, typer.Argument(help="The client to stop")]) -> None:
    """Stop a client from obtaining tokens.

    Running servers notice within seconds (they cache registrations briefly); access tokens
    already issued stay valid until they expire (minutes).
    """
    settings = _settings()
    with _unit_of_work(settings) as session:
        row = SsoRepository(session).client(client_id)
        if row is None:
            _fail(f"client_not_found: no client '{client_id}'")
        was_active = bool(row.active)
        row.active = False
    typer.echo(
        f"client '{client_id}' deactivated" if was_active else f"client '{client_id}' was inactive"
    )
