"""OKX policy holes a hostile review found (issue 14), each as the attack it was; each failed before its fix.

Raw signed requests (and unmodified ccxt) through the real daemon to the emulator; the journal shows
what arrived.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at
from tests.e2e.conftest import call


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("holes-okx"))
    key = new_real_key(exchange="okx", permissions={"withdraw": True})
    try:
        stack.serve_account("okx", key)
        yield stack
    finally:
        stack.close()


def send(dev: DevStack, creds: dict[str, str], method: str, path: str, doc: Any = None,
         query: str = "") -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """One OKX request signed with the bot's virtual credential: (status, answer, entries that arrived)."""
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{datetime.now(UTC).microsecond // 1000:03d}Z"
    body = json.dumps(doc) if doc is not None else ""
    target = path + (f"?{query}" if query else "")
    sign = base64.b64encode(hmac.new(creds["secret"].encode(), (ts + method + target + body).encode(),
                                     hashlib.sha256).digest()).decode()
    start = len(dev.journal())
    ans = call(creds["base_url"], method, path, query=query, body=body, headers={
        "OK-ACCESS-KEY": creds["api_key"], "OK-ACCESS-SIGN": sign, "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": creds["passphrase"], "Content-Type": "application/json"})
    return ans.status, ans.body, [e for e in dev.journal()[start:] if e["path"] == path]


LIMIT = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "20000", "sz": "0.001"}


def test_ccxt_places_okx_orders_through_batch_orders_under_a_limit(dev: DevStack) -> None:
    """ccxt 4.5.90 sends every OKX order to batch-orders, which was refused to any bot with a limit (item 8)."""
    creds = dev.add_bot("okxccxt", "okx", "read,trade", "--set", "max_order_notional=100")
    ex = point_ccxt_at(ccxt.okx({"apiKey": creds["api_key"], "secret": creds["secret"],
                                 "password": creds["passphrase"]}), creds["base_url"])
    ex.load_markets()
    start = len(dev.journal())
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)  # worth 20
    assert order["id"]
    with pytest.raises(ccxt.InvalidOrder, match="notional_exceeded"):
        ex.create_order("BTC/USDT", "limit", "buy", 0.01, 20000)  # worth 200
    paths = [e["path"] for e in dev.journal()[start:] if "/trade/" in e["path"]]
    assert paths == ["/api/v5/trade/batch-orders"], paths


def test_a_decoy_px_on_a_market_order_does_not_value_it(dev: DevStack) -> None:
    creds = dev.add_bot("okxdecoy", "okx", "read,trade", "--set", "max_order_notional=1000")
    market = {**LIMIT, "ordType": "market", "tgtCcy": "base_ccy", "sz": "2", "px": "0.1"}
    status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/order", market)
    assert body.get("error") == "notional_unknown" and arrived == [], body
    status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/batch-orders", [LIMIT, market])
    assert body.get("error") == "notional_unknown" and arrived == [], body  # one leg refuses the batch


def test_swap_contracts_are_valued_with_the_published_contract_size(dev: DevStack) -> None:
    """1,000 BTC-USDT-SWAP contracts (0.01 BTC each) passed a daily cap of 1,000 USDT unvalued (item 2)."""
    creds = dev.add_bot("okxswap", "okx", "read,trade", "--set", "daily_notional_cap=1000")
    order = {"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "limit", "px": "20000",
             "sz": "1000"}
    # (unknown sizes are refused as notional_unknown: tests/e2e/test_holes_binance.py shows it for COIN-M)
    assert call(creds["base_url"], "GET", "/api/v5/public/instruments", "instType=SWAP").status == 200
    status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/order", order)
    assert body.get("error") == "daily_notional_exceeded" and arrived == [], body  # 1000 x 0.01 x 20000
    status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/order", {**order, "sz": "1"})
    assert status == 200 and len(arrived) == 1, body  # 200 USDT


def test_a_failed_cancel_does_not_free_an_open_order_slot(dev: DevStack) -> None:
    """A cancel of an order that does not exist (HTTP 200, sCode 51400) counted as -1 (item 4). The bot's own
    order cancelled twice: the second answer is a refusal, and frees nothing. An id of no owner keyproxy asks OKX
    about first (session 31): OKX shows no such order, so nothing is sent."""
    creds = dev.add_bot("okxcount", "okx", "read,trade", "--set", "max_open_orders=2")
    placed = []
    for _ in range(2):
        status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/order", LIMIT)
        assert status == 200 and body["data"][0]["sCode"] == "0", body
        placed.append(body["data"][0]["ordId"])
    for done in (True, False):  # confirmed, then the same order again: OKX refuses it (51401, already cancelled)
        status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/cancel-order",
                                     {"instId": "BTC-USDT", "ordId": placed[0]})
        assert status == 200 and (body["data"][0]["sCode"] == "0") is done, body
    status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/cancel-order",
                                 {"instId": "BTC-USDT", "ordId": "999999999"})
    assert body.get("error") == "bad_request" and "shows no order" in body.get("message", "") and arrived == [], body
    status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/order", LIMIT)
    assert status == 200 and body["data"][0]["sCode"] == "0", body  # the place the confirmed cancel freed
    own = body["data"][0]["ordId"]
    status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/order", LIMIT)
    assert body.get("error") == "open_orders_exceeded" and arrived == [], body  # the refused cancel freed none
    # a cancel OKX confirmed (sCode 0) of the bot's own order frees the slot: before, no OKX cancel was ever believed
    # (a cancel of another bot's order frees none: test_holes_binance's `..._frees_no_place_under_my_cap`)
    status, answer, arrived = send(dev, creds, "POST", "/api/v5/trade/cancel-order",
                                   {"instId": "BTC-USDT", "ordId": own})
    assert answer["data"][0]["sCode"] == "0", answer
    status, body, arrived = send(dev, creds, "POST", "/api/v5/trade/order", LIMIT)
    assert status == 200 and len(arrived) == 1, body


