"""Delegations over the owner's papers and access log, on the embedded backends and on
PostgreSQL + MinIO (ADR 0010).

A delegate names the owner in ``X-On-Behalf-Of``: ``documents:read`` opens the list, the
metadata, the versions and the content of the owner's papers, ``documents:write`` adds papers
and versions, ``access_log:read`` opens the owner's log and its proof. Each request of a
delegate is one entry in the *owner's* access log (actor the delegate, on behalf of the owner),
written in the request's transaction (no entry, no bytes); the owner's own use stays unlogged.
Deleting a paper, exporting the store and erasing the account are the owner's alone: 403 with
``X-On-Behalf-Of``. A delegation of another scope, revoked, expired, not yet started, or from
another owner answers 403, the same as for an owner who does not exist.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any, NoReturn

import pytest
from sqlalchemy.exc import OperationalError

from common.clock import OffsetClock
from consent.audit import AccessLog, InclusionProof, verify_inclusion
from tests.assurance.conftest import WEB_COOKIE, open_page_session
from tests.conftest import KhoEnv, Owner
from tests.integration.test_access_log import owner_side_check


def pdf(seed: int) -> bytes:
    return b"%PDF-1.7\n" + secrets.token_bytes(3_000 + seed)


def stored_paper(env: KhoEnv, owner: Owner, seed: int = 0) -> tuple[str, bytes]:
    created = env.client.post(
        "/v1/documents",
        json={"type_code": "birth_certificate", "title": f"Giấy khai sinh {seed}"},
        headers=env.headers(owner),
    )
    assert created.status_code == 201, created.text
    document_id: str = created.json()["id"]
    data = pdf(seed)
    uploaded = env.client.put(
        f"/v1/documents/{document_id}/content", content=data, headers=env.headers(owner)
    )
    assert uploaded.status_code == 201, uploaded.text
    return document_id, data


def delegate(
    env: KhoEnv,
    owner: Owner,
    to: Owner,
    *scope: str,
    valid_from: dt.datetime | None = None,
    days: int = 30,
) -> str:
    start = valid_from or env.container.clock.now()
    body: dict[str, Any] = {
        "delegate_personal_id": to.personal_id,
        "scope": list(scope),
        "valid_until": (start + dt.timedelta(days=days)).isoformat(),
    }
    if valid_from is not None:
        body["valid_from"] = valid_from.isoformat()
    created = env.client.post("/v1/delegations", json=body, headers=env.headers(owner))
    assert created.status_code == 201, created.text
    delegation_id: str = created.json()["id"]
    return delegation_id


def for_(env: KhoEnv, caller: Owner, owner: Owner | uuid.UUID, **extra: str) -> dict[str, str]:
    """The caller's headers, acting for ``owner``."""
    named = owner if isinstance(owner, uuid.UUID) else owner.account_id
    return env.headers(caller, **{"X-On-Behalf-Of": str(named)}, **extra)


def log_of(env: KhoEnv, owner: Owner) -> list[dict[str, Any]]:
    """The owner's whole log, read by the owner (which adds nothing to it)."""
    items: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params = {"limit": "200"} if after is None else {"limit": "200", "after_seq": str(after)}
        page = env.client.get("/v1/access-log", params=params, headers=env.headers(owner))
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        after = body["next_after_seq"]
        if after is None:
            return items


def by_delegate(entries: list[dict[str, Any]], helper: Owner) -> list[tuple[str, str | None]]:
    return [
        (e["action"], e["document_id"])
        for e in entries
        if e["actor_kind"] == "delegate" and e["actor_id"] == str(helper.account_id)
    ]


def refused(response: Any, code: str = "forbidden") -> dict[str, Any]:
    """The 403's problem body, without what differs between any two answers."""
    assert response.status_code == 403, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return {k: v for k, v in body.items() if k not in ("request_id", "instance")}


