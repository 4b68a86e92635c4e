"""Binance endpoint table: path, security type and permission per endpoint.

Security types follow Binance's docs: NONE (public), MARKET_DATA (API key
only; ccxt signs these anyway and the emulator then verifies the signature
too), SIGNED (USER_DATA / TRADE: API key + timestamp + signature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.binance_state import Account

PREFIXES = {"/api/": "spot", "/sapi/": "spot", "/fapi/": "fapi", "/dapi/": "dapi"}
# Binance's defaults for a new key: reading only (rest-api.md "Request Security").
DEFAULT_PERMISSIONS: dict[str, Any] = {
    "ipRestrict": False,
    "enableReading": True,
    "enableWithdrawals": False,
    "enableInternalTransfer": False,
    "enableMargin": False,
    "enableFutures": False,
    "permitsUniversalTransfer": False,
    "enableVanillaOptions": False,
    "enableFixApiTrade": False,
    "enableFixReadOnly": False,
    "enableSpotAndMarginTrading": False,
    "enablePortfolioMarginTrading": False,
}
READ, SPOT_TRADE, FUT_TRADE, WITHDRAW = (
    "enableReading",
    "enableSpotAndMarginTrading",
    "enableFutures",
    "enableWithdrawals",
)


@dataclass(frozen=True)
class Route:
    """Security type (NONE / MARKET_DATA / SIGNED), permission needed, handler name."""

    security: str
    permission: str | None
    handler: str


def _routes() -> dict[tuple[str, str], Route]:
    r: dict[tuple[str, str], Route] = {}

    def add(
        method: str, paths: tuple[str, ...], security: str, perm: str | None, handler: str
    ) -> None:
        for path in paths:
            r[(method, path)] = Route(security, perm, handler)

    venues = ("/api/v3", "/fapi/v1", "/dapi/v1")
    add("GET", tuple(v + "/ping" for v in venues), "NONE", None, "ping")
    add("GET", tuple(v + "/time" for v in venues), "NONE", None, "time")
    add("GET", tuple(v + "/exchangeInfo" for v in venues), "NONE", None, "exchange_info")
    add("GET", tuple(v + "/ticker/24hr" for v in venues), "NONE", None, "ticker_24hr")
    add(
        "GET",
        tuple(v + "/ticker/price" for v in venues) + ("/fapi/v2/ticker/price",),
        "NONE",
        None,
        "ticker_price",
    )
    add("GET", tuple(v + "/ticker/bookTicker" for v in venues), "NONE", None, "book_ticker")
    add("GET", tuple(v + "/depth" for v in venues), "NONE", None, "depth")
    add("GET", tuple(v + "/klines" for v in venues) + ("/api/v3/uiKlines",), "NONE", None, "klines")
    add("GET", ("/api/v3/myTrades",), "SIGNED", READ, "my_trades")
    add("GET", ("/api/v3/account",), "SIGNED", READ, "spot_account")
    add("POST", ("/api/v3/order",), "SIGNED", SPOT_TRADE, "new_order")
    add("POST", ("/api/v3/order/test",), "SIGNED", SPOT_TRADE, "test_order")
    add("POST", ("/api/v3/order/cancelReplace",), "SIGNED", SPOT_TRADE, "cancel_replace")
    add("POST", ("/fapi/v1/order", "/dapi/v1/order"), "SIGNED", FUT_TRADE, "new_order")
    add("PUT", ("/fapi/v1/order", "/dapi/v1/order"), "SIGNED", FUT_TRADE, "modify_order")
    add("POST", ("/fapi/v1/batchOrders", "/dapi/v1/batchOrders"), "SIGNED", FUT_TRADE, "batch_orders")
    algo = ("/fapi/v1/algoOrder", "/dapi/v1/algoOrder")  # conditional orders (binance_algo.py)
    add("POST", algo, "SIGNED", FUT_TRADE, "algo_new")
    add("DELETE", algo, "SIGNED", FUT_TRADE, "algo_cancel")
    add("GET", algo, "SIGNED", READ, "algo_query")
    add("GET", ("/fapi/v1/openAlgoOrders", "/dapi/v1/openAlgoOrders"), "SIGNED", READ, "algo_open")
    add("GET", ("/fapi/v1/allAlgoOrders", "/dapi/v1/allAlgoOrders"), "SIGNED", READ, "algo_all")
    add("DELETE", ("/fapi/v1/algoOpenOrders", "/dapi/v1/algoOpenOrders"), "SIGNED", FUT_TRADE, "algo_cancel_all")
    # USD-M user data stream: USER_STREAM security (API key only; ccxt signs it anyway)
    add("POST", ("/fapi/v1/listenKey",), "MARKET_DATA", None, "listen_key_start")
    add("PUT", ("/fapi/v1/listenKey",), "MARKET_DATA", None, "listen_key_keepalive")
    add("DELETE", ("/fapi/v1/listenKey",), "MARKET_DATA", None, "listen_key_close")
    add("POST", ("/dapi/v1/listenKey",), "MARKET_DATA", None, "listen_key_start")
    add("PUT", ("/dapi/v1/listenKey",), "MARKET_DATA", None, "listen_key_keepalive")
    add("DELETE", ("/dapi/v1/listenKey",), "MARKET_DATA", None, "listen_key_close")
    add("POST", ("/sapi/v1/margin/order",), "SIGNED", SPOT_TRADE, "margin_new_order")  # binance_margin.py
    add("GET", ("/sapi/v1/margin/openOrders",), "SIGNED", READ, "margin_open_orders")
    add("DELETE", ("/sapi/v1/margin/order",), "SIGNED", SPOT_TRADE, "margin_cancel_order")
    add("POST", ("/sapi/v1/userListenToken",), "MARKET_DATA", None, "listen_token")  # margin (USER_STREAM)
    add("GET", tuple(v + "/order" for v in venues), "SIGNED", READ, "query_order")
    add("DELETE", ("/api/v3/order",), "SIGNED", SPOT_TRADE, "cancel_order")
    add("PUT", ("/api/v3/order/amend/keepPriority",), "SIGNED", SPOT_TRADE, "amend_keep_priority")
    add("DELETE", ("/fapi/v1/order", "/dapi/v1/order"), "SIGNED", FUT_TRADE, "cancel_order")
    add("GET", tuple(v + "/openOrders" for v in venues), "SIGNED", READ, "open_orders")
    add("DELETE", ("/api/v3/openOrders",), "SIGNED", SPOT_TRADE, "cancel_all")
    add(
        "DELETE",
        ("/fapi/v1/allOpenOrders", "/dapi/v1/allOpenOrders"),
        "SIGNED",
        FUT_TRADE,
        "cancel_all",
    )
    add(
        "GET",
        ("/api/v3/allOrders", "/fapi/v1/allOrders", "/dapi/v1/allOrders"),
        "SIGNED",
        READ,
        "all_orders",
    )
    add(
        "GET",
        ("/fapi/v2/account", "/fapi/v3/account", "/dapi/v1/account"),
        "SIGNED",
        READ,
        "futures_account",
    )
    add(
        "GET",
        ("/fapi/v2/balance", "/fapi/v3/balance", "/dapi/v1/balance"),
        "SIGNED",
        READ,
        "futures_balance",
    )
    add(
        "GET",
        ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk", "/dapi/v1/positionRisk"),
        "SIGNED",
        READ,
        "position_risk",
    )
    add("POST", ("/fapi/v1/leverage", "/dapi/v1/leverage"), "SIGNED", FUT_TRADE, "leverage")
    add("GET", ("/fapi/v1/leverageBracket",), "SIGNED", READ, "leverage_bracket")
    add("GET", ("/sapi/v1/system/status",), "NONE", None, "system_status")
    add("GET", ("/sapi/v1/capital/config/getall",), "SIGNED", READ, "capital_config")
    add("GET", ("/sapi/v1/margin/allPairs",), "MARKET_DATA", None, "margin_all_pairs")
    add("GET", ("/sapi/v1/margin/isolated/allPairs",), "SIGNED", READ, "margin_isolated_pairs")
    add("GET", ("/sapi/v1/account/apiRestrictions",), "SIGNED", READ, "api_restrictions")
    add("POST", ("/sapi/v1/capital/withdraw/apply",), "SIGNED", WITHDRAW, "withdraw")
    add("GET", ("/sapi/v1/capital/withdraw/history",), "SIGNED", READ, "withdraw_history")
    return r


ROUTES = _routes()


@dataclass
class Call:
    """One authenticated (or public) call handed to a handler."""

    venue: str
    params: dict[str, str]
    account: Account | None
    now: int
    key: EmulatedKey | None = None  # the key that signed it: permissions are per key, state per account

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account

    @property
    def permissions(self) -> dict[str, Any]:
        assert self.key is not None
        return self.key.permissions


def venue_of(path: str) -> str:
    """Which venue (spot, fapi, dapi) a path belongs to; sapi counts as spot."""
    return next(v for p, v in PREFIXES.items() if path.startswith(p))
