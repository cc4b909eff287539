"""schemathesis against the OpenAPI document, bounded for CI (the long run is ``bench/fuzz.py``).

A few thousand generated requests (positive data with real identifiers, positive and negative
generated data, the document's examples), each authenticated as the owner, agency X or the
operator of the assurance world, in-process, on the embedded backends and on PostgreSQL and
MinIO (where values SQLite takes, such as a NUL character, are refused by the database). Every
response is checked for server errors, status, content type, body schema and headers against the
served ``/openapi.json`` as it is (``api/openapi.py`` declares Kho's problem responses). Server
errors, responses outside the document (an undeclared status included) and transport errors fail
the test (docs/assurance/fuzzing.md).
"""

from __future__ import annotations

import io
from typing import Any

from bench.fuzz import (
    EXCLUDED,
    Fuzzer,
    fetch_document,
    prepare_for_fuzzing,
    report,
    world_target,
)
from tests.assurance.conftest import World

REQUESTS = 2500  # per backend
SECONDS = 120.0
PER_STRATEGY = 6


def test_fuzz_openapi_bounded(assurance_world: World) -> None:
    world = assurance_world
    prepare_for_fuzzing(world)
    target = world_target(world)
    document = fetch_document(target.client)
    fuzzer = Fuzzer(document, target, seed=20261129)
    stats = fuzzer.run(REQUESTS, seconds=SECONDS, per_strategy=PER_STRATEGY)

    out = io.StringIO()
    report(stats, out)
    print(out.getvalue())
    summary = out.getvalue()[:20000]
    assert not stats.server_errors, f"server errors:\n{summary}"
    assert not stats.violations, f"responses outside the schema:\n{summary}"
    assert not stats.transport_errors, f"transport errors:\n{summary}"

    operations = {
        f"{method.upper()} {path}"
        for path, ops in document["paths"].items()
        for method in ops
        if (method.upper(), path) not in EXCLUDED
    }
    assert set(stats.by_operation) == operations, (
        f"operations never exercised: {sorted(operations - set(stats.by_operation))}"
    )
    assert stats.requests >= 1500, summary
    for identity in ("owner", "agency", "operator"):
        assert stats.by_identity[identity] > stats.requests // 8, stats.by_identity
    # Some generated requests get through to a success answer, not only refusals.
    assert sum(n for status, n in stats.by_status.items() if status < 300) > 50, stats.by_status


def test_the_served_document_declares_problem_responses(assurance_world: World) -> None:
    """What the checks rely on: every operation of the served document says what its errors
    look like, and nothing documents FastAPI's ``HTTPValidationError``."""
    document = fetch_document(world_target(assurance_world).client)
    schemas: dict[str, Any] = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "Problem" in schemas
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "default" in responses, (method, path)
            for status, response in responses.items():
                if status == "default" or status.startswith(("4", "5")):
                    assert "application/problem+json" in response["content"], (method, path)
