"""Assurance tests: the authorization matrix over every route, and schemathesis against the
OpenAPI document (see docs/assurance/)."""
