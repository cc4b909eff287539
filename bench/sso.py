"""Sign-on throughput: Kho's OpenID provider against Keycloak, side by side, in one run.

    python -m bench.sso [--seconds 10] [--concurrency 4] [--rounds 5] [--validations 20000]

Real servers only, all on 127.0.0.1: Kho runs as ``kho serve`` child processes (each with a
fresh PostgreSQL database on the test server), Keycloak is the test server started by
``scripts/services.sh``. Three targets:

* client-credentials grants per second (Kho / Keycloak >= 1.0): N worker threads, each with its
  own keep-alive ``httpx.Client``, post to the token endpoint for a fixed time; 200s are counted,
  anything else is an error (counted and printed).
* browser-less authorization-code logins per second (Kho / Keycloak >= 1.0): every login is a
  fresh cookie jar, so it is a full login including the upstream step; two comparisons, see the
  notes the bench prints.
* access-token validations per second on one core (>= 10,000/s): Kho's
  ``sso.tokens.AccessTokenValidator`` on an access token from Kho's provider, in-process, one
  thread; joserfc's own ES256 verification of the same token for reference.

Cases of a comparison run interleaved (A B, B A, A B, ...) over ``--rounds`` rounds of
``--seconds / --rounds`` each, so drift in the machine's state falls on both sides alike.
Keycloak's bench realm (made with Kho's own ``KeycloakProvisioner``) and bench client are deleted
at the end, as are Kho's databases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jws, jwt
from joserfc.jwk import KeySet
from joserfc.util import urlsafe_b64decode

from sso.keycloak import AGENCY_DEMO_CLIENT, IDP_ALIAS, PORTAL_CLIENT, KeycloakProvisioner
from sso.service import ClientRegistration
from tests.kho_server import (
    HttpBrowser,
    KhoServer,
    cookieless_client,
    parse_forms,
    pkce_pair,
    query_of,
    running_kho,
)
from tests.services import setting

CITIZEN = "019090001234"  # a sample citizen of the simulator, and a user of `national-eid`
PASSWORD = "Test@12345"
CALLBACK = "http://127.0.0.1:9/cb"  # never connected to: a login stops at this redirect
EID_REALM = "national-eid"
EID_CLIENT_ID = "kho"  # the national-eid realm's client for Kho (scripts/keycloak)
EID_CLIENT_SECRET = "kho-national-eid-secret"
KHO_PORTAL = "bench-portal"
KHO_AGENCY = "bench-agency"
MAX_PAGES = 4  # forms a login may pass through (the upstream login, maybe one more)

Op = Callable[[httpx.Client], None]
# The message on Keycloak's error pages.
_INSTRUCTION = re.compile(r'class="instruction">([^<]+)<')


def _require(name: str) -> str:
    value = setting(name)
    if not value:
        sys.exit(f"{name} is not set: start the test servers (scripts/services.sh start)")
    return value


# --- Load ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    """One case's counts over all its rounds."""

    label: str
    ok: int = 0
    elapsed: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    round_rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:160]}"


def hammer(op: Op, *, seconds: float, concurrency: int, tally: Tally | None = None) -> float:
    """Run ``op`` from ``concurrency`` threads for ``seconds``; returns the successes per second
    of this run and adds its counts to ``tally``."""
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    ok = 0

    def worker() -> None:
        nonlocal ok
        done = 0
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        with cookieless_client(timeout=30) as client:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    op(client)
                except Exception as exc:  # noqa: BLE001 - every failure is counted, not fatal
                    errors[_describe(exc)] += 1
                    time.sleep(0.01)  # a failing server is not hammered in a tight loop
                    continue
                latencies.append(time.perf_counter() - started)
                done += 1
        with lock:
            ok += done
            if tally is not None:
                tally.ok += done
                tally.errors.update(errors)
                tally.latencies.extend(latencies)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    elapsed = time.perf_counter() - started
    rate = ok / elapsed
    if tally is not None:
        tally.elapsed += elapsed
        tally.round_rates.append(rate)
    return rate


