"""Real, unmodified clients against the OKX emulator: ccxt ``okx()`` (live and,
with ``set_sandbox_mode``, demo trading) and OKX's official SDK python-okx
(skipped when not installed; it is not a project dependency).

Only hosts are pointed at the emulator (``devstack.point_ccxt_at`` for ccxt,
``domain=`` for python-okx). Every private request must reach the emulator
with a signature that verified.
"""

from __future__ import annotations

import asyncio

import ccxt.async_support as ccxt
import pytest

from keyproxy.emulator.devstack import point_ccxt_at
from keyproxy.emulator.accounts import parse_key
from keyproxy.emulator.okx import new_key


def _key(**permissions):
    entry, creds = new_key(permissions=permissions or None)
    return parse_key(0, entry), creds


def _ccxt(creds, url: str, demo: bool = False) -> ccxt.okx:
    exchange = ccxt.okx({"apiKey": creds["api_key"], "secret": creds["secret"],
                         "password": creds["passphrase"]})
    if demo:
        exchange.set_sandbox_mode(True)  # adds x-simulated-trading: 1
    return point_ccxt_at(exchange, url)


def _private_paths(journal):
    private = [e for e in journal if e["api_key"] is not None]
    assert private and all(e["signature_verified"] is True for e in private), private
    assert all(e["status"] == 200 and e["error_code"] is None for e in journal), journal
    return [e["path"] for e in private]


async def test_ccxt_okx_round_trip(emulator_factory):
    key, creds = _key(withdraw=True)
    emu = await emulator_factory([key])
    exchange = _ccxt(creds, emu.url)
    try:
        markets = await exchange.load_markets()
        assert {"BTC/USDT", "ETH/USDT", "ETH/BTC", "BTC/USDT:USDT", "BTC/USD:BTC",
                "BTC/USD:BTC-301227", "BTC/USD:BTC-301227-60000-C"} <= set(markets)
        assert exchange.currencies["USDT"]["networks"]["ERC20"]["withdraw"] is True
        balance = await exchange.fetch_balance()
        assert balance["USDT"]["free"] == 100000 and balance["BTC"]["total"] == 10
        order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
        assert order["id"]
        [open_order] = await exchange.fetch_open_orders("BTC/USDT")
        assert open_order["id"] == order["id"] and open_order["status"] == "open"
        assert open_order["price"] == 50000 and open_order["amount"] == 0.01
        assert (await exchange.fetch_balance())["USDT"]["used"] == 500
        cancelled = await exchange.cancel_order(order["id"], "BTC/USDT")
        assert cancelled["id"] == order["id"]
        assert await exchange.fetch_open_orders("BTC/USDT") == []
        assert (await exchange.fetch_order(order["id"], "BTC/USDT"))["status"] == "canceled"
        leverage = await exchange.set_leverage(20, "BTC/USDT:USDT")
        assert leverage["data"][0]["lever"] == "20"
        swap = await exchange.create_order("BTC/USDT:USDT", "market", "buy", 1)
        assert (await exchange.fetch_order(swap["id"], "BTC/USDT:USDT"))["status"] == "closed"
        withdrawal = await exchange.withdraw("USDT", 20, "0x" + "a" * 40,
                                             params={"network": "ERC20"})
        assert withdrawal["id"]
    finally:
        await exchange.close()
    journal = emu.journal.entries()
    public = [(e["path"], e["query"]) for e in journal if e["api_key"] is None]
    assert public == [("/api/v5/public/instruments", f"instType={t}") for t in (
        "SPOT", "FUTURES", "SWAP", "OPTION&uly=BTC-USD", "OPTION&uly=ETH-USD")]
    assert _private_paths(journal) == [
        "/api/v5/asset/currencies", "/api/v5/account/balance", "/api/v5/trade/batch-orders",
        "/api/v5/trade/orders-pending", "/api/v5/account/balance", "/api/v5/trade/cancel-order",
        "/api/v5/trade/orders-pending", "/api/v5/trade/order", "/api/v5/account/set-leverage",
        "/api/v5/trade/batch-orders", "/api/v5/trade/order", "/api/v5/asset/withdrawal"]


