"""The access log's hash chains and signed checkpoints, on SQLite and on PostgreSQL.

The property tests take one log (five owners, three checkpoints, an unchecked tail and an owner
no checkpoint covers yet), tamper with it at random inside a transaction the way someone with
write access to the database could (any column of any row, rows deleted, swapped, forged in the
middle, a checkpointed tail rewritten with every hash and the head recomputed, head rows,
checkpoints), run ``verify_all`` in that transaction, and roll back. Every tampering must be
reported, naming the owner (or checkpoint) it touched; the untouched log always verifies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.clock import FixedClock
from consent.audit import (
    GENESIS,
    HASHED_FIELDS,
    AccessLog,
    AccessLogInconsistent,
    AuditWriter,
    InclusionProof,
    LogEvent,
    NoCheckpointYet,
    ProofInvalid,
    Record,
    audit_path,
    check_chains,
    encode,
    entry_hash,
    entry_json,
    leaf_hash,
    merkle_root,
    verify_audit_path,
    verify_inclusion,
)
from consent.models import AccessLogEntry, AccessLogHead, LogCheckpoint
from storage.db import create_db_engine, make_session_factory, session_scope
from storage.migrate import upgrade
from tests.conftest import drop_postgres_database, fresh_postgres_database

START = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
SAFE_TEXT = st.characters(codec="utf-8", exclude_characters="\x00")


class LocalSigner:
    """The JwsSigner protocol over a throw-away ES256 key (Kho's provider keys in production)."""

    def __init__(self, kid: str = "test-key") -> None:
        self.kid = kid
        self.key = ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        header = {"alg": "ES256", "kid": self.kid, "typ": typ}
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

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}


# -- the log the tests tamper with -------------------------------------------------------------


@dataclass
class Built:
    backend: str
    engine: Engine
    sessions: sessionmaker[Session]
    signer: LocalSigner
    clock: FixedClock
    owners: list[uuid.UUID]
    rows: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    def log(self, session: Session) -> AccessLog:
        return AccessLog(session, self.clock, self.signer)

    def chain(self, owner: str) -> list[dict[str, Any]]:
        return sorted((r for r in self.rows if str(r["owner_id"]) == owner), key=lambda r: r["seq"])

    def checkpointed_seq(self, owner: str) -> int:
        """The owner's seq in the latest checkpoint (0 when none covers them)."""
        seq: int = self.checkpoints[-1]["heads"].get(owner, (0, b""))[0]
        return seq


ACTIONS = [
    ("agency", "document.fetch"),
    ("agency", "grant.documents"),
    ("agency", "consent.request"),
    ("owner", "consent.decide"),
    ("owner", "document.read"),
    ("delegate", "consent.revoke"),
    ("official", "statutory.fetch"),
    ("system", "consent.read"),
]


def random_event(rng: random.Random, owner: uuid.UUID) -> LogEvent:
    kind, action = rng.choice(ACTIONS)
    denied = rng.random() < 0.2
    return LogEvent(
        owner_id=owner,
        actor_kind=kind,
        actor_id=rng.choice(["portal-tn", "client-sotp", str(owner), "cb-0042", ""]),
        action=action,
        decision="denied" if denied else "allowed",
        reason=rng.choice(["grant_revoked", "", None]) if denied else None,
        on_behalf_of=rng.choice([str(uuid.uuid4()), ""]) if kind == "delegate" else None,
        agency_id=rng.choice([uuid.UUID(int=rng.getrandbits(128), version=4), None]),
        grant_id=uuid.UUID(int=rng.getrandbits(128), version=4) if kind == "agency" else None,
        statutory_id=(
            uuid.UUID(int=rng.getrandbits(128), version=4) if kind == "official" else None
        ),
        document_id=uuid.UUID(int=rng.getrandbits(128), version=4) if rng.random() < 0.5 else None,
        document_version=rng.choice([None, 0, 1, 7, 2**31 - 1]),
        purpose=rng.choice([None, "", "Cấp đổi giấy phép lái xe", "Đăng ký thường trú  "]),
    )


