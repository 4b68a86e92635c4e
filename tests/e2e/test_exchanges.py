"""Kraken, OKX, Coinbase and Bybit through keyproxy with unmodified ccxt: the same promises as Binance.

For each exchange: the usual bot session works with only the virtual credential, the emulator verified
the real signature on every private request and never saw the virtual credential, a trade-scoped bot's
withdrawal is refused before it leaves, and a wrong virtual secret gets bad_signature.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, RealKey, new_real_key, point_ccxt_at

EXCHANGES = {
    # exchange: (real key type, symbol, amount, limit price, withdraw args)
    "kraken": ("hmac", "BTC/USD", 0.001, 50000, ("BTC", 0.01, "bc1qexample", {"key": "mywallet"})),
    "okx": ("hmac", "BTC/USDT", 0.001, 50000, ("USDT", 10, "0xabc", {"network": "ERC20", "fee": "1"})),
    "coinbase": ("ec", "BTC/USD", 0.001, 50000, ("BTC", 0.01, "bc1qexample", {})),
    "bybit": ("hmac", "BTC/USDT", 0.001, 50000, ("USDT", 10, "0xabc", {"chain": "ETH"})),
}


@dataclass
class Multi:
    dev: DevStack
    keys: dict[str, RealKey]


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Multi]:
    from keyproxy.exchanges import default_adapters

    available = [ex for ex in EXCHANGES if ex in default_adapters()]
    dev = DevStack(tmp_path_factory.mktemp("multi"))
    keys = {ex: new_real_key(EXCHANGES[ex][0], exchange=ex) for ex in available}
    try:
        dev.serve_accounts(keys)
        yield Multi(dev, keys)
    finally:
        dev.close()


def client(ex: str, creds: dict[str, Any], secret: str | None = None) -> Any:
    config = {"apiKey": creds["api_key"], "secret": secret or creds["secret"]}
    if "passphrase" in creds:
        config["password"] = creds["passphrase"]
    return point_ccxt_at(getattr(ccxt, ex)(config), creds["base_url"])


def needs(multi: Multi, ex: str) -> None:
    if ex not in multi.keys:
        pytest.skip(f"no {ex} adapter in this build")


@pytest.mark.parametrize("ex", list(EXCHANGES))
def test_unmodified_ccxt_session(multi: Multi, ex: str) -> None:
    needs(multi, ex)
    _, symbol, amount, price, _ = EXCHANGES[ex]
    creds = multi.dev.add_bot(f"{ex}-bot", ex, "read,trade")
    start = len(multi.dev.journal())
    bot = client(ex, creds)
    bot.load_markets()
    assert symbol in bot.markets
    balance = bot.fetch_balance()
    assert any(v for v in balance["free"].values())
    order = bot.create_order(symbol, "limit", "buy", amount, price)
    open_ids = [o["id"] for o in bot.fetch_open_orders(symbol)]
    assert order["id"] in open_ids
    bot.cancel_order(order["id"], symbol)
    assert order["id"] not in [o["id"] for o in bot.fetch_open_orders(symbol)]

    journal = multi.dev.journal()[start:]
    real = multi.keys[ex].credentials["api_key"]
    private = [e for e in journal if e.get("signature_verified") is not None and e.get("api_key")]
    assert private, "no private request reached the exchange"
    for entry in private:
        assert entry["signature_verified"] is True, entry
        assert entry["api_key"] == real
    seen = json.dumps(journal)
    assert creds["api_key"] not in seen and creds["secret"].strip().splitlines()[-1][:40] not in seen


@pytest.mark.parametrize("ex", list(EXCHANGES))
def test_trade_bot_withdrawal_is_refused_and_never_arrives(multi: Multi, ex: str) -> None:
    needs(multi, ex)
    creds = multi.dev.add_bot(f"{ex}-trader", ex, "read,trade")
    bot = client(ex, creds)
    bot.load_markets()
    code, amount, address, params = EXCHANGES[ex][4]
    start = len(multi.dev.journal())
    with pytest.raises(ccxt.BaseError) as e:
        bot.withdraw(code, amount, address, params=params)
    assert "scope_denied" in str(e.value)
    assert not [x for x in multi.dev.journal()[start:] if "ithdraw" in x["path"] or "transactions" in x["path"]]


@pytest.mark.parametrize("ex", list(EXCHANGES))
def test_wrong_virtual_secret_is_bad_signature(multi: Multi, ex: str) -> None:
    needs(multi, ex)
    creds = multi.dev.add_bot(f"{ex}-forger", ex, "read,trade")
    impostor = multi.dev.add_bot(f"{ex}-impostor", ex, "read")  # a valid secret of the wrong bot
    bot = client(ex, creds, secret=impostor["secret"])
    start = len(multi.dev.journal())
    with pytest.raises(ccxt.BaseError) as e:
        bot.load_markets()  # some exchanges' load_markets already signs (OKX currencies)
        bot.fetch_balance()
    assert "bad_signature" in str(e.value)
    assert [x for x in multi.dev.journal()[start:] if x.get("api_key")] == []
