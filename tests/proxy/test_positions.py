"""The positions book: only confirmed fills move a position, each once; state survives a restart."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from keyproxy.exchanges.base import OrderUpdate
from keyproxy.exchanges.binance_fills import binance_order_updates, binance_reconcile_request, binance_stream_updates
from keyproxy.fleet.book import decode, encode
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.positions import PositionBook
from keyproxy.state import StateStore

D = Decimal
SCOPE = "spot:BTCUSDT"


class Clock:
    now = 1_796_385_600.0  # 2026-12-04 12:00 UTC

    def __call__(self) -> float:
        return self.now


def leg(side: str = "BUY", qty: str = "1", price: str | None = "100") -> RequestFacts:
    return RequestFacts(action="order", symbol="BTCUSDT", market="spot", side=side, quantity=D(qty),
                        price=D(price) if price else None)


def update(oid: str, filled: str, quote: str, final: bool = False, side: str = "buy") -> OrderUpdate:
    return OrderUpdate(oid, SCOPE, side, D("100"), D("1"), D(filled), D(quote), final)


def test_cumulative_fills_count_once_whatever_order_they_arrive_in(tmp_path: Path) -> None:
    book = PositionBook(StateStore(tmp_path / "s.db"), Clock())
    book.placed("a", "bot", (leg(),), ("1",))
    assert book.open_quantity("a", "bot", SCOPE, "buy") == 1
    for u in (update("1", "0.4", "40"), update("1", "0.4", "40"), update("1", "0.2", "20"), update("1", "1", "100")):
        book.apply("a", [u])
    assert book.position("bot", SCOPE) == 1 and book.open_quantity("a", "bot", SCOPE, "buy") == 0
    assert book.day_pnl("bot", lambda a, s: D("90")) == (D("-10"), [])  # bought 1 at 100, now 90
    book.apply("a", [update("9", "5", "500")])  # an order keyproxy never saw placed is nobody's
    assert book.position("bot", SCOPE) == 1


def test_positions_and_open_orders_survive_a_restart(tmp_path: Path) -> None:
    store, clock = StateStore(tmp_path / "s.db"), Clock()
    book = PositionBook(store, clock)
    book.placed("a", "bot", (leg(), leg("SELL", "2", "120")), ("1", "2"))
    book.apply("a", [update("1", "1", "100", final=True), update("2", "0.5", "60", side="sell")])
    store.close()
    again = PositionBook(StateStore(tmp_path / "s.db"), clock)
    assert again.position("bot", SCOPE) == D("0.5")
    assert again.open_quantity("a", "bot", SCOPE, "sell") == D("1.5")
    assert again.live_scopes("a") == {SCOPE: clock.now}
    assert again.day_pnl("bot", lambda a, s: D("100")) == (D("10"), [])  # -100 + 60 + 0.5 x 100


def test_crossing_another_bots_resting_order(tmp_path: Path) -> None:
    book = PositionBook(None, Clock())
    book.placed("a", "maker", (leg("SELL", "1", "110"),), ("1",))
    assert book.crossed("a", "taker", leg("BUY", "1", "110")).order_id == "1"  # type: ignore[union-attr]
    assert book.crossed("a", "taker", leg("BUY", "1", None)) is not None  # a market buy takes any ask
    assert book.crossed("a", "taker", leg("BUY", "1", "109")) is None
    assert book.crossed("a", "maker", leg("BUY", "1", "120")) is None  # its own order: the exchange's STP
    assert book.crossed("b", "taker", leg("BUY", "1", "120")) is None  # another account
    book.apply("a", [update("1", "0", "0", final=True, side="sell")])
    assert book.crossed("a", "taker", leg("BUY", "1", "120")) is None


def test_a_new_day_values_the_position_it_began_with_at_its_opening_mark() -> None:
    clock = Clock()
    book = PositionBook(None, clock, lambda a, s: D("100"))
    book.placed("a", "bot", (leg(),), ("1",))
    book.apply("a", [update("1", "1", "100", final=True)])
    clock.now += 86_400  # tomorrow: the day opens at the mark 100
    assert book.day_pnl("bot", lambda a, s: D("100")) == (D("0"), [])
    assert book.day_pnl("bot", lambda a, s: D("95")) == (D("-5"), [])


def test_binance_answers_and_events_read_as_order_updates() -> None:
    placed = {"symbol": "BTCUSDT", "orderId": 7, "side": "BUY", "price": "0.00000000", "origQty": "0.01",
              "executedQty": "0.01", "cummulativeQuoteQty": "600.00", "status": "FILLED"}
    [u] = binance_order_updates("/api/v3/order", 200, json.dumps(placed).encode())
    assert (u.order_id, u.scope, u.side, u.price, u.filled, u.filled_quote, u.final) == (
        "7", SCOPE, "buy", None, D("0.01"), D("600"), True)
    assert binance_order_updates("/api/v3/order", 200, b'{"symbol":"BTCUSDT","orderId":7}') == ()  # an ACK
    assert binance_order_updates("/api/v3/order", 400, json.dumps(placed).encode()) == ()
    futures = {**placed, "cumQuote": "600", "cummulativeQuoteQty": None}
    futures.pop("cummulativeQuoteQty")
    assert binance_order_updates("/fapi/v1/order", 200, json.dumps(futures).encode())[0].scope == "usdm:BTCUSDT"
    replace = {"cancelResponse": {**placed, "orderId": 6, "status": "CANCELED", "executedQty": "0"},
               "newOrderResponse": {**placed, "status": "NEW", "executedQty": "0", "cummulativeQuoteQty": "0"}}
    ids = [x.order_id for x in binance_order_updates("/api/v3/order/cancelReplace", 200, json.dumps(replace).encode())]
    assert ids == ["7", "6"]  # the new order first
    event = {"subscriptionId": 0, "event": {"e": "executionReport", "s": "BTCUSDT", "S": "SELL", "p": "61000",
                                            "q": "0.5", "i": 9, "z": "0.2", "Z": "12200", "X": "PARTIALLY_FILLED"}}
    [e] = binance_stream_updates(json.dumps(event))
    assert (e.order_id, e.side, e.filled, e.filled_quote, e.final) == ("9", "sell", D("0.2"), D("12200"), False)
    assert binance_stream_updates('{"e":"outboundAccountPosition"}') == ()
    assert binance_reconcile_request(SCOPE, 5) == ("GET", "/api/v3/allOrders", "symbol=BTCUSDT&startTime=5&limit=1000",
                                                   b"")


def test_kill_9_never_leaves_a_position_its_orders_do_not_explain(tmp_path: Path) -> None:
    """A child places and fills orders as fast as it can; after each kill -9 the reopened book's position
    equals the fills its orders record, and holds at least every fill the child had reported committed."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "s.db"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from decimal import Decimal as D\nfrom pathlib import Path\nimport time, itertools\n"
            "from keyproxy.exchanges.base import OrderUpdate\nfrom keyproxy.policy.model import RequestFacts\n"
            "from keyproxy.proxy.positions import PositionBook\nfrom keyproxy.state import StateStore\n"
            "book = PositionBook(StateStore(Path(%r)), time.time)\n"
            "leg = RequestFacts(action='order', symbol='BTCUSDT', market='spot', side='BUY', quantity=D('1'), "
            "price=D(1))\n"
            "for i in itertools.count(len(book.orders.get('a', {}))):\n"
            "    book.placed('a', 'bot', (leg,), (str(i),))\n"
            "    book.apply('a', [OrderUpdate(str(i), 'spot:BTCUSDT', 'buy', D(1), D(1), D('0.5'), D('0.5'), False)])\n"
            "    book.apply('a', [OrderUpdate(str(i), 'spot:BTCUSDT', 'buy', D(1), D(1), D(1), D(1), True)])\n"
            "    print(book.position('bot', 'spot:BTCUSDT'), flush=True)\n") % (
        str(Path(__file__).resolve().parents[2]), str(db))
    committed = D(0)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # started (on a loaded machine an interpreter takes a while)
        time.sleep(0.1 + random.random() * 0.3)
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        printed = [D(v) for v in (first + out).split()[:-1]]  # the last line may be torn
        if printed:
            committed = max(committed, printed[-1])
        book = PositionBook(StateStore(db), Clock())
        orders = book.orders.get("a", {}).values()
        assert book.position("bot", SCOPE) == sum((o.filled for o in orders), D(0))
        assert book.position("bot", SCOPE) >= committed
    assert committed > 0


