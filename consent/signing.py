"""Signing as a collaborator: consent artefacts, log checkpoints and webhooks are JWS signed
with Kho's published provider keys. The implementation lives with those keys (``sso``) and is
wired in ``api/``; this layer only sees the protocol."""

from __future__ import annotations

from typing import Any, Protocol


class JwsSigner(Protocol):
    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        """A compact JWS (ES256, with the ``kid`` of a published key) over ``claims``."""
        ...

    def verify(self, token: str, *, typ: str) -> dict[str, Any]:
        """The claims of a JWS this signer (or an earlier, still published key) produced;
        raises ``ValueError`` when the signature or the type does not check out."""
        ...
