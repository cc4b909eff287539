"""Every query of the sign-on layer."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from identity.models import Agency
from sso.models import (
    AuthorizationCode,
    ClientAssertion,
    FederationLogin,
    IssuedToken,
    OAuthClient,
    SessionParticipant,
    SsoSession,
)


class SsoRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        row: OAuthClient
        | SsoSession
        | SessionParticipant
        | AuthorizationCode
        | IssuedToken
        | FederationLogin
        | ClientAssertion,
    ) -> None:
        self.session.add(row)

    # clients
    def client(self, client_id: str) -> OAuthClient | None:
        return self.session.get(OAuthClient, client_id)

    def agency_call_check(self, token_id: str, client_id: str) -> tuple[bool, uuid.UUID | None]:
        """For an agency's call: whether its access token was revoked, and the agency its client
        is bound to (both active) — read now, on every call (ADR 0007), in one round trip (two
        scalar subqueries of one SELECT)."""
        revoked_at = (
            select(IssuedToken.revoked_at)
            .where(IssuedToken.access_jti == token_id)
            .scalar_subquery()
        )
        agency_id = (
            select(Agency.id)
            .join(OAuthClient, OAuthClient.agency_id == Agency.id)
            .where(
                OAuthClient.client_id == client_id,
                OAuthClient.active.is_(True),
                Agency.active.is_(True),
            )
            .scalar_subquery()
        )
        row = self.session.execute(select(revoked_at, agency_id)).one()
        return row[0] is not None, row[1]

    def clients(self) -> Sequence[OAuthClient]:
        return self.session.scalars(select(OAuthClient).order_by(OAuthClient.client_id)).all()

    # sessions
    def live_session(self, secret_hash: str, now: dt.datetime) -> SsoSession | None:
        return self.session.scalars(
            select(SsoSession).where(
                SsoSession.secret_hash == secret_hash,
                SsoSession.ended_at.is_(None),
                SsoSession.expires_at > now,
            )
        ).first()

    def session_by_id(self, session_id: uuid.UUID) -> SsoSession | None:
        return self.session.get(SsoSession, session_id)

    def participants(self, session_id: uuid.UUID) -> Sequence[str]:
        return self.session.scalars(
            select(SessionParticipant.client_id).where(SessionParticipant.session_id == session_id)
        ).all()

    def add_participant(self, session_id: uuid.UUID, client_id: str) -> None:
        if self.session.get(SessionParticipant, (session_id, client_id)) is None:
            self.session.add(SessionParticipant(session_id=session_id, client_id=client_id))

    # authorization codes
    def code(self, code_hash: str, client_id: str) -> AuthorizationCode | None:
        return self.session.scalars(
            select(AuthorizationCode)
            .where(
                AuthorizationCode.code_hash == code_hash,
                AuthorizationCode.client_id == client_id,
            )
            .with_for_update()
        ).first()

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        return (
            self.session.scalars(
                select(AuthorizationCode.code_hash).where(
                    AuthorizationCode.client_id == client_id, AuthorizationCode.nonce == nonce
                )
            ).first()
            is not None
        )

    # tokens
    def token_by_refresh(self, refresh_hash: str) -> IssuedToken | None:
        return self.session.scalars(
            select(IssuedToken).where(IssuedToken.refresh_hash == refresh_hash).with_for_update()
        ).first()

    def token_by_jti(self, jti: str) -> IssuedToken | None:
        return self.session.scalars(
            select(IssuedToken).where(IssuedToken.access_jti == jti)
        ).first()

    def revoke_family(self, family_id: uuid.UUID, now: dt.datetime) -> None:
        self.session.execute(
            update(IssuedToken)
            .where(IssuedToken.family_id == family_id, IssuedToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def revoke_by_code(self, code_hash: str, now: dt.datetime) -> None:
        families = self.session.scalars(
            select(IssuedToken.family_id).where(IssuedToken.code_hash == code_hash)
        ).all()
        for family in set(families):
            self.revoke_family(family, now)

    def revoke_session_tokens(self, session_id: uuid.UUID, now: dt.datetime) -> None:
        self.session.execute(
            update(IssuedToken)
            .where(IssuedToken.session_id == session_id, IssuedToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def revoked_jti(self, jti: str) -> bool:
        revoked = self.session.scalar(
            select(IssuedToken.revoked_at).where(IssuedToken.access_jti == jti)
        )
        return revoked is not None

    # federation
    def federation_login(self, state_hash: str) -> FederationLogin | None:
        return self.session.scalars(
            select(FederationLogin)
            .where(FederationLogin.state_hash == state_hash)
            .with_for_update()
        ).first()

    # client assertions (private_key_jwt replay protection)
    def remember_assertion(self, client_id: str, jti: str, expires_at: dt.datetime) -> bool:
        """False when this jti was already seen for the client."""
        if self.session.get(ClientAssertion, (client_id, jti)) is not None:
            return False
        self.session.add(ClientAssertion(client_id=client_id, jti=jti, expires_at=expires_at))
        self.session.flush()
        return True

    def purge_expired(self, now: dt.datetime) -> None:
        self.session.execute(delete(ClientAssertion).where(ClientAssertion.expires_at < now))
        self.session.execute(delete(FederationLogin).where(FederationLogin.expires_at < now))
