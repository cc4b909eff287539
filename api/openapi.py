"""The served OpenAPI document: FastAPI's, with Kho's error responses declared.

FastAPI documents only the statuses a route lists, and documents 422 as its own
``HTTPValidationError`` (``application/json``, ``detail`` an array), which Kho never sends: every
error leaves as an RFC 9457 ``application/problem+json`` body (:mod:`api.errors`). So every
operation gets a ``default`` response with the ``Problem`` schema, every declared 4xx/5xx gets
the problem body, and FastAPI's 422 becomes the problem body too. The OAuth endpoints that answer
RFC 6749 errors themselves (token, introspection, revocation) also declare that JSON shape.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from api.errors import PROBLEM_MEDIA_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details, with Kho's stable `code` and the request id. "
    "Some problems add members of their own (such as `limit_bytes`, `retry_after`, `checks`).",
    "type": "object",
    "required": ["type", "title", "status", "code", "detail", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "`/problems/{code}`"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
        "detail": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "description": "Every problem of an invalid request or catalogue",
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "message", "type"],
                "properties": {
                    "location": {
                        "description": 'Where: `["body", "title"]` for a request, '
                        '`["procedures", "3", "code"]` for a catalogue',
                        "type": "array",
                        "items": {"type": "string"},
                    },
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}
OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "title": "OAuthError",
    "description": "RFC 6749 section 5.2 error response",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    "additionalProperties": True,
}
# The endpoints whose protocol errors authlib answers as RFC 6749 JSON; the other ``/oauth2/``
# endpoints answer a browser, with a problem document or a redirect.
OAUTH_ERROR_PATHS = frozenset({"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"})
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _is_fastapi_validation(response: Mapping[str, Any]) -> bool:
    body = response.get("content") or {}
    ref = str(body.get("application/json", {}).get("schema", {}).get("$ref", ""))
    return ref.endswith("/HTTPValidationError")


def document_problems(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` with Kho's error responses declared: the ``Problem`` (and
    ``OAuthError``) schemas, a ``default`` problem response on every operation, the problem body
    on every declared 4xx/5xx, and no FastAPI ``HTTPValidationError``."""
    spec = copy.deepcopy(dict(document))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = copy.deepcopy(PROBLEM_SCHEMA)
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    oauth = {
        **problem,
        "application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}},
    }
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            content = oauth if path in OAUTH_ERROR_PATHS else problem
            if content is oauth:
                schemas["OAuthError"] = copy.deepcopy(OAUTH_ERROR_SCHEMA)
            responses = operation["responses"]
            for status, response in responses.items():
                if not status.startswith(("4", "5")):
                    continue
                if _is_fastapi_validation(response):
                    response["description"] = "Invalid input: every problem under `errors`"
                response["content"] = copy.deepcopy(content)
            responses.setdefault(
                "default",
                {
                    "description": "An error, as a problem document",
                    "content": copy.deepcopy(content),
                },
            )
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`document_problems` of FastAPI's document, built once per app."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
