"""Binance through keyproxy with unmodified ccxt and raw HTTP: the drop-in promise, end to end."""

from __future__ import annotations

import json

import ccxt
import pytest

from keyproxy.emulator.devstack import point_ccxt_at
from tests.e2e.conftest import KEY_TYPES, Stack, all_output, call, hmac_sign, now_ms


def ccxt_bot(creds: dict) -> ccxt.binance:  # type: ignore[type-arg]
    return point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"]}), creds["base_url"])


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_unmodified_ccxt_round_trip(stack: Stack, key_type: str) -> None:
    account = f"acct-{key_type}"
    creds = stack.bot(f"ccxt-{key_type}", account, "read,trade", "--key-type", key_type)  # virtual key of the same type
    start = len(stack.dev.journal())
    ex = ccxt_bot(creds)
    ex.load_markets()
    assert "BTC/USDT" in ex.markets and "BTC/USDT:USDT" in ex.markets
    assert ex.fetch_balance()["USDT"]["free"] > 0
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    assert [o["id"] for o in ex.fetch_open_orders("BTC/USDT")] == [order["id"]]
    assert ex.cancel_order(order["id"], "BTC/USDT")["status"] == "canceled"
    assert ex.fetch_open_orders("BTC/USDT") == []

    private = stack.private_journal(start)
    real = stack.keys[account].credentials["api_key"]
    assert len(private) >= 9  # 4 sapi calls of load_markets, balance, create, 2 x open orders, cancel
    for entry in private:
        assert entry["signature_verified"] is True, entry
        assert entry["api_key"] == real
    received = json.dumps(stack.dev.journal()[start:])
    assert creds["api_key"] not in received
    secret_body = "".join(creds["secret"].splitlines()[1:-1]) if key_type != "hmac" else creds["secret"]
    assert secret_body not in received.replace("\\n", "")


def test_withdraw_without_scope_never_arrives(stack: Stack) -> None:
    creds = stack.bot("trader", "acct-hmac", "read,trade")
    ex = ccxt_bot(creds)
    start = len(stack.dev.journal())
    with pytest.raises(ccxt.AuthenticationError) as e:
        ex.withdraw("USDT", 10, "0x0000000000000000000000000000000000000001", params={"network": "BSC"})
    assert "scope_denied" in str(e.value)
    assert not [x for x in stack.dev.journal()[start:] if "withdraw" in x["path"]]


def signed_order_query(secret: str, ts: int | None = None, extra: str = "") -> str:
    ts = now_ms() if ts is None else ts
    return hmac_sign(secret, f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                             f"&price=20000&timestamp={ts}{extra}")


def test_wrong_virtual_secret_is_bad_signature(stack: Stack) -> None:
    creds = stack.bot("wrongsecret")
    start = len(stack.dev.journal())
    ans = call(creds["base_url"], "POST", "/api/v3/order", body=signed_order_query("not-the-secret"),
               headers={"X-MBX-APIKEY": creds["api_key"]})
    assert (ans.status, ans.body["error"], ans.body["code"]) == (401, "bad_signature", -1022)
    assert ans.body["request_id"] and "message" in ans.body
    assert stack.dev.journal()[start:] == []


def test_seventy_second_old_signature_is_stale(stack: Stack) -> None:
    creds = stack.bot("stale")
    start = len(stack.dev.journal())
    body = signed_order_query(creds["secret"], ts=now_ms() - 70_000, extra="&recvWindow=60000")
    ans = call(creds["base_url"], "POST", "/api/v3/order", body=body, headers={"X-MBX-APIKEY": creds["api_key"]})
    assert (ans.status, ans.body["error"]) == (401, "stale_request")
    assert stack.dev.journal()[start:] == []


def test_same_signed_request_twice_is_a_replay(stack: Stack) -> None:
    creds = stack.bot("replayer")
    body = signed_order_query(creds["secret"])
    headers = {"X-MBX-APIKEY": creds["api_key"]}
    first = call(creds["base_url"], "POST", "/api/v3/order", body=body, headers=headers)
    assert first.status == 200, first.body
    start = len(stack.dev.journal())
    second = call(creds["base_url"], "POST", "/api/v3/order", body=body, headers=headers)
    assert (second.status, second.body["error"]) == (401, "replayed_request")
    assert stack.dev.journal()[start:] == []


