"""The development e-ID simulator's browser pages (embedded default only; never in production).

Its discovery, JWKS and token endpoints are also served here so a developer can look at them;
Kho itself reaches them in-process.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from api.deps import ContainerDep
from common.errors import NotFound
from sso.simulator import SAMPLE_CITIZENS, EidSimulator, SimulatorError

router = APIRouter(prefix="/dev/eid", tags=["development e-ID simulator"], include_in_schema=False)

_PARAMS = (
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
)


def _simulator(container: ContainerDep) -> EidSimulator:
    if container.simulator is None:
        raise NotFound()
    return container.simulator


@router.get("/.well-known/openid-configuration")
def discovery(container: ContainerDep) -> dict[str, Any]:
    return _simulator(container).discovery()


@router.get("/jwks")
def jwks(container: ContainerDep) -> dict[str, Any]:
    return _simulator(container).jwks()


@router.post("/token")
async def token(request: Request, container: ContainerDep) -> Response:
    simulator = _simulator(container)
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    try:
        return JSONResponse(simulator.token(form), headers={"Cache-Control": "no-store"})
    except SimulatorError as exc:
        return JSONResponse({"error": exc.error, "error_description": exc.description}, 400)


def _page(params: dict[str, str], error: str | None = None) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params.get(name, ""))}">'
        for name in _PARAMS
        if params.get(name)
    )
    buttons = "".join(
        f'<li><button type="submit" name="personal_id" value="{c.personal_id}">'
        f"{html.escape(c.full_name)} — {c.personal_id} — mức {c.eid_level}</button></li>"
        for c in SAMPLE_CITIZENS
    )
    notice = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>VNeID (mô phỏng)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/web/static/dev-eid.css"></head>
<body>
<p><strong>MÔI TRƯỜNG PHÁT TRIỂN — DEVELOPMENT:</strong> đây là trình mô phỏng VNeID,
không phải hệ thống định danh điện tử quốc gia.</p>
<h1>Chọn công dân mẫu để đăng nhập</h1>{notice}
<form method="post" action="/dev/eid/authorize">{hidden}<ul>{buttons}</ul></form>
</body></html>"""


@router.get("/authorize", response_class=HTMLResponse)
def authorize_page(request: Request, container: ContainerDep) -> Response:
    simulator = _simulator(container)
    params = {k: v for k, v in request.query_params.items() if k in _PARAMS}
    try:
        simulator.check_authorize(params)
    except SimulatorError as exc:
        return HTMLResponse(_page(params, exc.description), status_code=400)
    return HTMLResponse(_page(params), headers={"Cache-Control": "no-store"})


@router.post("/authorize")
async def authorize_choice(request: Request, container: ContainerDep) -> Response:
    simulator = _simulator(container)
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    params = {k: v for k, v in form.items() if k in _PARAMS}
    try:
        location = simulator.approve(params, form.get("personal_id", ""))
    except SimulatorError as exc:
        return HTMLResponse(_page(params, exc.description), status_code=400)
    return RedirectResponse(location, status_code=302)
