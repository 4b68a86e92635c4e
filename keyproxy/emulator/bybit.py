"""Bybit v5 REST emulator (hosts api.bybit.com, api-testnet.bybit.com,
api-demo.bybit.com: all paths ``/v5/...``).

Written from Bybit's documentation (see ``bybit_auth``), independently of
keyproxy's exchange adapters, so a shared misunderstanding cannot pass.

Endpoints an unmodified ccxt 4.5.90 ``bybit()`` (apiKey + secret, default
options) calls, in order; all served:

* ``load_markets()``: ``GET /v5/asset/coin/query-info`` (signed, from
  fetch_currencies), then ``GET /v5/market/instruments-info`` with
  ``category=spot``; ``category=option&baseCoin=`` BTC, ETH, SOL, XRP, MNT, DOGE;
  ``category=linear&limit=1000`` and ``...&status=PreLaunch``; the same for inverse.
* ``fetch_balance()``: ``GET /v5/user/query-api`` and ``GET /v5/account/info``
  (once, is_unified_enabled), then ``GET /v5/account/wallet-balance?accountType=UNIFIED``.
* ``create_order()``: ``POST /v5/order/create``; ``fetch_open_orders()``:
  ``GET /v5/order/realtime``; ``cancel_order()``: ``POST /v5/order/cancel``.
* ``set_leverage()``: ``POST /v5/position/set-leverage``.
* ``withdraw()``: ``POST /v5/asset/withdraw/create`` (needs Wallet: Withdraw).
* key info / revocation: ``GET /v5/user/query-api``, ``POST /v5/user/delete-api``.

The official SDK pybit 5.17 (``HTTP(api_key=, api_secret=)``; its base URL
is the ``endpoint`` attribute, assign it after construction to point it
elsewhere) calls ``GET /v5/account/wallet-balance`` (get_wallet_balance),
``POST /v5/order/create`` (place_order), ``GET /v5/order/realtime``
(get_open_orders), ``POST /v5/order/cancel`` (cancel_order). Both clients
sign the exact query string / body they send; neither signs the host.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyproxy.emulator.accounts import AccountsError, EmulatedKey
from keyproxy.emulator.rate_limits import BybitLimits
from keyproxy.emulator.base import Clock, RequestNote
from keyproxy.emulator.bybit_auth import (
    PERMISSION_DENIED,
    UNMATCHED_IP,
    AuthOutcome,
    BybitError,
    Verifier,
    authenticate,
)
from keyproxy.emulator.bybit_dcp import CATEGORIES as DCP_CATEGORIES, PRODUCTS, watched_products
from keyproxy.emulator.bybit_ws import BybitWs
from keyproxy.emulator.bybit_handlers import (
    DEFAULT_PERMISSIONS,
    BybitHandlers,
    Call,
    key_permissions,
    params_error,
)
from keyproxy.emulator.bybit_state import Account

_ALNUM = string.ascii_letters + string.digits
DEFAULT_BALANCES = {"USDT": "100000", "USDC": "100000", "BTC": "10", "ETH": "100"}


@dataclass(frozen=True)
class Route:
    """Private (signed) or public, the permission needed, handler name."""

    private: bool
    permission: str | None
    handler: str


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/v5/market/time"): Route(False, None, "market_time"),
    ("GET", "/v5/market/instruments-info"): Route(False, None, "instruments_info"),
    ("GET", "/v5/market/tickers"): Route(False, None, "tickers"),
    ("GET", "/v5/market/kline"): Route(False, None, "kline"),
    ("GET", "/v5/execution/list"): Route(True, None, "executions"),
    ("GET", "/v5/user/query-api"): Route(True, None, "query_api"),
    ("POST", "/v5/user/delete-api"): Route(True, "wallet_any", "delete_api"),
    ("GET", "/v5/account/info"): Route(True, None, "account_info"),
    ("GET", "/v5/account/wallet-balance"): Route(True, None, "wallet_balance"),
    ("GET", "/v5/account/query-dcp-info"): Route(True, None, "dcp_info"),
    ("POST", "/v5/order/disconnected-cancel-all"): Route(True, None, "set_dcp"),
    ("GET", "/v5/asset/coin/query-info"): Route(True, None, "coin_info"),
    ("POST", "/v5/order/create"): Route(True, "trade", "create_order"),
    ("POST", "/v5/order/pre-check"): Route(True, "trade", "pre_check"),
    ("POST", "/v5/order/cancel"): Route(True, "trade", "cancel_order"),
    ("POST", "/v5/order/create-batch"): Route(True, "trade", "create_batch"),
    ("GET", "/v5/order/realtime"): Route(True, None, "open_orders"),
    ("GET", "/v5/order/history"): Route(True, None, "order_history"),
    ("POST", "/v5/position/set-leverage"): Route(True, "position", "set_leverage"),
    ("POST", "/v5/asset/withdraw/create"): Route(True, "withdraw", "withdraw"),
}


class BybitEmulator(BybitHandlers):
    """Bybit v5, as far as ccxt and pybit can tell."""

    name = "bybit"

    def __init__(self, keys: list[EmulatedKey], clock: Clock) -> None:
        for key in keys:
            if key.key_type not in ("hmac", "rsa"):
                raise AccountsError(
                    f"accounts: bybit key {key.api_key!r} must be 'hmac' or 'rsa', "
                    f"not {key.key_type!r}"
                )
        self.clock = clock
        self.keys = list(keys)
        self.reset()

    def reset(self) -> None:
        self.ws = BybitWs(self)
        self.accounts = {k.api_key: Account.fresh(k) for k in self.keys}
        self.verifiers = {k.api_key: Verifier(k) for k in self.keys}
        self.revoked: set[str] = set()
        self.rate = BybitLimits()  # off until a test sets it (rate_limits.py)

    def state(self) -> dict[str, Any]:
        return {k: {**a.snapshot(), "revoked": k in self.revoked} for k, a in self.accounts.items()}

    def enable_dcp(self, api_key: str, products: list[str]) -> None:
        """What Bybit's account manager does on request: DCP on for these products (window 10 s)."""
        dcp = self.accounts[api_key].dcp
        dcp.windows = {p: dcp.windows.get(p, 10) for p in products if p in PRODUCTS}

    def fire_timers(self) -> None:
        """DCP: an account's products no open subscribed socket watches, past their window, are cancelled."""
        now = self.clock()
        active: dict[int, set[str]] = {}
        for ws, (_, acct) in self.ws.sessions.items():
            if not ws.closed:
                active.setdefault(id(acct), set()).update(watched_products(self.ws.topics.get(ws, set())))
        for acct in self.accounts.values():
            for product in acct.dcp.due(active.get(id(acct), set()), now):
                for order in [o for o in acct.orders.values() if o.is_open
                              and o.market.category in DCP_CATEGORIES[product]]:
                    acct.cancel(order, int(now * 1000))
                    self._changed(acct, order, int(now * 1000))

    def owns(self, path: str) -> bool:
        return path.startswith("/v5/")

    async def handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        """The IP's requests per 5 s first (403 and a ban over it), then the endpoint's limit per key (retCode
        10006 over it; the X-Bapi-Limit headers on every answer), when a test set them (rate_limits.py)."""
        now = self.clock()
        if self.rate.ip_refused(now):
            note.exchange, note.error_code = self.name, 403
            return web.Response(status=403, text="access too frequent")
        api_key = request.headers.get("X-BAPI-API-KEY")
        window = self.rate.endpoint(api_key, request.path) if api_key else None
        if window is None:
            return await self._handle(request, body, note)
        refused = window.hit(now)
        headers = {"X-Bapi-Limit": str(window.limit), "X-Bapi-Limit-Status": str(window.remaining()),
                   "X-Bapi-Limit-Reset-Timestamp": str(int((window.reset_at(now) if refused else now) * 1000))}
        if refused:
            self.rate.answered["10006"] += 1
            note.exchange, note.error_code = self.name, 10006
            return web.json_response({"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "retExtInfo": {},
                                      "time": int(now * 1000)}, headers=headers)
        response = await self._handle(request, body, note)
        response.headers.update(headers)
        return response

    async def _handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        note.exchange = self.name
        route = ROUTES.get((request.method, request.path))
        if route is None:
            return web.Response(
                status=404, text=f"emulator: no Bybit endpoint {request.method} {request.path}"
            )
        now = int(self.clock() * 1000)
        raw_query = request.raw_path.partition("?")[2]
        try:
            key = account = None
            if route.private:
                outcome = AuthOutcome()
                live = {k: v for k, v in self.verifiers.items() if k not in self.revoked}
                payload = raw_query.encode() if request.method == "GET" else body
                try:
                    key = authenticate(request.headers, payload=payload, verifiers=live,
                                       now_ms=now, outcome=outcome)
                finally:
                    note.api_key = outcome.api_key
                    note.signature_verified = outcome.signature_verified
                account = self.accounts[key.api_key]
            params = _params(request.method, raw_query, body)
            if key is not None:
                self._permit(route, key, request.remote, params)
            handler: Callable[[Call], Any] = getattr(self, route.handler)
            result = handler(Call(params, key, account, now))
        except BybitError as err:
            note.error_code = err.code
            return web.json_response(
                {"retCode": err.code, "retMsg": err.msg, "result": {}, "retExtInfo": {},
                 "time": now},
                status=err.http_status,
            )
        ext = result.pop("_retExtInfo", {}) if isinstance(result, dict) else {}  # batch: one entry per order
        return web.json_response(
            {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": ext, "time": now}
        )

    def _permit(self, route: Route, key: EmulatedKey, remote: str | None,
                params: dict[str, Any]) -> None:
        perms = key_permissions(key)
        ips = perms.get("ips") or ["*"]
        if "*" not in ips and remote not in ips:
            raise BybitError(*UNMATCHED_IP)
        if route.permission is None:
            return
        if perms.get("readOnly"):
            raise BybitError(*PERMISSION_DENIED)
        granted: dict[str, list[str]] = perms["permissions"]
        wallet = granted.get("Wallet", [])
        needed = {
            "position": "Position" in granted.get("ContractTrade", []),
            "withdraw": "Withdraw" in wallet,
            "wallet_any": bool({"AccountTransfer", "SubMemberTransfer", "Withdraw"} & set(wallet)),
            "trade": "SpotTrade" in granted.get("Spot", []) if params.get("category") == "spot"
            else "Order" in granted.get("ContractTrade", []),
        }
        if not needed[route.permission]:
            raise BybitError(*PERMISSION_DENIED)


def _params(method: str, raw_query: str, body: bytes) -> dict[str, Any]:
    """GET parameters come from the query string, POST ones from the JSON body."""
    if method == "GET":
        return dict(parse_qsl(raw_query, keep_blank_values=True))
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise params_error("request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise params_error("request body must be a JSON object")
    return parsed


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def new_key(
    key_type: str = "hmac",
    permissions: dict[str, Any] | None = None,
    balances: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A fresh key: (accounts-file entry, credentials for ``keyproxy key add``).

    HMAC ("System-generated"): 18-character key and 36-character secret, the
    lengths of the docs' placeholders. RSA ("Self-generated"): the user keeps
    a 2048-bit private key (PKCS#8 PEM, what ccxt and pybit load) and Bybit
    stores the public key and issues the API key. ``permissions`` holds the
    query-api fields ``readOnly``, ``ips`` and ``permissions`` (merged over
    ``DEFAULT_PERMISSIONS``, the inner ``permissions`` object key by key).
    """
    perms = {**DEFAULT_PERMISSIONS, **(permissions or {})}
    perms["permissions"] = {**DEFAULT_PERMISSIONS["permissions"],
                            **(permissions or {}).get("permissions", {})}
    entry: dict[str, Any] = {
        "exchange": "bybit", "api_key": _random(18), "key_type": key_type,
        "permissions": perms,
        "balances": {k.upper(): str(Decimal(v)) for k, v in (balances or DEFAULT_BALANCES).items()},
    }
    if key_type == "hmac":
        entry["secret"] = _random(36)
        return entry, {"api_key": entry["api_key"], "secret": entry["secret"]}
    if key_type != "rsa":
        raise ValueError(f"bybit keys are 'hmac' or 'rsa', not {key_type!r}")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    entry["public_key"] = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return entry, {"api_key": entry["api_key"], "private_key": private_pem}


def create(keys: list[EmulatedKey], clock: Clock) -> BybitEmulator:
    """Module entry point used by ``keyproxy.emulator.app``."""
    return BybitEmulator(keys, clock)
