"""How to list every resting order of an account and cancel orders by id, per exchange (sans-I/O).

keyproxy's incident response (`keyproxy halt --cancel-orders`, the `cancel_orders` anomaly action,
heartbeats) cancels with its own signed calls: it lists what the exchange says is resting, keeps what
the halted scope placed, and cancels those by id, one answer per order, so each is reported as
cancelled or failed. It only ever cancels: nothing here places or changes an order.

A `Spec` is (method, path, query, body), signed by the adapter like a bot's request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlencode

from keyproxy.exchanges import okx_algo
from keyproxy.exchanges.base import ALGO, RealKey
from keyproxy.exchanges.binance_facts import ALGO_LISTINGS

Spec = tuple[str, str, str, bytes]
MAX_PAGES = 50  # listing pages followed per market: a bound, not a expectation


@dataclass(frozen=True, slots=True)
class Resting:
    """One order the exchange lists as resting."""

    market: str
    symbol: str
    order_id: str
    client_id: str = ""  # where the listing names it (Binance): the order a bot's conditional order became carries
    # that order's client id, on record as the bot's before keyproxy has read what it became
    parent: str = ""  # where the listing names it (OKX `algoId`): the conditional order this one became, `algo#<id>`


class ListingError(ValueError):
    """The exchange answered a listing with an error or an unreadable document."""


class Sweep(Protocol):
    """Per-exchange knowledge of listing and cancelling: requests to send, answers to read."""

    def listings(self, markets: frozenset[str], key: RealKey, symbols: Mapping[str, frozenset[str]]) -> list[Spec]:
        """First-page listing requests covering `markets` (the markets the account's bots placed orders on; their
        symbols in `symbols`, for a market listed symbol by symbol); also any public market list the cancels need
        (its answer feeds the adapter's `market_names`)."""

    def resting(self, spec: Spec, status: int, body: bytes) -> tuple[list[Resting], Spec | None]:
        """The orders one listing answer names, and the request for its next page (None: last page).
        Raise ListingError when the exchange refused or the answer is unreadable."""

    def cancels(self, orders: list[Resting], names: Mapping[str, str]) -> list[tuple[Spec, list[Resting]]]:
        """Cancel requests, each with the orders it cancels (`names`: market id `#<n>` -> name, Hyperliquid's)."""

    def cancelled(self, orders: list[Resting], status: int, body: bytes) -> dict[str, str | None]:
        """Per order id: None when the exchange confirmed the cancel, else what it said."""


def _json(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:
        raise ListingError("unreadable answer") from None


def _json_or_none(body: bytes) -> object:
    """A cancel's or arm's answer, None when unreadable (then not confirmed)."""
    try:
        return _json(body)
    except ListingError:
        return None


def _said(body: bytes) -> str:
    return body[:160].decode("utf-8", "replace")


def _all(orders: Iterable[Resting], outcome: str | None) -> dict[str, str | None]:
    return {o.order_id: outcome for o in orders}


class BinanceSweep:
    """GET openOrders without a symbol (every symbol, weight 80/40) per market; DELETE order by id. Cross
    margin (`/sapi/v1/margin/openOrders`, `/sapi/v1/margin/order`) and the portfolio-margin markets
    (`/papi/v1/um`, `/cm`, `/margin`) are listed when a bot placed an order there, like the futures markets;
    isolated margin (`isIsolated=TRUE`) only symbol by symbol, so for each symbol a bot placed one in."""

    _PATHS = {"spot": "/api/v3", "usdm": "/fapi/v1", "coinm": "/dapi/v1", "margin": "/sapi/v1/margin",
              "isolated": "/sapi/v1/margin", "papi-um": "/papi/v1/um", "papi-cm": "/papi/v1/cm",
              "papi-margin": "/papi/v1/margin"}
    _ISOLATED = "isIsolated=TRUE"
    # the futures markets' conditional orders (the Algo Service, binance_facts.ALGO_ORDERS): listed and cancelled
    # apart, by algoId (weight 40 without a symbol)
    _ALGO_LISTS = {"usdm": "/fapi/v1/openAlgoOrders", "papi-um": "/papi/v1/um/algo/openAlgoOrders"}  # documented
    _ALGO_CANCELS = {"usdm": "/fapi/v1/algoOrder", "coinm": "/dapi/v1/algoOrder", "papi-um": "/papi/v1/um/algo/order"}

    def listings(self, markets: frozenset[str], key: RealKey, symbols: Mapping[str, frozenset[str]]) -> list[Spec]:
        chosen = sorted((markets & set(self._PATHS)) - {"isolated"} | {"spot"})
        isolated = sorted(symbols.get("isolated", frozenset())) if "isolated" in markets else []
        return [("GET", self._PATHS[m] + "/openOrders", "", b"") for m in chosen] + \
            [("GET", self._ALGO_LISTS[m], "", b"") for m in chosen if m in self._ALGO_LISTS] + \
            [("GET", "/sapi/v1/margin/openOrders", f"symbol={s}&{self._ISOLATED}", b"") for s in isolated]

    def _market(self, spec: Spec) -> str:
        if self._ISOLATED in spec[2]:
            return "isolated"
        return next(m for m, prefix in self._PATHS.items() if spec[1].startswith(prefix))

    def resting(self, spec: Spec, status: int, body: bytes) -> tuple[list[Resting], Spec | None]:
        doc = _json(body)
        if not 200 <= status < 300 or not isinstance(doc, list):
            raise ListingError(f"HTTP {status}: {_said(body)}")
        market = self._market(spec)
        if spec[1] in ALGO_LISTINGS:
            return [Resting(market, str(o["symbol"]), f"{ALGO}{o['algoId']}") for o in doc
                    if isinstance(o, dict) and "symbol" in o and "algoId" in o], None
        return [Resting(market, str(o["symbol"]), str(o["orderId"]), str(o.get("clientOrderId") or "")) for o in doc
                if isinstance(o, dict) and "symbol" in o and "orderId" in o], None

    def cancels(self, orders: list[Resting], names: Mapping[str, str]) -> list[tuple[Spec, list[Resting]]]:
        return [(("DELETE", self._ALGO_CANCELS[o.market], urlencode({"algoId": o.order_id.removeprefix(ALGO)}), b"")
                 if o.order_id.startswith(ALGO) and o.market in self._ALGO_CANCELS else
                 ("DELETE", self._PATHS[o.market] + "/order", urlencode({"symbol": o.symbol, "orderId": o.order_id})
                  + (f"&{self._ISOLATED}" if o.market == "isolated" else ""), b""), [o]) for o in orders]

    def cancelled(self, orders: list[Resting], status: int, body: bytes) -> dict[str, str | None]:
        doc = _json_or_none(body)  # an algo order's cancel answers `"code": "200"`
        ok = 200 <= status < 300 and isinstance(doc, dict) and (doc.get("status") == "CANCELED"
                                                                or "algoId" in doc and str(doc.get("code")) == "200")
        return _all(orders, None if ok else f"HTTP {status}: {_said(body)}")


_OKX_MARKETS = {"MARGIN": "spot"}


class OkxSweep:
    """GET orders-pending (every instrument type, pages of 100 by `after`); POST cancel-order by ordId. Algo orders
    (okx_algo.py): GET orders-algo-pending per kind (`SWEPT_KINDS`), POST cancel-algos by algoId, ten a call."""

    _PATH = "/api/v5/trade/orders-pending"

    def listings(self, markets: frozenset[str], key: RealKey, symbols: Mapping[str, frozenset[str]]) -> list[Spec]:
        return [("GET", self._PATH, "limit=100", b""),
                *(okx_algo.pending_listing(kind) for kind in okx_algo.SWEPT_KINDS)]

    def resting(self, spec: Spec, status: int, body: bytes) -> tuple[list[Resting], Spec | None]:
        doc = _json(body)
        if not (200 <= status < 300 and isinstance(doc, dict) and doc.get("code") == "0"
                and isinstance(doc.get("data"), list)):
            raise ListingError(f"HTTP {status}: {_said(body)}")
        algo = spec[1] == okx_algo.PENDING
        name = "algoId" if algo else "ordId"
        # a margin order rests in its spot pair's one order book: keyproxy's scope for both is spot (okx_facts)
        found = [Resting(_OKX_MARKETS.get(str(o.get("instType", "")), str(o.get("instType", "")).lower()),
                         str(o["instId"]), (ALGO if algo else "") + str(o[name]),
                         parent=ALGO + str(o["algoId"]) if not algo and o.get("algoId") else "")
                 for o in doc["data"] if isinstance(o, dict) and o.get("instId") and o.get(name)]
        if not (len(doc["data"]) >= 100 and found):
            return found, None
        after = found[-1].order_id.removeprefix(ALGO)
        return found, ("GET", spec[1], f"{spec[2].split('&after=')[0]}&after={quote(after, safe='')}", b"")

    def cancels(self, orders: list[Resting], names: Mapping[str, str]) -> list[tuple[Spec, list[Resting]]]:
        plain = [o for o in orders if not o.order_id.startswith(ALGO)]
        algos = [o for o in orders if o.order_id.startswith(ALGO)]
        return [*((("POST", "/api/v5/trade/cancel-order", "",
                    json.dumps({"instId": o.symbol, "ordId": o.order_id}).encode()), [o]) for o in plain),
                *((("POST", okx_algo.CANCEL_ALGOS, "", json.dumps(
                    [{"algoId": o.order_id.removeprefix(ALGO), "instId": o.symbol} for o in batch]).encode()), batch)
                  for batch in (algos[i:i + okx_algo.MAX_CANCELS]
                                for i in range(0, len(algos), okx_algo.MAX_CANCELS)))]

    def cancelled(self, orders: list[Resting], status: int, body: bytes) -> dict[str, str | None]:
        doc = _json_or_none(body)
        data = doc.get("data") if isinstance(doc, dict) else None
        entries = [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []
        if orders and orders[0].order_id.startswith(ALGO):  # each algo order's own `sCode` (code "2": some failed)
            said = {ALGO + str(d.get("algoId")): d for d in entries}
            answered = 200 <= status < 300 and isinstance(doc, dict) and doc.get("code") in ("0", "1", "2")
            out: dict[str, str | None] = {}
            for o in orders:
                entry = said.get(o.order_id) if answered else None
                out[o.order_id] = None if entry is not None and entry.get("sCode") == "0" else \
                    f"sCode {entry.get('sCode')}: {str(entry.get('sMsg'))[:200]}" if entry is not None else \
                    f"HTTP {status}: {_said(body)}"
            return out
        first = entries[0] if entries else {}
        ok = 200 <= status < 300 and isinstance(doc, dict) and doc.get("code") == "0" and first.get("sCode") == "0"
        return _all(orders, None if ok else f"HTTP {status}: {_said(body)}")


class BybitSweep:
    """GET /v5/order/realtime per category (linear by settle coin: USDT and USDC contracts), pages of 50 by
    cursor; POST /v5/order/cancel by orderId."""

    _LISTS: dict[str, tuple[dict[str, str], ...]] = {
        "spot": ({"category": "spot"},), "inverse": ({"category": "inverse"},), "option": ({"category": "option"},),
        "linear": ({"category": "linear", "settleCoin": "USDT"}, {"category": "linear", "settleCoin": "USDC"})}

    def listings(self, markets: frozenset[str], key: RealKey, symbols: Mapping[str, frozenset[str]]) -> list[Spec]:
        chosen = sorted((markets & set(self._LISTS)) | {"spot"})
        return [("GET", "/v5/order/realtime", urlencode({**params, "limit": 50}), b"")
                for m in chosen for params in self._LISTS[m]]

    def resting(self, spec: Spec, status: int, body: bytes) -> tuple[list[Resting], Spec | None]:
        doc = _json(body)
        result = doc.get("result") if isinstance(doc, dict) else None
        if not (200 <= status < 300 and isinstance(doc, dict) and doc.get("retCode") == 0
                and isinstance(result, dict) and isinstance(result.get("list"), list)):
            raise ListingError(f"HTTP {status}: {_said(body)}")
        category = str(result.get("category") or dict(_query(spec[2])).get("category", "spot"))
        found = [Resting(category, str(o["symbol"]), str(o["orderId"])) for o in result["list"]
                 if isinstance(o, dict) and o.get("symbol") and o.get("orderId")]
        cursor = result.get("nextPageCursor")
        if cursor and found:
            query = dict(_query(spec[2]))
            query["cursor"] = str(cursor)
            return found, ("GET", spec[1], urlencode(query), b"")
        return found, None

    def cancels(self, orders: list[Resting], names: Mapping[str, str]) -> list[tuple[Spec, list[Resting]]]:
        return [(("POST", "/v5/order/cancel", "", json.dumps(
            {"category": o.market, "symbol": o.symbol, "orderId": o.order_id}).encode()), [o]) for o in orders]

    def cancelled(self, orders: list[Resting], status: int, body: bytes) -> dict[str, str | None]:
        doc = _json_or_none(body)
        ok = 200 <= status < 300 and isinstance(doc, dict) and doc.get("retCode") == 0
        return _all(orders, None if ok else f"HTTP {status}: {_said(body)}")


class KrakenSweep:
    """POST OpenOrders (every pair); POST CancelOrder by txid."""

    def listings(self, markets: frozenset[str], key: RealKey, symbols: Mapping[str, frozenset[str]]) -> list[Spec]:
        return [("POST", "/0/private/OpenOrders", "", b"")]

    def resting(self, spec: Spec, status: int, body: bytes) -> tuple[list[Resting], Spec | None]:
        doc = _json(body)
        result = doc.get("result") if isinstance(doc, dict) else None
        if not (200 <= status < 300 and isinstance(doc, dict) and not doc.get("error")
                and isinstance(result, dict) and isinstance(result.get("open"), dict)):
            raise ListingError(f"HTTP {status}: {_said(body)}")
        out = []
        for txid, order in result["open"].items():
            descr = order.get("descr") if isinstance(order, dict) else None
            pair = descr.get("pair") if isinstance(descr, dict) else None
            out.append(Resting("spot", str(pair or "?"), str(txid)))
        return out, None

    def cancels(self, orders: list[Resting], names: Mapping[str, str]) -> list[tuple[Spec, list[Resting]]]:
        return [(("POST", "/0/private/CancelOrder", "", urlencode({"txid": o.order_id}).encode()), [o])
                for o in orders]

    def cancelled(self, orders: list[Resting], status: int, body: bytes) -> dict[str, str | None]:
        doc = _json_or_none(body)
        result = doc.get("result") if isinstance(doc, dict) else None
        ok = (200 <= status < 300 and isinstance(doc, dict) and not doc.get("error") and isinstance(result, dict)
              and isinstance(result.get("count"), int) and result["count"] >= 1)
        return _all(orders, None if ok else f"HTTP {status}: {_said(body)}")


class CoinbaseSweep:
    """GET orders/historical/batch?order_status=OPEN, pages by cursor; POST batch_cancel, 100 ids a call."""

    _PATH = "/api/v3/brokerage/orders/historical/batch"

    def listings(self, markets: frozenset[str], key: RealKey, symbols: Mapping[str, frozenset[str]]) -> list[Spec]:
        return [("GET", self._PATH, "order_status=OPEN&limit=250", b"")]

    def resting(self, spec: Spec, status: int, body: bytes) -> tuple[list[Resting], Spec | None]:
        doc = _json(body)
        if not (200 <= status < 300 and isinstance(doc, dict) and isinstance(doc.get("orders"), list)):
            raise ListingError(f"HTTP {status}: {_said(body)}")
        found = [Resting("spot", str(o["product_id"]), str(o["order_id"])) for o in doc["orders"]
                 if isinstance(o, dict) and o.get("order_id") and o.get("product_id")
                 and o.get("status", "OPEN") == "OPEN"]
        if doc.get("has_next") and doc.get("cursor") and found:
            return found, ("GET", self._PATH, urlencode({"order_status": "OPEN", "limit": 250,
                                                         "cursor": str(doc["cursor"])}), b"")
        return found, None

    def cancels(self, orders: list[Resting], names: Mapping[str, str]) -> list[tuple[Spec, list[Resting]]]:
        batches = [orders[i:i + 100] for i in range(0, len(orders), 100)]
        return [(("POST", "/api/v3/brokerage/orders/batch_cancel", "",
                  json.dumps({"order_ids": [o.order_id for o in b]}).encode()), b) for b in batches]

    def cancelled(self, orders: list[Resting], status: int, body: bytes) -> dict[str, str | None]:
        doc = _json_or_none(body)
        results = doc.get("results") if isinstance(doc, dict) else None
        if not 200 <= status < 300 or not isinstance(results, list):
            return _all(orders, f"HTTP {status}: {_said(body)}")
        said = {str(r.get("order_id")): r for r in results if isinstance(r, dict)}
        out: dict[str, str | None] = {}
        for o in orders:
            r = said.get(o.order_id)
            out[o.order_id] = None if r is not None and r.get("success") is True else \
                str(r.get("failure_reason") if r else "not in the answer")
        return out


class HyperliquidSweep:
    """POST /info openOrders for the master address (with meta and spotMeta: a cancel names the asset by
    number); POST /exchange `cancel` actions, 50 orders an action, signed with the account's key."""

    def listings(self, markets: frozenset[str], key: RealKey, symbols: Mapping[str, frozenset[str]]) -> list[Spec]:
        master = key.api_key.reveal_str().lower()
        return [("POST", "/info", "", json.dumps({"type": kind}).encode()) for kind in ("meta", "spotMeta")] + \
            [("POST", "/info", "", json.dumps({"type": "openOrders", "user": master}).encode())]

    def resting(self, spec: Spec, status: int, body: bytes) -> tuple[list[Resting], Spec | None]:
        doc = _json(body)
        if not 200 <= status < 300:
            raise ListingError(f"HTTP {status}: {_said(body)}")
        if b'"openOrders"' not in spec[3]:
            return [], None  # a market list: read by the adapter's market_names
        if not isinstance(doc, list):
            raise ListingError(f"unreadable open orders: {_said(body)}")
        return [Resting("perp", str(o["coin"]), str(o["oid"])) for o in doc
                if isinstance(o, dict) and isinstance(o.get("coin"), str) and isinstance(o.get("oid"), int)], None

    def cancels(self, orders: list[Resting], names: Mapping[str, str]) -> list[tuple[Spec, list[Resting]]]:
        asset = {name: int(market_id[1:]) for market_id, name in names.items()}
        known = [o for o in orders if o.symbol in asset]
        out = []
        for i in range(0, len(known), 50):
            batch = known[i:i + 50]
            action = {"type": "cancel", "cancels": [{"a": asset[o.symbol], "o": int(o.order_id)} for o in batch]}
            # the nonce is keyproxy's own, set when the adapter signs
            out.append((("POST", "/exchange", "", json.dumps({"action": action, "nonce": 0}).encode()), batch))
        return out  # an order of an asset no market list names is never sent: reported "not sent"

    def cancelled(self, orders: list[Resting], status: int, body: bytes) -> dict[str, str | None]:
        doc = _json_or_none(body)
        response = doc.get("response") if isinstance(doc, dict) and doc.get("status") == "ok" else None
        data = response.get("data") if isinstance(response, dict) else None
        statuses = data.get("statuses") if isinstance(data, dict) else None
        if not 200 <= status < 300 or not isinstance(statuses, list) or len(statuses) != len(orders):
            return _all(orders, f"HTTP {status}: {_said(body)}")
        return {o.order_id: None if s == "success" else str(s.get("error") if isinstance(s, dict) else s)[:160]
                for o, s in zip(orders, statuses)}


def _query(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=True)


SWEEPS: dict[str, Sweep] = {"binance": BinanceSweep(), "okx": OkxSweep(), "bybit": BybitSweep(),
                            "kraken": KrakenSweep(), "coinbase": CoinbaseSweep(), "hyperliquid": HyperliquidSweep()}
# the markets each sweep lists resting orders of (None: every market of the exchange, in one listing)
LISTED_MARKETS: dict[str, frozenset[str] | None] = {
    "binance": frozenset(BinanceSweep._PATHS), "bybit": frozenset(BybitSweep._LISTS), "okx": None, "kraken": None,
    "coinbase": None, "hyperliquid": None}


class DeadManSwitch(Protocol):
    """An exchange's own cancel-on-silence timer: armed by keyproxy while it is healthy, it cancels every
    resting order of the key when keyproxy stops re-arming it (host lost, daemon killed, network cut)."""

    name: str  # what the exchange calls it
    bounds: tuple[int, int]  # seconds the exchange accepts (narrowed where each re-arm costs, `why`)
    # the classified endpoints (`Endpoint.name`, REST and WebSocket) that set or clear this timer: keyproxy's
    # alone while it holds it. Matched on the adapter's own classification, never on the raw body, so no
    # encoding of the request (a JSON escape, a duplicate member) reads differently here than upstream
    endpoints: frozenset[str]
    # a switch that fires when a private socket drops (Bybit DCP): keyproxy holds one open on this path,
    # subscribed to these topics, for as long as it runs; None for a timer re-armed by REST calls
    held_socket: HeldSocketSpec | None

    def arm(self, seconds: int, now_ms: int) -> Spec: ...

    def armed(self, spec: Spec, status: int, body: bytes, seconds: int) -> str | list[Spec] | None:
        """The answer to `spec` (arm's, or one this returned): None when the exchange confirmed the timer,
        further calls to make, or what the exchange said when it could not be armed."""


@dataclass(frozen=True)
class HeldSocketSpec:
    """A private socket keyproxy holds for a switch: logged in (the adapter's dialect signs `login` with the
    real key, as it does a bot's), subscribed, pinged at least every `ping_seconds`."""

    path: str
    login: dict[str, object]
    subscribe: dict[str, object]
    ping: dict[str, object]
    ping_seconds: float

    def refused(self, answer: object) -> str | None:
        """None when the answer to the login or the subscription accepts it, else what the exchange said."""
        if isinstance(answer, dict) and answer.get("success") is True:
            return None
        return str(answer.get("ret_msg") if isinstance(answer, dict) else answer)[:160]


class KrakenSwitch:
    # Kraken takes 5 s and more, but each re-arm (every third of the window) costs 1 of the key's call counter,
    # which decays 0.33 a second at Starter: under 30 s the switch alone outran it and Kraken refused the bots'
    # calls and the re-arms (session 33's review); Kraken's page advises 60 s, re-armed every 15 to 30
    name, bounds, why = "CancelAllOrdersAfter", (30, 86_400), " (each re-arm spends Kraken's call counter)"
    held_socket = None
    endpoints = frozenset({"POST /0/private/CancelAllOrdersAfter", "ws cancel_all_orders_after"})

    def arm(self, seconds: int, now_ms: int) -> Spec:
        return ("POST", "/0/private/CancelAllOrdersAfter", "", urlencode({"timeout": seconds}).encode())

    def armed(self, spec: Spec, status: int, body: bytes, seconds: int) -> str | list[Spec] | None:
        doc = _json_or_none(body)
        result = doc.get("result") if isinstance(doc, dict) else None
        ok = 200 <= status < 300 and isinstance(doc, dict) and not doc.get("error") and isinstance(result, dict) \
            and "triggerTime" in result
        return None if ok else f"HTTP {status}: {_said(body)}"


class OkxSwitch:
    name, bounds = "cancel-all-after", (10, 120)
    held_socket = None
    endpoints = frozenset({"POST /api/v5/trade/cancel-all-after"})

    def arm(self, seconds: int, now_ms: int) -> Spec:
        return ("POST", "/api/v5/trade/cancel-all-after", "", json.dumps({"timeOut": str(seconds)}).encode())

    def armed(self, spec: Spec, status: int, body: bytes, seconds: int) -> str | list[Spec] | None:
        doc = _json_or_none(body)
        ok = 200 <= status < 300 and isinstance(doc, dict) and doc.get("code") == "0"
        return None if ok else f"HTTP {status}: {_said(body)}"


class HyperliquidSwitch:
    name, bounds = "scheduleCancel", (5, 86_400)
    held_socket = None
    endpoints = frozenset({"exchange:scheduleCancel"})

    def arm(self, seconds: int, now_ms: int) -> Spec:
        action = {"type": "scheduleCancel", "time": now_ms + seconds * 1000}
        return ("POST", "/exchange", "", json.dumps({"action": action, "nonce": 0}).encode())

    def armed(self, spec: Spec, status: int, body: bytes, seconds: int) -> str | list[Spec] | None:
        doc = _json_or_none(body)
        ok = 200 <= status < 300 and isinstance(doc, dict) and doc.get("status") == "ok"
        return None if ok else f"HTTP {status}: {_said(body)}"


class BybitSwitch:
    """Bybit's disconnect-cancel-all (DCP, docs v5/order/dcp, v5/account/dcp-info): Bybit cancels the
    account's orders of a product once every private socket subscribed to `dcp` has been gone for the
    product's window. Bybit switches it on per product on request (institutional accounts); keyproxy reads
    which products are on, sets each one's window to `dead_man_seconds` and holds a socket subscribed to
    `dcp` while it runs. Every instance of a fleet holds its own, so it fires only when all are gone."""

    name, bounds = "disconnect-cancel-all (DCP)", (3, 300)
    endpoints = frozenset({"POST /v5/order/disconnected-cancel-all", "ws subscribe dcp"})
    held_socket = HeldSocketSpec("/v5/private", {"op": "auth", "req_id": "keyproxy-login", "args": []},
                                 {"op": "subscribe", "req_id": "keyproxy-dcp", "args": ["dcp"]},
                                 {"op": "ping", "req_id": "keyproxy-ping"}, 20.0)
    _INFO: Spec = ("GET", "/v5/account/query-dcp-info", "", b"")

    def arm(self, seconds: int, now_ms: int) -> Spec:
        return self._INFO

    def armed(self, spec: Spec, status: int, body: bytes, seconds: int) -> str | list[Spec] | None:
        doc = _json_or_none(body)
        if not 200 <= status < 300 or not isinstance(doc, dict) or doc.get("retCode") != 0:
            return f"HTTP {status}: {_said(body)}"
        if spec != self._INFO:
            return None  # a window set
        result = doc.get("result")
        infos = result.get("dcpInfos") if isinstance(result, dict) else None
        on = [i for i in infos if isinstance(i, dict) and i.get("dcpStatus") == "ON"] \
            if isinstance(infos, list) else []
        if not on:
            return ("Bybit has not switched disconnect-cancel-all (DCP) on for this account: Bybit does so on "
                    "request (ask the account manager), then keyproxy arms it")
        return [("POST", "/v5/order/disconnected-cancel-all", "",
                 json.dumps({"product": str(i.get("product")), "timeWindow": seconds}).encode())
                for i in on if str(i.get("timeWindow")) != str(seconds)] or None


SWITCHES: dict[str, DeadManSwitch] = {"kraken": KrakenSwitch(), "okx": OkxSwitch(), "hyperliquid": HyperliquidSwitch(),
                                      "bybit": BybitSwitch()}
# why an exchange has no switch keyproxy arms (doctor and `config check` say it)
NO_SWITCH = {
    "binance": "Binance spot has no cancel-on-silence timer (USD-M futures' countdownCancelAll is per symbol)",
    "coinbase": "Coinbase Advanced Trade has no cancel-on-silence timer",
}
