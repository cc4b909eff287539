"""The API's access-token validation refuses every forgery the security BCP lists."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from common.clock import FixedClock
from sso.errors import InvalidToken
from sso.tokens import AccessTokenValidator, TokenIssuer

NOW = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)
ISSUER = "https://kho.example.vn"


class StaticKeys:
    def __init__(self, key: ECKey) -> None:
        self.key = key

    def key_set(self, kid: str | None = None) -> KeySet:
        return KeySet([ECKey.import_key(self.key.as_dict(private=False))])

    def signing_key(self) -> ECKey:
        return self.key


@pytest.fixture
def setup() -> tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock]:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256", "use": "sig"})
    clock = FixedClock(NOW)
    keys = StaticKeys(key)
    issuer = TokenIssuer(ISSUER, keys, clock)
    validator = AccessTokenValidator(issuer=ISSUER, audience="kho-api", keys=keys, clock=clock)
    return issuer, validator, key, clock


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(NOW.timestamp())
    claims = {"iss": ISSUER, "sub": "s", "aud": "kho-api", "iat": now, "exp": now + 300, "jti": "j"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}."


def test_a_good_token_passes(
    setup: tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock],
) -> None:
    issuer, validator, _key, _clock = setup
    token = issuer.access_token(
        subject="abc", audience="kho-api", client_id="portal", scopes=["openid"], acr="vneid-2"
    )
    claims = validator.validate(token)
    assert claims.subject == "abc"
    assert claims.acr == "vneid-2"
    assert claims.scopes == frozenset({"openid"})


def test_alg_none_is_refused(
    setup: tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock],
) -> None:
    _issuer, validator, _key, _clock = setup
    token = _unsigned({"alg": "none", "kid": "k1", "typ": "at+jwt"}, _claims())
    with pytest.raises(InvalidToken):
        validator.validate(token)


def test_hs256_signed_with_the_public_key_is_refused(
    setup: tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock],
) -> None:
    _issuer, validator, key, _clock = setup
    public_pem = key.as_pem(private=False)
    header = _b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken):
        validator.validate(f"{header}.{body}.{_b64(signature)}")


def test_another_key_with_the_same_kid_is_refused(
    setup: tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock],
) -> None:
    _issuer, validator, _key, _clock = setup
    attacker = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    token = jwt.encode(
        {"alg": "ES256", "kid": "k1", "typ": "at+jwt"}, _claims(), attacker, algorithms=["ES256"]
    )
    with pytest.raises(InvalidToken):
        validator.validate(token)


def test_rs256_with_an_embedded_jwk_or_jku_is_refused(
    setup: tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock],
) -> None:
    _issuer, validator, _key, _clock = setup
    rsa = RSAKey.generate_key(2048)
    for extra in ({"jwk": rsa.as_dict(private=False)}, {"jku": "https://evil.example/jwks"}):
        header = {"alg": "RS256", "kid": "k1", "typ": "at+jwt", **extra}
        token = jwt.encode(header, _claims(), rsa, algorithms=["RS256"])
        with pytest.raises(InvalidToken):
            validator.validate(token)


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.example"},
        {"aud": "another-api"},
        {"aud": None},
        {"exp": int(NOW.timestamp()) - 120},
        {"nbf": int(NOW.timestamp()) + 600},
        {"iat": int(NOW.timestamp()) + 600},
        {"sub": None},
        {"exp": None},
    ],
)
def test_wrong_claims_are_refused(
    setup: tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock], overrides: dict[str, Any]
) -> None:
    _issuer, validator, key, _clock = setup
    token = jwt.encode(
        {"alg": "ES256", "kid": "k1", "typ": "at+jwt"},
        _claims(**overrides),
        key,
        algorithms=["ES256"],
    )
    with pytest.raises(InvalidToken):
        validator.validate(token)


def test_skew_is_bounded(
    setup: tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock],
) -> None:
    issuer, validator, _key, clock = setup
    token = issuer.access_token(
        subject="abc", audience="kho-api", client_id="p", lifetime=dt.timedelta(minutes=5)
    )
    clock.advance(dt.timedelta(minutes=5, seconds=30))  # within the 60 s leeway
    validator.validate(token)
    clock.advance(dt.timedelta(seconds=60))
    with pytest.raises(InvalidToken):
        validator.validate(token)


def test_an_id_token_is_not_an_access_token(
    setup: tuple[TokenIssuer, AccessTokenValidator, ECKey, FixedClock],
) -> None:
    _issuer, validator, key, _clock = setup
    token = jwt.encode(
        {"alg": "ES256", "kid": "k1", "typ": "JWT"}, _claims(), key, algorithms=["ES256"]
    )
    with pytest.raises(InvalidToken):
        validator.validate(token)
