"""Binance's candles and trade history, as a bot framework reads them (freqtrade: klines for its strategy,
myTrades for the fees of a filled order).

Candles are flat at the market's current price (the emulator has no price history): every candle's open,
high, low and close is the last price, so a strategy sees a market consistent with what orders fill at.
Trades come from the account's filled orders, one trade per order at its fill price, fee 0.
"""

from __future__ import annotations

from typing import Any

from keyproxy.emulator.binance_data import Market, fmt
from keyproxy.emulator.binance_state import Account
from keyproxy.emulator.candles import candle_opens

INTERVAL_MS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
               "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000, "1M": 2_592_000_000}


class HistoryError(ValueError):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def _int(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise HistoryError(-1100, f"Illegal characters found in parameter '{name}'; "
                                  "legal range is '^[0-9]{1,20}$'.") from None


def klines(market: Market, params: dict[str, Any], now_ms: int) -> list[list[Any]]:
    """`GET /api/v3/klines` (and uiKlines, and the futures twins): the newest `limit` candles up to `endTime`
    (default now), or from `startTime`; the last one is the candle in progress."""
    interval = INTERVAL_MS.get(str(params.get("interval", "")))
    if interval is None:
        raise HistoryError(-1120, "Invalid interval.")
    limit = _int(params, "limit") or 500
    if not 1 <= limit <= 1500:
        raise HistoryError(-1130, "Invalid data sent for a parameter.")
    opens = candle_opens(interval, now_ms, limit, _int(params, "startTime"), _int(params, "endTime"))
    price, volume = fmt(market.last), "10.00000000"
    return [[t, price, price, price, price, volume, t + interval - 1, fmt(market.last * 10), 10, "5.00000000",
             fmt(market.last * 5), "0"] for t in opens]


def my_trades(acct: Account, market: Market, params: dict[str, Any]) -> list[dict[str, Any]]:
    """`GET /api/v3/myTrades`: one trade per filled order of the symbol (fee 0), oldest first."""
    order_id = _int(params, "orderId")
    start, end = _int(params, "startTime"), _int(params, "endTime")
    limit = min(_int(params, "limit") or 500, 1000)
    out = []
    for order in sorted(acct.orders.values(), key=lambda o: o.order_id):
        if order.market is not market or order.executed_qty == 0:
            continue
        if order_id is not None and order.order_id != order_id:
            continue
        if start is not None and order.update_time < start or end is not None and order.update_time > end:
            continue
        out.append({"symbol": market.symbol, "id": order.order_id, "orderId": order.order_id, "orderListId": -1,
                    "price": fmt(order.fill_price), "qty": fmt(order.executed_qty), "quoteQty": fmt(order.cum_quote),
                    "commission": "0.00000000", "commissionAsset": market.quote, "time": order.update_time,
                    "isBuyer": order.side == "BUY", "isMaker": False, "isBestMatch": True})
    return out[-limit:]
