"""The access log: one hash chain per owner, and signed checkpoints over every chain.

Every authorization decision about an owner's data (allowed or denied) is one
:class:`~consent.models.AccessLogEntry`. Entry ``n`` of an owner carries
``entry_hash = SHA-256(prev_hash || encode(entry))`` where ``prev_hash`` is entry ``n - 1``'s
hash (32 zero bytes for the first), so changing, removing, inserting or reordering an entry
breaks the chain from that point on. ``AccessLogHead`` holds each chain's last ``(seq, hash)``:
it is the row appends lock, and it makes removing a chain's last entries visible.

A checkpoint is a Merkle tree (RFC 9162 hashing) over every owner's head, signed with Kho's
published ES256 key. Rewriting a chain consistently (every hash and the head recomputed) is
caught by any checkpoint taken after the rewritten entry; an owner checks their own entries
against the latest checkpoint with :func:`verify_inclusion` and nothing but the JWKS.

The byte encoding is specified in ``docs/access-log.md`` so that owners can re-implement it;
:data:`HASHED_FIELDS` and the ``_text``/``_uuid``/``_int`` encoders below are that
specification in code. Verification is the hot path (every row of every chain), so the row
loop in :class:`_ChainPass` is written for speed: memoised field encodings, one ``join`` and
one SHA-256 per row, no per-row JSON or object construction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, cast

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import (
    DateTime,
    Select,
    String,
    Table,
    insert,
    literal,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.clock import Clock
from common.errors import Conflict, NotFound
from consent.models import AccessLogEntry, AccessLogHead, LogCheckpoint
from consent.signing import JwsSigner
from storage.db import DatabaseUnavailable, session_scope

FORMAT_VERSION: Final = 1
GENESIS: Final = bytes(32)
CHECKPOINT_TYP: Final = "kho-log-checkpoint+jwt"
CHECKPOINT_LOG: Final = "kho-access-log/1"
CHECKPOINT_ALGORITHM: Final = "ES256"

ACTOR_KINDS: Final = frozenset({"agency", "owner", "delegate", "official", "operator", "system"})
DECISIONS: Final = frozenset({"allowed", "denied"})

# Column widths of consent.models.AccessLogEntry: a longer value would be refused by
# PostgreSQL (and silently kept by SQLite), so append refuses it first, on both.
_TEXT_LIMITS: Final = {
    "actor_kind": 16,
    "actor_id": 64,
    "on_behalf_of": 64,
    "action": 48,
    "decision": 8,
    "reason": 64,
    "purpose": 1000,
}

_LOOKUP_CHUNK = 400
_STREAM_BATCH = 5000
_STREAM_CHUNK = 1000
_MEMO_LIMIT = 1 << 16
# Postgres advisory-lock key that serialises checkpoint creation ("khoc").
_CHECKPOINT_LOCK = 0x6B686F63


# -- the encoding ------------------------------------------------------------------------------


class Record(NamedTuple):
    """The hashed fields of an entry, in encoding order (see ``docs/access-log.md``).

    UUID fields may be :class:`uuid.UUID` or their canonical 36-character lowercase text (as
    stored); ``occurred_at`` is UTC (a naive value is taken as UTC, as SQLite returns it).
    """

    owner_id: uuid.UUID | str
    seq: int
    occurred_at: dt.datetime
    actor_kind: str
    actor_id: str
    on_behalf_of: str | None
    agency_id: uuid.UUID | str | None
    action: str
    decision: str
    reason: str | None
    grant_id: uuid.UUID | str | None
    statutory_id: uuid.UUID | str | None
    document_id: uuid.UUID | str | None
    document_version: int | None
    purpose: str | None


HASHED_FIELDS: Final = Record._fields

_NULL: Final = b"\x00"
_PRESENT: Final = b"\x01"
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_SEQ_TIME = struct.Struct(">Qq")  # seq (unsigned), occurred_at in µs since the epoch (signed)
_VERSION_BYTE: Final = bytes([FORMAT_VERSION])
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)


def _uuid_bytes(value: uuid.UUID | str) -> bytes:
    if isinstance(value, uuid.UUID):
        return value.bytes
    parsed = uuid.UUID(value)
    # uuid.UUID also reads braces, URNs and upper case: only the stored canonical form counts.
    if str(parsed) != value:
        raise ValueError(f"not a canonical UUID: {value!r}")
    return parsed.bytes


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    raw = value.encode("utf-8")
    return _PRESENT + _U32.pack(len(raw)) + raw


def _uuid(value: uuid.UUID | str | None) -> bytes:
    if value is None:
        return _NULL
    return _PRESENT + _uuid_bytes(value)


def _int(value: int | None) -> bytes:
    if value is None:
        return _NULL
    return _PRESENT + _I64.pack(value)


def micros(moment: dt.datetime) -> int:
    """Microseconds since 1970-01-01T00:00:00Z (a naive value is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)


def _owner_prefix(owner_id: uuid.UUID | str) -> bytes:
    return _VERSION_BYTE + _uuid_bytes(owner_id)


def encode(record: Record) -> bytes:
    """The canonical encoding of an entry's fields (everything hashed after ``prev_hash``)."""
    r = record
    return b"".join(
        (
            _owner_prefix(r.owner_id),
            _SEQ_TIME.pack(r.seq, micros(r.occurred_at)),
            _text(r.actor_kind),
            _text(r.actor_id),
            _text(r.on_behalf_of),
            _uuid(r.agency_id),
            _text(r.action),
            _text(r.decision),
            _text(r.reason),
            _uuid(r.grant_id),
            _uuid(r.statutory_id),
            _uuid(r.document_id),
            _int(r.document_version),
            _text(r.purpose),
        )
    )


def entry_hash(prev_hash: bytes, record: Record) -> bytes:
    """``SHA-256(prev_hash || encode(record))``: the chain link of one entry."""
    if len(prev_hash) != 32:
        raise ValueError("prev_hash must be 32 bytes")
    return hashlib.sha256(prev_hash + encode(record)).digest()


def record_of(entry: AccessLogEntry) -> Record:
    return Record(*(getattr(entry, name) for name in HASHED_FIELDS))


# -- the Merkle tree over chain heads (RFC 9162 section 2.1) ----------------------------------


