"""A browser without a browser: follows redirects across Kho (in-process) and real servers
(Keycloak), keeps cookies per host itself (Keycloak marks its cookies Secure even on plain
loopback HTTP, which httpx would then never send back), and fills login forms."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from fastapi.testclient import TestClient

_FORM = re.compile(r"<form[^>]*action=\"([^\"]+)\"", re.IGNORECASE)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


@dataclass
class Browser:
    kho: TestClient
    kho_origin: str
    stop_at: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    cookies: dict[str, dict[str, str]] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)

    def _send(self, method: str, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        parts = urlsplit(url)
        host = parts.netloc
        jar = self.cookies.setdefault(host, {})
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}
        if url.startswith(self.kho_origin):
            path = url[len(self.kho_origin) :] or "/"
            self.kho.cookies.clear()
            response: httpx.Response = self.kho.request(
                method, path, data=data, headers=headers, follow_redirects=False
            )
        else:
            response = self.http.request(method, url, data=data, headers=headers)
        for value in response.headers.get_list("set-cookie"):
            cookie = SimpleCookie()
            cookie.load(value)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    jar.pop(name, None)
                else:
                    jar[name] = morsel.value
        self.history.append(f"{method} {url} -> {response.status_code}")
        return response

    def go(
        self, url: str, method: str = "GET", data: dict[str, str] | None = None
    ) -> tuple[str, httpx.Response]:
        """Follow redirects until a page (non-3xx) or a URL starting with ``stop_at``."""
        for _ in range(20):
            if url.startswith(self.stop_at):
                return url, httpx.Response(200)
            response = self._send(method, url, data)
            if response.status_code in (301, 302, 303, 307):
                url = urljoin(url, response.headers["location"])
                method, data = "GET", None
                continue
            return url, response
        raise AssertionError("redirect loop: " + " | ".join(self.history))

    def submit_login(
        self, page_url: str, page: httpx.Response, username: str, password: str
    ) -> str:
        match = _FORM.search(page.text)
        assert match, page.text[:500]
        action = urljoin(page_url, html.unescape(match.group(1)))
        final, response = self.go(action, "POST", {"username": username, "password": password})
        assert final.startswith(self.stop_at), (final, response.status_code, response.text[:300])
        return final


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def authorize_url(origin: str, **params: Any) -> str:
    return (
        origin
        + "/oauth2/authorize?"
        + urlencode({k: v for k, v in params.items() if v is not None})
    )