def test_bybit_queries_and_the_order_topic_read_as_order_updates() -> None:
    from keyproxy.exchanges.bybit_fills import bybit_order_updates, bybit_reconcile_request, bybit_stream_updates

    doc = {"orderId": "abc", "symbol": "BTCUSDT", "side": "Buy", "price": "0", "qty": "0.01", "cumExecQty": "0.01",
           "cumExecValue": "600", "orderStatus": "Filled"}
    answer = {"retCode": 0, "result": {"category": "linear", "list": [doc]}}
    [u] = bybit_order_updates("/v5/order/history", "category=linear", 200, json.dumps(answer).encode())
    assert (u.order_id, u.scope, u.side, u.price, u.filled, u.filled_quote, u.final) == (
        "abc", "linear:BTCUSDT", "buy", None, D("0.01"), D("600"), True)
    assert bybit_order_updates("/v5/order/create", "", 200, json.dumps(answer).encode()) == ()
    assert bybit_order_updates("/v5/order/history", "", 200, json.dumps({**answer, "retCode": 10001}).encode()) == ()
    inverse = {"retCode": 0, "result": {"category": "inverse", "list": [doc]}}
    assert bybit_order_updates("/v5/order/history", "", 200, json.dumps(inverse).encode()) == ()  # not read
    pushed = {"topic": "order", "data": [{**doc, "category": "spot", "orderStatus": "PartiallyFilled"}]}
    [p] = bybit_stream_updates(json.dumps(pushed))
    assert (p.scope, p.final) == ("spot:BTCUSDT", False)
    assert bybit_stream_updates('{"topic": "wallet", "data": []}') == ()
    assert bybit_reconcile_request("linear:BTCUSDT", 7)[1:3] == (
        "/v5/order/history", "category=linear&symbol=BTCUSDT&startTime=7&limit=50")


