"""Least privilege end to end: each limit refused with its code, and the emulator's journal shows nothing arrived."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, point_ccxt_at
from tests.e2e.conftest import cancel_orders_of, hmac_sign, now_ms, one_account_stack


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    yield from one_account_stack(tmp_path_factory, "policy", enableReading=True, enableSpotAndMarginTrading=True,
                                 enableFutures=True, enableWithdrawals=True)


def bot(dev: DevStack, name: str, *settings: str, scope: str = "read,trade") -> ccxt.binance:
    creds = dev.add_bot(name, "main", scope, *[x for s in settings for x in ("--set", s)])
    ex = point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                     "options": {"defaultType": "spot"}}), creds["base_url"])
    ex.load_markets()
    ex.creds = creds  # type: ignore[attr-defined]
    return ex


def refused(dev: DevStack, call, code: str, exc: type = ccxt.ExchangeError) -> None:  # type: ignore[no-untyped-def]
    start = len(dev.journal())
    with pytest.raises(exc) as e:
        call()
    assert f'"error": "{code}"' in str(e.value), str(e.value)
    # ccxt's market list, and keyproxy's own public price read (valuing a market order): never the refused request
    arrived = [x for x in dev.journal()[start:] if x["path"] not in ("/api/v3/exchangeInfo", "/api/v3/ticker/price")]
    assert arrived == [], arrived


def test_symbol_outside_the_allowlist(limited: DevStack) -> None:
    ex = bot(limited, "symbols", "symbols=BTC/USDT")
    refused(limited, lambda: ex.create_order("ETH/USDT", "limit", "buy", 0.1, 1000), "symbol_denied", ccxt.InvalidOrder)
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    ex.cancel_order(order["id"], "BTC/USDT")


def test_order_above_the_notional_cap(limited: DevStack) -> None:
    ex = bot(limited, "notional", "max_order_notional=500")
    refused(limited, lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.1, 20000), "notional_exceeded",
            ccxt.InvalidOrder)
    # a market order is valued at the market: keyproxy has seen no BTCUSDT price yet, so it asks the exchange itself
    refused(limited, lambda: ex.create_order("BTC/USDT", "market", "buy", 0.1), "notional_exceeded", ccxt.InvalidOrder)
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 20000)  # 200 <= 500
    ex.cancel_order(order["id"], "BTC/USDT")


def test_leverage_above_the_cap(limited: DevStack) -> None:
    ex = bot(limited, "leverage", "max_leverage=5")
    refused(limited, lambda: ex.set_leverage(20, "BTC/USDT:USDT"), "leverage_exceeded", ccxt.InvalidOrder)
    ex.set_leverage(3, "BTC/USDT:USDT")


def test_burst_over_the_rate_limit_gets_429_with_retry_after(limited: DevStack) -> None:
    creds = limited.add_bot("ratey", "main", "read", "--set", "requests_per_second=1", "--set", "burst=2")
    u = urllib.parse.urlsplit(creds["base_url"])
    statuses, retry_after = [], None
    for _ in range(4):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request("GET", u.path + "/api/v3/account?" + hmac_sign(creds["secret"], f"timestamp={now_ms()}"),
                     headers={"X-MBX-APIKEY": creds["api_key"]})
        resp = conn.getresponse()
        statuses.append(resp.status)
        if resp.status == 429:
            retry_after = resp.getheader("Retry-After")
            assert json.loads(resp.read())["error"] == "rate_limited"
        conn.close()
    assert statuses[:2] == [200, 200] and 429 in statuses and retry_after == "1"


def test_address_outside_allow_ips(limited: DevStack) -> None:
    creds = limited.add_bot("remote", "main", "read", "--allow-ip", "127.0.0.2/32")
    u = urllib.parse.urlsplit(creds["base_url"])
    start = len(limited.journal())
    # allowed address first: a denied one also fires the foreign_ip anomaly rule (the bot is then suspended)
    for source, expected in (("127.0.0.2", 200), ("127.0.0.1", 403)):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10, source_address=(source, 0))
        conn.request("GET", u.path + "/api/v3/account?" + hmac_sign(creds["secret"], f"timestamp={now_ms()}"),
                     headers={"X-MBX-APIKEY": creds["api_key"]})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == expected, body
        if expected == 403:
            assert body["error"] == "ip_denied"
            assert len(limited.journal()[start:]) == 1  # only the allowed request arrived
        conn.close()


def test_withdrawal_to_an_unlisted_address(limited: DevStack) -> None:
    ex = bot(limited, "payer", "withdraw_addresses=USDT:BSC:0x00000000000000000000000000000000000000aa",
             "max_withdrawal=50", scope="read,withdraw")
    refused(limited, lambda: ex.withdraw("USDT", 10, "0x00000000000000000000000000000000000000bb",
                                          params={"network": "BSC"}), "address_denied", ccxt.AuthenticationError)
    refused(limited, lambda: ex.withdraw("USDT", 100, "0x00000000000000000000000000000000000000aa",
                                          params={"network": "BSC"}), "withdrawal_limit", ccxt.AuthenticationError)
    ex.withdraw("USDT", 10, "0x00000000000000000000000000000000000000aa", params={"network": "BSC"})


def test_halt_refuses_orders_lets_cancels_through_and_survives_restart(limited: DevStack) -> None:
    ex = bot(limited, "halted", "symbols=BTCUSDT")
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    assert "halted account main" in limited.cli("halt", "--account", "main", "--reason", "incident 7").stdout
    refused(limited, lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "halted")
    assert ex.fetch_open_orders("BTC/USDT")  # reads pass
    limited.stop_daemon()
    limited.start_daemon()
    ex = point_ccxt_at(ccxt.binance({"apiKey": ex.creds["api_key"], "secret": ex.creds["secret"]}),  # type: ignore[attr-defined]
                       limited.proxy_url + "/main")  # type: ignore[operator]
    ex.load_markets()
    refused(limited, lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "halted")
    assert ex.cancel_order(order["id"], "BTC/USDT")["status"] == "canceled"  # cancels pass
    status = json.loads(limited.cli("status", "--json").stdout)
    assert status["halts"][0]["reason"] == "incident 7" and status["daemon"] == "running"
    limited.cli("resume", "--account", "main")
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    ex.cancel_order(order["id"], "BTC/USDT")


def test_bot_set_changes_limits_live(limited: DevStack) -> None:
    ex = bot(limited, "tunable")
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 20000)
    ex.cancel_order(order["id"], "BTC/USDT")
    out = limited.cli("bot", "set", "tunable", "max_order_notional=100")
    assert "max_order_notional=100" in out.stdout
    refused(limited, lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.01, 20000), "notional_exceeded",
            ccxt.InvalidOrder)
    bad = limited.cli("bot", "set", "tunable", "max_order_notional=-1", check=False)
    assert bad.returncode == 2 and "max_order_notional: must be a positive number" in bad.stderr


def test_open_order_cap_counts_resting_orders_and_cancels(limited: DevStack) -> None:
    ex = bot(limited, "opener", "max_open_orders=2")
    first = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    second = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20001)
    refused(limited, lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20002), "open_orders_exceeded",
            ccxt.InvalidOrder)
    ex.cancel_order(first["id"], "BTC/USDT")
    third = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20003)
    for o in (second, third):
        ex.cancel_order(o["id"], "BTC/USDT")


def test_a_listing_of_the_accounts_orders_counts_only_the_bots_own_and_the_unknown(limited: DevStack) -> None:
    """A bot's open-orders listing shows the whole account's orders of the symbol: another bot's two resting orders
    set this bot's count to two (it was then refused with nothing open); an order of no known owner still counts."""
    other = bot(limited, "lister-neighbour")
    theirs = [other.create_order("BTC/USDT", "limit", "buy", 0.001, 20000 + i)["id"] for i in range(2)]
    ex = bot(limited, "lister", "max_open_orders=2")
    mine = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20010)
    assert len(ex.fetch_open_orders("BTC/USDT")) >= 3  # sets its count: its own one, not the neighbour's two
    second = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20011)
    refused(limited, lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20012), "open_orders_exceeded",
            ccxt.InvalidOrder)
    for o in (mine, second):
        ex.cancel_order(o["id"], "BTC/USDT")
    for oid in theirs:
        other.cancel_order(oid, "BTC/USDT")