def test_an_attackers_tag_on_an_allowlisted_address_is_refused(dev: DevStack) -> None:
    """OKX carries a memo inside toAddr (`address:tag`): the allowlist entry names the whole destination."""
    creds = dev.add_bot("okxpayer", "okx", "read,withdraw", "--set", "withdraw_addresses=USDT:*:TShared123")
    doc = {"ccy": "USDT", "amt": "10", "dest": "4", "toAddr": "TShared123:666", "chain": "USDT-TRC20"}
    status, body, arrived = send(dev, creds, "POST", "/api/v5/asset/withdrawal", doc)
    assert body.get("error") == "address_denied" and arrived == [], body


def test_a_bot_cannot_amend_another_bots_swap_order(dev: DevStack) -> None:
    """The amend's owner check asked the positions book only, which holds no OKX swap order (their fills are
    not read yet): a bot could move or resize another bot's swap order. The attribution record now answers."""
    owner = dev.add_bot("okxswapowner", "okx", "read,trade")
    other = dev.add_bot("okxswapother", "okx", "read,trade", "--set", "max_order_notional=100000")
    order = {"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "limit", "px": "20000",
             "sz": "1"}
    assert call(other["base_url"], "GET", "/api/v5/public/instruments", "instType=SWAP").status == 200
    status, body, arrived = send(dev, owner, "POST", "/api/v5/trade/order", order)
    order_id = body["data"][0]["ordId"]
    amend = {"instId": "BTC-USDT-SWAP", "ordId": order_id, "newSz": "2", "newPx": "20000"}
    status, body, arrived = send(dev, other, "POST", "/api/v5/trade/amend-order", amend)
    assert body.get("error") == "policy_denied" and "another bot" in json.dumps(body) and arrived == [], body
    status, body, arrived = send(dev, owner, "POST", "/api/v5/trade/amend-order", amend)  # its own: goes to OKX
    assert len(arrived) == 1 and body.get("error") is None, body


def test_a_bot_cancels_only_its_own_orders(dev: DevStack) -> None:
    """As on Binance: a cancel of another bot's order by `ordId` or `clOrdId`, alone or in a batch, is refused,
    nothing sent; the bot's own it cancels, by either id."""
    victim = dev.add_bot("okxcxvictim", "okx", "read,trade")
    attacker = dev.add_bot("okxcxattacker", "okx", "read,trade")
    status, body, _ = send(dev, victim, "POST", "/api/v5/trade/order", {**LIMIT, "clOrdId": "okxcxv1"})
    oid = body["data"][0]["ordId"]
    for path, doc in [
            ("/api/v5/trade/cancel-order", {"instId": "BTC-USDT", "ordId": oid}),
            ("/api/v5/trade/cancel-order", {"instId": "BTC-USDT", "clOrdId": "okxcxv1"}),
            ("/api/v5/trade/cancel-batch-orders", [{"instId": "BTC-USDT", "ordId": oid}])]:
        status, body, arrived = send(dev, attacker, "POST", path, doc)
        assert body.get("error") == "policy_denied" and arrived == [], (path, body)
    send(dev, attacker, "POST", "/api/v5/trade/order", {**LIMIT, "clOrdId": "okxcxa1"})
    status, body, arrived = send(dev, attacker, "POST", "/api/v5/trade/cancel-order",
                                 {"instId": "BTC-USDT", "clOrdId": "okxcxa1"})
    assert body.get("code") == "0" and len(arrived) == 1, body  # its own, by its clOrdId
    status, body, arrived = send(dev, victim, "POST", "/api/v5/trade/cancel-order",
                                 {"instId": "BTC-USDT", "ordId": oid})
    assert body.get("code") == "0" and len(arrived) == 1, body


