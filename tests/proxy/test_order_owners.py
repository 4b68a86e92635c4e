"""OrderOwners' cancel-all judgement where the positions book does not hold the market's orders."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.okx import Okx
from keyproxy.exchanges.open_orders import Resting
from keyproxy.policy.model import RequestFacts, normalize_symbol
from keyproxy.exchanges.base import OutboundRequest
from keyproxy.proxy.market_data import not_found, shows
from keyproxy.proxy.order_owners import LISTING_REUSE_MS, NeedOrders, NeedResting, OrderOwners, id_forms
from keyproxy.proxy.positions import PositionBook
from keyproxy.proxy.refusal import Refused
from keyproxy.state import StateStore, client_key, placed_key


def owners_on(tmp_path: Path) -> tuple[OrderOwners, StateStore]:
    store = StateStore(tmp_path / "state.db")
    return OrderOwners(None, store, PositionBook(None, lambda: 0.0), lambda: 0), store


def test_an_options_cancel_all_is_refused_once_another_bot_placed_an_options_order(tmp_path: Path) -> None:
    """Binance options' open orders are not listed by keyproxy: a cancel-all there is refused once another bot
    placed an order of that symbol through keyproxy (finished or not: keyproxy cannot tell)."""
    owners, store = owners_on(tmp_path)
    symbol = normalize_symbol("BTC-261225-100000-C")
    cancel_all = RequestFacts(action="cancel", symbol=symbol, market="option", cancels_all=True)
    owners.only_own("acct", Binance(), "b", cancel_all)  # nobody placed any: it passes
    store.record_placed_orders("acct", "a", "option", (placed_key("7", f"option:{symbol}"),), 1.0)
    owners.only_own("acct", Binance(), "a", cancel_all)  # the placer's own
    with pytest.raises(Refused, match="bot 'a' has orders resting there"):
        owners.only_own("acct", Binance(), "b", cancel_all)
    owners.only_own("acct", Binance(), "b", RequestFacts(action="cancel", symbol=normalize_symbol("ETH-261225-5000-C"),
                                                         market="option", cancels_all=True))  # another symbol's


def test_a_cancel_all_outside_the_book_asks_for_a_listing_and_is_judged_on_it(tmp_path: Path) -> None:
    """A cancel-all asks for a listing unless one was asked for since the account's last order change and within
    LISTING_REUSE_MS; the decision reads what rests in its scope (market and symbol) and who placed each, resumed on
    the listing it asked for (never another one held, however old: session 31's review); a failed listing refuses."""
    now = [0]
    store = StateStore(tmp_path / "state.db")
    owners = OrderOwners(None, store, PositionBook(None, lambda: 0.0), lambda: now[0])
    okx = Okx()
    cancel_all = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USDT-SWAP"), market="swap",
                              cancels_all=True)
    with pytest.raises(NeedResting) as need:
        owners.only_own("acct", okx, "b", cancel_all, request_id="c1")
    assert need.value.market == "swap" and need.value.markets == frozenset({"swap"})
    assert need.value.request_id == "c1" and not need.value.own
    store.record_placed_orders("acct", "a", "swap", ("11", "12"), 1.0)
    owners.learn_resting(need.value, (Resting("spot", "BTC-USDT", "11"), Resting("swap", "ETH-USDT-SWAP", "12")), 0)
    owners.only_own("acct", okx, "b", cancel_all, request_id="c1")  # another market's, another symbol's: not in scope
    owners.learn_resting(need.value, (Resting("swap", "BTC-USDT-SWAP", "12"),), 0)
    with pytest.raises(Refused, match="bot 'a' has orders resting there"):
        owners.only_own("acct", okx, "b", cancel_all, request_id="c1")
    owners.only_own("acct", okx, "a", cancel_all, request_id="c2")  # the placer's own (a fresh listing, reused)
    now[0] = LISTING_REUSE_MS - 1
    with pytest.raises(Refused, match="bot 'a'"):
        owners.only_own("acct", okx, "b", cancel_all, request_id="c3")  # reused: no order placed since, and recent
    owners.changed("acct")  # an order placed or cancelled through keyproxy since: listed anew
    with pytest.raises(NeedResting) as later:
        owners.only_own("acct", okx, "b", cancel_all, request_id="c4")
    owners.learn_resting(need.value, (), now[0])  # a listing asked for before that change never replaces it...
    owners.learn_resting(later.value, None, now[0])  # ...a failed one asked for after it does, and refuses
    with pytest.raises(Refused, match="could not list") as refused:
        owners.only_own("acct", okx, "b", cancel_all, request_id="c4")
    assert refused.value.code == "unavailable"
    now[0] += LISTING_REUSE_MS  # too old to reuse, even by a decision resumed for another reason
    with pytest.raises(NeedResting):
        owners.only_own("acct", okx, "b", cancel_all, request_id="c5")
    every = RequestFacts(action="cancel", cancels_all=True)  # cancel-all-after: every market of the account
    with pytest.raises(NeedResting) as need:
        owners.only_own("acct", okx, "b", every, request_id="c6")
    assert need.value.market == "*" and need.value.markets == frozenset({"swap"})
    owners.learn_resting(need.value, (Resting("swap", "ETH-USDT-SWAP", "12"),), now[0])
    with pytest.raises(Refused, match="bot 'a'"):
        owners.only_own("acct", okx, "b", every, request_id="c6")
    spot = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USDT"), market="spot", cancels_all=True)
    owners.only_own("acct", okx, "b", spot)  # spot: the positions book holds OKX spot orders, and none rests
    # a decision that joined a listing on its way: decided on what it listed
    owners.changed("acct")
    with pytest.raises(NeedResting) as joiner:
        owners.only_own("acct", okx, "b", every, request_id="c7")
    owners.learn_resting(joiner.value, (Resting("swap", "ETH-USDT-SWAP", "12"),), now[0])
    joiner.value.request_id = "c8"
    owners.joined(joiner.value)
    with pytest.raises(Refused, match="bot 'a'"):
        owners.only_own("acct", okx, "b", every, request_id="c8")


