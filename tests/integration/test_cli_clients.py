"""``kho clients`` as an operator meets it: the real executable on the embedded default, then the
app built in-process on the same data directory proves the registered clients work."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from api.app import create_app
from tests.conftest import settings_for

KHO = str(Path(sys.executable).with_name("kho"))
TOKEN_ENDPOINT = "http://127.0.0.1:8000/oauth2/token"


def run_kho(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
    return subprocess.run(
        [KHO, *args], env=clean, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def labelled(stdout: str, label: str) -> str:
    values = [
        line.split(":", 1)[1].strip() for line in stdout.splitlines() if line.startswith(label)
    ]
    assert len(values) == 1, stdout
    return values[0]


def table(folder: Path) -> dict[str, list[str]]:
    """``kho clients list`` as rows by client_id (the embedded default may add demo clients)."""
    listed = run_kho(["clients", "list"], folder)
    assert listed.returncode == 0, listed.stderr
    if listed.stdout.strip() == "no clients registered":
        return {}
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["CLIENT_ID", "KIND", "AUTH", "METHOD", "GRANT", "TYPES", "ACTIVE"]
    return {row.split()[0]: row.split() for row in rows}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    migrated = run_kho(["migrate", "up"], tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    return tmp_path


@pytest.fixture
def kho(folder: Path) -> Iterator[TestClient]:
    """Kho in-process on the folder the CLI wrote to (``./var`` of the embedded default)."""
    app = create_app(settings_for("sqlite-local", folder))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def admin_token(kho: TestClient, headers: dict[str, str], **form: str) -> httpx.Response:
    response: httpx.Response = kho.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "kho:admin", **form},
        headers=headers,
    )
    return response


def test_not_migrated_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    line = one_line_error(run_kho(["clients", "list"], tmp_path))
    assert "not migrated" in line
    assert "kho migrate up" in line
    assert not (tmp_path / "var").exists()


def test_operator_bootstrap_secret_to_admin_api_then_deactivate(
    folder: Path, kho: TestClient
) -> None:
    added = run_kho(["clients", "add-operator", "ops"], folder)
    assert added.returncode == 0, added.stderr
    assert labelled(added.stdout, "client_id:") == "ops"
    secret = labelled(added.stdout, "client_secret:")
    assert len(secret) >= 40
    assert "only once" in added.stdout
    assert secret not in added.stderr
    # The database keeps a digest, never the secret.
    for stored in (folder / "var").glob("kho.db*"):
        assert secret.encode() not in stored.read_bytes()

    issued = admin_token(kho, basic("ops", secret))
    assert issued.status_code == 200, issued.text
    assert issued.json()["scope"] == "kho:admin"
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    listed = kho.get("/v1/admin/clients", headers=bearer)
    assert listed.status_code == 200, listed.text
    ops = {c["client_id"]: c for c in listed.json()}["ops"]
    assert ops["kind"] == "operator"
    assert ops["token_endpoint_auth_method"] == "client_secret_basic"
    assert ops["scopes"] == ["kho:admin"]
    assert ops["client_secret"] is None

    wrong = admin_token(kho, basic("ops", secret[:-2] + "xx"))
    assert wrong.status_code == 401, wrong.text
    assert wrong.json()["error"] == "invalid_client"

    # Registering the same name again is refused unless asked for; the secret still works.
    again = run_kho(["clients", "add-operator", "ops"], folder)
    assert "already exists" in one_line_error(again)
    assert admin_token(kho, basic("ops", secret)).status_code == 200

    listed = run_kho(["clients", "list"], folder)
    assert secret not in listed.stdout + listed.stderr
    assert table(folder)["ops"] == [
        "ops",
        "operator",
        "client_secret_basic",
        "client_credentials",
        "yes",
    ]

    stopped = run_kho(["clients", "deactivate", "ops"], folder)
    assert stopped.returncode == 0, stopped.stderr
    # A running server caches registrations briefly: another process's change lands in seconds.
    deadline = time.monotonic() + 15
    while (refused := admin_token(kho, basic("ops", secret))).status_code == 200:
        assert time.monotonic() < deadline, "the deactivated client still gets tokens"
        time.sleep(0.25)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_client"
    assert table(folder)["ops"][-1] == "no"
    assert "client_not_found" in one_line_error(run_kho(["clients", "deactivate", "nope"], folder))


def test_operator_with_public_keys_uses_private_key_jwt(folder: Path, kho: TestClient) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "ops-key-1", "alg": "ES256"})
    private_file = folder / "private.json"
    private_file.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    refused = run_kho(["clients", "add-operator", "ops-jwt", "--jwks-file", "private.json"], folder)
    line = one_line_error(refused)
    assert "private" in line
    assert "(d)" in line
    assert str(key.as_dict(private=True)["d"]) not in refused.stderr + refused.stdout

    public_file = folder / "public.json"
    public_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    added = run_kho(["clients", "add-operator", "ops-jwt", "--jwks-file", "public.json"], folder)
    assert added.returncode == 0, added.stderr
    assert "client_secret:" not in added.stdout
    assert "private_key_jwt" in added.stdout

    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "ES256", "kid": "ops-key-1"},
        {
            "iss": "ops-jwt",
            "sub": "ops-jwt",
            "aud": TOKEN_ENDPOINT,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(12),
        },
        key,
        algorithms=["ES256"],
    )
    issued = admin_token(
        kho,
        {},
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion,
    )
    assert issued.status_code == 200, issued.text
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert kho.get("/v1/admin/clients", headers=bearer).status_code == 200


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("{not json", "not JSON"),
        (
            {
                "client_id": "portal-x",
                "name": "P",
                "kind": "portal",
                "token_endpoint_auth_method": "none",
                "redirect_uris": ["not a url"],
                "grant_types": ["authorization_code"],
            },
            "redirect_uris.0",
        ),
        (
            {
                "client_id": "agency-x",
                "name": "A",
                "kind": "agency",
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["client_credentials"],
                "scopes": ["kho:agency"],
                "colour": "blue",
            },
            "colour",
        ),
        (
            {
                "client_id": "agency-x",
                "name": "A",
                "kind": "agency",
                "token_endpoint_auth_method": "private_key_jwt",
                "grant_types": ["client_credentials"],
            },
            "jwks",
        ),
    ],
    ids=["not-json", "bad-redirect-uri", "unknown-field", "private_key_jwt-without-jwks"],
)
def test_register_refuses_a_bad_file_in_one_line_naming_the_field(
    folder: Path, content: object, named: str
) -> None:
    path = folder / "client.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    line = one_line_error(run_kho(["clients", "register", "--file", "client.json"], folder))
    assert named in line
    assert table(folder).keys().isdisjoint({"portal-x", "agency-x"})


def test_register_from_a_file(folder: Path, kho: TestClient) -> None:
    (folder / "portal.json").write_text(
        json.dumps(
            {
                "client_id": "cong-dvc",
                "name": "Cổng dịch vụ công",
                "kind": "portal",
                "token_endpoint_auth_method": "none",
                "redirect_uris": ["https://dvc.example.vn/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "scopes": ["openid", "profile"],
            }
        )
    )
    portal = run_kho(["clients", "register", "--file", "portal.json"], folder)
    assert portal.returncode == 0, portal.stderr
    assert "client_secret:" not in portal.stdout
    (folder / "agency.json").write_text(
        json.dumps(
            {
                "client_id": "so-noi-vu",
                "name": "Sở Nội vụ",
                "kind": "agency",
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["client_credentials"],
                "scopes": ["kho:agency"],
            }
        )
    )
    agency = run_kho(["clients", "register", "--file", "agency.json"], folder)
    assert agency.returncode == 0, agency.stderr
    secret = labelled(agency.stdout, "client_secret:")
    issued = kho.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "kho:agency"},
        headers=basic("so-noi-vu", secret),
    )
    assert issued.status_code == 200, issued.text
    rows = table(folder)
    assert rows["cong-dvc"] == [
        "cong-dvc",
        "portal",
        "none",
        "authorization_code,refresh_token",
        "yes",
    ]
    assert rows["so-noi-vu"] == [
        "so-noi-vu",
        "agency",
        "client_secret_basic",
        "client_credentials",
        "yes",
    ]
    # An agency may not hold kho:admin, whichever way it is registered.
    (folder / "agency.json").write_text(
        json.dumps(
            {
                "client_id": "so-noi-vu",
                "name": "Sở Nội vụ",
                "kind": "agency",
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["client_credentials"],
                "scopes": ["kho:admin"],
            }
        )
    )
    line = one_line_error(
        run_kho(["clients", "register", "--file", "agency.json", "--replace"], folder)
    )
    assert "kho:admin" in line
