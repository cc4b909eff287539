"""Operators rotate the provider's signing keys (old keys stay published for the overlap)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ContainerDep, CurrentOperator, DbSession
from sso.keys import SigningKeyService
from vault.keyring import MasterKeySealer

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


@router.post("/signing/rotate", summary="Start signing with a new ES256 key")
def rotate_signing_key(
    _operator: CurrentOperator, session: DbSession, container: ContainerDep
) -> dict[str, Any]:
    service = SigningKeyService(session, MasterKeySealer(container.keys), container.clock)
    new = service.rotate()
    session.flush()
    container.signing_keys.invalidate()
    return {
        "kid": new.kid,
        "published": [key.kid for key in service.published()],
    }