def leaf_hash(owner_id: uuid.UUID | str, seq: int, head_hash: bytes) -> bytes:
    """``SHA-256(0x00 || owner_id (16 bytes) || seq (u64) || head_hash)``."""
    return hashlib.sha256(b"\x00" + _uuid_bytes(owner_id) + _U64.pack(seq) + head_hash).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    # Pairing left to right and lifting an unpaired last node unchanged builds exactly the
    # RFC 9162 tree (split at the largest power of two below n), without recursion.
    paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 9162 Merkle tree hash of ``leaves`` (SHA-256 of nothing for no leaves)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def audit_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf ``index``, bottom up."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    path: list[bytes] = []
    level = list(leaves)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        level = _next_level(level)
        index //= 2
    return path


def verify_audit_path(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2, step by step."""
    if not 0 <= index < tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# -- events, reports, proofs -------------------------------------------------------------------


@dataclass(frozen=True)
class LogEvent:
    """One authorization decision to log, allowed or denied."""

    owner_id: uuid.UUID
    actor_kind: str  # "agency" | "owner" | "delegate" | "official" | "operator" | "system"
    actor_id: str  # client id, account id, official id ...
    action: str  # "document.fetch", "consent.decide", "statutory.fetch", ...
    decision: str  # "allowed" | "denied"
    reason: str | None = None  # a stable error code, for denials
    on_behalf_of: str | None = None  # a delegate acting for the owner: both identities logged
    agency_id: uuid.UUID | None = None
    grant_id: uuid.UUID | None = None
    statutory_id: uuid.UUID | None = None
    document_id: uuid.UUID | None = None
    document_version: int | None = None
    purpose: str | None = None

    def check(self) -> None:
        """Refuse what the table cannot hold exactly (a programming error, not a 422)."""
        if self.actor_kind not in ACTOR_KINDS:
            raise ValueError(f"unknown actor_kind {self.actor_kind!r}")
        if self.decision not in DECISIONS:
            raise ValueError(f"unknown decision {self.decision!r}")
        for name, limit in _TEXT_LIMITS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if len(value) > limit:
                raise ValueError(f"{name} is longer than {limit} characters")
            if "\x00" in value:
                raise ValueError(f"{name} contains a NUL character")
            value.encode("utf-8")  # lone surrogates cannot be stored or hashed


@dataclass(frozen=True)
class Failure:
    """Where verification found something that does not fit, and what."""

    problem: str  # a stable code: hash_mismatch, chain_break, gap, head_mismatch, ...
    detail: str
    owner_id: str | None = None
    seq: int | None = None
    entry_id: int | None = None
    checkpoint_id: int | None = None

    def __str__(self) -> str:
        where: list[str] = []
        if self.checkpoint_id is not None:
            where.append(f"checkpoint {self.checkpoint_id}")
        if self.owner_id is not None:
            where.append(f"owner {self.owner_id}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.entry_id is not None:
            where.append(f"entry {self.entry_id}")
        place = ", ".join(where) or "access log"
        return f"{place}: {self.problem}: {self.detail}"


@dataclass
class VerifyReport:
    entries_checked: int
    owners_checked: int
    checkpoints_checked: int
    ok: bool
    first_failure: str | None
    failures: int = 0
    failure: Failure | None = None
    seconds: float = 0.0


@dataclass
class _Tally:
    entries: int = 0
    owners: int = 0
    checkpoints: int = 0
    failures: int = 0
    first: Failure | None = None

    def fail(self, failure: Failure) -> None:
        self.failures += 1
        if self.first is None:
            self.first = failure

    def report(self, started: float) -> VerifyReport:
        return VerifyReport(
            entries_checked=self.entries,
            owners_checked=self.owners,
            checkpoints_checked=self.checkpoints,
            ok=self.failures == 0,
            first_failure=None if self.first is None else str(self.first),
            failures=self.failures,
            failure=self.first,
            seconds=time.perf_counter() - started,
        )


@dataclass(frozen=True)
class InclusionProof:
    """What an owner needs to check their entries against a signed checkpoint, offline."""

    owner_id: uuid.UUID
    head_seq: int
    head_hash: bytes
    entry_hashes: tuple[bytes, ...]  # seq 1 .. head_seq
    leaf_index: int
    tree_size: int
    audit_path: tuple[bytes, ...]
    checkpoint_id: int
    checkpoint_created_at: dt.datetime
    root_hash: bytes
    checkpoint_jws: str

    def to_json(self) -> dict[str, Any]:
        return {
            "owner_id": str(self.owner_id),
            "head_seq": self.head_seq,
            "head_hash": self.head_hash.hex(),
            "entry_hashes": [h.hex() for h in self.entry_hashes],
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [h.hex() for h in self.audit_path],
            "checkpoint": {
                "id": self.checkpoint_id,
                "created_at": _rfc3339(self.checkpoint_created_at),
                "tree_size": self.tree_size,
                "root_hash": self.root_hash.hex(),
                "signature": self.checkpoint_jws,
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InclusionProof:
        checkpoint = data["checkpoint"]
        return cls(
            owner_id=uuid.UUID(data["owner_id"]),
            head_seq=int(data["head_seq"]),
            head_hash=bytes.fromhex(data["head_hash"]),
            entry_hashes=tuple(bytes.fromhex(h) for h in data["entry_hashes"]),
            leaf_index=int(data["leaf_index"]),
            tree_size=int(data["tree_size"]),
            audit_path=tuple(bytes.fromhex(h) for h in data["audit_path"]),
            checkpoint_id=int(checkpoint["id"]),
            checkpoint_created_at=dt.datetime.fromisoformat(checkpoint["created_at"]),
            root_hash=bytes.fromhex(checkpoint["root_hash"]),
            checkpoint_jws=str(checkpoint["signature"]),
        )


class NoCheckpointYet(NotFound):
    code = "access_log_not_checkpointed"
    title_vi = "Nhật ký truy cập của bạn chưa có điểm kiểm tra (checkpoint) nào"
    title_en = "No checkpoint covers your access log yet"


class AccessLogInconsistent(Conflict):
    """Kho refuses to sign a checkpoint over chains that contradict the previous one."""

    code = "access_log_inconsistent"
    title_vi = "Nhật ký truy cập không khớp với điểm kiểm tra trước"
    title_en = "The access log contradicts the previous checkpoint"


class ProofInvalid(ValueError):
    """An inclusion proof, or the entries given with it, does not check out."""


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_json(entry: AccessLogEntry) -> dict[str, Any]:
    """The wire form of an entry (the owner's ``GET /v1/access-log`` items)."""

    def opt(value: uuid.UUID | None) -> str | None:
        return None if value is None else str(value)

    return {
        "id": entry.id,
        "owner_id": str(entry.owner_id),
        "seq": entry.seq,
        "occurred_at": _rfc3339(entry.occurred_at),
        "occurred_at_us": micros(entry.occurred_at),
        "actor_kind": entry.actor_kind,
        "actor_id": entry.actor_id,
        "on_behalf_of": entry.on_behalf_of,
        "agency_id": opt(entry.agency_id),
        "action": entry.action,
        "decision": entry.decision,
        "reason": entry.reason,
        "grant_id": opt(entry.grant_id),
        "statutory_id": opt(entry.statutory_id),
        "document_id": opt(entry.document_id),
        "document_version": entry.document_version,
        "purpose": entry.purpose,
        "prev_hash": entry.prev_hash.hex(),
        "entry_hash": entry.entry_hash.hex(),
    }


def withheld_json(entry: AccessLogEntry, until: dt.datetime) -> dict[str, Any]:
    """An entry the owner may not see yet (statutory access with a later disclosure date):
    its place in the chain and its hashes only, so the chain still checks out."""
    return {
        "id": entry.id,
        "owner_id": str(entry.owner_id),
        "seq": entry.seq,
        "withheld": True,
        "withheld_until": _rfc3339(until),
        "prev_hash": entry.prev_hash.hex(),
        "entry_hash": entry.entry_hash.hex(),
    }


def _entry_from_json(data: Mapping[str, Any]) -> tuple[Record, bytes, bytes]:
    at_us = data.get("occurred_at_us")
    at_text = data.get("occurred_at")
    if at_us is None:
        if not isinstance(at_text, str):
            raise ProofInvalid("an entry has no occurred_at")
        occurred = dt.datetime.fromisoformat(at_text)
    else:
        occurred = from_micros(int(at_us))
        if isinstance(at_text, str) and micros(dt.datetime.fromisoformat(at_text)) != at_us:
            raise ProofInvalid(f"entry {data.get('seq')}: occurred_at and occurred_at_us differ")
    record = Record(
        owner_id=str(data["owner_id"]),
        seq=int(data["seq"]),
        occurred_at=occurred,
        actor_kind=data["actor_kind"],
        actor_id=data["actor_id"],
        on_behalf_of=data.get("on_behalf_of"),
        agency_id=data.get("agency_id"),
        action=data["action"],
        decision=data["decision"],
        reason=data.get("reason"),
        grant_id=data.get("grant_id"),
        statutory_id=data.get("statutory_id"),
        document_id=data.get("document_id"),
        document_version=data.get("document_version"),
        purpose=data.get("purpose"),
    )
    return record, bytes.fromhex(data["prev_hash"]), bytes.fromhex(data["entry_hash"])


def verify_inclusion(
    proof: InclusionProof,
    entries: Sequence[AccessLogEntry | Mapping[str, Any]],
    jwks: Mapping[str, Any],
) -> dict[str, Any]:
    """Check, without the database, that ``entries`` are the owner's log as of a checkpoint
    Kho signed; returns the checkpoint's claims, raises :class:`ProofInvalid` otherwise.

    ``entries`` are the owner's entries from seq 1 on, as ORM rows or in the wire form of
    ``GET /v1/access-log``; at least up to ``proof.head_seq`` (later ones are chain-checked
    but no checkpoint covers them yet). ``jwks`` is Kho's ``/.well-known/jwks.json``.
    """
    try:
        key_set = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
        token = jws.deserialize_compact(
            proof.checkpoint_jws, key_set, algorithms=[CHECKPOINT_ALGORITHM]
        )
    except (JoseError, ValueError) as exc:
        raise ProofInvalid(f"the checkpoint signature does not verify: {exc}") from None
    if token.headers().get("typ") != CHECKPOINT_TYP:
        raise ProofInvalid("the signed object is not an access-log checkpoint")
    claims = json.loads(token.payload)
    if not isinstance(claims, dict):
        raise ProofInvalid("the checkpoint payload is not an object")
    expected = {
        "log": CHECKPOINT_LOG,
        "checkpoint_id": proof.checkpoint_id,
        "tree_size": proof.tree_size,
        "root_hash": proof.root_hash.hex(),
    }
    for name, value in expected.items():
        if claims.get(name) != value:
            raise ProofInvalid(f"the signed checkpoint's {name} is not the proof's")

    owner = str(proof.owner_id)
    prev = GENESIS
    head: bytes | None = None
    if len(entries) < proof.head_seq or len(proof.entry_hashes) != proof.head_seq:
        raise ProofInvalid(f"the proof covers seq 1..{proof.head_seq}; entries are missing")
    for position, item in enumerate(entries, start=1):
        if not isinstance(item, AccessLogEntry) and item.get("withheld"):
            # Withheld until a disclosure date: only its links can be checked now.
            if str(item.get("owner_id")) != owner or int(item["seq"]) != position:
                raise ProofInvalid(f"withheld entry {position} is out of place")
            if bytes.fromhex(item["prev_hash"]) != prev:
                raise ProofInvalid(f"seq {position}: prev_hash is not the previous entry's hash")
            digest = bytes.fromhex(item["entry_hash"])
            if position <= proof.head_seq and digest != proof.entry_hashes[position - 1]:
                raise ProofInvalid(f"seq {position}: the hash differs from the proof's")
            if position == proof.head_seq:
                head = digest
            prev = digest
            continue
        if isinstance(item, AccessLogEntry):
            record, prev_hash, stored = record_of(item), item.prev_hash, item.entry_hash
        else:
            record, prev_hash, stored = _entry_from_json(item)
        if str(record.owner_id) != owner:
            raise ProofInvalid(f"entry {position} belongs to another owner")
        if record.seq != position:
            raise ProofInvalid(f"expected seq {position}, found seq {record.seq}")
        if prev_hash != prev:
            raise ProofInvalid(f"seq {position}: prev_hash is not the previous entry's hash")
        digest = entry_hash(prev, record)
        if digest != stored:
            raise ProofInvalid(f"seq {position}: the entry does not hash to its entry_hash")
        if position <= proof.head_seq and digest != proof.entry_hashes[position - 1]:
            raise ProofInvalid(f"seq {position}: the hash differs from the proof's")
        if position == proof.head_seq:
            head = digest
        prev = digest
    if proof.head_seq and head != proof.head_hash:
        raise ProofInvalid("the entries do not end in the checkpointed head")
    leaf = leaf_hash(proof.owner_id, proof.head_seq, proof.head_hash)
    if not verify_audit_path(
        leaf, proof.leaf_index, proof.tree_size, proof.audit_path, proof.root_hash
    ):
        raise ProofInvalid("the Merkle audit path does not lead to the signed root")
    return claims


# -- verification core -------------------------------------------------------------------------

_ENTRIES_TABLE: Final = cast(Table, AccessLogEntry.__table__)
_HEADS_TABLE: Final = cast(Table, AccessLogHead.__table__)
_ENTRIES = _ENTRIES_TABLE.c
_HEADS = _HEADS_TABLE.c
# The columns an append writes (``id`` is the database's).
_WRITTEN: Final = (*HASHED_FIELDS, "prev_hash", "entry_hash")


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))


