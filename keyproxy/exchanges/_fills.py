"""What every exchange's fill reader shares: numbers that may be zero, cumulative updates, per-leg verdicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from keyproxy.exchanges.base import published

MAX_ORDERS = 1000  # read from one answer at most


def qty(value: object) -> Decimal | None:
    """A published number that may be 0 (nothing filled yet); None when it is not a number >= 0."""
    number = published(value)
    if number is not None:
        return number
    try:
        return Decimal(0) if isinstance(value, str | int) and not isinstance(value, bool) \
            and Decimal(str(value)) == 0 else None
    except ArithmeticError:
        return None


def loads(body: bytes | str) -> Any:
    """An exchange's JSON answer parsed, or None when it is none. orjson reads it (three times json's speed, on
    every order answer and stream event); json where orjson refuses what json reads (integers past 64 bits,
    NaN, UTF-16), so what is read never depends on which parser read it."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def listed_verdicts(items: object, legs: int, took: Callable[[Any], bool]) -> tuple[bool, ...]:
    """Per leg, `took(item)` of the answer's item in the leg's place (a missing item: refused)."""
    items = items if isinstance(items, list) else []
    return tuple(i < len(items) and took(items[i]) for i in range(legs))
