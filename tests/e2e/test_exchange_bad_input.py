"""Per-exchange bad input through keyproxy: refused with a clear code, never a traceback, nothing upstream.

Coinbase JWTs that are expired, name another path, or are signed by another key; a malformed JWT; a
non-numeric Kraken nonce; a non-ISO OKX timestamp. Tokens are made here with PyJWT and cryptography,
independently of keyproxy's adapters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import call

jwt = pytest.importorskip("jwt")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("badinput"))
    keys = {"coinbase": new_real_key("ec", exchange="coinbase"), "kraken": new_real_key(exchange="kraken"),
            "okx": new_real_key(exchange="okx")}
    try:
        dev.start_emulator(list(keys.values()))
        dev.init()
        for name, key in keys.items():
            dev.add_account(name, key)
        dev.start_daemon()
        yield dev
    finally:
        dev.close()


def coinbase_jwt(creds: dict, method: str, path: str, *, age: int = 0, key_pem: str | None = None) -> str:  # type: ignore[type-arg]
    u = urllib.parse.urlsplit(creds["base_url"])
    now = int(time.time()) - age
    claims = {"sub": creds["api_key"], "iss": "cdp", "nbf": now, "exp": now + 120,
              "uri": f"{method} {u.netloc}{u.path}{path}"}
    return jwt.encode(claims, key_pem or creds["secret"], algorithm="ES256",
                      headers={"kid": creds["api_key"], "nonce": secrets.token_hex(16)})


@pytest.mark.parametrize("case, expected", [
    ("valid", 200),
    ("expired", "stale_request"),
    ("other_path", "bad_signature"),
    ("other_method", "bad_signature"),
    ("other_key", "bad_signature"),
    ("malformed", None),
])
def test_coinbase_bot_jwts(stack: DevStack, case: str, expected: int | str | None) -> None:
    creds = stack.add_bot(f"cb-{case.replace('_', '-')}", "coinbase", "read")
    path = "/api/v3/brokerage/accounts"
    if case == "valid":
        token = coinbase_jwt(creds, "GET", path)
    elif case == "expired":
        token = coinbase_jwt(creds, "GET", path, age=600)
    elif case == "other_path":
        token = coinbase_jwt(creds, "GET", "/api/v3/brokerage/orders/historical/batch")
    elif case == "other_method":
        token = coinbase_jwt(creds, "POST", path)
    elif case == "other_key":
        other = stack.add_bot(f"cb-{case}-2", "coinbase", "read")
        token = jwt.encode(jwt.decode(coinbase_jwt(creds, "GET", path), options={"verify_signature": False}),
                           other["secret"], algorithm="ES256", headers={"kid": creds["api_key"], "nonce": "ab" * 16})
    else:
        token = "not.a.jwt"
    start = len(stack.journal())
    ans = call(creds["base_url"], "GET", path, headers={"Authorization": f"Bearer {token}"})
    if expected == 200:
        assert ans.status == 200, ans.body
        return
    code = ans.body.get("keyproxy_error") or ans.body.get("error")
    if expected is None:
        assert ans.status in (400, 401) and code in ("bad_request", "bad_signature", "unknown_bot"), ans.body
    else:
        assert code == expected, ans.body
    assert "Traceback" not in ans.raw.decode(errors="replace")
    assert [e for e in stack.journal()[start:] if e.get("api_key")] == []


def test_kraken_non_numeric_nonce(stack: DevStack) -> None:
    creds = stack.add_bot("kr-bad", "kraken", "read")
    path = "/0/private/Balance"
    body = "nonce=abc"
    message = path.encode() + hashlib.sha256(b"abc" + body.encode()).digest()
    sign = base64.b64encode(hmac.new(base64.b64decode(creds["secret"]), message, hashlib.sha512).digest()).decode()
    start = len(stack.journal())
    ans = call(creds["base_url"], "POST", path, body=body, headers={"API-Key": creds["api_key"], "API-Sign": sign})
    assert ans.body.get("keyproxy_error") == "bad_request" and ans.body["error"]  # Kraken's error list stays
    assert stack.journal()[start:] == []


def test_okx_non_iso_timestamp(stack: DevStack) -> None:
    creds = stack.add_bot("okx-bad", "okx", "read")
    ts = str(time.time())
    path = "/api/v5/account/balance"
    sign = base64.b64encode(hmac.new(creds["secret"].encode(), (ts + "GET" + path).encode(), hashlib.sha256).digest())
    start = len(stack.journal())
    ans = call(creds["base_url"], "GET", path, headers={
        "OK-ACCESS-KEY": creds["api_key"], "OK-ACCESS-SIGN": sign.decode(), "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": creds["passphrase"]})
    assert ans.status == 400 and ans.body["error"] == "bad_request", ans.body
    assert stack.journal()[start:] == []
