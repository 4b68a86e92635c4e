"""Human durations ("30d", "12h", "90m", "45s") to seconds and back."""

from __future__ import annotations

import re

from keyproxy.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"([1-9][0-9]{0,8})([smhdw])")


def parse_duration(text: str) -> int:
    m = _RE.fullmatch(text.strip())
    if not m:
        raise UsageError(f"invalid duration {text[:40]!r}: use a number and one of s, m, h, d, w (e.g. 30d)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
