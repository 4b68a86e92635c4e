"""Kraken policy holes a hostile review found (issue 14), with unmodified ccxt through the real daemon to the
emulator; each failed before its fix."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("holes-kraken"))
    try:
        stack.real = new_real_key(exchange="kraken")  # type: ignore[attr-defined]
        stack.serve_account("kr", stack.real)  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.close()


def bot(dev: DevStack, name: str, *settings: str) -> ccxt.kraken:
    creds = dev.add_bot(name, "kr", "read,trade", *(a for s in settings for a in ("--set", s)))
    ex = point_ccxt_at(ccxt.kraken({"apiKey": creds["api_key"], "secret": creds["secret"]}), creds["base_url"])
    ex.load_markets()
    return ex


def placed(dev: DevStack, start: int, method: str) -> int:
    return len([e for e in dev.journal()[start:] if e["path"] == f"/0/private/{method}"])


def test_a_failed_cancel_does_not_free_an_open_order_slot(dev: DevStack) -> None:
    """CancelOrder for an unknown order answers HTTP 200 `EOrder:Unknown order`: it counted as -1 (item 4);
    a confirmed cancel frees the slot (before, no Kraken cancel was ever believed)."""
    ex = bot(dev, "krcount", "max_open_orders=1")
    order = ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order("OAAAAA-BBBBB-CCCCCC", "BTC/USD")
    start = len(dev.journal())
    with pytest.raises(ccxt.InvalidOrder, match="open_orders_exceeded"):
        ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)
    assert placed(dev, start, "AddOrder") == 0
    ex.cancel_order(order["id"], "BTC/USD")
    assert ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)["id"]


def test_open_orders_query_sets_the_count(dev: DevStack) -> None:
    """An order that fills or is cancelled elsewhere is forgotten by a fetch_open_orders (OpenOrders)."""
    ex = bot(dev, "krquery", "max_open_orders=1")
    ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)
    with pytest.raises(ccxt.InvalidOrder, match="open_orders_exceeded"):
        ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)
    dev.cli("halt", "--account", "kr", "--cancel-orders", "--reason", "test")  # every order of the key, by the
    dev.cli("resume", "--account", "kr")  # operator's sweep (no bot may cancel another's): krquery's count...
    other = bot(dev, "krother")
    assert other.fetch_open_orders() == []
    assert ex.fetch_open_orders() == []  # ...until krquery's own OpenOrders answer says so
    assert ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)["id"]


def test_a_filtered_listing_sets_no_count(dev: DevStack) -> None:
    """Session 27's review: `OpenOrders` filtered by `userref` shows only the orders carrying it; read as the key's
    whole book it set the bot's count to 0, and a bot capped at two rested eight. It sets nothing now."""
    ex = bot(dev, "krfilter", "max_open_orders=2")
    ids = [ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)["id"] for _ in range(2)]
    for _ in range(2):
        assert ex.fetch_open_orders(params={"userref": 424242}) == []  # no order carries this userref
        with pytest.raises(ccxt.InvalidOrder, match="open_orders_exceeded"):
            ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)
    for order_id in ids:
        ex.cancel_order(order_id, "BTC/USD")


def test_create_orders_is_read_order_by_order(dev: DevStack) -> None:
    """AddOrderBatch (ccxt create_orders, JSON) was refused to any bot with a limit (item 8)."""
    ex = bot(dev, "krbatch", "max_order_notional=100")
    start = len(dev.journal())
    orders = ex.create_orders([{"symbol": "BTC/USD", "type": "limit", "side": "buy", "amount": 0.001, "price": 20000},
                               {"symbol": "BTC/USD", "type": "limit", "side": "buy", "amount": 0.002, "price": 20000}])
    assert len(orders) == 2 and placed(dev, start, "AddOrderBatch") == 1
    with pytest.raises(ccxt.InvalidOrder, match="notional_exceeded"):
        ex.create_orders([{"symbol": "BTC/USD", "type": "limit", "side": "buy", "amount": 0.001, "price": 20000},
                          {"symbol": "BTC/USD", "type": "limit", "side": "buy", "amount": 0.1, "price": 20000}])
    assert placed(dev, start, "AddOrderBatch") == 1


