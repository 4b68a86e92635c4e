"""Incident-response settings: bad values get the key and the reason, each exchange's switch its own bounds."""

from __future__ import annotations

import pytest

from keyproxy.errors import ConfigError
from keyproxy.exchanges.open_orders import SWITCHES
from keyproxy.policy.model import PolicyError, parse_account_limits, parse_policy
from keyproxy.proxy.dead_man import check_switches, switch_problem


@pytest.mark.parametrize(("value", "said"), [
    (1, "heartbeat_seconds: must be 2 to 86400 seconds, not 1"),
    (90_000, "heartbeat_seconds: must be 2 to 86400 seconds, not 90000"),
    (2.5, "heartbeat_seconds: must be a whole number"),
    (-3, "heartbeat_seconds: must be a positive number"),
    ("soon", "heartbeat_seconds: must be a positive number"),
])
def test_a_heartbeat_out_of_range_is_refused(value: object, said: str) -> None:
    with pytest.raises(PolicyError, match=said):
        parse_policy({"heartbeat_seconds": value})


def test_a_heartbeat_is_set_and_cleared() -> None:
    policy = parse_policy({"heartbeat_seconds": "30"})
    assert policy.heartbeat_seconds == 30
    assert parse_policy({"heartbeat_seconds": "none"}, base=policy).heartbeat_seconds is None


@pytest.mark.parametrize(("value", "said"), [(4, "must be 5 to 86400 seconds, not 4"), (True, "positive number"),
                                             (0, "positive number")])
def test_a_dead_man_window_out_of_range_is_refused(value: object, said: str) -> None:
    with pytest.raises(PolicyError, match=said):
        parse_account_limits({"dead_man_seconds": value})


def test_each_exchange_says_whether_and_how_long_its_switch_can_be_armed() -> None:
    assert switch_problem("kraken", 60) is None and switch_problem("hyperliquid", 5) is None
    assert switch_problem("okx", 120) is None
    assert switch_problem("okx", 121) == "okx's cancel-all-after accepts 10 to 120 seconds, not 121"
    assert "Binance spot has no cancel-on-silence timer" in (switch_problem("binance", 60) or "")
    assert "Coinbase" in (switch_problem("coinbase", 60) or "")
    assert switch_problem("bybit", 300) is None  # disconnect-cancel-all, on a socket keyproxy holds
    assert switch_problem("bybit", 301) == "bybit's disconnect-cancel-all (DCP) accepts 3 to 300 seconds, not 301"
    limits = {"a": parse_account_limits({"dead_man_seconds": 60}),
              "ghost": parse_account_limits({"dead_man_seconds": 60})}
    check_switches(limits, {"a": "kraken"})  # an account the vault does not hold is not this check's business
    with pytest.raises(ConfigError, match=r"\[accounts.a\] dead_man_seconds: Binance spot"):
        check_switches(limits, {"a": "binance"})


def _endpoint(exchange: str, method: str, path: str, body: bytes) -> str:
    """The endpoint name the core decides a request by: the adapter's classification, as for any request
    (a WebSocket frame: its dialect's, by the method the frame names once decoded)."""
    from keyproxy.exchanges import default_adapters
    from keyproxy.exchanges.base import IncomingRequest

    adapter = default_adapters()[exchange]
    if path == "/v2":  # Kraken's WebSocket API
        adapter = adapter.websocket(path)
        _, method = adapter.ws_frame(body.decode())
    req = IncomingRequest(method, path, "", {"content-type": "application/json"}, body)
    endpoint = adapter.classify_request(req) or adapter.classify(method, path)
    return endpoint.name if endpoint is not None else ""