def test_a_bot_cancels_and_amends_only_its_own_okx_algo_orders(tmp_path: Path) -> None:
    """An algo order's algoId is recorded as its placer's from the `order-algo` answer (an unread trade request,
    attributed for a bot no trading limit binds), so another bot's `cancel-algos` or `amend-algos` naming it is
    refused; the placer's own passes."""
    owners, _ = owners_on(tmp_path)
    okx = Okx()
    placed = RequestFacts(action=None, symbol=normalize_symbol("BTC-USDT-SWAP"))
    answer = b'{"code":"0","data":[{"algoId":"881","algoClOrdId":"","sCode":"0","sMsg":""}]}'
    assert okx.placed_order_ids(200, answer) == ("algo#881",)  # an id space of its own (session 30)
    owners.attribute("acct", okx, ("a", placed), okx.placed_order_ids(200, answer), new_only=True)
    cancel = RequestFacts(action="cancel", symbol=placed.symbol, market="swap", cancels=("algo#881",))
    with pytest.raises(Refused, match="order algo#881 was placed by another bot"):
        owners.only_own("acct", okx, "b", cancel)
    with pytest.raises(Refused, match="order algo#881 was placed by another bot"):
        owners.only_own("acct", okx, "b", RequestFacts(action=None, touches=("algo#881",)))
    owners.only_own("acct", okx, "a", cancel)
    owners.only_own("acct", okx, "a", RequestFacts(action=None, touches=("algo#881",)))
    # an order 881 (ordId) is another order: nobody's (once a listing showed no stop of another bot's made it)
    plain = RequestFacts(action="cancel", symbol=placed.symbol, market="swap", cancels=("881",))
    with pytest.raises(NeedResting) as need:
        owners.only_own("acct", okx, "b", plain, request_id="r1")
    owners.learn_resting(need.value, (), 0)
    owners.only_own("acct", okx, "b", plain, request_id="r1")
    # recorded bare by a version before session 30: still its placer's, in any form the exchange may read
    owners.attribute("acct", okx, ("a", placed), ("882",), new_only=True)
    for named in ("algo#882", "algo#0882"):
        with pytest.raises(Refused, match="placed by another bot"):
            owners.only_own("acct", okx, "b", RequestFacts(action="cancel", market="swap", cancels=(named,)))


def test_a_cancel_of_orders_no_listing_shows_is_refused_once_another_bot_placed_in_its_scope(tmp_path: Path) -> None:
    """Session 20's review: a Binance conditional or algo cancel-all was judged by the positions book and the
    listing, which never hold conditional orders, so it removed another bot's stops. Now refused once another bot
    placed anything in its scope through keyproxy (finished or not)."""
    owners, store = owners_on(tmp_path)
    conditional = RequestFacts(action="cancel", symbol="BTCUSDT", market="usdm", cancels_all=True,
                               cancels_unlisted=True)
    owners.only_own("acct", Binance(), "b", conditional)  # nobody else placed there
    store.record_placed_orders("acct", "a", "usdm", (placed_key("5", "usdm:ETHUSDT"),), 1.0)
    owners.only_own("acct", Binance(), "b", conditional)  # another symbol's
    store.record_placed_orders("acct", "a", "usdm", (placed_key("6", "usdm:BTCUSDT"),), 1.0)
    with pytest.raises(Refused, match="bot 'a' places orders there"):
        owners.only_own("acct", Binance(), "b", conditional)
    owners.only_own("acct", Binance(), "a", conditional)  # the placer's own scope: its own to clear
    spread = RequestFacts(action="cancel", cancels_all=True, cancels_unlisted=True)  # OKX sprd, every market
    store.record_placed_orders("acct2", "a", "swap", ("9",), 1.0)
    with pytest.raises(Refused, match="bot 'a'"):
        owners.only_own("acct2", Okx(), "b", spread)


