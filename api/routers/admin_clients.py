"""Operators register the provider's clients: portals, agency back-ends, relying parties."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import ContainerDep, CurrentOperator, DbSession
from common.errors import InvalidInput, NotFound
from sso.models import OAuthClient
from sso.provider import CLIENT_CACHE
from sso.repository import SsoRepository
from sso.schemas import ClientIn, ClientOut
from sso.service import ClientRegistration, ClientService

router = APIRouter(prefix="/v1/admin/clients", tags=["admin"])


class ClientNotFound(NotFound):
    code = "client_not_found"
    title_vi = "Không tìm thấy ứng dụng"
    title_en = "Client not found"


def _out(row: OAuthClient, secret: str | None = None) -> ClientOut:
    return ClientOut(
        client_id=row.client_id,
        name=row.name,
        kind=row.kind,
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        redirect_uris=row.redirect_uris,
        post_logout_redirect_uris=row.post_logout_redirect_uris,
        backchannel_logout_uri=row.backchannel_logout_uri,
        grant_types=row.grant_types,
        scopes=row.scopes,
        audiences=row.audiences,
        agency_id=row.agency_id,
        active=row.active,
        created_at=row.created_at,
        client_secret=secret,
    )


@router.get("", summary="Every registered client")
def list_clients(_operator: CurrentOperator, session: DbSession) -> list[ClientOut]:
    return [_out(row) for row in SsoRepository(session).clients()]


@router.put(
    "/{client_id}",
    summary="Register or replace a client (a new secret is issued for secret-based clients)",
)
def put_client(
    client_id: str,
    body: ClientIn,
    _operator: CurrentOperator,
    session: DbSession,
    container: ContainerDep,
    response: Response,
) -> ClientOut:
    if body.client_id != client_id:
        raise InvalidInput(
            "client_id trong đường dẫn và trong nội dung phải trùng nhau.",
            "The client_id in the path and in the body must be the same.",
        )
    existed = SsoRepository(session).client(client_id) is not None
    row, secret = ClientService(session, container.clock).register(
        ClientRegistration(
            client_id=body.client_id,
            name=body.name,
            kind=body.kind,
            token_endpoint_auth_method=body.token_endpoint_auth_method,
            redirect_uris=tuple(str(u) for u in body.redirect_uris),
            post_logout_redirect_uris=tuple(str(u) for u in body.post_logout_redirect_uris),
            backchannel_logout_uri=str(body.backchannel_logout_uri)
            if body.backchannel_logout_uri
            else None,
            grant_types=tuple(body.grant_types),
            scopes=tuple(body.scopes),
            audiences=tuple(body.audiences),
            jwks=body.jwks,
            agency_id=body.agency_id,
        )
    )
    response.status_code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
    response.headers["Cache-Control"] = "no-store"
    return _out(row, secret)


@router.post(
    "/{client_id}/deactivate",
    summary="Stop a client from obtaining tokens",
    responses={404: {"description": "No such client"}},
)
def deactivate(client_id: str, _operator: CurrentOperator, session: DbSession) -> ClientOut:
    row = SsoRepository(session).client(client_id)
    if row is None:
        raise ClientNotFound()
    row.active = False
    session.flush()
    CLIENT_CACHE.forget(client_id)
    return _out(row)
