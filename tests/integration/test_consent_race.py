"""Revocation against a fetch loop, on PostgreSQL with real concurrency: no fetch is allowed
after the revocation committed. The owner's hash chain orders every decision (appends take the
chain head's row lock), so "after" is read from the log itself, not from clocks."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.container import Container
from consent.audit import AuditWriter
from consent.errors import GrantRevoked
from consent.models import AccessLogEntry, AccessMode
from consent.schemas import ConsentRequestIn, DecisionIn, RequestedItem
from consent.service import AgencyActor, ConsentService, OwnerActor
from identity.models import Agency, AgencyLevel
from sso.keys import ProviderJwsSigner
from storage.db import session_scope
from tests.conftest import build_ready_container, drop_postgres_database, make_citizen, settings_for
from vault.keyring import Keyring
from vault.schemas import DocumentCreate
from vault.service import DocumentDirectory, DocumentService, UploadJournal

ROUNDS = 1000


def consents(container: Container, session: Session) -> ConsentService:
    return ConsentService(
        session,
        container.clock,
        issuer=container.issuer_url,
        signer=ProviderJwsSigner(container.signing_keys),
        documents=DocumentDirectory(session),
        denials=AuditWriter(container.sessions, container.clock),
    )


def vault(container: Container, session: Session) -> DocumentService:
    return DocumentService(
        session,
        container.objects,
        Keyring(session, container.keys, container.clock),
        UploadJournal(container.sessions, container.keys, container.clock),
        container.clock,
        max_upload_bytes=10**6,
    )


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Container]:
    settings = settings_for("postgres-minio", tmp_path)
    container = build_ready_container(settings)
    yield container
    container.close()
    drop_postgres_database(settings.effective_database_url)


def test_no_fetch_is_allowed_after_the_revocation_committed(pg: Container) -> None:
    container = pg
    owner = make_citizen(container)
    agency_id = uuid.uuid4()
    with session_scope(container.sessions) as session:
        session.add(
            Agency(
                id=agency_id,
                code="RACE-1",
                name_vi="Cơ quan thử",
                level=AgencyLevel.province,
                active=True,
                created_at=container.clock.now(),
            )
        )
        doc = vault(container, session).create(
            owner.account_id, DocumentCreate(type_code="birth_certificate", title="Giấy khai sinh")
        )
        document_id = doc.id
    with session_scope(container.sessions) as session:
        vault(container, session).upload(
            owner.account_id,
            document_id,
            [b"%PDF-1.7\n" + b"x" * 2000],
            filename="a.pdf",
            actor_id=None,
        )
    agency = AgencyActor(client_id="race-client", agency_id=agency_id)
    actor = OwnerActor(owner.account_id, owner.account_id)
    rng = random.Random(42)
    allowed_total = 0
    violations: list[str] = []

    for _round in range(ROUNDS):
        with session_scope(container.sessions) as session:
            service = consents(container, session)
            request = service.create_request(
                agency,
                ConsentRequestIn(
                    subject_personal_id=owner.personal_id,
                    purpose="Kiểm tra tranh chấp thu hồi",
                    procedure_code="race",
                    items=[RequestedItem(document_type="birth_certificate")],
                    access_mode=AccessMode.repeated,
                    max_uses=1000,
                    access_until=container.clock.now().replace(year=2099),
                    retention_days=1,
                ),
            )
            summary = service.decide(actor, request.id, DecisionIn(decision="grant"))
            assert summary.grant is not None
            grant_id = summary.grant.id
        stop = threading.Event()
        outcome: dict[str, int] = {"allowed": 0}

        def fetch_loop(
            grant_id: uuid.UUID = grant_id,
            outcome: dict[str, int] = outcome,
            stop: threading.Event = stop,
        ) -> None:
            for _ in range(500):
                if stop.is_set():
                    return
                try:
                    with session_scope(container.sessions) as s:
                        consents(container, s).authorize_fetch(agency, grant_id, document_id)
                    outcome["allowed"] += 1
                except GrantRevoked:
                    return

        fetcher = threading.Thread(target=fetch_loop)
        fetcher.start()
        threading.Event().wait(rng.random() * 0.004)
        with session_scope(container.sessions) as session:
            consents(container, session).revoke(actor, grant_id)
        fetcher.join(timeout=30)
        stop.set()
        assert not fetcher.is_alive()
        allowed_total += outcome["allowed"]
        with container.sessions() as session:
            entries = session.scalars(
                select(AccessLogEntry)
                .where(AccessLogEntry.grant_id == grant_id)
                .order_by(AccessLogEntry.seq)
            ).all()
        revoke_seq = next(e.seq for e in entries if e.action == "consent.revoke")
        late = [
            e.seq
            for e in entries
            if e.action == "document.fetch" and e.decision == "allowed" and e.seq > revoke_seq
        ]
        allowed_logged = sum(
            1 for e in entries if e.action == "document.fetch" and e.decision == "allowed"
        )
        assert allowed_logged == outcome["allowed"]
        if late:
            violations.append(f"grant {grant_id}: fetches at seq {late} after revoke {revoke_seq}")
    assert violations == []
    # The loop really raced: fetches succeeded before revocations, across the rounds.
    assert allowed_total > ROUNDS // 2
