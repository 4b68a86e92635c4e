"""Each exchange's public time endpoint and how to read it (for `keyproxy doctor`'s clock-skew check). Pure."""

from __future__ import annotations

import json
from typing import Any

TIME_PATHS = {
    "binance": "/api/v3/time",
    "kraken": "/0/public/Time",
    "okx": "/api/v5/public/time",
    "bybit": "/v5/market/time",
    "coinbase": "/api/v3/brokerage/time",
}


def server_time(exchange: str, body: bytes) -> float:
    """The exchange's clock in Unix seconds, from its time endpoint's answer."""
    doc: Any = json.loads(body)
    if exchange == "binance":
        return float(doc["serverTime"]) / 1000
    if exchange == "kraken":
        return float(doc["result"]["unixtime"])
    if exchange == "okx":
        return float(doc["data"][0]["ts"]) / 1000
    if exchange == "bybit":
        return float(doc["result"]["timeSecond"]) if "result" in doc else float(doc["time"]) / 1000
    if exchange == "coinbase":
        return float(doc["epochMillis"]) / 1000 if "epochMillis" in doc else float(doc["epochSeconds"])
    raise ValueError(f"no clock reader for {exchange}")