def test_kraken_okx_and_coinbase_answers_and_streams_read_as_order_updates() -> None:
    from keyproxy.exchanges.coinbase_fills import coinbase_order_updates, coinbase_stream_updates
    from keyproxy.exchanges.kraken_fills import kraken_order_updates, kraken_stream_updates
    from keyproxy.exchanges.okx_fills import okx_order_updates, okx_stream_updates

    kraken = {"error": [], "result": {"closed": {"OABC": {"status": "closed", "vol": "1", "vol_exec": "1",
                                                          "cost": "64000", "descr": {"type": "buy", "price": "0"}}}}}
    [k] = kraken_order_updates("/0/private/ClosedOrders", 200, json.dumps(kraken).encode())
    assert (k.order_id, k.scope, k.side, k.filled, k.filled_quote, k.final) == ("OABC", "", "buy", 1, 64000, True)
    assert kraken_order_updates("/0/private/ClosedOrders", 200, b'{"error": ["EGeneral:x"]}') == ()
    [ke] = kraken_stream_updates(json.dumps({"channel": "executions", "type": "update", "data": [
        {"order_id": "OABC", "side": "sell", "cum_qty": "0.5", "cum_cost": "32000",
         "order_status": "partially_filled"}]}))
    assert (ke.side, ke.filled, ke.final) == ("sell", D("0.5"), False)

    okx = {"code": "0", "data": [{"ordId": "7", "instId": "BTC-USDT", "side": "buy", "px": "", "sz": "0.1",
                                  "accFillSz": "0.1", "avgPx": "60000", "state": "filled"}]}
    [o] = okx_order_updates("GET", "/api/v5/trade/order", 200, json.dumps(okx).encode())
    assert (o.scope, o.filled_quote, o.final) == ("spot:BTCUSDT", D("6000"), True)
    swap = {"code": "0", "data": [{**okx["data"][0], "instId": "BTC-USDT-SWAP"}]}
    assert okx_order_updates("GET", "/api/v5/trade/order", 200, json.dumps(swap).encode()) == ()  # contracts: not yet
    assert okx_order_updates("POST", "/api/v5/trade/order", 200, json.dumps(okx).encode()) == ()
    [oe] = okx_stream_updates(json.dumps({"arg": {"channel": "orders", "instType": "SPOT"}, "data": okx["data"]}))
    assert oe.order_id == "7"

    cb = {"order": {"order_id": "c1", "product_id": "BTC-USD", "side": "SELL", "status": "OPEN",
                    "filled_size": "0.2", "filled_value": "12000"}}
    [c] = coinbase_order_updates("GET", "/api/v3/brokerage/orders/historical/c1", 200, json.dumps(cb).encode())
    assert (c.scope, c.side, c.filled, c.final) == ("spot:BTCUSD", "sell", D("0.2"), False)
    [ce] = coinbase_stream_updates(json.dumps({"channel": "user", "events": [{"type": "update", "orders": [
        {"order_id": "c1", "product_id": "BTC-USD", "order_side": "SELL", "status": "FILLED",
         "cumulative_quantity": "0.5", "filled_value": "30000"}]}]}))
    assert (ce.filled, ce.final) == (D("0.5"), True)
    assert (c.created, ce.created) == (None, None)  # no time given: none believed
    made = {**cb["order"], "created_time": "2026-12-04T11:59:58.250Z"}
    [c] = coinbase_order_updates("GET", "/api/v3/brokerage/orders/historical/c1", 200,
                                 json.dumps({"order": made}).encode())
    assert c.created == Clock.now - 1.75
    [ce] = coinbase_stream_updates(json.dumps({"channel": "user", "events": [{"type": "update", "orders": [
        {"order_id": "c1", "product_id": "BTC-USD", "order_side": "SELL", "status": "OPEN", "cumulative_quantity": "0",
         "filled_value": "0", "creation_time": "2026-12-04T11:59:58.250000001Z"}]}]}))
    assert ce.created == Clock.now - 1.75