@pytest.mark.parametrize(("exchange", "method", "path", "body", "switch"), [
    ("kraken", "POST", "/0/private/CancelAllOrdersAfter", b"timeout=0", True),
    ("kraken", "POST", "/v2", b'{"method":"cancel_all_orders_after","params":{"timeout":0,"token":"t"}}', True),
    # the same method name written with a JSON escape: decoded as Kraken decodes it, still the switch
    ("kraken", "POST", "/v2", b'{"method":"\\u0063ancel_all_orders_after","params":{"timeout":0,"token":"t"}}', True),
    ("kraken", "POST", "/v2", b'{"method":"add_order","params":{"cl_ord_id":"cancel_all_orders_after","token":"t"}}',
     False),
    ("kraken", "POST", "/0/private/CancelAll", b"", False),
    ("okx", "POST", "/api/v5/trade/cancel-all-after", b'{"timeOut":"0"}', True),
    ("hyperliquid", "POST", "/exchange", b'{"action":{"type":"scheduleCancel"},"nonce":1}', True),
    ("hyperliquid", "POST", "/exchange", b'{"action":{"type":"\\u0073cheduleCancel"},"nonce":1}', True),
    ("hyperliquid", "POST", "/exchange", b'{"action":{"type":"order","grouping":"scheduleCancel"},"nonce":1}', False),
    ("bybit", "POST", "/v5/order/disconnected-cancel-all", b'{"product":"SPOT","timeWindow":300}', True),
    ("bybit", "GET", "/v5/account/query-dcp-info", b"", False),  # reading it is harmless
])
def test_a_bots_call_that_would_set_or_clear_the_switch_is_recognised(exchange: str, method: str, path: str,
                                                                     body: bytes, switch: bool) -> None:
    assert (_endpoint(exchange, method, path, body) in SWITCHES[exchange].endpoints) is switch


def test_arming_is_believed_only_when_the_exchange_confirms() -> None:
    kraken, okx, hl = SWITCHES["kraken"], SWITCHES["okx"], SWITCHES["hyperliquid"]
    spec = ("POST", "/", "", b"")
    assert kraken.armed(spec, 200, b'{"error":[],"result":{"currentTime":"x","triggerTime":"y"}}', 60) is None
    assert kraken.armed(spec, 200, b'{"error":["EAPI:Invalid nonce"]}', 60) == \
        'HTTP 200: {"error":["EAPI:Invalid nonce"]}'
    assert okx.armed(spec, 200, b'{"code":"0","data":[{"triggerTime":"1"}]}', 60) is None
    assert okx.armed(spec, 200, b'{"code":"51000","msg":"Parameter timeOut error"}', 60) is not None
    assert hl.armed(spec, 200, b'{"status":"ok","response":{"type":"default"}}', 60) is None
    assert hl.armed(spec, 200, b'{"status":"err","response":"Scheduled cancel time too early"}', 60) is not None
    assert hl.armed(spec, 502, b"", 60) == "HTTP 502: "


def test_bybit_dcp_sets_the_window_of_each_product_bybit_switched_on_and_nothing_else() -> None:
    """Bybit's docs (v5/account/dcp-info): only the products switched on are listed; nothing when none is."""
    import json

    bybit = SWITCHES["bybit"]
    info = bybit.arm(60, 0)
    assert info[:2] == ("GET", "/v5/account/query-dcp-info")

    def listed(*products: tuple[str, str]) -> bytes:
        infos = [{"product": p, "dcpStatus": "ON", "timeWindow": w} for p, w in products]
        return json.dumps({"retCode": 0, "retMsg": "success", "result": {"dcpInfos": infos}}).encode()

    sets = bybit.armed(info, 200, listed(("SPOT", "10"), ("DERIVATIVES", "60")), 60)
    assert isinstance(sets, list) and len(sets) == 1  # DERIVATIVES already holds 60 s
    assert sets[0][:2] == ("POST", "/v5/order/disconnected-cancel-all")
    assert json.loads(sets[0][3]) == {"product": "SPOT", "timeWindow": 60}
    assert bybit.armed(sets[0], 200, b'{"retCode":0,"retMsg":"OK","result":{}}', 60) is None
    assert "10001" in str(bybit.armed(sets[0], 200, b'{"retCode":10001,"retMsg":"params error"}', 60))
    assert bybit.armed(info, 200, listed(("SPOT", "60")), 60) is None  # nothing to set
    off = bybit.armed(info, 200, listed(), 60)
    assert isinstance(off, str) and "has not switched disconnect-cancel-all (DCP) on" in off
    answer = b'{"retCode":0,"result":{"dcpInfos":[{"product":"SPOT","dcpStatus":"OFF"}]}}'
    assert bybit.armed(info, 200, answer, 60) == off
    assert bybit.armed(info, 403, b"forbidden", 60) == "HTTP 403: forbidden"