def compare(
    cases: list[tuple[str, Op]], *, seconds: float, rounds: int, concurrency: int, title: str
) -> list[Tally]:
    """Each case once sequentially (a failure there stops the bench with its message), a short
    concurrent warm-up, then ``rounds`` interleaved rounds."""
    tallies = [Tally(label) for label, _ in cases]
    for label, op in cases:
        with cookieless_client(timeout=30) as client:
            try:
                op(client)
            except Exception as exc:
                raise SystemExit(f"{title}: {label}: the first attempt failed: {exc}") from exc
        hammer(op, seconds=min(1.0, seconds / rounds), concurrency=concurrency)
    order = list(range(len(cases)))
    for n in range(rounds):
        for index in order if n % 2 == 0 else list(reversed(order)):
            label, op = cases[index]
            rate = hammer(
                op, seconds=seconds / rounds, concurrency=concurrency, tally=tallies[index]
            )
            print(f"  {title}: round {n + 1}/{rounds}: {label}: {rate:.1f}/s", file=sys.stderr)
    return tallies


def table(title: str, tallies: list[Tally], unit: str, baseline: int) -> str:
    base = tallies[baseline]
    lines = [
        f"### {title}",
        "",
        f"| case | {unit} | errors | {unit}/s | median round {unit}/s | p50 ms | p95 ms | "
        f"vs {base.label.split(' ')[0]} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in tallies:
        lines.append(
            f"| {t.label} | {t.ok} | {sum(t.errors.values())} | {t.rate:.1f} | "
            f"{statistics.median(t.round_rates):.1f} | {t.percentile(0.5) * 1000:.1f} | "
            f"{t.percentile(0.95) * 1000:.1f} | {t.rate / base.rate if base.rate else 0:.2f}× |"
        )
    for t in tallies:
        for error, count in t.errors.most_common(3):
            lines.append(f"\n- {t.label}: {count} × {error}")
    return "\n".join(lines) + "\n"


# --- Operations ----------------------------------------------------------------------------------


def client_credentials(token_url: str, client_id: str, secret: str, scope: str | None) -> Op:
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    auth = httpx.BasicAuth(client_id, secret)

    def op(http: httpx.Client) -> None:
        response = http.post(token_url, data=form, auth=auth)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:120]}")
        if "access_token" not in response.json():
            raise RuntimeError("no access_token")

    return op