# The row shape check_chains reads: id, then the hashed fields in encoding order, then the two
# hashes. UUIDs come as stored text and occurred_at without the UTC decorator: the encoders
# take both as they are, which saves a uuid.UUID and a timezone conversion per field per row.
ENTRY_COLUMNS: Final = ("id", *HASHED_FIELDS, "prev_hash", "entry_hash")


def _raw(column: Any) -> Any:
    if column.name.endswith("_id") and column.name not in ("id", "actor_id"):
        return type_coerce(column, String).label(column.name)
    if column.name == "occurred_at":
        return type_coerce(column, DateTime(timezone=True)).label(column.name)
    return column


def entry_select() -> Select[Any]:
    """The columns verification reads, in :data:`ENTRY_COLUMNS` order (unordered)."""
    return select(*(_raw(_ENTRIES[name]) for name in ENTRY_COLUMNS))


def _head_select() -> Select[Any]:
    return select(type_coerce(_HEADS.owner_id, String), _HEADS.seq, _HEADS.entry_hash)


class _Memo(dict[Any, bytes]):
    """Field encodings of values that repeat (actions, client ids, grants), bounded."""

    def __init__(self, encoder: Callable[[Any], bytes]) -> None:
        super().__init__()
        self._encoder = encoder

    def __missing__(self, key: Any) -> bytes:
        if len(self) >= _MEMO_LIMIT:
            self.clear()
        value = self[key] = self._encoder(key)
        return value


