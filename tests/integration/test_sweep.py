"""`kho storage sweep`: what interrupted uploads leave behind is removed; nothing live is."""

from __future__ import annotations

import datetime as dt
import uuid

from tests.conftest import KhoEnv
from tests.integration.test_documents_api import create_document, pdf_bytes, upload
from vault.models import Assurance
from vault.service import StorageSweeper, UploadJournal


def test_sweep_removes_abandoned_uploads_and_orphans_only(kho_env: KhoEnv) -> None:
    owner = kho_env.citizen()
    kept = create_document(kho_env, owner)
    data = pdf_bytes(40_000)
    assert upload(kho_env, owner, kept["id"], data).status_code == 201

    # An upload that crashed after its pending row and object were written, before the commit.
    crashed = create_document(kho_env, owner)
    container = kho_env.container
    journal = UploadJournal(container.sessions, container.keys, container.clock)
    crashed_key = "v1/" + uuid.uuid4().hex
    journal.begin(
        owner_id=owner.account_id,
        document_id=uuid.UUID(crashed["id"]),
        version_id=uuid.uuid4(),
        object_key=crashed_key,
        assurance=Assurance.self_declared,
        actor_id=owner.account_id,
    )
    container.objects.put(crashed_key, [b"KHOv-half-written"])
    # An object whose row never made it (written by hand, as a crash could leave it).
    container.objects.put("v1/" + uuid.uuid4().hex, [b"KHOv-orphan"])
    assert len(list(container.objects.list(""))) == 3

    young = StorageSweeper(container.sessions, container.objects, container.clock).run()
    assert (young.pending_removed, young.orphan_objects_removed) == (0, 0)

    report = StorageSweeper(
        container.sessions, container.objects, container.clock, grace=dt.timedelta(0)
    ).run()
    assert report.pending_removed == 1
    assert report.orphan_objects_removed == 1
    assert len(list(container.objects.list(""))) == 1
    again = StorageSweeper(
        container.sessions, container.objects, container.clock, grace=dt.timedelta(0)
    ).run()
    assert (again.pending_removed, again.orphan_objects_removed) == (0, 0)

    got = kho_env.client.get(f"/v1/documents/{kept['id']}/content", headers=kho_env.headers(owner))
    assert got.status_code == 200
    assert got.content == data
    retry = upload(kho_env, owner, crashed["id"], pdf_bytes(1234, seed=8))
    assert retry.status_code == 201
    assert retry.json()["content"]["version"] == 1
