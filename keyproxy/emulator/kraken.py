"""Kraken spot REST emulator (``/0/public/*``, ``/0/private/*``, host api.kraken.com).

Written from Kraken's documentation (see ``kraken_auth``; endpoint shapes from
krakenfx/api-specs ``spot-rest/openapi_v3.yaml``), independently of keyproxy's
adapters. Errors are HTTP 200 with ``{"error": [...]}`` as Kraken answers.

Endpoints an unmodified ccxt 4.5.90 ``kraken()`` calls (apiKey+secret, every
``urls['api']`` host pointed here), all served:

* ``load_markets()``: ``GET /0/public/Assets`` then ``GET /0/public/AssetPairs``.
* ``fetch_balance()``: ``POST /0/private/BalanceEx``.
* ``create_order()``: ``POST /0/private/AddOrder``; ``fetch_open_orders()``:
  ``POST /0/private/OpenOrders``; ``fetch_order()``: ``POST /0/private/QueryOrders``;
  ``cancel_order()``: ``POST /0/private/CancelOrder``; ``withdraw()``:
  ``POST /0/private/Withdraw``; also ClosedOrders, CancelAll, Ticker, Depth, Time.

krakenex 2.2.2 (the SDK Kraken's docs point to) uses ``query_private('Balance')``
-> ``POST /0/private/Balance`` and the same AddOrder / OpenOrders / QueryOrders
/ CancelOrder endpoints. ``POST /0/private/GetApiKeyInfo`` reports the key's
permissions (docs.kraken.com/api-reference/account-data/get-api-key-info).

Key permissions (accounts-file ``permissions``) use the names of Kraken's
key-permission settings (``/oauth/fast-api-key``): ``funds_query``,
``funds_add``, ``funds_withdraw``, ``funds_earn``, ``trades_query_open``,
``trades_query_closed``, ``trades_modify``, ``trades_close``, ``ledger_query``,
``export_data``; plus key settings ``nonce_window`` (int) and
``withdraw_keys`` ({name: address}; absent = any withdrawal key name is known).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from keyproxy.emulator.accounts import AccountsError, EmulatedKey
from keyproxy.emulator.rate_limits import KrakenLimits
from keyproxy.emulator.base import Clock, RequestNote
from keyproxy.emulator.kraken_auth import (
    PERMISSION_DENIED,
    UNKNOWN_METHOD,
    AuthOutcome,
    KrakenError,
    NonceBook,
    Verifier,
    authenticate,
    nonce_window,
    parse_private_body,
)
from keyproxy.emulator.candles import candle_opens
from keyproxy.emulator.kraken_data import ASSETS, PAIRS, asset_id, find_pair, fmt
from keyproxy.emulator.kraken_orders import add_order, order_filter, parse_amount, truthy
from keyproxy.emulator.kraken_state import ZERO, Account, Order
from keyproxy.emulator.kraken_ws import KrakenWs

PUBLIC, PRIVATE = "/0/public/", "/0/private/"
DEFAULT_PERMISSIONS: dict[str, Any] = {
    "funds_query": True,
    "funds_add": False,
    "funds_withdraw": False,
    "funds_earn": False,
    "trades_query_open": True,
    "trades_query_closed": True,
    "trades_modify": True,
    "trades_close": True,
    "ledger_query": True,
    "export_data": False,
    "websocket": True,  # "Access WebSockets API"
}
# GetApiKeyInfo names; the four in the doc's example are exact, the rest by analogy.
PERMISSION_NAMES = {
    "funds_query": "query-funds", "funds_add": "deposit-funds", "funds_withdraw": "withdraw-funds",
    "funds_earn": "earn-funds", "trades_query_open": "query-open-trades",
    "trades_query_closed": "query-closed-trades", "trades_modify": "modify-trades",
    "trades_close": "close-trades", "ledger_query": "query-ledger", "export_data": "export-data",
}


@dataclass(frozen=True)
class Route:
    """Handler name and the permissions of which the key needs at least one."""

    handler: str
    any_of: tuple[str, ...] = ()


# Permission per endpoint: Kraken docs "API Key Permissions Required" lines.
PRIVATE_ROUTES = {
    "Balance": Route("balance", ("funds_query",)),
    "BalanceEx": Route("balance_ex", ("funds_query",)),
    "OpenOrders": Route("open_orders", ("trades_query_open",)),
    "ClosedOrders": Route("closed_orders", ("trades_query_closed",)),
    "QueryOrders": Route("query_orders", ("trades_query_open", "trades_query_closed")),
    "AddOrder": Route("add_order", ("trades_modify",)),
    "CancelOrder": Route("cancel_order", ("trades_modify", "trades_close")),
    "CancelAll": Route("cancel_all", ("trades_modify", "trades_close")),
    "CancelAllOrdersAfter": Route("cancel_all_orders_after", ("trades_modify", "trades_close")),
    "AddOrderBatch": Route("add_order_batch", ("trades_modify",)),
    "Withdraw": Route("withdraw", ("funds_withdraw",)),
    "GetApiKeyInfo": Route("api_key_info"),
    "TradesHistory": Route("trades_history", ("trades_query_closed",)),
    "GetWebSocketsToken": Route("websockets_token", ("websocket",)),
}
_CHANGES_ORDERS = frozenset({"add_order", "add_order_batch", "cancel_order", "cancel_all"})
PUBLIC_ROUTES = {n: n.lower() for n in ("Time", "SystemStatus", "Assets", "AssetPairs",
                                         "Ticker", "Depth", "OHLC")}


@dataclass
class Call:
    """One request handed to a handler."""

    params: dict[str, Any]
    account: Account | None
    now: float

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account


class KrakenEmulator:
    """Kraken spot, as far as ccxt and krakenex can tell."""

    name = "kraken"

    def __init__(self, keys: list[EmulatedKey], clock: Clock) -> None:
        for key in keys:
            _check_key(key)
        self.clock = clock
        self.keys = list(keys)
        self.verifiers = {k.api_key: Verifier(k) for k in keys}
        self.nonces = NonceBook()  # kept across reset(): an exchange never forgets nonces
        self.rate = KrakenLimits()  # off until a test sets it (rate_limits.py)
        self.ws = KrakenWs(self)
        self.reset()

    def reset(self) -> None:
        self.accounts = {k.api_key: Account.fresh(k) for k in self.keys}

    def state(self) -> dict[str, Any]:
        return {
            key: {**acct.snapshot(), "last_nonce": self.nonces.highest.get(key),
                  "ws_tokens": [t for t, (k, _) in self.ws.tokens.items() if k == key]}
            for key, acct in self.accounts.items()
        }

    def owns(self, path: str) -> bool:
        return path.startswith((PUBLIC, PRIVATE))

    async def handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        note.exchange = self.name
        now = self.clock()
        api_key = request.headers.get("API-Key")
        if request.path.startswith(PRIVATE) and api_key and \
                self.rate.refused(api_key, request.path[len(PRIVATE):], now):  # the key's call counter
            note.error_code = "EAPI:Rate limit exceeded"
            return web.json_response({"error": ["EAPI:Rate limit exceeded"]})
        try:
            if request.path.startswith(PUBLIC):
                result = self._public(request, now)
            else:
                result = self._private(request, body, note, now)
        except KrakenError as err:
            note.error_code = err.errors[0]
            return web.json_response(err.body())
        return web.json_response({"error": [], "result": result})

    def _public(self, request: web.Request, now: float) -> Any:
        handler = PUBLIC_ROUTES.get(request.path[len(PUBLIC):])
        if handler is None or request.method != "GET":  # public: GET only since 2024-01-31
            raise KrakenError(UNKNOWN_METHOD)
        method: Callable[[Call], Any] = getattr(self, handler)
        return method(Call(dict(request.query), None, now))

    def _private(self, request: web.Request, body: bytes, note: RequestNote, now: float) -> Any:
        note.api_key = request.headers.get("API-Key")
        route = PRIVATE_ROUTES.get(request.path[len(PRIVATE):])
        if route is None or request.method != "POST":
            raise KrakenError(UNKNOWN_METHOD)
        parsed = parse_private_body(request.headers.get("Content-Type", ""), body)
        outcome = AuthOutcome()
        try:
            key = authenticate(
                api_key=note.api_key,
                signature=request.headers.get("API-Sign"),
                uri_path=request.path,
                body=body,
                request=parsed,
                verifiers=self.verifiers,
                nonces=self.nonces,
                outcome=outcome,
            )
        finally:
            note.signature_verified = outcome.signature_verified
        if route.any_of and not any(_perm(key, p) for p in route.any_of):
            raise KrakenError(PERMISSION_DENIED)
        method: Callable[[Call], Any] = getattr(self, route.handler)
        account = self.accounts[key.api_key]
        before = self.order_states(account)
        result = method(Call(parsed.params, account, now))
        if route.handler in _CHANGES_ORDERS:
            self.orders_changed(account, before)
        return result

    @staticmethod
    def order_states(account: Account) -> dict[str, str]:
        return {txid: o.status for txid, o in account.orders.items()}

    def orders_changed(self, account: Account, before: dict[str, str]) -> None:
        """Push each order whose state changed to the account's `executions` subscribers."""
        changed: list[Order] = [o for txid, o in account.orders.items() if before.get(txid) != o.status]
        self.ws.publish(account, changed)

    def websockets_token(self, call: Call) -> dict[str, Any]:
        return self.ws.new_token(call.acct.key.api_key, call.now)

    # -- public ---------------------------------------------------------------
    def time(self, call: Call) -> dict[str, Any]:
        moment = datetime.fromtimestamp(call.now, UTC)
        rfc1123 = moment.strftime("%a, %d %b %y %H:%M:%S +0000")
        return {"unixtime": int(call.now), "rfc1123": rfc1123}

    def systemstatus(self, call: Call) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(int(call.now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"status": "online", "timestamp": stamp}

    def assets(self, call: Call) -> dict[str, Any]:
        wanted = list(ASSETS)
        if call.params.get("asset"):
            wanted = [asset_id(n) or "" for n in str(call.params["asset"]).split(",")]
            if "" in wanted:
                raise KrakenError("EQuery:Unknown asset")
        return {a: ASSETS[a].doc() for a in wanted}

    def _pairs(self, call: Call, required: bool = False) -> list[Any]:
        raw = str(call.params.get("pair") or "")
        if not raw:
            if required:
                raise KrakenError("EGeneral:Invalid arguments")
            return list(PAIRS.values())
        pairs = [find_pair(n) for n in raw.split(",")]
        if None in pairs:
            raise KrakenError("EQuery:Unknown asset pair")
        return pairs

    def assetpairs(self, call: Call) -> dict[str, Any]:
        return {p.id: p.doc() for p in self._pairs(call)}

    def ohlc(self, call: Call) -> dict[str, Any]:
        """`OHLC`: flat candles at the last price (up to 720, oldest first; `since` in seconds)."""
        [pair] = self._pairs(call, required=True)
        minutes = str(call.params.get("interval") or "1")
        if minutes not in ("1", "5", "15", "30", "60", "240", "1440", "10080", "21600"):
            raise KrakenError("EGeneral:Invalid arguments:interval")
        step = int(minutes) * 60_000
        since = str(call.params.get("since") or "")
        opens = candle_opens(step, int(call.now * 1000), 720, int(since) * 1000 if since.isdigit() else None)
        last = pair.price(pair.last)
        rows = [[t // 1000, last, last, last, last, last, "10.00000000", 10] for t in opens]
        return {pair.id: rows, "last": opens[-1] // 1000 if opens else 0}

    def trades_history(self, call: Call) -> dict[str, Any]:
        """`TradesHistory`: one trade per filled order (fee 0), newest first."""
        trades = {}
        for o in sorted(call.acct.orders.values(), key=lambda o: o.closetm or 0, reverse=True):
            if o.vol_exec <= 0:
                continue
            trades[f"T{o.txid[1:]}"] = {
                "ordertxid": o.txid, "postxid": "", "pair": o.pair.id, "time": o.closetm or o.opentm,
                "type": o.side, "ordertype": o.ordertype, "price": o.pair.price(o.avg_price),
                "cost": str(o.cost), "fee": "0.00000", "vol": o.pair.volume(o.vol_exec), "margin": "0.00000",
                "misc": "", "maker": False}
        return {"trades": trades, "count": len(trades)}

    def ticker(self, call: Call) -> dict[str, Any]:
        out = {}
        for p in self._pairs(call):
            last, tick = p.last, p.tick
            out[p.id] = {
                "a": [p.price(last + tick), "1", "1.000"],
                "b": [p.price(last - tick), "1", "1.000"],
                "c": [p.price(last), p.volume(p.ordermin)], "v": ["1000.0", "1000.0"],
                "p": [p.price(last), p.price(last)], "t": [1000, 1000],
                "l": [p.price(last), p.price(last)], "h": [p.price(last), p.price(last)],
                "o": p.price(last),
            }
        return out

    def depth(self, call: Call) -> dict[str, Any]:
        (p,) = self._pairs(call, required=True)[:1]
        ts = int(call.now)
        return {p.id: {
            "asks": [[p.price(p.last + i * p.tick), "1.000", ts] for i in range(1, 6)],
            "bids": [[p.price(p.last - i * p.tick), "1.000", ts] for i in range(1, 6)],
        }}

    # -- private: account ---------------------------------------------------------
    def balance(self, call: Call) -> dict[str, str]:
        return call.acct.balance_doc()

    def balance_ex(self, call: Call) -> dict[str, dict[str, str]]:
        return call.acct.balance_ex_doc()

    def open_orders(self, call: Call) -> dict[str, Any]:
        keep = order_filter(call.params)
        trades = truthy(call.params.get("trades"))
        return {"open": {o.txid: o.doc(trades) for o in call.acct.open_orders() if keep(o)}}

    def closed_orders(self, call: Call) -> dict[str, Any]:
        keep = order_filter(call.params)
        trades = truthy(call.params.get("trades"))
        closed = [o for o in call.acct.orders.values() if o.status not in ("pending", "open")]
        docs = {o.txid: o.doc(trades) for o in reversed(closed) if keep(o)}
        return {"closed": docs, "count": len(docs)}

    def query_orders(self, call: Call) -> dict[str, Any]:
        ids = [i.strip() for i in str(call.params.get("txid") or "").split(",") if i.strip()]
        if not ids or len(ids) > 50:
            raise KrakenError("EGeneral:Invalid arguments:txid")
        if any(i not in call.acct.orders for i in ids):
            raise KrakenError("EOrder:Invalid order")
        trades = truthy(call.params.get("trades"))
        return {i: call.acct.orders[i].doc(trades) for i in ids}

    def api_key_info(self, call: Call) -> dict[str, Any]:
        key = call.acct.key
        now = str(int(call.now))
        return {
            "apiKeyName": str(key.permissions.get("name", "emulated-key")),
            "apiKey": key.api_key,
            "nonce": str(self.nonces.highest.get(key.api_key, 0)),
            "nonceWindow": nonce_window(key),
            "permissions": [v for k, v in PERMISSION_NAMES.items() if _perm(key, k)],
            "iban": "AA00 EMUL ATED " + key.api_key[:4].upper(),
            "validUntil": "0", "queryFrom": "0", "queryTo": "0",
            "createdTime": now, "modifiedTime": now,
            "ipAllowlist": list(key.permissions.get("ip_allowlist", [])), "lastUsed": now,
        }

    # -- private: trading -----------------------------------------------------------
    def add_order(self, call: Call) -> dict[str, Any]:
        order, validate_only = add_order(call.params, call.acct, call.now)
        if validate_only:
            return {"descr": {"order": order.description()}}
        call.acct.place(order, call.now)
        return {"descr": {"order": order.description()}, "txid": [order.txid]}

    def add_order_batch(self, call: Call) -> dict[str, Any]:
        """"Add Order Batch" (JSON): 2 to 15 `orders` on one `pair`, validated as a whole (one invalid order
        refuses the batch), then placed one by one (docs: spot REST add-order-batch)."""
        orders, pair = call.params.get("orders"), call.params.get("pair")
        if not isinstance(orders, list) or not 2 <= len(orders) <= 15 or not all(isinstance(o, dict) for o in orders):
            raise KrakenError("EGeneral:Invalid arguments:orders")
        parsed = [add_order({**o, "pair": pair}, call.acct, call.now) for o in orders]
        out = []
        for order, _ in parsed:
            call.acct.place(order, call.now)
            out.append({"descr": {"order": order.description()}, "txid": order.txid})
        return {"orders": out}

    def cancel_order(self, call: Call) -> dict[str, Any]:
        txid, cl_ord_id = call.params.get("txid"), call.params.get("cl_ord_id")
        targets = []
        for o in call.acct.open_orders():
            if cl_ord_id not in (None, ""):
                hit = o.cl_ord_id == str(cl_ord_id)
            else:
                hit = str(txid) == o.txid or (o.userref is not None and str(txid) == str(o.userref))
            if hit:
                targets.append(o)
        if not targets:
            raise KrakenError("EOrder:Unknown order")
        for o in targets:
            call.acct.cancel(o, call.now)
        return {"count": len(targets)}

    def cancel_all(self, call: Call) -> dict[str, Any]:
        targets = call.acct.open_orders()
        for o in targets:
            call.acct.cancel(o, call.now)
        return {"count": len(targets)}

    def cancel_all_orders_after(self, call: Call) -> dict[str, Any]:
        """The dead-man's switch: `timeout` seconds arms (re-arms) it, 0 disarms; when it expires every open
        order is cancelled (`fire_timers`)."""
        raw = str(call.params.get("timeout", ""))
        if not raw.isdigit():
            raise KrakenError("EGeneral:Invalid arguments:timeout")
        call.acct.dead_man_at = call.now + int(raw) if int(raw) else None
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(call.now))
        trigger = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(call.acct.dead_man_at)) if int(raw) else "0"
        return {"currentTime": stamp, "triggerTime": trigger}

    def fire_timers(self) -> None:
        now = self.clock()
        for acct in self.accounts.values():
            if acct.dead_man_at is not None and acct.dead_man_at <= now:
                acct.dead_man_at = None
                for order in acct.open_orders():
                    acct.cancel(order, now)

    # -- private: funding -----------------------------------------------------------
    def withdraw(self, call: Call) -> dict[str, Any]:
        asset = asset_id(str(call.params.get("asset") or ""))
        if asset is None:
            raise KrakenError("EFunding:Unknown asset")
        name = str(call.params.get("key") or "")
        if not name:
            raise KrakenError("EGeneral:Invalid arguments:key")
        amount = parse_amount(call.params.get("amount"))
        if amount is None or amount <= ZERO:
            raise KrakenError("EFunding:Invalid amount")
        known = call.acct.key.permissions.get("withdraw_keys")
        address = call.params.get("address")
        if isinstance(known, dict):
            if name not in known:
                raise KrakenError("EFunding:Unknown withdraw key")
            if address not in (None, "") and str(address) != str(known[name]):
                raise KrakenError("EFunding:Invalid withdrawal address")
            address = known[name]
        alnum = string.ascii_letters + string.digits
        refid = "F" + "".join(secrets.choice(alnum) for _ in range(6)) + "-" + "".join(
            secrets.choice(alnum) for _ in range(22))  # shape of the spec's "FTQcuak-V6Za8q..."
        call.acct.withdraw(asset, amount, {
            "refid": refid, "asset": asset, "key": name, "address": address,
            "amount": fmt(amount, ASSETS[asset].decimals), "time": int(call.now),
        })
        return {"refid": refid}


def _perm(key: EmulatedKey, name: str) -> bool:
    return bool({**DEFAULT_PERMISSIONS, **key.permissions}.get(name))


def _check_key(key: EmulatedKey) -> None:
    if key.key_type != "hmac":
        raise AccountsError(f"accounts: kraken keys are HMAC only, not {key.key_type!r}")
    try:
        base64.b64decode(key.secret or "", validate=True)
    except (binascii.Error, ValueError):
        raise AccountsError(
            f"accounts: kraken api_key {key.api_key[:8]}...: secret is not base64"
        ) from None


def create(keys: list[EmulatedKey], clock: Clock) -> KrakenEmulator:
    """Module entry point used by ``keyproxy.emulator.app``."""
    return KrakenEmulator(keys, clock)


DEFAULT_BALANCES = {"ZUSD": "100000", "USDT": "100000", "XXBT": "10", "XETH": "100"}


def new_key(
    key_type: str = "hmac",
    permissions: dict[str, Any] | None = None,
    balances: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A fresh Kraken-shaped key: (accounts-file entry, credentials for ``keyproxy key add``).

    Kraken API keys are 56 base64 characters and private keys the base64 of
    64 bytes (the shape of the examples on support.kraken.com).
    """
    if key_type != "hmac":
        raise ValueError(f"kraken keys are HMAC only, not {key_type!r}")
    api_key = base64.b64encode(secrets.token_bytes(42)).decode("ascii")
    secret = base64.b64encode(secrets.token_bytes(64)).decode("ascii")
    entry = {
        "exchange": "kraken",
        "api_key": api_key,
        "key_type": "hmac",
        "secret": secret,
        "permissions": {**DEFAULT_PERMISSIONS, **(permissions or {})},
        "balances": dict(balances or DEFAULT_BALANCES),
    }
    return entry, {"api_key": api_key, "secret": secret}
