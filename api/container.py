"""The process-wide collaborators, built once by the app factory from Settings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from common.clock import Clock, SystemClock
from common.errors import ConfigurationError
from common.settings import ObjectStoreKind, Settings
from sso.keys import CachedKeys
from sso.tokens import AccessTokenValidator, TokenIssuer
from storage.db import create_db_engine, make_session_factory
from storage.local import LocalObjectStore
from storage.objects import ObjectStore
from storage.s3 import S3ObjectStore
from vault.keyring import MasterKeySealer
from vault.keys import EnvKeyProvider, FileKeyProvider, KeyProvider, generate_key_file

API_AUDIENCE = "kho-api"


@dataclass
class Container:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    objects: ObjectStore
    keys: KeyProvider
    signing_keys: CachedKeys
    tokens: AccessTokenValidator
    issuer: TokenIssuer
    clock: Clock = field(default_factory=SystemClock)

    def close(self) -> None:
        self.engine.dispose()


def build_object_store(settings: Settings) -> ObjectStore:
    if settings.object_store is ObjectStoreKind.s3:
        assert settings.s3_endpoint and settings.s3_access_key and settings.s3_secret_key
        store = S3ObjectStore(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key.get_secret_value(),
            settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )
        return store
    root = settings.effective_object_store_path
    root.mkdir(parents=True, exist_ok=True)
    return LocalObjectStore(root)


def build_key_provider(settings: Settings) -> KeyProvider:
    if settings.master_keys is not None:
        return EnvKeyProvider(settings.master_keys.get_secret_value(), "KHO_MASTER_KEYS")
    path: Path | None = settings.master_key_file
    if path is None:
        if settings.is_production:
            raise ConfigurationError(detail_en="KHO_MASTER_KEY_FILE: required in production")
        path = settings.generated_master_key_file
        if not path.exists():
            # Two processes may start at once: the loser of the race uses the winner's key.
            with contextlib.suppress(FileExistsError):
                generate_key_file(path)
    return FileKeyProvider(path)


def build_container(settings: Settings, *, clock: Clock | None = None) -> Container:
    if not settings.is_production:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.effective_database_url)
    sessions = make_session_factory(engine)
    keys = build_key_provider(settings)
    clock = clock or SystemClock()
    signing_keys = CachedKeys(sessions, MasterKeySealer(keys), clock)
    issuer_url = settings.public_url.rstrip("/")
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessions,
        objects=build_object_store(settings),
        keys=keys,
        signing_keys=signing_keys,
        tokens=AccessTokenValidator(
            issuer=issuer_url, audience=API_AUDIENCE, keys=signing_keys, clock=clock
        ),
        issuer=TokenIssuer(issuer_url, signing_keys, clock),
        clock=clock,
    )
