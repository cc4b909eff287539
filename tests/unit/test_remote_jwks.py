"""RemoteKeySource against a small local provider: discovery, rotation, rate limit, outages."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from common.clock import FixedClock
from sso.errors import InvalidToken
from sso.jwks import KeysUnavailable, RemoteKeySource
from sso.tokens import AccessTokenValidator

NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@dataclass
class Provider:
    """What the local provider serves; tests change it between calls."""

    issuer: str = ""
    announced_issuer: str | None = None
    keys: list[Any] = field(default_factory=list)
    status: int = 200
    hits: Counter[str] = field(default_factory=Counter)

    def publish(self, *keys: RSAKey | ECKey) -> None:
        self.keys = [k.as_dict(private=False) for k in keys]


@dataclass
class Server:
    provider: Provider
    port: int

    @property
    def issuer(self) -> str:
        return self.provider.issuer


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            provider.hits[self.path] += 1
            if provider.status != 200:
                self._send(provider.status, {"error": "unavailable"})
            elif self.path == "/realms/test/.well-known/openid-configuration":
                issuer = provider.announced_issuer or provider.issuer
                self._send(200, {"issuer": issuer, "jwks_uri": provider.issuer + "/certs"})
            elif self.path == "/realms/test/certs":
                self._send(200, {"keys": provider.keys})
            else:
                self._send(404, {})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    provider = Provider()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    port = httpd.server_address[1]
    provider.issuer = f"http://127.0.0.1:{port}/realms/test"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield Server(provider, port)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2) as client:
        yield client


def jwks_hits(server: Server) -> int:
    return server.provider.hits["/realms/test/certs"]


def kids(source: RemoteKeySource, kid: str | None = None) -> set[str]:
    return {str(k.kid) for k in source.key_set(kid).keys}


def test_only_public_signing_keys_of_allowed_types_are_kept(
    server: Server, http: httpx.Client
) -> None:
    signing = rsa_key("rsa-sig")
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec-no-use"})
    server.provider.keys = [
        signing.as_dict(private=False),
        ec.as_dict(private=False),
        dict(rsa_key("rsa-enc").as_dict(private=False), use="enc", alg="RSA-OAEP"),
        dict(rsa_key("rsa-encrypt-ops").as_dict(private=False), key_ops=["encrypt"]),
        OctKey.generate_key(256, parameters={"kid": "oct", "use": "sig"}).as_dict(),
        rsa_key("rsa-private").as_dict(private=True),
        {"kty": "RSA", "kid": "broken", "n": "AQAB"},
        "not a key",
    ]
    source = RemoteKeySource(server.issuer, http)
    assert kids(source) == {"rsa-sig", "ec-no-use"}


def test_an_unknown_kid_picks_up_a_rotation(server: Server, http: httpx.Client) -> None:
    old, new = rsa_key("k1"), rsa_key("k2")
    server.provider.publish(old)
    clock = FakeMonotonic()
    source = RemoteKeySource(server.issuer, http, min_refresh_interval=10, monotonic=clock)
    assert kids(source, "k1") == {"k1"}

    server.provider.publish(old, new)
    clock.now += 11
    assert kids(source, "k2") == {"k1", "k2"}
    assert jwks_hits(server) == 2
    assert server.provider.hits["/realms/test/.well-known/openid-configuration"] == 1

    # The rotated key verifies tokens end to end through the validator.
    validator = AccessTokenValidator(
        issuer=server.issuer,
        audience="kho-api",
        keys=source,
        clock=FixedClock(NOW),
        algorithms=["RS256"],
        required_type=None,
    )
    claims = {
        "iss": server.issuer,
        "aud": "kho-api",
        "sub": "citizen",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 300,
    }
    token = jwt.encode({"alg": "RS256", "kid": "k2", "typ": "JWT"}, claims, new)
    assert validator.validate(token).subject == "citizen"


def test_random_kids_cannot_hammer_the_provider(server: Server, http: httpx.Client) -> None:
    server.provider.publish(rsa_key("k1"))
    clock = FakeMonotonic()
    source = RemoteKeySource(server.issuer, http, min_refresh_interval=10, monotonic=clock)
    source.key_set("k1")
    for second in range(30):
        clock.now = 1000.0 + second * 0.5  # 15 s of tokens with made-up kids
        for _ in range(20):
            assert kids(source, secrets.token_hex(8)) == {"k1"}
    # One fetch at start, then at most one per 10 s interval.
    assert jwks_hits(server) == 2


def test_keys_are_cached_until_the_ttl(server: Server, http: httpx.Client) -> None:
    server.provider.publish(rsa_key("k1"))
    clock = FakeMonotonic()
    source = RemoteKeySource(
        server.issuer, http, ttl_seconds=300, min_refresh_interval=10, monotonic=clock
    )
    for _ in range(50):
        source.key_set("k1")
    assert jwks_hits(server) == 1
    server.provider.publish(rsa_key("k9"))
    clock.now += 301
    assert kids(source, "k9") == {"k9"}
    assert jwks_hits(server) == 2


@pytest.mark.parametrize(
    "announced",
    ["https://impostor.example/realms/test", "{issuer}/", "{issuer}/../test"],
)
def test_a_discovery_document_for_another_issuer_is_refused(
    server: Server, http: httpx.Client, announced: str
) -> None:
    server.provider.publish(rsa_key("k1"))
    server.provider.announced_issuer = announced.format(issuer=server.issuer)
    source = RemoteKeySource(server.issuer, http)
    with pytest.raises(KeysUnavailable):
        source.key_set("k1")
    assert jwks_hits(server) == 0


def test_an_outage_with_a_warm_cache_keeps_serving_the_cached_keys(
    server: Server, http: httpx.Client
) -> None:
    server.provider.publish(rsa_key("k1"))
    clock = FakeMonotonic()
    source = RemoteKeySource(
        server.issuer, http, ttl_seconds=60, min_refresh_interval=10, monotonic=clock
    )
    assert kids(source, "k1") == {"k1"}

    server.provider.status = 503
    clock.now += 61
    assert kids(source, "k1") == {"k1"}  # stale but served
    assert kids(source, "unknown") == {"k1"}  # the failed attempt is rate limited too
    failed = jwks_hits(server)

    clock.now += 5
    source.key_set("unknown")
    assert jwks_hits(server) == failed  # no new request inside the interval

    server.provider.status = 200
    server.provider.publish(rsa_key("k2"))
    clock.now += 10
    assert kids(source, "k2") == {"k2"}


def test_an_empty_or_unusable_key_set_does_not_replace_working_keys(
    server: Server, http: httpx.Client
) -> None:
    server.provider.publish(rsa_key("k1"))
    clock = FakeMonotonic()
    source = RemoteKeySource(server.issuer, http, monotonic=clock)
    source.key_set()
    server.provider.keys = [{"kty": "oct", "k": "c2VjcmV0", "kid": "k2"}]
    clock.now += 11
    assert kids(source, "k2") == {"k1"}


def test_an_outage_with_a_cold_cache_is_a_503(server: Server, http: httpx.Client) -> None:
    server.provider.status = 503
    source = RemoteKeySource(server.issuer, http)
    with pytest.raises(KeysUnavailable) as raised:
        source.key_set("k1")
    assert raised.value.code == "identity_provider_unavailable"
    assert raised.value.status == 503
    # Not an InvalidToken: the client is not told to sign in again because of an outage.
    assert not isinstance(raised.value, InvalidToken)


def test_an_unreachable_provider_with_a_cold_cache_is_a_503() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = RemoteKeySource(f"http://127.0.0.1:{port}/realms/test", timeout_seconds=1)
    try:
        with pytest.raises(KeysUnavailable):
            source.key_set("k1")
    finally:
        source.close()


def test_concurrent_first_use_fetches_once(server: Server, http: httpx.Client) -> None:
    server.provider.publish(rsa_key("k1"))
    source = RemoteKeySource(server.issuer, http)
    barrier = threading.Barrier(16)
    results: list[set[str]] = []

    def worker() -> None:
        barrier.wait()
        results.append(kids(source, "k1"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [{"k1"}] * 16
    assert jwks_hits(server) == 1
