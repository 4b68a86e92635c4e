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
    assert "Coinbase" in (switch_problem("coinbase", 60) or "") and "Bybit" in (switch_problem("bybit", 60) or "")
    limits = {"a": parse_account_limits({"dead_man_seconds": 60}), "ghost": parse_account_limits({"dead_man_seconds": 60})}
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
])
def test_a_bots_call_that_would_set_or_clear_the_switch_is_recognised(exchange: str, method: str, path: str,
                                                                     body: bytes, switch: bool) -> None:
    assert (_endpoint(exchange, method, path, body) in SWITCHES[exchange].endpoints) is switch


def test_arming_is_believed_only_when_the_exchange_confirms() -> None:
    kraken, okx, hl = SWITCHES["kraken"], SWITCHES["okx"], SWITCHES["hyperliquid"]
    assert kraken.armed(200, b'{"error":[],"result":{"currentTime":"x","triggerTime":"y"}}') is None
    assert kraken.armed(200, b'{"error":["EAPI:Invalid nonce"]}') == 'HTTP 200: {"error":["EAPI:Invalid nonce"]}'
    assert okx.armed(200, b'{"code":"0","data":[{"triggerTime":"1"}]}') is None
    assert okx.armed(200, b'{"code":"51000","msg":"Parameter timeOut error"}') is not None
    assert hl.armed(200, b'{"status":"ok","response":{"type":"default"}}') is None
    assert hl.armed(200, b'{"status":"err","response":"Scheduled cancel time too early"}') is not None
    assert hl.armed(502, b"") == "HTTP 502: "