def test_concurrent_orders_cannot_all_pass_the_open_order_cap(limited: DevStack) -> None:
    """A compromised bot firing many orders at once: each counts as open from the moment it is sent until
    its answer is read, so with max_open_orders = 2 at most two of twelve simultaneous orders go through."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.conftest import binance_limit_buy

    creds = limited.add_bot("burst", "main", "read,trade", "--set", "max_open_orders=2")
    start = len(limited.journal())

    def place(i: int) -> int:
        return binance_limit_buy(creds, "0.001", 20000 + i)

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(place, range(12)))
    placed = [e for e in limited.journal()[start:] if e.get("path") == "/api/v3/order" and e.get("method") == "POST"]
    assert statuses.count(200) == len(placed) <= 2 and statuses.count(403) >= 10, statuses
    cancel_orders_of(limited, "burst")  # what rests, cancelled by the operator (no other bot may)


def test_daily_notional_cap_survives_restart(limited: DevStack) -> None:
    ex = bot(limited, "daily", "daily_notional_cap=300")
    for _ in range(2):
        o = ex.create_order("BTC/USDT", "limit", "buy", 0.005, 20000)  # 100 each
        ex.cancel_order(o["id"], "BTC/USDT")
    limited.stop_daemon()
    port = int(limited.proxy_url.rsplit(":", 1)[1])  # type: ignore[union-attr]
    limited.start_daemon(port)
    o = ex.create_order("BTC/USDT", "limit", "buy", 0.005, 20000)  # 300: at the cap
    ex.cancel_order(o["id"], "BTC/USDT")
    refused(limited, lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "daily_notional_exceeded",
            ccxt.InvalidOrder)


def test_two_reads_with_the_same_parameters_are_two_requests_but_a_read_never_returns_as_a_write(
        limited: DevStack) -> None:
    """Binance signs parameters, not the path: ccxt loads margin pairs and isolated pairs at once, often in the
    same millisecond with the same `timestamp`: both must pass. The same read again is a replay, and a read's
    parameters cannot come back as a write (a captured `GET openOrders` replayed as `DELETE openOrders`)."""
    from tests.e2e.conftest import call

    creds = limited.add_bot("replayer", "main", "read,trade")
    key = {"X-MBX-APIKEY": creds["api_key"]}
    same = hmac_sign(creds["secret"], f"timestamp={now_ms()}&recvWindow=5000")
    first = call(creds["base_url"], "GET", "/sapi/v1/margin/allPairs", same, headers=key)
    second = call(creds["base_url"], "GET", "/sapi/v1/margin/isolated/allPairs", same, headers=key)
    assert (first.status, second.status) == (200, 200), (first.body, second.body)
    again = call(creds["base_url"], "GET", "/sapi/v1/margin/allPairs", same, headers=key)
    assert again.body.get("error") == "replayed_request"
    read = hmac_sign(creds["secret"], f"symbol=BTCUSDT&timestamp={now_ms()}")
    assert call(creds["base_url"], "GET", "/api/v3/openOrders", read, headers=key).status == 200
    start = len(limited.journal())
    write = call(creds["base_url"], "DELETE", "/api/v3/openOrders", read, headers=key)
    assert write.body.get("error") == "replayed_request", write.body
    assert [e for e in limited.journal()[start:] if e["path"] == "/api/v3/openOrders"] == []