def test_an_order_the_exchange_made_before_the_request_was_decided_is_not_the_bots(tmp_path: Path) -> None:
    """Coinbase answers a create reusing a client id with the order that holds it, made whenever: one made before
    the request was decided (past the clocks' slack) leaves the book at its first report, none of its fills
    counted, its resting size gone, forgotten in state.db, and the owner record told (`on_disown`, with whether it
    still rested). One made within the slack (the clocks, a retry of the bot's own create after a timeout) is the
    bot's, as is every report without a time."""
    store, clock = StateStore(tmp_path / "s.db"), Clock()
    book = PositionBook(store, clock)
    told: list[tuple[str, str, str, str]] = []
    book.on_disown = lambda *a: told.append(a)
    decided = clock.now - 2  # its answer was read 2 s after the decision: the decision's time counts
    book.placed("a", "bot", (leg("SELL", "0.001"), leg("SELL", "0.001"), leg()), ("old", "skew", "plain"),
                decided=decided)
    assert book.open_quantity("a", "bot", SCOPE, "sell") == D("0.002")

    def made(oid: str, filled: str, at: float, side: str = "buy") -> OrderUpdate:
        return OrderUpdate(oid, SCOPE, side, None, D("0.5"), D(filled), D(filled) * 100, False, created=at)
    book.apply("a", [made("old", "0.5", decided - 61), made("skew", "0.2", decided - 30, "sell"),
                     update("plain", "0.1", "10")])
    assert book.position("bot", SCOPE) == D("-0.1")  # the skewed sell's 0.2 and the plain buy's 0.1, not 0.5
    assert book.find("a", "old", SCOPE, False) is None and told == [("a", "bot", SCOPE, "old", True)]
    assert book.open_quantity("a", "bot", SCOPE, "sell") == D("0.3")  # the skewed order's 0.5 asked, 0.2 filled
    book.apply("a", [made("old", "0.5", decided - 61)])  # reported again: nobody's
    assert book.position("bot", SCOPE) == D("-0.1") and len(told) == 1
    store.close()
    again = PositionBook(StateStore(tmp_path / "s.db"), clock)
    assert again.find("a", "old", SCOPE, False) is None and again.position("bot", SCOPE) == D("-0.1")
    # a fleet's other book replays the placement as of its decision, and drops the order on the same report
    mirrored: list[list[object]] = []
    first = PositionBook(None, clock)
    first.mirror = lambda bot, entry: mirrored.append(entry)
    first.placed("a", "bot", (leg(),), ("x",), (made("x", "0.5", decided - 90),), decided=decided)
    other = PositionBook(None, clock)
    for entry in mirrored:
        other.replay(entry, clock.now + 30)  # learned there much later: the decision's time still counts
    assert [first.position("bot", SCOPE), other.position("bot", SCOPE)] == [0, 0]
    assert other.find("a", "x", SCOPE, False) is None and len(mirrored[0]) == 6


def test_an_update_without_scope_applies_to_the_order_keyproxy_saw_placed() -> None:
    book = PositionBook(None, Clock())
    book.placed("a", "bot", (leg(),), ("OABC",))
    book.apply("a", [OrderUpdate("OABC", "", "", None, None, D("1"), D("100"), True)])
    assert book.position("bot", SCOPE) == 1
    book.apply("a", [OrderUpdate("OABC", "spot:ETHUSDT", "buy", None, None, D("2"), D("200"), True)])
    assert book.position("bot", SCOPE) == 1  # the same id about another market: not this order


def test_orders_in_markets_whose_fills_are_not_read_never_enter_the_book() -> None:
    from keyproxy.exchanges.base import OutboundRequest
    from keyproxy.exchanges.okx import Okx
    from keyproxy.proxy.markets import MarketBook
    from keyproxy.proxy.risk import RiskDesk

    desk = RiskDesk(None, MarketBook(Clock()), Clock())
    okx = Okx()
    answer = json.dumps({"code": "0", "data": [{"ordId": "1", "sCode": "0"}]}).encode()
    out = OutboundRequest("POST", "https://www.okx.com", "/api/v5/trade/order", "", {})
    swap = RequestFacts(action="order", symbol="BTCUSDTSWAP", market="swap", side="buy", quantity=D(1), price=D(1))
    spot = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="buy", quantity=D(1), price=D(1))
    ids = okx.placed_order_ids(200, answer)  # as Core.learn reads them, once for both books
    desk.learn("a", okx, ("bot", swap), out, 200, answer, ids)
    assert desk.book.orders.get("a", {}) == {}  # its end could never be learned: it would rest forever
    desk.learn("a", okx, ("bot", spot), out, 200, answer, ids)
    assert list(desk.book.orders["a"]) == ["1"]


