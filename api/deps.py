"""The one place that wires collaborators into request handlers.

``DbSession`` is one unit of work per request: it commits once after the handler returns and
before the response is sent (``scope="function"``), then runs the after-commit work the services
registered (such as deleting shredded objects). Any error rolls everything back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from api.container import Container
from common.errors import Conflict, Forbidden, Unauthenticated
from common.settings import SsoMode
from identity.service import IdentityService
from sso.errors import InvalidToken
from sso.keycloak import eid_acr, profile_from_keycloak_claims
from sso.repository import SsoRepository
from storage.db import DatabaseUnavailable, run_after_commit
from vault.keyring import Keyring
from vault.service import DocumentService, UploadJournal

log = structlog.get_logger("kho.deps")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_session(container: ContainerDep) -> Iterator[Session]:
    session = container.sessions()
    try:
        yield session
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise Conflict(
                "Yêu cầu xung đột với một yêu cầu khác; vui lòng thử lại.",
                "The request conflicted with another one; please retry.",
            ) from None
        except OperationalError:
            session.rollback()
            raise DatabaseUnavailable() from None
        for callback in run_after_commit(session):
            try:
                callback()
            except Exception:  # noqa: BLE001 - cleanup is retried by the sweeper
                log.warning("after_commit_failed")
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class OwnerPrincipal:
    """A signed-in citizen or organisation acting on their own store."""

    account_id: uuid.UUID
    acr: str | None
    auth_time: int | None
    client_id: str | None


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "Cần đăng nhập: thiếu mã truy cập (Bearer).",
            "Sign-in required: missing bearer access token.",
        )
    return token.strip()


def get_owner(request: Request, container: ContainerDep, session: DbSession) -> OwnerPrincipal:
    claims = container.tokens.validate(_bearer(request))
    if container.settings.sso_mode is SsoMode.keycloak:
        # Keycloak's `sub` is its own user id, not a Kho account: the citizen is found, or
        # enrolled on first use, from the e-ID claims Keycloak copied at the brokered login.
        # Revocation is Keycloak's (short-lived tokens), not Kho's jti list.
        profile = profile_from_keycloak_claims(claims.raw)
        account = IdentityService(session, container.clock).enrol_citizen(profile)
        return OwnerPrincipal(
            account.id, eid_acr(profile.eid_level), claims.auth_time, claims.client_id
        )
    try:
        account_id = uuid.UUID(claims.subject)
    except ValueError:
        raise Unauthenticated() from None
    if claims.token_id is None or SsoRepository(session).revoked_jti(claims.token_id):
        raise InvalidToken()
    IdentityService(session, container.clock).active_account(account_id)
    return OwnerPrincipal(account_id, claims.acr, claims.auth_time, claims.client_id)


CurrentOwner = Annotated[OwnerPrincipal, Depends(get_owner)]


@dataclass(frozen=True)
class OperatorPrincipal:
    """An operator (or operator tool) holding a token with the ``kho:admin`` scope."""

    subject: str
    client_id: str | None


ADMIN_SCOPE = "kho:admin"


def get_operator(request: Request, container: ContainerDep) -> OperatorPrincipal:
    claims = container.tokens.validate(_bearer(request))
    if ADMIN_SCOPE not in claims.scopes:
        raise Forbidden("Cần quyền quản trị (kho:admin).", "The kho:admin scope is required.")
    return OperatorPrincipal(claims.subject, claims.client_id)


CurrentOperator = Annotated[OperatorPrincipal, Depends(get_operator)]


def get_document_service(container: ContainerDep, session: DbSession) -> DocumentService:
    return DocumentService(
        session,
        container.objects,
        Keyring(session, container.keys, container.clock),
        UploadJournal(container.sessions, container.keys, container.clock),
        container.clock,
        max_upload_bytes=container.settings.max_upload_bytes,
    )


Documents = Annotated[DocumentService, Depends(get_document_service)]


def get_identity_service(container: ContainerDep, session: DbSession) -> IdentityService:
    return IdentityService(session, container.clock)


Identity = Annotated[IdentityService, Depends(get_identity_service)]
