"""Ready-made client configurations (issue 18, item 3): `bot add --client` prints the snippet, fed as is to
the real client (ccxt, freqtrade's exchange block through ccxt as freqtrade builds it, python-binance), which
then trades through keyproxy; `bot config` prints it again without the secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from keyproxy.client_configs import SECRET_PLACEHOLDER, ccxt_urls
from keyproxy.emulator.devstack import DevStack, new_real_key

ccxt = pytest.importorskip("ccxt")

ACCOUNTS = {"bn": ("binance", "hmac"), "ok": ("okx", "hmac"), "kr": ("kraken", "hmac"),
            "by": ("bybit", "hmac"), "cb": ("coinbase", "ec"), "hl": ("hyperliquid", "eth")}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("client-configs"))
    try:
        stack.serve_accounts({a: new_real_key(kind, exchange=ex) for a, (ex, kind) in ACCOUNTS.items()})
        yield stack
    finally:
        stack.close()


def run_snippet(code: str) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102 - the snippet is what the operator would paste
    return scope


@pytest.mark.parametrize("account", list(ACCOUNTS))
def test_the_ccxt_snippet_trades_through_keyproxy_as_printed(dev: DevStack, account: str) -> None:
    exchange_name = ACCOUNTS[account][0]
    code = dev.cli("bot", "add", f"{account}-ccxt", "--account", account, "--scope", "read,trade",
                   "--client", "ccxt").stdout
    ex = run_snippet(code)["exchange"]
    ex.enableRateLimit = False  # ccxt's own pacing (3 s a call on Kraken) is not what this tests
    base = f"{dev.proxy_url}/{account}"
    urls = json.dumps(ex.urls["api"])
    assert "binance.com" not in urls and "okx.com" not in urls and "kraken.com" not in urls, urls
    start = len(dev.journal())
    ex.load_markets()
    balance = ex.fetch_balance()
    assert balance is not None
    assert dev.journal()[start:], "nothing reached the exchange"
    assert all(u.startswith((base, base.replace("http", "ws", 1))) for u in _strings(ex.urls["api"])), exchange_name


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    return []


@pytest.mark.parametrize("account", ["bn", "ok", "kr", "hl"])
def test_the_freqtrade_exchange_block_configures_ccxt_as_freqtrade_does(dev: DevStack, account: str) -> None:
    """freqtrade builds its ccxt exchange from the block: key/secret/password (walletAddress/privateKey on
    Hyperliquid) plus `ccxt_config` merged into the constructor's config."""
    block = json.loads(dev.cli("bot", "add", f"{account}-ft", "--account", account, "--scope", "read,trade",
                               "--client", "freqtrade").stdout)["exchange"]
    assert block["name"] == ACCOUNTS[account][0] and block["enable_ws"] is False
    assert block["ccxt_config"] == block["ccxt_async_config"]
    config = {"apiKey": block.get("key"), "secret": block.get("secret"), "password": block.get("password"),
              "walletAddress": block.get("walletAddress"), "privateKey": block.get("privateKey"),
              **block["ccxt_config"]}
    ex = getattr(ccxt, block["name"])({k: v for k, v in config.items() if v is not None})
    ex.enableRateLimit = False
    ex.load_markets()
    assert ex.fetch_balance() is not None


def test_the_python_binance_snippet_trades_through_keyproxy(dev: DevStack) -> None:
    pytest.importorskip("binance.client")
    code = dev.cli("bot", "add", "bn-pb", "--account", "bn", "--scope", "read,trade", "--client",
                   "python-binance").stdout
    client = run_snippet(code)["client"]
    assert "balances" in client.get_account()


SDK_CALLS = {  # client -> (account, a signed call through the printed objects, what a good answer holds)
    "krakenex": ("kr", lambda g: g["api"].query_private("Balance"), lambda a: a["error"] == []),
    "python-okx": ("ok", lambda g: g["account"].get_account_balance(), lambda a: a["code"] == "0"),
    "pybit": ("by", lambda g: g["session"].get_wallet_balance(accountType="UNIFIED"), lambda a: a["retCode"] == 0),
    "hyperliquid-python-sdk": ("hl", lambda g: g["exchange"].update_leverage(5, "BTC"), lambda a: a["status"] == "ok"),
    "binance-sdk-spot": ("bn", lambda g: g["client"].rest_api.get_account().data(), lambda a: a.balances is not None),
}


