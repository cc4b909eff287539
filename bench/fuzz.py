"""schemathesis against Kho's OpenAPI document: many generated requests, three identities.

    python -m bench.fuzz [--requests 100000] [--minutes 25] [--server] [--seed N]

Every operation of ``/openapi.json`` is driven by schemathesis' Hypothesis strategies (positive
data with real identifiers where the path names them, positive data with generated identifiers,
negative data, and the document's own examples), each request authenticated as the owner, an
agency back-end or an operator (chosen per request: 60 % the identity the operation is for, by
its path, otherwise any of the three), until ``--requests`` have been sent or
``--minutes`` have passed. Kho runs in-process (the world of ``tests/assurance/conftest.py``) on
PostgreSQL and MinIO by default or on the embedded backends with ``--backend sqlite-local``, or
as a real ``kho serve`` child on PostgreSQL with ``--server``. Rate limits are switched off: the
run is about what each request gets back.

Every response is checked with ``not_a_server_error``, ``status_code_conformance``,
``content_type_conformance``, ``response_schema_conformance`` and
``response_headers_conformance`` against the served document as it is (``api/openapi.py``
declares the RFC 9457 problem body on every error status and as every operation's ``default``).
A status below 400 that the operation does not list is a violation too (schemathesis lets
``default`` cover any status; in Kho's document it is the error response). Counted for
information: each error (operation, status) answered that only ``default`` covers.

Printed at the end: requests sent, the status histogram, server errors, schema violations (with
one reproducible ``curl`` per distinct problem), the statuses only ``default`` covers and the
duration; ``--json`` writes the same as JSON. ``tests/assurance/test_fuzz_openapi.py`` runs a
short bounded version in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import HypothesisException, NonInteractiveExampleWarning
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

IDENTITIES = ("owner", "agency", "operator")
NATURAL_SHARE = 0.6  # of requests sent as the identity the operation is for
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Operations the fuzzer leaves out or rations, and why (docs/assurance/fuzzing.md).
EXCLUDED = {
    # Erasing the owner ends the run's owner identity; the matrix covers this route.
    ("DELETE", "/v1/me"): "erases the fuzzing owner",
}
RATIONED = {
    # Every call generates, seals and publishes a new signing key.
    ("POST", "/v1/admin/keys/signing/rotate"): 10,
}

# -- the target and the run -----------------------------------------------------------------------


class Client(Protocol):
    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response: ...


@dataclass
class Target:
    """Where the requests go and who sends them."""

    client: Client
    base_url: str
    identity_headers: Callable[[str], dict[str, str]]
    path_values: Callable[[str, str], dict[str, str]]  # (method, path) -> real path parameters
    refresh: Callable[[], None] = lambda: None  # new resources for the next round


@dataclass
class Finding:
    kind: str  # server_error | schema_violation | transport_error
    operation: str
    identity: str
    status: int | None
    title: str
    reproduce: str = ""


@dataclass
class Stats:
    requests: int = 0
    seconds: float = 0.0
    by_status: Counter[int] = field(default_factory=Counter)
    by_identity: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    by_mode: Counter[str] = field(default_factory=Counter)
    by_code: Counter[tuple[int, str]] = field(default_factory=Counter)
    server_errors: list[Finding] = field(default_factory=list)
    violations: list[Finding] = field(default_factory=list)
    transport_errors: list[Finding] = field(default_factory=list)
    default_only: Counter[tuple[str, int]] = field(default_factory=Counter)
    excluded: dict[str, str] = field(default_factory=dict)

    def distinct(self, findings: list[Finding]) -> list[Finding]:
        seen: dict[tuple[str, str, int | None], Finding] = {}
        for finding in findings:
            seen.setdefault((finding.operation, finding.title, finding.status), finding)
        return list(seen.values())

    def as_json(self) -> dict[str, Any]:
        def rows(findings: list[Finding]) -> list[dict[str, Any]]:
            return [f.__dict__ for f in self.distinct(findings)]

        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 1),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_identity": dict(self.by_identity),
            "by_mode": dict(self.by_mode),
            "by_problem_code": {
                f"{status} {code}": n for (status, code), n in sorted(self.by_code.items())
            },
            "operations": len(self.by_operation),
            "server_errors": len(self.server_errors),
            "schema_violations": len(self.violations),
            "transport_errors": len(self.transport_errors),
            "distinct_server_errors": rows(self.server_errors),
            "distinct_schema_violations": rows(self.violations),
            "distinct_transport_errors": rows(self.transport_errors),
            "statuses_only_default_covers": {
                f"{op} -> {status}": n for (op, status), n in sorted(self.default_only.items())
            },
            "excluded": self.excluded,
        }


def _declared(document: Mapping[str, Any]) -> dict[str, set[str]]:
    declared: dict[str, set[str]] = {}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                declared[f"{method.upper()} {path}"] = set(operation["responses"])
    return declared


def _problem_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "(not json)"
    if isinstance(body, dict):
        return str(body.get("code") or body.get("error") or "(no code)")
    return "(not an object)"


def _httpx_kwargs(kwargs: dict[str, Any], base_url: str) -> dict[str, Any]:
    """schemathesis serialises for ``requests``; translate to httpx."""
    out: dict[str, Any] = {
        "headers": dict(kwargs.get("headers") or {}),
        "params": kwargs.get("params") or None,
        "follow_redirects": False,
    }
    cookies = kwargs.get("cookies") or {}
    if cookies:
        out["headers"]["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        out["content"] = data
    elif data is not None:
        out["data"] = data
    if kwargs.get("files"):
        out["files"] = kwargs["files"]
    url = str(kwargs["url"])
    if url.startswith(base_url):
        url = url[len(base_url) :] or "/"
    out["url"] = url
    return out


class Fuzzer:
    def __init__(self, document: Mapping[str, Any], target: Target, *, seed: int | None = None):
        self.declared = _declared(document)
        self.schema = schemathesis.openapi.from_dict(dict(document))
        self.target = target
        self.random = random.Random(seed)
        self.stats = Stats(excluded={f"{m} {p}": why for (m, p), why in EXCLUDED.items()})
        self.operations = [
            result.ok() for result in self.schema.get_all_operations() if isinstance(result, Ok)
        ]
        self.deadline = math.inf
        self.limit = 0

    # one request -------------------------------------------------------------------------------

    def send(self, case: Any, identity: str, mode: str) -> None:
        if self.stats.requests >= self.limit or time.monotonic() >= self.deadline:
            return
        operation = f"{case.method.upper()} {case.path}"
        auth = self.target.identity_headers(identity)
        kwargs = case.as_transport_kwargs(base_url=self.target.base_url, headers=auth)
        request = _httpx_kwargs(kwargs, self.target.base_url)
        stats = self.stats
        stats.requests += 1
        stats.by_identity[identity] += 1
        stats.by_operation[operation] += 1
        stats.by_mode[mode] += 1
        try:
            response = self.target.client.request(case.method.upper(), **request)
        except (httpx.HTTPError, OSError, RuntimeError) as exc:
            stats.transport_errors.append(
                Finding("transport_error", operation, identity, None, type(exc).__name__)
            )
            return
        status = response.status_code
        stats.by_status[status] += 1
        if status >= 400:
            stats.by_code[(status, _problem_code(response))] += 1
        if str(status) not in self.declared.get(operation, set()):
            if status < 400:
                # schemathesis accepts any status an operation's ``default`` covers; in Kho's
                # document ``default`` is the error response, so a success must be listed.
                stats.violations.append(
                    Finding(
                        "schema_violation",
                        operation,
                        identity,
                        status,
                        f"Undeclared status: {status} is not an error, and only `default` "
                        "covers it",
                    )
                )
            else:
                stats.default_only[(operation, status)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=request["headers"])
        except FailureGroup as group:
            self._record(case, operation, identity, status, list(group.exceptions), request)
        except Failure as failure:
            self._record(case, operation, identity, status, [failure], request)

    def _record(
        self,
        case: Any,
        operation: str,
        identity: str,
        status: int,
        failures: list[Any],
        request: dict[str, Any],
    ) -> None:
        for failure in failures:
            title = str(getattr(failure, "title", type(failure).__name__))
            checks = getattr(failure, "checks", ())
            if "not_a_server_error" in checks:
                bucket, kind = self.stats.server_errors, "server_error"
            else:
                bucket, kind = self.stats.violations, "schema_violation"
            reproduce = ""
            with contextlib.suppress(Exception):
                reproduce = case.as_curl_command(headers=request["headers"])
            detail = str(getattr(failure, "message", ""))[:400]
            bucket.append(
                Finding(kind, operation, identity, status, f"{title}: {detail}", reproduce[:2000])
            )

    def identity_for(self, path: str) -> str:
        """Mostly the identity the operation is for (so that requests get past sign-in into
        the rules), otherwise any of the three (so that refusals are exercised too)."""
        if self.random.random() < NATURAL_SHARE:
            if path.startswith("/v1/admin/"):
                return "operator"
            if path.startswith("/v1/agency/"):
                return "agency"
            if path.startswith("/v1/"):
                return "owner"
        return self.random.choice(IDENTITIES)

    # strategies --------------------------------------------------------------------------------

    def _drive(self, strategy: Any, examples: int, mode: str) -> None:
        @settings(
            max_examples=examples,
            database=None,
            deadline=None,
            derandomize=False,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            # Chosen here, not by Hypothesis (which would favour the first as "simplest").
            self.send(case, self.identity_for(case.path), mode)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonInteractiveExampleWarning)
            try:
                _with_seed(run, self.random.getrandbits(64))()
            except HypothesisException as exc:  # e.g. Unsatisfiable: nothing to generate
                self.stats.by_mode[f"unsatisfiable:{type(exc).__name__}"] += 1

    def strategies(self, operation: Any, first_round: bool) -> Iterator[tuple[str, Any]]:
        method, path = operation.method.upper(), operation.path
        values = self.target.path_values(method, path)
        wanted = {p.name for p in operation.path_parameters}
        real = {k: v for k, v in values.items() if k in wanted}
        if first_round:
            for strategy in self.schema.get_strategies_from_examples(operation):
                yield "examples", strategy
        if real and len(real) == len(wanted):
            yield (
                "positive-real-ids",
                operation.as_strategy(
                    generation_mode=schemathesis.GenerationMode.POSITIVE, path_parameters=real
                ),
            )
        yield (
            "positive",
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
        )
        yield (
            "negative",
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
        )

    def run(
        self,
        requests: int,
        *,
        seconds: float = math.inf,
        per_strategy: int = 25,
        progress: Callable[[Stats], None] | None = None,
    ) -> Stats:
        start = time.monotonic()
        self.deadline = start + seconds
        self.limit = requests
        operations = [op for op in self.operations if (op.method.upper(), op.path) not in EXCLUDED]
        sent_per_op: Counter[str] = Counter()
        first = True
        while self.stats.requests < requests and time.monotonic() < self.deadline:
            before = self.stats.requests
            self.target.refresh()
            self.random.shuffle(operations)
            for operation in operations:
                key = (operation.method.upper(), operation.path)
                for mode, strategy in self.strategies(operation, first):
                    cap = RATIONED.get(key)
                    budget = per_strategy
                    if cap is not None:
                        budget = min(budget, cap - sent_per_op[operation.label])
                        if budget <= 0:
                            continue
                    sent_before = self.stats.requests
                    self._drive(strategy, budget, mode)
                    sent_per_op[operation.label] += self.stats.requests - sent_before
                    if self.stats.requests >= requests or time.monotonic() >= self.deadline:
                        break
                if self.stats.requests >= requests or time.monotonic() >= self.deadline:
                    break
            first = False
            if progress is not None:
                self.stats.seconds = time.monotonic() - start
                progress(self.stats)
            if self.stats.requests == before:
                break  # nothing left to generate
        self.stats.seconds = time.monotonic() - start
        return self.stats


def _with_seed(test: Callable[[], None], value: int) -> Callable[[], None]:
    from hypothesis import seed

    seeded: Callable[[], None] = seed(value)(test)
    return seeded


# -- targets -----------------------------------------------------------------------------------


def world_target(world: Any) -> Target:
    """Requests through the world's client (a TestClient, or an httpx client to a server)."""
    env = world.env
    issued_at = [time.monotonic()]
    agency_token: list[str] = [world.x.token()]

    def identity_headers(identity: str) -> dict[str, str]:
        if identity == "owner":
            return dict(env.headers(world.owner_a))
        if identity == "operator":
            return dict(env.operator_headers())
        if time.monotonic() - issued_at[0] > 300:  # client-credentials tokens live 10 minutes
            agency_token[0] = world.x.token()
            issued_at[0] = time.monotonic()
        return {"Authorization": f"Bearer {agency_token[0]}"}

    state: dict[str, str] = {}

    def refresh() -> None:
        # Fresh resources each round: the previous round may have deleted or revoked them.
        state["document_id"] = world.fresh_document()
        state["grant_id"] = world.fresh_grant()
        state["request_id"] = world.fresh_request()
        state["delegation_id"] = world.fresh_delegation()

    def path_values(method: str, path: str) -> dict[str, str]:
        values = {
            "document_id": state.get("document_id", world.doc_a),
            "grant_id": state.get("grant_id", world.grant_id),
            "request_id": state.get("request_id", world.pending_request_id),
            "delegation_id": state.get("delegation_id", world.delegation_id),
            "notification_id": world.notification_id,
            "personal_id": world.owner_a.personal_id,
            "organisation_id": world.organisation_id,
            # Operator routes get a sacrificial agency: a PATCH may deactivate it.
            "agency_id": world.fuzz_agency_id,
            "code": "1.004222" if method == "GET" else "KHO-FZ-001",
        }
        if path.startswith("/v1/agency/grants/"):
            values["document_id"] = world.doc_a
            values["grant_id"] = world.grant_id
        if path.startswith("/v1/agency/issued-documents/"):
            values["document_id"] = world.issued_doc_id
        return values

    base = str(getattr(env.client, "base_url", "http://testserver")).rstrip("/")
    return Target(env.client, base, identity_headers, path_values, refresh)


