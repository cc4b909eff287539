"""The embedded default's demonstration clients — development only, never in production.

``ensure_demo_clients`` is called at start-up when the e-ID simulator is on and ``KHO_ENV`` is
not production. It is idempotent and registers two clients:

* ``kho-demo-portal`` — a public portal (no secret): authorization code with PKCE S256,
  redirect URI ``{public_url}/dev/portal/callback``, post-logout URI ``{public_url}/``,
  scopes ``openid profile personal_id offline_access``.
* ``kho-demo-agency`` — an agency back-end using ``private_key_jwt`` (client credentials,
  scope ``kho:agency``). No predictable secret exists: an ES256 key pair is generated once and
  its private half written to ``{data_dir}/demo-agency-key.json`` (mode 0600): a JWKS holding
  that one private key, plus a ``client_id`` member. A developer signs a client assertion with
  the key (ES256, header ``kid`` = the key's ``kid``; claims ``iss`` = ``sub`` =
  ``kho-demo-agency``, ``aud`` = ``{public_url}/oauth2/token``, a fresh ``jti``, a short
  ``exp``) and posts it to ``/oauth2/token`` with ``grant_type=client_credentials``,
  ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and
  ``scope=kho:agency``. Delete the file and restart to get a new key (the client's registered
  public key follows).

A client already registered is corrected only where it differs from the above, so restarts do
not rewrite rows, and a public URL change (another port) is picked up.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from sqlalchemy.orm import Session

from common.clock import Clock
from common.errors import ConfigurationError
from sso.models import OAuthClient
from sso.repository import SsoRepository
from sso.service import ClientRegistration, ClientService

DEMO_PORTAL = "kho-demo-portal"
DEMO_AGENCY = "kho-demo-agency"
DEMO_AGENCY_KEY_FILE = "demo-agency-key.json"
PORTAL_SCOPES = ("openid", "profile", "personal_id", "offline_access")


def ensure_demo_clients(session: Session, clock: Clock, public_url: str, data_dir: Path) -> None:
    """Register (or correct) the demo portal and the demo agency; see the module docstring."""
    base = public_url.rstrip("/")
    key = _demo_agency_key(data_dir / DEMO_AGENCY_KEY_FILE)
    wanted = (
        ClientRegistration(
            client_id=DEMO_PORTAL,
            name="Cổng dịch vụ công (demo)",
            kind="portal",
            token_endpoint_auth_method="none",
            redirect_uris=(base + "/dev/portal/callback",),
            post_logout_redirect_uris=(base + "/",),
            grant_types=("authorization_code", "refresh_token"),
            scopes=PORTAL_SCOPES,
        ),
        ClientRegistration(
            client_id=DEMO_AGENCY,
            name="Cơ quan thử nghiệm (demo)",
            kind="agency",
            token_endpoint_auth_method="private_key_jwt",
            grant_types=("client_credentials",),
            scopes=("kho:agency",),
            jwks={"keys": [key.as_dict(private=False)]},
        ),
    )
    repo = SsoRepository(session)
    service = ClientService(session, clock)
    for registration in wanted:
        row = repo.client(registration.client_id)
        if row is not None and _same(row, registration):
            continue
        service.register(registration)


def _fields(row: OAuthClient) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": str(row.kind),
        "token_endpoint_auth_method": row.token_endpoint_auth_method,
        "redirect_uris": list(row.redirect_uris),
        "post_logout_redirect_uris": list(row.post_logout_redirect_uris),
        "grant_types": list(row.grant_types),
        "scopes": list(row.scopes),
        "jwks": row.jwks,
        "active": bool(row.active),
    }


def _same(row: OAuthClient, wanted: ClientRegistration) -> bool:
    return _fields(row) == {
        "name": wanted.name,
        "kind": wanted.kind,
        "token_endpoint_auth_method": wanted.token_endpoint_auth_method,
        "redirect_uris": list(wanted.redirect_uris),
        "post_logout_redirect_uris": list(wanted.post_logout_redirect_uris),
        "grant_types": list(wanted.grant_types),
        "scopes": list(wanted.scopes),
        "jwks": wanted.jwks,
        "active": True,
    }


def _demo_agency_key(path: Path) -> ECKey:
    """Load the demo agency's private key, creating the 0600 file on first use."""
    if not path.exists():
        key = ECKey.generate_key(
            "P-256",
            parameters={"kid": "demo-" + secrets.token_hex(6), "alg": "ES256", "use": "sig"},
        )
        document = {"client_id": DEMO_AGENCY, "keys": [key.as_dict(private=True)]}
        # Another process starting at the same time may win: then its file is used.
        with contextlib.suppress(FileExistsError):
            _write_private(path, (json.dumps(document, indent=2) + "\n").encode())
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        key = ECKey.import_key(document["keys"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError, JoseError):
        raise ConfigurationError(
            detail_en=f"{path}: not a demo agency key file; delete it to get a new one"
        ) from None
    if not key.is_private:
        raise ConfigurationError(
            detail_en=f"{path}: holds no private key; delete it to get a new one"
        )
    return key


def _write_private(path: Path, content: bytes) -> None:
    """Write ``path`` with mode 0600, atomically: complete or not at all, never overwriting."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
