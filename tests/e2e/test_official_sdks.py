"""Each exchange's own Python SDK through keyproxy, with only its base URL (or host) changed.

Where an SDK cannot be pointed elsewhere by a constructor option, the test uses the smallest change
that works, the one docs/clients.md shows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key

SDK_EXCHANGES = {"binance": "hmac", "kraken": "hmac", "okx": "hmac", "coinbase": "ec", "bybit": "hmac"}


@pytest.fixture(scope="module")
def sdk_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    from keyproxy.exchanges import default_adapters

    adapters = default_adapters()
    dev = DevStack(tmp_path_factory.mktemp("sdks"))
    keys = {ex: new_real_key(kt, exchange=ex) for ex, kt in SDK_EXCHANGES.items() if ex in adapters}
    try:
        dev.serve_accounts(keys)
        yield dev
    finally:
        dev.close()


def verified_private(dev: DevStack, start: int) -> list[dict]:  # type: ignore[type-arg]
    private = [e for e in dev.journal()[start:] if e.get("api_key")]
    assert private and all(e["signature_verified"] for e in private), private
    return private


def test_python_binance(sdk_stack: DevStack) -> None:
    binance_client = pytest.importorskip("binance.client")
    creds = sdk_stack.add_bot("pb", "binance", "read,trade")
    base = creds["base_url"]

    class KeyproxyClient(binance_client.Client):  # type: ignore[misc,name-defined]
        API_URL = base + "/api"
        MARGIN_API_URL = base + "/sapi"
        FUTURES_URL = base + "/fapi"
        FUTURES_DATA_URL = base + "/futures/data"
        FUTURES_COIN_URL = base + "/dapi"
        FUTURES_COIN_DATA_URL = base + "/futures/data"
        OPTIONS_URL = base + "/eapi"
        PAPI_URL = base + "/papi"

    start = len(sdk_stack.journal())
    client = KeyproxyClient(creds["api_key"], creds["secret"])
    assert any(b["asset"] == "USDT" for b in client.get_account()["balances"])
    order = client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                quantity="0.001", price="20000")
    assert [o["orderId"] for o in client.get_open_orders(symbol="BTCUSDT")] == [order["orderId"]]
    assert client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])["status"] == "CANCELED"
    verified_private(sdk_stack, start)


def test_krakenex(sdk_stack: DevStack) -> None:
    krakenex = pytest.importorskip("krakenex")
    if "kraken" not in {a["exchange"] for a in _accounts(sdk_stack)}:
        pytest.skip("no kraken adapter")
    creds = sdk_stack.add_bot("kx", "kraken", "read,trade")
    api = krakenex.API(creds["api_key"], creds["secret"])
    api.uri = creds["base_url"]  # the one attribute to change
    start = len(sdk_stack.journal())
    balance = api.query_private("Balance")
    assert balance["error"] == [] and balance["result"]
    added = api.query_private("AddOrder", {"pair": "XBTUSD", "type": "buy", "ordertype": "limit",
                                           "price": "50000", "volume": "0.001"})
    assert added["error"] == [], added
    txid = added["result"]["txid"][0]
    assert txid in api.query_private("OpenOrders")["result"]["open"]
    assert api.query_private("CancelOrder", {"txid": txid})["error"] == []
    verified_private(sdk_stack, start)


def test_python_okx(sdk_stack: DevStack) -> None:
    account_mod = pytest.importorskip("okx.Account")
    trade_mod = pytest.importorskip("okx.Trade")
    if "okx" not in {a["exchange"] for a in _accounts(sdk_stack)}:
        pytest.skip("no okx adapter")
    creds = sdk_stack.add_bot("po", "okx", "read,trade")
    args = (creds["api_key"], creds["secret"], creds["passphrase"])
    # flag="0" is live trading; python-okx's default "1" asks for demo trading, which a live account refuses
    account = account_mod.AccountAPI(*args, flag="0", domain=creds["base_url"])
    trade = trade_mod.TradeAPI(*args, flag="0", domain=creds["base_url"])
    start = len(sdk_stack.journal())
    assert account.get_account_balance()["code"] == "0"
    placed = trade.place_order(instId="BTC-USDT", tdMode="cash", side="buy", ordType="limit", px="50000",
                               sz="0.001")
    assert placed["code"] == "0", placed
    order_id = placed["data"][0]["ordId"]
    assert order_id in [o["ordId"] for o in trade.get_order_list()["data"]]
    assert trade.cancel_order(instId="BTC-USDT", ordId=order_id)["code"] == "0"
    verified_private(sdk_stack, start)


def _accounts(dev: DevStack) -> list[dict]:  # type: ignore[type-arg]
    import json

    return json.loads(dev.cli("key", "list", "--json").stdout)


def test_coinbase_advanced_py(sdk_stack: DevStack) -> None:
    rest = pytest.importorskip("coinbase.rest")
    requests_adapters = pytest.importorskip("requests.adapters")
    if "coinbase" not in {a["exchange"] for a in _accounts(sdk_stack)}:
        pytest.skip("no coinbase adapter")
    creds = sdk_stack.add_bot("cb", "coinbase", "read,trade")

    class PlainHttp(requests_adapters.HTTPAdapter):  # type: ignore[misc,name-defined]
        """coinbase-advanced-py always builds https:// URLs; keyproxy listens on plain loopback HTTP."""

        def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
            request.url = "http://" + request.url.removeprefix("https://")
            return super().send(request, **kwargs)

    base = creds["base_url"].removeprefix("http://")  # the SDK wants host[:port][/path], no scheme
    client = rest.RESTClient(api_key=creds["api_key"], api_secret=creds["secret"], base_url=base)
    client.session.mount("https://", PlainHttp())
    start = len(sdk_stack.journal())
    accounts = client.get_accounts()
    assert accounts.accounts
    placed = client.limit_order_gtc_buy(client_order_id="kp-sdk-1", product_id="BTC-USD", base_size="0.001",
                                        limit_price="50000")
    assert placed.success, placed
    order_id = placed.success_response["order_id"]
    open_ids = [o.order_id for o in client.list_orders(order_status=["OPEN"]).orders]
    assert order_id in open_ids
    assert client.cancel_orders(order_ids=[order_id]).results[0].success
    verified_private(sdk_stack, start)


def test_pybit(sdk_stack: DevStack) -> None:
    unified = pytest.importorskip("pybit.unified_trading")
    if "bybit" not in {a["exchange"] for a in _accounts(sdk_stack)}:
        pytest.skip("no bybit adapter")
    creds = sdk_stack.add_bot("pbt", "bybit", "read,trade")
    session = unified.HTTP(api_key=creds["api_key"], api_secret=creds["secret"])
    session.endpoint = creds["base_url"]  # the one attribute to change
    start = len(sdk_stack.journal())
    assert session.get_wallet_balance(accountType="UNIFIED")["retCode"] == 0
    placed = session.place_order(category="spot", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001",
                                 price="50000")
    order_id = placed["result"]["orderId"]
    listed = session.get_open_orders(category="spot", symbol="BTCUSDT")["result"]["list"]
    assert order_id in [o["orderId"] for o in listed]
    assert session.cancel_order(category="spot", symbol="BTCUSDT", orderId=order_id)["retCode"] == 0
    verified_private(sdk_stack, start)
