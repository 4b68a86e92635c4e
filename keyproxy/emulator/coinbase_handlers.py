"""Coinbase endpoint handlers (Advanced Trade v3 and the v2 App API).

Response shapes follow Coinbase's API reference pages (Advanced Trade
"List Accounts", "Create Order", "Cancel Orders", "List Orders", "Get API
Key Permissions", "Get Transaction Summary"; Coinbase App "List Accounts",
"Send Money", "Show Current User") as reproduced in ccxt's and the official
SDK's comments and types.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from keyproxy.emulator.coinbase_data import (
    CRYPTO,
    NAMES,
    PRODUCTS,
    USD_PRICE,
    asset_id,
    crypto_currencies,
    exchange_rates,
    fiat_currencies,
    fmt,
    products_doc,
    public_product,
)
from keyproxy.emulator.candles import candle_opens
from keyproxy.emulator.coinbase_routes import (
    TRADE,
    TRANSFER,
    VIEW,
    Call,
    bad_request,
    not_found,
    v2_error,
)
from keyproxy.emulator.coinbase_state import ZERO, Account, Order, Refusal, iso

CONFIGS = ("limit_limit_gtc", "limit_limit_gtd", "limit_limit_fok", "sor_limit_ioc",
           "market_market_ioc")


def _decimal(call: Call, raw: Any, name: str) -> Decimal:
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise bad_request(call.api, f"{name} is not a decimal: {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise bad_request(call.api, f"{name} must be positive")
    return value


def _v2_time(ms: int) -> str:
    return iso(ms)[:19] + "Z"


_GRANULARITY = {"ONE_MINUTE": 60, "FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900, "THIRTY_MINUTE": 1800,
                "ONE_HOUR": 3600, "TWO_HOUR": 7200, "SIX_HOUR": 21600, "ONE_DAY": 86400}


class CoinbaseHandlers:
    """Mixin with one method per route handler name (see ``coinbase_routes``)."""

    # -- v3 public / market ----------------------------------------------------
    def v3_time(self, call: Call) -> dict[str, Any]:
        return {"iso": iso(call.now_ms), "epochSeconds": str(call.now_ms // 1000),
                "epochMillis": str(call.now_ms)}

    def v3_products(self, call: Call) -> dict[str, Any]:
        return products_doc(call.arg("product_type"))

    def v3_product(self, call: Call) -> dict[str, Any]:
        product = PRODUCTS.get(call.path_id or "")
        if product is None:
            raise not_found(call.api, "product")
        return public_product(product)

    def v3_candles(self, call: Call) -> dict[str, Any]:
        """`products/{id}/candles`: flat at the last price, newest first (`start`/`end` in seconds, up to 350)."""
        product = PRODUCTS.get(call.path_id or "")
        if product is None:
            raise not_found(call.api, "product")
        step = _GRANULARITY.get(call.arg("granularity") or "")
        if step is None:
            raise bad_request(call.api, "granularity must be one of " + ", ".join(_GRANULARITY))
        start, end = call.arg("start"), call.arg("end")
        limit = call.arg("limit")
        opens = candle_opens(step * 1000, call.now_ms, int(limit) if limit and limit.isdigit() else 350,
                             int(start) * 1000 if start and start.isdigit() else None,
                             int(end) * 1000 if end and end.isdigit() else None)
        last = str(product.last)
        return {"candles": [{"start": str(t // 1000), "low": last, "high": last, "open": last, "close": last,
                             "volume": "10"} for t in reversed(opens)]}

    def v3_fills(self, call: Call) -> dict[str, Any]:
        """`orders/historical/fills`: one fill per filled order (fee 0), newest first."""
        wanted = set(call.query.get("order_id", []) + call.query.get("order_ids", []))
        products = set(call.query.get("product_id", []) + call.query.get("product_ids", []))
        fills = [{"entry_id": f"f-{o.order_id}", "trade_id": f"t-{o.order_id}", "order_id": o.order_id,
                  "trade_time": iso(o.created), "trade_type": "FILL",
                  "price": str(o.filled_value / o.filled_size), "size": str(o.filled_size), "commission": "0",
                  "product_id": o.product.product_id, "sequence_timestamp": iso(o.created),
                  "liquidity_indicator": "TAKER", "size_in_quote": False, "user_id": call.acct.user_id,
                  "side": o.side} for o in reversed(list(call.acct.orders.values()))
                 if o.filled_size > 0 and (not wanted or o.order_id in wanted)
                 and (not products or o.product.product_id in products)]
        return {"fills": fills[:100], "cursor": ""}

    # -- v3 account ------------------------------------------------------------
    def _v3_account_doc(self, acct: Account, currency: str) -> dict[str, Any]:
        stamp = "2024-01-01T00:00:00.000Z"
        return {
            "uuid": acct.wallet_id(currency),
            "name": f"{currency} Wallet",
            "currency": currency,
            "available_balance": {"value": fmt(acct.available.get(currency, ZERO)),
                                  "currency": currency},
            "default": True,
            "active": True,
            "created_at": stamp,
            "updated_at": stamp,
            "deleted_at": None,
            "type": "ACCOUNT_TYPE_FIAT" if acct.is_fiat(currency) else "ACCOUNT_TYPE_CRYPTO",
            "ready": True,
            "hold": {"value": fmt(acct.hold.get(currency, ZERO)), "currency": currency},
            "retail_portfolio_id": self._portfolio(acct),
            "platform": "ACCOUNT_PLATFORM_CONSUMER",
        }

    @staticmethod
    def _portfolio(acct: Account) -> str:
        name = f"coinbase-emulator/portfolio/{acct.key.api_key}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, name))

    def v3_accounts(self, call: Call) -> dict[str, Any]:
        docs = [self._v3_account_doc(call.acct, c) for c in call.acct.currencies()]
        return {"accounts": docs, "has_next": False, "cursor": "", "size": len(docs)}

    def v3_account(self, call: Call) -> dict[str, Any]:
        currency = call.acct.wallet_currency(call.path_id or "")
        if currency is None:
            raise not_found(call.api, "account")
        return {"account": self._v3_account_doc(call.acct, currency)}

    def v3_transaction_summary(self, call: Call) -> dict[str, Any]:
        return {
            "total_volume": 0,
            "total_fees": 0,
            "fee_tier": {"pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "1000",
                         "taker_fee_rate": "0.012", "maker_fee_rate": "0.006",
                         "aop_from": "", "aop_to": ""},
            "margin_rate": None,
            "goods_and_services_tax": None,
            "advanced_trade_only_volume": 0,
            "advanced_trade_only_fees": 0,
            "coinbase_pro_volume": 0,
            "coinbase_pro_fees": 0,
            "total_balance": "",
            "has_promo_fee": False,
        }

    def v3_key_permissions(self, call: Call) -> dict[str, Any]:
        perms = call.extra["permissions"]
        return {"can_view": bool(perms.get(VIEW)), "can_trade": bool(perms.get(TRADE)),
                "can_transfer": bool(perms.get(TRANSFER)),
                "portfolio_uuid": self._portfolio(call.acct), "portfolio_type": "DEFAULT"}

    # -- v3 orders -------------------------------------------------------------
    def _parse_order(self, call: Call) -> Order:
        body = call.body
        client_id = body.get("client_order_id")
        if not isinstance(client_id, str) or not client_id:
            raise bad_request(call.api, "client_order_id is required")
        product = PRODUCTS.get(str(body.get("product_id")))
        side = body.get("side")
        if side not in ("BUY", "SELL"):
            raise bad_request(call.api, "side must be BUY or SELL")
        config = body.get("order_configuration")
        if not isinstance(config, dict) or len(config) != 1 or next(iter(config)) not in CONFIGS:
            raise Refusal("UNSUPPORTED_ORDER_CONFIGURATION", "Unsupported order configuration",
                          "PREVIEW_INVALID_ORDER_CONFIG")
        kind, spec = next(iter(config.items()))
        if product is None:
            raise Refusal("INVALID_PRODUCT_ID", "Invalid product_id", "PREVIEW_INVALID_PRODUCT_ID")
        if not isinstance(spec, dict):
            raise bad_request(call.api, f"{kind} must be an object")
        base = quote = price = None
        if "base_size" in spec:
            base = _decimal(call, spec["base_size"], "base_size")
            if base % product.base_increment or base < product.base_min:
                raise Refusal("INVALID_SIZE_PRECISION", "Invalid base_size",
                              "PREVIEW_INVALID_SIZE_PRECISION")
        if kind == "market_market_ioc" and "quote_size" in spec:
            quote = _decimal(call, spec["quote_size"], "quote_size")
            if quote % product.quote_increment or quote < product.quote_min:
                raise Refusal("INVALID_SIZE_PRECISION", "Invalid quote_size",
                              "PREVIEW_INVALID_QUOTE_SIZE_PRECISION")
        if (base is None) == (quote is None):
            raise bad_request(call.api, "exactly one of base_size / quote_size is required")
        if kind != "market_market_ioc":
            price = _decimal(call, spec.get("limit_price"), "limit_price")
            if price % product.quote_increment:
                raise Refusal("INVALID_PRICE_PRECISION", "Invalid limit_price",
                              "PREVIEW_INVALID_PRICE_PRECISION")
        return Order(str(uuid.uuid4()), client_id, product, side, kind, dict(spec),
                     base or ZERO, quote, price, call.now_ms)

    def v3_create_order(self, call: Call) -> dict[str, Any]:
        config = call.body.get("order_configuration")
        try:
            existing = call.acct.find_client_order(str(call.body.get("client_order_id")))
            # "If the ID provided is not unique, the order will not be created and the
            # order with this ID will be returned instead." (Create Order reference)
            order = existing or call.acct.place(self._parse_order(call))
        except Refusal as refusal:
            return {"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": "",
                    "error_response": {"error": refusal.error, "message": refusal.message,
                                       "error_details": refusal.message,
                                       "preview_failure_reason": refusal.preview,
                                       "new_order_failure_reason": refusal.error},
                    "order_configuration": config}
        return {"success": True, "failure_reason": "UNKNOWN_FAILURE_REASON",
                "order_id": order.order_id,
                "success_response": {"order_id": order.order_id,
                                     "product_id": order.product.product_id,
                                     "side": order.side,
                                     "client_order_id": order.client_order_id},
                "order_configuration": {order.kind: dict(order.config)}}

    def v3_cancel(self, call: Call) -> dict[str, Any]:
        ids = call.body.get("order_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise bad_request(call.api, "order_ids must be a non-empty list of order ids")
        results = []
        for order_id in ids:
            order = call.acct.orders.get(order_id)
            if order is None or order.status != "OPEN":
                results.append({"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER",
                                "order_id": order_id})
                continue
            call.acct.cancel(order)
            results.append({"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON",
                            "order_id": order_id})
        return {"results": results}

    def v3_orders(self, call: Call) -> dict[str, Any]:
        statuses = set(call.query.get("order_status", []))
        products = set(call.query.get("product_ids", []) + call.query.get("product_id", []))
        orders = [o for o in reversed(list(call.acct.orders.values()))
                  if (not statuses or o.status in statuses)
                  and (not products or o.product.product_id in products)]
        limit = call.arg("limit")
        if limit and limit.isdigit():
            orders = orders[: int(limit)]
        return {"orders": [o.doc(call.acct.user_id) for o in orders], "sequence": "0",
                "has_next": False, "cursor": ""}

    def v3_order(self, call: Call) -> dict[str, Any]:
        order = call.acct.orders.get(call.path_id or "")
        if order is None:
            raise not_found(call.api, "order")
        return {"order": order.doc(call.acct.user_id)}

    # -- v2 --------------------------------------------------------------------
    def v2_time(self, call: Call) -> dict[str, Any]:
        return {"data": {"iso": _v2_time(call.now_ms), "epoch": call.now_ms // 1000}}

    def v2_currencies(self, call: Call) -> dict[str, Any]:
        return fiat_currencies()

    def v2_crypto(self, call: Call) -> dict[str, Any]:
        return crypto_currencies()

    def v2_rates(self, call: Call) -> dict[str, Any]:
        return exchange_rates(call.arg("currency"))

    def v2_user(self, call: Call) -> dict[str, Any]:
        uid = call.acct.user_id
        return {"data": {"id": uid, "name": "Emulated User", "username": None,
                         "profile_location": None, "profile_bio": None, "profile_url": None,
                         "avatar_url": "", "resource": "user", "resource_path": f"/v2/users/{uid}"}}

    def _v2_account_doc(self, acct: Account, currency: str) -> dict[str, Any]:
        wallet = acct.wallet_id(currency)
        total = acct.available.get(currency, ZERO) + acct.hold.get(currency, ZERO)
        exponent, regex = CRYPTO.get(currency, (2, None))
        kind = "fiat" if acct.is_fiat(currency) else "crypto"
        cur: dict[str, Any] = {"code": currency, "name": NAMES.get(currency, currency),
                               "color": "#0052FF", "sort_index": 0, "exponent": exponent,
                               "type": kind, "address_regex": regex,
                               "asset_id": asset_id(currency), "slug": currency.lower()}
        return {"id": wallet, "name": f"{currency} Wallet", "primary": currency == "BTC",
                "type": "fiat" if kind == "fiat" else "wallet", "currency": cur,
                "balance": {"amount": fmt(total), "currency": currency},
                "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                "resource": "account", "resource_path": f"/v2/accounts/{wallet}",
                "allow_deposits": True, "allow_withdrawals": True}

    def v2_accounts(self, call: Call) -> dict[str, Any]:
        limit = call.arg("limit") or "25"
        return {"pagination": {"ending_before": None, "starting_after": None,
                               "previous_ending_before": None, "next_starting_after": None,
                               "limit": int(limit) if limit.isdigit() else 25, "order": "desc",
                               "previous_uri": None, "next_uri": None},
                "data": [self._v2_account_doc(call.acct, c) for c in call.acct.currencies()]}

    def _v2_wallet(self, call: Call) -> str:
        currency = call.acct.wallet_currency(call.path_id or "")
        if currency is None:
            raise not_found(call.api, "account")
        return currency

    def v2_account(self, call: Call) -> dict[str, Any]:
        return {"data": self._v2_account_doc(call.acct, self._v2_wallet(call))}

    def v2_transactions(self, call: Call) -> dict[str, Any]:
        wallet = call.path_id
        return {"pagination": {"next_starting_after": None},
                "data": [s for s in call.acct.sends if s["resource_path"].startswith(
                    f"/v2/accounts/{wallet}/")]}

    def v2_send(self, call: Call) -> dict[str, Any]:
        currency = self._v2_wallet(call)
        body = call.body
        if body.get("type") != "send":
            raise v2_error(400, "validation_error", "Only type=send is emulated")
        to = body.get("to")
        if not isinstance(to, str) or not to:
            raise v2_error(400, "param_required", "to is required")
        amount = _decimal(call, body.get("amount"), "amount")
        if str(body.get("currency", currency)).upper() != currency:
            raise v2_error(400, "validation_error", "currency does not match the account")
        tx_id = str(uuid.uuid4())
        wallet = call.path_id
        record = {
            "id": tx_id, "type": "send", "status": "pending",
            "amount": {"amount": fmt(-amount), "currency": currency},
            "native_amount": {"amount": fmt(-(amount * USD_PRICE.get(currency, Decimal(1)))),
                              "currency": "USD"},
            "description": body.get("description"),
            "created_at": _v2_time(call.now_ms), "updated_at": _v2_time(call.now_ms),
            "resource": "transaction",
            "resource_path": f"/v2/accounts/{wallet}/transactions/{tx_id}",
            "instant_exchange": False,
            "network": {"status": "pending", "status_description": "Pending",
                        "transaction_fee": {"amount": "0", "currency": currency},
                        "transaction_amount": {"amount": fmt(amount), "currency": currency},
                        "confirmations": 0},
            "to": {"resource": "address", "address": to, "currency": currency,
                   "address_info": {"address": to}},
            "idem": body.get("idem"),
            "details": {"title": f"Sent {currency}", "subtitle": "", "header": "",
                        "health": "positive"},
            "hide_native_amount": False,
        }
        try:
            call.acct.send(currency, amount, record)
        except Refusal:
            raise v2_error(400, "validation_error",
                           "Insufficient balance in source account") from None
        return {"data": record}

