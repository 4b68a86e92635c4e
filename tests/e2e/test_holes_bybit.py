"""Bybit policy holes a hostile review found (issue 14), each as the attack it was; each failed before its fix.

Raw signed requests through the real daemon to the emulator (which fills a Market order at its own price,
as Bybit does, whatever `price` says); the journal shows what arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import call


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("holes-bybit"))
    try:
        stack.serve_account("bb", new_real_key(exchange="bybit"))
        yield stack
    finally:
        stack.close()


def send(dev: DevStack, creds: dict[str, str], method: str, path: str, doc: Any = None,
         query: str = "") -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """One Bybit v5 request signed with the bot's virtual credential: (status, answer, entries that arrived)."""
    ts = str(int(time.time() * 1000))
    payload = json.dumps(doc) if doc is not None else query
    sign = hmac.new(creds["secret"].encode(), (ts + creds["api_key"] + "5000" + payload).encode(),
                    hashlib.sha256).hexdigest()
    start = len(dev.journal())
    ans = call(creds["base_url"], method, path, query=query, body=json.dumps(doc) if doc is not None else "",
               headers={"X-BAPI-API-KEY": creds["api_key"], "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": "5000",
                        "X-BAPI-SIGN": sign, "Content-Type": "application/json"})
    return ans.status, ans.body, [e for e in dev.journal()[start:] if e["path"] == path]


LIMIT = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
         "price": "20000"}


def test_a_decoy_price_on_a_market_order_does_not_value_it(dev: DevStack) -> None:
    """Market with price 0.1: keyproxy valued 2 BTC at 0.2 under a 1,000 cap; Bybit filled it at 60,000."""
    creds = dev.add_bot("bbdecoy", "bb", "read,trade", "--set", "max_order_notional=1000")
    decoy = {**LIMIT, "orderType": "Market", "qty": "2", "price": "0.1"}
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", decoy)
    assert body.get("error") == "notional_unknown" and arrived == [], body
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", LIMIT)  # 20 USDT
    assert body.get("retCode") == 0 and len(arrived) == 1, body


def test_batches_are_read_order_by_order(dev: DevStack) -> None:
    """create-batch was refused to any bot with a limit; now each order counts (open orders, notional)."""
    creds = dev.add_bot("bbbatch", "bb", "read,trade", "--set", "max_open_orders=2", "--set",
                        "max_order_notional=1000")
    batch = {"category": "linear", "request": [{k: v for k, v in LIMIT.items() if k != "category"}] * 3}
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create-batch", batch)
    assert body.get("error") == "open_orders_exceeded" and arrived == [], body
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create-batch",
                                 {**batch, "request": batch["request"][:2]})
    assert body.get("retCode") == 0 and [c["code"] for c in body["retExtInfo"]["list"]] == [0, 0], body
    big = {**batch, "request": [{**batch["request"][0], "qty": "1"}]}
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create-batch", big)
    assert body.get("error") == "notional_exceeded" and arrived == [], body


def test_a_failed_cancel_does_not_free_an_open_order_slot(dev: DevStack) -> None:
    """A cancel of an order that does not exist (retCode 110001, HTTP 200) must not count as -1."""
    creds = dev.add_bot("bbcount", "bb", "read,trade", "--set", "max_open_orders=1")
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", LIMIT)
    assert body.get("retCode") == 0, body
    order_id = body["result"]["orderId"]
    status, body, arrived = send(dev, creds, "POST", "/v5/order/cancel",
                                 {"category": "linear", "symbol": "BTCUSDT", "orderId": "nosuchorder"})
    assert body.get("retCode") == 110001, body
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", LIMIT)
    assert body.get("error") == "open_orders_exceeded" and arrived == [], body
    status, body, arrived = send(dev, creds, "POST", "/v5/order/cancel",
                                 {"category": "linear", "symbol": "BTCUSDT", "orderId": order_id})
    assert body.get("retCode") == 0, body
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", LIMIT)  # the confirmed cancel freed it
    assert body.get("retCode") == 0 and len(arrived) == 1, body


