"""The access log through HTTP and through the ``kho`` command, on the embedded backends and on
PostgreSQL + MinIO: owners read only their own entries and check them against a signed
checkpoint with nothing but the published JWKS; operators checkpoint and verify; tampering with
a row in the database is named.

The proof is checked twice: with ``consent.audit.verify_inclusion``, and with a re-implementation
written here from ``docs/access-log.md`` (joserfc for the signature, hashlib for the rest), which
is what an owner's own tool would do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import text
from starlette.routing import NoMatchFound

from api.app import create_app
from api.routers import access_log
from consent.audit import AccessLog, AuditWriter, InclusionProof, LogEvent, verify_inclusion
from storage.db import session_scope
from tests.conftest import KhoEnv, Owner

KHO = str(Path(sys.executable).with_name("kho"))
ZERO = "00" * 32


@pytest.fixture
def env(kho_env: KhoEnv) -> KhoEnv:
    """``kho_env`` with the access-log router, until ``api/app.py`` registers it itself."""
    app = cast(FastAPI, kho_env.client.app)
    if not _serves_access_log(app):
        app.include_router(access_log.router)
    return kho_env


ROUTES = {
    "read_access_log": "/v1/access-log",
    "read_access_log_proof": "/v1/access-log/proof",
    "create_checkpoint": "/v1/admin/access-log/checkpoints",
    "verify_access_log": "/v1/admin/access-log/verify",
}


def _serves_access_log(app: FastAPI) -> bool:
    try:
        return all(app.url_path_for(name) == path for name, path in ROUTES.items())
    except NoMatchFound:
        return False


def test_the_app_registers_the_access_log_routes(embedded_env: KhoEnv) -> None:
    app = create_app(embedded_env.settings, container=embedded_env.container)
    assert _serves_access_log(app), "api/app.py does not include api.routers.access_log yet"


def record(env: KhoEnv, *events: LogEvent) -> None:
    """What the consent service does: append in the request's transaction."""
    with session_scope(env.container.sessions) as session:
        log = AccessLog(session, env.container.clock)
        for event in events:
            log.append(event)


def fetch(owner: Owner, n: int, **extra: Any) -> LogEvent:
    return LogEvent(
        owner_id=owner.account_id,
        actor_kind="agency",
        actor_id="client-so-tu-phap",
        action="document.fetch",
        decision="allowed",
        agency_id=uuid.UUID(int=7),
        grant_id=uuid.UUID(int=100 + n),
        document_id=uuid.UUID(int=200 + n),
        document_version=n,
        purpose="Cấp phiếu lý lịch tư pháp",
        **extra,
    )


# -- owners ------------------------------------------------------------------------------------


def test_an_owner_reads_only_their_own_log(env: KhoEnv) -> None:
    alice, bob = env.citizen(), env.citizen()
    record(env, fetch(alice, 1), fetch(bob, 1), fetch(alice, 2), fetch(bob, 2), fetch(alice, 3))
    record(
        env,
        LogEvent(
            alice.account_id,
            "delegate",
            "0b8e7a52-5f1c-4c4e-9a37-2f3d1c6b9e01",
            "consent.decide",
            "allowed",
            on_behalf_of=str(alice.account_id),
        ),
    )
    AuditWriter(env.container.sessions, env.container.clock).record(
        LogEvent(
            alice.account_id,
            "agency",
            "client-x",
            "document.fetch",
            "denied",
            reason="grant_revoked",
        )
    )

    first = env.client.get("/v1/access-log", params={"limit": 4}, headers=env.headers(alice))
    assert first.status_code == 200, first.text
    page = first.json()
    assert [item["seq"] for item in page["items"]] == [1, 2, 3, 4]
    assert page["next_after_seq"] == 4
    rest = env.client.get(
        "/v1/access-log", params={"after_seq": 4, "limit": 4}, headers=env.headers(alice)
    ).json()
    assert [item["seq"] for item in rest["items"]] == [5]
    assert rest["next_after_seq"] is None
    items = page["items"] + rest["items"]
    assert {item["owner_id"] for item in items} == {str(alice.account_id)}
    assert (items[3]["actor_kind"], items[3]["on_behalf_of"]) == ("delegate", str(alice.account_id))
    assert (items[4]["decision"], items[4]["reason"]) == ("denied", "grant_revoked")
    assert items[0]["prev_hash"] == ZERO
    for before, after in itertools.pairwise(items):
        assert after["prev_hash"] == before["entry_hash"]

    theirs = env.client.get("/v1/access-log", headers=env.headers(bob)).json()["items"]
    assert [item["seq"] for item in theirs] == [1, 2]
    assert {item["owner_id"] for item in theirs} == {str(bob.account_id)}
    assert not {item["id"] for item in theirs} & {item["id"] for item in items}

    assert env.client.get("/v1/access-log").status_code == 401
    for bad in ({"limit": 201}, {"limit": 0}, {"after_seq": -1}):
        answer = env.client.get("/v1/access-log", params=bad, headers=env.headers(alice))
        assert answer.status_code == 422, bad


