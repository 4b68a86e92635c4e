"""Real, unmodified clients against the Bybit emulator: ccxt ``bybit()`` and
the official SDK pybit (``unified_trading.HTTP``).

ccxt: only the hosts in ``urls['api']`` are pointed at the emulator. pybit
builds ``https://{subdomain}.{domain}.{tld}`` in ``__post_init__`` and keeps
it in the ``endpoint`` attribute, which is the one thing changed here.
Neither client signs the host, so plain http on loopback is enough.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt.async_support as ccxt
import pytest

from keyproxy.emulator.devstack import point_ccxt_at
from keyproxy.emulator import bybit
from keyproxy.emulator.accounts import parse_accounts

WITHDRAW = {"permissions": {"Wallet": ["AccountTransfer", "Withdraw"]}}


def _secret(cred: dict[str, str]) -> str:
    return cred.get("secret") or cred["private_key"]  # ccxt takes an RSA PEM as the secret


@pytest.mark.parametrize("key_type", ["hmac", "rsa"])
async def test_ccxt_round_trip(emulator_factory, key_type):
    entry, cred = bybit.new_key(key_type, permissions=WITHDRAW,
                                balances={"USDT": "10000", "BTC": "1"})
    emu = await emulator_factory(parse_accounts({"keys": [entry]}))
    exchange = ccxt.bybit({"apiKey": cred["api_key"], "secret": _secret(cred)})
    point_ccxt_at(exchange, emu.url)
    try:
        markets = await exchange.load_markets()
        assert {"BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USD:BTC"} <= set(
            markets)
        assert exchange.currencies["USDT"]["networks"]
        balance = await exchange.fetch_balance()
        assert balance["USDT"]["total"] == 10000 and balance["BTC"]["free"] == 1
        order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
        open_orders = await exchange.fetch_open_orders("BTC/USDT")
        assert [(o["id"], o["status"], o["price"], o["amount"]) for o in open_orders] == [
            (order["id"], "open", 50000, 0.01)
        ]
        assert (await exchange.fetch_balance())["USDT"]["used"] == 500
        await exchange.cancel_order(order["id"], "BTC/USDT")
        assert await exchange.fetch_open_orders("BTC/USDT") == []
        await exchange.set_leverage(10, "BTC/USDT:USDT")
        withdrawal = await exchange.withdraw("USDT", 100, "0x" + "b" * 40,
                                             params={"network": "ERC20"})
        assert withdrawal["id"]
    finally:
        await exchange.close()
    journal = emu.journal.entries()
    assert all(e["status"] == 200 and e["error_code"] is None for e in journal), journal
    private = [e for e in journal if e["api_key"] is not None]
    assert all(e["signature_verified"] is True and e["api_key"] == cred["api_key"] for e in private)
    assert [(e["method"], e["path"]) for e in private] == [
        ("GET", "/v5/asset/coin/query-info"),
        ("GET", "/v5/user/query-api"),
        ("GET", "/v5/account/info"),
        ("GET", "/v5/account/wallet-balance"),
        ("POST", "/v5/order/create"),
        ("GET", "/v5/order/realtime"),
        ("GET", "/v5/account/wallet-balance"),
        ("POST", "/v5/order/cancel"),
        ("GET", "/v5/order/realtime"),
        ("POST", "/v5/position/set-leverage"),
        ("POST", "/v5/asset/withdraw/create"),
    ]
    categories = {e["query"].split("&")[0] for e in journal
                  if e["path"].endswith("instruments-info")}
    assert categories == {"category=spot", "category=linear", "category=inverse", "category=option"}


async def test_ccxt_withdraw_refused_without_permission(emulator_factory):
    entry, cred = bybit.new_key()
    emu = await emulator_factory(parse_accounts({"keys": [entry]}))
    exchange = ccxt.bybit({"apiKey": cred["api_key"], "secret": _secret(cred)})
    point_ccxt_at(exchange, emu.url)
    try:
        with pytest.raises(ccxt.PermissionDenied, match="10005"):
            await exchange.withdraw("USDT", 100, "0x" + "b" * 40, params={"network": "ERC20"})
    finally:
        await exchange.close()
    assert emu.journal.entries()[-1]["error_code"] == 10005


@pytest.mark.parametrize("key_type", ["hmac", "rsa"])
async def test_pybit_round_trip(emulator_factory, key_type):
    unified = pytest.importorskip("pybit.unified_trading")
    entry, cred = bybit.new_key(key_type, balances={"USDT": "10000"})
    emu = await emulator_factory(parse_accounts({"keys": [entry]}))
    session = unified.HTTP(api_key=cred["api_key"], api_secret=_secret(cred),
                           rsa_authentication=key_type == "rsa")
    assert session.endpoint == "https://api.bybit.com"
    session.endpoint = emu.url

    def work() -> tuple[Any, ...]:
        wallet = session.get_wallet_balance(accountType="UNIFIED")
        order = session.place_order(category="spot", symbol="BTCUSDT", side="Buy",
                                    orderType="Limit", qty="0.01", price="50000")
        listed = session.get_open_orders(category="spot", symbol="BTCUSDT")
        cancelled = session.cancel_order(category="spot", symbol="BTCUSDT",
                                         orderId=order["result"]["orderId"])
        return wallet, order, listed, cancelled

    wallet, order, listed, cancelled = await asyncio.to_thread(work)
    assert wallet["result"]["list"][0]["coin"][0]["walletBalance"] == "10000"
    order_id = order["result"]["orderId"]
    assert [o["orderId"] for o in listed["result"]["list"]] == [order_id]
    assert cancelled["result"]["orderId"] == order_id
    journal = emu.journal.entries()
    assert [(e["method"], e["path"], e["signature_verified"]) for e in journal] == [
        ("GET", "/v5/account/wallet-balance", True),
        ("POST", "/v5/order/create", True),
        ("GET", "/v5/order/realtime", True),
        ("POST", "/v5/order/cancel", True),
    ]
    assert all(e["headers"]["X-BAPI-SIGN-TYPE"] == "2" for e in journal)  # pybit sends it always


async def test_pybit_sees_bybit_errors(emulator_factory):
    unified = pytest.importorskip("pybit.unified_trading")
    exceptions = pytest.importorskip("pybit.exceptions")
    entry, cred = bybit.new_key()
    emu = await emulator_factory(parse_accounts({"keys": [entry]}))
    wrong = unified.HTTP(api_key=cred["api_key"], api_secret="x" * 36)
    wrong.endpoint = emu.url
    with pytest.raises(exceptions.InvalidRequestError) as refused:
        await asyncio.to_thread(wrong.get_wallet_balance, accountType="UNIFIED")
    assert refused.value.status_code == 10004
    unknown = unified.HTTP(api_key="B" * 18, api_secret=cred["secret"])
    unknown.endpoint = emu.url
    with pytest.raises(exceptions.FailedRequestError) as failed:  # HTTP 401
        await asyncio.to_thread(unknown.get_wallet_balance, accountType="UNIFIED")
    assert failed.value.status_code == 401