def test_an_attackers_tag_on_an_allowlisted_address_is_refused(dev: DevStack) -> None:
    creds = dev.add_bot("bbpayer", "bb", "read,withdraw", "--set", "withdraw_addresses=USDT:ETH:0xabc")
    doc = {"coin": "USDT", "chain": "ETH", "address": "0xabc", "tag": "666", "amount": "10",
           "timestamp": int(time.time() * 1000), "accountType": "FUND"}
    status, body, arrived = send(dev, creds, "POST", "/v5/asset/withdraw/create", doc)
    assert body.get("error") == "address_denied" and arrived == [], body


def test_spot_margin_orders_borrow(dev: DevStack) -> None:
    creds = dev.add_bot("bbborrow", "bb", "read,trade")
    doc = {**LIMIT, "category": "spot", "isLeverage": 1}
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", doc)
    assert body.get("error") == "scope_denied" and "borrow" in body["message"] and arrived == [], body


def test_a_bot_cannot_move_another_bots_take_profit_or_stop_loss(dev: DevStack) -> None:
    """A take-profit / stop-loss-only amend changes no size or price, so it skipped the amend's owner check: a
    bot could remove another bot's stop on the same account (session 18's review left it open)."""
    owner = dev.add_bot("bbtpowner", "bb", "read,trade")
    other = dev.add_bot("bbtpother", "bb", "read,trade", "--set", "orders_per_minute=100")
    status, body, arrived = send(dev, owner, "POST", "/v5/order/create", {**LIMIT, "orderLinkId": "own-tp-1"})
    order_id = body["result"]["orderId"]
    tp = {"category": "linear", "symbol": "BTCUSDT", "orderId": order_id, "stopLoss": "15000"}
    status, body, arrived = send(dev, other, "POST", "/v5/order/amend", tp)
    assert body.get("error") == "policy_denied" and "another bot" in body.get("retMsg", json.dumps(body)) \
        and arrived == [], body
    by_link = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "own-tp-1", "stopLoss": "15000"}
    status, body, arrived = send(dev, other, "POST", "/v5/order/amend", by_link)
    assert body.get("error") == "policy_denied" and arrived == [], body
    batch = {"category": "linear", "request": [{"symbol": "BTCUSDT", "orderId": order_id, "takeProfit": "90000"}]}
    status, body, arrived = send(dev, other, "POST", "/v5/order/amend-batch", batch)
    assert body.get("error") == "policy_denied" and arrived == [], body
    status, body, arrived = send(dev, owner, "POST", "/v5/order/amend", tp)  # its own order: goes to Bybit
    assert len(arrived) == 1 and body.get("error") is None, body


def test_a_bot_cancels_only_its_own_orders(dev: DevStack) -> None:
    """As on Binance: a cancel of another bot's order by `orderId` or `orderLinkId`, in a batch, or a cancel-all of
    a symbol where another bot's orders rest is refused, nothing sent; the bot's own it cancels."""
    victim = dev.add_bot("bbcxvictim", "bb", "read,trade")
    attacker = dev.add_bot("bbcxattacker", "bb", "read,trade")
    eth = {**LIMIT, "symbol": "ETHUSDT", "price": "1000", "qty": "0.01"}
    status, body, _ = send(dev, victim, "POST", "/v5/order/create", {**eth, "orderLinkId": "bbcx-v1"})
    assert body.get("retCode") == 0, body
    oid = body["result"]["orderId"]
    for path, doc in [
            ("/v5/order/cancel", {"category": "linear", "symbol": "ETHUSDT", "orderId": oid}),
            ("/v5/order/cancel", {"category": "linear", "symbol": "ETHUSDT", "orderLinkId": "bbcx-v1"}),
            ("/v5/order/cancel-batch", {"category": "linear", "request": [{"symbol": "ETHUSDT", "orderId": oid}]}),
            ("/v5/order/cancel-all", {"category": "linear", "symbol": "ETHUSDT"}),
            ("/v5/order/cancel-all", {"category": "linear", "settleCoin": "USDT"})]:
        status, body, arrived = send(dev, attacker, "POST", path, doc)
        assert body.get("error") == "policy_denied" and arrived == [], (path, body)
    status, body, arrived = send(dev, attacker, "POST", "/v5/order/create", {**eth, "orderLinkId": "bbcx-a1"})
    status, body, arrived = send(dev, attacker, "POST", "/v5/order/cancel",
                                 {"category": "linear", "symbol": "ETHUSDT", "orderLinkId": "bbcx-a1"})
    assert body.get("retCode") == 0 and len(arrived) == 1, body  # its own, by its orderLinkId
    status, body, arrived = send(dev, victim, "POST", "/v5/order/cancel",
                                 {"category": "linear", "symbol": "ETHUSDT", "orderId": oid})
    assert body.get("retCode") == 0 and len(arrived) == 1, body


