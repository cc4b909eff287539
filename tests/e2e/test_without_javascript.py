"""The pages with JavaScript switched off: everything but the progress bar still works (sign-in,
the store, a plain multipart upload, versions, download, delete, consent decisions, revocation,
delegations), and the CSRF and origin checks hold."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from identity.service import CitizenProfile, IdentityService
from sso.models import WebSession
from storage.db import session_scope
from tests.e2e.conftest import backend_settings, make_agency, open_tab, pdf_file, web_kho
from tests.e2e.test_official_journey import simulator_login

CITIZEN = "036158000111"  # Đặng Thị Hoa, a sample citizen of the simulator


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-minio"])
def test_the_pages_work_without_javascript(
    browser: Browser, axe_source: str, tmp_path: Path, backend: str
) -> None:
    with (
        web_kho(tmp_path, **backend_settings(backend)) as kho,
        # The markup does not depend on the backend: axe runs once, on the embedded one.
        open_tab(
            browser,
            axe_source,
            f"nojs-{backend}",
            javascript=False,
            run_axe=backend == "sqlite-local",
        ) as tab,
    ):
        base = kho.url
        page = tab.page
        simulator_login(tab, base, CITIZEN)
        expect(page.get_by_role("heading", level=1)).to_contain_text("Đặng Thị Hoa")

        # The access token lapses: the next page refreshes it (rotating the refresh token).
        container = kho.container
        now = dt.datetime.now(dt.UTC)
        with session_scope(container.sessions) as session:
            row = session.scalars(
                select(WebSession).where(WebSession.account_id.is_not(None))
            ).one()
            sealed_refresh = row.refresh_token
            row.access_expires_at = now - dt.timedelta(minutes=1)
        page.reload()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Đặng Thị Hoa")
        with session_scope(container.sessions) as session:
            row = session.scalars(
                select(WebSession).where(WebSession.account_id.is_not(None))
            ).one()
            assert row.access_expires_at is not None and row.access_expires_at > now
            assert row.refresh_token != sealed_refresh

        # -- the store, and a plain (multipart) upload ---------------------------------------
        page.get_by_role("link", name="Giấy tờ", exact=True).click()
        tab.check("store-empty")
        page.get_by_role("button", name="Tải lên", exact=True).click()  # nothing filled in
        expect(page.locator("#error-summary")).to_be_visible()
        for name in ("type_code", "title", "file"):
            expect(page.locator(f"#{name}-error")).to_be_visible()
            assert f"{name}-error" in (page.get_attribute(f"#{name}", "aria-describedby") or "")
        tab.check("upload-errors")

        uploads: list[tuple[str, str]] = []
        page.on(
            "request",
            lambda r: (
                uploads.append((r.method, r.headers.get("content-type", "")))
                if r.url.endswith("/web/documents")
                else None
            ),
        )
        data = pdf_file(tmp_path / "so-ho-khau.pdf", 2_500_000, seed=3)
        page.select_option("#type_code", "residence_confirmation")
        page.fill("#title", "Giấy xác nhận cư trú")
        page.fill("#issued_on", "2026-10-01")
        page.set_input_files("#file", str(tmp_path / "so-ho-khau.pdf"))
        page.get_by_role("button", name="Tải lên", exact=True).click()
        page.wait_for_url(re.compile(r".*/web/documents/[0-9a-f-]+\?done=uploaded$"))
        document_id = page.url.split("/web/documents/")[1].split("?")[0]
        expect(page.get_by_role("status")).to_contain_text("Đã tải lên")
        # No script ran: the browser itself posted the multipart form (no progress bar).
        assert uploads and all(m == "POST" for m, _ in uploads), uploads
        assert uploads[-1][1].startswith("multipart/form-data; boundary="), uploads
        expect(page.locator("#version-progress-box")).to_be_hidden()
        with page.expect_download() as info:
            page.get_by_role("link", name="Tải về bản hiện tại").click()
        assert Path(info.value.path()).read_bytes() == data

        # A second version, and a refused file type, through the same plain form.
        (tmp_path / "ghi-chu.txt").write_text("không phải PDF")
        page.set_input_files("#file", str(tmp_path / "ghi-chu.txt"))
        page.get_by_role("button", name="Tải lên phiên bản mới").click()
        expect(page.locator("#file-error")).to_contain_text("Định dạng")
        tab.check("unsupported-file")
        version2 = pdf_file(tmp_path / "xac-nhan-2.pdf", 300_000, seed=4)
        page.set_input_files("#file", str(tmp_path / "xac-nhan-2.pdf"))
        page.get_by_role("button", name="Tải lên phiên bản mới").click()
        page.wait_for_url(re.compile(r".*\?done=uploaded$"))
        expect(page.locator("tbody tr")).to_have_count(2)
        tab.check("document-two-versions")
        with page.expect_download() as info:
            page.get_by_role("link", name="Tải về phiên bản 1").click()
        assert Path(info.value.path()).read_bytes() == data
        with page.expect_download() as info:
            page.get_by_role("link", name="Tải về phiên bản 2").click()
        assert Path(info.value.path()).read_bytes() == version2

        # A paper to delete, with its confirmation page.
        page.goto(base + "/web/store")
        pdf_file(tmp_path / "nhap.pdf", 20_000, seed=5)
        page.select_option("#type_code", "other")
        page.fill("#title", "Bản nháp")
        page.set_input_files("#file", str(tmp_path / "nhap.pdf"))
        page.get_by_role("button", name="Tải lên", exact=True).click()
        page.wait_for_url(re.compile(r".*\?done=uploaded$"))
        page.get_by_role("link", name="Xoá giấy tờ").click()
        expect(page.get_by_role("heading", name="Xoá giấy tờ này?")).to_be_visible()
        tab.check("delete-confirmation")
        page.get_by_role("button", name="Xoá vĩnh viễn").click()
        page.wait_for_url(re.compile(r".*/web/store\?done=deleted$"))
        expect(page.get_by_role("link", name="Bản nháp")).to_have_count(0)
        tab.check("store")

        # -- a consent decision and a revocation --------------------------------------------------
        justice = make_agency(kho, "STP-TN", "Sở Tư pháp tỉnh Thái Nguyên")
        asked = justice.ask(
            CITIZEN,
            [{"document_type": "residence_confirmation"}, {"document_type": "cccd"}],
            purpose="Cấp Phiếu lý lịch tư pháp",
            procedure_code="KHO-TP-001",
        )
        page.goto(base + "/web/consents")
        page.get_by_role("link", name=re.compile("Xem và quyết định")).click()
        expect(
            page.get_by_text("Bạn chưa có giấy tờ này (còn hiệu lực) trong kho.")
        ).to_be_visible()
        page.get_by_role("checkbox", name="Giấy xác nhận cư trú").uncheck()
        page.get_by_role("button", name="Đồng ý chia sẻ giấy tờ đã chọn").click()
        expect(page.locator("#document_id-error")).to_be_visible()  # nothing chosen
        tab.check("consent-nothing-chosen")
        page.get_by_role("checkbox", name="Giấy xác nhận cư trú").check()
        page.get_by_role("button", name="Đồng ý chia sẻ giấy tờ đã chọn").click()
        page.wait_for_url(re.compile(r".*\?done=granted$"))
        expect(page.get_by_text("Đồng ý một phần", exact=True)).to_be_visible()  # no cccd held
        followed = justice.follow(asked["id"])
        grant_id = followed["grant"]["id"]
        shared = justice.fetch(grant_id, document_id)
        assert shared.status_code == 200
        assert shared.content == version2  # the version the preview showed
        page.get_by_role("button", name="Thu hồi sự đồng ý").click()
        page.wait_for_url(re.compile(r".*\?done=revoked$"))
        expect(page.get_by_text("Đã thu hồi", exact=True)).to_be_visible()
        tab.check("revoked")

        # -- a delegation, given and ended ------------------------------------------------------
        with session_scope(container.sessions) as session:
            IdentityService(session, container.clock).enrol_citizen(
                CitizenProfile(
                    national_subject=f"sub-{uuid.uuid4()}",
                    personal_id="001190012345",
                    full_name="Nguyễn Thị Lan",
                    birth_date=dt.date(1990, 1, 2),
                    eid_level=2,
                )
            )
        page.get_by_role("link", name="Uỷ quyền").click()
        page.fill("#delegate_personal_id", "12345")
        page.get_by_role("button", name="Uỷ quyền", exact=True).click()
        expect(page.locator("#delegate_personal_id-error")).to_be_visible()
        expect(page.locator("#scope-error")).to_be_visible()
        tab.check("delegation-errors")
        page.fill("#delegate_personal_id", "001190012345")
        page.get_by_role("checkbox", name="Xem giấy tờ").check()
        page.fill("#valid_until", (dt.date.today() + dt.timedelta(days=90)).isoformat())
        page.get_by_role("button", name="Uỷ quyền", exact=True).click()
        page.wait_for_url(re.compile(r".*\?done=delegated$"))
        expect(page.locator("tbody tr").first).to_contain_text("Nguyễn Thị Lan")
        tab.check("delegation-given")
        page.get_by_role("button", name=re.compile("^Chấm dứt")).click()
        page.wait_for_url(re.compile(r".*\?done=delegation_ended$"))
        expect(page.locator("tbody tr").first).to_contain_text("Đã chấm dứt")

        # -- CSRF and origin checks ----------------------------------------------------------------
        request = tab.context.request
        no_token = request.post(base + f"/web/documents/{document_id}/delete", form={"x": "1"})
        assert no_token.status == 403
        assert "csrf_failed" in no_token.text()
        token = page.locator("input[name=csrf]").first.get_attribute("value")
        assert token
        other_site = request.post(
            base + f"/web/documents/{document_id}/delete",
            form={"csrf": token},
            headers={"Origin": "http://evil.example"},
        )
        assert other_site.status == 403
        wrong_token = request.post(
            base + f"/web/documents/{document_id}/delete", form={"csrf": token + "x"}
        )
        assert wrong_token.status == 403
        raw_put = request.put(
            base + "/web/documents",
            data=b"%PDF-1.7\n",
            headers={"Content-Type": "application/octet-stream"},
        )
        assert raw_put.status == 403
        page.goto(base + f"/web/documents/{document_id}")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Giấy xác nhận cư trú")

        # -- sign out ------------------------------------------------------------------------------
        page.get_by_role("button", name="Đăng xuất").click()
        page.wait_for_url(re.compile(r".*/web/\?state=signed_out$"))
        expect(page.get_by_role("status")).to_contain_text("Bạn đã đăng xuất")
        tab.check("signed-out")
        page.goto(base + "/web/store")
        # Signed out of Kho's provider too: straight back to the e-ID simulator's picker.
        page.wait_for_url(re.compile(r".*/dev/eid/authorize.*"))