async def test_ccxt_okx_errors_and_environments(emulator_factory):
    live_key, live = _key()
    demo_key, demo = _key(demo=True)
    emu = await emulator_factory([live_key, demo_key])
    exchange = _ccxt(live, emu.url)
    sandboxed_live = _ccxt(live, emu.url, demo=True)
    sandboxed_demo = _ccxt(demo, emu.url, demo=True)
    try:
        await exchange.load_markets()
        # 50120 (key lacks the withdraw permission): ccxt's okx table has no entry for it
        with pytest.raises(ccxt.ExchangeError, match="50120"):
            await exchange.withdraw("USDT", 20, "0x" + "a" * 40, params={"network": "ERC20"})
        with pytest.raises(ccxt.InsufficientFunds):  # sCode 51008
            await exchange.create_order("BTC/USDT", "limit", "buy", 10, 50000)
        with pytest.raises(ccxt.AuthenticationError, match="50101"):
            await sandboxed_live.fetch_balance()
        balance = await sandboxed_demo.fetch_balance()  # demo key + x-simulated-trading: 1
        assert balance["USDT"]["total"] == 100000
    finally:
        for ex in (exchange, sandboxed_live, sandboxed_demo):
            await ex.close()


def _python_okx_session(url: str, creds: dict[str, str], flag: str) -> dict[str, object]:
    account_mod = pytest.importorskip("okx.Account")
    trade_mod = pytest.importorskip("okx.Trade")
    args = (creds["api_key"], creds["secret"], creds["passphrase"], None, flag)
    account = account_mod.AccountAPI(*args, domain=url)
    trade = trade_mod.TradeAPI(*args, domain=url)
    out: dict[str, object] = {"balance": account.get_account_balance()}
    placed = trade.place_order(instId="BTC-USDT", tdMode="cash", side="buy", ordType="limit",
                               px="50000", sz="0.01")
    out["placed"] = placed
    ord_id = placed["data"][0]["ordId"]
    out["pending"] = trade.get_order_list(instId="BTC-USDT")
    out["order"] = trade.get_order("BTC-USDT", ord_id)
    out["cancel"] = trade.cancel_order("BTC-USDT", ord_id)
    out["pending_after"] = trade.get_order_list()
    out["ord_id"] = ord_id
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # httpx's, raised inside the SDK
@pytest.mark.parametrize("demo", [False, True])
async def test_python_okx_balance_and_order_round_trip(emulator_factory, demo):
    pytest.importorskip("okx.Trade")
    key, creds = _key(demo=demo)
    emu = await emulator_factory([key])
    got = await asyncio.to_thread(_python_okx_session, emu.url, creds, "1" if demo else "0")
    details = {d["ccy"]: d["cashBal"] for d in got["balance"]["data"][0]["details"]}
    assert details == {"BTC": "10", "ETH": "100", "USDC": "100000", "USDT": "100000"}
    ord_id = got["ord_id"]
    assert got["placed"]["code"] == "0" and got["placed"]["data"][0]["sMsg"] == "Order placed"
    assert [o["ordId"] for o in got["pending"]["data"]] == [ord_id]
    assert got["order"]["data"][0]["state"] == "live"
    assert got["cancel"]["code"] == "0" and got["cancel"]["data"][0]["sCode"] == "0"
    assert got["pending_after"]["data"] == []
    assert _private_paths(emu.journal.entries()) == [
        "/api/v5/account/balance", "/api/v5/trade/order", "/api/v5/trade/orders-pending",
        "/api/v5/trade/order", "/api/v5/trade/cancel-order", "/api/v5/trade/orders-pending"]
