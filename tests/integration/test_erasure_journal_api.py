"""Every deletion and account erasure is in the erasure journal (``KHO_ERASURE_LIST``) before it
is answered, through the API and the pages, on both backends; an unwritable journal fails the
request with 503 ``erasure_journal_unavailable`` and nothing is deleted (ADR 0009)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from storage.erasures import Erasure, FileErasureJournal
from tests.assurance.conftest import WEB_COOKIE, open_page_session
from tests.conftest import (
    KhoEnv,
    Owner,
    build_ready_container,
    drop_postgres_database,
    settings_for,
)

BACKENDS = ["sqlite-local", "postgres-minio"]


def paper(seed: int) -> bytes:
    return b"%PDF-1.7\n" + secrets.token_bytes(2_000 + seed)


@contextmanager
def open_kho(backend: str, tmp: Path, **overrides: object) -> Iterator[KhoEnv]:
    """Kho on ``backend`` with a TestClient around the app, as ``kho_env`` but with settings."""
    settings = settings_for(backend, tmp, **overrides)
    container = build_ready_container(settings)
    app = create_app(settings, container=container)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield KhoEnv(backend, settings, container, client)
    finally:
        container.close()
        if backend == "postgres-minio":
            for info in container.objects.list(""):
                container.objects.delete(info.key)
            drop_postgres_database(settings.effective_database_url)


def stored_paper(env: KhoEnv, owner: Owner, seed: int = 0) -> tuple[str, bytes]:
    created = env.client.post(
        "/v1/documents",
        json={"type_code": "birth_certificate", "title": "Giấy khai sinh"},
        headers=env.headers(owner),
    )
    assert created.status_code == 201, created.text
    document_id: str = created.json()["id"]
    data = paper(seed)
    uploaded = env.client.put(
        f"/v1/documents/{document_id}/content", content=data, headers=env.headers(owner)
    )
    assert uploaded.status_code == 201, uploaded.text
    return document_id, data


def journal_of(env: KhoEnv) -> list[Erasure]:
    return FileErasureJournal(env.settings.effective_erasure_list).entries()


def page_post(env: KhoEnv, person: Owner, path: str, **fields: str) -> Any:
    secret, csrf = open_page_session(env, person)
    return env.client.post(
        path,
        data={"csrf": csrf, **fields},
        headers={"Cookie": f"{WEB_COOKIE}={secret}"},
        follow_redirects=False,
    )


def test_each_deletion_and_erasure_adds_exactly_its_line(kho_env: KhoEnv) -> None:
    env = kho_env
    assert env.settings.effective_erasure_list == env.settings.data_dir / "erasures.log"
    owner, other = env.citizen(), env.citizen()
    document_id, _ = stored_paper(env, owner)
    kept_id, _ = stored_paper(env, owner, 1)
    assert journal_of(env) == []

    # Someone else's document: 404, nothing recorded.
    refused = env.client.delete(f"/v1/documents/{document_id}", headers=env.headers(other))
    assert refused.status_code == 404
    assert journal_of(env) == []

    started = env.container.clock.now()
    gone = env.client.delete(f"/v1/documents/{document_id}", headers=env.headers(owner))
    assert gone.status_code == 204, gone.text
    entries = journal_of(env)
    assert [(e.kind, str(e.id)) for e in entries] == [("document", document_id)]
    assert started <= dt.datetime.fromisoformat(entries[0].when) <= env.container.clock.now()
    # A second delete of the same document is a 404, and adds nothing.
    again = env.client.delete(f"/v1/documents/{document_id}", headers=env.headers(owner))
    assert again.status_code == 404
    assert len(journal_of(env)) == 1

    erased = env.client.delete("/v1/me", headers=env.headers(owner))
    assert erased.status_code == 204, erased.text
    entries = journal_of(env)
    assert [(e.kind, e.id) for e in entries[1:]] == [("account", owner.account_id)]
    assert len(entries) == 2
    assert env.client.get("/v1/me", headers=env.headers(owner)).status_code in (401, 403, 410)
    # One account line covers every paper of the account; no line per document.
    assert kept_id not in {str(e.id) for e in entries}


def test_the_pages_record_deletions_and_erasures_too(kho_env: KhoEnv) -> None:
    env = kho_env
    owner = env.citizen()
    document_id, _ = stored_paper(env, owner)
    deleted = page_post(env, owner, f"/web/documents/{document_id}/delete")
    assert deleted.status_code == 303, deleted.text
    assert [(e.kind, str(e.id)) for e in journal_of(env)] == [("document", document_id)]
    erased = page_post(env, owner, "/web/account/erase", confirm="XOÁ")
    assert erased.status_code == 303, erased.text
    assert [(e.kind, e.id) for e in journal_of(env)][1:] == [("account", owner.account_id)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unwritable_journal_refuses_the_erasure_and_keeps_everything(
    backend: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal" / "erasures.log"
    journal.mkdir(parents=True)  # a directory where the file should be
    with open_kho(backend, tmp_path, erasure_list=journal) as env:
        owner = env.citizen()
        document_id, data = stored_paper(env, owner)
        objects_before = sorted(info.key for info in env.container.objects.list(""))

        # Readiness says so first: a balancer stops sending traffic to this process.
        ready = env.client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["erasure_journal"] == "erasure_journal_unavailable"
        assert ready.json()["checks"]["database"] == "ok"

        refused = env.client.delete(f"/v1/documents/{document_id}", headers=env.headers(owner))
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "erasure_journal_unavailable"
        assert refused.headers.get("retry-after")
        # The document and its content are still there, its object untouched.
        content = env.client.get(f"/v1/documents/{document_id}/content", headers=env.headers(owner))
        assert content.status_code == 200 and content.content == data
        assert sorted(info.key for info in env.container.objects.list("")) == objects_before

        refused = env.client.delete(
            "/v1/me", headers=env.headers(owner, **{"Accept-Language": "en"})
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "erasure_journal_unavailable"
        assert refused.json()["title"] == "Erasure journal temporarily unavailable"
        assert env.client.get("/v1/me", headers=env.headers(owner)).status_code == 200
        content = env.client.get(f"/v1/documents/{document_id}/content", headers=env.headers(owner))
        assert content.status_code == 200 and content.content == data

        # The page's deletion and erasure are refused the same way. (The pages turn the error
        # into an error page and their unit of work still commits: nothing must be in it.)
        page = page_post(env, owner, f"/web/documents/{document_id}/delete")
        assert page.status_code == 503
        assert "erasure_journal_unavailable" in page.text
        content = env.client.get(f"/v1/documents/{document_id}/content", headers=env.headers(owner))
        assert content.status_code == 200 and content.content == data
        page = page_post(env, owner, "/web/account/erase", confirm="XOÁ")
        assert page.status_code == 503
        assert env.client.get("/v1/me", headers=env.headers(owner)).status_code == 200
        assert sorted(info.key for info in env.container.objects.list("")) == objects_before

        # The journal comes back: ready again, the retry succeeds and is recorded, once.
        journal.rmdir()
        ready = env.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["erasure_journal"] == "ok"
        gone = env.client.delete(f"/v1/documents/{document_id}", headers=env.headers(owner))
        assert gone.status_code == 204, gone.text
        erased = env.client.delete("/v1/me", headers=env.headers(owner))
        assert erased.status_code == 204, erased.text
        assert [(e.kind, str(e.id)) for e in FileErasureJournal(journal).entries()] == [
            ("document", document_id),
            ("account", str(owner.account_id)),
        ]
        assert list(env.container.objects.list("")) == []


def test_a_missing_journal_directory_is_not_created(tmp_path: Path) -> None:
    journal = tmp_path / "unmounted" / "erasures.log"
    with open_kho("sqlite-local", tmp_path, erasure_list=journal) as env:
        owner = env.citizen()
        document_id, _ = stored_paper(env, owner)
        refused = env.client.delete(f"/v1/documents/{document_id}", headers=env.headers(owner))
        assert refused.status_code == 503
        assert refused.json()["code"] == "erasure_journal_unavailable"
        assert env.client.get("/readyz").json()["checks"]["erasure_journal"] == (
            "erasure_journal_unavailable"
        )
        assert not journal.parent.exists()