def test_another_bots_order_named_in_a_form_the_exchange_may_read_as_the_same_is_refused(tmp_path: Path) -> None:
    """Session 20's review left it unconfirmed whether OKX reads a padded `ordId` / `algoId` (`0881`) as 881, or
    an exchange a UUID or txid without regard to case. keyproxy compared exact strings, so if one does, a bot
    cancelled or amended another bot's order by writing its id so. The owner is now looked up under those forms
    too (exchange ids; never client ids, which are the bots' own text)."""
    owners, store = owners_on(tmp_path)
    okx = Okx()
    store.record_placed_orders("acct", "a", "swap", ("881", "7d4c2a1e-90ab-4cde-8f00-123456789abc"), 1.0)
    for named in ("0881", "00881", " 881", "+881", "\uff18\uff18\uff11", "7D4C2A1E-90AB-4CDE-8F00-123456789ABC"):
        cancel = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USDT-SWAP"), market="swap",
                              cancels=(named,))
        with pytest.raises(Refused, match="placed by another bot"):
            owners.only_own("acct", okx, "b", cancel)
        owners.only_own("acct", okx, "a", cancel)  # the placer's own, however written
        amend = RequestFacts(action=None, symbol=normalize_symbol("BTC-USDT-SWAP"), market="swap", touches=(named,))
        with pytest.raises(Refused, match="placed by another bot"):
            owners.only_own("acct", okx, "b", amend)
    other = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USDT-SWAP"), market="swap", cancels=("8810",))
    with pytest.raises(NeedResting) as need:  # another order: nobody's, once a listing showed no stop made it
        owners.only_own("acct", okx, "b", other, request_id="r1")
    owners.learn_resting(need.value, (), 0)
    owners.only_own("acct", okx, "b", other, request_id="r1")
    assert id_forms("0") == ("0",) and id_forms("000") == ("000", "0") and id_forms("abc") == ("abc", "ABC")
    store.record_placed_orders("acct", "a", "swap", (placed_key(client_key("AbC"), None),), 1.0)
    assert owners.client_owner("acct", okx, "AbC", "swap:BTC-USDT-SWAP") == "a"
    assert owners.client_owner("acct", okx, "abc", "swap:BTC-USDT-SWAP") is None  # client ids: exact text


def test_a_listing_sent_before_an_order_was_learned_keeps_counting_that_order(tmp_path: Path) -> None:
    """Session 22's review: an open-orders listing sets the bot's count as the exchange saw it when it answered; an
    order learned open after the listing was decided (the exchange may not list it: the bot held the listing's answer
    back, or the two crossed) used to be forgotten, freeing a place under `max_open_orders` while the order rested."""
    from decimal import Decimal

    from keyproxy.exchanges.base import OutboundRequest
    from keyproxy.usage import UsageBook

    store = StateStore(tmp_path / "state.db")
    usage = UsageBook(store)
    owners = OrderOwners(usage, store, PositionBook(None, lambda: 0.0), lambda: 0)
    binance, symbol = Binance(), normalize_symbol("BTCUSDT")
    order = RequestFacts(action="order", symbol=symbol, market="spot", side="BUY", order_type="LIMIT",
                         quantity=Decimal("0.01"), price=Decimal("20000"))
    place = OutboundRequest("POST", "https://api.binance.com", "/api/v3/order", "", {}, b"symbol=BTCUSDT")
    listing = OutboundRequest("GET", "https://api.binance.com", "/api/v3/openOrders", "symbol=BTCUSDT", {})
    placed = b'{"symbol":"BTCUSDT","orderId":5,"status":"NEW"}'
    mark = owners.opens_mark("b")  # the listing decided: then the order's answer is learned, then the listing's
    owners.track_open_orders("acct", binance, ("b", order), place, 200, placed, owners.opens_mark("b"))
    assert usage.open_orders("b") == 1
    owners.track_open_orders("acct", binance, ("b", RequestFacts()), listing, 200, b"[]", mark)
    assert usage.open_orders("b") == 1  # the listing could not show it: still counted
    owners.track_open_orders("acct", binance, ("b", RequestFacts()), listing, 200, b"[]", owners.opens_mark("b"))
    assert usage.open_orders("b") == 0  # a listing decided after it: believed
    for _ in range(600):  # more opens since the listing than are remembered: it may only raise the count
        owners.track_open_orders("acct", binance, ("b", order), place, 200, placed, None)
    owners.track_open_orders("acct", binance, ("b", RequestFacts()), listing, 200, b"[]", mark)
    assert usage.open_orders("b") == 600