@dataclass
class _Expectation:
    seq: int
    entry_hash: bytes
    checkpoint_id: int


class _ChainPass:
    """One pass over entries grouped by owner, in seq order: every hash recomputed, every
    link, every head row and the latest checkpoint's head of each owner checked.

    ``heads`` (owner -> (seq, hash)) and ``expected`` are consumed as chains end; what is left
    at the end names heads and checkpointed owners whose entries are gone.
    """

    def __init__(
        self,
        tally: _Tally,
        heads: dict[str, tuple[int, bytes]] | None = None,
        expected: dict[str, _Expectation] | None = None,
    ) -> None:
        self.tally = tally
        self.heads = heads
        self.expected = expected if expected is not None else {}

    def run(self, rows: Iterable[Sequence[Any]]) -> None:
        tally = self.tally
        fail = tally.fail
        text_memo, uuid_memo, int_memo = _Memo(_text), _Memo(_uuid), _Memo(_int)
        sha256, join, pack = hashlib.sha256, b"".join, _SEQ_TIME.pack
        epoch, microsecond, utc = _EPOCH, _MICROSECOND, dt.UTC
        expected = self.expected
        owner: str | None = None
        prefix = b""
        expect_seq, prev, last_id = 1, GENESIS, 0
        cp: _Expectation | None = None
        cp_seq, cp_seen = 0, True
        count = 0
        row: Sequence[Any] = ()
        iterator = iter(rows)
        while True:
            try:
                for row in iterator:
                    (
                        entry_id,
                        row_owner,
                        seq,
                        occurred,
                        actor_kind,
                        actor_id,
                        on_behalf_of,
                        agency_id,
                        action,
                        decision,
                        reason,
                        grant_id,
                        statutory_id,
                        document_id,
                        document_version,
                        purpose,
                        prev_hash,
                        stored,
                    ) = row
                    if row_owner != owner:
                        if owner is not None:
                            self._end_chain(owner, expect_seq - 1, prev, last_id, cp, cp_seen)
                        owner, expect_seq, prev = row_owner, 1, GENESIS
                        cp = expected.pop(owner, None)
                        cp_seq, cp_seen = (0, True) if cp is None else (cp.seq, False)
                        tally.owners += 1
                        prefix = b""
                        prefix = _owner_prefix(owner)
                    if occurred.tzinfo is None:
                        occurred = occurred.replace(tzinfo=utc)
                    digest = sha256(
                        join(
                            (
                                prev_hash,
                                prefix,
                                pack(seq, (occurred - epoch) // microsecond),
                                text_memo[actor_kind],
                                text_memo[actor_id],
                                text_memo[on_behalf_of],
                                uuid_memo[agency_id],
                                text_memo[action],
                                text_memo[decision],
                                text_memo[reason],
                                uuid_memo[grant_id],
                                uuid_memo[statutory_id],
                                uuid_memo[document_id],
                                int_memo[document_version],
                                text_memo[purpose],
                            )
                        )
                    ).digest()
                    if digest != stored or seq != expect_seq or prev_hash != prev:
                        fail(_entry_failure(str(owner), entry_id, seq, expect_seq, digest, row))
                    if seq == cp_seq and cp is not None:
                        cp_seen = True
                        if stored != cp.entry_hash:
                            fail(
                                Failure(
                                    "checkpoint_mismatch",
                                    f"checkpoint {cp.checkpoint_id} committed to another entry "
                                    "at this seq (the chain was rewritten)",
                                    owner,
                                    seq,
                                    entry_id,
                                )
                            )
                    prev, expect_seq, last_id = stored, seq + 1, entry_id
                    count += 1
                break
            except (ValueError, TypeError, OverflowError, AttributeError, struct.error) as exc:
                # A value no encoder can read (a broken UUID, a non-date): report, move on.
                count += 1
                entry_id = row[0] if row else None
                fail(
                    Failure(
                        "unreadable",
                        f"a column holds a value that cannot be encoded ({exc})",
                        owner,
                        expect_seq,
                        entry_id,
                    )
                )
        if owner is not None:
            self._end_chain(owner, expect_seq - 1, prev, last_id, cp, cp_seen)
        tally.entries += count
        self._finish()

    def _end_chain(
        self,
        owner: str,
        last_seq: int,
        last_hash: bytes,
        last_id: int,
        cp: _Expectation | None,
        cp_seen: bool,
    ) -> None:
        if cp is not None and not cp_seen:
            self.tally.fail(
                Failure(
                    "checkpoint_mismatch",
                    f"checkpoint {cp.checkpoint_id} committed to seq {cp.seq}, but the chain "
                    f"ends at seq {last_seq} (entries were removed)",
                    owner,
                    cp.seq,
                )
            )
        if self.heads is None:
            return
        head = self.heads.pop(owner, None)
        if head is None:
            self.tally.fail(
                Failure(
                    "head_missing",
                    f"the chain (last seq {last_seq}) has no head row",
                    owner,
                    last_seq,
                    last_id,
                )
            )
        elif head != (last_seq, last_hash):
            self.tally.fail(
                Failure(
                    "head_mismatch",
                    f"the head row says seq {head[0]} ({head[1].hex()[:16]}…), the chain ends "
                    f"at seq {last_seq} ({last_hash.hex()[:16]}…): entries were removed or "
                    "appended without the head",
                    owner,
                    last_seq,
                    last_id,
                )
            )

    def _finish(self) -> None:
        for owner, (seq, _) in sorted((self.heads or {}).items()):
            self.tally.fail(
                Failure(
                    "head_orphan",
                    f"a head row (seq {seq}) exists but the owner has no entries",
                    owner,
                    seq,
                )
            )
        if self.heads is not None:
            self.heads.clear()
        for owner, cp in sorted(self.expected.items()):
            self.tally.fail(
                Failure(
                    "checkpoint_mismatch",
                    f"checkpoint {cp.checkpoint_id} committed to seq {cp.seq} of this owner, "
                    "who has no entries any more",
                    owner,
                    cp.seq,
                )
            )
        self.expected.clear()


def _entry_failure(
    owner: str, entry_id: int, seq: int, expect_seq: int, digest: bytes, row: Sequence[Any]
) -> Failure:
    """Name what is wrong with one row, most specific first (the slow path)."""
    if seq != expect_seq:
        if seq > expect_seq:
            return Failure(
                "gap",
                f"expected seq {expect_seq}, found seq {seq} (entries removed or renumbered)",
                owner,
                seq,
                entry_id,
            )
        return Failure(
            "reordered",
            f"seq {seq} comes after seq {expect_seq - 1} (entries reordered)",
            owner,
            seq,
            entry_id,
        )
    if digest != row[-1]:
        return Failure(
            "hash_mismatch",
            "the row does not hash to its entry_hash (a column was changed)",
            owner,
            seq,
            entry_id,
        )
    return Failure(
        "chain_break",
        "prev_hash is not the previous entry's hash (an entry was removed, inserted or moved)",
        owner,
        seq,
        entry_id,
    )


def check_chains(rows: Iterable[Sequence[Any]]) -> VerifyReport:
    """The verification core alone, over rows in :data:`ENTRY_COLUMNS` order sorted by
    (owner, seq): hashes and links only (no heads, no checkpoints, no database)."""
    started = time.perf_counter()
    tally = _Tally()
    _ChainPass(tally).run(rows)
    return tally.report(started)


# -- checkpoints -------------------------------------------------------------------------------


@dataclass
class _Checkpoint:
    id: int
    created_at: dt.datetime
    tree_size: int
    root_hash: bytes
    heads: list[tuple[str, int, bytes]]
    signature: str

    @classmethod
    def parse(cls, row: Sequence[Any]) -> _Checkpoint:
        """From a row of :data:`_CHECKPOINT_COLUMNS`; raises on heads that are not
        ``[owner, seq, hash hex]``."""
        cid, created_at, tree_size, root_hash, raw_heads, signature = row
        heads: list[tuple[str, int, bytes]] = []
        for item in raw_heads:
            owner, seq, hexed = item
            if not isinstance(owner, str) or not isinstance(seq, int) or not isinstance(hexed, str):
                raise ValueError("a head is not [owner, seq, hash]")
            heads.append((owner, seq, bytes.fromhex(hexed)))
        return cls(cid, created_at, tree_size, bytes(root_hash), heads, signature)

    def leaves(self) -> list[bytes]:
        return [leaf_hash(owner, seq, head) for owner, seq, head in self.heads]

    def digest(self) -> str:
        """What the next checkpoint's ``prev_checkpoint`` claim names."""
        return hashlib.sha256(self.signature.encode("ascii")).hexdigest()


_CHECKPOINT_COLUMNS = (
    LogCheckpoint.id,
    LogCheckpoint.created_at,
    LogCheckpoint.tree_size,
    LogCheckpoint.root_hash,
    LogCheckpoint.heads,
    LogCheckpoint.signature,
)


def _check_checkpoint(
    cp: _Checkpoint, prev: _Checkpoint | None, signer: JwsSigner, tally: _Tally
) -> None:
    """The signature, the signed claims against the row, the root against the heads."""

    def fail(problem: str, detail: str) -> None:
        tally.fail(Failure(problem, detail, checkpoint_id=cp.id))

    try:
        claims = signer.verify(cp.signature, typ=CHECKPOINT_TYP)
    except ValueError as exc:
        fail("checkpoint_signature", f"the signature does not verify ({exc})")
        return
    signed = {
        "log": CHECKPOINT_LOG,
        "checkpoint_id": cp.id,
        "created_at_us": micros(cp.created_at),
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash.hex(),
    }
    for name, value in signed.items():
        if claims.get(name) != value:
            fail("checkpoint_claims", f"the stored {name} is not the signed one")
            return
    if claims.get("prev_checkpoint") != (None if prev is None else prev.digest()):
        fail(
            "checkpoint_chain",
            "the signed link to the previous checkpoint does not match (a checkpoint before "
            "this one was removed or changed)",
        )
        return
    if cp.tree_size != len(cp.heads):
        fail("checkpoint_root", f"tree_size {cp.tree_size} but {len(cp.heads)} heads stored")
        return
    owners = [owner for owner, _, _ in cp.heads]
    if any(a >= b for a, b in itertools.pairwise(owners)):
        fail("checkpoint_root", "the stored heads are not sorted by owner")
        return
    try:
        root = merkle_root(cp.leaves())
    except ValueError as exc:
        fail("checkpoint_root", f"a stored head cannot be encoded ({exc})")
        return
    if root != cp.root_hash:
        fail("checkpoint_root", "the stored heads do not hash to the signed root")


def _advance(
    prev: _Checkpoint, cp: _Checkpoint, tally: _Tally
) -> list[tuple[str, int, bytes, int]]:
    """Compare two consecutive checkpoints owner by owner; return the older heads that the
    newer one moved past, which must still be entries of the log."""
    moved: list[tuple[str, int, bytes, int]] = []
    newer = {owner: (seq, head) for owner, seq, head in cp.heads}
    for owner, seq, head in prev.heads:
        now = newer.get(owner)
        if now is None:
            tally.fail(
                Failure(
                    "checkpoint_regression",
                    f"owner named by checkpoint {prev.id} is missing from the next one",
                    owner,
                    seq,
                    checkpoint_id=cp.id,
                )
            )
        elif now[0] < seq or (now[0] == seq and now[1] != head):
            tally.fail(
                Failure(
                    "checkpoint_regression",
                    f"checkpoint {prev.id} had seq {seq}; this one has seq {now[0]} "
                    "with another history",
                    owner,
                    now[0],
                    checkpoint_id=cp.id,
                )
            )
        elif now[0] > seq:
            moved.append((owner, seq, head, prev.id))
    return moved


# -- the log -----------------------------------------------------------------------------------


class AccessLog:
    """Append to, read and verify the access log, in the caller's transaction."""

    def __init__(self, session: Session, clock: Clock, signer: JwsSigner | None = None) -> None:
        self.session = session
        self.clock = clock
        self.signer = signer

    @property
    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    # -- writing -------------------------------------------------------------------------------

    def append(self, event: LogEvent) -> AccessLogEntry:
        """Append ``event`` to its owner's chain in the caller's transaction (written at once,
        so a failure to log surfaces before anything is served).

        The owner's head row is locked until the transaction ends: appends for one owner
        serialise, different owners never wait for each other (on SQLite every writer waits
        for the database lock anyway). Two round trips on PostgreSQL: the locking read of the
        head, then one statement that moves the head and inserts the entry.
        """
        event.check()
        head_seq, head_hash = self._lock_head(event.owner_id)
        seq = head_seq + 1
        occurred_at = self.clock.now().astimezone(dt.UTC)
        entry = AccessLogEntry(
            owner_id=event.owner_id,
            seq=seq,
            occurred_at=occurred_at,
            actor_kind=event.actor_kind,
            actor_id=event.actor_id,
            on_behalf_of=event.on_behalf_of,
            agency_id=event.agency_id,
            action=event.action,
            decision=event.decision,
            reason=event.reason,
            grant_id=event.grant_id,
            statutory_id=event.statutory_id,
            document_id=event.document_id,
            document_version=event.document_version,
            purpose=event.purpose,
            prev_hash=head_hash,
        )
        entry.entry_hash = entry_hash(head_hash, record_of(entry))
        self._write(entry, head_seq)
        return entry

    def _write(self, entry: AccessLogEntry, head_seq: int) -> None:
        """Move the (locked) head from ``head_seq`` to ``entry`` and insert ``entry``."""
        values = {name: getattr(entry, name) for name in _WRITTEN}
        moved = (
            update(_HEADS_TABLE)
            .where(_HEADS.owner_id == entry.owner_id, _HEADS.seq == head_seq)
            .values(seq=entry.seq, entry_hash=entry.entry_hash)
        )
        if self._dialect == "postgresql":
            # One statement: the entry is inserted from the head's UPDATE ... RETURNING, so
            # either both are written or neither.
            head = moved.returning(_HEADS.owner_id).cte("moved_head")
            row = select(*(literal(values[n], _ENTRIES[n].type) for n in _WRITTEN))
            entry_id = self.session.scalar(
                insert(_ENTRIES_TABLE)
                .from_select(_WRITTEN, row.select_from(head))
                .add_cte(head)
                .returning(_ENTRIES.id)
            )
        else:
            entry_id = None
            if _rowcount(self.session.execute(moved)) == 1:
                entry_id = self.session.scalar(
                    insert(_ENTRIES_TABLE).values(values).returning(_ENTRIES.id)
                )
        if entry_id is None:
            raise RuntimeError("the access log head moved while it was locked")
        entry.id = entry_id

    def _lock_head(self, owner_id: uuid.UUID) -> tuple[int, bytes]:
        """Lock the owner's head row (created on the first entry) and return its (seq, hash)."""
        if self._dialect == "sqlite":
            # SQLite ignores FOR UPDATE and pysqlite only opens the transaction at the first
            # write: a write first takes the database lock, so the read below is current.
            self.session.execute(
                update(AccessLogHead)
                .where(AccessLogHead.owner_id == owner_id)
                .values(seq=AccessLogHead.seq)
                .execution_options(synchronize_session=False)
            )
        locked = (
            select(_HEADS.seq, _HEADS.entry_hash)
            .where(_HEADS.owner_id == owner_id)
            .with_for_update()
        )
        head = self.session.execute(locked).first()
        if head is not None:
            return head[0], head[1]
        try:
            with self.session.begin_nested():
                self.session.execute(
                    insert(_HEADS_TABLE).values(owner_id=owner_id, seq=0, entry_hash=GENESIS)
                )
        except IntegrityError:
            # Another transaction created this owner's chain first; wait for its lock.
            head = self.session.execute(locked).one()
            return head[0], head[1]
        return 0, GENESIS

    def checkpoint(self, signer: JwsSigner) -> LogCheckpoint:
        """Sign a Merkle root over every owner's head and store it.

        Refuses (:class:`AccessLogInconsistent`) when the chains no longer contain the heads
        the previous checkpoint committed to, or a head row is not an entry of its chain, so
        that Kho never signs over a rewritten history.
        """
        if self._dialect == "postgresql":
            self.session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHECKPOINT_LOCK}
            )
        elif self._dialect == "sqlite":
            self.session.execute(
                update(LogCheckpoint)
                .where(LogCheckpoint.id == -1)
                .values(tree_size=0)
                .execution_options(synchronize_session=False)
            )
        prev = self._latest_checkpoint()
        rows = self.session.execute(_head_select()).all()
        heads = sorted((str(o), int(s), bytes(h)) for o, s, h in rows)
        try:
            leaves = [leaf_hash(owner, seq, head) for owner, seq, head in heads]
        except ValueError as exc:
            raise AccessLogInconsistent(detail_en=f"a head row is malformed: {exc}") from None
        self._check_extends(prev, heads)
        now = self.clock.now().astimezone(dt.UTC)
        root = merkle_root(leaves)
        row = LogCheckpoint(
            created_at=now,
            tree_size=len(heads),
            root_hash=root,
            heads=[[owner, seq, head.hex()] for owner, seq, head in heads],
            signature="",
        )
        self.session.add(row)
        self.session.flush()
        claims = {
            "log": CHECKPOINT_LOG,
            "checkpoint_id": row.id,
            "created_at_us": micros(now),
            "iat": int(now.timestamp()),
            "tree_size": len(heads),
            "root_hash": root.hex(),
            "prev_checkpoint": None if prev is None else prev.digest(),
        }
        row.signature = signer.sign(claims, typ=CHECKPOINT_TYP)
        self.session.flush()
        return row

    def _check_extends(self, prev: _Checkpoint | None, heads: list[tuple[str, int, bytes]]) -> None:
        old = {} if prev is None else {o: (s, h) for o, s, h in prev.heads}
        wanted: list[tuple[str, int, bytes, str]] = []
        current = {o for o, _, _ in heads}
        for owner in old:
            if owner not in current:
                raise AccessLogInconsistent(
                    detail_en=f"owner {owner}: in the last checkpoint, but has no head row now"
                )
        for owner, seq, head in heads:
            before = old.get(owner)
            if before == (seq, head):
                continue
            if before is not None:
                if seq < before[0]:
                    raise AccessLogInconsistent(
                        detail_en=f"owner {owner}: head seq {seq} is behind the last "
                        f"checkpoint's seq {before[0]}"
                    )
                wanted.append((owner, before[0], before[1], "committed by the last checkpoint"))
            wanted.append((owner, seq, head, "named by the head row"))
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            found = self._lookup([(o, s) for o, s, _, _ in chunk])
            for owner, seq, head, why in chunk:
                hit = found.get((owner, seq))
                if hit is None or hit[1] != head:
                    raise AccessLogInconsistent(
                        detail_en=f"owner {owner}, seq {seq}: the entry {why} is "
                        + ("missing" if hit is None else f"different (entry {hit[0]})")
                    )

    def _lookup(self, pairs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, bytes]]:
        if not pairs:
            return {}
        owner_col = type_coerce(_ENTRIES.owner_id, String)
        stmt = select(owner_col, _ENTRIES.seq, _ENTRIES.id, _ENTRIES.entry_hash).where(
            tuple_(owner_col, _ENTRIES.seq).in_(list(pairs))
        )
        return {(str(o), s): (i, bytes(h)) for o, s, i, h in self.session.execute(stmt)}

    def _latest_checkpoint(self) -> _Checkpoint | None:
        row = self.session.execute(
            select(*_CHECKPOINT_COLUMNS).order_by(LogCheckpoint.id.desc()).limit(1)
        ).one_or_none()
        return None if row is None else _Checkpoint.parse(row)

    # -- reading -------------------------------------------------------------------------------

    def entries(
        self, owner_id: uuid.UUID, *, after_seq: int | None = None, limit: int = 100
    ) -> list[AccessLogEntry]:
        """The owner's entries after ``after_seq``, oldest first (scoped to the owner)."""
        stmt = select(AccessLogEntry).where(AccessLogEntry.owner_id == owner_id)
        if after_seq is not None:
            stmt = stmt.where(AccessLogEntry.seq > after_seq)
        stmt = stmt.order_by(AccessLogEntry.seq).limit(max(1, limit))
        return list(self.session.scalars(stmt))

    def proof(self, owner_id: uuid.UUID) -> InclusionProof:
        """The owner's chain up to the latest checkpoint, and where it sits in that
        checkpoint's signed Merkle tree (:func:`verify_inclusion` checks it offline)."""
        latest = self._latest_checkpoint()
        if latest is None:
            raise NoCheckpointYet()
        owner = str(owner_id)
        index = next((i for i, head in enumerate(latest.heads) if head[0] == owner), None)
        if index is None:
            raise NoCheckpointYet()
        _, seq, head = latest.heads[index]
        hashes = self.session.scalars(
            select(AccessLogEntry.entry_hash)
            .where(AccessLogEntry.owner_id == owner_id, AccessLogEntry.seq <= seq)
            .order_by(AccessLogEntry.seq)
        ).all()
        leaves = latest.leaves()
        return InclusionProof(
            owner_id=owner_id,
            head_seq=seq,
            head_hash=head,
            entry_hashes=tuple(bytes(h) for h in hashes),
            leaf_index=index,
            tree_size=len(leaves),
            audit_path=tuple(audit_path(leaves, index)),
            checkpoint_id=latest.id,
            checkpoint_created_at=latest.created_at,
            root_hash=latest.root_hash,
            checkpoint_jws=latest.signature,
        )

    # -- verifying -----------------------------------------------------------------------------

    def _signer(self) -> JwsSigner:
        if self.signer is None:
            raise ValueError("verifying checkpoints needs the signer (its published keys)")
        return self.signer

    def _snapshot(self) -> None:
        """Make every read of a verification see one moment of the log."""
        if self.session.in_transaction():
            return
        if self._dialect == "postgresql":
            self.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        elif self._dialect == "sqlite":
            # pysqlite reads outside a transaction; a (no-op) write opens one and holds the
            # database's write lock, so heads and chains are read at one moment.
            self.session.execute(
                update(AccessLogHead)
                .where(AccessLogHead.seq < 0)
                .values(seq=AccessLogHead.seq)
                .execution_options(synchronize_session=False)
            )

    def stream_entries(self, owner_id: uuid.UUID | None = None) -> Iterator[Sequence[Any]]:
        """Rows in :data:`ENTRY_COLUMNS` order, grouped by owner and in seq order within each
        (every owner's, or one owner's), streamed in batches: what verification reads.

        On PostgreSQL the Core select is run through psycopg's chunked-rows stream in binary
        format: the server keeps sending while rows are hashed, about twice as fast as
        ``yield_per``'s FETCH round trips, and no SQLAlchemy row objects. No other statement
        may use the session until the iterator is exhausted.
        """
        stmt = entry_select()
        if owner_id is not None:
            stmt = stmt.where(type_coerce(_ENTRIES.owner_id, String) == str(owner_id))
        stmt = stmt.order_by(_ENTRIES.owner_id, _ENTRIES.seq)
        connection = self.session.connection()
        if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
            compiled = stmt.compile(dialect=connection.dialect)
            driver = connection.connection.driver_connection
            cursor = driver.cursor(binary=True)  # type: ignore[union-attr]
            rows: Iterator[Sequence[Any]] = cursor.stream(
                str(compiled), compiled.params, size=_STREAM_CHUNK
            )
            return rows
        result = self.session.execute(stmt.execution_options(yield_per=_STREAM_BATCH))
        return (row for batch in result.partitions() for row in batch)

    def _heads(self, owner_id: uuid.UUID | None = None) -> dict[str, tuple[int, bytes]]:
        stmt = _head_select()
        if owner_id is not None:
            stmt = stmt.where(type_coerce(_HEADS.owner_id, String) == str(owner_id))
        return {str(o): (s, bytes(h)) for o, s, h in self.session.execute(stmt)}

    def verify_all(self) -> VerifyReport:
        """Every chain, every head row, every checkpoint (signature, claims, root, the link to
        the one before, and that the heads it committed to are still entries of the log).

        Entries are streamed: memory holds a batch of rows, the head rows and the latest
        checkpoint's heads (so it grows with the number of owners, about half a kilobyte
        each) and two consecutive checkpoints at a time, never the entries.
        """
        started = time.perf_counter()
        self._snapshot()
        tally = _Tally()
        latest_row = self.session.execute(
            select(*_CHECKPOINT_COLUMNS).order_by(LogCheckpoint.id.desc()).limit(1)
        ).one_or_none()
        expected: dict[str, _Expectation] = {}
        if latest_row is not None:
            try:
                latest = _Checkpoint.parse(latest_row)
                expected = {o: _Expectation(s, h, latest.id) for o, s, h in latest.heads}
            except (ValueError, TypeError) as exc:
                tally.fail(
                    Failure(
                        "checkpoint_root",
                        f"the stored heads cannot be read ({exc})",
                        checkpoint_id=latest_row[0],
                    )
                )
        heads = self._heads()
        _ChainPass(tally, heads, expected).run(self.stream_entries())
        self._verify_checkpoints(tally)
        return tally.report(started)

    def _verify_checkpoints(self, tally: _Tally) -> None:
        ids = self.session.scalars(select(LogCheckpoint.id).order_by(LogCheckpoint.id)).all()
        signer = self._signer() if ids else None
        prev: _Checkpoint | None = None
        moved: list[tuple[str, int, bytes, int]] = []
        for cid in ids:
            row = self.session.execute(
                select(*_CHECKPOINT_COLUMNS).where(LogCheckpoint.id == cid)
            ).one()
            tally.checkpoints += 1
            try:
                cp = _Checkpoint.parse(row)
            except (ValueError, TypeError) as exc:
                tally.fail(
                    Failure(
                        "checkpoint_root",
                        f"the stored heads cannot be read ({exc})",
                        checkpoint_id=cid,
                    )
                )
                prev = None
                continue
            assert signer is not None
            _check_checkpoint(cp, prev, signer, tally)
            if prev is not None:
                moved += _advance(prev, cp, tally)
            if len(moved) >= _LOOKUP_CHUNK:
                self._check_still_there(moved, tally)
                moved = []
            prev = cp
        self._check_still_there(moved, tally)

    def _check_still_there(self, heads: list[tuple[str, int, bytes, int]], tally: _Tally) -> None:
        for start in range(0, len(heads), _LOOKUP_CHUNK):
            chunk = heads[start : start + _LOOKUP_CHUNK]
            found = self._lookup([(o, s) for o, s, _, _ in chunk])
            for owner, seq, head, cid in chunk:
                hit = found.get((owner, seq))
                if hit is None or hit[1] != head:
                    tally.fail(
                        Failure(
                            "checkpoint_mismatch",
                            f"checkpoint {cid} committed to this entry, "
                            + (
                                "which is gone"
                                if hit is None
                                else "and the log now has another one there"
                            ),
                            owner,
                            seq,
                            None if hit is None else hit[0],
                        )
                    )

    def verify_owner(self, owner_id: uuid.UUID) -> VerifyReport:
        """One owner's chain and head, and their head in the latest checkpoint (whose
        signature and root are checked too)."""
        started = time.perf_counter()
        self._snapshot()
        tally = _Tally()
        owner = str(owner_id)
        expected: dict[str, _Expectation] = {}
        latest_rows = self.session.execute(
            select(*_CHECKPOINT_COLUMNS).order_by(LogCheckpoint.id.desc()).limit(2)
        ).all()
        if latest_rows:
            try:
                latest = _Checkpoint.parse(latest_rows[0])
                before = _Checkpoint.parse(latest_rows[1]) if len(latest_rows) > 1 else None
            except (ValueError, TypeError) as exc:
                tally.fail(
                    Failure(
                        "checkpoint_root",
                        f"the stored heads cannot be read ({exc})",
                        checkpoint_id=latest_rows[0][0],
                    )
                )
            else:
                tally.checkpoints += 1
                _check_checkpoint(latest, before, self._signer(), tally)
                for o, s, h in latest.heads:
                    if o == owner:
                        expected[o] = _Expectation(s, h, latest.id)
        heads = self._heads(owner_id)
        _ChainPass(tally, heads, expected).run(self.stream_entries(owner_id))
        return tally.report(started)