def test_hyperliquid_answers_read_as_order_updates_in_the_orders_place() -> None:
    from keyproxy.exchanges.hyperliquid_fills import hyperliquid_order_updates

    sent = json.dumps({"action": {"type": "order", "orders": [{}, {}, {}]}}).encode()
    answer = {"status": "ok", "response": {"type": "order", "data": {"statuses": [
        {"filled": {"totalSz": "0.02", "avgPx": "65000", "oid": 7}}, {"error": "Insufficient margin"},
        {"resting": {"oid": 8}}]}}}
    done, error, resting = hyperliquid_order_updates("/exchange", sent, 200, json.dumps(answer).encode())
    assert (done.order_id, done.filled, done.filled_quote, done.final) == ("7", D("0.02"), D("1300"), True)
    assert error.order_id == ""  # keeps the third order in its place
    assert (resting.order_id, resting.filled, resting.final) == ("8", 0, False)
    cancel = json.dumps({"action": {"type": "cancel", "cancels": [{"a": 0, "o": 8}, {"a": 0, "o": 9}]}}).encode()
    cancelled = {"status": "ok", "response": {"type": "cancel", "data": {"statuses": ["success", {"error": "x"}]}}}
    [c] = hyperliquid_order_updates("/exchange", cancel, 200, json.dumps(cancelled).encode())
    assert (c.order_id, c.final) == ("8", True)
    fills = [{"coin": "BTC", "px": "65000", "sz": "0.01", "side": "B", "oid": 8},
             {"coin": "BTC", "px": "64000", "sz": "0.01", "side": "B", "oid": 8}]
    [f] = hyperliquid_order_updates("/info", b'{"type":"userFills","user":"0x1"}', 200, json.dumps(fills).encode())
    assert (f.order_id, f.side, f.filled, f.filled_quote) == ("8", "buy", D("0.02"), D("1290"))


def test_resting_sizes_and_best_prices_kept_as_orders_change_match_a_recount() -> None:
    """The book keeps each bot's resting size and each side's best price as orders come, fill and end, instead
    of recounting every resting order for every new one (a grid bot's 500 orders made each order walk 500).
    Whatever the sequence, what it keeps must equal a recount of the live orders."""
    import random

    rng, book = random.Random(7), PositionBook(None, Clock())
    bots, filled = ("b1", "b2", "b3"), {}
    for step in range(3000):
        live = [o for o in book.orders.get("a", {}).values() if not o.final]
        if not live or rng.random() < 0.5:
            side = rng.choice(("BUY", "SELL"))
            price = None if rng.random() < 0.1 else str(rng.randint(90, 110))
            book.placed("a", rng.choice(bots), (leg(side, str(rng.randint(1, 5)), price),), (str(step),))
        else:
            o = rng.choice(live)
            done = min(o.quantity or D(0), filled.get(o.order_id, D(0)) + rng.choice((D(0), D(1), D(2))))
            filled[o.order_id] = done
            book.apply("a", [OrderUpdate(o.order_id, SCOPE, o.side, o.price, o.quantity, done, done * 100,
                                         rng.random() < 0.2)])
        live = [o for o in book.orders["a"].values() if not o.final]
        for bot in bots:
            for side in ("buy", "sell"):
                recount = sum((o.remaining for o in live if o.bot == bot and o.side == side), D(0))
                assert book.open_quantity("a", bot, SCOPE, side) == recount, step
        for side, price in (("BUY", "100"), ("SELL", "100")):
            crossing = [o for o in live if o.bot != "b1" and o.price is not None and o.side != side.lower()
                        and (o.price <= 100 if side == "BUY" else o.price >= 100)]
            assert (book.crossed("a", "b1", leg(side, "1", price)) is not None) == bool(crossing), step


def test_a_bot_resting_thousands_of_orders_at_the_market_does_not_slow_every_crossing_check() -> None:
    """The crossing check looks at each other bot's best price, not at every resting order: a bot with 20,000
    sells at 100 made each buy at 100 (its own, or any bot's against them) walk all 20,000 before."""
    import time

    def checks(resting: int) -> float:
        """2,000 crossing checks against `resting` sells of one bot at 100: seconds, the best of three."""
        book = PositionBook(None, Clock())
        for n in range(resting):
            book.placed("a", "grid", (leg("SELL", "1", "100"),), (str(n),))
        book.placed("a", "other", (leg("SELL", "1", "105"),), ("x",))
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(1000):
                assert book.crossed("a", "grid", leg("BUY", "1", "100")) is None  # its own sells: the exchange's STP
                assert book.crossed("a", "taker", leg("BUY", "1", "100")).bot == "grid"  # type: ignore[union-attr]
            best = min(best, time.perf_counter() - started)
        assert book.crossed("a", "grid", leg("BUY", "1", "105")).order_id == "x"  # type: ignore[union-attr]
        return best

    # as fast with 20,000 resting as with one (a walk over them took 20 million steps, ~0.3 s, ~40x): measured
    # against itself, so a loaded machine slows both
    assert checks(20_000) < 3 * checks(1) + 0.02


