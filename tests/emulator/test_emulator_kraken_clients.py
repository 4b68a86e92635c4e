"""Real, unmodified clients against the Kraken emulator: ccxt ``kraken()`` and
the krakenex SDK (skipped when not installed; it is not a project dependency).

Only the hosts are pointed at the emulator (``devstack.point_ccxt_at`` for
ccxt, ``API.uri`` for krakenex); no option is changed. Every private request
must reach the emulator with a signature that verified.
"""

from __future__ import annotations

import asyncio
import time

import ccxt.async_support as ccxt
import pytest

from keyproxy.emulator.devstack import point_ccxt_at
from keyproxy.emulator.accounts import parse_key
from keyproxy.emulator.app import EMULATORS
from keyproxy.emulator.kraken import new_key


def _key(**permissions):
    entry, creds = new_key(permissions=permissions or None)
    return parse_key(0, entry), creds


def _all_verified(journal):
    private = [e for e in journal if e["path"].startswith("/0/private/")]
    assert private and all(e["signature_verified"] is True for e in private), private
    assert all(e["status"] == 200 and e["error_code"] is None for e in journal), journal
    return [e["path"] for e in journal]


async def test_ccxt_kraken_round_trip(emulator_factory):
    """The emulator as ccxt sees it. ccxt's own throttle (Kraken's private calls cost 3 at rateLimit 1000 ms:
    ~11 s for this session) is off: here the emulator is under test, not ccxt's defaults through keyproxy
    (tests/e2e/test_exchanges.py keeps those)."""
    key, creds = _key(funds_withdraw=True)
    emu = await emulator_factory([key])
    exchange = point_ccxt_at(ccxt.kraken({"apiKey": creds["api_key"], "secret": creds["secret"],
                                          "enableRateLimit": False}), emu.url)
    try:
        markets = await exchange.load_markets()
        assert {"BTC/USD", "ETH/USD", "BTC/USDT", "ETH/USDT", "ETH/BTC"} <= set(markets)
        assert markets["BTC/USD"]["id"] == "XXBTZUSD"
        assert markets["BTC/USD"]["precision"]["price"] == 0.1
        balance = await exchange.fetch_balance()
        assert balance["USD"]["free"] == 100000 and balance["BTC"]["total"] == 10
        order = await exchange.create_order("BTC/USD", "limit", "buy", 0.01, 50000)
        assert order["id"] and order["price"] == 50000 and order["amount"] == 0.01
        [open_order] = await exchange.fetch_open_orders("BTC/USD")
        assert open_order["id"] == order["id"] and open_order["status"] == "open"
        fetched = await exchange.fetch_order(order["id"])
        assert fetched["status"] == "open" and fetched["symbol"] == "BTC/USD"
        state = emu.app[EMULATORS][0].state()[key.api_key]
        assert state["balances"]["ZUSD"] == {"total": "100000", "hold": "500.00"}
        await exchange.cancel_order(order["id"])
        state = emu.app[EMULATORS][0].state()[key.api_key]
        assert [o["status"] for o in state["orders"]] == ["canceled"]
        withdrawal = await exchange.withdraw("USDT", 10, "0xabc", params={"key": "my-usdt"})
        assert withdrawal["id"]
    finally:
        await exchange.close()
    paths = _all_verified(emu.journal.entries())
    assert paths == ["/0/public/Assets", "/0/public/AssetPairs", "/0/private/BalanceEx",
                     "/0/private/AddOrder", "/0/private/OpenOrders", "/0/private/QueryOrders",
                     "/0/private/CancelOrder", "/0/private/Withdraw"]


async def test_ccxt_kraken_errors_map_to_ccxt_exceptions(emulator_factory):
    key, creds = _key()
    emu = await emulator_factory([key])
    exchange = point_ccxt_at(ccxt.kraken({"apiKey": creds["api_key"], "secret": creds["secret"]}),
                             emu.url)
    try:
        await exchange.load_markets()
        with pytest.raises(ccxt.InsufficientFunds):
            await exchange.create_order("BTC/USD", "limit", "buy", 5, 50000)
        with pytest.raises(ccxt.OrderNotFound):
            await exchange.cancel_order("OAAAAA-BBBBB-CCCCCC")
        with pytest.raises(ccxt.PermissionDenied):
            await exchange.withdraw("USDT", 10, "0xabc", params={"key": "my-usdt"})
    finally:
        await exchange.close()
    errors = [e["error_code"] for e in emu.journal.entries() if e["error_code"]]
    assert errors == ["EOrder:Insufficient funds", "EOrder:Unknown order",
                      "EGeneral:Permission denied"]


def _krakenex_session(url: str, creds: dict[str, str]) -> dict[str, object]:
    krakenex = pytest.importorskip("krakenex")
    api = krakenex.API(key=creds["api_key"], secret=creds["secret"])
    api.uri = url  # the only change: the host
    out: dict[str, object] = {}
    try:
        out["time"] = api.query_public("Time")
        out["balance"] = api.query_private("Balance")
        time.sleep(0.002)  # krakenex's nonce is the millisecond clock
        placed = api.query_private("AddOrder", {"pair": "XBTUSD", "type": "buy",
                                                "ordertype": "limit", "price": "50000",
                                                "volume": "0.01"})
        out["placed"] = placed
        txid = placed["result"]["txid"][0]
        time.sleep(0.002)
        out["open"] = api.query_private("OpenOrders")
        time.sleep(0.002)
        out["query"] = api.query_private("QueryOrders", {"txid": txid})
        time.sleep(0.002)
        out["cancel"] = api.query_private("CancelOrder", {"txid": txid})
        time.sleep(0.002)
        out["open_after"] = api.query_private("OpenOrders")
        out["txid"] = txid
    finally:
        api.close()
    return out


async def test_krakenex_balance_and_order_round_trip(emulator_factory):
    pytest.importorskip("krakenex")
    key, creds = _key()
    emu = await emulator_factory([key])
    got = await asyncio.to_thread(_krakenex_session, emu.url, creds)
    assert got["balance"] == {"error": [], "result": {
        "USDT": "100000.00000000", "XETH": "100.0000000000", "XXBT": "10.0000000000",
        "ZUSD": "100000.0000"}}
    txid = got["txid"]
    assert list(got["open"]["result"]["open"]) == [txid]
    assert got["query"]["result"][txid]["status"] == "open"
    assert got["cancel"] == {"error": [], "result": {"count": 1}}
    assert got["open_after"] == {"error": [], "result": {"open": {}}}
    paths = _all_verified(emu.journal.entries())
    assert paths == ["/0/public/Time", "/0/private/Balance", "/0/private/AddOrder",
                     "/0/private/OpenOrders", "/0/private/QueryOrders", "/0/private/CancelOrder",
                     "/0/private/OpenOrders"]