@dataclass
class PageLog:
    """Forms other than the expected login ones that logins passed through (e.g. Keycloak's
    first-broker-login "review profile"), so the notes can say so."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    extra: Counter[str] = field(default_factory=Counter)

    def add(self, what: str) -> None:
        with self.lock:
            self.extra[what] += 1


PAGES = PageLog()


def _fill(form_action: str, has_password: bool) -> dict[str, str]:
    if has_password:
        return {"username": CITIZEN, "password": PASSWORD}
    if "/dev/eid/authorize" in form_action:
        return {"personal_id": CITIZEN}
    PAGES.add(form_action.split("?", maxsplit=1)[0])
    return {}


def code_login(
    authorization_endpoint: str, token_endpoint: str, client_id: str, **extra: str
) -> Op:
    """A full authorization-code login with PKCE in a fresh cookie jar, to the token response."""

    def op(http: httpx.Client) -> None:
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        start = (
            authorization_endpoint
            + "?"
            + urlencode(
                {
                    "client_id": client_id,
                    "response_type": "code",
                    "scope": "openid",
                    "redirect_uri": CALLBACK,
                    "state": state,
                    "nonce": nonce,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                    **extra,
                }
            )
        )
        browser = HttpBrowser(http=http)
        url, page = browser.go(start, stop_at=CALLBACK)
        for _ in range(MAX_PAGES):
            if page is None:
                break
            forms = parse_forms(page.text)
            if page.status_code != 200 or not forms:
                said = _INSTRUCTION.search(page.text)
                raise RuntimeError(
                    f"page {url.split('?', maxsplit=1)[0]} ({page.status_code})"
                    + (f": {said.group(1).strip()}" if said else "")
                )
            form = forms[0]
            url, page = browser.submit(
                url, form, _fill(form.action, form.has_password), stop_at=CALLBACK
            )
        if page is not None:
            raise RuntimeError(f"too many pages: {browser.history}")
        got = query_of(url)
        if got.get("state") != state or "code" not in got:
            raise RuntimeError(f"bad callback: {url[:200]}")
        response = http.post(
            token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": got["code"],
                "redirect_uri": CALLBACK,
                "client_id": client_id,
                "code_verifier": verifier,
            },
        )
        if response.status_code != 200 or "id_token" not in response.json():
            raise RuntimeError(f"token HTTP {response.status_code}: {response.text[:120]}")

    return op


# --- Servers -------------------------------------------------------------------------------------


def _register_portal(kho: KhoServer) -> None:
    kho.register_client(
        ClientRegistration(
            client_id=KHO_PORTAL,
            name="Bench portal",
            kind="portal",
            token_endpoint_auth_method="none",
            redirect_uris=(CALLBACK,),
            grant_types=("authorization_code", "refresh_token"),
            scopes=("openid", "profile", "personal_id"),
        )
    )


@dataclass
class KeycloakSide:
    url: str
    bench_realm: str
    agency_secret: str
    eid_bench_client: str
    credential: str  # how national-eid stores the citizen's password


@contextmanager
def keycloak_side(url: str, admin_user: str, admin_password: str) -> Iterator[KeycloakSide]:
    """A bench realm provisioned by Kho's own ``KeycloakProvisioner`` (brokering to
    ``national-eid``, the portal and the demo agency client), and a public bench client in
    ``national-eid`` for Keycloak's own password login. Both are deleted afterwards."""
    from keycloak import KeycloakAdmin

    realm = f"kho-bench-{secrets.token_hex(4)}"
    eid_client = f"kho-bench-{secrets.token_hex(4)}"
    provisioner = KeycloakProvisioner(
        url,
        admin_user,
        admin_password,
        realm=realm,
        eid_discovery_url=f"{url}/realms/{EID_REALM}/.well-known/openid-configuration",
        eid_client_id=EID_CLIENT_ID,
        eid_client_secret=EID_CLIENT_SECRET,
        portal_redirect_uris=[CALLBACK],
    )
    admin = KeycloakAdmin(
        server_url=url,
        username=admin_user,
        password=admin_password,
        realm_name="master",
        user_realm_name="master",
    )
    eid_client_id: str | None = None
    try:
        provisioner.provision()
        # With brute-force detection on (as provisioned), Keycloak refuses a share of concurrent
        # logins of the one bench citizen at the broker endpoint ("Account is disabled, contact
        # your administrator.", HTTP 400) although no login fails; off, it refuses none. Off is
        # the setting that favours Keycloak here.
        admin.update_realm(realm, {"bruteForceProtected": False})
        admin.change_current_realm(realm)
        agency = admin.get_client_id(AGENCY_DEMO_CLIENT)
        assert agency is not None, "the provisioner made no agency demo client"
        secret = str(admin.get_client_secrets(agency)["value"])
        admin.change_current_realm(EID_REALM)
        eid_client_id = admin.create_client(
            {
                "clientId": eid_client,
                "name": "Kho bench (deleted after the run)",
                "enabled": True,
                "protocol": "openid-connect",
                "publicClient": True,
                "standardFlowEnabled": True,
                "directAccessGrantsEnabled": False,
                "redirectUris": [CALLBACK],
                "attributes": {"pkce.code.challenge.method": "S256"},
            }
        )
        credential = "unknown"
        users = admin.get_users({"username": CITIZEN, "exact": "true"})
        if users:
            for cred in admin.get_credentials(users[0]["id"]):
                if cred.get("type") == "password":
                    data = json.loads(cred.get("credentialData") or "{}")
                    credential = (
                        f"{data.get('algorithm')}, {data.get('hashIterations')} iteration(s)"
                    )
        yield KeycloakSide(url, realm, secret, eid_client, credential)
    finally:
        admin.change_current_realm(EID_REALM)
        if eid_client_id is not None:
            admin.delete_client(eid_client_id)
        admin.change_current_realm("master")
        try:
            admin.delete_realm(realm)
        except Exception as exc:  # noqa: BLE001 - the realm may not exist if provisioning failed
            print(f"bench realm {realm} not deleted: {exc}", file=sys.stderr)