def test_an_amend_the_exchange_accepted_changes_what_the_order_rests_and_where(tmp_path: Path) -> None:
    """In place: the new size and price (the crossing check forgets the old price); replaced under a new id
    (Kraken's EditOrder): the old order ends, the new one is the bot's; another bot's order is untouched;
    the change survives a restart and replays on another instance of a fleet the same way."""
    store, clock = StateStore(tmp_path / "s.db"), Clock()
    book = PositionBook(store, clock)
    entries: list[list[object]] = []
    book.mirror = lambda bot, entry: entries.append(entry)
    book.placed("a", "mm", (leg("SELL", "1", "100"),), ("1",))
    book.placed("a", "bot", (leg("BUY", "1", "90"), leg("BUY", "1", "80")), ("2", "3"))
    book.amend("a", "bot", [("2", None, D("5"), D("95"), None)])
    assert book.open_quantity("a", "bot", SCOPE, "buy") == 6
    assert book.crossed("a", "mm", leg("SELL", "1", "94")).order_id == "2"  # its new price crosses
    assert book.crossed("a", "mm", leg("SELL", "1", "96")) is None
    book.amend("a", "bot", [("2", None, None, D("70"), "buy")])
    assert book.crossed("a", "mm", leg("SELL", "1", "79")).order_id == "3"  # 2 no longer hides it at 95
    book.amend("a", "bot", [("3", "33", D("2"), D("81"), None)])  # replaced by order 33
    assert book.open_quantity("a", "bot", SCOPE, "buy") == 7 and book.orders["a"]["3"].final
    book.apply("a", [update("33", "2", "162")])
    assert book.position("bot", SCOPE) == 2
    book.amend("a", "bot", [("1", None, D("50"), None, None)])  # mm's order: not this bot's to change
    assert book.open_quantity("a", "mm", SCOPE, "sell") == 1
    book.placed("a", "bot", (leg("BUY", "1", "60"),), ("4",))
    book.amend("a", "bot", [("4", None, D("3"), D("120"), "sell")])  # a modify that turned it (Hyperliquid)
    assert book.open_quantity("a", "bot", SCOPE, "buy") == 5 and book.open_quantity("a", "bot", SCOPE, "sell") == 3
    assert book.crossed("a", "mm", leg("BUY", "1", "121")).order_id == "4"
    book.amend("a", "bot", [("4", None, D("1"), D("120"), "sell")])
    store.close()
    again = PositionBook(StateStore(tmp_path / "s.db"), clock)
    assert again.open_quantity("a", "bot", SCOPE, "buy") == 5 and again.position("bot", SCOPE) == 2
    assert again.open_quantity("a", "bot", SCOPE, "sell") == 1
    other = PositionBook(None, clock)
    for entry in entries:  # as a fleet's stream carries them
        other.replay(decode(encode(entry)), clock.now)
    assert other.open_quantity("a", "bot", SCOPE, "buy") == 5 and other.position("bot", SCOPE) == 2
    assert other.crossed("a", "mm", leg("SELL", "1", "70")).order_id == "2"


def test_a_fill_that_arrives_before_its_orders_placement_is_held_for_it() -> None:
    """A user-stream fill often beats the order's own answer, and in a fleet the bot's stream may run through
    another instance than the one that placed the order (the review's finding 9): the update was dropped, so
    the fill waited for reconciliation. It is held now (HOLD_S) and applied when the placement arrives; in a
    fleet the instance that held it passes it on, so the placing instance learns it too."""
    from keyproxy.proxy.positions import HOLD_S

    clock = Clock()
    book = PositionBook(None, clock)
    book.apply("a", [update("1", "0.4", "40")])  # the stream's fill, before the answer
    book.placed("a", "bot", (leg(),), ("1",))
    assert book.position("bot", SCOPE) == D("0.4") and book.open_quantity("a", "bot", SCOPE, "buy") == D("0.6")
    book.apply("a", [update("2", "1", "100")])
    clock.now += HOLD_S + 1  # its placement never came: the order stays nobody's
    book.apply("a", [update("3", "1", "100")])
    book.placed("a", "bot", (leg(),), ("2",))
    assert book.position("bot", SCOPE) == D("0.4")

    placing, streaming = PositionBook(None, clock), PositionBook(None, clock)
    sent: dict[str, list[list[object]]] = {"placing": [], "streaming": []}
    placing.mirror = lambda bot, entry: sent["placing"].append(entry)
    streaming.mirror = lambda bot, entry: sent["streaming"].append(entry)
    streaming.apply("a", [update("9", "1", "100", final=True)])  # B: the fill, before A's entry
    placing.placed("a", "bot", (leg(),), ("9",))  # A: the answer said NEW
    for entry in sent["placing"]:
        streaming.replay(decode(encode(entry)), clock.now)
    assert streaming.position("bot", SCOPE) == 1
    for entry in sent["streaming"]:
        placing.replay(decode(encode(entry)), clock.now)
    assert placing.position("bot", SCOPE) == 1 and placing.open_quantity("a", "bot", SCOPE, "buy") == 0


