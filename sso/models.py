"""Tables of the sign-on layer: signing keys, clients, sessions, codes and tokens."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base, UTCDateTime, UUIDString


class SigningKey(Base):
    """An ES256 key of Kho's provider; the private half is sealed, never stored in clear."""

    __tablename__ = "sso_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    activates_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ClientKind(StrEnum):
    portal = "portal"  # a front-end signing citizens in (authorization code + PKCE)
    agency = "agency"  # an agency back-end (client credentials)
    operator = "operator"  # operator tooling (client credentials, kho:admin)
    relying_party = "relying_party"  # a third-party federating with Kho (e.g. Keycloak)


class OAuthClient(Base):
    """A registered client of Kho's OpenID provider."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[ClientKind] = mapped_column(String(32))
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(512), nullable=True)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    audiences: Mapped[list[str]] = mapped_column(JSON, default=list)
    agency_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class SsoSession(Base):
    """A signed-in browser: single sign-on across every portal that uses Kho."""

    __tablename__ = "sso_sessions"

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    acr: Mapped[str] = mapped_column(String(32))
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    upstream_id_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SessionParticipant(Base):
    """A client that received tokens in a session: told of its end by back-channel logout."""

    __tablename__ = "sso_session_participants"

    session_id: Mapped[uuid.UUID] = mapped_column(
        UUIDString, ForeignKey("sso_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id"), primary_key=True
    )


class AuthorizationCode(Base):
    __tablename__ = "oauth_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), ForeignKey("oauth_clients.client_id"))
    account_id: Mapped[uuid.UUID] = mapped_column(UUIDString, ForeignKey("accounts.id"))
    session_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    redirect_uri: Mapped[str] = mapped_column(String(512))
    scope: Mapped[str] = mapped_column(String(512))
    nonce: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    acr: Mapped[str] = mapped_column(String(32))
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IssuedToken(Base):
    """One issuance: an access token (by jti) and, maybe, its refresh token.

    Refresh tokens rotate: each use creates a new row in the same ``family_id``; presenting a
    refresh token that was already rotated revokes the whole family (reuse detection).
    """

    __tablename__ = "oauth_tokens"
    __table_args__ = (Index("ix_oauth_tokens_family", "family_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(UUIDString)
    client_id: Mapped[str] = mapped_column(String(64), ForeignKey("oauth_clients.client_id"))
    account_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    session_id: Mapped[uuid.UUID | None] = mapped_column(UUIDString, nullable=True)
    code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    scope: Mapped[str] = mapped_column(String(512))
    acr: Mapped[str | None] = mapped_column(String(32), nullable=True)
    auth_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    access_jti: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    access_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    refresh_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FederationLogin(Base):
    """An upstream (national e-ID) login in progress: state, nonce and PKCE verifier."""

    __tablename__ = "sso_federation_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    resume: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ClientAssertion(Base):
    """A private_key_jwt assertion's jti, remembered until it expires (replay protection)."""

    __tablename__ = "oauth_client_assertions"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class WebSession(Base):
    """One browser's session with Kho's web pages (``api/web/session.py``): a random cookie
    secret's digest, the pending sign-in, the sealed tokens, the CSRF secret."""

    __tablename__ = "web_sessions"

    id: Mapped[uuid.UUID] = mapped_column(UUIDString, primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        UUIDString, ForeignKey("accounts.id"), nullable=True, index=True
    )
    csrf_secret: Mapped[str] = mapped_column(String(64))
    login_state_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    login_nonce: Mapped[str | None] = mapped_column(String(64), nullable=True)
    login_verifier: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    login_next: Mapped[str | None] = mapped_column(String(512), nullable=True)
    access_token: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    refresh_token: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    id_token: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    access_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    auth_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acr: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
