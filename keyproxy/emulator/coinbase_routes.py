"""Coinbase endpoint table and error shapes.

Two API families share api.coinbase.com: Advanced Trade (``/api/v3/brokerage``)
and the Coinbase App / "v2" API (``/v2``), which ccxt still uses for
currencies, balances and sends. Both take the same CDP JWT; they differ in
their error bodies:

* Advanced Trade: a failed JWT is HTTP 401 with the plain body
  ``Unauthorized`` (what every client report shows: "401 Client Error:
  Unauthorized Unauthorized", e.g. coinbase/coinbase-advanced-py#19, #56,
  ccxt/ccxt#22182); other errors are ``{"error", "error_details",
  "message"}``; a key without the scope gets 403 with ``error_details``
  "Missing required scopes" (the SDK's ``rest_base.handle_exception`` tests
  for exactly that text).
* v2: ``{"errors": [{"id", "message"}]}`` with the documented ids
  (``authentication_error`` 401, ``invalid_scope`` 403, ``not_found`` 404,
  ``validation_error`` 400; Coinbase App "Errors" page, mirrored in ccxt's
  exception table).

Permissions are the three CDP key scopes ``GET /api/v3/brokerage/
key_permissions`` reports: ``can_view``, ``can_trade``, ``can_transfer``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from keyproxy.emulator.coinbase_state import Account

VIEW, TRADE, TRANSFER = "can_view", "can_trade", "can_transfer"
DEFAULT_PERMISSIONS: dict[str, Any] = {VIEW: True, TRADE: True, TRANSFER: False}
PREFIXES = ("/api/v3/brokerage/", "/v2/")


class CoinbaseError(Exception):
    """An error answer: HTTP status plus a JSON object or plain-text body."""

    def __init__(self, status: int, body: dict[str, Any] | str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.reason: str | None = None  # why a JWT was refused (never in Coinbase's body)


def v3_error(status: int, error: str, message: str, details: str | None = None) -> CoinbaseError:
    return CoinbaseError(status, {"error": error, "error_details": details or message,
                                  "message": message})


def v2_error(status: int, error_id: str, message: str) -> CoinbaseError:
    return CoinbaseError(status, {"errors": [{"id": error_id, "message": message}]})


def unauthorized(api: str) -> CoinbaseError:
    if api == "v2":
        return v2_error(401, "authentication_error", "invalid signature")
    return CoinbaseError(401, "Unauthorized")


def forbidden(api: str) -> CoinbaseError:
    if api == "v2":
        return v2_error(403, "invalid_scope", "Invalid scope")
    return v3_error(403, "PERMISSION_DENIED", "Missing required scopes")


def not_found(api: str, what: str) -> CoinbaseError:
    if api == "v2":
        return v2_error(404, "not_found", "Not found")
    return v3_error(404, "NOT_FOUND", f"{what} not found")


def rate_limited(api: str) -> CoinbaseError:
    """v2 answers its documented JSON; Advanced Trade's gateway answers a 429 with an HTML page, not its JSON
    error (coinbase-samples/advanced-trade-sdk-go#18)."""
    if api == "v2":
        return v2_error(429, "rate_limit_exceeded", "Too many requests")
    return CoinbaseError(429, _HTML_429)


_HTML_429 = "<html>\n  <head>\n    <title>Coinbase</title>\n  </head>\n  <body>Too Many Requests</body>\n</html>\n"


def bad_request(api: str, message: str) -> CoinbaseError:
    if api == "v2":
        return v2_error(400, "validation_error", message)
    return v3_error(400, "INVALID_ARGUMENT", message)


@dataclass(frozen=True)
class Route:
    """API family, whether a JWT is required, the scope needed, handler name."""

    api: str  # "v3" | "v2"
    private: bool
    permission: str | None
    handler: str


_ID = r"(?P<id>[^/]+)"
_TABLE: list[tuple[str, str, Route]] = [
    ("GET", "/api/v3/brokerage/time", Route("v3", False, None, "v3_time")),
    ("GET", "/api/v3/brokerage/market/products", Route("v3", False, None, "v3_products")),
    ("GET", f"/api/v3/brokerage/market/products/{_ID}", Route("v3", False, None, "v3_product")),
    ("GET", f"/api/v3/brokerage/market/products/{_ID}/candles", Route("v3", False, None, "v3_candles")),
    ("GET", f"/api/v3/brokerage/products/{_ID}/candles", Route("v3", True, VIEW, "v3_candles")),
    ("GET", "/api/v3/brokerage/orders/historical/fills", Route("v3", True, VIEW, "v3_fills")),
    ("GET", "/api/v3/brokerage/products", Route("v3", True, VIEW, "v3_products")),
    ("GET", f"/api/v3/brokerage/products/{_ID}", Route("v3", True, VIEW, "v3_product")),
    ("GET", "/api/v3/brokerage/accounts", Route("v3", True, VIEW, "v3_accounts")),
    ("GET", f"/api/v3/brokerage/accounts/{_ID}", Route("v3", True, VIEW, "v3_account")),
    ("GET", "/api/v3/brokerage/transaction_summary",
     Route("v3", True, VIEW, "v3_transaction_summary")),
    ("GET", "/api/v3/brokerage/key_permissions", Route("v3", True, None, "v3_key_permissions")),
    ("POST", "/api/v3/brokerage/orders", Route("v3", True, TRADE, "v3_create_order")),
    ("POST", "/api/v3/brokerage/orders/batch_cancel", Route("v3", True, TRADE, "v3_cancel")),
    ("GET", "/api/v3/brokerage/orders/historical/batch", Route("v3", True, VIEW, "v3_orders")),
    ("GET", f"/api/v3/brokerage/orders/historical/{_ID}", Route("v3", True, VIEW, "v3_order")),
    ("GET", "/v2/time", Route("v2", False, None, "v2_time")),
    ("GET", "/v2/currencies", Route("v2", False, None, "v2_currencies")),
    ("GET", "/v2/currencies/crypto", Route("v2", False, None, "v2_crypto")),
    ("GET", "/v2/exchange-rates", Route("v2", False, None, "v2_rates")),
    ("GET", "/v2/user", Route("v2", True, VIEW, "v2_user")),
    ("GET", "/v2/accounts", Route("v2", True, VIEW, "v2_accounts")),
    ("GET", f"/v2/accounts/{_ID}", Route("v2", True, VIEW, "v2_account")),
    ("GET", f"/v2/accounts/{_ID}/transactions", Route("v2", True, VIEW, "v2_transactions")),
    ("POST", f"/v2/accounts/{_ID}/transactions", Route("v2", True, TRANSFER, "v2_send")),
]
ROUTES = [(m, re.compile(p + "$"), r) for m, p, r in _TABLE]


def match(method: str, path: str) -> tuple[Route, str | None] | None:
    """The route for ``method path`` and its ``{id}`` segment, if any."""
    for route_method, pattern, route in ROUTES:
        found = pattern.match(path)
        if found and route_method == method:
            return route, found.groupdict().get("id")
    return None


@dataclass
class Call:
    """One request handed to a handler, after authentication."""

    api: str
    query: dict[str, list[str]]
    body: dict[str, Any]
    account: Account | None
    now_ms: int
    path_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None