def test_a_replacing_amend_keeps_a_size_and_takes_what_was_held_for_it() -> None:
    """Review of session 14: a Kraken EditOrder of the price alone, answered with a new id, booked the new order
    with no size (resting 0); a stream fill of the new order that came before the answer was held and never
    applied; and a held cancel could be replaced by an older partial fill, losing its end."""
    book = PositionBook(None, Clock())
    book.placed("a", "bot", (leg("BUY", "1", "100"),), ("OLD",))
    book.apply("a", [update("NEW", "0.4", "40")])  # the stream: the replacing order filled 0.4, before the answer
    book.amend("a", "bot", [("OLD", "NEW", None, D("101"), None)])
    assert book.position("bot", SCOPE) == D("0.4") and book.open_quantity("a", "bot", SCOPE, "buy") == D("0.6")
    book.placed("a", "bot", (leg("BUY", "1", "100"),), ("X",))
    book.apply("a", [update("Y", "0.3", "30", final=True), update("Y", "0.3", "30")])  # a cancel, then older news
    book.placed("a", "bot", (leg("BUY", "1", "100"),), ("Y",))
    assert book.orders["a"]["Y"].final and book.open_quantity("a", "bot", SCOPE, "buy") == D("1.6")


def test_two_amend_legs_naming_one_order_take_its_size_out_of_the_resting_once() -> None:
    from keyproxy.policy.model import BotPolicy
    from keyproxy.proxy.markets import MarketBook
    from keyproxy.proxy.registry import BotEntry
    from keyproxy.proxy.risk import RiskDesk
    from keyproxy.vault.records import BotInfo

    desk = RiskDesk(None, MarketBook(Clock()), Clock())
    desk.book.placed("a", "bot", (leg("BUY", "1", "100"), leg("BUY", "1", "99")), ("A", "B"))
    entry = BotEntry(BotInfo("bot", "a", "hmac", "hmac", "k", ("read", "trade"), (), "active", 0.0, None), None, None,
                     (), BotPolicy(scopes=("read", "trade"), max_position=D("3")))
    twice = RequestFacts(action="amend", orders=(
        RequestFacts(action="amend", symbol="BTCUSDT", market="spot", order_id="A", quantity=D("1"), price=D("100")),
        RequestFacts(action="amend", symbol="BTCUSDT", market="spot", order_id="A", quantity=D("3"), price=D("100"))))
    view = desk.view("a", entry, None, twice, Clock.now)
    assert view.open_buy == {SCOPE: D("1")}  # B still rests; A counts as what each leg leaves behind


def test_what_a_triggered_conditional_order_became_is_its_bots_whatever_arrives_first() -> None:
    """A Binance algo order rests in the book at its size with no price; the update naming the order it became
    (`spawned`) books that order as the same bot's, its fills moving the position, whether that update comes
    before the algo order's own placement is learned (a stream is quicker than the answer: session 29's review) and
    whether the child's fill came before it was known. Replayed through a fleet entry, the same."""
    usdm = "usdm:BTCUSDT"
    algo = RequestFacts(action="order", market="usdm", symbol="BTCUSDT", side="BUY", quantity=D("0.015"))
    fill = OrderUpdate("881@" + usdm, usdm, "buy", None, D("0.015"), D("0.015"), D("315"), True)
    triggered = OrderUpdate("algo#7", usdm, "buy", None, D("0.015"), D(0), D(0), True, "881@" + usdm)
    for order in ([fill, triggered], [triggered, fill]):
        book, spawned = PositionBook(None, Clock()), []
        book.on_spawn = lambda *args: spawned.append(args)  # type: ignore[misc]
        for update in order:
            book.apply("a", [update])  # held: neither order is in the book yet
        assert book.open_quantity("a", "bot", usdm, "buy") == 0 and book.position("bot", usdm) == 0
        book.placed("a", "bot", (algo,), ("algo#7",))
        assert spawned == [("a", "bot", usdm, "881@" + usdm)]
        assert book.position("bot", usdm) == D("0.015") and book.open_quantity("a", "bot", usdm, "buy") == 0
    book, spawned = PositionBook(None, Clock()), []
    book.on_spawn = lambda *args: spawned.append(args)  # type: ignore[misc]
    stale = OrderUpdate("algo#7", usdm, "buy", None, D("0.015"), D(0), D(0), False)  # a NEW, after the TRIGGERED
    book.apply("a", [triggered])
    book.apply("a", [stale])  # merged while held: what it became is kept
    book.placed("a", "bot", (algo,), ("algo#7",))
    assert spawned == [("a", "bot", usdm, "881@" + usdm)]
    book = PositionBook(None, Clock())
    book.placed("a", "bot", (algo,), ("algo#7",))
    assert book.open_quantity("a", "bot", usdm, "buy") == D("0.015")  # untriggered: its size rests
    book.replay(decode(encode(["a", "a", [triggered], False])), 0.0)  # as another instance of a fleet learned it
    assert book.find("a", "881", usdm, True) is not None and book.find("a", "881", usdm, True).bot == "bot"
    book.apply("a", [OrderUpdate("algo#7", "usdm:ETHUSDT", "buy", None, None, D(0), D(0), True, "99@usdm:ETHUSDT")])
    assert book.find("a", "99", "usdm:ETHUSDT", True) is None  # another symbol's algo order 7: not this one