# --- Validations ---------------------------------------------------------------------------------


def validations(
    kho: KhoServer, token: str, iterations: int, rounds: int
) -> list[tuple[str, float, float]]:
    """Validations per second on one thread, interleaved rounds: (case, median, best round).

    Other processes on the machine can only slow a single-threaded loop down, so the best round
    is the closest to what one core does (``timeit``'s argument); the median is shown too."""
    validator = kho.container.tokens
    claims = validator.validate(token)
    assert claims.subject == KHO_AGENCY, claims
    kid = str(jws.extract_compact(token.encode()).headers()["kid"])
    key_set: KeySet = kho.container.signing_keys.key_set(kid)
    key = key_set.get_by_kid(kid)

    def kho_validate() -> None:
        validator.validate(token)

    def joserfc_jwt() -> None:
        jwt.decode(token, key_set, algorithms=["ES256"])

    def joserfc_jws() -> None:
        jws.deserialize_compact(token, key, algorithms=["ES256"])

    signing_input, _, signature = token.rpartition(".")
    raw = urlsafe_b64decode(signature.encode())
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = key.get_op_key("verify")
    assert isinstance(public, ec.EllipticCurvePublicKey)
    message = signing_input.encode()

    def openssl_verify() -> None:
        public.verify(der, message, ec.ECDSA(hashes.SHA256()))

    cases: list[tuple[str, Callable[[], None]]] = [
        ("Kho AccessTokenValidator.validate (signature + iss/aud/exp/iat/sub/typ)", kho_validate),
        ("joserfc jwt.decode (ES256 verify + JSON claims, no claim checks)", joserfc_jwt),
        ("joserfc jws.deserialize_compact (raw ES256 verify)", joserfc_jws),
        ("cryptography ECDSA P-256 verify only (the floor: no parsing at all)", openssl_verify),
    ]
    per_round = max(1, iterations // rounds)
    rates: dict[str, list[float]] = {label: [] for label, _ in cases}
    for label, fn in cases:  # warm-up
        for _ in range(min(500, per_round)):
            fn()
        del label
    for n in range(rounds):
        for label, fn in cases if n % 2 == 0 else list(reversed(cases)):
            started = time.perf_counter()
            for _ in range(per_round):
                fn()
            rates[label].append(per_round / (time.perf_counter() - started))
    return [(label, statistics.median(rates[label]), max(rates[label])) for label, _ in cases]


# --- Main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per case")
    parser.add_argument("--concurrency", type=int, default=4, help="worker threads")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--validations", type=int, default=20000, help="iterations per case")
    parser.add_argument(
        "--kho-workers", type=int, default=os.cpu_count() or 1, help="Kho API processes"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or not 1 <= args.concurrency <= 32 or args.rounds < 1:
        parser.error("--seconds > 0, 1 <= --concurrency <= 32, --rounds >= 1")

    kc_url = _require("KHO_TEST_KEYCLOAK_URL").rstrip("/")
    kc_admin = _require("KHO_TEST_KEYCLOAK_ADMIN")
    kc_password = _require("KHO_TEST_KEYCLOAK_ADMIN_PASSWORD")
    _require("KHO_TEST_DATABASE_URL")
    _require("KHO_TEST_PG_ADMIN_URL")
    for name, value in (("Keycloak", kc_url),):
        if not value.startswith(("http://127.0.0.1", "http://localhost")):
            sys.exit(f"{name} is not on loopback ({value}); this bench only loads 127.0.0.1")

    workdir = Path(tempfile.mkdtemp(prefix="kho-bench-sso-"))
    common = dict(seconds=args.seconds, rounds=args.rounds, concurrency=args.concurrency)
    try:
        with ExitStack() as stack:
            print("starting two Kho servers and the Keycloak bench realm ...", file=sys.stderr)
            # Kho with the development e-ID simulator upstream (in-process in the server).
            # Kho runs one API process per core, as deployed (Keycloak uses every core too).
            sim = stack.enter_context(running_kho(workdir, postgres=True, workers=args.kho_workers))
            # Kho with the real `national-eid` Keycloak realm upstream, as in production.
            fed = stack.enter_context(
                running_kho(
                    workdir,
                    postgres=True,
                    workers=args.kho_workers,
                    eid_simulator=False,
                    eid_discovery_url=f"{kc_url}/realms/{EID_REALM}/.well-known/openid-configuration",
                    eid_client_id=EID_CLIENT_ID,
                    eid_client_secret=EID_CLIENT_SECRET,
                )
            )
            kc = stack.enter_context(keycloak_side(kc_url, kc_admin, kc_password))
            agency_secret = sim.register_client(
                ClientRegistration(
                    client_id=KHO_AGENCY,
                    name="Bench agency",
                    kind="agency",
                    token_endpoint_auth_method="client_secret_basic",
                    grant_types=("client_credentials",),
                    scopes=("kho:agency",),
                )
            )
            assert agency_secret
            _register_portal(sim)
            _register_portal(fed)
            kc_bench = f"{kc_url}/realms/{kc.bench_realm}/protocol/openid-connect"
            kc_eid = f"{kc_url}/realms/{EID_REALM}/protocol/openid-connect"

            print(_preamble(args, kc), end="\n\n")

            cc = compare(
                [
                    (
                        "Kho (client_secret_basic)",
                        client_credentials(
                            sim.url + "/oauth2/token", KHO_AGENCY, agency_secret, "kho:agency"
                        ),
                    ),
                    (
                        "Keycloak (client-secret, Basic)",
                        client_credentials(
                            kc_bench + "/token", AGENCY_DEMO_CLIENT, kc.agency_secret, None
                        ),
                    ),
                ],
                title="client credentials",
                **common,
            )
            federated = compare(
                [
                    (
                        "Kho → national-eid",
                        code_login(
                            fed.url + "/oauth2/authorize", fed.url + "/oauth2/token", KHO_PORTAL
                        ),
                    ),
                    (
                        "Keycloak → national-eid",
                        code_login(
                            kc_bench + "/auth",
                            kc_bench + "/token",
                            PORTAL_CLIENT,
                            kc_idp_hint=IDP_ALIAS,
                        ),
                    ),
                ],
                title="brokered login",
                **common,
            )
            single = compare(
                [
                    (
                        "Kho with e-ID simulator",
                        code_login(
                            sim.url + "/oauth2/authorize", sim.url + "/oauth2/token", KHO_PORTAL
                        ),
                    ),
                    (
                        "Keycloak own password login",
                        code_login(kc_eid + "/auth", kc_eid + "/token", kc.eid_bench_client),
                    ),
                ],
                title="one-provider login",
                **common,
            )
            with httpx.Client(timeout=30) as http:
                response = http.post(
                    sim.url + "/oauth2/token",
                    data={"grant_type": "client_credentials", "scope": "kho:agency"},
                    auth=(KHO_AGENCY, agency_secret),
                )
                response.raise_for_status()
                token = str(response.json()["access_token"])
            rates = validations(sim, token, args.validations, max(10, args.rounds))

            print(table("Client-credentials grants", cc, "grants", 1))
            print(
                table(
                    "Full login through the upstream e-ID (the `national-eid` realm's password "
                    "form), both sides brokering",
                    federated,
                    "logins",
                    1,
                )
            )
            print(
                table(
                    "Login at one provider: Kho with its e-ID simulator vs Keycloak's own "
                    "password login",
                    single,
                    "logins",
                    1,
                )
            )
            print("### Access-token validations, one thread (in-process)\n")
            print("| case | median round /s | best round /s | µs each (best) |")
            print("|---|---:|---:|---:|")
            for label, median, best in rates:
                print(f"| {label} | {median:,.0f} | {best:,.0f} | {1e6 / best:.1f} |")
            print()
            if PAGES.extra:
                print(f"Extra forms submitted during logins: {dict(PAGES.extra)}\n")
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"Load average at the end: {load}.\n")
            print("### Targets\n")
            print(_verdict("client-credentials grants/s, Kho / Keycloak", cc[0].rate / cc[1].rate))
            print(
                _verdict(
                    "full brokered logins/s (same upstream), Kho / Keycloak",
                    federated[0].rate / federated[1].rate,
                )
            )
            print(
                _verdict(
                    "one-provider logins/s, Kho+simulator / Keycloak password login",
                    single[0].rate / single[1].rate,
                )
            )
            _label, median, best = rates[0]
            print(
                f"- access-token validations/s (one core): best round {best:,.0f}, median "
                f"{median:,.0f} (target ≥ 10,000) — best {'MET' if best >= 10_000 else 'NOT MET'}"
                f", median {'MET' if median >= 10_000 else 'NOT MET'}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _verdict(what: str, ratio: float) -> str:
    return f"- {what}: {ratio:.2f} (target ≥ 1.0) — {'MET' if ratio >= 1.0 else 'NOT MET'}"


def _preamble(args: argparse.Namespace, kc: KeycloakSide) -> str:
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"""## Sign-on bench: Kho's provider vs Keycloak

Machine: {platform.machine()}, {cpus} CPU(s), Python {platform.python_version()}. Load average at
the start: {load}. The load generator, both Kho servers and Keycloak share these CPUs.
{args.concurrency} worker threads, each with its own keep-alive httpx.Client; {args.seconds:g} s
measured per case in {args.rounds} interleaved rounds; loopback only.

- **Kho**: `kho serve` (one uvicorn process), a fresh PostgreSQL database on the test server
  (over TCP, committed per request), ES256 tokens; every token issued, client-credentials ones
  included, is written to the database (for revocation and introspection).
- **Keycloak**: the test server (`kc.sh start-dev`, in-memory H2 database, sessions in memory),
  RS256 tokens; by default it stores no session for a client-credentials grant. Bench
  realm `{kc.bench_realm}` made by Kho's `KeycloakProvisioner`, brute-force detection turned off
  (on, Keycloak refuses some concurrent logins of the one bench citizen with "Account is
  disabled"; off favours Keycloak).

What one login is, on each side (every login a fresh cookie jar, so no SSO session helps):

- *Kho → national-eid*: GET Kho `/oauth2/authorize` → 302 to the `national-eid` realm → GET its
  login form → POST user name and password (Keycloak checks it: {kc.credential}) → 302 to
  Kho's `/oauth2/eid/callback`, where Kho exchanges the code at `national-eid`'s token endpoint
  (HTTP, client secret, PKCE) and checks the RS256 ID token, finds the citizen, opens a session
  and issues a code → POST Kho `/oauth2/token` (PKCE) → ES256 ID, access and refresh
  tokens. 5 requests by the browser, 1 by Kho.
- *Keycloak → national-eid*: GET the bench realm's auth endpoint with `kc_idp_hint` → broker
  redirect → the same `national-eid` login form and password check → the realm's broker endpoint,
  where Keycloak exchanges the code at `national-eid` (HTTP, client secret, PKCE), checks the ID
  token, runs the mappers and finds the user → code → POST token (PKCE) → RS256 tokens. 6 requests
  by the browser, 1 by Keycloak. Same upstream, same password check: like with like.
- *Kho with e-ID simulator*: GET Kho `/oauth2/authorize` → 302 → GET the simulator's page → POST
  the citizen's number (no password: a development stand-in) → 302 to the callback, where Kho
  exchanges the code with the simulator *in-process* (an RS256 ID token signed and verified, no
  HTTP) → code → POST token. 5 requests; the upstream step is real code but no network and no
  password hashing.
- *Keycloak own password login*: GET the `national-eid` realm's auth endpoint → login form →
  POST user name and password ({kc.credential}) → code → POST token. 3 requests, no
  upstream. Different work from the Kho case above (no upstream, but a password hash): a
  reference point, not like with like."""


if __name__ == "__main__":
    raise SystemExit(main())
