"""Reading exchanges' order answers for incident response: who placed which order, what is resting, which
cancel the exchange confirmed. Anything unclear counts as not cancelled (reported, never hidden)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyproxy.exchanges import default_adapters
from keyproxy.exchanges.base import order_ids_in
from keyproxy.exchanges.open_orders import SWEEPS, ListingError, Resting
from keyproxy.state import MAX_PLACED_ORDERS, PRUNE_EVERY, StateStore, placed_key

ADAPTERS = default_adapters()


@pytest.mark.parametrize(("exchange", "answer", "ids"), [
    ("binance", {"symbol": "BTCUSDT", "orderId": 12, "clientOrderId": "orderId"}, ("12",)),
    # a batch: one id per leg in its place, "" for a leg refused (keyproxy's own cancels skip those)
    ("binance", [{"orderId": 1}, {"code": -2010, "msg": "x"}, {"orderId": 2}], ("1", "", "2")),
    ("okx", {"code": "0", "data": [{"ordId": "7", "sCode": "0"}, {"ordId": "", "sCode": "51008"}]}, ("7", "")),
    ("kraken", {"error": [], "result": {"txid": ["OA-1", "OB-2"], "descr": {}}}, ("OA-1", "OB-2")),
    ("coinbase", {"success": True, "success_response": {"order_id": "abc"}}, ("abc",)),
    ("hyperliquid", {"status": "ok", "response": {"data": {"statuses": [{"resting": {"oid": 5}},
                                                                          {"filled": {"oid": 6}}]}}}, ("5", "6")),
    ("bybit", {"retCode": 0, "result": {"orderId": "b1", "orderLinkId": "mine"}}, ("b1",)),
])
def test_the_order_ids_of_an_answer(exchange: str, answer: object, ids: tuple[str, ...]) -> None:
    assert ADAPTERS[exchange].placed_order_ids(200, json.dumps(answer).encode()) == ids


def test_no_ids_from_a_refusal_or_an_unreadable_answer() -> None:
    binance = ADAPTERS["binance"]
    assert binance.placed_order_ids(400, b'{"orderId": 1}') == ()
    assert binance.placed_order_ids(200, b"{not json") == ()
    assert binance.placed_order_ids(200, b"") == ()
    assert order_ids_in({"orderId": True, "x": {"orderId": 0}}, ("orderId",)) == ()


def test_a_deep_or_huge_answer_is_bounded() -> None:
    deep: object = {"orderId": "top"}
    for _ in range(50):
        deep = {"a": deep}
    assert order_ids_in(deep, ("orderId",)) == ()
    assert len(order_ids_in([{"orderId": i} for i in range(1, 5000)], ("orderId",))) == 1000


def test_listings_read_what_rests_and_follow_pages() -> None:
    okx = SWEEPS["okx"]
    page = {"code": "0", "data": [{"instId": "BTC-USDT", "ordId": str(i), "instType": "SPOT"} for i in range(100)]}
    found, more = okx.resting(("GET", "/api/v5/trade/orders-pending", "limit=100", b""), 200, json.dumps(page).encode())
    assert len(found) == 100 and more is not None and "after=99" in more[2]
    with pytest.raises(ListingError, match="50111"):
        okx.resting(("GET", "/", "", b""), 401, b'{"code":"50111","msg":"Invalid OK-ACCESS-KEY"}')
    coinbase = SWEEPS["coinbase"]
    doc = {"orders": [{"order_id": "x", "product_id": "BTC-USD"}], "has_next": True, "cursor": "c2"}
    found, more = coinbase.resting(("GET", "/", "", b""), 200, json.dumps(doc).encode())
    assert found == [Resting("spot", "BTC-USD", "x")] and more is not None and "cursor=c2" in more[2]
    with pytest.raises(ListingError):
        SWEEPS["kraken"].resting(("POST", "/", "", b""), 200, b'{"error":["EAPI:Invalid key"]}')


def test_a_cancel_counts_only_when_the_exchange_confirms_it() -> None:
    o = [Resting("spot", "BTC-USD", "a"), Resting("spot", "BTC-USD", "b")]
    answer = {"results": [{"success": True, "order_id": "a"},
                          {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": "b"}]}
    assert SWEEPS["coinbase"].cancelled(o, 200, json.dumps(answer).encode()) == {"a": None, "b": "UNKNOWN_CANCEL_ORDER"}
    missing = {"a": "not in the answer", "b": "not in the answer"}
    assert SWEEPS["coinbase"].cancelled(o, 200, b'{"results": []}') == missing
    hl = SWEEPS["hyperliquid"]
    ok = {"status": "ok", "response": {"type": "cancel", "data": {"statuses": ["success"]}}}
    assert hl.cancelled(o, 200, json.dumps(ok).encode())["a"].startswith("HTTP 200")  # one status for two orders
    binance = SWEEPS["binance"]
    assert binance.cancelled(o[:1], 200, b'{"status":"CANCELED"}') == {"a": None}
    assert binance.cancelled(o[:1], 200, b'{"status":"FILLED"}')["a"] is not None
    assert binance.cancelled(o[:1], 503, b"<html>") == {"a": "HTTP 503: <html>"}


def test_hyperliquid_cancels_name_the_asset_by_number_and_skip_unknown_ones() -> None:
    hl = SWEEPS["hyperliquid"]
    orders = [Resting("perp", "BTC", "11"), Resting("perp", "DOGE", "12"), Resting("perp", "PURR/USDC", "13")]
    [(spec, sent)] = hl.cancels(orders, {"#0": "BTC", "#10000": "PURR/USDC"})
    body = json.loads(spec[3])
    assert body["action"] == {"type": "cancel", "cancels": [{"a": 0, "o": 11}, {"a": 10000, "o": 13}]}
    assert [o.order_id for o in sent] == ["11", "13"]


def test_the_record_of_who_placed_what_is_bounded_and_forgets_cancelled_orders(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.record_placed_orders("acct", "a", "spot", ("1", "2"), 1.0)
    store.record_placed_orders("other", "b", "spot", ("1",), 2.0)
    assert store.placed_orders("acct") == {"1": ("a", "spot"), "2": ("a", "spot")}
    store.forget_placed_orders("acct", ["1"])
    assert store.placed_orders("acct") == {"2": ("a", "spot")} and store.placed_orders("other") == {"1": ("b", "spot")}
    store.record_placed_orders("acct", "a", "spot", tuple(str(i) for i in range(10, 10 + MAX_PLACED_ORDERS)), 3.0)
    kept = store.placed_orders("acct")
    assert len(kept) == MAX_PLACED_ORDERS and "2" not in kept  # the oldest went first
    for i in range(PRUNE_EVERY - 1):  # between two checks the bound may be passed by less than PRUNE_EVERY
        store.record_placed_orders("acct", "a", "spot", (f"n{i}",), 4.0 + i)
    assert len(store.placed_orders("acct")) == MAX_PLACED_ORDERS + PRUNE_EVERY - 1
    store.record_placed_orders("acct", "a", "spot", ("last",), 9999.0)
    assert len(store.placed_orders("acct")) == MAX_PLACED_ORDERS
    store.close()


def test_binance_orders_sharing_an_id_on_two_symbols_are_two_orders_of_their_own_bots(tmp_path: Path) -> None:
    """Binance numbers each symbol's orders apart: order 500 on BTCUSDT (bot a's) and 500 on ETHUSDT (bot b's)
    were one record (the later overwrote the earlier) and one listed order (the listing kept one of the two), so
    halting bot a could cancel bot b's order and leave its own resting."""
    import asyncio
    from types import SimpleNamespace

    from keyproxy.exchanges.binance import Binance
    from keyproxy.proxy.cancel_orders import cancel_account_orders

    store = StateStore(tmp_path / "state.db")
    store.record_placed_orders("acct", "a", "spot", (placed_key("500", "spot:BTCUSDT"),), 1.0)
    store.record_placed_orders("acct", "b", "spot", (placed_key("500", "spot:ETHUSDT"),), 2.0)
    resting = [{"symbol": s, "orderId": 500, "side": "BUY"} for s in ("BTCUSDT", "ETHUSDT")]
    sent: list[tuple[str, str, str]] = []

    class Exchange:  # the exchange's side of keyproxy's own calls: lists, then cancels what it is told
        async def send(self, account: object, spec: tuple[str, str, str, bytes]) -> tuple[int, bytes]:
            method, path, query, _ = spec
            if method == "GET":
                return 200, json.dumps(resting).encode()
            sent.append((method, path, query))
            symbol = dict(p.split("=") for p in query.split("&"))["symbol"]
            resting[:] = [o for o in resting if o["symbol"] != symbol]
            return 200, json.dumps({"symbol": symbol, "orderId": 500, "status": "CANCELED"}).encode()

    account = SimpleNamespace(info=SimpleNamespace(name="acct", exchange="binance"), adapter=Binance(),
                              upstream=object(), key=object())
    summary = asyncio.run(cancel_account_orders(Exchange(), store, account, "a", lambda *a, **k: None,  # type: ignore[arg-type]
                                                "test"))
    assert sent == [("DELETE", "/api/v3/order", "symbol=BTCUSDT&orderId=500")]
    assert summary["cancelled"] == [{"order_id": "500", "symbol": "BTCUSDT", "bot": "a"}] and summary["left"] == []
    assert resting == [{"symbol": "ETHUSDT", "orderId": 500, "side": "BUY"}]
    assert store.placed_orders("acct") == {placed_key("500", "spot:ETHUSDT"): ("b", "spot")}  # a's record forgotten
    # both listed, both tried: each is reported as its own cancel went (one failed), never under the other's id
    resting[:] = [{"symbol": s, "orderId": 500, "side": "BUY"} for s in ("BTCUSDT", "ETHUSDT")]
    answer_as_before = Exchange.send

    async def send(self: Exchange, account: object, spec: tuple[str, str, str, bytes]) -> tuple[int, bytes]:
        if "ETHUSDT" in spec[2] and spec[0] == "DELETE":
            return 400, b'{"code":-2011,"msg":"Unknown order sent."}'
        return await answer_as_before(self, account, spec)

    Exchange.send = send  # type: ignore[method-assign]
    summary = asyncio.run(cancel_account_orders(Exchange(), store, account, None, lambda *a, **k: None,  # type: ignore[arg-type]
                                                "test"))
    assert [c["symbol"] for c in summary["cancelled"]] == ["BTCUSDT"]
    assert [(f["symbol"], f["error"][:8]) for f in summary["failed"]] == [("ETHUSDT", "HTTP 400")]
    assert summary["left"] == [{"order_id": "500", "symbol": "ETHUSDT"}]
    store.close()


def _sweep(store: StateStore, resting: dict[str, list[dict[str, object]]], bot: str | None
           ) -> tuple[dict[str, object], list[tuple[str, str, str]]]:
    """A Binance halt's cancel sweep against an exchange that lists `resting` per path prefix and cancels."""
    import asyncio
    from types import SimpleNamespace

    from keyproxy.exchanges.binance import Binance
    from keyproxy.proxy.cancel_orders import cancel_account_orders

    sent: list[tuple[str, str, str]] = []

    class Exchange:
        async def send(self, account: object, spec: tuple[str, str, str, bytes]) -> tuple[int, bytes]:
            method, path, query, _ = spec
            prefix = path.rsplit("/", 1)[0]
            if method == "GET":
                return 200, json.dumps(resting.get(prefix, [])).encode()
            sent.append((method, path, query))
            q = dict(p.split("=") for p in query.split("&"))
            resting[prefix] = [o for o in resting.get(prefix, []) if (o["symbol"], str(o["orderId"])) !=
                               (q["symbol"], q["orderId"])]
            return 200, json.dumps({"symbol": q["symbol"], "orderId": int(q["orderId"]), "status": "CANCELED"}).encode()

    account = SimpleNamespace(info=SimpleNamespace(name="acct", exchange="binance"), adapter=Binance(),
                              upstream=object(), key=object())
    summary = asyncio.run(cancel_account_orders(Exchange(), store, account, bot, lambda *a, **k: None,  # type: ignore[arg-type]
                                                "test"))
    return summary, sent


def test_spot_and_futures_orders_sharing_an_id_keep_their_own_bots(tmp_path: Path) -> None:
    """Session 18's review: spot BTCUSDT order 500 (bot a's) and USD-M BTCUSDT order 500 (bot b's) were one
    `placed_orders` record (keyed by id and symbol): halting a cancelled nothing, halting b cancelled a's too.
    Keyed by id, market and symbol now; a record an older version wrote (`id@symbol`) is still found."""
    store = StateStore(tmp_path / "state.db")
    store.record_placed_orders("acct", "a", "spot", (placed_key("500", "spot:BTCUSDT"),), 1.0)
    store.record_placed_orders("acct", "b", "usdm", (placed_key("500", "usdm:BTCUSDT"),), 2.0)
    resting = {"/api/v3": [{"symbol": "BTCUSDT", "orderId": 500}], "/fapi/v1": [{"symbol": "BTCUSDT", "orderId": 500}]}
    summary, sent = _sweep(store, resting, "a")
    assert sent == [("DELETE", "/api/v3/order", "symbol=BTCUSDT&orderId=500")] and summary["left"] == []
    assert resting["/fapi/v1"] == [{"symbol": "BTCUSDT", "orderId": 500}]  # b's order rests
    store.record_placed_orders("acct", "c", "spot", ("600@BTCUSDT",), 3.0)  # as session 17 recorded it
    resting["/api/v3"] = [{"symbol": "BTCUSDT", "orderId": 600}]
    summary, sent = _sweep(store, resting, "c")
    assert sent == [("DELETE", "/api/v3/order", "symbol=BTCUSDT&orderId=600")]
    store.close()


def test_a_halt_cancels_portfolio_margin_orders(tmp_path: Path) -> None:
    """Session 18's review: the sweep listed spot, USD-M, COIN-M and cross margin only, so a bot's
    portfolio-margin orders (`/papi/v1/um/order`, forwarded and booked) rested through its halt and the summary
    said nothing was left."""
    store = StateStore(tmp_path / "state.db")
    store.record_placed_orders("acct", "a", "papi-um", (placed_key("77", "papi-um:BTCUSDT"),), 1.0)
    store.record_placed_orders("acct", "a", "papi-margin", (placed_key("78", "papi-margin:ETHUSDT"),), 1.0)
    resting = {"/papi/v1/um": [{"symbol": "BTCUSDT", "orderId": 77}],
               "/papi/v1/margin": [{"symbol": "ETHUSDT", "orderId": 78}]}
    summary, sent = _sweep(store, resting, "a")
    assert sorted(sent) == [("DELETE", "/papi/v1/margin/order", "symbol=ETHUSDT&orderId=78"),
                            ("DELETE", "/papi/v1/um/order", "symbol=BTCUSDT&orderId=77")]
    assert resting == {"/papi/v1/um": [], "/papi/v1/margin": []} and summary["left"] == []
    store.close()


def test_a_halt_cancels_isolated_margin_orders_symbol_by_symbol(tmp_path: Path) -> None:
    """Session 18's second review: Binance lists isolated margin orders only with `isIsolated=TRUE` and a symbol,
    so a bot's isolated orders rested through its halt and the summary said nothing was left."""
    import asyncio
    from types import SimpleNamespace

    from keyproxy.exchanges.binance import Binance
    from keyproxy.proxy.cancel_orders import cancel_account_orders

    store = StateStore(tmp_path / "state.db")
    store.record_placed_orders("acct", "a", "isolated", (placed_key("41", "isolated:BTCUSDT"),), 1.0)
    store.record_placed_orders("acct", "a", "margin", (placed_key("42", "margin:ETHUSDT"),), 1.0)
    isolated = {"BTCUSDT": [{"symbol": "BTCUSDT", "orderId": 41}]}
    cross = [{"symbol": "ETHUSDT", "orderId": 42}]
    sent: list[tuple[str, str, str]] = []

    class Exchange:
        async def send(self, account: object, spec: tuple[str, str, str, bytes]) -> tuple[int, bytes]:
            method, path, query, _ = spec
            q = dict(p.split("=") for p in query.split("&")) if query else {}
            if method == "GET":
                if path != "/sapi/v1/margin/openOrders":
                    return 200, b"[]"
                return 200, json.dumps(isolated.get(q["symbol"], []) if "isIsolated" in q else cross).encode()
            sent.append((method, path, query))
            if "isIsolated" in q:
                isolated[q["symbol"]] = []
            else:
                cross.clear()
            return 200, json.dumps({"symbol": q["symbol"], "orderId": int(q["orderId"]), "status": "CANCELED"}).encode()

    account = SimpleNamespace(info=SimpleNamespace(name="acct", exchange="binance"), adapter=Binance(),
                              upstream=object(), key=object())
    summary = asyncio.run(cancel_account_orders(Exchange(), store, account, "a", lambda *a, **k: None,  # type: ignore[arg-type]
                                                "test"))
    assert sorted(sent) == [("DELETE", "/sapi/v1/margin/order", "symbol=BTCUSDT&orderId=41&isIsolated=TRUE"),
                            ("DELETE", "/sapi/v1/margin/order", "symbol=ETHUSDT&orderId=42")]
    assert isolated == {"BTCUSDT": []} and cross == [] and summary["left"] == [] and len(summary["cancelled"]) == 2
    store.close()


def test_bybit_linear_orders_are_listed_for_both_settle_coins() -> None:
    """Session 18's third review: Bybit lists linear orders per settle coin, and the sweep asked for USDT only, so a
    bot's USDC perpetual (BTCPERP) or future orders rested through its halt, reported as nothing left."""
    from urllib.parse import parse_qsl

    from keyproxy.exchanges.open_orders import SWEEPS
    specs = SWEEPS["bybit"].listings(frozenset({"linear"}), None, {})  # type: ignore[arg-type]
    coins = sorted(dict(parse_qsl(s[2])).get("settleCoin", "") for s in specs if "category=linear" in s[2])
    assert coins == ["USDC", "USDT"]


def test_a_bot_flooding_the_record_pushes_out_only_its_own_records(tmp_path: Path) -> None:
    """Session 19's review: about 20,000 orders from one bot pushed a victim's oldest records out of
    `placed_orders`, after which the flooder could cancel the victim's orders by client id. The bound now takes
    the oldest records of the bots holding the most, levelled; a bot holding fewer keeps every record."""
    store = StateStore(tmp_path / "state.db")
    victim = tuple(placed_key(f"v{i}", "spot:BTCUSDT") for i in range(50))
    store.record_placed_orders("acct", "victim", "spot", victim, 1.0)
    store.record_placed_orders("acct", "flood", "spot", tuple(f"f{i}" for i in range(MAX_PLACED_ORDERS)), 2.0)
    store.record_placed_orders("acct", "flood", "spot", tuple(f"g{i}" for i in range(PRUNE_EVERY)), 3.0)
    kept = store.placed_orders("acct")
    assert len(kept) == MAX_PLACED_ORDERS and set(victim) <= kept.keys()  # every one of the victim's
    flood = [k for k, (bot, _) in kept.items() if bot == "flood"]
    assert len(flood) == MAX_PLACED_ORDERS - 50 and all(f"g{i}" in kept for i in range(PRUNE_EVERY))  # its oldest
    assert store.placed_owner("acct", (victim[0],)) == "victim"
    store.close()


def test_a_flood_levels_no_bot_below_an_equal_share(tmp_path: Path) -> None:
    """Session 30's third review: a flooder levelled down to another bot holding many records (a market maker)
    pruned both. No bot is pruned below an equal share of the bound."""
    store = StateStore(tmp_path / "state.db")
    share = MAX_PLACED_ORDERS // 2
    maker = tuple(f"m{i}" for i in range(share))
    store.record_placed_orders("acct", "maker", "spot", maker, 1.0)
    store.record_placed_orders("acct", "flood", "spot", tuple(f"f{i}" for i in range(share + 2 * PRUNE_EVERY)), 2.0)
    kept = store.placed_orders("acct")
    assert set(maker) <= kept.keys() and len(kept) <= MAX_PLACED_ORDERS + PRUNE_EVERY
    store.close()


def test_a_bots_own_flood_prunes_its_stops_records_last(tmp_path: Path) -> None:
    """Session 30's review: a bot flooding the record pushed out its own resting stops' entries (the only owner of an
    OKX swap stop: the positions book holds none), after which keyproxy's recount counted them for no one and a halt
    missed them. A conditional order's record (`algo#`) goes last."""
    store = StateStore(tmp_path / "state.db")
    stops = tuple(f"algo#{i}" for i in range(20))
    store.record_placed_orders("acct", "flood", "swap", stops, 1.0)
    store.record_placed_orders("acct", "flood", "spot", tuple(f"f{i}" for i in range(MAX_PLACED_ORDERS)), 2.0)
    kept = store.placed_orders("acct")
    assert len(kept) == MAX_PLACED_ORDERS and set(stops) <= kept.keys()
    store.close()


def test_binance_lists_and_cancels_a_futures_markets_algo_orders_by_their_algo_id() -> None:
    sweep = SWEEPS["binance"]
    specs = sweep.listings(frozenset({"usdm", "spot"}), None, {})  # type: ignore[arg-type]
    assert ("GET", "/fapi/v1/openAlgoOrders", "", b"") in specs and ("GET", "/fapi/v1/openOrders", "", b"") in specs
    assert not any("Algo" in s[1] for s in sweep.listings(frozenset({"spot"}), None, {}))  # type: ignore[arg-type]
    answer = json.dumps([{"algoId": 7, "symbol": "BTCUSDT", "algoStatus": "NEW"}]).encode()
    found, more = sweep.resting(("GET", "/fapi/v1/openAlgoOrders", "", b""), 200, answer)
    assert (found, more) == ([Resting("usdm", "BTCUSDT", "algo#7")], None)
    [(spec, orders)] = sweep.cancels(found, {})
    assert spec == ("DELETE", "/fapi/v1/algoOrder", "algoId=7", b"") and orders == found
    ok = json.dumps({"algoId": 7, "clientAlgoId": "c", "code": "200", "msg": "success"}).encode()
    assert sweep.cancelled(found, 200, ok) == {"algo#7": None}
    assert sweep.cancelled(found, 400, b'{"code": -2011, "msg": "Unknown order sent."}')["algo#7"]


def test_a_sweep_asks_a_listing_again_the_exchange_refused_for_rate(tmp_path: Path) -> None:
    """Session 30's review: a halt's sweep now makes four OKX listings, and a bot reading the same endpoint in a loop
    could make one of them come back 429, which ended the whole sweep with nothing cancelled. A page refused for
    rate (or failing, 5xx) is asked again, a window apart."""
    import asyncio
    from types import SimpleNamespace

    from keyproxy.exchanges.okx import Okx
    from keyproxy.proxy import cancel_orders

    store = StateStore(tmp_path / "state.db")
    store.record_placed_orders("acct", "a", "swap", ("algo#9",), 1.0)
    refusals = {"/api/v5/trade/orders-algo-pending": 2}
    sent: list[str] = []

    class Exchange:
        async def send(self, account: object, spec: tuple[str, str, str, bytes]) -> tuple[int, bytes]:
            method, path, query, body = spec
            sent.append(f"{method} {path}")
            if method == "GET" and refusals.get(path, 0) > 0:
                refusals[path] -= 1
                return 429, b'{"code":"50011","msg":"Too Many Requests","data":[]}'
            if method == "GET" and path.endswith("algo-pending") and "conditional" in query:
                rows = [{"algoId": "9", "instId": "BTC-USDT-SWAP", "instType": "SWAP"}]
                return 200, json.dumps({"code": "0", "data": rows}).encode()
            if method == "GET":
                return 200, b'{"code":"0","data":[]}'
            return 200, json.dumps({"code": "0", "data": [{"algoId": "9", "sCode": "0"}]}).encode()

    account = SimpleNamespace(info=SimpleNamespace(name="acct", exchange="okx"), adapter=Okx(),
                              upstream=object(), key=object())
    old = cancel_orders.LIST_RETRY_S
    cancel_orders.LIST_RETRY_S = 0.01
    try:
        summary = asyncio.run(cancel_orders.cancel_account_orders(
            Exchange(), store, account, "a", lambda *a, **k: None, "test"))  # type: ignore[arg-type]
    finally:
        cancel_orders.LIST_RETRY_S = old
    assert summary["error"] is None and [o["order_id"] for o in summary["cancelled"]] == ["algo#9"], summary
    assert sent.count("POST /api/v5/trade/cancel-algos") == 1
    store.close()
