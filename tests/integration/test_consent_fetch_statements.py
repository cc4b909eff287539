"""What one agency fetch under a grant costs in SQL statements on PostgreSQL, next to the
owner's own download of the same paper: the fetch adds the grant's use and the access-log entry,
and must stay within the owner's number of round trips (``bench.consent`` measures the
throughput; this keeps the statement count from creeping back up).

One agency fetch is five statements:

1. the token's revocation and the client's active agency (one SELECT, ADR 0007);
2. the grant's use: one conditional ``UPDATE … RETURNING`` that also returns the pinned version
   and hash of the paper (no read of the grant before it: no check-then-act, ADR 0006);
3. the lock of the owner's access-log head (``SELECT … FOR UPDATE``);
4. the head moved and the entry inserted, in one statement;
5. the version and the vault key it was wrapped under (one SELECT).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from tests.agencies import make_agency
from tests.conftest import KhoEnv
from tests.integration.test_consent import decide, log_of, paper

AGENCY_FETCH_STATEMENTS = 5


@contextmanager
def statements(env: KhoEnv) -> Iterator[list[str]]:
    """Every SQL statement sent to the database inside the block, whitespace collapsed."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        seen.append(" ".join(sql.split()))

    event.listen(env.container.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(env.container.engine, "before_cursor_execute", record)


@pytest.mark.parametrize("kho_env", ["postgres-minio"], indirect=True)
@pytest.mark.parametrize("mode", ["repeated", "once"])
def test_agency_fetch_stays_within_the_owners_round_trips(kho_env: KhoEnv, mode: str) -> None:
    env = kho_env
    agency = make_agency(env, "CA-ST", "Công an tỉnh Thử")
    owner = env.citizen()
    doc_id, data = paper(env, owner, "birth_certificate", 1)
    extra = (
        {
            "max_uses": 10,
            "access_until": (env.container.clock.now() + dt.timedelta(hours=1)).isoformat(),
        }
        if mode == "repeated"
        else {}
    )
    created = agency.request(
        owner.personal_id, [{"document_type": "birth_certificate"}], access_mode=mode, **extra
    )
    grant = decide(env, owner, created["id"], decision="grant")["grant"]
    agency_headers = agency.headers()
    owner_headers = env.headers(owner)
    url = f"/v1/agency/grants/{grant['id']}/documents/{doc_id}/content"

    with statements(env) as agency_sql:
        response = env.client.get(url, headers=agency_headers)
    assert response.status_code == 200, response.text
    assert response.content == data
    with statements(env) as owner_sql:
        response = env.client.get(f"/v1/documents/{doc_id}/content", headers=owner_headers)
    assert response.status_code == 200
    assert response.content == data

    listing = "\n".join(agency_sql)
    # A once-only grant also counts the paper's single use (one more conditional UPDATE).
    expected = AGENCY_FETCH_STATEMENTS + (1 if mode == "once" else 0)
    assert len(agency_sql) == expected, listing
    assert len(agency_sql) <= len(owner_sql) + (1 if mode == "once" else 0), listing
    # The use is counted by the conditional UPDATE, never by a read of the grant first.
    grant_statements = [s for s in agency_sql if " grants" in s.split(" WHERE ")[0]]
    assert len(grant_statements) == 1, listing
    assert grant_statements[0].startswith("UPDATE grants SET uses=")
    assert "grants.uses < grants.max_uses" in grant_statements[0]
    assert "RETURNING" in grant_statements[0]
    # The head is locked, then moved together with the entry's insert; then the content.
    order = [s.split(" ")[0] for s in agency_sql]
    lock = next(i for i, s in enumerate(agency_sql) if s.endswith("FOR UPDATE"))
    assert "FROM access_log_heads" in agency_sql[lock]
    write = next(i for i, s in enumerate(agency_sql) if "INSERT INTO access_log_entries" in s)
    assert write == lock + 1 and agency_sql[write].startswith("WITH"), listing
    assert "UPDATE access_log_heads" in agency_sql[write]
    assert order.index("UPDATE") < lock < write < len(agency_sql) - 1
    assert "document_versions" in agency_sql[-1] and "vault_keys" in agency_sql[-1]

    # The entry was committed: the chain has it, linked to the head.
    (entry,) = [e for e in log_of(env, owner) if e.action == "document.fetch"]
    assert entry.decision == "allowed" and str(entry.grant_id) == grant["id"]

    # The second fetch of a once-only grant is refused (the use was counted and committed).
    again = env.client.get(url, headers=agency_headers)
    assert again.status_code == (200 if mode == "repeated" else 403)
