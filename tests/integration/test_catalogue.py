"""The catalogue end to end, on both backends: the starter file is loaded once, reads are public,
operators' edits and imports are versioned (and a repeated import is "no changes"), a bad file
is refused naming the exact place, nothing is ever deleted, and ``kho catalogue`` does the same
from the command line."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.app import prepare
from api.cli_catalogue import catalogue_app
from api.routers import catalogue as catalogue_routes
from api.routers import reuse as reuse_routes
from storage.db import create_db_engine, make_session_factory, session_scope
from storage.migrate import upgrade
from tests.conftest import KhoEnv, drop_postgres_database, fresh_postgres_database
from tests.integration.test_documents_api import create_document
from vault.catalogue import ensure_starter_catalogue, load_starter
from vault.models import CatalogueVersion, DocumentType, Procedure


def mount(env: KhoEnv) -> None:
    """Serve the catalogue and reuse routes even before ``api/app.py`` registers them."""
    app = env.client.app
    assert isinstance(app, FastAPI)
    paths = {getattr(route, "path", None) for route in app.routes}
    if "/v1/catalogue/document-types" not in paths:
        app.include_router(catalogue_routes.router)
    if "/v1/procedures/{code}/reuse-plan" not in paths:
        app.include_router(reuse_routes.router)


def versions(env: KhoEnv) -> list[dict[str, Any]]:
    response = env.client.get("/v1/admin/catalogue/versions", headers=env.operator_headers())
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()
    return listed


def import_(env: KhoEnv, data: object) -> Any:
    return env.client.post("/v1/admin/catalogue/import", json=data, headers=env.operator_headers())


def test_starter_catalogue_is_loaded_and_public(kho_env: KhoEnv) -> None:
    mount(kho_env)
    client = kho_env.client
    types = client.get("/v1/catalogue/document-types")
    assert types.status_code == 200
    codes = {t["code"] for t in types.json()}
    assert len(codes) >= 25
    assert {"cccd", "birth_certificate", "judicial_record", "other"} <= codes
    procedures = client.get("/v1/catalogue/procedures").json()
    assert len(procedures) >= 15
    communes = client.get("/v1/catalogue/procedures", params={"level": "commune"}).json()
    assert communes
    assert {p["level"] for p in communes} == {"commune"}
    birth = client.get("/v1/catalogue/procedures/1.001193").json()
    assert birth["name_vi"] == "Đăng ký khai sinh"
    assert birth["official_code"] is True
    by_type = {r["document_type"]: r for r in birth["requirements"]}
    assert by_type["birth_notice"]["name_vi"] == "Giấy chứng sinh"
    missing = client.get("/v1/catalogue/procedures/KHO-XX-999")
    assert missing.status_code == 404
    assert missing.json()["code"] == "procedure_not_found"


def test_starter_and_repeated_imports_record_no_new_version(kho_env: KhoEnv) -> None:
    mount(kho_env)
    before = versions(kho_env)
    assert [v["source"] for v in before] == ["starter"]
    assert before[0]["changes"]["file"]["version"] == load_starter()["version"]
    # A restart (start-up work again) and a second call change nothing.
    prepare(kho_env.container)
    with session_scope(kho_env.container.sessions) as session:
        assert ensure_starter_catalogue(session) == 0
    again = import_(kho_env, load_starter())
    assert again.status_code == 200, again.text
    assert again.json()["changed"] is False
    assert again.json()["summary"] == "no changes"
    assert again.json()["digest"] == before[0]["digest"]
    assert versions(kho_env) == before


def test_processes_starting_at_once_load_the_starter_once(kho_env: KhoEnv, tmp_path: Path) -> None:
    """Several API processes start on one fresh database: one loads, the others find it done."""
    postgres = kho_env.backend == "postgres-minio"
    url = fresh_postgres_database() if postgres else f"sqlite:///{tmp_path / 'race.db'}"
    try:
        upgrade(url)
        added: list[int] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def start() -> None:
            engine = create_db_engine(url)
            try:
                barrier.wait()
                with session_scope(make_session_factory(engine)) as session:
                    added.append(ensure_starter_catalogue(session))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                engine.dispose()

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(added)[:3] == [0, 0, 0]
        assert sorted(added)[3] > 0
        engine = create_db_engine(url)
        with make_session_factory(engine)() as session:
            assert session.scalar(select(func.count(CatalogueVersion.id))) == 1
            assert session.scalar(select(func.count(Procedure.code))) == len(
                load_starter()["procedures"]
            )
        engine.dispose()
    finally:
        if postgres:
            drop_postgres_database(url)


def test_export_import_round_trip(kho_env: KhoEnv) -> None:
    mount(kho_env)
    exported = kho_env.client.get(
        "/v1/admin/catalogue/export", headers=kho_env.operator_headers()
    ).json()
    assert exported["format"] == "kho-catalogue/1"
    back = import_(kho_env, exported)
    assert back.status_code == 200, back.text
    assert back.json()["changed"] is False


def test_bad_file_is_refused_naming_the_path(kho_env: KhoEnv) -> None:
    mount(kho_env)
    before = versions(kho_env)
    data = copy.deepcopy(load_starter())
    data["procedures"][3]["requirements"][1]["document_type"] = "giay_khong_co"
    response = import_(kho_env, data)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "invalid_catalogue"
    assert problem["errors"][0]["location"] == [
        "procedures",
        "3",
        "requirements",
        "1",
        "document_type",
    ]
    assert set(problem["errors"][0]) == {"location", "message", "type"}
    assert "procedures[3].requirements[1].document_type" in problem["detail"]
    shape = copy.deepcopy(load_starter())
    shape["procedures"][0]["requirements"][0]["min_assurance"] = "very_high"
    response = import_(kho_env, shape)
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["location"] == ["procedures", "0", "requirements", "0", "min_assurance"]
    assert error["type"] == "enum"
    assert versions(kho_env) == before


def test_import_deactivates_and_never_deletes(kho_env: KhoEnv) -> None:
    mount(kho_env)
    owner = kho_env.citizen()
    held = create_document(kho_env, owner, type_code="vehicle_registration", title="Cà vẹt xe")
    data = copy.deepcopy(load_starter())
    data["document_types"] = [
        t for t in data["document_types"] if t["code"] != "vehicle_registration"
    ]
    dropped = data["procedures"].pop()["code"]
    response = import_(kho_env, data)
    assert response.status_code == 200, response.text
    changes = response.json()["version"]["changes"]
    assert changes["document_types"]["deactivated"] == ["vehicle_registration"]
    assert changes["procedures"]["deactivated"] == [dropped]
    codes = {t["code"] for t in kho_env.client.get("/v1/catalogue/document-types").json()}
    assert "vehicle_registration" not in codes
    assert kho_env.client.get(f"/v1/catalogue/procedures/{dropped}").status_code == 404
    with kho_env.container.sessions() as session:
        row = session.scalars(
            select(DocumentType).where(DocumentType.code == "vehicle_registration")
        ).one()
        assert row.active is False
    # The owner's paper of the retired type is still there.
    document = kho_env.client.get(f"/v1/documents/{held['id']}", headers=kho_env.headers(owner))
    assert document.status_code == 200
    # Importing the full file again brings both back, as a recorded change.
    restored = import_(kho_env, load_starter()).json()
    assert restored["changed"] is True
    assert restored["version"]["changes"]["document_types"]["changed"] == ["vehicle_registration"]
    assert restored["version"]["changes"]["procedures"]["changed"] == [dropped]


def test_admin_edits_are_versioned(kho_env: KhoEnv) -> None:
    mount(kho_env)
    client, ops = kho_env.client, kho_env.operator_headers()
    start = len(versions(kho_env))
    body = {
        "name_vi": "Giấy chứng nhận nghề thủ công",
        "name_en": "Craft certificate",
        "issuer_kind": "people_committee",
        "expires": True,
        "validity_months": 24,
    }
    created = client.put("/v1/admin/catalogue/document-types/craft_cert", json=body, headers=ops)
    assert created.status_code == 201, created.text
    assert created.json()["code"] == "craft_cert"
    same = client.put("/v1/admin/catalogue/document-types/craft_cert", json=body, headers=ops)
    assert same.status_code == 200
    renamed = client.put(
        "/v1/admin/catalogue/document-types/craft_cert",
        json={**body, "name_en": "Craft-village certificate"},
        headers=ops,
    )
    assert renamed.status_code == 200
    listed = versions(kho_env)
    assert len(listed) == start + 2
    assert listed[0]["changes"]["document_types"]["changed"] == ["craft_cert"]
    assert listed[1]["changes"]["document_types"]["added"] == ["craft_cert"]
    assert listed[0]["source"] == "admin"
    assert listed[0]["actor"].startswith("operator:")
    assert listed[0]["digest"] != listed[1]["digest"]

    procedure = {
        "name_vi": "Cấp giấy chứng nhận làng nghề (thử)",
        "name_en": "Craft-village certification (test)",
        "level": "province",
        "requirements": [
            {"document_type": "craft_cert", "min_assurance": "digitised"},
            {"document_type": "cccd", "min_assurance": "digitised", "required": False},
        ],
    }
    made = client.put("/v1/admin/catalogue/procedures/KHO-LN-001", json=procedure, headers=ops)
    assert made.status_code == 201, made.text
    public = client.get("/v1/catalogue/procedures/KHO-LN-001").json()
    assert {r["document_type"] for r in public["requirements"]} == {"craft_cert", "cccd"}
    assert len(versions(kho_env)) == start + 3

    unknown = client.put(
        "/v1/admin/catalogue/procedures/KHO-LN-002",
        json={**procedure, "requirements": [{"document_type": "giay_ma"}]},
        headers=ops,
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["location"] == ["requirements", "0", "document_type"]
    invented = client.put("/v1/admin/catalogue/procedures/1.999999", json=procedure, headers=ops)
    assert invented.status_code == 422
    assert invented.json()["errors"][0]["location"] == ["code"]
    extra = client.put(
        "/v1/admin/catalogue/procedures/KHO-LN-003",
        json={**procedure, "fee": 10},
        headers=ops,
    )
    assert extra.status_code == 422

    in_use = client.put(
        "/v1/admin/catalogue/document-types/craft_cert",
        json={**body, "active": False},
        headers=ops,
    )
    assert in_use.status_code == 409
    assert in_use.json()["code"] == "document_type_in_use"
    assert in_use.json()["procedures"] == ["KHO-LN-001"]

    retired = client.put(
        "/v1/admin/catalogue/procedures/KHO-LN-001",
        json={**procedure, "active": False},
        headers=ops,
    )
    assert retired.status_code == 200
    assert retired.json()["active"] is False
    assert client.get("/v1/catalogue/procedures/KHO-LN-001").status_code == 404
    latest = versions(kho_env)[0]
    assert latest["changes"]["procedures"]["deactivated"] == ["KHO-LN-001"]
    assert len(versions(kho_env)) == start + 4


def test_admin_routes_need_an_operator(kho_env: KhoEnv) -> None:
    mount(kho_env)
    client = kho_env.client
    owner = kho_env.citizen()
    for method, path in [
        ("GET", "/v1/admin/catalogue/versions"),
        ("GET", "/v1/admin/catalogue/export"),
        ("POST", "/v1/admin/catalogue/import"),
        ("PUT", "/v1/admin/catalogue/document-types/cccd"),
        ("GET", "/v1/admin/statistics/reuse?from=2026-01-01T00:00Z&to=2027-01-01T00:00Z"),
    ]:
        body: dict[str, Any] | None = {} if method in ("POST", "PUT") else None
        anonymous = client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
        citizen = client.request(method, path, json=body, headers=kho_env.headers(owner))
        assert citizen.status_code == 403, (method, path)


def run_cli(env: KhoEnv, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(
        catalogue_app,
        list(args),
        env={
            "KHO_DATA_DIR": str(env.settings.data_dir),
            "KHO_DATABASE_URL": env.settings.effective_database_url,
        },
    )


def test_cli_export_import_and_errors(kho_env: KhoEnv, tmp_path: Path) -> None:
    exported = run_cli(kho_env, "export")
    assert exported.exit_code == 0, exported.output
    document = json.loads(exported.stdout)
    assert len(document["document_types"]) >= 25

    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    same = run_cli(kho_env, "import", str(path))
    assert same.exit_code == 0, same.output
    assert same.stdout.strip() == "no changes"

    document["procedures"][0]["name_en"] = "Birth registration (renamed)"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    changed = run_cli(kho_env, "import", str(path), "--actor", "tester")
    assert changed.exit_code == 0, changed.output
    assert "procedures +0 ~1 -0" in changed.stdout
    assert changed.stdout.startswith("catalogue version ")

    document["procedures"][3]["requirements"][1]["document_type"] = "giay_khong_co"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    bad = run_cli(kho_env, "import", str(path))
    assert bad.exit_code == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, bad.stderr
    assert lines[0].startswith(
        "kho: invalid_catalogue: procedures[3].requirements[1].document_type"
    )

    path.write_text("{ not json", encoding="utf-8")
    broken = run_cli(kho_env, "import", str(path))
    assert broken.exit_code == 2
    assert broken.stderr.startswith("kho: invalid_catalogue:")
    assert "line 1" in broken.stderr

    out = tmp_path / "out.json"
    written = run_cli(kho_env, "export", "-o", str(out))
    assert written.exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8"))["format"] == "kho-catalogue/1"