class AuditWriter:
    """Logs a decision in its own transaction, committed at once: denials are logged even
    though the request that caused them fails (and rolls back).

    Never call it for an owner whose chain the caller's own open transaction has appended to:
    it would wait for the caller's lock (on PostgreSQL it gives up after 5 seconds).
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def record(self, event: LogEvent) -> None:
        try:
            with session_scope(self._sessions) as session:
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(text("SET LOCAL lock_timeout = '5s'"))
                AccessLog(session, self._clock).append(event)
        except OperationalError:
            raise DatabaseUnavailable() from None


__all__ = [
    "ACTOR_KINDS",
    "CHECKPOINT_TYP",
    "DECISIONS",
    "ENTRY_COLUMNS",
    "GENESIS",
    "HASHED_FIELDS",
    "AccessLog",
    "AccessLogInconsistent",
    "AuditWriter",
    "Failure",
    "InclusionProof",
    "LogEvent",
    "NoCheckpointYet",
    "ProofInvalid",
    "Record",
    "VerifyReport",
    "audit_path",
    "check_chains",
    "encode",
    "entry_hash",
    "entry_json",
    "entry_select",
    "leaf_hash",
    "merkle_root",
    "micros",
    "record_of",
    "verify_audit_path",
    "verify_inclusion",
]
