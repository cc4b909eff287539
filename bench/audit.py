"""Access-log verification on PostgreSQL: how many entries per second, and where the time goes.

    python -m bench.audit [--entries 200000] [--owners 1000] [--rounds 3] [--keep]

A fresh database on the test server (``scripts/services.sh start``) is filled with N entries
spread over the owners in time order (interleaved, as real traffic is), hashed with
``consent.audit``'s own encoder and written with ``COPY`` (not N appends), plus the head rows and
one signed checkpoint. Then, interleaved round-robin by ``bench.harness``:

* ``stream rows only``: the same Core select ``verify_all`` issues, iterated and discarded: the
  floor set by PostgreSQL, psycopg and SQLAlchemy's row objects;
* ``hash core``: ``consent.audit.check_chains`` over rows already in memory (encode, SHA-256,
  link checks) — the part Kho's code owns;
* ``verify_all``: end to end (snapshot, both streams, heads, checkpoint signature and root).

Prints entries/second for each (target: ``verify_all`` >= 200,000 entries/s) and the plan
PostgreSQL chose for the entry stream. The database is dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import secrets
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from bench.harness import Bench, markdown
from common.clock import FixedClock
from consent.audit import (
    GENESIS,
    AccessLog,
    Record,
    check_chains,
    entry_hash,
    entry_select,
)
from consent.models import AccessLogEntry
from storage.db import create_db_engine, make_session_factory, session_scope
from storage.migrate import upgrade
from tests.services import setting

ACTIONS = [
    ("agency", "document.fetch"),
    ("agency", "grant.documents"),
    ("agency", "consent.request"),
    ("owner", "consent.decide"),
    ("owner", "document.read"),
    ("delegate", "consent.decide"),
    ("official", "statutory.fetch"),
]
PURPOSES = [
    "Cấp đổi giấy phép lái xe",
    "Đăng ký thường trú",
    "Cấp phiếu lý lịch tư pháp",
    "Đăng ký kết hôn",
    "Hỗ trợ học bổng",
]
COLUMNS = (
    "owner_id",
    "seq",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "on_behalf_of",
    "agency_id",
    "action",
    "decision",
    "reason",
    "grant_id",
    "statutory_id",
    "document_id",
    "document_version",
    "purpose",
    "prev_hash",
    "entry_hash",
)


class BenchSigner:
    """An ES256 signer with a throw-away key (the protocol Kho's provider keys implement)."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "bench"}, private=True)

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        header = {"alg": "ES256", "kid": "bench", "typ": typ}
        return jws.serialize_compact(
            header, json.dumps(claims).encode(), self.key, algorithms=["ES256"]
        )

    def verify(self, token: str, *, typ: str) -> dict[str, Any]:
        try:
            obj = jws.deserialize_compact(token, self.key, algorithms=["ES256"])
        except JoseError as exc:
            raise ValueError("invalid signature") from exc
        if obj.headers().get("typ") != typ:
            raise ValueError("unexpected type")
        claims: dict[str, Any] = json.loads(obj.payload)
        return claims


def _require(name: str) -> str:
    value = setting(name)
    if not value:
        sys.exit(f"{name} is not set: start the test servers (scripts/services.sh start)")
    return value


def fresh_database() -> tuple[str, str]:
    admin_url = _require("KHO_TEST_PG_ADMIN_URL")
    name = f"kho_bench_audit_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(_require("KHO_TEST_DATABASE_URL")).set(database=name)
    return url.render_as_string(hide_password=False), admin_url


def drop_database(url: str, admin_url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def fill(engine: Engine, entries: int, owners: int, seed: int = 7) -> float:
    """Write ``entries`` chained entries over ``owners`` owners with COPY; returns seconds."""
    rng = random.Random(seed)
    started = time.perf_counter()
    owner_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(owners)]
    agencies = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(40)]
    grants = {
        o: [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(3)] for o in owner_ids
    }
    documents = {
        o: [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(4)] for o in owner_ids
    }
    seqs = dict.fromkeys(owner_ids, 0)
    heads = dict.fromkeys(owner_ids, GENESIS)
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY access_log_entries ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for _ in range(entries):
                owner = rng.choice(owner_ids)
                moment += dt.timedelta(microseconds=rng.randrange(1, 2_000_000))
                kind, action = rng.choice(ACTIONS)
                denied = rng.random() < 0.05
                agency = rng.choice(agencies) if kind in ("agency", "official") else None
                record = Record(
                    owner_id=owner,
                    seq=seqs[owner] + 1,
                    occurred_at=moment,
                    actor_kind=kind,
                    actor_id=f"client-{agency.hex[:8]}" if agency else str(owner),
                    on_behalf_of=str(owner) if kind == "delegate" else None,
                    agency_id=agency,
                    action=action,
                    decision="denied" if denied else "allowed",
                    reason="grant_revoked" if denied else None,
                    grant_id=rng.choice(grants[owner]) if kind == "agency" else None,
                    statutory_id=None,
                    document_id=rng.choice(documents[owner]) if "document" in action else None,
                    document_version=rng.randrange(1, 4) if "document" in action else None,
                    purpose=rng.choice(PURPOSES) if kind == "agency" else None,
                )
                digest = entry_hash(heads[owner], record)
                copy.write_row(
                    [
                        None if v is None else str(v) if isinstance(v, uuid.UUID) else v
                        for v in record
                    ]
                    + [heads[owner], digest]
                )
                seqs[owner] = record.seq
                heads[owner] = digest
        with cursor.copy("COPY access_log_heads (owner_id, seq, entry_hash) FROM STDIN") as copy:
            for owner in owner_ids:
                if seqs[owner]:
                    copy.write_row([str(owner), seqs[owner], heads[owner]])
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE access_log_entries"))
        conn.execute(text("VACUUM ANALYZE access_log_heads"))
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)

    url, admin_url = fresh_database()
    engine = create_db_engine(url)
    try:
        upgrade(url)
        print(f"filling {args.entries:,} entries over {args.owners:,} owners ...", file=sys.stderr)
        seconds = fill(engine, args.entries, args.owners)
        print(
            f"filled in {seconds:.1f} s ({args.entries / seconds:,.0f} entries/s incl. hashing)",
            file=sys.stderr,
        )
        sessions = make_session_factory(engine)
        clock = FixedClock(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
        signer = BenchSigner()
        with session_scope(sessions) as session:
            checkpoint = AccessLog(session, clock).checkpoint(signer)
        print(f"checkpoint {checkpoint.id}: {checkpoint.tree_size} owners", file=sys.stderr)

        ordered = entry_select().order_by(AccessLogEntry.owner_id, AccessLogEntry.seq)
        with engine.connect() as conn:
            plan = conn.execute(text("EXPLAIN " + str(ordered.compile(engine)))).scalars().all()
        with sessions() as session:
            in_memory = [tuple(row) for row in AccessLog(session, clock).stream_entries()]

        def stream_only() -> None:
            with sessions() as session:
                for _ in AccessLog(session, clock).stream_entries():
                    pass

        def hash_core() -> None:
            report = check_chains(in_memory)
            assert report.ok and report.entries_checked == args.entries, report

        def verify_all() -> None:
            with sessions() as session:
                report = AccessLog(session, clock, signer).verify_all()
                session.rollback()
            assert report.ok and report.entries_checked == args.entries, report

        group = f"access log: {args.entries:,} entries, {args.owners:,} owners"
        bench = Bench(rounds=args.rounds)
        bench.add(group, "stream rows only (AccessLog.stream_entries)", stream_only, baseline=True)
        bench.add(group, "hash core (check_chains, rows in memory)", hash_core)
        bench.add(group, "verify_all (end to end)", verify_all)
        results = bench.run()
        print()
        print(markdown(results))
        print("| case | median s | entries/s |")
        print("|---|---:|---:|")
        for result in results[group]:
            rate = args.entries / result.median
            print(f"| {result.case.label} | {result.median:.3f} | {rate:,.0f} |")
        print()
        print("PostgreSQL plan of the entry stream:")
        for line in plan:
            print(f"    {line}")
    finally:
        engine.dispose()
        if args.keep:
            print(f"kept {url}", file=sys.stderr)
        else:
            drop_database(url, admin_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
