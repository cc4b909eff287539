"""Test helpers for the agency side: agencies, their clients and tokens, through the real API."""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from tests.conftest import KhoEnv


@dataclass
class AgencyClient:
    env: KhoEnv
    agency_id: uuid.UUID
    client_id: str
    secret: str

    def token(self) -> str:
        basic = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
        response = self.env.client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "kho:agency"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", **extra}

    def request(
        self, personal_id: str, items: list[dict[str, Any]], **fields: Any
    ) -> dict[str, Any]:
        body = {
            "subject_personal_id": personal_id,
            "purpose": "Giải quyết thủ tục đăng ký thường trú",
            "procedure_code": "1.004222",
            "dossier_ref": "HS-" + secrets.token_hex(3),
            "items": items,
            "retention_days": 30,
            **fields,
        }
        response = self.env.client.post(
            "/v1/agency/consent-requests", json=body, headers=self.headers()
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


def make_agency(env: KhoEnv, code: str, name: str) -> AgencyClient:
    ops = env.operator_headers()
    response = env.client.post(
        "/v1/admin/agencies",
        json={"code": code, "name_vi": name, "level": "province"},
        headers=ops,
    )
    assert response.status_code == 201, response.text
    agency_id = uuid.UUID(response.json()["id"])
    client_id = code.lower() + "-backend"
    response = env.client.put(
        f"/v1/admin/clients/{client_id}",
        json={
            "client_id": client_id,
            "name": name,
            "kind": "agency",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "scopes": ["kho:agency"],
            "agency_id": str(agency_id),
        },
        headers=ops,
    )
    assert response.status_code == 201, response.text
    return AgencyClient(env, agency_id, client_id, response.json()["client_secret"])
