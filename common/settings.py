"""Kho's one typed configuration, read from ``KHO_*`` environment variables.

Only the app factory and the CLI construct :class:`Settings`; everything else receives the values
it needs. :meth:`Settings.check_production` refuses the development conveniences (SQLite, the
local object store, the e-ID simulator, a generated master key, no erasure journal) when
``KHO_ENV=production``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigurationError


class Environment(StrEnum):
    development = "development"
    production = "production"


class ObjectStoreKind(StrEnum):
    local = "local"
    s3 = "s3"


class SsoMode(StrEnum):
    embedded = "embedded"
    keycloak = "keycloak"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KHO_", extra="ignore", frozen=True)

    env: Environment = Environment.development
    data_dir: Path = Path("var")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite under the data directory"
    )

    object_store: ObjectStoreKind = ObjectStoreKind.local
    object_store_path: Path | None = None
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "kho-objects"
    s3_secure: bool = False
    s3_region: str | None = None

    master_key_file: Path | None = None
    master_keys: SecretStr | None = None

    erasure_list: Path | None = Field(
        default=None,
        description="The erasure journal (append-only file outside the database and the "
        "backups); default <data_dir>/erasures.log, required in production",
    )

    eid_simulator: bool = True
    eid_discovery_url: str | None = None
    eid_client_id: str = "kho"
    eid_client_secret: SecretStr | None = None

    sso_mode: SsoMode = SsoMode.embedded
    keycloak_url: str | None = None
    keycloak_realm: str = "kho"
    keycloak_admin_user: str | None = None
    keycloak_admin_password: SecretStr | None = None
    api_audience: str = "kho-api"
    webhook_interval_seconds: float = Field(default=5.0, ge=0)

    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="API processes (use the core count)")
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # Resource limits (api.limits; docs/assurance/limits.md).
    max_json_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest body of a JSON (buffered) route"
    )
    max_json_depth: int = Field(default=32, ge=2, le=256, description="Deepest JSON nesting")
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Time any body gets before the minimum rate applies"
    )
    body_idle_seconds: float = Field(
        default=15.0, gt=0, description="Longest wait for the next piece of a body"
    )
    body_min_rate: int = Field(
        default=4096, ge=1, description="Bytes per second a body must average after the timeout"
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, description="Idle keep-alive connections are closed after this"
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="HTTP requests in flight per process before 503 busy"
    )
    rate_limit_enabled: bool | None = Field(
        default=None, description="Rate limits on or off; unset: on in production only"
    )
    rate_limit_owner_per_minute: int = Field(default=600, ge=1)
    rate_limit_client_per_minute: int = Field(default=6000, ge=1)
    rate_limit_anonymous_per_minute: int = Field(default=300, ge=1)
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'kho.db').as_posix()}"

    @property
    def effective_object_store_path(self) -> Path:
        return self.object_store_path or self.data_dir / "objects"

    @property
    def generated_master_key_file(self) -> Path:
        """Where the development master key is generated when no key is configured."""
        return self.data_dir / "master.key"

    @property
    def effective_erasure_list(self) -> Path:
        """The erasure journal every erasure and deletion is appended to (ADR 0009)."""
        return self.erasure_list or self.data_dir / "erasures.log"

    @property
    def uses_generated_master_key(self) -> bool:
        return self.master_key_file is None and self.master_keys is None

    def check_production(self) -> None:
        """Refuse development conveniences in production, one line naming the variable."""
        if not self.is_production:
            return
        if self.effective_database_url.startswith("sqlite"):
            raise ConfigurationError(
                detail_en="KHO_DATABASE_URL: production needs PostgreSQL, not SQLite"
            )
        if self.object_store is ObjectStoreKind.local:
            raise ConfigurationError(
                detail_en="KHO_OBJECT_STORE: production needs 's3' (MinIO or another S3 "
                "endpoint), not the local object store"
            )
        if self.eid_simulator:
            raise ConfigurationError(
                detail_en="KHO_EID_SIMULATOR: the development e-ID simulator is refused in "
                "production; set it to false and configure KHO_EID_DISCOVERY_URL"
            )
        if not self.public_url.startswith("https://"):
            raise ConfigurationError(
                detail_en="KHO_PUBLIC_URL: production needs an https:// issuer URL"
            )
        if self.uses_generated_master_key:
            raise ConfigurationError(
                detail_en="KHO_MASTER_KEY_FILE / KHO_MASTER_KEYS: production refuses a "
                "generated master key; provide one"
            )
        if self.erasure_list is None:
            raise ConfigurationError(
                detail_en="KHO_ERASURE_LIST: production needs the erasure journal, a file on "
                "storage outside the database and the backups (kho restore replays it)"
            )

    def check_complete(self) -> None:
        """Settings that only make sense together."""
        if self.object_store is ObjectStoreKind.s3:
            for name, value in (
                ("KHO_S3_ENDPOINT", self.s3_endpoint),
                ("KHO_S3_ACCESS_KEY", self.s3_access_key),
                ("KHO_S3_SECRET_KEY", self.s3_secret_key),
            ):
                if not value:
                    raise ConfigurationError(detail_en=f"{name}: required when KHO_OBJECT_STORE=s3")
        if self.sso_mode is SsoMode.keycloak and not self.keycloak_url:
            raise ConfigurationError(
                detail_en="KHO_KEYCLOAK_URL: required when KHO_SSO_MODE=keycloak"
            )
        if not self.eid_simulator and not self.eid_discovery_url:
            raise ConfigurationError(
                detail_en="KHO_EID_DISCOVERY_URL: required when KHO_EID_SIMULATOR is false"
            )


def load_settings() -> Settings:
    """Read and check the settings; a bad value becomes one ConfigurationError naming it."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigurationError(detail_en=f"KHO_{field.upper()}: {first['msg']}") from None
    settings.check_complete()
    settings.check_production()
    return settings