def test_keyproxys_own_listing_sets_a_bots_conditional_count(tmp_path: Path) -> None:
    """The risk watch's whole listing of an account's algo orders (session 30: a triggered stop ends in no answer to
    its bot): the bot's count becomes the listed orders on record as its own, plus the bot's orders learned open
    since the listing was asked for. Orders of no known owner (a stop placed on the exchange's site) count only as
    far as the bot placed orders whose answer named none; a cancel decided before the listing, of an order the
    listing no longer showed, frees no place again."""
    from keyproxy.exchanges.base import OutboundRequest
    from keyproxy.usage import UsageBook

    store = StateStore(tmp_path / "state.db")
    usage = UsageBook(store)
    now = [0]
    owners = OrderOwners(usage, store, PositionBook(None, lambda: 0.0), lambda: now[0])
    okx = Okx()
    owners.attribute("acct", okx, ("a", RequestFacts(action="order")), ("algo#1", "algo#2", "algo#5"), new_only=True)
    owners.attribute("acct", okx, ("b", RequestFacts(action="order")), ("algo#3",), new_only=True)
    usage.change_open_orders("a", "algo:*", 5)  # some of them triggered since
    order = RequestFacts(action="order", symbol="BTCUSDT", market="spot")
    placed = OutboundRequest("POST", "https://www.okx.com", "/api/v5/trade/order-algo", "", {}, b"{}")
    owners.recount("acct", okx, "a", "algo:*", ["algo#1", "algo#3", "algo#9", "algo#5"], owners.opens_mark("a"), 10)
    assert usage.scope_open_orders("a", "algo:*") == 2  # its own two: not another bot's, nor one nobody placed
    # an order whose answer named no id (OKX 50004: its fate unknown) may be among those of no known owner
    owners.track_open_orders("acct", okx, ("a", order), placed, 200, b'{"code":"50004","msg":"timeout","data":[]}')
    assert usage.scope_open_orders("a", "algo:*") == 3
    owners.recount("acct", okx, "a", "algo:*", ["algo#1", "algo#9", "algo#5"], owners.opens_mark("a"), 20)
    assert usage.scope_open_orders("a", "algo:*") == 3  # its two, and the one of no known owner
    owners.recount("acct", okx, "a", "algo:*", ["algo#1", "algo#5"], owners.opens_mark("a"), 30)
    assert usage.scope_open_orders("a", "algo:*") == 2  # none of no known owner rests: it was not placed
    mark = owners.opens_mark("a")
    owners.track_open_orders("acct", okx, ("a", order), placed, 200,
                             b'{"code":"0","data":[{"algoId":"4","sCode":"0"}]}', mark)  # learned after it was asked
    owners.attribute("acct", okx, ("a", order), ("algo#4",))
    assert usage.scope_open_orders("a", "algo:*") == 3
    now[0] = 40  # the listing answered and the count set at 40
    owners.recount("acct", okx, "a", "algo:*", ["algo#1", "algo#5"], mark, 38)
    assert usage.scope_open_orders("a", "algo:*") == 3  # the listing may not have shown the new one: counted
    # cancels decided at 35 (before the count was set) and answered after it: the listing showed #1 (its place is
    # freed now), not #2 (already left out: not freed twice); a cancel OKX refused (sCode 51400) frees nothing
    cancel = RequestFacts(action="cancel", symbol="BTCUSDT", market="spot", cancels=("algo#2",))
    for named, freed in (("2", 0), ("1", 1)):
        body = json.dumps([{"algoId": named, "instId": "BTC-USDT"}]).encode()
        out = OutboundRequest("POST", "https://www.okx.com", "/api/v5/trade/cancel-algos", "", {}, body)
        before = usage.scope_open_orders("a", "algo:*")
        owners.track_open_orders("acct", okx, ("a", cancel), out, 200,
                                 json.dumps({"code": "0", "data": [{"algoId": named, "sCode": "0"}]}).encode(),
                                 owners.opens_mark("a"), 35)
        assert before - usage.scope_open_orders("a", "algo:*") == freed, named
    # padded with the bot's own resting #5, which OKX refused (a wrong instId): #2's place is not freed by it
    body = json.dumps([{"algoId": "2", "instId": "BTC-USDT"}, {"algoId": "5", "instId": "ETH-USDT"}]).encode()
    out = OutboundRequest("POST", "https://www.okx.com", "/api/v5/trade/cancel-algos", "", {}, body)
    before = usage.scope_open_orders("a", "algo:*")
    owners.track_open_orders("acct", okx, ("a", cancel), out, 200, json.dumps(
        {"code": "2", "data": [{"algoId": "2", "sCode": "0"}, {"algoId": "5", "sCode": "51400"}]}).encode(),
        owners.opens_mark("a"), 35)
    assert usage.scope_open_orders("a", "algo:*") == before


def test_a_cancel_naming_one_order_twice_frees_one_place(tmp_path: Path) -> None:
    """Session 30's review: a batch cancel naming one order twice (`5` and `05`), each leg answered as cancelled,
    freed two places under the bot's max_open_orders while its other order rested. A cancel frees at most one place
    per order it names."""
    from keyproxy.exchanges.base import OutboundRequest
    from keyproxy.usage import UsageBook

    store = StateStore(tmp_path / "state.db")
    usage = UsageBook(store)
    owners = OrderOwners(usage, store, PositionBook(None, lambda: 0.0), lambda: 0)
    store.record_placed_orders("acct", "a", "usdm", (placed_key("5", "usdm:BTCUSDT"),), 1.0)
    usage.change_open_orders("a", "usdm:BTCUSDT", 2)
    cancel = RequestFacts(action="cancel", symbol="BTCUSDT", market="usdm", cancels=("5", "05"))
    out = OutboundRequest("DELETE", "https://fapi.binance.com", "/fapi/v1/batchOrders",
                          "symbol=BTCUSDT&orderIdList=%5B5%2C05%5D", {}, b"")
    answer = json.dumps([{"symbol": "BTCUSDT", "orderId": 5, "status": "CANCELED"}] * 2).encode()
    owners.track_open_orders("acct", Binance(), ("a", cancel), out, 200, answer)
    assert usage.scope_open_orders("a", "usdm:BTCUSDT") == 1