def test_a_notional_capped_bot_sets_no_stop_keyproxy_cannot_value(dev: DevStack) -> None:
    """Session 27's review: a bot capped by `max_order_notional` and `daily_notional_cap` was refused a 1 BTC order
    but set a position-wide stop (`trading-stop`, `tpslMode` Full), which Bybit executes as a market close of the
    account's whole position, every bot's share: valued nowhere, counted against no cap. So was a stop attached to
    a small order. Refused (`notional_unknown`), nothing sent; clearing a stop passes."""
    capped = dev.add_bot("bbstopcap", "bb", "read,trade", "--set", "max_order_notional=100000",
                         "--set", "daily_notional_cap=200000")
    stop = {"category": "linear", "symbol": "BTCUSDT", "tpslMode": "Full", "stopLoss": "19000", "positionIdx": 0}
    for path, doc in (("/v5/position/trading-stop", stop),
                      ("/v5/order/create", {**LIMIT, "tpslMode": "Full", "stopLoss": "19000"})):
        status, body, arrived = send(dev, capped, "POST", path, doc)
        assert body.get("error") == "notional_unknown" and arrived == [], body
    status, body, arrived = send(dev, capped, "POST", "/v5/position/trading-stop",
                                 {**stop, "stopLoss": "0"})
    assert body.get("error") is None and len(arrived) == 1, body


def test_a_quote_sized_spot_buy_weighs_under_the_position_cap_once_answered(dev: DevStack) -> None:
    """Session 32's review: a spot Market buy sized in USDT (a spot buy's default `marketUnit`) was booked with no
    size once its answer (which names the order alone) was read, so it weighed nothing under `max_position` until a
    fill was read: a bot capped at 0.01 BTC bought 0.033 BTC in four orders. It now rests at quote / price."""
    creds = dev.add_bot("bbquotebuy", "bb", "read,trade", "--set", "max_position=0.01")
    buy = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "500"}  # ~0.0083
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", buy)
    assert body.get("retCode") == 0 and len(arrived) == 1, body
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", buy)
    assert body.get("error") == "position_exceeded" and arrived == [], body


def test_a_position_take_profit_or_stop_loss_is_refused_under_max_open_orders(dev: DevStack) -> None:
    """Session 32's review: Bybit places a position's take-profit or stop-loss (`trading-stop`; a tp/sl-only amend)
    as conditional orders of its own (in Partial mode each call adds one), which no answer names: a bot capped at one
    open order rested any number of them. Refused as a create carrying them is; clearing them passes."""
    creds = dev.add_bot("bbtpslcap", "bb", "read,trade", "--set", "max_open_orders=2")
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", LIMIT)
    assert body.get("retCode") == 0, body
    amend = {"category": "linear", "symbol": "BTCUSDT", "orderId": body["result"]["orderId"], "stopLoss": "19000"}
    partial = {"category": "linear", "symbol": "BTCUSDT", "tpslMode": "Partial", "positionIdx": 0,
               "stopLoss": "19000", "slSize": "0.001", "slOrderType": "Market"}
    status, body, arrived = send(dev, creds, "POST", "/v5/position/trading-stop", partial)
    assert body.get("error") == "open_orders_exceeded" and arrived == [], body
    status, body, arrived = send(dev, creds, "POST", "/v5/order/amend", amend)
    assert body.get("error") == "open_orders_exceeded" and arrived == [], body


