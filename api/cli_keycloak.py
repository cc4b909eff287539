"""``kho keycloak``: provision the Keycloak realm Kho trusts in Keycloak mode."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from common.errors import KhoError
from common.settings import Settings, load_settings

keycloak_app = typer.Typer(
    help="Keycloak mode: the realm, its clients and the national e-ID broker.",
    no_args_is_help=True,
)


@keycloak_app.callback()
def keycloak_group() -> None:
    """Keycloak mode: the realm, its clients and the national e-ID broker."""


def _fail(message: str) -> None:
    typer.echo(f"kho: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def _keycloak_message(exc: Exception) -> str:
    """python-keycloak's errors carry the server's JSON answer as bytes; keep its words."""
    code = getattr(exc, "response_code", None)
    body = getattr(exc, "response_body", None)
    raw = getattr(exc, "error_message", "") or str(exc)
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    if isinstance(body, bytes):
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            for key in ("error_description", "errorMessage", "error"):
                if isinstance(answer.get(key), str):
                    text = answer[key]
                    break
    return f"{code}: {text}" if code else text


def _required(settings: Settings) -> tuple[str, str, str, str, str]:
    values = {
        "KHO_KEYCLOAK_URL": settings.keycloak_url,
        "KHO_KEYCLOAK_ADMIN_USER": settings.keycloak_admin_user,
        "KHO_KEYCLOAK_ADMIN_PASSWORD": (
            settings.keycloak_admin_password.get_secret_value()
            if settings.keycloak_admin_password
            else None
        ),
        "KHO_EID_DISCOVERY_URL": settings.eid_discovery_url,
        "KHO_EID_CLIENT_SECRET": (
            settings.eid_client_secret.get_secret_value() if settings.eid_client_secret else None
        ),
    }
    for name, value in values.items():
        if not value:
            _fail(f"{name}: required by `kho keycloak provision`")
    url, user, password, discovery, secret = (str(v) for v in values.values())
    return url, user, password, discovery, secret


@keycloak_app.command("provision")
def provision(
    redirect_uri: Annotated[
        list[str],
        typer.Option(
            "--redirect-uri",
            help="Exact redirect URI of the citizen portal (repeat for several)",
        ),
    ],
) -> None:
    """Create or update the realm (KHO_KEYCLOAK_REALM); a second run changes nothing."""
    from keycloak.exceptions import KeycloakError

    from sso.keycloak import KeycloakProvisioner

    try:
        settings = load_settings()
    except KhoError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits
    url, user, password, discovery, secret = _required(settings)
    try:
        report = KeycloakProvisioner(
            url,
            user,
            password,
            realm=settings.keycloak_realm,
            eid_discovery_url=discovery,
            eid_client_id=settings.eid_client_id,
            eid_client_secret=secret,
            portal_redirect_uris=redirect_uri,
            api_audience=settings.api_audience,
        ).provision()
    except KhoError as exc:
        _fail(f"{exc.code}: {exc}")
        raise
    except KeycloakError as exc:
        _fail(f"keycloak_error: {_keycloak_message(exc)}")
        raise
    typer.echo(f"realm {report.realm} at {url}")
    for change in report.changes:
        typer.echo(f"  {change}")
    if report.changed:
        counts = {a: sum(c.action == a for c in report.changes) for a in ("created", "updated")}
        typer.echo(f"{counts['created']} created, {counts['updated']} updated")
    else:
        typer.echo("no changes: the realm already matches")
