"""Kho's published signing keys (the full OpenID discovery arrives with the provider)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ContainerDep

router = APIRouter(tags=["sign-on"])


@router.get("/.well-known/jwks.json", summary="Public keys that verify Kho's tokens and grants")
def jwks(container: ContainerDep) -> dict[str, Any]:
    key_set = container.signing_keys.key_set()
    return {"keys": [key.as_dict(private=False) for key in key_set.keys]}