def test_the_proof_verifies_with_nothing_but_the_published_keys(env: KhoEnv) -> None:
    alice, bob, carol = env.citizen(), env.citizen(), env.citizen()
    record(env, *(fetch(owner, n) for n in range(3) for owner in (alice, bob, carol)))

    early = env.client.get("/v1/access-log/proof", headers=env.headers(alice))
    assert early.status_code == 404
    assert early.json()["code"] == "access_log_not_checkpointed"

    assert env.client.post("/v1/admin/access-log/checkpoints").status_code == 401
    owner_try = env.client.post("/v1/admin/access-log/checkpoints", headers=env.headers(alice))
    assert owner_try.status_code == 403
    made = env.client.post("/v1/admin/access-log/checkpoints", headers=env.operator_headers())
    assert made.status_code == 201, made.text
    checkpoint = made.json()
    assert checkpoint["tree_size"] == 3
    record(env, fetch(alice, 9))  # after the checkpoint: in the log, not yet in a proof

    answer = env.client.get("/v1/access-log/proof", headers=env.headers(alice))
    assert answer.status_code == 200, answer.text
    proof = answer.json()
    assert proof["checkpoint"] == checkpoint
    assert proof["head_seq"] == 3
    assert [e["seq"] for e in proof["entries"]] == [1, 2, 3]
    jwks = env.client.get("/.well-known/jwks.json").json()

    claims = owner_side_check(proof, jwks)
    assert claims["checkpoint_id"] == checkpoint["id"]

    whole_log = env.client.get("/v1/access-log", headers=env.headers(alice)).json()["items"]
    assert len(whole_log) == 4
    assert verify_inclusion(InclusionProof.from_json(proof), whole_log, jwks) == claims
    assert verify_inclusion(InclusionProof.from_json(proof), proof["entries"], jwks) == claims


def owner_side_check(proof: dict[str, Any], jwks: dict[str, Any]) -> dict[str, Any]:
    """docs/access-log.md, "Checking a proof", with joserfc and hashlib only."""
    token = jws.deserialize_compact(
        proof["checkpoint"]["signature"],
        KeySet.import_key_set(cast(Any, jwks)),
        algorithms=["ES256"],
    )
    assert token.headers()["typ"] == "kho-log-checkpoint+jwt"
    claims: dict[str, Any] = json.loads(token.payload)
    assert claims["log"] == "kho-access-log/1"
    assert claims["root_hash"] == proof["checkpoint"]["root_hash"]
    assert claims["tree_size"] == proof["tree_size"] == proof["checkpoint"]["tree_size"]

    prev = bytes(32)
    for seq, entry in enumerate(proof["entries"], start=1):
        assert entry["seq"] == seq and entry["owner_id"] == proof["owner_id"]
        assert entry["prev_hash"] == prev.hex()
        moment = dt.datetime.fromisoformat(entry["occurred_at"])
        assert (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
            microseconds=1
        ) == entry["occurred_at_us"]
        digest = hashlib.sha256(prev + encode_from_the_doc(entry)).digest()
        assert digest.hex() == entry["entry_hash"] == proof["entry_hashes"][seq - 1]
        prev = digest
    assert prev.hex() == proof["head_hash"]

    leaf = hashlib.sha256(
        b"\x00"
        + uuid.UUID(proof["owner_id"]).bytes
        + proof["head_seq"].to_bytes(8, "big")
        + bytes.fromhex(proof["head_hash"])
    ).digest()
    root = rfc9162_root_from_path(
        leaf,
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["audit_path"]],
    )
    assert root.hex() == claims["root_hash"]
    return claims


