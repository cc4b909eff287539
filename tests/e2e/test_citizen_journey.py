"""A citizen's whole journey in a real browser, signing in through the `national-eid` Keycloak
realm (standing in for VNeID): upload with a progress bar, an agency's request, preview and a
partial grant, the agency's fetch in the access log, revocation, export, erasure."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

from playwright.sync_api import Browser, Route, expect

from sso.models import WebSession
from storage.db import session_scope
from tests.e2e.conftest import Tab, make_agency, open_tab, pdf_file, png_file, web_kho
from tests.services import require_keycloak

CITIZEN = "019090001234"
PASSWORD = "Test@12345"


def keycloak_login(tab: Tab) -> None:
    page = tab.page
    page.wait_for_url(re.compile(r".*/realms/national-eid/.*"))
    tab.check("vneid-login", axe=False)  # Keycloak's page, not ours
    page.wait_for_selector("#password")
    username = page.locator("#username")
    if username.count() and username.is_editable():
        username.fill(CITIZEN)
    else:  # prompt=login on a live Keycloak session: "Please re-authenticate to continue"
        expect(page.get_by_text("Please re-authenticate to continue")).to_be_visible()
        expect(page.get_by_role("textbox").first).to_have_value(CITIZEN)
    page.fill("#password", PASSWORD)
    page.click("#kc-login")


def test_citizen_journey_through_the_national_eid(
    browser: Browser, axe_source: str, tmp_path: Path
) -> None:
    kc = require_keycloak()
    with (
        web_kho(
            tmp_path,
            eid_simulator=False,
            eid_discovery_url=f"{kc.url}/realms/national-eid/.well-known/openid-configuration",
            eid_client_id="kho",
            eid_client_secret="kho-national-eid-secret",
        ) as kho,
        open_tab(browser, axe_source, "citizen") as tab,
    ):
        page = tab.page
        base = kho.url

        # -- sign in: the pages -> Kho's provider -> the national e-ID (Keycloak) ------------
        response = page.goto(base + "/web/")
        assert response is not None
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert page.get_attribute("html", "lang") == "vi"
        expect(page.get_by_text("MÔI TRƯỜNG PHÁT TRIỂN / DEVELOPMENT")).to_be_visible()
        tab.check("landing")
        page.get_by_role("link", name="Đăng nhập bằng VNeID").click()
        keycloak_login(tab)
        page.wait_for_url(base + "/web/")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Nguyễn Văn An")
        cookie = next(c for c in tab.context.cookies() if c["name"] == "kho_web")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"
        assert cookie["path"] == "/web"
        tab.check("dashboard")

        # -- upload a paper, with the progress bar -----------------------------------------------
        page.get_by_role("link", name="Giấy tờ", exact=True).click()
        tab.check("store-empty")
        cccd = pdf_file(tmp_path / "can-cuoc.pdf", 3_000_000, seed=1)
        page.select_option("#type_code", "cccd")
        page.fill("#title", "Căn cước công dân")
        page.fill("#number", "019090001234")
        page.set_input_files("#file", str(tmp_path / "can-cuoc.pdf"))
        held: list[Route] = []

        def hold(route: Route) -> None:  # keep the upload in flight for the screenshot
            held.append(route)

        page.route(re.compile(r".*/web/documents$"), hold)
        page.get_by_role("button", name="Tải lên", exact=True).click()
        expect(page.locator("#upload-progress-box")).to_be_visible()
        expect(page.locator("#upload-progress")).to_be_visible()
        while not held:
            page.wait_for_timeout(50)
        assert held[0].request.method == "PUT"
        tab.check("upload-progress")
        held[0].continue_()
        page.unroute(re.compile(r".*/web/documents$"))
        page.wait_for_url(re.compile(r".*/web/documents/[0-9a-f-]+\?done=uploaded$"))
        cccd_id = page.url.split("/web/documents/")[1].split("?")[0]
        expect(page.get_by_role("status")).to_contain_text("Đã tải lên")
        tab.check("document")

        # A second, optional paper (an image), to be left out of the grant.
        page.goto(base + "/web/store")
        png_file(tmp_path / "khai-sinh.png", seed=2)
        page.select_option("#type_code", "birth_certificate")
        page.fill("#title", "Giấy khai sinh")
        page.set_input_files("#file", str(tmp_path / "khai-sinh.png"))
        page.get_by_role("button", name="Tải lên", exact=True).click()
        page.wait_for_url(re.compile(r".*\?done=uploaded$"))
        page.goto(base + "/web/store")
        expect(page.locator(".badge-self_declared").first).to_be_visible()
        tab.check("store")

        # -- an agency asks ----------------------------------------------------------------------
        police = make_agency(kho, "CA-TN", "Công an tỉnh Thái Nguyên")
        asked = police.ask(
            CITIZEN,
            [
                {"document_type": "birth_certificate", "required": False},
                {"document_type": "cccd"},
            ],
            access_mode="repeated",
            max_uses=5,
            access_until=(dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).isoformat(),
        )
        page.goto(base + "/web/")
        expect(page.locator(".count").first).to_have_text("1")
        page.get_by_role("link", name=re.compile("Yêu cầu chia sẻ")).first.click()
        tab.check("consent-inbox")
        page.get_by_role("link", name=re.compile("Xem và quyết định")).first.click()
        expect(page.get_by_text("Công an tỉnh Thái Nguyên").first).to_be_visible()
        expect(
            page.locator("dd").filter(has_text=re.compile("^Đăng ký thường trú"))
        ).to_be_visible()
        expect(page.locator("img.thumb")).to_be_visible()  # the image's preview
        expect(page.get_by_text("Nhiều lần, tối đa 5 lần")).to_be_visible()
        tab.check("consent-decision")
        page.get_by_role("checkbox", name="Giấy khai sinh").uncheck()
        page.get_by_role("button", name="Đồng ý chia sẻ giấy tờ đã chọn").click()
        page.wait_for_url(re.compile(r".*\?done=granted$"))
        expect(page.get_by_text("Đã đồng ý", exact=True)).to_be_visible()
        tab.check("consent-granted")

        # -- the agency fetches, the citizen sees it in the log ---------------------------------
        followed = police.follow(asked["id"])
        grant_id = followed["grant"]["id"]
        assert [d["document_id"] for d in followed["grant"]["documents"]] == [cccd_id]
        fetched = police.fetch(grant_id, cccd_id)
        assert fetched.status_code == 200
        assert fetched.content == cccd
        page.get_by_role("link", name="Nhật ký truy cập").click()
        expect(page.get_by_text("Hợp lệ", exact=True)).to_be_visible()
        row = page.locator("tbody tr").filter(has_text="Tải giấy tờ")
        expect(row).to_contain_text("Công an tỉnh Thái Nguyên")
        expect(row).to_contain_text("Căn cước công dân")
        expect(row).to_contain_text("Giải quyết thủ tục đăng ký thường trú")
        tab.check("access-log")

        # -- revoke: the next fetch is refused ----------------------------------------------------
        page.goto(base + f"/web/consents/{asked['id']}")
        page.get_by_role("button", name="Thu hồi sự đồng ý").click()
        page.wait_for_url(re.compile(r".*\?done=revoked$"))
        expect(page.get_by_text("Đã thu hồi", exact=True)).to_be_visible()
        tab.check("consent-revoked")
        refused = police.fetch(grant_id, cccd_id)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "grant_revoked"
        page.goto(base + "/web/access-log")
        expect(page.locator("tbody tr").filter(has_text="Bị từ chối").first).to_be_visible()

        # -- the other pages -----------------------------------------------------------------------
        for name, label in (
            ("Uỷ quyền", "delegations"),
            ("Thông báo", "notifications"),
            ("Tài khoản", "account"),
        ):
            page.get_by_role("link", name=re.compile("^" + name)).first.click()
            tab.check(label)
        page.goto(base + "/web/?lang=en")
        assert page.get_attribute("html", "lang") == "en"
        expect(page.get_by_role("link", name="Papers", exact=True)).to_be_visible()
        tab.check("dashboard-english")
        page.goto(base + "/web/?lang=vi")

        # -- export everything ---------------------------------------------------------------------
        page.goto(base + "/web/account")
        with page.expect_download() as info:
            page.get_by_role("button", name="Tải về tệp ZIP").click()
        download = info.value
        assert download.suggested_filename == "kho-export.zip"
        archive = zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes()))
        names = archive.namelist()
        assert any(n.endswith(".pdf") for n in names), names
        assert any(n.endswith(".png") for n in names), names

        # -- erase: the confirmation word, then a fresh sign-in (prompt=login, max_age=0) ---------
        page.fill("#confirm", "xoa")
        page.get_by_role("button", name="Xoá vĩnh viễn tài khoản của tôi").click()
        expect(page.locator("#confirm-error")).to_be_visible()
        described = page.get_attribute("#confirm", "aria-describedby") or ""
        assert "confirm-error" in described
        tab.check("erase-wrong-word")
        with session_scope(kho.container.sessions) as session:
            for row_ in session.query(WebSession).filter(WebSession.account_id.is_not(None)):
                row_.auth_time = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
        page.fill("#confirm", "XOÁ")
        page.get_by_role("button", name="Xoá vĩnh viễn tài khoản của tôi").click()
        expect(page.get_by_role("link", name="Đăng nhập lại bằng VNeID")).to_be_visible()
        tab.check("erase-needs-fresh-sign-in")
        page.get_by_role("link", name="Đăng nhập lại bằng VNeID").click()
        keycloak_login(tab)  # prompt=login: the national e-ID asks again
        page.wait_for_url(re.compile(r".*/web/account(#erase)?$"))
        page.fill("#confirm", "XOÁ")
        page.get_by_role("button", name="Xoá vĩnh viễn tài khoản của tôi").click()
        page.wait_for_url(re.compile(r".*/web/\?state=erased$"))
        expect(page.get_by_role("status")).to_contain_text("đã được xoá")
        expect(page.get_by_role("link", name="Đăng nhập bằng VNeID")).to_be_visible()
        tab.check("erased")
        # The agency's copy of the grant leads nowhere now either.
        assert police.fetch(grant_id, cccd_id).status_code in (403, 404, 410)