def test_reports_of_a_coinbase_alias_order_reach_the_book_it_was_booked_on() -> None:
    """Coinbase trades BTC-USDC on BTC-USD's book: an order booked under the book's name takes a report under either
    product; one booked under its own product's name (before session 31) keeps taking reports under that name."""
    from dataclasses import replace

    from keyproxy.emulator.coinbase_data import products_doc
    from keyproxy.exchanges.coinbase import Coinbase
    from keyproxy.proxy.markets import MarketBook
    from keyproxy.proxy.risk import RiskDesk

    markets = MarketBook(Clock())
    markets.learn("cb", Coinbase(), "/api/v3/brokerage/market/products", json.dumps(products_doc(None)).encode())
    desk = RiskDesk(None, markets, Clock())
    leg = RequestFacts(action="order", symbol="BTCUSD", market="spot", side="BUY", quantity=Decimal("1"),
                       price=Decimal("1"))
    old = replace(leg, symbol="BTCUSDC")
    desk.book.placed("cb", "bot", (leg, old), ("new-1", "old-1"))
    fills = (OrderUpdate("new-1", "spot:BTCUSDC", "buy", None, None, Decimal("1"), Decimal("1"), True),
             OrderUpdate("old-1", "spot:BTCUSDC", "buy", None, None, Decimal("1"), Decimal("1"), True))
    desk.book.apply("cb", desk._on_books("cb", fills))
    assert desk.book.orders["cb"]["new-1"].final and desk.book.orders["cb"]["old-1"].final


def test_a_stops_edited_trigger_is_never_booked_as_its_price() -> None:
    """Session 32's regression review: the book kept a Kraken stop edited once (EditOrder's one price, its trigger)
    as a limit order at that trigger, so a second edit was read as a limit's, and other bots' orders crossed a
    price the stop never rests at. The replacing order rests with no price, as the stop it replaced."""
    from keyproxy.exchanges.base import OutboundRequest
    from keyproxy.exchanges.kraken import Kraken
    from keyproxy.proxy.markets import MarketBook
    from keyproxy.proxy.risk import RiskDesk

    clock = Clock()
    desk, kraken = RiskDesk(None, MarketBook(clock), clock), Kraken()
    stop = RequestFacts(action="order", symbol="XBTUSD", market="spot", side="BUY", order_type="STOP-LOSS",
                        quantity=D("0.01"), trigger_price=D("65000"))
    add = OutboundRequest("POST", "https://x", "/0/private/AddOrder", "", {}, b"")
    desk.learn("a", kraken, ("bot", stop), add, 200, b'{"error":[],"result":{"txid":["OAAAAA-BBBBB-CCCCCC"]}}',
               ("OAAAAA-BBBBB-CCCCCC",))
    assert desk.book.orders["a"]["OAAAAA-BBBBB-CCCCCC"].price is None
    edit = RequestFacts(action="amend", symbol="XBTUSD", market="spot", quantity=D("0.01"), price=D("64000"),
                        order_id="OAAAAA-BBBBB-CCCCCC", price_or_trigger=True)
    answer = (b'{"error":[],"result":{"status":"ok","txid":"ODDDDD-EEEEE-FFFFFF","originaltxid":"OAAAAA-BBBBB-CCCCCC",'
              b'"volume":"0.01","price":"64000","orders_cancelled":1}}')
    out = OutboundRequest("POST", "https://x", "/0/private/EditOrder", "", {}, b"")
    desk.learn("a", kraken, ("bot", edit), out, 200, answer, kraken.placed_order_ids(200, answer))
    replaced = desk.book.orders["a"]["ODDDDD-EEEEE-FFFFFF"]
    assert (replaced.price, replaced.side, replaced.bot) == (None, "buy", "bot")
