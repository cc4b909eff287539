"""``kho audit``: verify the access log's hash chains and signed checkpoints, sign a checkpoint.

``kho audit verify`` exits 0 with one summary line, 1 with one line naming the first entry (or
checkpoint) that does not fit, 2 when it cannot run (configuration, database).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from common.errors import KhoError
from common.settings import load_settings

if TYPE_CHECKING:
    from api.container import Container

audit_app = typer.Typer(
    help="The access log: verify every hash chain and checkpoint, sign a checkpoint.",
    no_args_is_help=True,
)


@audit_app.callback()
def audit_group() -> None:
    """The access log: verify every hash chain and checkpoint, sign a checkpoint."""


def _fail(message: str) -> NoReturn:
    typer.echo(f"kho: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def _container() -> Container:
    # Imported here, as in api/cli.py: `kho --help` should not build the whole app.
    from api.container import build_container

    try:
        return build_container(load_settings())
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")


def _database_failure(exc: SQLAlchemyError) -> NoReturn:
    # The driver's first line says enough (no such table: run `kho migrate up`; refused: start
    # the database); the statement and parameters are not for an operator's terminal.
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    _fail(f"database: {first}")


@audit_app.command("verify")
def verify() -> None:
    """Recompute every entry's hash and check every chain, head row and checkpoint."""
    from consent.audit import AccessLog
    from sso.keys import ProviderJwsSigner

    container = _container()
    try:
        with container.sessions() as session:
            log = AccessLog(session, container.clock, ProviderJwsSigner(container.signing_keys))
            report = log.verify_all()
            session.rollback()
    except SQLAlchemyError as exc:
        _database_failure(exc)
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")
    finally:
        container.close()
    if not report.ok:
        problems = "1 problem" if report.failures == 1 else f"{report.failures} problems"
        typer.echo(f"access log does NOT verify ({problems}); first: {report.first_failure}")
        raise typer.Exit(1)
    rate = report.entries_checked / report.seconds if report.seconds > 0 else 0.0
    typer.echo(
        f"access log verified: {report.entries_checked:,} entries, "
        f"{report.owners_checked:,} owners, {report.checkpoints_checked:,} checkpoints "
        f"in {report.seconds:.2f} s ({rate:,.0f} entries/s)"
    )


@audit_app.command("checkpoint")
def checkpoint() -> None:
    """Sign a checkpoint over every owner's chain head. Run it often (from cron or a timer):
    entries after the last checkpoint are the ones a database writer could still remove."""
    from consent.audit import AccessLog
    from sso.keys import ProviderJwsSigner
    from storage.db import session_scope

    container = _container()
    try:
        with session_scope(container.sessions) as session:
            row = AccessLog(session, container.clock).checkpoint(
                ProviderJwsSigner(container.signing_keys)
            )
            summary = f"checkpoint {row.id}: {row.tree_size:,} owners, root {row.root_hash.hex()}"
    except LookupError:
        _fail("no active signing key: start `kho serve` once, it creates the provider's keys")
    except SQLAlchemyError as exc:
        _database_failure(exc)
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")
    finally:
        container.close()
    typer.echo(summary)
