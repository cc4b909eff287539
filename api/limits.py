"""Resource limits at the edge of the app: requests in flight, bodies, rate limits (pure ASGI).

:class:`LimitsMiddleware` runs inside ``RequestContextMiddleware`` (so refusals carry a request
id, are logged and counted) and before any route:

* **Requests in flight.** With ``max_concurrency`` set, this process serves at most that many
  HTTP requests at once (one event loop per process, so a plain count); one more is 503
  ``server_busy`` with ``Retry-After: 1``, before the rate limiter so it costs no counter row.
  ``/healthz``, ``/readyz`` and ``/metrics`` are never refused and not counted. uvicorn's own
  ``limit_concurrency`` is only a looser backstop on connections (see ``api.cli``).
* **Rate limits.** Each request is counted against a fixed one-minute window keyed by (principal,
  route class) in the ``rate_limits`` table (``storage.ratelimit``), so every API process sees the
  same counts. The principal is the owner account or the OAuth client of a bearer token that
  *verifies* (the process's token validator; results cached by token digest until the token
  expires), otherwise the client IP address: a forged or expired token only spends the budget of
  the address it comes from, never someone else's. Over the limit: 429 ``too_many_requests``
  with ``Retry-After``. Once a key is refused in a window this process refuses it again without
  asking the database until the window ends (counts only grow within a window, so this is exact).
  If the database does not answer, requests pass (the request itself will then fail with 503).
* **Buffered bodies.** FastAPI reads the whole body of a route that declares a body parameter
  (whatever its content type) before validating it. When the app first asks for the body of
  such a route (the router has matched it by then), the body is read here instead, with a
  counter: more than ``max_json_bytes`` is 413 ``payload_too_large`` (at once when
  ``Content-Length`` says so, otherwise as soon as the count passes the limit), and a JSON body
  nested deeper than ``max_json_depth`` is 422 ``invalid_input``; then the app gets the bytes.
  Routes that stream their body themselves (content uploads, forms with their own limit) are
  left to their own limits.
* **Slow bodies.** Every body must keep arriving: no gap longer than ``body_idle_seconds``, and
  ``body_timeout_seconds + received / body_min_rate`` seconds in all, so a slow but honest upload
  earns time with every byte while a trickle is cut off. Otherwise 408 ``request_timeout``; a
  handler that was streaming the body sees the client as gone. 408 and 413 close the connection.
"""

from __future__ import annotations

import collections
import hashlib
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.container import Container
from api.errors import problem
from common.clock import Clock
from common.errors import KhoError
from common.settings import Settings
from sso.tokens import AccessTokenValidator
from storage.ratelimit import RateLimitStore, RateLimitUnavailable

log = structlog.get_logger("kho.limits")

WINDOW_SECONDS = 60
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
EXEMPT_PREFIXES = ("/web/static/",)
AUTH_PREFIXES = ("/oauth2/", "/dev/eid/", "/web/login", "/web/callback", "/web/logout")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_CACHE_SIZE = 10_000
BLOCKED_CACHE_SIZE = 10_000
FAIL_OPEN_LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class LimitConfig:
    max_json_bytes: int = 1024 * 1024
    max_json_depth: int = 32
    body_timeout_seconds: float = 30.0
    body_idle_seconds: float = 15.0
    body_min_rate: int = 4096  # bytes per second, averaged, after body_timeout_seconds
    rate_limit_enabled: bool = True
    owner_per_minute: int = 600
    client_per_minute: int = 6000
    anonymous_per_minute: int = 300
    max_concurrency: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitConfig:
        return cls(
            max_json_bytes=settings.max_json_bytes,
            max_json_depth=settings.max_json_depth,
            body_timeout_seconds=settings.body_timeout_seconds,
            body_idle_seconds=settings.body_idle_seconds,
            body_min_rate=settings.body_min_rate,
            rate_limit_enabled=settings.is_production
            if settings.rate_limit_enabled is None
            else settings.rate_limit_enabled,
            owner_per_minute=settings.rate_limit_owner_per_minute,
            client_per_minute=settings.rate_limit_client_per_minute,
            anonymous_per_minute=settings.rate_limit_anonymous_per_minute,
            max_concurrency=settings.max_concurrency,
        )


# -- bodies -----------------------------------------------------------------------------------


