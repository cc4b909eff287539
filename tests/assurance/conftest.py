"""A world for the assurance tests, built once per module through the real API.

``World`` holds two owners (A and B) with papers, A's delegate (a delegation with every scope),
A's reader (another citizen, holding a delegation from A with ``documents:read`` only), agencies
X and Y with back-end clients, a repeated-access grant from A to X and a pending request of X, an
official of X with every role (and a second one, so that statutory accesses can be approved), an
official of Y, an approved statutory access of X, an issued paper of X in A's store, an
organisation, an OAuth client that authenticates with ``private_key_jwt`` (its credential
travels in the form), and an operator; ``World.page_session`` gives any citizen a signed-in page
session. Every identifier a route's path needs belongs to A or to X, so that B, the delegates
(outside the routes their scopes open), Y and Y's official are the wrong party. ``World.fresh_*``
make new resources for the cells that change or consume what they touch, so no cell depends on
another one's side effects.

``open_env`` and ``build_world`` are also what ``bench/fuzz.py`` runs on.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jws, jwt
from joserfc.jwk import ECKey
from sqlalchemy import inspect

from api.app import create_app
from api.container import API_AUDIENCE, Container, build_container
from api.web.session import WebSessionStore
from identity.service import tax_code_check_digit
from storage.db import Base, session_scope
from tests.agencies import AgencyClient, make_agency
from tests.assurance.policies import HELD, SCOPES, Principal
from tests.conftest import (
    KhoEnv,
    Owner,
    build_ready_container,
    drop_postgres_database,
    settings_for,
)

BACKENDS = ["sqlite-local", "postgres-minio"]
PROCEDURE = "1.004222"
PORTAL = "kho-demo-portal"
ALL_SCOPES = list(SCOPES)
READER_SCOPES = sorted(HELD[Principal.READER])  # what the matrix declares A's reader holds
SAMPLE_CITIZEN = "019090001234"  # the e-ID simulator's Nguyễn Văn An
WEB_COOKIE = "kho_web"


def tiny_pdf(seed: int | str) -> bytes:
    """A few hundred bytes that Kho takes for a PDF, different for every seed."""
    marker = hashlib.sha256(str(seed).encode()).hexdigest()
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% "
        + marker.encode()
        + b"\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def sign_detached(key: ECKey, digest: str) -> str:
    """A detached compact JWS over the hex SHA-256 (RFC 7515 appendix F)."""
    full = jws.serialize_compact({"alg": "ES256", "kid": key.kid or ""}, digest.encode(), key)
    head, _payload, signature = full.split(".")
    return f"{head}..{signature}"


def valid_tax_code() -> str:
    while True:
        first = "01" + f"{secrets.randbelow(10**7 - 1) + 1:07d}"
        check = tax_code_check_digit(first)
        if check is not None:
            return first + str(check)


def pkce_challenge() -> str:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def expect(response: Any, *codes: int) -> Any:
    """``response`` if its status is one of ``codes``; a readable failure otherwise."""
    assert response.status_code in codes, (
        f"setup: {response.request.method} {response.request.url} -> "
        f"{response.status_code}: {response.text[:500]}"
    )
    return response


@dataclass
class World:
    env: KhoEnv
    owner_a: Owner
    owner_b: Owner
    delegate: Owner
    reader: Owner
    official: Owner
    second_official: Owner
    official_y: Owner
    x: AgencyClient
    y: AgencyClient
    issuer_key: ECKey
    doc_a: str
    doc_a_cccd: str
    doc_b: str
    delegation_id: str
    reader_delegation_id: str
    grant_id: str
    granted_request_id: str
    pending_request_id: str
    statutory_id: str
    official_id: str
    issued_doc_id: str
    verify_qr: str
    notification_id: str
    organisation_id: str
    oauth_client_id: str
    oauth_client_key: ECKey
    fuzz_agency_id: str = ""  # set by bench.fuzz: an agency the fuzzer may change at will
    page_sessions: dict[uuid.UUID, tuple[str, str]] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- small helpers ----------------------------------------------------------------------

    @property
    def client(self) -> TestClient:
        return self.env.client

    def now(self) -> dt.datetime:
        return self.env.container.clock.now()

    def serial(self) -> int:
        return next(self.counter)

    def public_root(self) -> str:
        return self.env.settings.public_url.rstrip("/") + "/"

    def new_jwk(self) -> dict[str, Any]:
        key = ECKey.generate_key("P-256", parameters={"kid": f"matrix-x-{self.serial()}"})
        public: dict[str, Any] = key.as_dict(private=False)
        return public

    def ops(self) -> dict[str, str]:
        return self.env.operator_headers()

    def as_owner(self, owner: Owner) -> dict[str, str]:
        return self.env.headers(owner)

    def as_official(self, official: Owner, agency: AgencyClient) -> dict[str, str]:
        return self.env.headers(official, **{"X-Agency-Id": str(agency.agency_id)})

    def page_session(self, person: Owner, *, fresh: bool = False) -> tuple[str, str]:
        """A signed-in page session of ``person``: its cookie secret and its CSRF token."""
        if fresh or person.account_id not in self.page_sessions:
            self.page_sessions[person.account_id] = open_page_session(self.env, person)
        return self.page_sessions[person.account_id]

    # -- fresh resources for the cells that change what they touch ------------------------

    def fresh_citizen(self) -> Owner:
        return self.env.citizen()

    def fresh_document(self, owner: Owner | None = None, *, content: bool = True) -> str:
        owner = owner or self.owner_a
        created = expect(
            self.client.post(
                "/v1/documents",
                json={"type_code": "birth_certificate", "title": "Giấy khai sinh"},
                headers=self.as_owner(owner),
            ),
            201,
        ).json()
        if content:
            expect(
                self.client.put(
                    f"/v1/documents/{created['id']}/content",
                    content=tiny_pdf(f"doc-{created['id']}"),
                    headers=self.as_owner(owner),
                ),
                201,
            )
        document_id: str = created["id"]
        return document_id

    def fresh_request(self, items: list[dict[str, Any]] | None = None, **fields: Any) -> str:
        """A pending consent request of X to A."""
        created = self.x.request(
            self.owner_a.personal_id,
            items or [{"document_type": "birth_certificate"}],
            **fields,
        )
        request_id: str = created["id"]
        return request_id

    def fresh_grant(self) -> str:
        request_id = self.fresh_request(
            access_mode="repeated",
            max_uses=1000,
            access_until=(self.now() + dt.timedelta(days=30)).isoformat(),
        )
        decided = expect(
            self.client.post(
                f"/v1/consents/{request_id}/decision",
                json={"decision": "grant", "document_ids": [self.doc_a]},
                headers=self.as_owner(self.owner_a),
            ),
            200,
        ).json()
        grant_id: str = decided["grant"]["id"]
        return grant_id

    def fresh_delegation(
        self, delegate: Owner | None = None, scope: list[str] | None = None
    ) -> str:
        """A delegation from A (to the delegate, with every scope, unless told otherwise)."""
        delegate = delegate or self.delegate
        created = expect(
            self.client.post(
                "/v1/delegations",
                json={
                    "delegate_personal_id": delegate.personal_id,
                    "scope": scope or ALL_SCOPES,
                    "valid_until": (self.now() + dt.timedelta(days=365)).isoformat(),
                },
                headers=self.as_owner(self.owner_a),
            ),
            201,
        ).json()
        delegation_id: str = created["id"]
        return delegation_id

    def fresh_statutory(self, *, approve: bool = False, asked_by_official: bool = False) -> str:
        """A statutory access of X to A's paper, asked by the second official of X and approved
        (if asked) by the official; ``asked_by_official``: the other way round."""
        asker, approver = (
            (self.official, self.second_official)
            if asked_by_official
            else (self.second_official, self.official)
        )
        created = expect(
            self.client.post(
                "/v1/agency/statutory-access",
                json={
                    "subject_personal_id": self.owner_a.personal_id,
                    "legal_reference": "Điều 11.3 Quyết định 55/2024/QĐ-UBND",
                    "purpose": "Xác minh theo yêu cầu của cơ quan điều tra",
                    "document_ids": [self.doc_a],
                },
                headers=self.as_official(asker, self.x),
            ),
            201,
        ).json()
        access_id: str = created["id"]
        if approve:
            expect(
                self.client.post(
                    f"/v1/agency/statutory-access/{access_id}/approval",
                    json={"approve": True},
                    headers=self.as_official(approver, self.x),
                ),
                200,
            )
        return access_id

    def issued_declaration(self, data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        return {
            "subject_personal_id": self.owner_a.personal_id,
            "document": {
                "type_code": "birth_certificate",
                "title": "Trích lục khai sinh",
                "number": f"{self.serial()}/2026/TLKS",
                "issued_on": "2026-11-20",
            },
            "sha256": digest,
            "signature": sign_detached(self.issuer_key, digest),
        }

    def fresh_issued_slot(self) -> tuple[str, bytes]:
        data = tiny_pdf(f"issued-{self.serial()}-{secrets.token_hex(4)}")
        slot = expect(
            self.client.post(
                "/v1/agency/issued-documents",
                json=self.issued_declaration(data),
                headers=self.x.headers(),
            ),
            201,
        ).json()
        document_id: str = slot["document_id"]
        return document_id, data

    def fresh_issued(self) -> dict[str, Any]:
        document_id, data = self.fresh_issued_slot()
        uploaded: dict[str, Any] = expect(
            self.client.put(
                f"/v1/agency/issued-documents/{document_id}/content",
                content=data,
                headers=self.x.headers(),
            ),
            201,
        ).json()
        return uploaded

    def fresh_desk_slot(self) -> str:
        slot = expect(
            self.client.post(
                "/v1/agency/desk/documents",
                json={
                    "subject_personal_id": self.owner_a.personal_id,
                    "document": {"type_code": "marriage_certificate", "title": "Đăng ký kết hôn"},
                },
                headers=self.as_official(self.official, self.x),
            ),
            201,
        ).json()
        document_id: str = slot["document_id"]
        return document_id

    def fresh_official(self) -> str:
        person = self.fresh_citizen()
        created = expect(
            self.client.post(
                f"/v1/admin/agencies/{self.x.agency_id}/officials",
                json={
                    "personal_id": person.personal_id,
                    "full_name": "Cán bộ thử",
                    "roles": ["receptionist"],
                },
                headers=self.ops(),
            ),
            201,
        ).json()
        official_id: str = created["id"]
        return official_id

    def fresh_official_person(self, agency: AgencyClient) -> Owner:
        person, _ = _make_official(self.env, agency, ["receptionist", "processor", "approver"])
        return person

    def fresh_representative(self) -> str:
        person = self.fresh_citizen()
        created = expect(
            self.client.post(
                f"/v1/admin/organisations/{self.organisation_id}/representatives",
                json={"personal_id": person.personal_id},
                headers=self.ops(),
            ),
            201,
        ).json()
        representative_id: str = created["id"]
        return representative_id

    def client_body(self, client_id: str) -> dict[str, Any]:
        return {
            "client_id": client_id,
            "name": "Ứng dụng thử",
            "kind": "agency",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "scopes": ["kho:agency"],
        }

    def fresh_client(self) -> str:
        client_id = f"matrix-client-{self.serial()}-{secrets.token_hex(3)}"
        expect(
            self.client.put(
                f"/v1/admin/clients/{client_id}",
                json=self.client_body(client_id),
                headers=self.ops(),
            ),
            201,
        )
        return client_id

    def oauth_form(self, **extra: str) -> dict[str, str]:
        """Form fields that authenticate the world's ``private_key_jwt`` client: the client's
        credential travels in the body, so the caller's own Authorization header is free."""
        now = int(time.time())
        assertion = jwt.encode(
            {"alg": "ES256", "kid": self.oauth_client_key.kid or ""},
            {
                "iss": self.oauth_client_id,
                "sub": self.oauth_client_id,
                "aud": self.env.container.issuer_url.rstrip("/") + "/oauth2/token",
                "jti": secrets.token_urlsafe(16),
                "iat": now,
                "exp": now + 120,
            },
            self.oauth_client_key,
        )
        return {
            "client_id": self.oauth_client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            **extra,
        }

    def fresh_client_token(self) -> str:
        issued = expect(
            self.client.post(
                "/oauth2/token",
                data=self.oauth_form(grant_type="client_credentials", scope="kho:agency"),
            ),
            200,
        ).json()
        token: str = issued["access_token"]
        return token

    def authorize_params(self) -> dict[str, str]:
        """A valid authorization request of the demo portal (PKCE S256)."""
        base = self.env.settings.public_url.rstrip("/")
        return {
            "response_type": "code",
            "client_id": PORTAL,
            "redirect_uri": base + "/dev/portal/callback",
            "scope": "openid profile",
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": pkce_challenge(),
            "code_challenge_method": "S256",
        }

    def simulator_params(self) -> dict[str, str]:
        """The query Kho sends to the e-ID simulator for a fresh authorization request."""
        self.client.cookies.clear()
        response = expect(
            self.client.get(
                "/oauth2/authorize", params=self.authorize_params(), follow_redirects=False
            ),
            302,
            303,
        )
        location = urlsplit(response.headers["location"])
        assert location.path == "/dev/eid/authorize", response.headers["location"]
        return {k: v[0] for k, v in parse_qs(location.query).items()}

    def fresh_web_callback(self) -> tuple[str, dict[str, str]]:
        """A page sign-in carried up to Kho's return to /web/callback: the path and query of
        that return, and the Cookie header of the browser that started it."""
        self.client.cookies.clear()
        started = expect(self.client.get("/web/login", follow_redirects=False), 303)
        cookie = f"{WEB_COOKIE}={started.cookies[WEB_COOKIE]}"
        self.client.cookies.clear()
        authorize = expect(
            self.client.get(started.headers["location"], follow_redirects=False), 302, 303
        )
        location = urlsplit(authorize.headers["location"])
        assert location.path == "/dev/eid/authorize", authorize.headers["location"]
        params = {k: v[0] for k, v in parse_qs(location.query).items()}
        chosen = expect(
            self.client.post(
                "/dev/eid/authorize",
                data={**params, "personal_id": SAMPLE_CITIZEN},
                follow_redirects=False,
            ),
            302,
        )
        back = expect(self.client.get(chosen.headers["location"], follow_redirects=False), 302)
        target = urlsplit(back.headers["location"])
        assert target.path == "/web/callback", back.headers["location"]
        self.client.cookies.clear()
        return f"{target.path}?{target.query}", {"Cookie": cookie}

    def fresh_eid_callback(self) -> str:
        """The path and query the simulator redirects to after a sample citizen chose."""
        params = self.simulator_params()
        chosen = expect(
            self.client.post(
                "/dev/eid/authorize",
                data={**params, "personal_id": SAMPLE_CITIZEN},
                follow_redirects=False,
            ),
            302,
        )
        location = urlsplit(chosen.headers["location"])
        self.client.cookies.clear()
        return f"{location.path}?{location.query}"


