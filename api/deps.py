"""The one place that wires collaborators into request handlers.

``DbSession`` is one unit of work per request: it commits once after the handler returns and
before the response is sent (``scope="function"``), then runs the after-commit work the services
registered (such as deleting shredded objects). Any error rolls everything back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Header, Request
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from api.container import Container
from common.errors import Conflict, Forbidden, Unauthenticated
from common.settings import SsoMode
from consent.audit import AuditWriter
from consent.errors import NotAnAgencyClient, NotAnOfficial
from consent.service import (
    AgencyActor,
    ConsentService,
    DelegateUseLog,
    OfficialActor,
    OwnerActor,
    StatutoryAccessService,
)
from identity.models import DelegationScope
from identity.repository import AgencyRepository
from identity.service import DelegationService, IdentityService
from sso.errors import InvalidToken
from sso.keycloak import eid_acr, profile_from_keycloak_claims
from sso.keys import ProviderJwsSigner
from sso.repository import SsoRepository
from storage.db import DatabaseUnavailable, run_after_commit, run_after_rollback
from vault.keyring import Keyring
from vault.repository import CatalogueRequirements
from vault.service import DocumentDirectory, DocumentService, UploadJournal

log = structlog.get_logger("kho.deps")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


# Set on ``request.state`` by a route class that turns an exception into a response itself
# (the pages' error pages): the exception then never reaches this dependency, and the unit of
# work must still roll back.
REQUEST_FAILED = "unit_of_work_failed"


class _Failed(Exception):
    """Raised inside the session dependency to take its rollback path."""


def get_session(container: ContainerDep, request: Request) -> Iterator[Session]:
    session = container.sessions()
    try:
        yield session
        if getattr(request.state, REQUEST_FAILED, False):
            raise _Failed
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
    except BaseException as exc:
        session.rollback()
        for callback in run_after_rollback(session):
            try:
                callback()
            except Exception:  # noqa: BLE001 - a refusal stands even if its record fails
                log.warning("after_rollback_failed")
        if isinstance(exc, _Failed):
            return
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


AGENCY_SCOPE = "kho:agency"


def get_agency(request: Request, container: ContainerDep, session: DbSession) -> AgencyActor:
    """An agency back-end: a client-credentials token of a client bound to an active agency."""
    claims = container.tokens.validate(_bearer(request))
    if AGENCY_SCOPE not in claims.scopes or claims.client_id is None:
        raise Forbidden("Cần quyền kho:agency.", "The kho:agency scope is required.")
    if claims.token_id is None:
        raise InvalidToken()
    revoked, agency_id = SsoRepository(session).agency_call_check(claims.token_id, claims.client_id)
    if revoked:
        raise InvalidToken()
    if agency_id is None:
        raise NotAnAgencyClient()
    return AgencyActor(client_id=claims.client_id, agency_id=agency_id)


CurrentAgency = Annotated[AgencyActor, Depends(get_agency)]


def get_consent_service(container: ContainerDep, session: DbSession) -> ConsentService:
    return ConsentService(
        session,
        container.clock,
        issuer=container.issuer_url,
        signer=ProviderJwsSigner(container.signing_keys),
        documents=DocumentDirectory(session),
        denials=AuditWriter(container.sessions, container.clock),
        procedures=CatalogueRequirements(session),
    )


Consents = Annotated[ConsentService, Depends(get_consent_service)]


def _no_delegation() -> Forbidden:
    # One answer whether the named owner does not exist, was erased, or gave no such delegation.
    return Forbidden("Không có quyền đại diện.", "No delegation for that owner.")


OnBehalfOf = Annotated[
    str | None,
    Header(
        alias="X-On-Behalf-Of",
        description="A delegate acting for another owner: that owner's account id. The caller "
        "must hold an active delegation of the scope the operation needs from them.",
    ),
]


def acting_for(scope: DelegationScope) -> Callable[..., OwnerActor]:
    """A dependency: who acts on a store within ``scope``.

    Without ``X-On-Behalf-Of``, the signed-in citizen on their own store. With it, the owner it
    names, if the caller holds a delegation of ``scope`` from them that is active now
    (``DelegationService.active_delegation``: started, not ended, not revoked, a guardian's minor
    not yet 18, neither account erased); otherwise 403, the same whether or not that owner
    exists. A delegate's use is logged in the owner's access log (``DelegateUseLog``).
    """

    def actor(
        owner: CurrentOwner,
        container: ContainerDep,
        session: DbSession,
        on_behalf: OnBehalfOf = None,
    ) -> OwnerActor:
        if not on_behalf:
            return OwnerActor(owner_id=owner.account_id, account_id=owner.account_id)
        try:
            principal = uuid.UUID(on_behalf)
        except ValueError:
            raise _no_delegation() from None
        delegation = DelegationService(session, container.clock).active_delegation(
            principal, owner.account_id, scope
        )
        if delegation is None:
            raise _no_delegation()
        return OwnerActor(owner_id=principal, account_id=owner.account_id)

    actor.__name__ = actor.__qualname__ = f"acting_for_{scope.name}"
    return actor


# The owner themself, or a delegate acting for X-On-Behalf-Of within that scope.
get_consent_actor = acting_for(DelegationScope.consents_decide)
ConsentActor = Annotated[OwnerActor, Depends(get_consent_actor)]
DocumentReader = Annotated[OwnerActor, Depends(acting_for(DelegationScope.documents_read))]
DocumentWriter = Annotated[OwnerActor, Depends(acting_for(DelegationScope.documents_write))]
AccessLogReader = Annotated[OwnerActor, Depends(acting_for(DelegationScope.access_log_read))]


class OwnerOnly(Forbidden):
    code = "owner_only"
    title_vi = "Chỉ chủ sở hữu được làm việc này"
    title_en = "Only the owner may do this"


def get_sole_owner(request: Request, owner: CurrentOwner) -> OwnerPrincipal:
    """The signed-in citizen on their own store, for what is never delegated because it
    destroys or takes everything at once: deleting a paper, exporting the whole store, erasing
    the account. A request naming an owner in ``X-On-Behalf-Of`` is refused (403)."""
    if request.headers.get("x-on-behalf-of"):
        raise OwnerOnly(
            "Người được uỷ quyền không thể xoá giấy tờ, xuất toàn bộ kho hay xoá tài khoản thay "
            "chủ sở hữu.",
            "A delegate cannot delete papers, export the whole store or erase the account for "
            "the owner.",
        )
    return owner


SoleOwner = Annotated[OwnerPrincipal, Depends(get_sole_owner)]


def get_delegate_log(container: ContainerDep, session: DbSession) -> DelegateUseLog:
    return DelegateUseLog(session, container.clock)


DelegateLog = Annotated[DelegateUseLog, Depends(get_delegate_log)]


def get_official(request: Request, owner: CurrentOwner, session: DbSession) -> OfficialActor:
    """A signed-in person acting as an official of one agency (``X-Agency-Id`` picks which when
    they hold posts in several)."""
    posts = AgencyRepository(session).officials_of_account(owner.account_id)
    wanted = request.headers.get("x-agency-id")
    if wanted:
        posts = [p for p in posts if str(p.agency_id) == wanted]
    if len(posts) != 1:
        raise NotAnOfficial()
    post = posts[0]
    return OfficialActor(
        official_id=post.id,
        account_id=owner.account_id,
        agency_id=post.agency_id,
        roles=frozenset(role.value for role in post.roles),
    )


CurrentOfficial = Annotated[OfficialActor, Depends(get_official)]


def get_statutory_service(container: ContainerDep, session: DbSession) -> StatutoryAccessService:
    return StatutoryAccessService(
        session,
        container.clock,
        documents=DocumentDirectory(session),
        denials=AuditWriter(container.sessions, container.clock),
    )


StatutoryAccesses = Annotated[StatutoryAccessService, Depends(get_statutory_service)]


def get_document_service(container: ContainerDep, session: DbSession) -> DocumentService:
    return DocumentService(
        session,
        container.objects,
        Keyring(session, container.keys, container.clock),
        UploadJournal(container.sessions, container.keys, container.clock),
        container.clock,
        max_upload_bytes=container.settings.max_upload_bytes,
        erasures=container.erasures,
    )


Documents = Annotated[DocumentService, Depends(get_document_service)]


def get_identity_service(container: ContainerDep, session: DbSession) -> IdentityService:
    return IdentityService(session, container.clock)


Identity = Annotated[IdentityService, Depends(get_identity_service)]