def test_a_confirmed_cancel_of_a_stop_forgets_its_record(tmp_path: Path) -> None:
    """Session 30's review: stops placed and cancelled in a loop filled the account's record until the bot's resting
    stops' entries were pruned. A stop's record goes once a cancel's answer confirms it gone (not one OKX refused)."""
    from keyproxy.exchanges.base import OutboundRequest

    owners, store = owners_on(tmp_path)
    okx = Okx()
    owners.attribute("acct", okx, ("a", RequestFacts(action="order")), ("algo#1", "algo#2"), new_only=True)
    body = json.dumps([{"algoId": "1", "instId": "BTC-USDT"}, {"algoId": "2", "instId": "BTC-USDT"}]).encode()
    out = OutboundRequest("POST", "https://www.okx.com", "/api/v5/trade/cancel-algos", "", {}, body)
    answer = json.dumps({"code": "2", "data": [{"algoId": "1", "sCode": "0"}, {"algoId": "2", "sCode": "51400"}]})
    cancel = RequestFacts(action="cancel", cancels=("algo#1", "algo#2"))
    owners.forget_cancelled("acct", okx, "b", cancel, out, 200, answer.encode())  # not b's to remove
    assert store.placed_owner("acct", ("algo#1",)) == "a"
    owners.forget_cancelled("acct", okx, "a", RequestFacts(action="cancel", cancels=("5",)), out, 200,
                            answer.encode())  # a cancel naming no algo order: its answer is not read for them
    assert store.placed_owner("acct", ("algo#1",)) == "a"
    owners.forget_cancelled("acct", okx, "a", cancel, out, 200, answer.encode())
    assert store.placed_owner("acct", ("algo#1",)) is None and store.placed_owner("acct", ("algo#2",)) == "a"


def test_a_resting_order_is_a_stops_bots_only_under_the_stops_own_client_id(tmp_path: Path) -> None:
    """Session 30's third review: a bot guessing another bot's plain client id and placing under it first was
    recorded as the owner of the order the other bot's stop became. The stop's own form (`cid:algo#X`, which only
    an algo placement writes) names the owner, and the plain form, if on record, must name the same bot."""
    from keyproxy.exchanges.base import OutboundRequest

    owners, store = owners_on(tmp_path)
    binance = Binance()
    listing = OutboundRequest("GET", "https://fapi.binance.com", "/fapi/v1/openOrders", "symbol=BTCUSDT", {}, b"")
    rows = [{"symbol": "BTCUSDT", "orderId": 7, "clientOrderId": "x1", "status": "NEW"},
            {"symbol": "BTCUSDT", "orderId": 8, "clientOrderId": "x2", "status": "NEW"},
            {"symbol": "BTCUSDT", "orderId": 9, "clientOrderId": "x3", "status": "NEW"}]
    store.record_placed_orders("acct", "a", "usdm", (client_key("algo#x1"), placed_key(client_key("x1"),
                                                                                       "usdm:BTCUSDT")), 1.0)
    store.record_placed_orders("acct", "b", "usdm", (placed_key(client_key("x2"), "usdm:BTCUSDT"),), 1.0)
    store.record_placed_orders("acct", "a", "usdm", (client_key("algo#x3"),), 1.0)
    store.record_placed_orders("acct", "b", "usdm", (placed_key(client_key("x3"), "usdm:BTCUSDT"),), 2.0)
    owners.learn_resting_clients("acct", binance, listing, 200, json.dumps(rows).encode())
    assert store.placed_owner("acct", (placed_key("7", "usdm:BTCUSDT"),)) == "a"  # the stop's
    assert store.placed_owner("acct", (placed_key("8", "usdm:BTCUSDT"),)) is None  # no stop's client id
    assert store.placed_owner("acct", (placed_key("9", "usdm:BTCUSDT"),)) is None  # two bots: nobody's