def test_a_reader_lists_and_downloads_and_each_read_is_in_the_owners_log(kho_env: KhoEnv) -> None:
    env = kho_env
    owner, helper = env.citizen(), env.citizen()
    document_id, data = stored_paper(env, owner)
    delegate(env, owner, helper, "documents:read")
    assert log_of(env, owner) == []  # the owner's own uploads and reads are not logged

    listed = env.client.get("/v1/documents", headers=for_(env, helper, owner))
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["items"]] == [document_id]
    meta = env.client.get(f"/v1/documents/{document_id}", headers=for_(env, helper, owner))
    assert meta.status_code == 200, meta.text
    assert meta.json()["current_version"] == 1
    versions = env.client.get(
        f"/v1/documents/{document_id}/versions", headers=for_(env, helper, owner)
    )
    assert versions.status_code == 200, versions.text
    assert [v["version"] for v in versions.json()["items"]] == [1]
    got = env.client.get(f"/v1/documents/{document_id}/content", headers=for_(env, helper, owner))
    assert got.status_code == 200, got.text
    assert got.content == data
    part = env.client.get(
        f"/v1/documents/{document_id}/content",
        headers=for_(env, helper, owner, Range="bytes=0-8"),
    )
    assert part.status_code == 206 and part.content == data[:9]

    entries = log_of(env, owner)
    assert by_delegate(entries, helper) == [
        ("delegate.list", None),
        ("delegate.metadata", document_id),
        ("delegate.versions", document_id),
        ("delegate.download", document_id),
        ("delegate.download", document_id),
    ]
    for entry in entries:
        assert entry["owner_id"] == str(owner.account_id)
        assert entry["on_behalf_of"] == str(owner.account_id)
        assert entry["decision"] == "allowed"
    downloads = [e for e in entries if e["action"] == "delegate.download"]
    assert {e["document_version"] for e in downloads} == {1}

    # The owner's own reads still add nothing; the log verifies against a signed checkpoint.
    assert env.client.get("/v1/documents", headers=env.headers(owner)).status_code == 200
    assert len(log_of(env, owner)) == len(entries)
    made = env.client.post("/v1/admin/access-log/checkpoints", headers=env.operator_headers())
    assert made.status_code == 201, made.text
    proof = env.client.get("/v1/access-log/proof", headers=env.headers(owner))
    assert proof.status_code == 200, proof.text
    jwks = env.client.get("/.well-known/jwks.json").json()
    claims = owner_side_check(proof.json(), jwks)
    assert verify_inclusion(InclusionProof.from_json(proof.json()), entries, jwks) == claims
    assert proof.json()["head_seq"] == len(entries)

    # The owner's page names the entries, Vietnamese first.
    secret, _csrf = open_page_session(env, owner)
    page = env.client.get("/web/access-log", headers={"Cookie": f"{WEB_COOKIE}={secret}"})
    assert page.status_code == 200, page.text[:500]
    for label in ("Tải giấy tờ về thay bạn", "Xem danh sách giấy tờ thay bạn"):
        assert label in page.text
    assert "Người được uỷ quyền" in page.text
    english = env.client.get(
        "/web/access-log", params={"lang": "en"}, headers={"Cookie": f"{WEB_COOKIE}={secret}"}
    )
    assert english.status_code == 200
    assert "Downloaded a paper for you" in english.text
    assert "Your delegate" in english.text


def test_a_reader_cannot_write_delete_export_or_erase(kho_env: KhoEnv) -> None:
    env = kho_env
    owner, helper = env.citizen(), env.citizen()
    document_id, data = stored_paper(env, owner)
    delegate(env, owner, helper, "documents:read", "consents:decide", "access_log:read")
    as_owner = for_(env, helper, owner)

    refused(
        env.client.put(f"/v1/documents/{document_id}/content", content=pdf(9), headers=as_owner)
    )
    refused(
        env.client.post(
            "/v1/documents", json={"type_code": "cccd", "title": "Căn cước"}, headers=as_owner
        )
    )
    refused(env.client.delete(f"/v1/documents/{document_id}", headers=as_owner), "owner_only")
    refused(env.client.get("/v1/export", headers=as_owner), "owner_only")
    refused(env.client.delete("/v1/me", headers=as_owner), "owner_only")

    # Nothing changed: one paper, one version, readable; both accounts still there.
    mine = env.client.get("/v1/documents", headers=env.headers(owner)).json()["items"]
    assert [(d["id"], d["current_version"]) for d in mine] == [(document_id, 1)]
    again = env.client.get(f"/v1/documents/{document_id}/content", headers=env.headers(owner))
    assert again.content == data
    assert env.client.get("/v1/me", headers=env.headers(helper)).status_code == 200
    assert env.client.get("/v1/me", headers=env.headers(owner)).status_code == 200
    # Refusals are not uses: nothing of them is in the owner's log.
    assert by_delegate(log_of(env, owner), helper) == []

    # Even a delegate holding every scope may not delete, export or erase for the owner.
    delegate(env, owner, helper, "documents:read", "documents:write")
    refused(env.client.delete(f"/v1/documents/{document_id}", headers=as_owner), "owner_only")
    refused(env.client.get("/v1/export", headers=as_owner), "owner_only")
    # And the owner's own deletion and export are as before.
    assert env.client.get("/v1/export", headers=env.headers(owner)).status_code == 200
    deleted = env.client.delete(f"/v1/documents/{document_id}", headers=env.headers(owner))
    assert deleted.status_code == 204


