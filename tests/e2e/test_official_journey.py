"""A desk official digitises a paper for a citizen who is present, then follows the agency's
consent requests; the citizen finds the paper in their store, marked as digitised. Both sign in
through the development e-ID simulator of the embedded default."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.e2e.conftest import (
    Tab,
    make_agency,
    open_tab,
    png_file,
    register_official,
    web_kho,
)

CITIZEN = "001185004321"  # Trần Thị Bình, a sample citizen of the simulator
OFFICIAL = "048200005678"  # Võ Đức Thắng


def simulator_login(tab: Tab, base: str, personal_id: str) -> None:
    page = tab.page
    page.goto(base + "/web/")
    page.get_by_role("link", name="Đăng nhập bằng VNeID").click()
    page.wait_for_url(re.compile(r".*/dev/eid/authorize.*"))
    tab.check("simulator", axe=False)  # the simulator's page is not one of ours
    page.get_by_role("button", name=re.compile(personal_id)).click()
    page.wait_for_url(base + "/web/")


def test_official_digitises_a_paper_at_the_desk(
    browser: Browser, axe_source: str, tmp_path: Path
) -> None:
    with web_kho(tmp_path) as kho:
        base = kho.url
        centre = make_agency(kho, "TTHCC-TN", "Trung tâm Phục vụ hành chính công tỉnh Thái Nguyên")
        register_official(kho, centre, OFFICIAL, "Võ Đức Thắng")

        with open_tab(browser, axe_source, "citizen-at-desk") as citizen:
            simulator_login(citizen, base, CITIZEN)  # enrols Trần Thị Bình
            expect(citizen.page.get_by_role("link", name="Quầy tiếp nhận")).to_have_count(0)

            with open_tab(browser, axe_source, "official") as official:
                page = official.page
                simulator_login(official, base, OFFICIAL)
                expect(page.get_by_role("heading", name="Dành cho cán bộ")).to_be_visible()
                official.check("dashboard")
                page.get_by_role("link", name="Quầy tiếp nhận").click()
                official.check("desk")

                # A wrong personal ID: the error is tied to its field (JavaScript path).
                scan = png_file(tmp_path / "giay-khai-sinh.png", seed=7)
                page.fill("#personal_id", "019090009999")
                page.select_option("#type_code", "birth_certificate")
                page.fill("#title", "Giấy khai sinh (bản chính)")
                page.fill("#number", "125/2001")
                page.fill("#issuer", "UBND phường Phan Đình Phùng")
                page.set_input_files("#file", str(tmp_path / "giay-khai-sinh.png"))
                page.get_by_role("button", name="Số hoá và lưu vào kho của công dân").click()
                expect(page.locator("#personal_id-error")).to_be_visible()
                expect(page.locator("#personal_id-error")).to_contain_text("Không tìm thấy")
                assert "personal_id-error" in (
                    page.get_attribute("#personal_id", "aria-describedby") or ""
                )
                assert page.get_attribute("#personal_id", "aria-invalid") == "true"
                official.check("desk-unknown-citizen")

                page.fill("#personal_id", CITIZEN)
                page.get_by_role("button", name="Số hoá và lưu vào kho của công dân").click()
                page.wait_for_url(re.compile(r".*/web/desk\?done=digitised$"))
                expect(page.get_by_role("status")).to_contain_text("Đã số hoá")
                official.check("desk-done")

                # The agency's consent requests, as its officials follow them.
                centre.ask(CITIZEN, [{"document_type": "birth_certificate"}])
                page.get_by_role("link", name="Yêu cầu cơ quan", exact=True).click()
                expect(page.locator("tbody tr")).to_have_count(1)
                expect(page.locator("tbody tr").first).to_contain_text("Chờ công dân quyết định")
                expect(page.locator("tbody tr").first).to_contain_text("001•••••4321")
                official.check("agency-requests")

            # The citizen finds the paper, digitised, and decides on the agency's request.
            page = citizen.page
            page.goto(base + "/web/store")
            expect(
                page.get_by_role("link", name="Giấy khai sinh (bản chính)", exact=True)
            ).to_be_visible()
            expect(page.locator(".badge-digitised").first).to_have_text("Đã số hoá tại quầy")
            citizen.check("store-with-digitised")
            page.get_by_role("link", name="Giấy khai sinh (bản chính)", exact=True).click()
            expect(page.get_by_text("Số hoá tại quầy của Trung tâm Phục vụ")).to_be_visible()
            citizen.check("digitised-document")
            with page.expect_download() as info:
                page.get_by_role("link", name="Tải về bản hiện tại").click()
            assert Path(info.value.path()).read_bytes() == scan
            page.get_by_role("link", name=re.compile("^Thông báo")).click()
            expect(
                page.get_by_role("link", name=re.compile("đã số hoá giấy tờ của bạn"))
            ).to_be_visible()
            citizen.check("notifications")
            page.get_by_role("link", name=re.compile("^Yêu cầu chia sẻ")).first.click()
            page.get_by_role("link", name=re.compile("Xem và quyết định")).click()
            expect(page.locator(".badge-digitised").first).to_be_visible()
            page.get_by_role("button", name="Từ chối").click()
            page.wait_for_url(re.compile(r".*\?done=denied$"))
            expect(page.get_by_text("Đã từ chối", exact=True)).to_be_visible()
            citizen.check("consent-refused")