def test_a_decoy_price_on_a_market_order_is_refused(dev: DevStack) -> None:
    ex = bot(dev, "krdecoy", "max_order_notional=1000")
    start = len(dev.journal())
    with pytest.raises(ccxt.InvalidOrder, match="notional_unknown"):
        ex.create_order("BTC/USD", "market", "buy", 2, None, {"price": "0.1"})
    assert placed(dev, start, "AddOrder") == 0


def test_a_bot_cannot_amend_another_bots_order_through_amend_order(dev: DevStack) -> None:
    """Session 18's second review: AmendOrder (an order changed in place) was not read, and an unread request
    passes for a bot without limits, so a bot grew another bot's resting buy 1,000x past that bot's max_position
    by its txid or cl_ord_id. Read as an amend now: the order is another bot's, or a client id names none
    keyproxy can check: refused, nothing sent."""
    victim = bot(dev, "kr-victim", "max_position=0.01")
    attacker = bot(dev, "kr-attacker")
    order = victim.create_order("BTC/USD", "limit", "buy", 0.005, 20000)
    start = len(dev.journal())
    with pytest.raises(ccxt.ExchangeError, match="another bot"):
        attacker.privatePostAmendOrder({"txid": order["id"], "order_qty": "5"})
    with pytest.raises(ccxt.ExchangeError, match="client id"):
        attacker.privatePostAmendOrder({"cl_ord_id": "victim-1", "order_qty": "5"})
    assert placed(dev, start, "AmendOrder") == 0
    victim.cancel_order(order["id"])


def test_a_bot_cancels_only_its_own_orders(dev: DevStack) -> None:
    """A cancel of another bot's order by txid or cl_ord_id (recorded from the order's request), a cancel by a
    userref (which may name any bot's orders), CancelAll and a CancelAllOrdersAfter timer while another bot's
    orders rest are refused, nothing sent; the bot's own it cancels."""
    victim, attacker = bot(dev, "krcxvictim"), bot(dev, "krcxattacker")
    theirs = victim.create_order("BTC/USD", "limit", "buy", 0.001, 20000, {"cl_ord_id": "krcx-victim-1"})
    start = len(dev.journal())
    for attack in (lambda: attacker.cancel_order(theirs["id"], "BTC/USD"),
                   lambda: attacker.privatePostCancelOrder({"cl_ord_id": "krcx-victim-1"}),
                   lambda: attacker.privatePostCancelOrder({"txid": "12345"}),
                   lambda: attacker.cancel_all_orders(),
                   lambda: attacker.privatePostCancelAllOrdersAfter({"timeout": 60})):
        with pytest.raises(ccxt.BaseError, match="policy_denied"):
            attack()
    assert [e for e in dev.journal()[start:] if "Cancel" in e["path"]] == []
    mine = attacker.create_order("BTC/USD", "limit", "buy", 0.001, 20000, {"cl_ord_id": "krcx-attacker-1"})
    attacker.privatePostCancelOrder({"cl_ord_id": "krcx-attacker-1"})  # its own, by its cl_ord_id
    victim.cancel_order(theirs["id"], "BTC/USD")
    assert mine["id"]


def test_a_cancel_of_an_order_placed_outside_keyproxy_frees_no_place(dev: DevStack) -> None:
    """Session 22's review: an order with no owner on record (the operator's own, placed on the exchange's site or by
    another tool on the key) was counted as the canceller's, so cancelling it freed a place the bot's count never
    held: each such cancel let the bot rest one order more than its `max_open_orders`."""
    real = ccxt.kraken({"apiKey": dev.real.credentials["api_key"],  # type: ignore[attr-defined]
                        "secret": dev.real.credentials["secret"]})  # type: ignore[attr-defined]
    real.nonce = lambda: time.time_ns() // 1000  # above keyproxy's own nonces on the key (µs)
    real.urls["api"] = {k: dev.emulator_url if isinstance(v, str) else v for k, v in real.urls["api"].items()}
    outside = real.privatePostAddOrder({"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "volume": "0.001",
                                        "price": "19000"})["result"]["txid"][0]
    ex = bot(dev, "kroutside", "max_open_orders=1")
    ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)
    ex.cancel_order(outside, "BTC/USD")  # allowed (nobody's order here), and confirmed by the exchange
    start = len(dev.journal())
    with pytest.raises(ccxt.InvalidOrder, match="open_orders_exceeded"):
        ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)
    assert placed(dev, start, "AddOrder") == 0