def test_a_writer_creates_and_uploads_a_new_version_logged(kho_env: KhoEnv) -> None:
    env = kho_env
    owner, helper = env.citizen(), env.citizen()
    document_id, _ = stored_paper(env, owner)
    delegate(env, owner, helper, "documents:write")
    as_owner = for_(env, helper, owner)

    second = pdf(2)
    uploaded = env.client.put(
        f"/v1/documents/{document_id}/content", content=second, headers=as_owner
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["content"]["version"] == 2
    created = env.client.post(
        "/v1/documents", json={"type_code": "cccd", "title": "Căn cước"}, headers=as_owner
    )
    assert created.status_code == 201, created.text
    new_id = created.json()["id"]

    # It is the owner's paper, not the delegate's; the owner reads the new version.
    got = env.client.get(f"/v1/documents/{document_id}/content", headers=env.headers(owner))
    assert got.content == second
    theirs = env.client.get("/v1/documents", headers=env.headers(owner)).json()["items"]
    assert {d["id"] for d in theirs} == {document_id, new_id}
    assert env.client.get("/v1/documents", headers=env.headers(helper)).json()["items"] == []
    # Writing is not reading.
    refused(env.client.get(f"/v1/documents/{document_id}/content", headers=as_owner))
    refused(env.client.get("/v1/documents", headers=as_owner))

    entries = log_of(env, owner)
    assert by_delegate(entries, helper) == [
        ("delegate.upload", document_id),
        ("delegate.create", new_id),
    ]
    assert entries[0]["document_version"] == 2
    assert (entries[0]["actor_kind"], entries[0]["on_behalf_of"]) == (
        "delegate",
        str(owner.account_id),
    )


def test_a_log_reader_reads_the_owners_log_and_proof(kho_env: KhoEnv) -> None:
    env = kho_env
    owner, helper = env.citizen(), env.citizen()
    delegate(env, owner, helper, "documents:read", "access_log:read")
    document_id, _ = stored_paper(env, owner)
    as_owner = for_(env, helper, owner)
    assert env.client.get(f"/v1/documents/{document_id}", headers=as_owner).status_code == 200

    read = env.client.get("/v1/access-log", headers=as_owner)
    assert read.status_code == 200, read.text
    items = read.json()["items"]
    assert {item["owner_id"] for item in items} == {str(owner.account_id)}
    # The read itself is in the log it returns: logged before the page is read.
    assert [item["action"] for item in items] == ["delegate.metadata", "delegate.access_log"]
    # The delegate's own log is untouched and still theirs without the header.
    assert env.client.get("/v1/access-log", headers=env.headers(helper)).json()["items"] == []

    assert (
        env.client.post(
            "/v1/admin/access-log/checkpoints", headers=env.operator_headers()
        ).status_code
        == 201
    )
    proof = env.client.get("/v1/access-log/proof", headers=as_owner)
    assert proof.status_code == 200, proof.text
    body = proof.json()
    assert body["owner_id"] == str(owner.account_id)
    jwks = env.client.get("/.well-known/jwks.json").json()
    owner_side_check(body, jwks)
    actions = [e["action"] for e in log_of(env, owner)]
    assert actions == [
        "delegate.metadata",
        "delegate.access_log",
        "delegate.access_log_proof",
    ]

    # documents:read alone does not open the log.
    reader = env.citizen()
    delegate(env, owner, reader, "documents:read")
    refused(env.client.get("/v1/access-log", headers=for_(env, reader, owner)))
    refused(env.client.get("/v1/access-log/proof", headers=for_(env, reader, owner)))


def test_revoked_expired_pending_and_wrong_owner_are_refused_alike(kho_env: KhoEnv) -> None:
    env = kho_env
    owner, other, helper = env.citizen(), env.citizen(), env.citizen()
    document_id, _ = stored_paper(env, owner)
    other_doc, _ = stored_paper(env, other, 1)
    revocable = delegate(env, owner, helper, "documents:read")
    path = f"/v1/documents/{document_id}/content"
    assert env.client.get(path, headers=for_(env, helper, owner)).status_code == 200

    # A delegation from A says nothing about B; an unknown owner gets the same answer.
    wrong = refused(env.client.get("/v1/documents", headers=for_(env, helper, other)))
    nobody = refused(env.client.get("/v1/documents", headers=for_(env, helper, uuid.uuid4())))
    garbled = env.client.get(
        "/v1/documents", headers=env.headers(helper, **{"X-On-Behalf-Of": "not-a-uuid"})
    )
    assert wrong == nobody == refused(garbled)
    refused(env.client.get(f"/v1/documents/{other_doc}/content", headers=for_(env, helper, other)))
    # Naming A does not reach B's paper either: it is not in A's store.
    assert (
        env.client.get(
            f"/v1/documents/{other_doc}/content", headers=for_(env, helper, owner)
        ).status_code
        == 404
    )

    revoked = env.client.post(f"/v1/delegations/{revocable}/revoke", headers=env.headers(owner))
    assert revoked.status_code == 200, revoked.text
    refused(env.client.get(path, headers=for_(env, helper, owner)))
    refused(env.client.get("/v1/documents", headers=for_(env, helper, owner)))

    # Not yet started, then active, then expired: time alone moves it.
    later = env.citizen()
    start = env.container.clock.now() + dt.timedelta(days=2)
    delegate(env, owner, later, "documents:read", valid_from=start, days=3)
    refused(env.client.get(path, headers=for_(env, later, owner)))
    clock = env.container.clock
    assert isinstance(clock, OffsetClock)
    clock.advance(dt.timedelta(days=3))
    assert env.client.get(path, headers=for_(env, later, owner)).status_code == 200
    clock.advance(dt.timedelta(days=3))
    refused(env.client.get(path, headers=for_(env, later, owner)))

    # Only the reads that were allowed are in A's log; nothing landed in B's.
    entries = log_of(env, owner)
    assert [(e["action"], e["actor_id"]) for e in entries] == [
        ("delegate.download", str(helper.account_id)),
        ("delegate.download", str(later.account_id)),
    ]
    assert log_of(env, other) == []


def test_without_the_header_a_delegate_is_on_their_own_store(kho_env: KhoEnv) -> None:
    env = kho_env
    owner, helper = env.citizen(), env.citizen()
    owners_doc, _ = stored_paper(env, owner)
    own_doc, own_data = stored_paper(env, helper, 5)
    delegate(env, owner, helper, "documents:read", "documents:write", "access_log:read")

    mine = env.client.get("/v1/documents", headers=env.headers(helper)).json()["items"]
    assert [d["id"] for d in mine] == [own_doc]
    got = env.client.get(f"/v1/documents/{own_doc}/content", headers=env.headers(helper))
    assert got.content == own_data
    assert (
        env.client.get(
            f"/v1/documents/{owners_doc}/content", headers=env.headers(helper)
        ).status_code
        == 404
    )
    assert env.client.get("/v1/export", headers=env.headers(helper)).status_code == 200
    # Nothing of that is anyone's log.
    assert log_of(env, owner) == []
    assert log_of(env, helper) == []


def test_no_entry_no_bytes(kho_env: KhoEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delegate's download whose log entry cannot be written serves nothing (503), as an
    agency's fetch; the owner's own download does not depend on the log."""
    env = kho_env
    owner, helper = env.citizen(), env.citizen()
    document_id, data = stored_paper(env, owner)
    delegate(env, owner, helper, "documents:read")

    def broken(self: AccessLog, event: object) -> NoReturn:
        raise OperationalError("INSERT INTO access_log_entries", {}, Exception("disk full"))

    monkeypatch.setattr(AccessLog, "append", broken)
    path = f"/v1/documents/{document_id}/content"
    failed = env.client.get(path, headers=for_(env, helper, owner))
    assert failed.status_code == 503, failed.text
    assert failed.json()["code"] == "access_log_unavailable"
    assert data not in failed.content
    assert env.client.get(path, headers=env.headers(owner)).content == data
    monkeypatch.undo()
    assert log_of(env, owner) == []