def build_log(url: str, backend: str) -> Built:
    upgrade(url)
    engine = create_db_engine(url)
    sessions = make_session_factory(engine)
    rng = random.Random(20260301)
    built = Built(
        backend,
        engine,
        sessions,
        LocalSigner(),
        FixedClock(START),
        [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(6)],
    )

    def appends(count: int, owners: Sequence[uuid.UUID]) -> None:
        with session_scope(sessions) as session:
            log = built.log(session)
            for _ in range(count):
                built.clock.advance(dt.timedelta(microseconds=rng.randrange(1, 5_000_000)))
                log.append(random_event(rng, rng.choice(owners)))

    def checkpoint() -> None:
        with session_scope(sessions) as session:
            built.log(session).checkpoint(built.signer)

    appends(25, built.owners[:4])
    checkpoint()
    appends(20, built.owners[:5])
    checkpoint()
    appends(15, built.owners[:5])
    checkpoint()
    # After the last checkpoint: a tail for two owners, and an owner nobody has signed for yet.
    appends(8, [built.owners[0], built.owners[1], built.owners[5]])
    appends(2, [built.owners[5]])
    with sessions() as session:
        built.rows = [
            {c.name: getattr(e, c.name) for c in AccessLogEntry.__table__.columns}
            for e in session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.id))
        ]
        for cp in session.scalars(select(LogCheckpoint).order_by(LogCheckpoint.id)):
            built.checkpoints.append(
                {"id": cp.id, "heads": {o: (s, bytes.fromhex(h)) for o, s, h in cp.heads}}
            )
    return built


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    if request.param == "postgres":
        url = fresh_postgres_database("kho_audit")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'log.db'}"
    log = build_log(url, request.param)
    yield log
    log.engine.dispose()
    if request.param == "postgres":
        drop_postgres_database(url)


# -- tamperings: each changes the log in the session and names who must be blamed --------------

Tamper = Callable[[Session, Built, st.DataObject], set[str]]
ENTRY = AccessLogEntry.__table__
TEXT_COLUMNS = {"actor_kind": 16, "actor_id": 64, "action": 48, "decision": 8}
NULLABLE_TEXT = {"on_behalf_of": 64, "reason": 64, "purpose": 1000}
UUID_COLUMNS = ("agency_id", "grant_id", "statutory_id", "document_id")
# `id` is a storage locator outside the hash (docs/access-log.md); every other column is covered.
EDITABLE = (*HASHED_FIELDS, "prev_hash", "entry_hash")