def test_a_timer_that_cancels_every_order_later_is_refused_on_a_shared_account(dev: DevStack) -> None:
    """Session 22's review: CancelAllOrdersAfter armed while no other bot's order rested passed the own-orders check,
    then fired and cancelled the orders another bot placed meanwhile. A timer's cancel is judged when it fires, which
    no check made now can see: refused while another bot trades on the account (keyproxy's own dead-man's switch
    covers a shared account); disarming it (timeout 0) passes."""
    timer = bot(dev, "krtimer")  # the module's other bots trade on this account
    start = len(dev.journal())
    with pytest.raises(ccxt.BaseError, match="trades on this account"):
        timer.privatePostCancelAllOrdersAfter({"timeout": 60})
    assert [e for e in dev.journal()[start:] if e["path"] == "/0/private/CancelAllOrdersAfter"] == []
    timer.privatePostCancelAllOrdersAfter({"timeout": 0})


def test_an_order_waiting_for_the_keys_turn_is_not_sent_after_its_bot_is_revoked(dev: DevStack) -> None:
    """Session 25's review (high): requests carrying keyproxy's nonce for one Kraken key go one at a time, the turn
    held until the exchange answers (in a fleet, a lease another instance may hold for 10 s). An order decided
    before `bot revoke` and waiting for the turn was signed and sent after the revoke had returned, on the old
    decision. The bot's standing is checked again when the configuration changed while it waited."""
    import requests

    slow, queued = bot(dev, "krslow"), bot(dev, "krqueued")
    faults = dev.emulator_url + "/_emulator/faults"
    # the first order's answer held long enough for `bot revoke` (a CLI process, slow beside the other test workers)
    # to return while the second waits for the key's turn
    requests.post(faults, json={"hold_after_containing": ["price=19000"], "hold_seconds": 6.0},
                  timeout=5).raise_for_status()
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(slow.create_order, "BTC/USD", "limit", "buy", 0.001, 19000)
            time.sleep(0.5)  # at the exchange, its answer held: the key's turn with it
            second = pool.submit(queued.create_order, "BTC/USD", "limit", "buy", 0.001, 20500)
            time.sleep(0.5)  # decided, waiting for the turn
            dev.cli("bot", "revoke", "krqueued")
            assert first.result(30)["id"]
            with pytest.raises(ccxt.BaseError, match="unknown_bot"):
                second.result(30)
    finally:
        requests.post(faults, json={}, timeout=5).raise_for_status()
    assert [e for e in dev.journal() if e["path"] == "/0/private/AddOrder" and "20500" in e.get("body", "")] == []


def test_a_bot_flooding_the_keys_turn_does_not_hold_another_bots_request_behind_its_own(dev: DevStack) -> None:
    """Session 36's review: requests carrying keyproxy's nonce for one Kraken key go one at a time, and the turn was
    a FIFO lock: a bot keeping cancels queued (free on Kraken's call counter) held another bot's order 13 s behind
    them. The turn now goes round-robin by bot: the other bot waits for one of the flood's requests, not all."""
    import requests

    flood, other = dev.add_bot("krflood", "kr", "read,trade"), dev.add_bot("krpatient", "kr", "read,trade")
    faults = dev.emulator_url + "/_emulator/faults"
    requests.post(faults, json={"hold_after_containing": ["txid=OFLOOD"], "hold_seconds": 0.5},
                  timeout=5).raise_for_status()
    try:
        with ThreadPoolExecutor(12) as pool:
            flooding = [pool.submit(_raw, flood, "CancelOrder", f"txid=OFLOOD-{i:05d}-AAAAAA") for i in range(11)]
            time.sleep(1.0)  # the flood holds the turn and ten wait behind it: 5 s of FIFO
            started = time.monotonic()
            assert _raw(other, "Balance", "")["error"] == []  # signed by hand: no client-side throttle
            waited = time.monotonic() - started
            assert all(f.result(30)["error"] for f in flooding)  # unknown orders: refused by the exchange
    finally:
        requests.post(faults, json={}, timeout=5).raise_for_status()
    assert waited < 2.5, waited  # one of the flood's turns (0.5 s) and its own, not the ten queued before it


