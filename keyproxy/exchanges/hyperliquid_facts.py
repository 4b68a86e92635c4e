"""What a Hyperliquid action would do (policy facts), and what its answers confirm.

Hyperliquid names a market by its asset index (perps 0.., spot 10000 + spot index), never by name in an
action: facts carry the index as `#<asset>` and the core maps it to the name the exchange published in a
`meta`/`spotMeta` answer that passed through (`market_names`). A price is always present on an order
(a market order is an aggressive IOC limit order), so an order is valued at size x limit price, the worst
it can execute at; a TWAP order has no price and is valued at the last price keyproxy saw.

Sources: Hyperliquid docs, "Exchange endpoint" (https://hyperliquid.gitbook.io/hyperliquid-docs/
for-developers/api/exchange-endpoint) and "Asset IDs"; hyperliquid-python-sdk 0.24 `utils/signing.py`
(the wire shapes `a b p s r t c`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from keyproxy.exchanges.base import (
    BadRequest,
    Endpoint,
    EndpointClass,
    OrderBookChange,
    amount,
    no_json_constants, no_lone_surrogates,
    published,
    unique_members,
)
from keyproxy.policy.model import RequestFacts

SPOT_OFFSET = 10_000  # spot asset = 10000 + its index in spotMeta's universe
MARKET_TRIGGER_SLIPPAGE = Decimal("1.1")  # a market take-profit / stop-loss fills within 10% of its trigger
MAX_ASSET = 1_000_000  # builder-deployed perp dexs use 100000+; anything larger is no asset

# action type -> endpoint class; anything else is refused as an unknown endpoint (fail closed)
ACTIONS: dict[str, EndpointClass] = {
    **dict.fromkeys(("order", "cancel", "cancelByCloid", "modify", "batchModify", "scheduleCancel",
                     "updateLeverage", "updateIsolatedMargin", "twapOrder", "twapCancel"), EndpointClass.TRADE),
    **dict.fromkeys(("usdClassTransfer", "subAccountTransfer", "vaultTransfer"), EndpointClass.TRANSFER),
    **dict.fromkeys(("withdraw3", "usdSend", "spotSend"), EndpointClass.WITHDRAW),
    **dict.fromkeys(("approveAgent", "approveBuilderFee", "createSubAccount"), EndpointClass.ADMIN),
}


def parse_exchange_body(body: bytes) -> dict[str, Any]:
    """The `/exchange` document: `{action, nonce, signature, vaultAddress?, expiresAfter?}`; BadRequest else."""
    try:
        # decoded first, strictly: json.loads would read bytes as UTF-16 or with surrogates passed through
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=unique_members, parse_constant=no_json_constants)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"the body is not a JSON object ({str(e)[:80]})") from None
    no_lone_surrogates(body, doc)  # the action is packed again (msgpack) to be signed: every string must encode
    if not isinstance(doc, dict):
        raise BadRequest("the body is not a JSON object")
    action = doc.get("action")
    if not isinstance(action, dict) or not isinstance(action.get("type"), str):
        raise BadRequest("action must be an object with a type")
    nonce = doc.get("nonce")
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < 1 << 64:
        raise BadRequest("nonce must be an unsigned 64-bit integer (milliseconds)")
    expires = doc.get("expiresAfter")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)
                                or not 0 <= expires < 1 << 64):
        raise BadRequest("expiresAfter must be an unsigned 64-bit integer (milliseconds) or null")
    extra = set(doc) - {"action", "nonce", "signature", "vaultAddress", "expiresAfter"}
    if extra:
        raise BadRequest(f"unknown member {sorted(extra)[0][:40]!r} in the request")
    return doc


def endpoint_of(doc: Mapping[str, Any]) -> Endpoint | None:
    kind = doc["action"]["type"]
    if kind == "vaultTransfer" and doc["action"].get("isDeposit") is not False:
        # a deposit hands the money to a vault whose leader trades it: funds leaving the account's control,
        # decided as a withdrawal to the vault's address (its allowlist and caps); taking it back is a transfer
        return Endpoint(EndpointClass.WITHDRAW, "exchange:vaultTransfer(deposit)")
    cls = ACTIONS.get(kind)
    return Endpoint(cls, f"exchange:{kind}") if cls is not None else None


def _asset(value: object, what: str = "asset") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_ASSET:
        raise BadRequest(f"{what} must be an asset index (a non-negative integer)")
    return value


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{what} must be true or false")
    return value


def market_of(asset: int) -> tuple[str, str]:
    """(market type, the symbol placeholder the core maps to a name) of an asset index."""
    return ("spot" if SPOT_OFFSET <= asset < 2 * SPOT_OFFSET else "perp"), f"#{asset}"


def _order_leg(wire: object, action: str) -> RequestFacts:
    """One order wire `{a, b, p, s, r, t, c?}`."""
    if not isinstance(wire, dict):
        raise BadRequest("an order is an object {a, b, p, s, r, t}")
    unknown = set(wire) - {"a", "b", "p", "s", "r", "t", "c"}
    if unknown:
        raise BadRequest(f"unknown order member {sorted(unknown)[0][:20]!r}")
    asset = _asset(wire.get("a"), "order asset (a)")
    market, symbol = market_of(asset)
    if not isinstance(wire.get("p"), str) or not isinstance(wire.get("s"), str):
        raise BadRequest("an order's price (p) and size (s) are decimal strings")
    kind = wire.get("t")
    if not isinstance(kind, dict) or len(kind) != 1 or not ({"limit", "trigger"} & set(kind)):
        raise BadRequest("an order's type (t) is {limit: {...}} or {trigger: {...}}")
    order_type = "limit" if "limit" in kind else "trigger"
    price = amount(wire["p"], "order price (p)")
    trigger_px = stop_limit = None
    if order_type == "trigger":
        trigger = kind["trigger"]
        if not isinstance(trigger, dict):
            raise BadRequest("a trigger order's t.trigger is an object")
        trigger_px = amount(trigger.get("triggerPx"), "triggerPx")
        # a triggered order executes at its limit price p; a stop above it (buy) executes no higher than p,
        # so p bounds what it costs. Value it at the higher of the two, the worst case either way.
        if trigger_px is not None and price is not None and trigger_px > price:
            price = trigger_px
        if trigger.get("isMarket") is True and trigger_px is not None and _flag(wire.get("b"), "b"):
            # a market trigger fills within Hyperliquid's own slippage of its trigger (10% for market take-profit
            # and stop-loss orders), whatever p says: a buy is worth up to that (session 32's review)
            stop_limit = trigger_px * MARKET_TRIGGER_SLIPPAGE
    return RequestFacts(action=action, symbol=symbol, market=market,
                        side="buy" if _flag(wire.get("b"), "b") else "sell", order_type=order_type,
                        quantity=amount(wire["s"], "order size (s)"), price=price,
                        # spot holds no position to reduce: its `r` is never believed (as Binance's, OKX's, Bybit's)
                        reduce_only=_flag(wire.get("r"), "reduce-only (r)") and market == "perp",
                        trigger_price=trigger_px, stop_limit=stop_limit,
                        client_id=wire["c"].lower() if isinstance(wire.get("c"), str) and wire["c"] else None)


def _oid(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _many(legs: list[RequestFacts], action: str) -> RequestFacts:
    if not legs:
        raise BadRequest(f"the {action} list is empty")
    return legs[0] if len(legs) == 1 else RequestFacts(action=legs[0].action, orders=tuple(legs))


def _cancel(symbols: list[int], ids: tuple[str, ...] = (), cloids: tuple[str, ...] = ()) -> RequestFacts:
    """A cancel of the orders it names (only the bot's own: OrderOwners.only_own), by oid or by cloid."""
    if len(set(symbols)) == 1:
        market, symbol = market_of(symbols[0])
        return RequestFacts(action="cancel", symbol=symbol, market=market, cancels=ids, cancels_by_client=cloids)
    return RequestFacts(action="cancel", cancels=ids, cancels_by_client=cloids)


def hyperliquid_facts(doc: Mapping[str, Any]) -> RequestFacts:  # noqa: C901 - one table of action shapes
    action = doc["action"]
    kind = action["type"]
    if kind == "order":
        orders = action.get("orders")
        if not isinstance(orders, list):
            raise BadRequest("orders must be a list")
        builder = action.get("builder")
        if builder is not None and (not isinstance(builder, dict) or builder.get("f") not in (0, None)):
            # a builder fee pays the builder's address from every fill: a compromised bot's way to move money
            raise BadRequest("orders that pay a builder fee are not allowed through keyproxy")
        facts = _many([_order_leg(o, "order") for o in orders], "order")
        if action.get("grouping", "na") != "na":  # normalTpsl / positionTpsl: the children get oids only later
            return replace(facts, untracked="take-profit and stop-loss orders grouped with an order are answered "
                           "without the ids their fills come under")
        return facts
    if kind == "modify":  # answered {"type": "default"}: no word of the oid the modified order rests under
        raise BadRequest("send batchModify (as ccxt and the SDK do): a single modify is answered without the id of "
                         "the order it leaves resting, so keyproxy could not tell whose order that is")
    if kind == "batchModify":
        modifies = action.get("modifies")
        if not isinstance(modifies, list):
            raise BadRequest("modifies must be a list")
        legs = []
        for m in modifies:
            if not isinstance(m, dict):
                raise BadRequest("a modify is an object {oid, order}")
            oid = m.get("oid")  # the exchange's id, or a client id (0x + 32 hex digits) the book does not hold
            legs.append(replace(_order_leg(m.get("order"), "amend"), replaces=True,
                                order_id=str(oid) if isinstance(oid, int) and not isinstance(oid, bool) else None))
        return _many(legs, "modify")
    if kind in ("cancel", "cancelByCloid"):
        cancels = action.get("cancels")
        if not isinstance(cancels, list) or not cancels:
            raise BadRequest("cancels must be a non-empty list")
        field = "a" if kind == "cancel" else "asset"
        symbols = [_asset(c.get(field) if isinstance(c, dict) else None, f"cancel {field}") for c in cancels]
        # every leg names its order in the one shape keyproxy reads, or the request is refused: a leg left out of
        # the owner check (`o` 1001.0, a cloid as a number) would cancel an order whoever placed it
        if kind == "cancel":
            if not all(_oid(c.get("o")) for c in cancels):
                raise BadRequest("each cancel names its order by `o`, the exchange's order id (a whole number)")
            return _cancel(symbols, ids=tuple(str(c["o"]) for c in cancels))
        if not all(isinstance(c.get("cloid"), str) and c["cloid"] for c in cancels):
            raise BadRequest("each cancel names its order by `cloid`, the client order id (0x + 32 hex digits)")
        return _cancel(symbols, cloids=tuple(c["cloid"].lower() for c in cancels))
    if kind == "scheduleCancel":  # with a time: every order of the account cancelled then
        return RequestFacts(action="cancel", cancels_all=action.get("time") is not None,
                            cancels_later=action.get("time") is not None)
    if kind == "twapCancel":  # no TWAP is a bot's (twapOrder is refused): one would cancel the owner's own
        raise BadRequest("twapCancel is not allowed through keyproxy: bots place no TWAPs here, so the TWAP it names "
                         "is not the bot's")
    if kind == "updateIsolatedMargin":
        market, symbol = market_of(_asset(action.get("asset")))
        ntli = action.get("ntli")
        if isinstance(ntli, bool) or not isinstance(ntli, int):
            raise BadRequest("ntli must be a whole number of micro-USDC")
        # taking margin out of an isolated position raises its leverage by an amount keyproxy cannot compute
        # (it depends on the position): a leverage change whose value is unknown, refused under max_leverage;
        # adding margin lowers it
        return RequestFacts(action="leverage" if ntli < 0 else "other", symbol=symbol, market=market)
    if kind == "updateLeverage":
        market, symbol = market_of(_asset(action.get("asset")))
        leverage = action.get("leverage")
        if isinstance(leverage, bool) or not isinstance(leverage, int) or leverage <= 0:
            raise BadRequest("leverage must be a positive integer")
        return RequestFacts(action="leverage", symbol=symbol, market=market, leverage=Decimal(leverage))
    if kind == "twapOrder":
        # its child orders' fills come under ids no answer names, and no info request lists running TWAPs, so a
        # halt's sweep could not stop one (it kept trading for up to its m minutes): refused to every bot
        raise BadRequest("TWAP orders are not allowed through keyproxy: a halt could not cancel one")
    if kind == "vaultTransfer" and action.get("isDeposit") is not False:
        vault, usd = action.get("vaultAddress"), action.get("usd")
        if not isinstance(vault, str) or len(vault) > 64:
            raise BadRequest("vaultAddress must be an address")
        if isinstance(usd, bool) or not isinstance(usd, int) or usd < 0:
            raise BadRequest("usd must be a whole number of micro-USDC (6 decimals)")
        return RequestFacts(action="withdraw", asset="USDC", address=vault.lower(), network="hyperliquid-vault",
                            amount=Decimal(usd) / 1_000_000)
    if kind in ("withdraw3", "usdSend", "spotSend"):
        destination = action.get("destination")
        if not isinstance(destination, str) or len(destination) > 64:
            raise BadRequest("destination must be an address")
        token = action.get("token") if kind == "spotSend" else "USDC"
        if not isinstance(token, str) or not token:
            raise BadRequest("token must be a token name")
        return RequestFacts(action="withdraw", asset=token.split(":")[0].upper(), address=destination.lower(),
                            network="arbitrum" if kind == "withdraw3" else "hyperliquid",
                            amount=amount(action.get("amount"), "amount"))
    return RequestFacts(action="other")


def hyperliquid_market_names(body: bytes) -> dict[str, str]:
    """`#<asset>` -> name, from a `meta`, `spotMeta` or `*AndAssetCtxs` answer (others: {})."""
    try:
        return _market_names_of(json.loads(body))
    except (ValueError, RecursionError):
        return {}


def _market_names_of(doc: object) -> dict[str, str]:
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc = doc[0]  # [meta, [asset contexts]]
    if not isinstance(doc, dict) or not isinstance(doc.get("universe"), list):
        return {}
    names: dict[str, str] = {}
    spot = "tokens" in doc
    if not spot and any(isinstance(e, dict) and ":" in str(e.get("name", "")) for e in doc["universe"]):
        # a HIP-3 dex's perps (`meta` with `dex`: names `dex:COIN`, listed from 0 but numbered 100000 + 10000 x the
        # dex's place + i): never the main perps' numbers (asset 0 is BTC), so not mapped; its orders are refused
        return {}
    for i, entry in enumerate(doc["universe"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        if spot:
            index = entry.get("index", i)
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < SPOT_OFFSET:
                names[f"#{SPOT_OFFSET + index}"] = entry["name"]
        else:
            names[f"#{i}"] = entry["name"]
    return names


_MID = re.compile(r"\d{1,20}(\.\d{1,20})?")
_MID_NAME = re.compile(r"@\d{1,6}|[A-Za-z][A-Za-z0-9]{0,19}(/[A-Za-z0-9]{1,20})?")  # BTC, kPEPE, PURR/USDC, @107


def hyperliquid_prices(body: bytes) -> dict[str, Decimal]:
    """Last prices by market name, from `allMids` ({name: mid}) or a `*AndAssetCtxs` answer."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    out: dict[str, Decimal] = {}
    if isinstance(doc, dict) and "universe" not in doc:
        # allMids' shape only: every member a market's name and a price as a string. Other `/info` answers a bot
        # may ask for are objects too (a user's state, a token's details, `{"0": ...}`): read as mids, a member
        # named like a market (`"0"` is asset #0) would set its price (session 27's review)
        for name, mid in doc.items():
            if not (isinstance(name, str) and _MID_NAME.fullmatch(name) and isinstance(mid, str)
                    and _MID.fullmatch(mid)):
                return {}
            price = published(mid)  # a mid of 0 (a market without a book) is no price, and no reason to doubt
            if price is not None:
                out[name] = price
        return out
    if isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], dict) and isinstance(doc[1], list):
        names = _market_names_of(doc[0])
        by_index = [names.get(k) for k in sorted(names, key=lambda k: int(k[1:]))]
        for name, ctx in zip(by_index, doc[1], strict=False):
            if name and isinstance(ctx, dict):
                price = published(ctx.get("midPx")) or published(ctx.get("markPx"))
                if price is not None:
                    out[name] = price
    return out


def hyperliquid_order_book_change(sent: bytes, status: int, body: bytes, facts: RequestFacts) -> OrderBookChange:
    """An order opens one scope per status `resting`; a cancel closes one per status `success`, in the
    market of the asset each cancel named (`sent`: the action as it went upstream)."""
    if not body:  # no answer read: an order counts as resting (never understate), no cancel is believed
        return OrderBookChange(opened=tuple(o.scope for o in facts.placed() if o.action == "order"))
    try:
        doc = json.loads(body)
        statuses = doc["response"]["data"]["statuses"] if status == 200 and doc.get("status") == "ok" else []
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return OrderBookChange()
    if not isinstance(statuses, list):
        return OrderBookChange()
    if facts.action == "order":
        opened = [leg.scope for leg, st in zip(facts.placed(), statuses, strict=False)
                  if isinstance(st, dict) and "resting" in st]
        return OrderBookChange(opened=tuple(opened))
    if facts.action == "cancel":
        try:
            action = json.loads(sent)["action"]
            field = "a" if action["type"] == "cancel" else "asset"
            markets = [market_of(_asset(c[field]))[0] for c in action["cancels"]]
        except (ValueError, KeyError, TypeError, BadRequest):
            return OrderBookChange()
        closed = [facts.scope if facts.symbol else f"{market}:*"
                  for market, st in zip(markets, statuses, strict=False) if st == "success"]
        return OrderBookChange(closed=tuple(closed))
    return OrderBookChange()