def encode_from_the_doc(e: dict[str, Any]) -> bytes:
    def text_(v: str | None) -> bytes:
        return b"\x00" if v is None else b"\x01" + len(v.encode()).to_bytes(4, "big") + v.encode()

    def uuid_(v: str | None) -> bytes:
        return b"\x00" if v is None else b"\x01" + uuid.UUID(v).bytes

    def int_(v: int | None) -> bytes:
        return b"\x00" if v is None else b"\x01" + v.to_bytes(8, "big", signed=True)

    return b"".join(
        [
            b"\x01",
            uuid.UUID(e["owner_id"]).bytes,
            e["seq"].to_bytes(8, "big"),
            e["occurred_at_us"].to_bytes(8, "big", signed=True),
            text_(e["actor_kind"]),
            text_(e["actor_id"]),
            text_(e["on_behalf_of"]),
            uuid_(e["agency_id"]),
            text_(e["action"]),
            text_(e["decision"]),
            text_(e["reason"]),
            uuid_(e["grant_id"]),
            uuid_(e["statutory_id"]),
            uuid_(e["document_id"]),
            int_(e["document_version"]),
            text_(e["purpose"]),
        ]
    )


def rfc9162_root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2; returns the root the path leads to."""
    assert 0 <= index < size
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn // 2, sn // 2
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn // 2, sn // 2
    assert sn == 0
    return r


# -- operators ---------------------------------------------------------------------------------


def test_operator_verify_names_a_tampered_entry(env: KhoEnv) -> None:
    alice, bob = env.citizen(), env.citizen()
    record(env, *(fetch(owner, n) for n in range(4) for owner in (alice, bob)))
    assert (
        env.client.post(
            "/v1/admin/access-log/checkpoints", headers=env.operator_headers()
        ).status_code
        == 201
    )
    record(env, fetch(bob, 5))

    assert env.client.get("/v1/admin/access-log/verify").status_code == 401
    assert (
        env.client.get("/v1/admin/access-log/verify", headers=env.headers(alice)).status_code == 403
    )
    clean = env.client.get("/v1/admin/access-log/verify", headers=env.operator_headers())
    assert clean.status_code == 200, clean.text
    report = clean.json()
    assert report["ok"], report
    assert (report["entries_checked"], report["owners_checked"], report["checkpoints_checked"]) == (
        9,
        2,
        1,
    )

    entry_id = tamper(env, alice, seq=2)
    dirty = env.client.get("/v1/admin/access-log/verify", headers=env.operator_headers()).json()
    assert not dirty["ok"]
    assert dirty["problem"] == "hash_mismatch"
    assert str(alice.account_id) in dirty["first_failure"]
    assert f"seq 2, entry {entry_id}" in dirty["first_failure"]


def tamper(env: KhoEnv, owner: Owner, *, seq: int) -> int:
    """What someone with write access to the database does: change a column in place."""
    with env.container.engine.begin() as conn:
        entry_id: int = conn.execute(
            text("SELECT id FROM access_log_entries WHERE owner_id = :o AND seq = :s"),
            {"o": str(owner.account_id), "s": seq},
        ).scalar_one()
        conn.execute(
            text("UPDATE access_log_entries SET purpose = :p WHERE id = :i"),
            {"p": "Mục đích khác", "i": entry_id},
        )
    return entry_id


# -- the kho command ---------------------------------------------------------------------------


def test_the_kho_command_has_audit(tmp_path: Path) -> None:
    result = subprocess.run(
        [KHO, "audit", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "verify" in result.stdout and "checkpoint" in result.stdout


def run_audit(env: KhoEnv, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
    clean["KHO_DATA_DIR"] = str(env.settings.data_dir)
    if env.settings.database_url:
        clean["KHO_DATABASE_URL"] = env.settings.database_url
    return subprocess.run(
        [KHO, "audit", *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_kho_audit_verify_and_checkpoint(env: KhoEnv, tmp_path: Path) -> None:
    alice, bob = env.citizen(), env.citizen()
    record(env, *(fetch(owner, n) for n in range(3) for owner in (alice, bob)))
    assert (
        env.client.post(
            "/v1/admin/access-log/checkpoints", headers=env.operator_headers()
        ).status_code
        == 201
    )

    made = run_audit(env, "checkpoint", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("checkpoint 2: 2 owners, root ")

    clean = run_audit(env, "verify", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    lines = clean.stdout.splitlines()
    assert len(lines) == 1, clean.stdout
    assert "access log verified: 6 entries, 2 owners, 2 checkpoints" in lines[0]
    assert "entries/s" in lines[0]

    entry_id = tamper(env, bob, seq=3)
    dirty = run_audit(env, "verify", cwd=tmp_path)
    assert dirty.returncode == 1, dirty.stderr
    lines = dirty.stdout.splitlines()
    assert len(lines) == 1, dirty.stdout
    assert str(bob.account_id) in lines[0]
    assert f"seq 3, entry {entry_id}: hash_mismatch" in lines[0]
    assert "Traceback" not in dirty.stderr