def test_a_cancel_all_is_refused_while_another_bots_swap_order_rests(dev: DevStack) -> None:
    """Session 19's review: a cancel-all was judged by the positions book alone, which holds no OKX swap order
    (their fills are not read yet), so a bot's `cancel-all-after` or `mass-cancel` cancelled another bot's swap
    orders. keyproxy now lists what OKX says is resting and refuses while another bot's order is among them,
    nothing of the cancel sent; once that order is gone, the same cancel-all goes to OKX."""
    dev.cli("halt", "--account", "okx", "--cancel-orders", "--reason", "test tidy-up")  # earlier tests' orders
    dev.cli("resume", "--account", "okx")
    owner = dev.add_bot("okxallowner", "okx", "read,trade")
    other = dev.add_bot("okxallother", "okx", "read,trade")
    order = {"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "limit", "px": "20000",
             "sz": "1"}
    status, body, _ = send(dev, owner, "POST", "/api/v5/trade/order", order)
    assert body.get("code") == "0", body
    order_id = body["data"][0]["ordId"]
    start = len(dev.journal())
    for path, doc in [("/api/v5/trade/cancel-all-after", {"timeOut": "10"}),
                      ("/api/v5/trade/mass-cancel", {"instType": "SWAP", "instFamily": "BTC-USDT"})]:
        status, body, arrived = send(dev, other, "POST", path, doc)
        assert body.get("error") == "policy_denied" and "okxallowner" in body["message"] and arrived == [], body
    listed = [e["path"] for e in dev.journal()[start:]]
    # keyproxy's own listing, once for both: the orders, and the algo orders of each kind (whether OKX's cancel-all
    # reaches algo orders is not documented: another bot's stop is judged as its order would be)
    assert listed == ["/api/v5/trade/orders-pending"] + ["/api/v5/trade/orders-algo-pending"] * 3, listed
    status, body, _ = send(dev, owner, "POST", "/api/v5/trade/cancel-order",
                           {"instId": "BTC-USDT-SWAP", "ordId": order_id})
    assert body.get("code") == "0", body
    status, body, arrived = send(dev, other, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "0"})
    assert body.get("code") == "0" and len(arrived) == 1, body  # none of another bot's rests: it goes to OKX


def test_a_close_position_cancelling_pending_close_orders_is_judged_as_a_cancel_all(dev: DevStack) -> None:
    """Session 25's review: `close-position` with `autoCxl` also cancels the position's pending close orders, whoever
    placed them, and passed as a reduce-only order while another bot's reduce-only order rested there."""
    victim = dev.add_bot("autocxl-victim", "okx", "read,trade")
    attacker = dev.add_bot("autocxl-attacker", "okx", "read,trade")
    assert call(victim["base_url"], "GET", "/api/v5/public/instruments", "instType=SWAP").status == 200
    status, body, _ = send(dev, victim, "POST", "/api/v5/trade/order", {
        "instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "sell", "ordType": "limit", "px": "90000", "sz": "1",
        "reduceOnly": True})
    assert status == 200 and body["code"] == "0", body
    theirs = body["data"][0]["ordId"]
    status, body, arrived = send(dev, attacker, "POST", "/api/v5/trade/close-position",
                                 {"instId": "BTC-USDT-SWAP", "mgnMode": "cross", "autoCxl": True})
    assert body.get("error") == "policy_denied" and "cancel every order" in body["message"] and arrived == [], body
    send(dev, victim, "POST", "/api/v5/trade/cancel-order", {"instId": "BTC-USDT-SWAP", "ordId": theirs})


def test_reduce_only_on_a_spot_order_of_no_margin_mode_is_not_believed(dev: DevStack) -> None:
    """Session 35's review: OKX reads `reduceOnly` on MARGIN orders (tdMode cross or isolated) and net-mode
    futures and swaps only; keyproxy believed it for any tdMode but cash, so a spot buy with `spot_isolated` (spot
    lead trading, no margin) passed max_position at 5x the cap, a reduce_only policy and a halt. Refused now."""
    order = {**LIMIT, "tdMode": "spot_isolated", "reduceOnly": "true", "sz": "0.05"}
    capped = dev.add_bot("spotiso-capped", "okx", "read,trade", "--set", "max_position=0.01")
    status, body, arrived = send(dev, capped, "POST", "/api/v5/trade/order", order)
    assert body.get("error") == "position_exceeded" and arrived == [], body
    reducing = dev.add_bot("spotiso-reduce", "okx", "read,trade", "--set", "reduce_only=true")
    status, body, arrived = send(dev, reducing, "POST", "/api/v5/trade/order", order)
    assert body.get("error") == "reduce_only" and arrived == [], body
    halted = dev.add_bot("spotiso-halted", "okx", "read,trade")
    dev.cli("halt", "--bot", "spotiso-halted", "--reason", "test")
    status, body, arrived = send(dev, halted, "POST", "/api/v5/trade/order", order)
    assert status != 200 and arrived == [], body
    margin = {**order, "tdMode": "cross", "side": "sell", "sz": "0.001"}  # a margin order's flag is still believed
    status, body, arrived = send(dev, reducing, "POST", "/api/v5/trade/order", margin)
    assert body.get("error") != "reduce_only", body