def fetch_document(client: Client) -> dict[str, Any]:
    response = client.request("GET", "/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


@contextlib.contextmanager
def in_process_world(tmp: Path, backend: str = "sqlite-local") -> Iterator[Any]:
    """Kho in-process (a TestClient) on ``sqlite-local`` or ``postgres-minio``."""
    from tests.assurance.conftest import build_world, open_env

    with open_env(backend, tmp) as env:
        world = build_world(env)
        prepare_for_fuzzing(world)
        yield world


@contextlib.contextmanager
def server_world(tmp: Path) -> Iterator[Any]:
    """A real ``kho serve`` on a fresh PostgreSQL database, with the world built over HTTP."""
    from tests.assurance.conftest import build_world
    from tests.conftest import KhoEnv
    from tests.kho_server import running_kho

    with (
        running_kho(tmp, postgres=True, rate_limit_enabled=False) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        # KhoEnv names a TestClient; an httpx client to the server offers the same calls.
        env = KhoEnv("kho-serve", server.settings, server.container, client)  # type: ignore[arg-type]
        world = build_world(env)
        prepare_for_fuzzing(world)
        try:
            yield world
        finally:
            server.close()


def prepare_for_fuzzing(world: Any) -> None:
    """An agency the operator routes may change at will (never X or Y)."""
    created = world.client.post(
        "/v1/admin/agencies",
        json={"code": "FUZZ-Z", "name_vi": "Cơ quan thử nghiệm ngẫu nhiên", "level": "province"},
        headers=world.ops(),
    )
    assert created.status_code == 201, created.text
    world.fuzz_agency_id = created.json()["id"]


def report(stats: Stats, out: Any = sys.stdout) -> None:
    data = stats.as_json()
    rate = stats.requests / stats.seconds if stats.seconds else 0.0
    print(f"requests sent: {stats.requests} in {stats.seconds:.0f} s ({rate:.0f}/s)", file=out)
    print("by identity: " + ", ".join(f"{k} {v}" for k, v in data["by_identity"].items()), file=out)
    print("by mode: " + ", ".join(f"{k} {v}" for k, v in data["by_mode"].items()), file=out)
    print(f"operations exercised: {data['operations']}", file=out)
    print(
        "status histogram: " + ", ".join(f"{k}: {v}" for k, v in data["by_status"].items()),
        file=out,
    )
    print(f"server errors: {data['server_errors']}", file=out)
    print(f"schema violations: {data['schema_violations']}", file=out)
    print(f"transport errors: {data['transport_errors']}", file=out)
    for finding in data["distinct_server_errors"] + data["distinct_schema_violations"]:
        print(
            f"  - [{finding['kind']}] {finding['operation']} as {finding['identity']} -> "
            f"{finding['status']}: {finding['title']}",
            file=out,
        )
        if finding["reproduce"]:
            print("    " + finding["reproduce"].replace("\n", "\n    "), file=out)
    default_only = data["statuses_only_default_covers"]
    print(
        f"covered only by the default (problem) response: {len(default_only)} (operation, "
        f"status) pairs, {sum(default_only.values())} responses",
        file=out,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=25.0, help="stop after this long")
    parser.add_argument("--per-strategy", type=int, default=25, help="examples per strategy run")
    parser.add_argument("--server", action="store_true", help="a real kho serve on PostgreSQL")
    parser.add_argument(
        "--backend",
        choices=["sqlite-local", "postgres-minio"],
        default="postgres-minio",
        help="backends of the in-process app (without --server)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the totals here")
    args = parser.parse_args(argv)

    def progress(stats: Stats) -> None:
        print(
            f"... {stats.requests} requests, {stats.seconds:.0f} s, "
            f"5xx {len(stats.server_errors)}, violations {len(stats.violations)}",
            file=sys.stderr,
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="kho-fuzz-") as tmp:
        opened = (
            server_world(Path(tmp)) if args.server else in_process_world(Path(tmp), args.backend)
        )
        with opened as world:
            target = world_target(world)
            fuzzer = Fuzzer(fetch_document(target.client), target, seed=args.seed)
            stats = fuzzer.run(
                args.requests,
                seconds=args.minutes * 60,
                per_strategy=args.per_strategy,
                progress=progress,
            )
    report(stats)
    if args.json is not None:
        args.json.write_text(json.dumps(stats.as_json(), indent=2, ensure_ascii=False))
    failed = stats.server_errors or stats.violations or stats.transport_errors
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
