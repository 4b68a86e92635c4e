"""freqtrade (unmodified) trading live on OKX spot through keyproxy with its stoploss on the exchange (session 30).

freqtrade places its stop with OKX's algo orders (`POST /api/v5/trade/order-algo`, a conditional stop-loss),
reads it by its algoId each loop and cancels it (`cancel-algos`) before it sells. A bot bounded by a symbol list, a
notional cap and `max_open_orders` does all of it through keyproxy, configured only by the block `keyproxy bot add
... --client freqtrade` prints; the emulator never sees the virtual key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.test_freqtrade import FREQTRADE, audit_of, closed_trades, config, run_freqtrade


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    if not FREQTRADE.exists():
        pytest.fail(f"freqtrade not found at {FREQTRADE}: ./scripts/test installs it (scripts/_freqtrade.sh)")
    stack = DevStack(tmp_path_factory.mktemp("freqtrade-okx"))
    try:
        stack.serve_accounts({"ok": new_real_key(exchange="okx")})
        yield stack
    finally:
        stack.close()


def test_a_bounded_freqtrade_bot_keeps_its_stop_on_okx_through_keyproxy(dev: DevStack) -> None:
    doc = config(dev, "ftokx", "symbols=BTC/USDT", "max_order_notional=500", "max_open_orders=2", account="ok",
                 order_types={"entry": "market", "exit": "market", "stoploss": "market", "stoploss_on_exchange": True,
                              "stoploss_on_exchange_interval": 1})
    start = len(dev.journal())
    log, _ = run_freqtrade(dev, "ftokx", doc, lambda work, _log: closed_trades(work) >= 1)
    assert closed_trades(dev.root / "ft-ftokx") >= 1, log[-4000:]
    # up to the closed trade: what the test's SIGINT interrupts after it (a sqlalchemy transaction in the loop, its
    # cleanup's PendingRollbackError, logged before "SIGINT received") is freqtrade's own shutdown
    trading = log.split("as closed as the trade is fulfilled", 1)[0]
    assert "Traceback" not in trading and " - ERROR - " not in trading, trading[-4000:]
    seen = dev.journal()[start:]
    stops = [e for e in seen if e["method"] == "POST" and e["path"] == "/api/v5/trade/order-algo"]
    assert stops and all(e["signature_verified"] and e["status"] == 200 for e in stops), stops
    sent = json.loads(stops[0]["body"])
    assert (sent["ordType"], sent["tdMode"], sent["slOrdPx"]) == ("conditional", "cash", "-1"), sent
    assert "stoploss market order added for BTC/USDT" in trading
    cancelled = [e for e in seen if e["path"] == "/api/v5/trade/cancel-algos"]
    assert cancelled and all(e["status"] == 200 for e in cancelled)
    assert doc["exchange"]["key"] not in json.dumps(seen)  # the exchange only ever saw the real key
    decided = [e for e in audit_of(dev, "ftokx") if e["event"] in ("request.done", "request.deny")]
    assert decided and all(e.get("decision") == "allow" for e in decided), [e for e in decided
                                                                           if e.get("decision") != "allow"][:3]