def test_a_cancel_of_an_order_of_no_owner_where_stops_become_orders_asks_the_exchange_first(tmp_path: Path) -> None:
    """Where a triggered stop becomes an order of its own (OKX, Binance futures), an order named by an id keyproxy
    has no owner for may be what another bot's stop became: keyproxy asks about it itself first, once per decision
    (Binance futures and OKX spot: the one order; OKX swaps: the account's resting orders), and the stop it came from
    (Binance's client id, OKX's algoId) names its owner; a failed ask refuses; an order no stop made passes as one
    placed outside keyproxy. Orders with an owner, and markets where no order is spawned, need no ask. Cancelling
    what a stop became frees no place: the bot's count never held it."""
    now = [0]
    store = StateStore(tmp_path / "state.db")
    owners = OrderOwners(None, store, PositionBook(None, lambda: 0.0), lambda: now[0])
    okx = Okx()
    store.record_placed_orders("acct", "a", "swap", ("algo#881",), 1.0)
    cancel = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USDT-SWAP"), market="swap", cancels=("77",))
    with pytest.raises(NeedResting) as need:
        owners.only_own("acct", okx, "b", cancel, request_id="r1")
    assert need.value.market == "*" and need.value.request_id == "r1"
    owners.learn_resting(need.value, (Resting("swap", "BTC-USDT-SWAP", "77", parent="algo#881"),
                                      Resting("swap", "BTC-USDT-SWAP", "78")), now[0])
    with pytest.raises(Refused, match="order 77 was placed by another bot"):
        owners.only_own("acct", okx, "b", cancel, request_id="r1")
    assert owners.only_own("acct", okx, "a", cancel, request_id="r2") is False  # the stop's bot's now: no ask
    other = RequestFacts(action="cancel", symbol=cancel.symbol, market="swap", cancels=("78",))
    with pytest.raises(NeedResting):  # a listing another decision asked for is not this one's
        owners.only_own("acct", okx, "b", other, request_id="r3")
    owners.asked("r3", "*", "shown")
    assert owners.only_own("acct", okx, "b", other, request_id="r3") is True  # no stop made it: placed outside
    with pytest.raises(NeedResting) as need:
        owners.only_own("acct", okx, "b", other, request_id="r4")
    owners.learn_resting(need.value, None, now[0])
    with pytest.raises(Refused, match="could not ask") as failed:
        owners.only_own("acct", okx, "b", other, request_id="r4")
    assert failed.value.code == "unavailable"
    owners.asked("r4b", "orders", "missing")  # the exchange answered, and showed no such order: nothing is sent
    with pytest.raises(Refused, match="shows no order 78") as missing:
        owners.only_own("acct", okx, "b", other, request_id="r4b")
    assert missing.value.code == "bad_request"
    # a batch across markets names its first leg's scope: the ids are the account's, so any market is asked about
    batch = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USD-250328-60000-C"), market="option",
                         cancels=("79",))
    with pytest.raises(NeedResting):
        owners.only_own("acct", okx, "b", batch, request_id="r5")
    spot = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USDT"), market="spot", cancels=("80",))
    with pytest.raises(NeedOrders) as query:  # OKX spot: the one order, by its instrument and id
        owners.only_own("acct", okx, "b", spot, request_id="r6")
    assert query.value.calls == (("GET", "/api/v5/trade/order", "instId=BTC-USDT&ordId=80", b""),)

    binance = Binance()
    scope = f"usdm:{normalize_symbol('BTCUSDT')}"
    store.record_placed_orders("acct", "a", "usdm", (client_key("algo#stop-1"),
                                                     placed_key(client_key("stop-1"), scope)), 1.0)
    by_id = RequestFacts(action="cancel", symbol=normalize_symbol("BTCUSDT"), market="usdm", cancels=("500",))
    with pytest.raises(NeedOrders) as query:
        owners.only_own("acct", binance, "b", by_id, request_id="r7")
    assert query.value.calls == (("GET", "/fapi/v1/order", "symbol=BTCUSDT&orderId=500", b""),)
    assert query.value.order_ids == ("500",)
    [(method, path, params, _)] = query.value.calls
    answer = json.dumps({"orderId": 500, "symbol": "BTCUSDT", "status": "NEW", "clientOrderId": "stop-1"}).encode()
    assert shows(binance, 200, answer, "500") and not shows(binance, 200, answer, "501")
    assert not shows(binance, 400, b'{"code":-2013,"msg":"Order does not exist."}', "500")
    assert not shows(okx, 200, b'{"code":"51603","msg":"","data":[]}', "500")
    # "no such order" only in the exchange's own words: a clock, a weight or a busy exchange is no answer
    assert not_found(binance, 400, b'{"code":-2013,"msg":"Order does not exist."}')
    assert not not_found(binance, 400, b'{"code":-1021,"msg":"Timestamp outside recvWindow."}')
    assert not_found(okx, 200, b'{"code":"51603","msg":"Order does not exist","data":[]}')
    assert not not_found(okx, 200, b'{"code":"50013","msg":"Systems are busy","data":[]}')
    assert not not_found(binance, 503, b'{"code":-2013}')
    owners.learn_resting_clients("acct", binance, OutboundRequest(method, "", path, params, {}, b""), 200, answer)
    owners.asked("r7", "orders", "shown")
    with pytest.raises(Refused, match="order 500 was placed by another bot"):
        owners.only_own("acct", binance, "b", by_id, request_id="r7")
    coinm = RequestFacts(action="cancel", symbol=normalize_symbol("BTCUSD_PERP"), market="coinm", cancels=("9",))
    with pytest.raises(NeedOrders) as query:
        owners.only_own("acct", binance, "b", coinm, request_id="r9")
    assert query.value.calls == (("GET", "/dapi/v1/order", "symbol=BTCUSD_PERP&orderId=9", b""),)  # as Binance
    # spells it (a scope spells contracts bare)
    assert binance.order_query_request("usdm:BTCUSDT250328", "3")[2] == "symbol=BTCUSDT_250328&orderId=3"
    assert binance.order_query_request("spot:BTCUSDT", "3")[2] == "symbol=BTCUSDT&orderId=3"
    # by client id: the stop's form names it even once the plain form's record was pruned (session 31's review)
    store.forget_placed_orders("acct", [placed_key(client_key("stop-1"), scope)])
    by_client = RequestFacts(action="cancel", symbol=normalize_symbol("BTCUSDT"), market="usdm",
                             cancels_by_client=("stop-1",))
    with pytest.raises(Refused, match="client id 'stop-1' was placed by another bot"):
        owners.only_own("acct", binance, "b", by_client, request_id="r10")
    spot_cancel = RequestFacts(action="cancel", symbol=normalize_symbol("BTCUSDT"), market="spot", cancels=("501",))
    assert owners.only_own("acct", binance, "b", spot_cancel, request_id="r8") is True  # spot: no stop spawns
    assert owners._spawned("acct", binance, "500", scope) and not owners._spawned("acct", binance, "501", scope)