class BodyTimeout(Exception):
    """The request body did not arrive fast enough."""


class BodyReader:
    """``receive`` with deadlines: an idle limit per wait and an overall time that grows with
    every byte received (``timeout + received / min_rate``). After the last body message it
    passes through untimed (a response waits on ``http.disconnect``)."""

    def __init__(self, receive: Receive, config: LimitConfig) -> None:
        self._receive = receive
        self._config = config
        self._started = time.monotonic()
        self.received = 0
        self.done = False

    async def __call__(self) -> Message:
        if self.done:
            return await self._receive()
        config = self._config
        budget = (
            config.body_timeout_seconds
            + self.received / config.body_min_rate
            - (time.monotonic() - self._started)
        )
        wait = min(budget, config.body_idle_seconds)
        if wait <= 0:
            raise BodyTimeout()
        message: Message | None = None
        with anyio.move_on_after(wait):
            message = await self._receive()
        if message is None:
            raise BodyTimeout()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done = True
        else:
            self.done = True
        return message


_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


def json_too_deep(body: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays and objects more than ``limit`` deep.

    Linear time, no parsing: escaped backslashes and quotes are dropped, then strings, then
    everything but brackets; only the brackets are walked. Invalid JSON may be misjudged, but
    the parser refuses it anyway.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


def _parsed_as_json(content_type: bytes | None) -> bool:
    """FastAPI parses a body as JSON when the type is missing, ``application/json`` or
    ``application/*+json``."""
    if not content_type:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    main, _, sub = media.partition(b"/")
    return main == b"application" and (sub == b"json" or sub.endswith(b"+json"))


def _has_body(scope: Scope) -> bool:
    if _header(scope, b"transfer-encoding") is not None:
        return True
    length = _header(scope, b"content-length")
    return length is not None and length.strip() not in (b"", b"0")


def _declared_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


# -- rate limits ------------------------------------------------------------------------------


def route_class(method: str, path: str) -> str | None:
    """Which budget a request draws on; ``None`` for requests that are never limited."""
    if path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES):
        return None
    if path.startswith(AUTH_PREFIXES):
        return "auth"
    return "read" if method in SAFE_METHODS else "write"


@dataclass(frozen=True)
class Principal:
    kind: str  # "owner", "client" or "ip"
    ident: str