def _raw(creds: dict[str, str], method: str, form: str) -> dict[str, object]:
    """A form-encoded private call signed with the bot's virtual key, its body exactly as given."""
    import base64
    import hashlib
    import hmac
    import json
    import urllib.request

    path, nonce = f"/0/private/{method}", str(time.time_ns() // 1000)
    body = f"nonce={nonce}&{form}".encode()
    digest = hashlib.sha256(nonce.encode() + body).digest()
    sign = base64.b64encode(hmac.new(base64.b64decode(creds["secret"]), path.encode() + digest, hashlib.sha512)
                            .digest()).decode()
    req = urllib.request.Request(creds["base_url"] + path, data=body, method="POST", headers={
        "API-Key": creds["api_key"], "API-Sign": sign, "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=30) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def test_a_field_given_twice_is_refused_whatever_its_name(dev: DevStack) -> None:
    """Session 25's review (high): only the fields keyproxy values were refused when repeated; keyproxy read the last
    `txid` of `txid=<another bot's>&txid=<mine>` (its own: allowed) and the emulator, like any parser taking the
    first, cancelled the other bot's order; `timeout=2&timeout=0` armed a cancel-all timer on a shared account."""
    victim = bot(dev, "krdup-victim")
    theirs = victim.create_order("BTC/USD", "limit", "buy", 0.001, 20000)["id"]
    creds = dev.add_bot("krdup", "kr", "read,trade")
    mine = _raw(creds, "AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&price=20000&volume=0.001")
    start = len(dev.journal())
    for form in (f"txid={theirs}&txid={mine['result']['txid'][0]}", "timeout=2&timeout=0"):  # type: ignore[index]
        method = "CancelOrder" if form.startswith("txid") else "CancelAllOrdersAfter"
        answer = _raw(creds, method, form)
        assert answer.get("keyproxy_error") == "bad_request" and "more than once" in str(answer), answer
    assert placed(dev, start, "CancelOrder") == placed(dev, start, "CancelAllOrdersAfter") == 0
    assert theirs in [o["id"] for o in victim.fetch_open_orders("BTC/USD")]  # the account's: every bot's



def test_a_bracketed_form_field_is_refused(dev: DevStack) -> None:
    """Session 32's review: keyproxy read only the members named `orders` and `cl_ord_ids`, and Kraken reads a form's
    `orders[0]=<txid>` as an array: a form-encoded CancelOrderBatch naming another bot's order by it went unread and
    unchecked. A bracketed name is refused (`bad_request`, nothing sent) but AddOrder's `close[...]` and
    AddOrderBatch's `orders[...]`."""
    victim = bot(dev, "krbr-victim")
    theirs = victim.create_order("BTC/USD", "limit", "buy", 0.001, 20000)["id"]
    creds = dev.add_bot("krbr", "kr", "read,trade")
    start = len(dev.journal())
    for method, form in (("CancelOrderBatch", f"orders[0]={theirs}"), ("CancelOrderBatch", "cl_ord_ids[0]=krbr-v"),
                         ("CancelOrder", f"txid[0]={theirs}")):
        answer = _raw(creds, method, form)
        assert answer.get("keyproxy_error") == "bad_request" and "bracketed" in str(answer), answer
    assert placed(dev, start, "CancelOrderBatch") == placed(dev, start, "CancelOrder") == 0
    assert theirs in [o["id"] for o in victim.fetch_open_orders("BTC/USD")]


def test_a_daily_withdrawal_cap_counts_every_spelling_of_an_asset(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Session 32's review: the cap counted each spelling apart, and Kraken takes one asset as `XXBT`, `XBT` and
    `BTC`: a bot capped at 0.01 a day withdrew 0.01 under each. One count now; an allowlist entry naming the asset's
    altname (`XBT`) takes every spelling of it."""
    stack = DevStack(tmp_path_factory.mktemp("kraken-withdraw"))
    try:
        stack.serve_account("kw", new_real_key(exchange="kraken", permissions={"funds_withdraw": True}))
        creds = stack.add_bot("krwd", "kw", "read,withdraw", "--set", "daily_withdrawal_cap=0.01",
                              "--set", "withdraw_addresses=XBT:*:mykey")
        first = _raw(creds, "Withdraw", "asset=XXBT&key=mykey&amount=0.01")
        assert not first.get("error"), first
        start = len(stack.journal())
        for spelling in ("XBT", "XXBT", "BTC", "xbt"):
            answer = _raw(creds, "Withdraw", f"asset={spelling}&key=mykey&amount=0.01")
            assert answer.get("keyproxy_error") == "withdrawal_limit", (spelling, answer)
        assert placed(stack, start, "Withdraw") == 0
    finally:
        stack.close()
