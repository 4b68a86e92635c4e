"""The exchanges' own rate budgets, shared by every bot behind keyproxy (issue 19).

An exchange counts requests per egress IP (Binance request weight) or per account, never per bot; bots
sharing a keyproxy are blind to each other's use, so the exchange answers 429 and then bans the IP
(418) for everyone. The `Governor` spends each budget before a request goes upstream, corrects its view
from the exchange's own usage headers after each answer, keeps a reserve for the way out (cancels and
reduce-only orders), and, once the exchange has answered 429 or 418, sends nothing on that budget
until the Retry-After it was given.

Pure and in memory: the adapter says what a request costs (`Adapter.costs`), the pipeline asks
`spend` before forwarding and tells `observe` what came back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Budget:
    """One thing an exchange counts, in fixed windows aligned to the epoch (Binance: calendar minutes)."""

    name: str  # REQUEST_WEIGHT, ORDERS_10S ...
    per: str  # "ip": every account of the exchange behind this keyproxy shares it; "account"
    limit: int
    window_s: float
    header: str | None = None  # the answer header carrying the exchange's own count (lower-case)


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request costs against one budget, and whose budget it is (`scope`: host or account)."""

    budget: Budget
    scope: str
    cost: int

    @property
    def key(self) -> str:
        return f"{self.scope}|{self.budget.name}"


@dataclass
class _Window:
    index: int
    used: int
    limit: int


@dataclass
class Governor:
    """Budgets in use: `spend` before forwarding, `observe` each answer. `reserve` is the share of every
    budget only the way out may use (cancels, reduce-only orders)."""

    reserve: float = 0.1
    windows: dict[str, _Window] = field(default_factory=dict)
    banned_until: dict[str, float] = field(default_factory=dict)  # charge key -> until (epoch seconds)
    refused: int = 0

    def _window(self, charge: Charge, now: float) -> _Window:
        index = math.floor(now / charge.budget.window_s)
        window = self.windows.get(charge.key)
        if window is None or window.index != index:
            window = self.windows[charge.key] = _Window(index, 0, charge.budget.limit)
        return window

    def spend(self, charges: tuple[Charge, ...], way_out: bool, now: float) -> float | None:
        """Charge every budget, or none: None when the request may go, else the seconds to wait (the
        window's end, or the exchange's ban)."""
        wait = 0.0
        for c in charges:
            until = self.banned_until.get(c.key, 0.0)
            if until > now:
                wait = max(wait, until - now)
                continue
            window = self._window(c, now)
            ceiling = c.budget.limit if way_out else math.floor(c.budget.limit * (1 - self.reserve))
            if window.used + c.cost > ceiling:
                wait = max(wait, (window.index + 1) * c.budget.window_s - now)
        if wait > 0:
            self.refused += 1
            return wait
        for c in charges:
            self._window(c, now).used += c.cost
        return None

    def observe(self, charges: tuple[Charge, ...], status: int, headers: dict[str, str], retry_after: float | None,
                now: float) -> None:
        """Learn from an answer: the exchange's own count (it also counts traffic keyproxy did not send), and a
        429/418, after which nothing goes on that budget until Retry-After (60 s when the exchange gave none)."""
        for c in charges:
            if status in (418, 429):
                self.banned_until[c.key] = max(self.banned_until.get(c.key, 0.0), now + (retry_after or 60.0))
            header = c.budget.header
            text = headers.get(header) if header else None
            if text is None:
                continue
            try:
                used = int(text)
            except ValueError:
                continue  # a malformed count: keep ours
            window = self._window(c, now)
            if 0 <= used and used > window.used:
                window.used = used

    def usage(self, now: float) -> dict[str, float]:
        """Charge key -> share of its budget used in the current window (for metrics and `status`)."""
        return {key: w.used / w.limit for key, w in self.windows.items() if w.limit}
