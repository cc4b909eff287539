"""``kho catalogue``: import and export the catalogue of document types and procedures.

``kho catalogue import FILE`` makes the catalogue what FILE says (entries it leaves out are
deactivated, never deleted) and prints what changed, or ``no changes``; ``kho catalogue export``
prints the catalogue in the same shape. Works on a migrated database. Errors are one line on
stderr with exit code 2, naming the place in the file (``procedures[3].requirements[1].
document_type``).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from common.clock import SystemClock
from common.errors import KhoError
from common.settings import Settings, load_settings
from storage.db import create_db_engine, make_session_factory, session_scope
from vault.catalogue import CatalogueService

catalogue_app = typer.Typer(
    help="The catalogue of document types and procedures.", no_args_is_help=True
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"kho: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def _settings() -> Settings:
    try:
        return load_settings()
    except KhoError as exc:
        _fail(str(exc))


@contextmanager
def _unit_of_work(settings: Settings) -> Iterator[Session]:
    """One transaction on a migrated database; anything else is one line and exit 2."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from storage.migrate import alembic_config

    url = settings.effective_database_url
    parsed = make_url(url)
    database = parsed.database or ""
    not_migrated = "the database is not migrated; run `kho migrate up` first"
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not Path(database).is_file()
    ):
        _fail(f"{not_migrated} (no database at {database})")
    engine = create_db_engine(url)
    try:
        try:
            with engine.connect() as conn:
                current = set(MigrationContext.configure(conn).get_current_heads())
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            _fail(f"database_unavailable: cannot reach the database ({type(cause).__name__})")
        expected = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
        if current != expected:
            _fail(not_migrated if not current else f"{not_migrated} (at {sorted(current)})")
        try:
            with session_scope(make_session_factory(engine)) as session:
                yield session
        except KhoError as exc:
            _fail(f"{exc.code}: {exc}")
        except IntegrityError:
            _fail("conflict: another change to the catalogue happened at once; retry")
        except SQLAlchemyError as exc:
            _fail(f"database_unavailable: {type(exc).__name__}")
    finally:
        engine.dispose()


def _read(file: Path) -> object:
    try:
        raw = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {file}: {exc.__class__.__name__}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        _fail(f"invalid_catalogue: {file} is not JSON (line {exc.lineno}, column {exc.colno})")


@catalogue_app.command("import")
def import_catalogue(
    file: Annotated[Path, typer.Argument(help="A catalogue JSON file")],
    actor: Annotated[
        str | None, typer.Option(help="Who is importing (recorded); default: the login name")
    ] = None,
) -> None:
    """Make the catalogue what FILE says; print what changed, or "no changes"."""
    data = _read(file)
    settings = _settings()
    who = actor or f"cli:{getpass.getuser()}"
    with _unit_of_work(settings) as session:
        result = CatalogueService(session, SystemClock()).import_catalogue(
            data, source="cli", actor=who
        )
        version = result.version.id if result.version else None
    if version is None:
        typer.echo("no changes")
        return
    typer.echo(f"catalogue version {version}: {result.diff.summary()}")


@catalogue_app.command("export")
def export_catalogue(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
) -> None:
    """Print the whole catalogue (inactive entries included) as JSON."""
    settings = _settings()
    with _unit_of_work(settings) as session:
        document = CatalogueService(session, SystemClock()).export_catalogue()
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.__class__.__name__}")
