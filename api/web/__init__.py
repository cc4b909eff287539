"""Kho's web pages for citizens and desk officials (server-rendered, Vietnamese first).

``router`` holds every page under ``/web``; ``prepare_web`` registers the pages' own OpenID
client (``kho-web``) and belongs in ``api.app.prepare``.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.web import desk, routes
from api.web.pages import PageNotFound, WebRoute
from api.web.signin import prepare_web

__all__ = ["prepare_web", "router"]

router = APIRouter(include_in_schema=False)
router.include_router(desk.router)
router.include_router(routes.router)

_fallback = APIRouter(prefix="/web", route_class=WebRoute, include_in_schema=False)


@_fallback.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
def not_found(rest: str) -> None:
    raise PageNotFound()


router.include_router(_fallback)
