"""OrderOwners' cancel-all judgement where the positions book does not hold the market's orders."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.okx import Okx
from keyproxy.exchanges.open_orders import Resting
from keyproxy.policy.model import RequestFacts, normalize_symbol
from keyproxy.proxy.order_owners import NeedResting, OrderOwners
from keyproxy.proxy.positions import PositionBook
from keyproxy.proxy.refusal import Refused
from keyproxy.state import StateStore, placed_key


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
    """Each cancel-all asks for a listing of its own; the decision resumed after it reads what rests in its scope
    (its market and symbol) and who placed each; a failed listing refuses."""
    owners, store = owners_on(tmp_path)
    okx = Okx()
    cancel_all = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USDT-SWAP"), market="swap",
                              cancels_all=True)
    with pytest.raises(NeedResting) as need:
        owners.only_own("acct", okx, "b", cancel_all)
    assert need.value.market == "swap" and need.value.markets == frozenset({"swap"})
    store.record_placed_orders("acct", "a", "swap", ("11", "12"), 1.0)
    owners.learn_resting(need.value, (Resting("spot", "BTC-USDT", "11"), Resting("swap", "ETH-USDT-SWAP", "12")))
    owners.only_own("acct", okx, "b", cancel_all, listed=True)  # another market's, another symbol's: not in scope
    owners.learn_resting(need.value, (Resting("swap", "BTC-USDT-SWAP", "12"),))
    with pytest.raises(Refused, match="bot 'a' has orders resting there"):
        owners.only_own("acct", okx, "b", cancel_all, listed=True)
    owners.only_own("acct", okx, "a", cancel_all, listed=True)  # the placer's own
    with pytest.raises(NeedResting):
        owners.only_own("acct", okx, "b", cancel_all)  # a new decision lists anew
    owners.learn_resting(need.value, None)
    with pytest.raises(Refused, match="could not list") as refused:
        owners.only_own("acct", okx, "b", cancel_all, listed=True)
    assert refused.value.code == "unavailable"
    every = RequestFacts(action="cancel", cancels_all=True)  # cancel-all-after: every market of the account
    with pytest.raises(NeedResting) as need:
        owners.only_own("acct", okx, "b", every)
    assert need.value.market == "*" and need.value.markets == frozenset({"swap"})
    owners.learn_resting(need.value, (Resting("swap", "ETH-USDT-SWAP", "12"),))
    with pytest.raises(Refused, match="bot 'a'"):
        owners.only_own("acct", okx, "b", every, listed=True)
    spot = RequestFacts(action="cancel", symbol=normalize_symbol("BTC-USDT"), market="spot", cancels_all=True)
    owners.only_own("acct", okx, "b", spot)  # spot: the positions book holds OKX spot orders, and none rests
