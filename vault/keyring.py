"""The key hierarchy: master key (KeyProvider) -> owner vault key -> per-version data key.

Associated data binds every wrapped key to where it belongs, so a wrapped key copied to another
owner, document or version does not unwrap. Destroying an owner's vault keys makes every data key
of that owner, and so every copy of every object, unreadable at once (crypto-shredding).
"""

from __future__ import annotations

import struct
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.clock import Clock
from vault import crypto
from vault.errors import DecryptionFailed, KeyUnavailable
from vault.keys import KeyProvider
from vault.models import VaultKey

_SEAL_HEADER = struct.Struct(">I")


def vault_key_aad(owner_id: uuid.UUID, version: int) -> bytes:
    return b"kho/vault-key/v1\x00" + owner_id.bytes + struct.pack(">I", version)


def data_key_aad(owner_id: uuid.UUID, document_id: uuid.UUID, version: int) -> bytes:
    return b"kho/data-key/v1\x00" + owner_id.bytes + document_id.bytes + struct.pack(">I", version)


def object_context(owner_id: uuid.UUID, document_id: uuid.UUID, version: int) -> bytes:
    """The associated data every segment of a document version's object is bound to."""
    return b"kho/object/v1\x00" + owner_id.bytes + document_id.bytes + struct.pack(">I", version)


class MasterKeySealer:
    """Seals small secrets (e.g. the provider's signing keys) under the current master key."""

    def __init__(self, keys: KeyProvider) -> None:
        self.keys = keys

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        version = self.keys.current_version()
        header = _SEAL_HEADER.pack(version)
        return header + crypto.wrap_key(self.keys.get(version), plaintext, aad=header + aad)

    def open(self, sealed: bytes, *, aad: bytes) -> bytes:
        if len(sealed) < _SEAL_HEADER.size:
            raise DecryptionFailed()
        header = sealed[: _SEAL_HEADER.size]
        (version,) = _SEAL_HEADER.unpack(header)
        return crypto.unwrap_key(
            self.keys.get(version), sealed[_SEAL_HEADER.size :], aad=header + aad
        )


class OwnerShredded(KeyUnavailable):
    """The owner's vault key was destroyed: nothing of theirs can be read any more."""

    code = "owner_keys_destroyed"
    status = 410
    title_vi = "Dữ liệu đã bị xoá vĩnh viễn"
    title_en = "The data was permanently erased"


class Keyring:
    def __init__(self, session: Session, keys: KeyProvider, clock: Clock) -> None:
        self.session = session
        self.keys = keys
        self.clock = clock

    # -- owner vault keys ---------------------------------------------------------------------

    def _current_row(self, owner_id: uuid.UUID) -> VaultKey | None:
        return self.session.scalars(
            select(VaultKey)
            .where(VaultKey.owner_id == owner_id)
            .order_by(VaultKey.version.desc())
            .limit(1)
        ).first()

    def _unwrap_vault_key(self, row: VaultKey) -> bytes:
        if row.wrapped_key is None or row.destroyed_at is not None:
            raise OwnerShredded()
        return crypto.unwrap_key(
            self.keys.get(row.master_key_version),
            row.wrapped_key,
            aad=vault_key_aad(row.owner_id, row.version),
        )

    def current_vault_key(self, owner_id: uuid.UUID) -> tuple[int, bytes]:
        """The owner's newest vault key, created on first use."""
        row = self._current_row(owner_id)
        if row is None:
            row = self._create_vault_key(owner_id)
        return row.version, self._unwrap_vault_key(row)

    def _create_vault_key(self, owner_id: uuid.UUID) -> VaultKey:
        master_version = self.keys.current_version()
        row = VaultKey(
            owner_id=owner_id,
            version=1,
            master_key_version=master_version,
            wrapped_key=crypto.wrap_key(
                self.keys.get(master_version), crypto.new_key(), aad=vault_key_aad(owner_id, 1)
            ),
            created_at=self.clock.now(),
        )
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            # Another request created it first: use theirs.
            existing = self._current_row(owner_id)
            if existing is None:
                raise
            return existing
        return row

    def vault_key(self, owner_id: uuid.UUID, version: int) -> bytes:
        row = self.session.get(VaultKey, (owner_id, version))
        if row is None:
            raise OwnerShredded()
        return self._unwrap_vault_key(row)

    def destroy_owner(self, owner_id: uuid.UUID) -> int:
        """Crypto-shred: forget every vault key of the owner. Returns how many were destroyed."""
        rows = self.session.scalars(select(VaultKey).where(VaultKey.owner_id == owner_id)).all()
        now = self.clock.now()
        for row in rows:
            row.wrapped_key = None
            row.destroyed_at = now
        self.session.flush()
        return len(rows)

    def rewrap_all(self, batch_size: int = 500) -> int:
        """Master-key rotation: rewrap every live vault key under the current master version."""
        target = self.keys.current_version()
        count = 0
        while True:
            rows = self.session.scalars(
                select(VaultKey)
                .where(VaultKey.master_key_version != target, VaultKey.wrapped_key.is_not(None))
                .limit(batch_size)
            ).all()
            if not rows:
                return count
            for row in rows:
                key = self._unwrap_vault_key(row)
                row.wrapped_key = crypto.wrap_key(
                    self.keys.get(target), key, aad=vault_key_aad(row.owner_id, row.version)
                )
                row.master_key_version = target
                count += 1
            self.session.flush()

    # -- data keys ----------------------------------------------------------------------------

    def new_data_key(
        self, owner_id: uuid.UUID, document_id: uuid.UUID, version: int
    ) -> tuple[bytes, bytes, int]:
        """A fresh data key, its wrapped form and the vault-key version that wraps it."""
        vault_version, vault_key = self.current_vault_key(owner_id)
        data_key = crypto.new_key()
        wrapped = crypto.wrap_key(
            vault_key, data_key, aad=data_key_aad(owner_id, document_id, version)
        )
        return data_key, wrapped, vault_version

    def open_data_key(
        self,
        owner_id: uuid.UUID,
        document_id: uuid.UUID,
        version: int,
        vault_key_version: int,
        wrapped: bytes | None,
    ) -> bytes:
        if wrapped is None:
            raise OwnerShredded()
        vault_key = self.vault_key(owner_id, vault_key_version)
        return crypto.unwrap_key(
            vault_key, wrapped, aad=data_key_aad(owner_id, document_id, version)
        )
