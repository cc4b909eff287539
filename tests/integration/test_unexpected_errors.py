"""A fault Kho did not foresee: a problem+json 500 with a request id, the process keeps serving,
and the exception's text (which may carry personal data or SQL parameters) is not logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import build_ready_container, settings_for

SECRET = "019090001234 Nguyễn Văn A"


def test_an_unforeseen_error_is_a_500_problem_and_its_text_stays_out_of_the_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for("sqlite-local", tmp_path, log_level="INFO")
    container = build_ready_container(settings)
    try:
        app = create_app(settings, container=container)

        def broken() -> None:
            raise RuntimeError(f"cannot file the paper of {SECRET}")

        app.add_api_route("/v1/broken-for-the-test", broken, methods=["GET"])
        # raise_server_exceptions: had the exception reached the server, the client would raise.
        with TestClient(app, raise_server_exceptions=True) as client:
            answer = client.get(
                "/v1/broken-for-the-test", headers={"X-Request-Id": "req-unforeseen-1"}
            )
            assert answer.status_code == 500
            assert answer.headers["content-type"].startswith("application/problem+json")
            body = answer.json()
            assert body["code"] == "internal_error"
            assert body["request_id"] == "req-unforeseen-1"
            assert answer.headers["x-request-id"] == "req-unforeseen-1"
            assert SECRET not in answer.text
            assert client.get("/healthz").status_code == 200
        logged = capsys.readouterr()
        output = logged.out + logged.err
        assert "unhandled_error" in output and "RuntimeError" in output
        assert SECRET not in output and "cannot file the paper" not in output
        assert "Traceback" not in output
    finally:
        container.close()