def _make_official(env: KhoEnv, agency: AgencyClient, roles: list[str]) -> tuple[Owner, str]:
    person = env.citizen()
    created = expect(
        env.client.post(
            f"/v1/admin/agencies/{agency.agency_id}/officials",
            json={"personal_id": person.personal_id, "full_name": "Cán bộ thử", "roles": roles},
            headers=env.operator_headers(),
        ),
        201,
    ).json()
    return person, str(created["id"])


def _paper(env: KhoEnv, owner: Owner, type_code: str) -> str:
    created = expect(
        env.client.post(
            "/v1/documents",
            json={"type_code": type_code, "title": type_code},
            headers=env.headers(owner),
        ),
        201,
    ).json()
    expect(
        env.client.put(
            f"/v1/documents/{created['id']}/content",
            content=tiny_pdf(f"{owner.account_id}-{type_code}"),
            headers=env.headers(owner),
        ),
        201,
    )
    document_id: str = created["id"]
    return document_id


def build_world(env: KhoEnv) -> World:
    ops = env.operator_headers()
    owner_a, owner_b, delegate, reader = env.citizen(), env.citizen(), env.citizen(), env.citizen()
    x = make_agency(env, "MATRIX-X", "Công an tỉnh (ma trận X)")
    y = make_agency(env, "MATRIX-Y", "Sở Tư pháp (ma trận Y)")
    official, official_id = _make_official(env, x, ["receptionist", "processor", "approver"])
    second_official, _ = _make_official(env, x, ["processor", "approver"])
    official_y, _ = _make_official(env, y, ["receptionist", "processor", "approver"])

    key = ECKey.generate_key("P-256", parameters={"kid": "matrix-x-1"})
    expect(
        env.client.put(
            f"/v1/admin/agencies/{x.agency_id}/issuing-rights",
            json={"document_types": ["birth_certificate", "judicial_record"]},
            headers=ops,
        ),
        200,
    )
    expect(
        env.client.post(
            f"/v1/admin/agencies/{x.agency_id}/signing-keys",
            json={"jwk": key.as_dict(private=False)},
            headers=ops,
        ),
        201,
    )

    doc_a = _paper(env, owner_a, "birth_certificate")
    doc_a_cccd = _paper(env, owner_a, "cccd")
    doc_b = _paper(env, owner_b, "birth_certificate")

    oauth_client_id = "matrix-jwt-client"
    oauth_key = ECKey.generate_key("P-256", parameters={"kid": "matrix-jwt-1", "alg": "ES256"})
    expect(
        env.client.put(
            f"/v1/admin/clients/{oauth_client_id}",
            json={
                "client_id": oauth_client_id,
                "name": "Ứng dụng xác thực bằng khoá (private_key_jwt)",
                "kind": "agency",
                "token_endpoint_auth_method": "private_key_jwt",
                "grant_types": ["client_credentials"],
                "scopes": ["kho:agency"],
                "jwks": {"keys": [oauth_key.as_dict(private=False)]},
            },
            headers=ops,
        ),
        201,
    )

    tax_code = valid_tax_code()
    organisation = expect(
        env.client.post(
            "/v1/admin/organisations",
            json={
                "tax_code": tax_code,
                "name": "Công ty TNHH Ma Trận",
                "legal_representative_personal_id": env.citizen().personal_id,
            },
            headers=ops,
        ),
        201,
    ).json()

    world = World(
        env=env,
        owner_a=owner_a,
        owner_b=owner_b,
        delegate=delegate,
        reader=reader,
        official=official,
        second_official=second_official,
        official_y=official_y,
        x=x,
        y=y,
        issuer_key=key,
        doc_a=doc_a,
        doc_a_cccd=doc_a_cccd,
        doc_b=doc_b,
        delegation_id="",
        reader_delegation_id="",
        grant_id="",
        granted_request_id="",
        pending_request_id="",
        statutory_id="",
        official_id=official_id,
        issued_doc_id="",
        verify_qr="",
        notification_id="",
        organisation_id=str(organisation["id"]),
        oauth_client_id=oauth_client_id,
        oauth_client_key=oauth_key,
    )
    world.delegation_id = world.fresh_delegation()
    world.reader_delegation_id = world.fresh_delegation(reader, READER_SCOPES)
    world.grant_id = world.fresh_grant()
    followed = expect(
        env.client.get(f"/v1/grants/{world.grant_id}", headers=env.headers(owner_a)), 200
    ).json()
    world.granted_request_id = str(followed["request_id"])
    world.pending_request_id = world.fresh_request([{"document_type": "cccd"}])
    # Asked by the official (the matrix's OFFICIAL reads under it), approved by the second.
    world.statutory_id = world.fresh_statutory(approve=True, asked_by_official=True)
    issued = world.fresh_issued()
    world.issued_doc_id = str(issued["document_id"])
    world.verify_qr = str(issued["verify_qr"])
    notifications = expect(env.client.get("/v1/notifications", headers=env.headers(owner_a)), 200)
    world.notification_id = str(notifications.json()[0]["id"])

    # Every citizen principal gets an entry in their own log (a request of Y), then a signed
    # checkpoint covers them all, so that each one's proof exists.
    for person in (owner_b, delegate, reader, official, official_y):
        y.request(person.personal_id, [{"document_type": "cccd"}])
    expect(env.client.post("/v1/admin/access-log/checkpoints", headers=ops), 201)
    env.client.cookies.clear()
    return world