def _set(session: Session, entry_id: int, **values: Any) -> None:
    session.execute(
        update(AccessLogEntry)
        .where(AccessLogEntry.id == entry_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _new_value(data: st.DataObject, built: Built, row: dict[str, Any], column: str) -> Any:
    old = row[column]
    strategy: st.SearchStrategy[Any]
    if column in TEXT_COLUMNS:
        strategy = st.text(SAFE_TEXT, max_size=TEXT_COLUMNS[column])
    elif column in NULLABLE_TEXT:
        strategy = st.none() | st.text(SAFE_TEXT, max_size=NULLABLE_TEXT[column])
    elif column in UUID_COLUMNS:
        strategy = st.none() | st.uuids()
    elif column == "document_version":
        strategy = st.none() | st.integers(-(2**31), 2**31 - 1)
    elif column == "occurred_at":
        strategy = st.datetimes(
            min_value=dt.datetime(2000, 1, 1),
            max_value=dt.datetime(2100, 1, 1),
            timezones=st.just(dt.UTC),
        )
    elif column in ("prev_hash", "entry_hash"):
        others = [r[column] for r in built.rows] + [GENESIS]
        strategy = st.binary(min_size=32, max_size=32) | st.sampled_from(others)
    elif column == "seq":
        taken = {r["seq"] for r in built.chain(str(row["owner_id"]))}
        strategy = st.integers(-3, max(taken) + 3).filter(lambda s: s not in taken)
    else:
        assert column == "owner_id"
        free = [
            o
            for o in built.owners
            if o != old and not any(r["seq"] == row["seq"] for r in built.chain(str(o)))
        ]
        strategy = st.uuids() | st.sampled_from(free) if free else st.uuids()
    return data.draw(strategy.filter(lambda v: v != old), label=f"new {column}")


def edit_column(session: Session, built: Built, data: st.DataObject) -> set[str]:
    row = data.draw(st.sampled_from(built.rows), label="row")
    column = data.draw(st.sampled_from(EDITABLE), label="column")
    value = _new_value(data, built, row, column)
    _set(session, row["id"], **{column: value})
    return {str(row["owner_id"]), str(value)} if column == "owner_id" else {str(row["owner_id"])}


def delete_row(session: Session, built: Built, data: st.DataObject) -> set[str]:
    row = data.draw(st.sampled_from(built.rows), label="row")
    session.execute(delete(AccessLogEntry).where(AccessLogEntry.id == row["id"]))
    return {str(row["owner_id"])}


def _two_of_a_chain(built: Built, data: st.DataObject) -> tuple[dict[str, Any], dict[str, Any]]:
    owner = data.draw(st.sampled_from([str(o) for o in built.owners]), label="owner")
    chain = built.chain(owner)
    i, j = data.draw(
        st.lists(st.integers(0, len(chain) - 1), min_size=2, max_size=2, unique=True),
        label="positions",
    )
    return chain[i], chain[j]


def swap_seq(session: Session, built: Built, data: st.DataObject) -> set[str]:
    a, b = _two_of_a_chain(built, data)
    _set(session, a["id"], seq=-1)
    _set(session, b["id"], seq=a["seq"])
    _set(session, a["id"], seq=b["seq"])
    return {str(a["owner_id"])}


def swap_hashes(session: Session, built: Built, data: st.DataObject) -> set[str]:
    a, b = _two_of_a_chain(built, data)
    both = data.draw(st.booleans(), label="prev_hash too")
    _set(
        session,
        a["id"],
        entry_hash=b["entry_hash"],
        **({"prev_hash": b["prev_hash"]} if both else {}),
    )
    _set(
        session,
        b["id"],
        entry_hash=a["entry_hash"],
        **({"prev_hash": a["prev_hash"]} if both else {}),
    )
    return {str(a["owner_id"])}


def _forged(owner: str, seq: int, prev: bytes, n: int) -> dict[str, Any]:
    return {
        "owner_id": uuid.UUID(owner),
        "seq": seq,
        "occurred_at": START + dt.timedelta(days=30, seconds=n),
        "actor_kind": "agency",
        "actor_id": f"forger-{n}",
        "on_behalf_of": None,
        "agency_id": None,
        "action": "document.fetch",
        "decision": "allowed",
        "reason": None,
        "grant_id": None,
        "statutory_id": None,
        "document_id": uuid.UUID(int=n + 1),
        "document_version": 1,
        "purpose": "Kiểm tra",
        "prev_hash": prev,
    }


def _hashed(values: dict[str, Any]) -> dict[str, Any]:
    record = Record(*(values[name] for name in HASHED_FIELDS))
    return {**values, "entry_hash": entry_hash(values["prev_hash"], record)}


def _shift(session: Session, owner: str, from_seq: int) -> None:
    """seq += 1 for seq >= from_seq (through negatives: the unique key is checked per row)."""
    where = (AccessLogEntry.owner_id == uuid.UUID(owner), AccessLogEntry.seq >= from_seq)
    session.execute(update(AccessLogEntry).where(*where).values(seq=-AccessLogEntry.seq - 1))
    session.execute(
        update(AccessLogEntry)
        .where(AccessLogEntry.owner_id == uuid.UUID(owner), AccessLogEntry.seq < 0)
        .values(seq=-AccessLogEntry.seq)
    )


def insert_forged(session: Session, built: Built, data: st.DataObject) -> set[str]:
    """A forged row in the middle (later rows renumbered), or after the last one without
    touching the head; its hash recomputed over the real predecessor, or not."""
    owner = data.draw(st.sampled_from([str(o) for o in built.owners]), label="owner")
    chain = built.chain(owner)
    k = data.draw(st.integers(1, len(chain) + 1), label="at seq")
    prev = GENESIS if k == 1 else chain[k - 2]["entry_hash"]
    values = _forged(owner, k, prev, data.draw(st.integers(0, 99), label="n"))
    if data.draw(st.booleans(), label="recompute hash"):
        values = _hashed(values)
    else:
        values["entry_hash"] = data.draw(st.binary(min_size=32, max_size=32), label="hash")
    _shift(session, owner, k)
    session.execute(insert(AccessLogEntry).values(**values))
    return {owner}


def rewrite_tail(session: Session, built: Built, data: st.DataObject) -> set[str]:
    """From a checkpointed seq on, replace the owner's entries with forged ones (fewer, as many
    or more), every hash recomputed and the head row updated: only a checkpoint can tell."""
    owner = data.draw(
        st.sampled_from([str(o) for o in built.owners if built.checkpointed_seq(str(o))]),
        label="owner",
    )
    chain = built.chain(owner)
    k = data.draw(st.integers(1, built.checkpointed_seq(owner)), label="from seq")
    length = data.draw(st.integers(0, 4), label="forged entries")
    session.execute(
        delete(AccessLogEntry).where(
            AccessLogEntry.owner_id == uuid.UUID(owner), AccessLogEntry.seq >= k
        )
    )
    prev = GENESIS if k == 1 else chain[k - 2]["entry_hash"]
    for n in range(length):
        values = _hashed(_forged(owner, k + n, prev, n))
        session.execute(insert(AccessLogEntry).values(**values))
        prev = values["entry_hash"]
    last = k - 1 + length
    head = update(AccessLogHead).where(AccessLogHead.owner_id == uuid.UUID(owner))
    if last:
        session.execute(head.values(seq=last, entry_hash=prev))
    else:
        session.execute(delete(AccessLogHead).where(AccessLogHead.owner_id == uuid.UUID(owner)))
    return {owner}


def tamper_head(session: Session, built: Built, data: st.DataObject) -> set[str]:
    owner = data.draw(st.sampled_from([str(o) for o in built.owners]), label="owner")
    key = AccessLogHead.owner_id == uuid.UUID(owner)
    how = data.draw(st.sampled_from(["seq", "hash", "delete", "orphan"]), label="how")
    if how == "seq":
        seq = data.draw(st.integers(0, 100).filter(lambda s: s != len(built.chain(owner))))
        session.execute(update(AccessLogHead).where(key).values(seq=seq))
    elif how == "hash":
        forged = data.draw(st.binary(min_size=32, max_size=32), label="hash")
        session.execute(update(AccessLogHead).where(key).values(entry_hash=forged))
    elif how == "delete":
        session.execute(delete(AccessLogHead).where(key))
    else:
        owner = str(data.draw(st.uuids(), label="stranger"))
        session.execute(
            insert(AccessLogHead).values(owner_id=uuid.UUID(owner), seq=1, entry_hash=GENESIS)
        )
    return {owner}


def tamper_checkpoint(session: Session, built: Built, data: st.DataObject) -> set[str]:
    """Any column of a checkpoint, or a checkpoint other than the latest removed."""
    index = data.draw(st.integers(0, len(built.checkpoints) - 1), label="checkpoint")
    cp = built.checkpoints[index]
    row = session.get_one(LogCheckpoint, cp["id"])
    blame = {f"checkpoint {cp['id']}"} | {str(o) for o in built.owners}
    how = data.draw(
        st.sampled_from(
            ["root", "size", "created", "heads", "signature", "resigned", "other", "remove"]
        ),
        label="how",
    )
    values: dict[str, Any] = {}
    if how == "root":
        values["root_hash"] = data.draw(st.binary(min_size=32, max_size=32))
    elif how == "size":
        values["tree_size"] = row.tree_size + data.draw(st.sampled_from([-1, 1]))
    elif how == "created":
        values["created_at"] = row.created_at + dt.timedelta(microseconds=1)
    elif how == "heads":
        heads = [list(h) for h in row.heads]
        i = data.draw(st.integers(0, len(heads) - 1))
        change = data.draw(st.sampled_from(["seq", "hash", "drop", "swap", "add"]))
        if change == "seq":
            heads[i][1] += data.draw(st.sampled_from([-1, 1]))
        elif change == "hash":
            heads[i][2] = data.draw(st.binary(min_size=32, max_size=32)).hex()
        elif change == "drop":
            del heads[i]
        elif change == "swap" and len(heads) > 1:
            heads[0], heads[-1] = heads[-1], heads[0]
        else:
            heads.append([str(data.draw(st.uuids())), 1, GENESIS.hex()])
        values["heads"] = heads
    elif how == "signature":
        head, payload, sig = row.signature.split(".")
        position = data.draw(st.integers(0, len(sig) - 2))
        flipped = "A" if sig[position] != "A" else "B"
        values["signature"] = f"{head}.{payload}.{sig[:position]}{flipped}{sig[position + 1 :]}"
    elif how == "resigned":
        claims = built.signer.verify(row.signature, typ="kho-log-checkpoint+jwt")
        values["signature"] = LocalSigner(built.signer.kid).sign(
            claims, typ="kho-log-checkpoint+jwt"
        )
    elif how == "other":
        other = built.checkpoints[(index + 1) % len(built.checkpoints)]["id"]
        values["signature"] = session.get_one(LogCheckpoint, other).signature
    elif index == len(built.checkpoints) - 1:
        # Removing the latest checkpoint is the one change nothing can reveal (see the doc);
        # remove an earlier one: the next one's signed link to it breaks.
        session.execute(delete(LogCheckpoint).where(LogCheckpoint.id == built.checkpoints[0]["id"]))
        return {f"checkpoint {built.checkpoints[1]['id']}"}
    else:
        session.execute(delete(LogCheckpoint).where(LogCheckpoint.id == cp["id"]))
        return {f"checkpoint {built.checkpoints[index + 1]['id']}"}
    session.execute(
        update(LogCheckpoint)
        .where(LogCheckpoint.id == cp["id"])
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return blame


TAMPERINGS: list[Tamper] = [
    edit_column,
    delete_row,
    swap_seq,
    swap_hashes,
    insert_forged,
    rewrite_tail,
    tamper_head,
    tamper_checkpoint,
]


# -- the properties ----------------------------------------------------------------------------


def test_the_untouched_log_verifies(built: Built) -> None:
    with built.sessions() as session:
        report = built.log(session).verify_all()
        assert report.ok, report.first_failure
        assert report.entries_checked == len(built.rows) == 70
        assert report.owners_checked == 6
        assert report.checkpoints_checked == 3
        for owner in built.owners:
            single = built.log(session).verify_owner(owner)
            assert single.ok, single.first_failure
            assert single.entries_checked == len(built.chain(str(owner)))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_every_tampering_is_reported_naming_who(built: Built, data: st.DataObject) -> None:
    tamper = data.draw(st.sampled_from(TAMPERINGS), label="tampering")
    with built.sessions() as session:
        try:
            blamed = tamper(session, built, data)
            report = built.log(session).verify_all()
        finally:
            session.rollback()
    assert not report.ok, f"{tamper.__name__} went unnoticed"
    assert report.first_failure is not None
    assert any(name in report.first_failure for name in blamed), (
        f"{tamper.__name__}: {report.first_failure!r} names none of {blamed}"
    )


text_or_none = st.none() | st.text(SAFE_TEXT, max_size=64)
events = st.builds(
    LogEvent,
    owner_id=st.sampled_from([uuid.UUID(int=i, version=4) for i in range(1, 4)]),
    actor_kind=st.sampled_from(sorted({k for k, _ in ACTIONS})),
    actor_id=st.text(SAFE_TEXT, max_size=64),
    action=st.text(SAFE_TEXT, max_size=48),
    decision=st.sampled_from(["allowed", "denied"]),
    reason=text_or_none,
    on_behalf_of=text_or_none,
    agency_id=st.none() | st.uuids(),
    grant_id=st.none() | st.uuids(),
    statutory_id=st.none() | st.uuids(),
    document_id=st.none() | st.uuids(),
    document_version=st.none() | st.integers(-(2**31), 2**31 - 1),
    purpose=st.none() | st.text(SAFE_TEXT, max_size=1000),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(st.tuples(events, st.integers(0, 10**9), st.booleans()), min_size=1, max_size=12)
)
def test_any_appended_events_verify(built: Built, batch: list[tuple[LogEvent, int, bool]]) -> None:
    """Whatever text, identifiers and numbers the events carry, what is stored hashes back to
    the same chain (no loss in the database's round trip), checkpoints included."""
    salt = uuid.uuid4()
    with built.sessions() as session:
        try:
            log = built.log(session)
            for event, micros_later, checkpoint in batch:
                # Fresh owners per example: the module's log must not see these.
                owner = uuid.uuid5(salt, str(event.owner_id))
                built.clock.advance(dt.timedelta(microseconds=micros_later))
                log.append(replace(event, owner_id=owner))
                if checkpoint:
                    log.checkpoint(built.signer)
            report = log.verify_all()
        finally:
            session.rollback()
    assert report.ok, report.first_failure
    assert report.entries_checked == len(built.rows) + len(batch)


# -- the encoding ------------------------------------------------------------------------------

VECTOR = Record(
    owner_id=uuid.UUID("0b8e7a52-5f1c-4c4e-9a37-2f3d1c6b9e01"),
    seq=1,
    occurred_at=dt.datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=dt.UTC),
    actor_kind="agency",
    actor_id="client-sotp",
    on_behalf_of=None,
    agency_id=uuid.UUID("5d2c1b0a-9e8f-4a7b-8c6d-5e4f3a2b1c0d"),
    action="document.fetch",
    decision="allowed",
    reason=None,
    grant_id=uuid.UUID("9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"),
    statutory_id=None,
    document_id=uuid.UUID("1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"),
    document_version=2,
    purpose="Cấp đổi giấy phép lái xe",
)


def test_the_documented_test_vector() -> None:
    """docs/access-log.md publishes this vector; an owner's re-implementation must match."""
    body = encode(VECTOR)
    assert body[:1] == b"\x01"
    assert body[1:17] == VECTOR.owner_id.bytes  # type: ignore[union-attr]
    assert body.hex() == (
        "01"
        "0b8e7a525f1c4c4e9a372f3d1c6b9e01"
        "0000000000000001"
        "00064bf247911600"
        "0100000006" + b"agency".hex() + "010000000b" + b"client-sotp".hex() + "00"
        "015d2c1b0a9e8f4a7b8c6d5e4f3a2b1c0d"
        "010000000e" + b"document.fetch".hex() + "0100000007" + b"allowed".hex() + "00"
        "019a8b7c6d5e4f4a3b9c2d1e0f9a8b7c6d"
        "00"
        "011f2e3d4c5b6a49788695a4b3c2d1e0f9"
        "010000000000000002"
        "0100000021" + "Cấp đổi giấy phép lái xe".encode().hex()
    )
    digest = entry_hash(GENESIS, VECTOR)
    assert digest == hashlib.sha256(GENESIS + body).digest()
    assert digest.hex() == VECTOR_HASH
    assert leaf_hash(VECTOR.owner_id, 1, digest).hex() == VECTOR_LEAF


VECTOR_HASH = "8a9a7324d71b17e887655c717b4b4b77b921692d8a47db5b9410b1f59e243025"
VECTOR_LEAF = "a09c33070f16079423bb016e7ef4f606e4acebfb144f24ed6b0436dd0492e470"


def test_null_and_empty_and_field_boundaries_hash_apart() -> None:
    base = VECTOR
    variants = [
        replace_record(base, reason=""),
        replace_record(base, on_behalf_of=""),
        replace_record(base, purpose=None),
        replace_record(base, purpose=""),
        replace_record(base, actor_kind="agenc", actor_id="yclient-sotp"),
        replace_record(base, document_version=None),
        replace_record(base, document_version=0),
        replace_record(base, statutory_id=uuid.UUID(int=0)),
        replace_record(base, occurred_at=base.occurred_at + dt.timedelta(microseconds=1)),
        replace_record(base, seq=2),
    ]
    encodings = {encode(r) for r in [base, *variants]}
    assert len(encodings) == len(variants) + 1


def replace_record(record: Record, **changes: Any) -> Record:
    return record._replace(**changes)


record_strategy = st.builds(
    Record,
    owner_id=st.uuids(),
    seq=st.integers(0, 2**63 - 1),
    occurred_at=st.datetimes(timezones=st.just(dt.UTC)),
    actor_kind=st.text(SAFE_TEXT),
    actor_id=st.text(SAFE_TEXT),
    on_behalf_of=st.none() | st.text(SAFE_TEXT),
    agency_id=st.none() | st.uuids(),
    action=st.text(SAFE_TEXT),
    decision=st.text(SAFE_TEXT),
    reason=st.none() | st.text(SAFE_TEXT),
    grant_id=st.none() | st.uuids(),
    statutory_id=st.none() | st.uuids(),
    document_id=st.none() | st.uuids(),
    document_version=st.none() | st.integers(-(2**63), 2**63 - 1),
    purpose=st.none() | st.text(SAFE_TEXT),
)


@settings(max_examples=300)
@given(a=record_strategy, b=record_strategy)
def test_the_encoding_is_injective(a: Record, b: Record) -> None:
    normal_a = a._replace(occurred_at=a.occurred_at.astimezone(dt.UTC))
    normal_b = b._replace(occurred_at=b.occurred_at.astimezone(dt.UTC))
    assert (encode(a) == encode(b)) == (normal_a == normal_b)


@settings(max_examples=100)
@given(record=record_strategy)
def test_stored_text_and_uuid_objects_encode_alike(record: Record) -> None:
    """Verification reads UUIDs as stored text, append holds uuid.UUID: same bytes."""
    stored: dict[str, Any] = {
        name: str(getattr(record, name))
        for name in ("owner_id", *UUID_COLUMNS)
        if getattr(record, name) is not None
    }
    as_text = record._replace(**stored)
    assert encode(as_text) == encode(record)


def test_a_non_canonical_uuid_is_not_silently_accepted() -> None:
    with pytest.raises(ValueError, match="canonical"):
        encode(VECTOR._replace(owner_id=str(VECTOR.owner_id).upper()))


# -- the Merkle tree ---------------------------------------------------------------------------


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, recursively, as written."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = reference_root(leaves[:k]), reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def reference_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if index < k:
        return [*reference_path(index, leaves[:k]), reference_root(leaves[k:])]
    return [*reference_path(index - k, leaves[k:]), reference_root(leaves[:k])]


@pytest.mark.parametrize("size", [*range(1, 34), 100, 257])
def test_the_tree_is_rfc9162s(size: int) -> None:
    leaves = [leaf_hash(uuid.UUID(int=i), i, bytes([i % 256]) * 32) for i in range(size)]
    root = merkle_root(leaves)
    assert root == reference_root(leaves)
    for index in range(size):
        path = audit_path(leaves, index)
        assert path == reference_path(index, leaves)
        assert verify_audit_path(leaves[index], index, size, path, root)
        # The path alone does not pin the tree size (a leftmost leaf of 3 proves as of 4 too):
        # verify_inclusion takes the size from the signed claims. Past the size it fails.
        assert not verify_audit_path(leaves[index], size, size, path, root)
        assert not verify_audit_path(leaves[index], index, size, [*path, bytes(32)], root)
        if size > 1:
            assert not verify_audit_path(leaves[index], (index + 1) % size, size, path, root)
            broken = [bytes(32), *path[1:]]
            assert not verify_audit_path(leaves[index], index, size, broken, root)
    assert merkle_root([]) == hashlib.sha256(b"").digest()


# -- proofs an owner checks offline ------------------------------------------------------------


def test_each_owner_s_proof_verifies_offline_and_lies_do_not(built: Built) -> None:
    jwks = built.signer.jwks()
    with built.sessions() as session:
        log = built.log(session)
        for owner in built.owners[:5]:
            proof = InclusionProof.from_json(json.loads(json.dumps(log.proof(owner).to_json())))
            wire = [entry_json(e) for e in log.entries(owner, limit=1000)]
            claims = verify_inclusion(proof, wire, jwks)
            assert claims["checkpoint_id"] == built.checkpoints[-1]["id"]
            assert proof.head_seq == built.checkpointed_seq(str(owner))
            assert verify_inclusion(proof, log.entries(owner, limit=1000), jwks) == claims

        owner = built.owners[0]
        proof = log.proof(owner)
        wire = [entry_json(e) for e in log.entries(owner, limit=1000)]
        stranger = LocalSigner(built.signer.kid).jwks()
        lies: list[tuple[InclusionProof, list[dict[str, Any]], dict[str, Any]]] = [
            (proof, wire, stranger),
            (replace(proof, head_seq=proof.head_seq - 1), wire, jwks),
            (replace(proof, leaf_index=(proof.leaf_index + 1) % proof.tree_size), wire, jwks),
            (replace(proof, audit_path=(bytes(32), *proof.audit_path[1:])), wire, jwks),
            (replace(proof, root_hash=bytes(32)), wire, jwks),
            (proof, wire[: proof.head_seq - 1], jwks),
            (proof, [{**wire[0], "purpose": "khác"}, *wire[1:]], jwks),
            (
                proof,
                [{**wire[0], "occurred_at_us": wire[0]["occurred_at_us"] + 1}, *wire[1:]],
                jwks,
            ),
            (proof, [wire[1], wire[0], *wire[2:]], jwks),
            (proof, [entry_json(e) for e in log.entries(built.owners[1], limit=1000)], jwks),
        ]
        for lie, entries, keys in lies:
            with pytest.raises(ProofInvalid):
                verify_inclusion(lie, entries, keys)


def test_an_owner_no_checkpoint_covers_gets_a_not_found(built: Built) -> None:
    with built.sessions() as session, pytest.raises(NoCheckpointYet):
        built.log(session).proof(built.owners[5])


# -- checkpoints refuse to sign a rewritten history --------------------------------------------


def test_checkpoint_refuses_a_rewritten_checkpointed_history(built: Built) -> None:
    with built.sessions() as session:
        try:
            owner = str(built.owners[2])
            chain = built.chain(owner)
            session.execute(
                delete(AccessLogEntry).where(
                    AccessLogEntry.owner_id == uuid.UUID(owner), AccessLogEntry.seq >= 2
                )
            )
            values = _hashed(_forged(owner, 2, chain[0]["entry_hash"], 0))
            session.execute(insert(AccessLogEntry).values(**values))
            session.execute(
                update(AccessLogHead)
                .where(AccessLogHead.owner_id == uuid.UUID(owner))
                .values(seq=2, entry_hash=values["entry_hash"])
            )
            with pytest.raises(AccessLogInconsistent, match=owner):
                built.log(session).checkpoint(built.signer)
        finally:
            session.rollback()


# -- what a database writer without the signing key can still do (docs/access-log.md) ----------


def test_what_cannot_be_detected_after_the_last_checkpoint(built: Built) -> None:
    """A forged entry appended after the last checkpoint, with the head moved along, verifies:
    this is the window that frequent checkpoints keep short. Owners' earlier proofs still
    verify too (the forgery comes after what they cover)."""
    owner = str(built.owners[0])
    chain = built.chain(owner)
    with built.sessions() as session:
        try:
            values = _hashed(_forged(owner, len(chain) + 1, chain[-1]["entry_hash"], 1))
            session.execute(insert(AccessLogEntry).values(**values))
            session.execute(
                update(AccessLogHead)
                .where(AccessLogHead.owner_id == uuid.UUID(owner))
                .values(seq=len(chain) + 1, entry_hash=values["entry_hash"])
            )
            report = built.log(session).verify_all()
            assert report.ok, report.first_failure
        finally:
            session.rollback()


# -- the hot path, without a database ----------------------------------------------------------


def test_check_chains_on_rows_in_memory(built: Built) -> None:
    with built.sessions() as session:
        rows = [tuple(r) for r in built.log(session).stream_entries()]
    report = check_chains(rows)
    assert report.ok and report.entries_checked == 70 and report.owners_checked == 6
    broken = list(rows)
    broken[10] = (*broken[10][:5], "someone-else", *broken[10][6:])
    bad = check_chains(broken)
    assert not bad.ok
    assert bad.failure is not None and bad.failure.problem == "hash_mismatch"
    assert bad.failure.entry_id == rows[10][0]


# -- appends: concurrency and the denial writer ------------------------------------------------


def _empty_log(backend: str, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = (
        fresh_postgres_database("kho_audit")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'log.db'}"
    )
    upgrade(url)
    engine = create_db_engine(url)
    yield make_session_factory(engine)
    engine.dispose()
    if backend == "postgres":
        drop_postgres_database(url)


@pytest.fixture(params=BACKENDS)
def empty_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    yield from _empty_log(request.param, tmp_path)


@pytest.fixture
def empty_pg_log(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    yield from _empty_log("postgres", tmp_path)


def test_eight_threads_appending_for_one_new_owner_make_one_gapless_chain(
    empty_log: sessionmaker[Session],
) -> None:
    owner = uuid.uuid4()
    clock = FixedClock(START)
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with session_scope(empty_log) as session:
                    AccessLog(session, clock).append(
                        LogEvent(
                            owner,
                            "agency",
                            f"client-{n}",
                            "document.fetch",
                            "allowed",
                            document_version=i,
                        )
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    with empty_log() as session:
        seqs = session.scalars(
            select(AccessLogEntry.seq)
            .where(AccessLogEntry.owner_id == owner)
            .order_by(AccessLogEntry.seq)
        ).all()
        assert seqs == list(range(1, threads * per_thread + 1))
        report = AccessLog(session, clock).verify_owner(owner)
        assert report.ok, report.first_failure
        assert report.entries_checked == threads * per_thread
        by_client = session.execute(
            text("SELECT actor_id, count(*) FROM access_log_entries GROUP BY actor_id")
        ).all()
        assert sorted(count for _, count in by_client) == [per_thread] * threads


@pytest.mark.postgres
def test_different_owners_never_wait_for_each_other(empty_pg_log: sessionmaker[Session]) -> None:
    """Row locks on PostgreSQL (SQLite has one writer at a time, by design)."""
    empty_log = empty_pg_log
    clock = FixedClock(START)
    first, second = uuid.uuid4(), uuid.uuid4()
    for owner in (first, second):
        with session_scope(empty_log) as session:
            AccessLog(session, clock).append(
                LogEvent(owner, "owner", "me", "document.read", "allowed")
            )
    holder = empty_log()
    try:
        AccessLog(holder, clock).append(LogEvent(first, "owner", "me", "document.read", "allowed"))
        # `first`'s head stays locked by `holder`: `second` must not notice.
        with session_scope(empty_log) as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            started = time.monotonic()
            AccessLog(session, clock).append(
                LogEvent(second, "owner", "me", "document.read", "allowed")
            )
            assert time.monotonic() - started < 1
        # ... while another append for `first` does wait for it.
        waiter = empty_log()
        try:
            waiter.execute(text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                AccessLog(waiter, clock).append(LogEvent(first, "owner", "me", "x", "allowed"))
        finally:
            waiter.rollback()
            waiter.close()
    finally:
        holder.rollback()
        holder.close()


def test_a_denial_is_kept_when_the_request_rolls_back(empty_log: sessionmaker[Session]) -> None:
    clock = FixedClock(START)
    owner = uuid.uuid4()
    writer = AuditWriter(empty_log, clock)

    def failing_request() -> None:
        with session_scope(empty_log) as request_session:
            request_session.execute(select(AccessLogHead)).all()
            denial = LogEvent(
                owner, "agency", "client-x", "document.fetch", "denied", reason="grant_revoked"
            )
            writer.record(denial)
            raise RuntimeError("the request fails after the denial")

    with pytest.raises(RuntimeError):
        failing_request()
    with empty_log() as session:
        (entry,) = AccessLog(session, clock).entries(owner)
        assert (entry.decision, entry.reason, entry.seq) == ("denied", "grant_revoked", 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"actor_kind": "robot"}, "actor_kind"),
        ({"decision": "maybe"}, "decision"),
        ({"actor_id": "x" * 65}, "actor_id"),
        ({"purpose": "a\x00b"}, "NUL"),
        ({"reason": "\ud800"}, "surrogate"),
    ],
)
def test_append_refuses_what_the_table_cannot_hold_exactly(
    change: dict[str, Any], message: str
) -> None:
    event = replace(LogEvent(uuid.uuid4(), "agency", "c", "document.fetch", "allowed"), **change)
    with pytest.raises(ValueError, match=message):
        event.check()
