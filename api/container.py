"""The process-wide collaborators, built once by the app factory from Settings."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from common.clock import Clock, SystemClock
from common.errors import ConfigurationError
from common.settings import ObjectStoreKind, Settings, SsoMode
from sso.federation import UpstreamProvider
from sso.jwks import RemoteKeySource
from sso.keycloak import keycloak_token_validator
from sso.keys import CachedKeys
from sso.simulator import EidSimulator
from sso.tokens import AccessTokenValidator, TokenIssuer
from storage.db import create_db_engine, make_session_factory
from storage.erasures import ErasureJournal, FileErasureJournal
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
    upstream: UpstreamProvider
    simulator: EidSimulator | None
    http: httpx.Client
    erasures: ErasureJournal
    clock: Clock = field(default_factory=SystemClock)

    @property
    def issuer_url(self) -> str:
        return self.settings.public_url.rstrip("/")

    def close(self) -> None:
        self.http.close()
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


def build_erasure_journal(settings: Settings) -> ErasureJournal:
    """Where erasures and deletions are recorded before they are answered (ADR 0009)."""
    return FileErasureJournal(settings.effective_erasure_list)


def build_container(settings: Settings, *, clock: Clock | None = None) -> Container:
    if not settings.is_production:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.effective_database_url)
    sessions = make_session_factory(engine)
    keys = build_key_provider(settings)
    clock = clock or SystemClock()
    signing_keys = CachedKeys(sessions, MasterKeySealer(keys), clock)
    issuer_url = settings.public_url.rstrip("/")
    http = httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), follow_redirects=False)
    simulator, upstream = build_upstream(settings, clock, http)
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessions,
        objects=build_object_store(settings),
        keys=keys,
        signing_keys=signing_keys,
        tokens=build_token_validator(settings, signing_keys, clock, http),
        issuer=TokenIssuer(issuer_url, signing_keys, clock),
        upstream=upstream,
        simulator=simulator,
        http=http,
        erasures=build_erasure_journal(settings),
        clock=clock,
    )


def build_token_validator(
    settings: Settings, signing_keys: CachedKeys, clock: Clock, http: httpx.Client
) -> AccessTokenValidator:
    """The API accepts the tokens of Kho's own provider, or in Keycloak mode the realm's."""
    if settings.sso_mode is SsoMode.keycloak:
        assert settings.keycloak_url  # Settings.check_complete
        return keycloak_token_validator(
            settings.keycloak_url, settings.keycloak_realm, settings.api_audience, clock, http
        )
    return AccessTokenValidator(
        issuer=settings.public_url.rstrip("/"),
        audience=settings.api_audience,
        keys=signing_keys,
        clock=clock,
    )


def build_upstream(
    settings: Settings, clock: Clock, http: httpx.Client
) -> tuple[EidSimulator | None, UpstreamProvider]:
    """The national e-ID as Kho's upstream: the real one, or the development simulator."""
    issuer_url = settings.public_url.rstrip("/")
    callback = issuer_url + "/oauth2/eid/callback"

    def keys(issuer: str, client: httpx.Client) -> RemoteKeySource:
        return RemoteKeySource(issuer, client)

    if settings.eid_simulator:
        secret = secrets.token_urlsafe(24)
        simulator = EidSimulator(
            issuer=issuer_url + "/dev/eid",
            client_id=settings.eid_client_id,
            client_secret=secret,
            clock=clock,
        )
        return simulator, UpstreamProvider(
            discovery_url=simulator.discovery_url,
            client_id=settings.eid_client_id,
            client_secret=secret,
            redirect_uri=callback,
            http=httpx.Client(transport=simulator.transport()),
            keys_factory=keys,
            clock=clock,
        )
    assert settings.eid_discovery_url
    return None, UpstreamProvider(
        discovery_url=settings.eid_discovery_url,
        client_id=settings.eid_client_id,
        client_secret=settings.eid_client_secret.get_secret_value()
        if settings.eid_client_secret
        else "",
        redirect_uri=callback,
        http=http,
        keys_factory=keys,
        clock=clock,
    )


class HttpWebhookPoster:
    """Posts webhook bodies with the process's shared HTTP client (short time-outs)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def post(self, url: str, body: str) -> int:
        try:
            response = self.http.post(
                url, content=body, headers={"Content-Type": "application/jwt"}, timeout=10
            )
        except httpx.HTTPError as exc:
            raise OSError(str(type(exc).__name__)) from exc
        return response.status_code
