"""Reuse plans against listing an owner's store, in one process, on PostgreSQL.

    python -m bench.reuse [--documents 10000] [--procedures 2000] [--rounds 7] [--directory]

A fresh database on the test server (``scripts/services.sh``) gets the starter catalogue plus
generated procedures up to ``--procedures`` (imported through ``CatalogueService``, timed), and
one owner with ``--documents`` papers bulk-inserted: every type of the catalogue, mixed
assurance, issue and expiry dates, some with a second version, some deleted.

Timed side by side, interleaved (``bench.harness``), each call in a fresh session:

* **baseline — list the whole store**: one query returning every live document of the owner
  joined with its current version, all columns of both tables as plain rows
  (``select(*documents.c, *document_versions.c)`` on ``version = current_version``, ordered by
  ``created_at, id``) — all of the owner's papers with their current versions, the least a
  planner that looked at everything would do; the same query loading ORM objects
  (``select(Document, DocumentVersion)``) is timed beside it;
* ``ReusePlanner.plan`` for a typical procedure (the starter ``KHO-DN-001``, 5 requirements),
  for a wide one (12 types) and for the worst case (a procedure needing every type, so that
  every paper is a candidate);
* with ``--directory``, also ``DocumentDirectory.current`` (what consent previews use today).

The target is a plan costing at most 1.5x the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bench.harness import Bench, markdown
from common.clock import SystemClock
from identity.service import CitizenProfile, IdentityService
from storage.db import create_db_engine, make_session_factory, session_scope
from storage.migrate import upgrade
from tests.services import setting
from vault.catalogue import CatalogueService, ensure_starter_catalogue, load_starter
from vault.models import Assurance, Document, DocumentVersion, VersionStatus
from vault.reuse import ReusePlanner
from vault.service import DocumentDirectory

TYPICAL = "KHO-DN-001"
WIDE = "KHO-WIDE-000001"
EVERYTHING = "KHO-WIDE-000002"


def _require(name: str) -> str:
    value = setting(name)
    if not value:
        sys.exit(f"{name} is not set: start the test servers (scripts/services.sh start)")
    return value


def catalogue_with(procedures: int, rng: random.Random) -> dict[str, Any]:
    """The starter catalogue plus generated procedures up to ``procedures`` in all."""
    data = load_starter()
    types = [t["code"] for t in data["document_types"]]
    assurances = [a.value for a in Assurance]
    data["procedures"].append(
        {
            "code": WIDE,
            "name_vi": "Thủ tục thử nghiệm (rộng)",
            "name_en": "Bench procedure (wide)",
            "level": "province",
            "requirements": [
                {"document_type": code, "min_assurance": rng.choice(assurances)}
                for code in rng.sample(types, 12)
            ],
        }
    )
    data["procedures"].append(
        {
            "code": EVERYTHING,
            "name_vi": "Thủ tục thử nghiệm (mọi loại giấy tờ)",
            "name_en": "Bench procedure (every type)",
            "level": "province",
            "requirements": [
                {"document_type": code, "min_assurance": "digitised", "max_age_days": 3650}
                for code in types
            ],
        }
    )
    for n in range(max(0, procedures - len(data["procedures"]))):
        data["procedures"].append(
            {
                "code": f"KHO-BENCH-{n:06d}",
                "name_vi": f"Thủ tục thử nghiệm số {n}",
                "name_en": f"Bench procedure {n}",
                "level": rng.choice(["province", "commune"]),
                "requirements": [
                    {
                        "document_type": code,
                        "min_assurance": rng.choice(assurances),
                        "required": rng.random() < 0.7,
                        "max_age_days": rng.choice([None, None, 30, 180, 365]),
                    }
                    for code in rng.sample(types, rng.randint(2, 8))
                ],
            }
        )
    return data


def insert_store(
    sessions: sessionmaker[Session], owner_id: uuid.UUID, count: int, rng: random.Random
) -> dict[str, int]:
    """Bulk-insert ``count`` documents (and their versions) for one owner."""
    types = [t["code"] for t in load_starter()["document_types"]]
    assurances = list(Assurance)
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    documents: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    stats = {"documents": count, "versions": 0, "deleted": 0, "with_expiry": 0}
    for n in range(count):
        doc_id = uuid.uuid4()
        created = now - dt.timedelta(days=rng.randint(0, 3650), seconds=n)
        issued = (created - dt.timedelta(days=rng.randint(0, 400))).date()
        expires = None
        if rng.random() < 0.35:
            expires = today + dt.timedelta(days=rng.randint(-900, 1800))
            stats["with_expiry"] += 1
        deleted = created + dt.timedelta(days=1) if rng.random() < 0.03 else None
        stats["deleted"] += deleted is not None
        number_of_versions = 2 if rng.random() < 0.1 else 1
        assurance = rng.choice(assurances)
        documents.append(
            {
                "id": doc_id,
                "owner_id": owner_id,
                "type_code": rng.choice(types),
                "title": f"Giấy tờ {n}",
                "number": None,
                "issuer": None,
                "issued_on": issued if rng.random() < 0.8 else None,
                "expires_on": expires,
                "assurance": assurance,
                "current_version": number_of_versions,
                "created_at": created,
                "updated_at": created,
                "deleted_at": deleted,
            }
        )
        for version in range(1, number_of_versions + 1):
            stored = created + dt.timedelta(hours=version)
            versions.append(
                {
                    "id": uuid.uuid4(),
                    "document_id": doc_id,
                    "version": version,
                    "status": VersionStatus.committed,
                    "object_key": "v1/" + secrets.token_hex(16),
                    "size": 100_000,
                    "stored_size": 100_200,
                    "sha256": secrets.token_hex(32),
                    "media_type": "application/pdf",
                    "filename": f"giay-{n}.pdf",
                    "vault_key_version": 1,
                    "wrapped_data_key": None,
                    "assurance": assurance if version == number_of_versions else "self_declared",
                    "created_by": owner_id,
                    "created_at": stored,
                    "committed_at": stored,
                    "shredded_at": None,
                }
            )
    stats["versions"] = len(versions)
    with session_scope(sessions) as session:
        for start in range(0, len(documents), 2000):
            session.execute(insert(Document), documents[start : start + 2000])
        for start in range(0, len(versions), 2000):
            session.execute(insert(DocumentVersion), versions[start : start + 2000])
    with sessions() as session:
        session.execute(text("ANALYZE documents"))
        session.execute(text("ANALYZE document_versions"))
        session.execute(text("ANALYZE procedure_requirements"))
        session.commit()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--procedures", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument(
        "--directory", action="store_true", help="also time DocumentDirectory.current"
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    admin_url = _require("KHO_TEST_PG_ADMIN_URL")
    db_url = _require("KHO_TEST_DATABASE_URL")
    db_name = f"kho_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    url = make_url(db_url).set(database=db_name).render_as_string(hide_password=False)
    engine = create_db_engine(url)
    try:
        upgrade(url)
        sessions = make_session_factory(engine)
        clock = SystemClock()
        with session_scope(sessions) as session:
            ensure_starter_catalogue(session)
            owner_id = (
                IdentityService(session, clock)
                .enrol_citizen(
                    CitizenProfile(f"bench-{uuid.uuid4()}", "019090004321", "Bench", None, 2)
                )
                .id
            )

        catalogue = catalogue_with(args.procedures, rng)
        started = time.perf_counter()
        with session_scope(sessions) as session:
            result = CatalogueService(session, clock).import_catalogue(
                catalogue, source="bench", actor="bench"
            )
        import_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with session_scope(sessions) as session:
            again = CatalogueService(session, clock).import_catalogue(
                catalogue, source="bench", actor="bench"
            )
        reimport_seconds = time.perf_counter() - started
        stats = insert_store(sessions, owner_id, args.documents, rng)

        def store_query(*columns: Any) -> Any:
            return (
                select(*columns)
                .join(
                    DocumentVersion,
                    and_(
                        DocumentVersion.document_id == Document.id,
                        DocumentVersion.version == Document.current_version,
                    ),
                )
                .where(Document.owner_id == owner_id, Document.deleted_at.is_(None))
                .order_by(Document.created_at, Document.id)
            )

        document_columns = list(Document.__table__.c)
        version_columns = list(DocumentVersion.__table__.c)

        def baseline() -> object:
            with sessions() as session:
                return session.execute(store_query(*document_columns, *version_columns)).all()

        def baseline_orm() -> object:
            with sessions() as session:
                return session.execute(
                    select(Document, DocumentVersion)
                    .join(
                        DocumentVersion,
                        and_(
                            DocumentVersion.document_id == Document.id,
                            DocumentVersion.version == Document.current_version,
                        ),
                    )
                    .where(Document.owner_id == owner_id, Document.deleted_at.is_(None))
                    .order_by(Document.created_at, Document.id)
                ).all()

        def planner(code: str) -> Callable[[], object]:
            def run() -> object:
                with sessions() as session:
                    return ReusePlanner(session, clock).plan(owner_id, code)

            return run

        def directory() -> object:
            with sessions() as session:
                return DocumentDirectory(session).current(owner_id)

        listed = baseline()
        assert isinstance(listed, list)
        candidates: dict[str, tuple[int, int]] = {}
        with sessions() as session:
            for code in (TYPICAL, WIDE, EVERYTHING):
                plan = ReusePlanner(session, clock).plan(owner_id, code)
                candidates[code] = (plan.total, sum(r.candidates for r in plan.requirements))

        group = f"owner with {args.documents} documents, {len(catalogue['procedures'])} procedures"
        bench = Bench(rounds=args.rounds, warmup=2)
        bench.add(
            group,
            f"list all documents + current versions, rows ({len(listed)})",
            baseline,
            baseline=True,
        )
        bench.add(group, "list all documents + current versions, ORM objects", baseline_orm)
        for code, label in ((TYPICAL, "typical"), (WIDE, "wide"), (EVERYTHING, "every type")):
            total, rows = candidates[code]
            bench.add(
                group,
                f"ReusePlanner.plan {code} ({label}: {total} requirements, {rows} candidates)",
                planner(code),
            )
        if args.directory:
            bench.add(group, "DocumentDirectory.current (one query per document)", directory)
        results = bench.run()

        print(
            f"catalogue import ({len(catalogue['procedures'])} procedures, "
            f"{sum(len(p['requirements']) for p in catalogue['procedures'])} requirements): "
            f"{import_seconds:.2f} s ({result.diff.summary()}); same file again: "
            f"{reimport_seconds:.2f} s ({again.diff.summary()})"
        )
        print(
            f"store: {stats['documents']} documents ({stats['deleted']} deleted, "
            f"{stats['with_expiry']} with an expiry date), {stats['versions']} versions\n"
        )
        print(markdown(results))
        timed = results[group]
        base = next(r for r in timed if r.case.baseline)
        print("### Plan / baseline (target <= 1.5)\n")
        print("| case | ratio |\n|---|---:|")
        for row in timed:
            if not row.case.baseline:
                print(f"| {row.case.label} | {row.median / base.median:.2f} |")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
