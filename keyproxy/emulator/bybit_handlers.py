"""Bybit v5 endpoint handlers; each returns the ``result`` object.

Request parameters and result shapes follow the v5 API reference pages in
bybit-exchange/docs (``docs/v5/order/create-order.mdx``, ``cancel-order``,
``open-order``, ``position/leverage``, ``account/wallet-balance``,
``account/account-info``, ``asset/withdraw/withdraw``, ``user/apikey-info``,
``user/rm-master-apikey``); error codes from ``docs/v5/error.mdx``.
"""

from __future__ import annotations

import asyncio

import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.bybit_auth import BybitError
from keyproxy.emulator.bybit_data import (
    CATEGORIES,
    CHAINS,
    MARKETS,
    Market,
    coin_info,
    instruments,
    ticker,
)
from keyproxy.emulator.candles import candle_opens
from keyproxy.emulator.bybit_state import Account, Order, new_order_id

# GET /v5/user/query-api fields of a new read-write key without withdrawals.
DEFAULT_PERMISSIONS: dict[str, Any] = {
    "readOnly": 0,
    "ips": ["*"],
    "permissions": {
        "ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"],
        "Wallet": ["AccountTransfer"], "Options": ["OptionsTrade"],
        "Derivatives": ["DerivativesTrade"], "CopyTrading": [], "BlockTrade": [],
        "Exchange": ["ExchangeHistory"], "NFT": [], "Affiliate": [], "Earn": [],
    },
}


def key_permissions(key: EmulatedKey) -> dict[str, Any]:
    """The key's query-api permission fields (accounts entry over the defaults)."""
    merged = {**DEFAULT_PERMISSIONS, **key.permissions}
    merged["permissions"] = {**DEFAULT_PERMISSIONS["permissions"],
                             **key.permissions.get("permissions", {})}
    return merged


@dataclass
class Call:
    """One request handed to a handler, after authentication."""

    params: dict[str, Any]
    key: EmulatedKey | None
    account: Account | None
    now: int

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account


_KLINE_MS = {"1": 60_000, "3": 180_000, "5": 300_000, "15": 900_000, "30": 1_800_000, "60": 3_600_000,
             "120": 7_200_000, "240": 14_400_000, "360": 21_600_000, "720": 43_200_000, "D": 86_400_000,
             "W": 604_800_000, "M": 2_592_000_000}


def params_error(detail: str) -> BybitError:
    return BybitError(10001, f"params error: {detail}")