def open_page_session(env: KhoEnv, person: Owner) -> tuple[str, str]:
    """A page session as a completed sign-in leaves it (``api.web.signin``), made directly:
    the pages' own sign-in works only for the e-ID simulator's sample citizens. Returns the
    cookie secret and the session's CSRF token."""
    container = env.container
    now = container.clock.now()
    lifetime = dt.timedelta(hours=1)
    token = container.issuer.access_token(
        subject=str(person.account_id),
        audience=API_AUDIENCE,
        client_id="kho-web",
        acr=f"vneid-{person.eid_level}",
        auth_time=now,
        lifetime=lifetime,
    )
    with session_scope(container.sessions) as session:
        store = WebSessionStore(session, container.clock, container.keys)
        row, secret = store.start(lifetime=lifetime)
        row.account_id = person.account_id
        row.access_token = store.seal(row, token)
        row.access_expires_at = now + lifetime
        row.auth_time = now
        row.acr = f"vneid-{person.eid_level}"
        csrf = row.csrf_secret
    return secret, csrf


def ensure_web_sessions_table(container: Container) -> None:
    """Create the pages' session table when no migration has made it (none does yet: without
    it every sign-in page is a 500, reported in docs/assurance/authorization.md)."""
    table = Base.metadata.tables.get("web_sessions")
    if table is not None and not inspect(container.engine).has_table("web_sessions"):
        table.create(container.engine, checkfirst=True)


@contextmanager
def open_env(backend: str, tmp: Path) -> Iterator[KhoEnv]:
    """Kho on ``backend`` with a TestClient around the app (the lifespan runs).

    Rate limits are off: every request of a TestClient comes from one address and the matrix
    sends more than a minute's anonymous budget; the limits have their own tests."""
    settings = settings_for(backend, tmp, rate_limit_enabled=False)
    container = build_ready_container(settings)
    ensure_web_sessions_table(container)
    app = create_app(settings, container=container)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield KhoEnv(backend, settings, container, client)
    finally:
        container.close()
        if backend == "postgres-minio":
            store = container.objects
            for info in store.list(""):
                store.delete(info.key)
            drop_postgres_database(settings.effective_database_url)


@pytest.fixture(scope="module", params=BACKENDS)
def assurance_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    backend: str = request.param
    with open_env(backend, tmp_path_factory.mktemp(f"world-{backend}")) as env:
        yield build_world(env)


@pytest.fixture(scope="module")
def assurance_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app as ``kho serve`` builds it by default (embedded backends), not started."""
    settings = settings_for("sqlite-local", tmp_path_factory.mktemp("routes"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    container = build_container(settings)
    try:
        yield create_app(settings, container=container)
    finally:
        container.close()
