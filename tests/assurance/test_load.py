"""The mixed load (the CI-sized run): locust, headless, on loopback, against two ``kho serve``
processes on one PostgreSQL and one MinIO, with rate limits on.

``python -m bench.load`` runs in a child process (locust patches the standard library with
gevent, which must not leak into the test process). The run is bounded (20 s, 10 users); every
kind of request must have been made and none may fail. The full runs (40 and 120 users, the
30-minute soak) are in ``docs/assurance/scale-out.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "assurance"

KINDS = {
    "agency: fetch under grant",
    "agency: grant's documents",
    "citizen: consent inbox",
    "citizen: download 10 KB",
    "citizen: list papers",
    "citizen: upload 10 KB",
}


def test_a_mixed_citizen_and_agency_load_has_no_errors(tmp_path: Path) -> None:
    figures = tmp_path / "load.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--seconds",
            "20",
            "--users",
            "10",
            "--spawn-rate",
            "10",
            "--owners",
            "6",
            "--sample-seconds",
            "5",
            "--warmup-seconds",
            "5",
            "--json",
            str(figures),
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = result.stdout + result.stderr[-4000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "load-ci.txt").write_text(report)
    assert result.returncode == 0, report
    data = json.loads(figures.read_text())
    rows = {row["name"]: row for row in data["requests"]}
    missing = KINDS - {name for name, row in rows.items() if row["requests"] > 0}
    assert not missing, f"never made: {sorted(missing)}\n{report}"
    total = rows["all requests"]
    assert total["failures"] == 0, report
    assert total["requests"] >= 100, report  # 10 users for 20 s: the servers kept up
    assert 0 < total["p50_ms"] <= total["p95_ms"] <= total["p99_ms"], report
    assert len(data["memory"]["samples"]) >= 4, report
