"""Orders of unknown fate (`CoreAnswers.fate_unknown`): counted open in state.db where a listing sets counts, once,
and never for good where none does (session 36's regression review)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from keyproxy.exchanges.base import EndpointClass, OutboundRequest
from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.hyperliquid import Hyperliquid
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.core import Core
from keyproxy.proxy.in_flight import IN_FLIGHT_S
from keyproxy.proxy.outcome import Outcome
from keyproxy.state import StateStore
from keyproxy.usage import UsageBook


def _core(tmp_path: Path) -> tuple[Core, StateStore]:
    store = StateStore(tmp_path / "state.db")
    return Core(lambda: None, sequences=store, usage=UsageBook(store)), store  # type: ignore[arg-type,return-value]


def _route(adapter: object) -> SimpleNamespace:
    return SimpleNamespace(account=SimpleNamespace(info=SimpleNamespace(name="acct")), adapter=adapter,
                           endpoint=SimpleNamespace(cls=EndpointClass.TRADE))


def _sent(core: Core, leg: RequestFacts) -> Outcome:
    outcome = Outcome(request_id="r1", placed_by=("bot", leg), track=("bot", leg), account="acct")
    core.in_flight.sent("bot", "r1", (leg,), time.time())
    return outcome


def _held(core: Core, at: float) -> int:
    return core.usage.open_orders("bot") + core.in_flight.count("bot", at)  # type: ignore[union-attr]


def test_an_order_of_unknown_fate_holds_one_place_in_state_db_and_its_size_on_its_way(tmp_path: Path) -> None:
    core, store = _core(tmp_path)
    leg = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY", quantity=Decimal(1),
                       price=Decimal(10))
    out = OutboundRequest("POST", "", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=10",
                          {}, b"")
    core.fate_unknown(_route(Binance()), out, _sent(core, leg))  # type: ignore[arg-type]
    assert _held(core, time.time()) == 1  # once (it was also counted on its way: two places for 60 s)
    assert core.in_flight.legs("bot", time.time()) == [(leg,)]  # its size still counts for the position caps
    assert _held(core, time.time() + IN_FLIGHT_S + 1) == 1  # in state.db till a listing says otherwise
    store.close()


def test_where_no_listing_sets_counts_an_order_of_unknown_fate_lapses(tmp_path: Path) -> None:
    """Hyperliquid's listings are public `/info` reads that set no count: an order of unknown fate counted open
    there would hold its place for good (an IOC that never rested too). It counts on its way till it lapses."""
    core, store = _core(tmp_path)
    leg = RequestFacts(action="order", symbol="BTC", market="perp", side="BUY", quantity=Decimal(1),
                       price=Decimal(10))
    out = OutboundRequest("POST", "", "/exchange", "", {}, b'{"action":{"type":"order"}}')
    core.fate_unknown(_route(Hyperliquid()), out, _sent(core, leg))  # type: ignore[arg-type]
    assert _held(core, time.time()) == 1
    assert _held(core, time.time() + IN_FLIGHT_S + 1) == 0
    store.close()