def _text(call: Call, name: str, required: bool = True) -> str | None:
    value = call.params.get(name)
    if value is None or value == "":
        if required:
            raise params_error(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise params_error(f"{name} must be a string")
    return value


def _decimal(call: Call, name: str) -> Decimal:
    raw = _text(call, name)
    try:
        value = Decimal(raw or "")
    except InvalidOperation:
        raise params_error(f"{name} is not a decimal") from None
    if not value.is_finite() or value <= 0:
        raise params_error(f"{name} must be positive")
    return value


def _category(call: Call, allowed: tuple[str, ...] = CATEGORIES) -> str:
    category = _text(call, "category")
    if category not in allowed:
        raise params_error(f"category {category} is not supported here")
    return str(category)


def _market(call: Call, category: str) -> Market:
    symbol = _text(call, "symbol")
    market = MARKETS[category].get(str(symbol))
    if market is None:
        raise BybitError(170121, "Invalid symbol.") if category == "spot" else \
            BybitError(10001, "params error: symbol invalid")
    return market


class BybitHandlers:
    """Mixin with one method per route handler name (see ``bybit.ROUTES``)."""

    revoked: set[str]  # keys deleted through /v5/user/delete-api (until reset)

    # -- public ----------------------------------------------------------------
    def market_time(self, call: Call) -> dict[str, Any]:
        return {"timeSecond": str(call.now // 1000), "timeNano": str(call.now * 1_000_000)}

    def instruments_info(self, call: Call) -> dict[str, Any]:
        category = _category(call)
        p = call.params
        return instruments(category, p.get("symbol"), p.get("baseCoin"), p.get("status"))

    def tickers(self, call: Call) -> dict[str, Any]:
        category = _category(call)
        symbol = call.params.get("symbol")
        items = [ticker(m) for m in MARKETS[category].values() if symbol in (None, m.symbol)]
        return {"category": category, "list": items}

    def kline(self, call: Call) -> dict[str, Any]:
        """`/v5/market/kline`: flat candles at the last price, newest first (`start`/`end` in ms)."""
        category = _category(call, ("spot", "linear", "inverse"))
        market = _market(call, category)
        interval = _KLINE_MS.get(str(call.params.get("interval", "")))
        if interval is None:
            raise params_error("interval invalid")
        limit = str(call.params.get("limit", "200"))
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise params_error("limit invalid")
        start, end = call.params.get("start"), call.params.get("end")
        opens = candle_opens(interval, call.now, int(limit), int(start) if str(start).isdigit() else None,
                             int(end) if str(end).isdigit() else None)
        last = str(market.last)
        return {"category": category, "symbol": market.symbol,
                "list": [[str(t), last, last, last, last, "10", str(market.last * 10)] for t in reversed(opens)]}

    def executions(self, call: Call) -> dict[str, Any]:
        """`/v5/execution/list`: one execution per filled order (fee 0), newest first."""
        category = _category(call, ("spot", "linear", "inverse"))
        p = call.params
        found = [o for o in reversed(list(call.acct.orders.values()))
                 if o.market.category == category and o.cum_qty > 0
                 and p.get("symbol") in (None, o.market.symbol) and p.get("orderId") in (None, o.order_id)]
        items = [{"symbol": o.market.symbol, "orderId": o.order_id, "orderLinkId": o.order_link_id, "side": o.side,
                  "orderPrice": str(o.cum_value / o.cum_qty), "orderQty": str(o.cum_qty), "leavesQty": "0",
                  "orderType": "Market", "execFee": "0", "feeCurrency": o.market.quote,
                  "execId": f"e{o.order_id}", "execPrice": str(o.cum_value / o.cum_qty),
                  "execQty": str(o.cum_qty), "execType": "Trade", "execValue": str(o.cum_value),
                  "execTime": str(o.updated), "isMaker": False, "feeRate": "0"} for o in found]
        return {"category": category, "list": items[:100], "nextPageCursor": ""}

    # -- user / account ----------------------------------------------------------
    def query_api(self, call: Call) -> dict[str, Any]:
        key = call.key
        assert key is not None
        perms = key_permissions(key)
        uid = int(uuid.uuid5(uuid.NAMESPACE_URL, key.api_key).int % 10**8)
        return {
            "id": str(uid * 7 % 10**7), "note": "keyproxy emulator", "apiKey": key.api_key,
            "readOnly": perms["readOnly"], "secret": "", "permissions": perms["permissions"],
            "ips": perms["ips"], "type": 1, "deadlineDay": 90 if perms["ips"] == ["*"] else -1,
            "expiredAt": "2099-01-01T00:00:00Z", "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0, "uta": 1, "userID": uid, "inviterID": 0, "vipLevel": "No VIP",
            "mktMakerLevel": "0", "affiliateID": 0,
            "rsaPublicKey": key.public_key if key.key_type == "rsa" else "",
            "isMaster": True, "parentUid": "0", "kycLevel": "LEVEL_DEFAULT", "kycRegion": "",
        }

    def delete_api(self, call: Call) -> dict[str, Any]:
        """"The API key used to call this interface will be invalid immediately.\""""
        assert call.key is not None
        self.revoked.add(call.key.api_key)
        return {}

    def account_info(self, call: Call) -> dict[str, Any]:
        windows = call.acct.dcp.windows
        return {"marginMode": "REGULAR_MARGIN", "updatedTime": "1697078946000", "unifiedMarginStatus": 6,
                "dcpStatus": "ON" if windows else "OFF", "timeWindow": max(windows.values(), default=10), "smpGroup": 0,
                "isMasterTrader": False, "spotHedgingStatus": "OFF"}

    def dcp_info(self, call: Call) -> dict[str, Any]:
        return {"dcpInfos": call.acct.dcp.infos()}

    def set_dcp(self, call: Call) -> dict[str, Any]:
        refused = call.acct.dcp.set_window(str(call.params.get("product") or "OPTIONS"),
                                           call.params.get("timeWindow"))
        if refused is not None:
            raise params_error(refused)
        return {}

    def wallet_balance(self, call: Call) -> dict[str, Any]:
        account_type = _text(call, "accountType")
        if account_type != "UNIFIED":
            raise params_error("accountType only support UNIFIED")
        coins = call.params.get("coin")
        return call.acct.wallet_doc(set(coins.split(",")) if coins else None)

    def coin_info(self, call: Call) -> dict[str, Any]:
        return coin_info(call.params.get("coin"))

    # -- orders --------------------------------------------------------------------
    def create_order(self, call: Call) -> dict[str, Any]:
        order = self._new_order(call, ("spot", "linear", "inverse"))
        call.acct.place(order)
        self._changed(call.acct, order, call.now)
        return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def pre_check(self, call: Call) -> dict[str, Any]:
        """"Pre Check Order": the initial and maintenance margin rates before and after the order, which is checked as a
        create is and never placed (inverse, linear, option; the rates here are the emulator's own)."""
        order = self._new_order(call, ("linear", "inverse"))
        return {"orderId": order.order_id, "orderLinkId": order.order_link_id, "preImrE4": 0, "preMmrE4": 0,
                "postImrE4": 100, "postMmrE4": 50}

    def _new_order(self, call: Call, categories: tuple[str, ...]) -> Any:
        """The order a create's parameters describe, checked as Bybit checks them (not placed)."""
        category = _category(call, categories)
        market = _market(call, category)
        side = _text(call, "side")
        if side not in ("Buy", "Sell"):
            raise params_error("side invalid")
        order_type = _text(call, "orderType")
        if order_type not in ("Limit", "Market"):
            raise params_error("orderType invalid")
        qty = _decimal(call, "qty")
        price = market.last
        if order_type == "Limit":
            price = _decimal(call, "price")
            if price % market.tick:
                raise BybitError(170134, "Order price decimal too long.") if category == "spot" \
                    else params_error("price invalid")
        market_unit = call.params.get("marketUnit")
        if category == "spot" and order_type == "Market" and side == "Buy" \
                and market_unit != "baseCoin":
            qty = (qty / market.last).quantize(market.qty_step)  # spot market buy: quote units
        elif qty % market.qty_step:
            raise BybitError(170137, "Order volume decimal too long") if category == "spot" \
                else BybitError(10001, "params error: qty invalid")
        if qty < market.min_qty:
            raise BybitError(170136, "Order quantity lower than the minimum.") \
                if category == "spot" else BybitError(10001, "params error: qty invalid")
        tif = call.params.get("timeInForce") or ("IOC" if order_type == "Market" else "GTC")
        if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise params_error("timeInForce invalid")
        link_id = call.params.get("orderLinkId") or ""
        return Order(new_order_id(category), str(link_id), market, side, order_type, qty,
                     price, tif, call.now, reduce_only=bool(call.params.get("reduceOnly")))

    def _changed(self, account: Any, order: Any, now: int) -> None:
        """An order changed (REST or WebSocket): the `order` topic of the account's sockets hears of it."""
        ws = getattr(self, "ws", None)
        if ws is not None and ws.sessions:
            asyncio.get_running_loop().create_task(ws.publish(account, {**order.doc(), "category":
                                                                        order.market.category}, now))
            asyncio.get_running_loop().create_task(ws.publish_wallet(account, now))

    def create_batch(self, call: Call) -> dict[str, Any]:
        """"Batch Place Order": `request` holds at most 20 orders (10 on spot), each placed as a single
        order; `result.list` and `retExtInfo.list` answer each in order (a refused one: its code there)."""
        category = _category(call, ("spot", "linear", "inverse", "option"))
        legs = call.params.get("request")
        if not isinstance(legs, list) or not legs or not all(isinstance(x, dict) for x in legs):
            raise params_error("request invalid")
        if len(legs) > (10 if category == "spot" else 20):
            raise BybitError(10001, "params error: too many orders")
        results, ext = [], []
        for leg in legs:
            try:
                done = self.create_order(Call({**leg, "category": category}, call.key, call.account, call.now))
                results.append({"category": category, "symbol": leg.get("symbol"), **done,
                                "createAt": str(call.now)})
                ext.append({"code": 0, "msg": "OK"})
            except BybitError as err:
                results.append({"category": category, "symbol": leg.get("symbol"), "orderId": "",
                                "orderLinkId": leg.get("orderLinkId") or "", "createAt": ""})
                ext.append({"code": err.code, "msg": err.msg})
        return {"list": results, "_retExtInfo": {"list": ext}}

    def cancel_order(self, call: Call) -> dict[str, Any]:
        category = _category(call, ("spot", "linear", "inverse"))
        market = _market(call, category)
        order_id, link_id = call.params.get("orderId"), call.params.get("orderLinkId")
        if not order_id and not link_id:
            raise params_error("orderId or orderLinkId is required")
        order = call.acct.find(category, market.symbol, order_id, link_id)
        if order is None or not order.is_open:
            raise BybitError(170213, "Order does not exist.") if category == "spot" else \
                BybitError(110001, "order not exists or too late to cancel")
        call.acct.cancel(order, call.now)
        self._changed(call.acct, order, call.now)
        return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def _orders(self, call: Call, open_only: bool) -> dict[str, Any]:
        category = _category(call, ("spot", "linear", "inverse"))
        p = call.params
        found = [
            o for o in reversed(list(call.acct.orders.values()))
            if o.market.category == category and o.is_open == open_only
            and p.get("symbol") in (None, o.market.symbol)
            and p.get("baseCoin") in (None, o.market.base)
            and p.get("settleCoin") in (None, o.market.settle)
            and p.get("orderId") in (None, o.order_id)
            and p.get("orderLinkId") in (None, o.order_link_id)
        ]
        return {"list": [o.doc() for o in found], "nextPageCursor": "", "category": category}

    def open_orders(self, call: Call) -> dict[str, Any]:
        return self._orders(call, open_only=str(call.params.get("openOnly", "0")) == "0")

    def order_history(self, call: Call) -> dict[str, Any]:
        return self._orders(call, open_only=False)

    # -- position / asset ---------------------------------------------------------
    def set_leverage(self, call: Call) -> dict[str, Any]:
        category = _category(call, ("linear", "inverse"))
        market = _market(call, category)
        buy, sell = _decimal(call, "buyLeverage"), _decimal(call, "sellLeverage")
        if buy != sell:
            raise params_error("buy leverage must equal sell leverage in one-way mode")
        if not Decimal(1) <= buy <= Decimal(100):
            raise BybitError(10001, "leverage invalid")
        if call.acct.leverage.get(market.symbol) == str(buy):
            raise BybitError(110043, "leverage not modified")
        call.acct.leverage[market.symbol] = str(buy)
        return {}

    def withdraw(self, call: Call) -> dict[str, Any]:
        coin = _text(call, "coin")
        address = _text(call, "address")
        amount = _decimal(call, "amount")
        if not isinstance(call.params.get("timestamp"), int):
            raise params_error("timestamp is required")
        _text(call, "accountType")
        chains = {c[0]: c for c in CHAINS.get(str(coin), [])}
        chain = call.params.get("chain") or (next(iter(chains)) if len(chains) == 1 else None)
        if chain not in chains:
            raise BybitError(131002, "Withdraw address chain or destination tag are not equal")
        if amount < Decimal(chains[chain][3]):
            raise BybitError(131215, "Amount error")
        fee = Decimal(chains[chain][2])
        acct = call.acct
        if acct.free(str(coin)) < amount + fee:
            raise BybitError(131212, "Insufficient balance")
        request_id = call.params.get("requestId")
        for done in acct.withdrawals:
            if request_id and done["requestId"] == request_id:
                return {"id": done["id"]}
        acct.wallet[str(coin)] -= amount + fee
        record = {"id": str(10000 + len(acct.withdrawals) + 1), "coin": coin, "chain": chain,
                  "address": address, "amount": str(amount), "fee": str(fee),
                  "requestId": request_id, "time": call.now}
        acct.withdrawals.append(record)
        return {"id": record["id"]}