@pytest.mark.parametrize("client", list(SDK_CALLS))
def test_each_official_sdks_snippet_makes_a_signed_call_through_keyproxy(dev: DevStack, client: str) -> None:
    account, call, good = SDK_CALLS[client]
    code = dev.cli("bot", "add", f"{account}-{client}", "--account", account, "--scope", "read,trade",
                   "--client", client).stdout
    start = len(dev.journal())
    answer = call(run_snippet(code))
    assert good(answer), answer
    assert any(e.get("signature_verified") for e in dev.journal()[start:]), "no signed request reached the exchange"


def test_bot_config_prints_it_again_without_the_secret(dev: DevStack) -> None:
    shown = dev.add_bot("bn-again", "bn", "read")
    again = dev.cli("bot", "config", "bn-again", "--client", "ccxt").stdout
    assert shown["secret"] not in again and SECRET_PLACEHOLDER in again and shown["api_key"] in again
    okx = dev.add_bot("ok-again", "ok", "read")
    again = dev.cli("bot", "config", "ok-again", "--client", "freqtrade").stdout
    assert okx["secret"] not in again and okx["passphrase"] not in again
    assert json.loads(again)["exchange"]["password"] == SECRET_PLACEHOLDER


def test_bad_client_requests_get_one_line(dev: DevStack) -> None:
    dev.add_bot("bn-bad", "bn", "read")
    dev.add_bot("ok-bad", "ok", "read")
    bad = dev.cli("bot", "config", "bn-bad", "--client", "hummingbot", check=False)
    assert bad.returncode == 2
    assert "unknown --client 'hummingbot'; known: ccxt, freqtrade, python-binance, krakenex" in bad.stderr
    wrong = dev.cli("bot", "config", "ok-bad", "--client", "python-binance", check=False)
    assert wrong.returncode == 2 and "python-binance does not trade on okx" in wrong.stderr
    dev.add_bot("cb-plain", "cb", "read")
    plain = dev.cli("bot", "config", "cb-plain", "--client", "coinbase-advanced-py", check=False)
    assert plain.returncode == 2 and "only speaks https: turn on keyproxy's TLS listener" in plain.stderr
    refused = dev.cli("bot", "add", "never", "--account", "bn", "--scope", "read", "--client", "nope", check=False)
    assert refused.returncode == 2 and "never" not in dev.cli("bot", "list").stdout  # refused before adding


def test_every_ccxt_url_is_rewritten_for_every_exchange_keyproxy_serves() -> None:
    base = "http://127.0.0.1:8750/acct"
    for exchange, _ in ACCOUNTS.values():
        urls = _strings(ccxt_urls(exchange, base))
        assert urls and all(u.startswith((base, "ws://127.0.0.1:8750/acct")) for u in urls), exchange


MARKET_BUYS = {"bn": ("BTC/USDT", 0.001), "ok": ("BTC/USDT", 0.001), "by": ("BTC/USDT", 0.001),
               "kr": ("BTC/USD", 0.001), "cb": ("BTC/USD", 0.001)}


@pytest.mark.parametrize("account", list(MARKET_BUYS))
def test_candles_and_trade_history_a_framework_reads_come_through(dev: DevStack, account: str) -> None:
    """What freqtrade-like frameworks read besides orders: candles consistent with the price orders fill at,
    and the bot's own trades (ccxt fetch_ohlcv, fetch_my_trades), unmodified ccxt through keyproxy."""
    code = dev.cli("bot", "add", f"{account}-history", "--account", account, "--scope", "read,trade",
                   "--client", "ccxt").stdout
    ex = run_snippet(code)["exchange"]
    ex.enableRateLimit = False
    ex.load_markets()
    symbol, amount = MARKET_BUYS[account]
    candles = ex.fetch_ohlcv(symbol, "1m", limit=5)
    assert 1 <= len(candles) <= 5 and candles == sorted(candles)
    if account == "cb":  # a Coinbase market buy is sized in quote currency
        ex.options["createMarketBuyOrderRequiresPrice"] = False
        order = ex.create_order(symbol, "market", "buy", 50)
    else:
        order = ex.create_order(symbol, "market", "buy", amount)
    trades = ex.fetch_my_trades(symbol)
    [trade] = [t for t in trades if t["order"] == order["id"]]
    assert {c[4] for c in candles} == {trade["price"]}, (candles, trade)  # candles where orders fill
