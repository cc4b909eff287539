"""Consent-checked agency fetches against the owners' own downloads, in one run.

    python -m bench.consent [--seconds 8] [--rounds 3] [--size-kb 100] [--concurrency 4]

A real Kho server (`kho serve`, one API process per core, PostgreSQL and MinIO from
`scripts/services.sh`). Each of N client threads has its own owner with a 100 KB paper and its
own agency grant for it (many owners and grants in parallel is the realistic load; one grant
hammered by N clients would measure the grant's row lock, which serialises uses on purpose).
Side by side, interleaved rounds of a fixed time: the owners' `GET /v1/documents/{id}/content`,
and the agency's `GET /v1/agency/grants/{grant}/documents/{id}/content` — which adds the agency
check, the atomic grant use and an access-log entry committed before the first byte.
Target: agency fetches/s ÷ owner downloads/s ≥ 0.7.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

from api.container import API_AUDIENCE
from identity.models import Agency, AgencyLevel
from identity.service import CitizenProfile, IdentityService
from sso.service import ClientRegistration
from storage.db import session_scope
from tests.kho_server import running_kho
from tests.services import require_minio

Target = tuple[str, dict[str, str]]


def _hammer(base_url: str, targets: list[Target], seconds: float) -> tuple[int, int]:
    """One thread per target, each with its own keep-alive client, for ``seconds``."""
    done = [0, 0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def work(url: str, headers: dict[str, str]) -> None:
        ok = bad = 0
        with httpx.Client(base_url=base_url, timeout=60) as client:
            while time.monotonic() < stop:
                response = client.get(url, headers=headers)
                if response.status_code == 200 and response.content:
                    ok += 1
                else:
                    bad += 1
        with lock:
            done[0] += ok
            done[1] += bad

    threads = [threading.Thread(target=work, args=target) for target in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0], done[1]


def _json(response: httpx.Response) -> dict[str, object]:
    if response.status_code >= 300:
        raise SystemExit(f"set-up request failed: {response.status_code} {response.text[:300]}")
    body: dict[str, object] = response.json()
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="agency fetch vs owner download")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-kb", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    minio = require_minio()
    workdir = Path(tempfile.mkdtemp(prefix="kho-bench-consent-"))
    size = args.size_kb * 1000
    with running_kho(
        workdir,
        postgres=True,
        workers=args.workers,
        object_store="s3",
        s3_endpoint=minio.endpoint,
        s3_access_key=minio.access_key,
        s3_secret_key=minio.secret_key,
        s3_bucket=f"kho-bench-{uuid.uuid4().hex[:8]}",
    ) as kho:
        container = kho.container
        clock = container.clock
        agency_id = uuid.uuid4()
        with session_scope(container.sessions) as session:
            session.add(
                Agency(
                    id=agency_id,
                    code="BENCH-1",
                    name_vi="Cơ quan đo",
                    level=AgencyLevel.province,
                    active=True,
                    created_at=clock.now(),
                )
            )
        secret = kho.register_client(
            ClientRegistration(
                client_id="bench-agency",
                name="bench",
                kind="agency",
                token_endpoint_auth_method="client_secret_basic",
                grant_types=("client_credentials",),
                scopes=("kho:agency",),
                agency_id=agency_id,
            )
        )
        owners: list[Target] = []
        agency: list[Target] = []
        with httpx.Client(base_url=kho.url, timeout=60) as client:
            basic = base64.b64encode(f"bench-agency:{secret}".encode()).decode()
            agency_token = _json(
                client.post(
                    "/oauth2/token",
                    data={"grant_type": "client_credentials", "scope": "kho:agency"},
                    headers={"Authorization": f"Basic {basic}"},
                )
            )["access_token"]
            agency_headers = {"Authorization": f"Bearer {agency_token}"}
            for index in range(args.concurrency):
                pin = f"019090{index:06d}"
                with session_scope(container.sessions) as session:
                    owner = (
                        IdentityService(session, clock)
                        .enrol_citizen(
                            CitizenProfile(f"bench-{uuid.uuid4()}", pin, "Bench", None, 2)
                        )
                        .id
                    )
                token = container.issuer.access_token(
                    subject=str(owner),
                    audience=API_AUDIENCE,
                    client_id="bench",
                    lifetime=dt.timedelta(hours=1),
                )
                owner_headers = {"Authorization": f"Bearer {token}"}
                doc = _json(
                    client.post(
                        "/v1/documents",
                        json={"type_code": "birth_certificate", "title": "bench"},
                        headers=owner_headers,
                    )
                )["id"]
                data = b"%PDF-1.7\n" + os.urandom(size - 9)
                _json(
                    client.put(f"/v1/documents/{doc}/content", content=data, headers=owner_headers)
                )
                request = _json(
                    client.post(
                        "/v1/agency/consent-requests",
                        json={
                            "subject_personal_id": pin,
                            "purpose": "Đo hiệu năng",
                            "procedure_code": "bench",
                            "items": [{"document_type": "birth_certificate"}],
                            "access_mode": "repeated",
                            "max_uses": 100_000,
                            "access_until": (clock.now() + dt.timedelta(hours=2)).isoformat(),
                            "retention_days": 0,
                        },
                        headers=agency_headers,
                    )
                )
                decided = _json(
                    client.post(
                        f"/v1/consents/{request['id']}/decision",
                        json={"decision": "grant"},
                        headers=owner_headers,
                    )
                )
                grant = decided["grant"]
                assert isinstance(grant, dict)
                owners.append((f"/v1/documents/{doc}/content", owner_headers))
                agency.append(
                    (f"/v1/agency/grants/{grant['id']}/documents/{doc}/content", agency_headers)
                )

        cases = {"owner download": owners, "agency fetch under grant": agency}
        rates: dict[str, list[float]] = {name: [] for name in cases}
        errors: dict[str, int] = dict.fromkeys(cases, 0)
        for targets in cases.values():  # warm-up
            _hammer(kho.url, targets, 1.0)
        for _round in range(args.rounds):
            for name, targets in cases.items():
                ok, bad = _hammer(kho.url, targets, args.seconds)
                rates[name].append(ok / args.seconds)
                errors[name] += bad
        print(
            f"### {args.size_kb} KB papers, {args.concurrency} clients (one owner and grant "
            f"each), {args.workers} API processes\n"
        )
        print("| case | median req/s | rounds | errors | vs owner download |")
        print("|---|---:|---|---:|---:|")
        base = statistics.median(rates["owner download"])
        for name, values in rates.items():
            median = statistics.median(values)
            shown = ", ".join(f"{v:.0f}" for v in values)
            print(f"| {name} | {median:.0f} | {shown} | {errors[name]} | {median / base:.2f}× |")
        ratio = statistics.median(rates["agency fetch under grant"]) / base
        verdict = "MET" if ratio >= 0.7 else "NOT MET"
        print(f"\nagency fetch / owner download: {ratio:.2f} (target >= 0.7) — {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