def test_an_unread_answers_client_ids_are_its_bots_unless_someone_holds_them(tmp_path: Path) -> None:
    """Session 32's review: an order list's legs (an unread shape, placed by a bot no trading limit binds) were
    recorded by their order ids only, so any bot cancelled a leg by its client id. Its client ids are recorded too,
    each only where nobody holds it already (the rule its order ids follow)."""
    owners, store = owners_on(tmp_path)
    binance = Binance()
    store.record_placed_orders("acct", "other", "spot", (placed_key(client_key("taken"), "spot:BTCUSDT"),), 1.0)
    answer = json.dumps({"orderListId": 1, "listClientOrderId": "list-1", "symbol": "BTCUSDT", "orders": [
        {"symbol": "BTCUSDT", "orderId": 11, "clientOrderId": "work-1"},
        {"symbol": "BTCUSDT", "orderId": 12, "clientOrderId": "taken"}]}).encode()
    unread = RequestFacts(action=None, symbol="BTCUSDT", market="spot")
    owners.attribute("acct", binance, ("lister", unread), binance.placed_order_ids(200, answer), new_only=True,
                     client_ids=binance.placed_client_ids(200, answer))
    assert owners.client_owner("acct", binance, "work-1", "spot:BTCUSDT", "x") == "lister"
    assert owners.client_owner("acct", binance, "taken", "spot:BTCUSDT", "x") == "other"
    with pytest.raises(Refused, match="another bot"):
        owners.only_own("acct", binance, "x", RequestFacts(action="cancel", symbol="BTCUSDT", market="spot",
                                                          cancels_by_client=("work-1",)))


def test_an_amend_that_keeps_its_order_records_only_client_ids_nobody_else_holds(tmp_path: Path) -> None:
    """Session 32's regression review: an amend's answer echoing client ids (an OKX amend naming the bot's own order
    by ordId and another bot's clOrdId beside it) recorded them as the amender's. A new id (Binance's keepPriority
    gives one) is the bot's; one another bot holds stays its."""
    owners, store = owners_on(tmp_path)
    okx = Okx()
    store.record_placed_orders("acct", "victim", "spot", (placed_key(client_key("victim1"), None),), 1.0)
    amend = RequestFacts(action="amend", symbol="BTCUSDT", market="spot", order_id="5", quantity=Decimal(1),
                         price=Decimal(1))
    owners.attribute("acct", okx, ("attacker", amend), ("5",), client_ids=("victim1", "fresh1"))
    assert owners.client_owner("acct", okx, "victim1", "spot:BTCUSDT") == "victim"
    assert owners.client_owner("acct", okx, "fresh1", "spot:BTCUSDT") == "attacker"


def test_a_client_id_reported_for_an_order_of_no_bots_is_placed_outside_keyproxy(tmp_path: Path) -> None:
    """Coinbase answers a create reusing a client id with the order holding it: a client id a read or the `user`
    channel reports for an order no bot placed is recorded as placed outside keyproxy, and no bot places under it
    (session 33's review: a bot took the operator's order it had just listed). A bot's own order's client id stays
    its own; the record is no bot trading the account; an order the book gives up (`disowned`) leaves its bot's
    record and gives back its place under max_open_orders."""
    from keyproxy.exchanges.coinbase import Coinbase
    from keyproxy.state import OUTSIDE
    from keyproxy.usage import UsageBook

    store = StateStore(tmp_path / "state.db")
    usage = UsageBook(store)
    owners = OrderOwners(usage, store, PositionBook(None, lambda: 0.0), lambda: 0)
    cb = Coinbase()
    store.record_placed_orders("acct", "bot", "spot", ("o-mine", client_key("c-mine")), 1.0)
    listing = json.dumps({"orders": [
        {"order_id": "o-mine", "client_order_id": "c-mine", "product_id": "BTC-USD", "side": "BUY"},
        {"order_id": "o-op", "client_order_id": "c-op", "product_id": "BTC-USD", "side": "BUY"},
        {"order_id": "o-fut", "client_order_id": "", "product_id": "BTC-USD"}]}).encode()
    out = OutboundRequest("GET", "", "/api/v3/brokerage/orders/historical/batch", "", {})
    owners.learn_outside("acct", cb, cb.reported_client_ids(out, 200, listing))
    event = json.dumps({"channel": "user", "events": [{"type": "update", "orders": [
        {"order_id": "o-op2", "client_order_id": "c-op2", "product_id": "BTC-USD", "order_side": "SELL"}]}]})
    owners.learn_outside("acct", cb, cb.streamed_client_ids(event))
    assert [store.local_owner("acct", (client_key(c),)) for c in ("c-mine", "c-op", "c-op2")] == ["bot", OUTSIDE,
                                                                                                 OUTSIDE]

    def order(cid: str) -> RequestFacts:
        return RequestFacts(action="order", symbol="BTCUSD", market="spot", side="BUY", quantity=Decimal("0.001"),
                            price=Decimal("1000"), client_id=cid)
    owners.own_client_ids("acct", cb, "bot", order("c-mine"))  # its own: Coinbase answers its retry with its order
    for cid in ("c-op", "c-op2"):
        with pytest.raises(Refused, match="outside keyproxy"):
            owners.own_client_ids("acct", cb, "bot", order(cid))
    assert store.other_placer("acct", "bot", "*", "*") is None  # the operator is no bot trading the account
    usage.change_open_orders("bot", "spot:BTCUSD", +1)
    owners.disowned("acct", "bot", "spot:BTCUSD", "o-mine", True)
    assert store.local_owner("acct", ("o-mine",)) is None and usage.open_orders("bot") == 0


