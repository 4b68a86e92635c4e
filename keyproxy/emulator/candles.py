"""Candles for every emulated exchange: flat at the market's current price (the emulator keeps no price
history), aligned to the interval, the newest one in progress. Each exchange formats them its own way."""

from __future__ import annotations


def candle_opens(interval_ms: int, now_ms: int, limit: int, start_ms: int | None = None,
                 end_ms: int | None = None) -> list[int]:
    """Open times, oldest first: the newest `limit` up to `end_ms` (default now), or from `start_ms`."""
    newest = min(end_ms if end_ms is not None else now_ms, now_ms) // interval_ms * interval_ms
    if start_ms is not None:
        first = -(-start_ms // interval_ms) * interval_ms
        return list(range(first, newest + 1, interval_ms))[:limit]
    return [t for t in (newest - i * interval_ms for i in range(limit - 1, -1, -1)) if t >= 0]