def _bearer(scope: Scope) -> str | None:
    header = _header(scope, b"authorization")
    if not header:
        return None
    scheme, _, token = header.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class PrincipalResolver:
    """Who a request counts against: a verified token's owner or client, else the address.

    Results are cached per process by token digest: a verified token until it expires, a token
    that did not verify for ``NEGATIVE_SECONDS`` (a key rotated in by another process, or a
    slightly early ``iat``, may make a good token fail for a moment)."""

    NEGATIVE_SECONDS = 60.0

    def __init__(self, tokens: AccessTokenValidator, clock: Clock) -> None:
        self._tokens = tokens
        self._clock = clock
        self._cache: collections.OrderedDict[str, tuple[Principal | None, float]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(known, principal): ``known`` with ``None`` for a token that did not verify."""
        key = _digest(token)
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            return False, None
        principal, until = entry
        now = self._clock.now().timestamp()
        if until <= now:
            # Expired: a verified token is now just an expired one; a failure is tried again.
            return principal is not None, None
        return True, principal

    def verify(self, token: str) -> Principal | None:
        """Validate ``token`` (signature, issuer, audience, expiry); blocking."""
        try:
            claims = self._tokens.validate(token)
        except KhoError:
            principal: Principal | None = None
            until = self._clock.now().timestamp() + self.NEGATIVE_SECONDS
        else:
            if claims.client_id is not None and claims.subject == claims.client_id:
                principal = Principal("client", claims.client_id)
            else:
                principal = Principal("owner", claims.subject)
            until = float(claims.expires_at)
        with self._lock:
            self._cache[_digest(token)] = (principal, until)
            while len(self._cache) > TOKEN_CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal


@dataclass(frozen=True)
class Refusal:
    retry_after: int
    limit: int


class RateLimiter:
    def __init__(
        self, config: LimitConfig, store: RateLimitStore, resolver: PrincipalResolver, clock: Clock
    ) -> None:
        self.config = config
        self.store = store
        self.resolver = resolver
        self.clock = clock
        self._blocked: dict[str, float] = {}
        self._blocked_lock = threading.Lock()
        self._last_failure_log = -math.inf

    def limit_for(self, kind: str) -> int:
        config = self.config
        if kind == "owner":
            return config.owner_per_minute
        if kind == "client":
            return config.client_per_minute
        return config.anonymous_per_minute

    async def check(self, scope: Scope) -> Refusal | None:
        budget = route_class(scope["method"], scope["path"])
        if budget is None:
            return None
        principal: Principal | None = None
        token = _bearer(scope)
        if token is not None:
            known, principal = self.resolver.cached(token)
            if not known:
                principal = await anyio.to_thread.run_sync(self.resolver.verify, token)
        if principal is None:
            client = scope.get("client")
            principal = Principal("ip", str(client[0]) if client else "unknown")
        key = f"{principal.kind}:{budget}:{_digest(principal.ident)}"
        limit = self.limit_for(principal.kind)
        now = self.clock.now().timestamp()
        with self._blocked_lock:
            until = self._blocked.get(key)
        if until is not None:
            if until > now:
                return Refusal(max(1, math.ceil(until - now)), limit)
            with self._blocked_lock:
                self._blocked.pop(key, None)
        try:
            hit = await anyio.to_thread.run_sync(self.store.hit, key, now)
        except RateLimitUnavailable:
            self._log_failure()
            return None
        if hit.count <= limit:
            return None
        self._block(key, hit.window_end, now)
        return Refusal(hit.retry_after(now), limit)

    def _block(self, key: str, until: float, now: float) -> None:
        with self._blocked_lock:
            if len(self._blocked) >= BLOCKED_CACHE_SIZE:
                for stale in [k for k, v in self._blocked.items() if v <= now]:
                    del self._blocked[stale]
                if len(self._blocked) >= BLOCKED_CACHE_SIZE:
                    self._blocked.clear()
            self._blocked[key] = until

    def _log_failure(self) -> None:
        moment = time.monotonic()
        if moment - self._last_failure_log >= FAIL_OPEN_LOG_INTERVAL:
            self._last_failure_log = moment
            log.warning("rate_limit_unavailable", action="allowed")


class _Exchange:
    """One request's ``receive`` and ``send`` with its body guarded.

    The first time the app asks for the body, the route is known (the router has put it in the
    scope): a route with a body parameter is one that FastAPI buffers whole, so its body is read
    here, bounded and checked, and handed over in one message; any other route gets the body as
    it comes, under the deadlines. A refusal is sent from here, the app is told the client went
    away, and whatever the app sends afterwards is dropped.
    """

    def __init__(
        self, middleware: LimitsMiddleware, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.middleware = middleware
        self.scope = scope
        self._receive = receive
        self._send = send
        self.reader = BodyReader(receive, middleware.config)
        self.started = False  # the app started its response
        self.answered = False  # this exchange answered; the app's messages are dropped
        self._first = True

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def receive(self) -> Message:
        if self.answered:
            return {"type": "http.disconnect"}
        if self._first:
            self._first = False
            route = self.scope.get("route")
            if getattr(route, "body_field", None) is not None:
                return await self._buffered()
        try:
            return await self.reader()
        except BodyTimeout:
            return await self._refuse(self.middleware.timed_out)

    async def _buffered(self) -> Message:
        config = self.middleware.config
        limit = config.max_json_bytes
        declared = _declared_length(self.scope)
        if declared is not None and declared > limit:
            return await self._refuse(self.middleware.too_large)
        body = bytearray()
        while True:
            try:
                message = await self.reader()
            except BodyTimeout:
                return await self._refuse(self.middleware.timed_out)
            if message["type"] != "http.request":
                return message  # the client went away
            body += message.get("body", b"")
            if len(body) > limit:
                return await self._refuse(self.middleware.too_large)
            if not message.get("more_body", False):
                break
        data = bytes(body)
        del body
        if _parsed_as_json(_header(self.scope, b"content-type")) and json_too_deep(
            data, config.max_json_depth
        ):
            return await self._refuse(self.middleware.too_deep)
        return {"type": "http.request", "body": data, "more_body": False}

    async def _refuse(self, answer: Callable[[Scope, Receive, Send], Awaitable[None]]) -> Message:
        if not self.started and not self.answered:
            self.answered = True
            await answer(self.scope, self._receive, self._send)
        return {"type": "http.disconnect"}


# -- the middleware ---------------------------------------------------------------------------


class LimitsMiddleware:
    """Requests in flight, rate limits, bounded buffered bodies and body deadlines (see the
    module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        container: Container,
        config: LimitConfig | None = None,
        store: RateLimitStore | None = None,
    ) -> None:
        self.app = app
        self.config = config or LimitConfig.from_settings(container.settings)
        self.limiter = RateLimiter(
            self.config,
            store or RateLimitStore(container.engine, window_seconds=WINDOW_SECONDS),
            PrincipalResolver(container.tokens, container.clock),
            container.clock,
        )
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.config.max_concurrency
        if limit is None or scope["path"] in EXEMPT_PATHS:
            await self._serve(scope, receive, send)
            return
        if self.in_flight >= limit:
            await self._refuse_busy(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._serve(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.config.rate_limit_enabled:
            refusal = await self.limiter.check(scope)
            if refusal is not None:
                await self._refuse_rate(scope, receive, send, refusal)
                return
        if not _has_body(scope):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, receive, send)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if not exchange.answered:
                raise
            # The app saw the client as gone and gave up; the refusal is already sent.
            log.info("request_body_refused")

    # refusals

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, **answer: Any) -> None:
        """Answer with a problem (``api.errors.problem`` arguments) without calling the app."""
        await problem(Request(scope), **answer)(scope, receive, send)

    async def _refuse_busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.config.max_concurrency
        await self._refuse(
            scope,
            receive,
            send,
            status=503,
            code="server_busy",
            title_vi="Máy chủ đang bận",
            title_en="Server busy",
            detail_vi=f"Máy chủ đang xử lý {limit} yêu cầu cùng lúc; thử lại sau 1 giây.",
            detail_en=f"The server is handling {limit} requests at once; retry in 1 second.",
            headers={"Retry-After": "1"} | ({"Connection": "close"} if _has_body(scope) else {}),
        )

    async def _refuse_rate(
        self, scope: Scope, receive: Receive, send: Send, refusal: Refusal
    ) -> None:
        await self._refuse(
            scope,
            receive,
            send,
            status=429,
            code="too_many_requests",
            title_vi="Quá nhiều yêu cầu",
            title_en="Too many requests",
            detail_vi=f"Đã vượt quá {refusal.limit} yêu cầu mỗi phút; thử lại sau "
            f"{refusal.retry_after} giây.",
            detail_en=f"More than {refusal.limit} requests a minute; retry in "
            f"{refusal.retry_after} seconds.",
            extra={"retry_after": refusal.retry_after},
            headers={"Retry-After": str(refusal.retry_after)}
            # An unread body would otherwise be received and thrown away.
            | ({"Connection": "close"} if _has_body(scope) else {}),
        )

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.config.max_json_bytes
        await self._refuse(
            scope,
            receive,
            send,
            status=413,
            code="payload_too_large",
            title_vi="Nội dung quá lớn",
            title_en="Payload too large",
            detail_vi=f"Nội dung yêu cầu vượt quá {limit} byte.",
            detail_en=f"The request body is larger than {limit} bytes.",
            extra={"max_bytes": limit},
            headers={"Connection": "close"},
        )

    async def timed_out(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.config
        await self._refuse(
            scope,
            receive,
            send,
            status=408,
            code="request_timeout",
            title_vi="Hết thời gian chờ yêu cầu",
            title_en="Request timeout",
            detail_vi="Nội dung yêu cầu đến quá chậm.",
            detail_en=(
                "The request body arrived too slowly (a gap over "
                f"{config.body_idle_seconds:g} s, or under {config.body_min_rate} bytes/s "
                f"after {config.body_timeout_seconds:g} s)."
            ),
            headers={"Connection": "close"},
        )

    async def too_deep(self, scope: Scope, receive: Receive, send: Send) -> None:
        depth = self.config.max_json_depth
        await self._refuse(
            scope,
            receive,
            send,
            status=422,
            code="invalid_input",
            title_vi="Dữ liệu không hợp lệ",
            title_en="Invalid input",
            detail_vi=f"JSON lồng nhau sâu quá {depth} cấp.",
            detail_en=f"The JSON nests deeper than {depth} levels.",
            extra={"max_depth": depth},
        )