def test_a_bots_client_id_is_its_own_from_its_decision_and_outside_records_are_bounded_apart(
        tmp_path: Path) -> None:
    """Session 33's review: a bot's create that timed out, then shown by a listing, had its client id recorded as
    placed outside keyproxy, and the bot's idempotent retry was refused. A client id is the bot's from its decision
    on (`claim_client_ids`), which no listing changes. And client ids placed outside keyproxy are bounded apart:
    a bot reading the operator's history pushed out other bots' records (their orders then anybody's to cancel)."""
    from keyproxy.exchanges.coinbase import Coinbase
    from keyproxy.state import MAX_OUTSIDE, MAX_PLACED_ORDERS, OUTSIDE, PRUNE_EVERY

    owners, store = owners_on(tmp_path)
    cb = Coinbase()
    mine = RequestFacts(action="order", symbol="BTCUSD", market="spot", side="BUY", quantity=Decimal("0.01"),
                        price=Decimal("1000"), client_id="c-timed-out")
    owners.claim_client_ids("acct", cb, "bot", mine)
    listing = json.dumps({"orders": [{"order_id": "o-1", "client_order_id": "c-timed-out", "product_id": "BTC-USD"},
                                     {"order_id": "o-2", "client_order_id": "c-op", "product_id": "BTC-USD"}]})
    out = OutboundRequest("GET", "", "/api/v3/brokerage/orders/historical/batch", "", {})
    owners.learn_outside("acct", cb, cb.reported_client_ids(out, 200, listing.encode()))
    assert store.local_owner("acct", (client_key("c-timed-out"),)) == "bot"
    assert store.local_owner("acct", (client_key("c-op"),)) == OUTSIDE
    owners.own_client_ids("acct", cb, "bot", mine)  # its retry passes
    with pytest.raises(Refused, match="client ids are its own"):
        owners.own_client_ids("acct", cb, "other", mine)  # another bot's, from its decision on
    # the record's bounds: a bot's share is never taken by client ids placed outside keyproxy
    store.record_placed_orders("acct", "mm", "spot", tuple(f"mm-{i}" for i in range(MAX_PLACED_ORDERS - 10)), 1.0)
    for start in range(0, MAX_OUTSIDE + 2 * PRUNE_EVERY, 1000):
        store.record_outside("acct", tuple((f"cid:op-{i}", "spot", 2.0) for i in range(start, start + 1000)))
    assert store.local_owner("acct", ("mm-0",)) == "mm"
    counts = dict(store._db.execute("SELECT bot, COUNT(*) FROM placed_orders GROUP BY bot").fetchall())
    assert counts["mm"] == MAX_PLACED_ORDERS - 10 and counts[OUTSIDE] <= MAX_OUTSIDE + PRUNE_EVERY


def test_an_unread_create_is_checked_a_claim_takes_no_ones_client_id_and_a_listing_asks_once(tmp_path: Path) -> None:
    """Session 33's third review: a create of a shape keyproxy cannot read (no `order_configuration`) skipped the
    client-id check and its claim replaced the operator's record; a preview's claim squatted an id; a listing asked
    the record once per client id for all of them (1,000 orders: a second on the event loop); and records dated by
    when they were read let a bot re-reading old orders push out a live order's."""
    from keyproxy.exchanges.coinbase import Coinbase
    from keyproxy.state import MAX_OUTSIDE, OUTSIDE

    owners, store = owners_on(tmp_path)
    cb = Coinbase()
    store.record_outside("acct", ((client_key("c-op"), "spot", 1.0),))
    unread = RequestFacts(action=None, symbol="BTCUSD", market="spot", client_id="c-op")
    with pytest.raises(Refused, match="outside keyproxy"):
        owners.own_client_ids("acct", cb, "bot", unread)
    owners.claim_client_ids("acct", cb, "bot", unread)  # were it reached: never another owner's record
    assert store.local_owner("acct", (client_key("c-op"),)) == OUTSIDE
    # one query for a whole listing, however long
    listing = json.dumps({"orders": [{"order_id": f"o-{i}", "client_order_id": f"c-{i}", "product_id": "BTC-USD",
                                      "created_time": "2026-12-01T00:00:00Z"} for i in range(3000)]}).encode()
    out = OutboundRequest("GET", "", "/api/v3/brokerage/orders/historical/batch", "", {})
    reported = cb.reported_client_ids(out, 200, listing)
    calls: list[int] = []
    recorded = store.recorded
    store.recorded = lambda account, keys: calls.append(len(keys)) or recorded(account, keys)  # type: ignore[method-assign]
    owners.learn_outside("acct", cb, reported)
    owners.learn_outside("acct", cb, reported)
    assert calls == [3000, 3000, 3000]  # the client ids, then the orders' ids once; read again: the client ids only
    # dated by the order's making: re-reading older orders never pushes out a newer (live) one's record
    live = json.dumps({"orders": [{"order_id": "o-live", "client_order_id": "c-live", "product_id": "BTC-USD",
                                   "created_time": "2026-12-07T00:00:00Z"}]}).encode()
    owners.learn_outside("acct", cb, cb.reported_client_ids(out, 200, live))
    for start in range(0, MAX_OUTSIDE + 1000, 3000):
        old = json.dumps({"orders": [{"order_id": f"x-{i}", "client_order_id": f"cx-{i}", "product_id": "BTC-USD",
                                      "created_time": "2026-11-01T00:00:00Z"}
                                     for i in range(start, start + 3000)]}).encode()
        owners.learn_outside("acct", cb, cb.reported_client_ids(out, 200, old))
    assert store.local_owner("acct", (client_key("c-live"),)) == OUTSIDE
