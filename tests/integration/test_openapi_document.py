"""The served ``/openapi.json`` declares Kho's error responses, and real errors match it.

``api/openapi.py`` gives every operation a ``default`` problem response and every declared error
status the problem body (no FastAPI ``HTTPValidationError``); the upload's ``Content-Length`` is
not a parameter. Real error answers of a few routes are validated against the schema the served
document declares for them (docs/assurance/fuzzing.md).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from jsonschema_rs import Draft202012Validator

from api.openapi import OAUTH_ERROR_PATHS
from tests.conftest import KhoEnv
from tests.integration.test_documents_api import create_document
from vault.catalogue import load_starter

PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"


def served(env: KhoEnv) -> dict[str, Any]:
    response = env.client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def schema_errors(document: dict[str, Any], name: str, body: Any) -> list[str]:
    schema = document["components"]["schemas"][name]
    return [error.message for error in Draft202012Validator(schema).iter_errors(body)]


def assert_declared(
    document: dict[str, Any], method: str, path: str, response: httpx.Response
) -> str:
    """The answer's status, media type and body are what the served document declares for the
    operation; returns the name of the schema it matched."""
    declared = document["paths"][path][method.lower()]["responses"]
    entry = declared.get(str(response.status_code)) or declared["default"]
    media_type = response.headers["content-type"].split(";")[0].strip()
    assert media_type in entry["content"], (method, path, response.status_code, media_type)
    ref: str = entry["content"][media_type]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[-1]
    errors = schema_errors(document, name, response.json())
    assert not errors, (method, path, response.status_code, errors, response.text)
    return name


def test_every_operation_declares_problem_responses(embedded_env: KhoEnv) -> None:
    document = served(embedded_env)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "code",
        "detail",
        "request_id",
    }
    found = operations(document)
    assert len(found) > 50
    for method, path, operation in found:
        responses = operation["responses"]
        default = responses.get("default")
        assert default is not None, (method, path)
        assert default["content"][PROBLEM]["schema"]["$ref"] == PROBLEM_REF, (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"][PROBLEM]["schema"]["$ref"] == PROBLEM_REF, (
                    method,
                    path,
                    status,
                )
        oauth = "application/json" in default["content"]
        assert oauth == (path in OAUTH_ERROR_PATHS), (method, path)


def test_no_operation_declares_a_content_length_parameter(embedded_env: KhoEnv) -> None:
    document = served(embedded_env)
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            assert parameter["name"].lower() != "content-length", (method, path)
    upload = document["paths"]["/v1/documents/{document_id}/content"]["put"]
    assert "application/octet-stream" in upload["requestBody"]["content"]


def test_the_document_is_built_once(embedded_env: KhoEnv) -> None:
    app = embedded_env.client.app
    assert isinstance(app, FastAPI)
    first = served(embedded_env)
    assert app.openapi_schema is not None
    assert app.openapi() is app.openapi()
    assert served(embedded_env) == first


def test_real_errors_match_the_declared_problem(embedded_env: KhoEnv) -> None:
    env, client = embedded_env, embedded_env.client
    document = served(embedded_env)
    owner = env.citizen()

    unauthenticated = client.get("/v1/documents")
    assert unauthenticated.status_code == 401
    assert assert_declared(document, "GET", "/v1/documents", unauthenticated) == "Problem"

    missing = client.get(f"/v1/documents/{uuid.uuid4()}", headers=env.headers(owner))
    assert missing.status_code == 404
    assert assert_declared(document, "GET", "/v1/documents/{document_id}", missing) == "Problem"

    invalid = client.post(
        "/v1/documents",
        json={"type_code": 5, "title": ["not", "a", "title"]},
        headers=env.headers(owner, **{"Accept-Language": "en"}),
    )
    assert invalid.status_code == 422
    assert assert_declared(document, "POST", "/v1/documents", invalid) == "Problem"
    assert invalid.headers["content-type"].startswith(PROBLEM)
    assert invalid.json()["errors"][0]["location"][0] == "body"

    document_id = create_document(env, owner)["id"]
    bad_length = client.put(
        f"/v1/documents/{document_id}/content",
        content=b"%PDF-1.7\n",
        headers=env.headers(owner, **{"Content-Length": "many"}),
    )
    assert bad_length.status_code == 422
    path = "/v1/documents/{document_id}/content"
    assert assert_declared(document, "PUT", path, bad_length) == "Problem"
    assert bad_length.json()["errors"][0]["location"] == ["header", "content-length"]

    catalogue = copy.deepcopy(load_starter())
    catalogue["procedures"][3]["requirements"][1]["document_type"] = "giay_khong_co"
    refused = client.post(
        "/v1/admin/catalogue/import", json=catalogue, headers=env.operator_headers()
    )
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_catalogue"
    assert assert_declared(document, "POST", "/v1/admin/catalogue/import", refused) == "Problem"
    assert refused.json()["errors"][0]["location"][:2] == ["procedures", "3"]

    token = client.post("/oauth2/token", data={"grant_type": "no_such_grant"})
    assert 400 <= token.status_code < 500
    assert token.headers["content-type"].startswith("application/json")
    assert assert_declared(document, "POST", "/oauth2/token", token) == "OAuthError"


def test_the_problem_schema_refuses_what_kho_never_sends(embedded_env: KhoEnv) -> None:
    document = served(embedded_env)
    body = {
        "type": "/problems/not_found",
        "title": "Not found",
        "status": 404,
        "code": "not_found",
        "detail": "Not found",
        "request_id": None,
    }
    assert schema_errors(document, "Problem", body) == []
    assert schema_errors(document, "Problem", {k: v for k, v in body.items() if k != "code"})
    assert schema_errors(document, "Problem", {**body, "status": 200})
    # FastAPI's own validation body (``detail`` a list) is not a problem document.
    assert schema_errors(document, "Problem", {"detail": [{"loc": ["body"], "msg": "x"}]})
    assert schema_errors(document, "Problem", {**body, "errors": [{"path": "code"}]})