def test_revoked_bot_is_refused_while_others_keep_working(stack: Stack) -> None:
    doomed, other = stack.bot("doomed"), stack.bot("survivor")
    for creds in (doomed, other):
        q = hmac_sign(creds["secret"], f"timestamp={now_ms()}")
        headers = {"X-MBX-APIKEY": creds["api_key"]}
        assert call(creds["base_url"], "GET", "/api/v3/account", q, headers=headers).status == 200
    out = stack.dev.cli("bot", "revoke", "doomed")
    assert "revoked bot doomed" in out.stdout
    start = len(stack.dev.journal())
    q = hmac_sign(doomed["secret"], f"timestamp={now_ms()}")
    ans = call(doomed["base_url"], "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": doomed["api_key"]})
    assert (ans.status, ans.body["error"]) == (401, "unknown_bot")
    assert stack.dev.journal()[start:] == []
    q = hmac_sign(other["secret"], f"timestamp={now_ms()}")
    headers = {"X-MBX-APIKEY": other["api_key"]}
    assert call(other["base_url"], "GET", "/api/v3/account", q, headers=headers).status == 200
    assert json.loads(stack.dev.cli("bot", "show", "doomed", "--json").stdout)["status"] == "revoked"


def test_token_mode(stack: Stack) -> None:
    creds = stack.bot("curlbot", "acct-ed25519", "read,trade", "--mode", "token")
    assert creds["token"].startswith("kpt_") and "secret" not in creds
    headers = {"X-Keyproxy-Token": creds["token"]}
    start = len(stack.dev.journal())
    account = call(creds["base_url"], "GET", "/api/v3/account", headers=headers)
    assert account.status == 200 and "balances" in account.body
    order = call(creds["base_url"], "POST", "/api/v3/order",
                 body="symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=20000",
                 headers=headers)
    assert order.status == 200, order.body
    for entry in stack.private_journal(start):
        assert entry["signature_verified"] is True
    bad = call(creds["base_url"], "GET", "/api/v3/account", headers={"X-Keyproxy-Token": "kpt_nope"})
    assert (bad.status, bad.body["error"]) == (401, "unknown_bot")


def test_bot_of_one_account_cannot_use_another(stack: Stack) -> None:
    creds = stack.bot("hmaconly", "acct-hmac")
    other = creds["base_url"].rsplit("/", 1)[0] + "/acct-nowd"
    q = hmac_sign(creds["secret"], f"timestamp={now_ms()}")
    ans = call(other, "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": creds["api_key"]})
    assert (ans.status, ans.body["error"]) == (401, "unknown_bot")


@pytest.mark.parametrize("path, query, headers, status, code", [
    ("/api/v3/account", "", {}, 401, "unknown_bot"),
    ("/api/v3/account", "", {"X-MBX-APIKEY": "x" * 64}, 401, "unknown_bot"),
    ("/api/v3/secretAdminThing", "", {}, 400, "unknown_endpoint"),
    ("/eapi/v1/unknown", "", {}, 400, "unknown_endpoint"),
])
def test_refusals_on_a_known_account(stack: Stack, path: str, query: str, headers: dict, status: int,  # type: ignore[type-arg]
                                     code: str) -> None:
    start = len(stack.dev.journal())
    ans = call(stack.dev.proxy_url + "/acct-hmac", "GET", path, query, headers=headers)  # type: ignore[operator]
    assert (ans.status, ans.body["error"]) == (status, code)
    assert stack.dev.journal()[start:] == []


def test_unknown_account(stack: Stack) -> None:
    ans = call(stack.dev.proxy_url + "/nobody", "GET", "/api/v3/time")  # type: ignore[operator]
    assert (ans.status, ans.body["error"]) == (404, "unknown_account")


def test_public_endpoints_pass_unsigned(stack: Stack) -> None:
    ans = call(stack.dev.proxy_url + "/acct-hmac", "GET", "/api/v3/time")  # type: ignore[operator]
    assert ans.status == 200 and "serverTime" in ans.body


def test_no_secret_in_any_log(stack: Stack) -> None:
    text = all_output(stack.dev)
    assert text  # the daemon did log
    for key in stack.keys.values():
        for value in key.credentials.values():
            for line in value.splitlines():
                if "PRIVATE KEY" not in line and len(line) > 8:
                    assert line not in text