def test_a_pre_check_is_a_read_and_takes_no_other_bots_client_id(dev: DevStack) -> None:
    """Session 32's review: `pre-check` was read as a placement, and its answer names an orderId and the
    orderLinkId it was given, so a bot pre-checking under another bot's orderLinkId became its owner on record and
    cancelled the other bot's order by it (and left a phantom order in the book). It is a read now; and no bot
    places an order under another bot's orderLinkId."""
    victim = dev.add_bot("bbpcvictim", "bb", "read,trade")
    attacker = dev.add_bot("bbpcattacker", "bb", "read,trade", "--set", "max_order_notional=100000")
    eth = {**LIMIT, "symbol": "ETHUSDT", "price": "1000", "qty": "0.01"}
    status, body, _ = send(dev, victim, "POST", "/v5/order/create", {**eth, "orderLinkId": "bbpc-v1"})
    assert body.get("retCode") == 0, body
    status, body, arrived = send(dev, attacker, "POST", "/v5/order/pre-check", {**eth, "orderLinkId": "bbpc-v1"})
    assert body.get("retCode") == 0 and body["result"]["orderLinkId"] == "bbpc-v1" and len(arrived) == 1, body
    status, body, arrived = send(dev, attacker, "POST", "/v5/order/create", {**eth, "orderLinkId": "bbpc-v1"})
    assert body.get("error") == "policy_denied" and arrived == [], body
    cancel = {"category": "linear", "symbol": "ETHUSDT", "orderLinkId": "bbpc-v1"}
    status, body, arrived = send(dev, attacker, "POST", "/v5/order/cancel", cancel)
    assert body.get("error") == "policy_denied" and arrived == [], body
    status, body, arrived = send(dev, victim, "POST", "/v5/order/cancel", cancel)
    assert body.get("retCode") == 0 and len(arrived) == 1, body


def test_an_order_that_cancels_the_orders_it_meets_is_refused_on_a_shared_account(dev: DevStack) -> None:
    """Session 32's review: `smpType` CancelMaker or CancelBoth makes Bybit cancel the resting order a new one would
    trade against under the same UID: every bot of the account shares it, so a 1 USD order cancelled another bot's
    where keyproxy's self-cross check does not look (inverse contracts). Refused while another bot trades the
    account; CancelTaker (which cancels the bot's own new order) passes."""
    creds = dev.add_bot("bbsmp", "bb", "read,trade")
    inverse = {"category": "inverse", "symbol": "BTCUSD", "side": "Buy", "orderType": "Limit", "qty": "1",
               "price": "20000", "timeInForce": "IOC"}
    for smp in ("CancelMaker", "CancelBoth"):
        status, body, arrived = send(dev, creds, "POST", "/v5/order/create", {**inverse, "smpType": smp})
        assert body.get("error") == "policy_denied" and "self-trade" in body.get("retMsg", "") and arrived == [], body
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", {**inverse, "smpType": "CancelTaker"})
    assert len(arrived) == 1, body


def test_a_lone_surrogate_in_a_rest_body_is_a_clear_refusal(dev: DevStack) -> None:
    """Session 36's regression review: an order whose client id held a `\\ud800` escape alone (valid JSON, no
    character) passed the decision and failed to be stored: 500 internal_error. Every REST body and query is now
    read as UTF-8 text with no lone surrogate first, for every exchange: 400 bad_request, nothing sent."""
    creds = dev.add_bot("bbsurrogate", "bb", "read,trade", "--set", "max_open_orders=5")
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", {**LIMIT, "orderLinkId": "x\ud800y"})
    assert body["error"] == "bad_request" and body["retCode"] != 0 and "surrogate" in body["message"], body
    assert arrived == [] and "internal error" not in dev.daemon_log()
    status, body, arrived = send(dev, creds, "POST", "/v5/order/create", {**LIMIT, "orderLinkId": "x\U0001f600y"})
    assert body["retCode"] == 0 and len(arrived) == 1, body  # an escaped pair is a character: it goes
