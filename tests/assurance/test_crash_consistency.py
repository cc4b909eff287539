"""Crash consistency (the CI-sized run): ``kho serve`` SIGKILLed during uploads, MinIO SIGKILLed
mid-upload, PostgreSQL stopped with ``-m immediate`` mid-transaction — on private servers of
this test's own, never on the shared ones.

After the faults, one sweep (grace 0), then: no acknowledged upload lost (each reads back with
its SHA-256), no duplicate (committed versions are exactly the acknowledged ones, idempotency
keys honoured), no readable orphan (every object belongs to a committed, unshredded version),
and the access log verifies with as many allowed fetches as the grant counted uses.

``python -m bench.crash`` runs the same with the full counts (200 / 20 / 20); see
``docs/assurance/crash.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.crash import ChaosPlan, run_chaos

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "assurance"

# The CI part: about two minutes on a 2-vCPU machine.
CI_PLAN = ChaosPlan(api_kills=20, minio_kills=3, pg_stops=3, uploaders=3)


def test_no_acknowledged_upload_lost_no_orphan_no_duplicate_under_kills() -> None:
    report = run_chaos(CI_PLAN)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "crash-ci.json").write_text(json.dumps(report.to_json(), indent=2, default=str))
    summary = report.summary()
    print(summary)
    assert report.ok, summary
    assert report.faults == {
        "api": CI_PLAN.api_kills,
        "minio": CI_PLAN.minio_kills,
        "pg": CI_PLAN.pg_stops,
    }, summary
    # The faults landed on work in progress, and work went on between them.
    assert sum(1 for n in report.inflight_at_fault if n > 0) >= 0.9 * len(
        report.inflight_at_fault
    ), summary
    assert report.uploads_acknowledged >= 50, summary
    assert report.uploads_retried > 0, summary
    assert report.sweep["pending_removed"] > 0, summary
    assert report.fetches_ok > 0, summary
    assert report.read_back == report.committed_versions == report.objects_in_bucket, summary
