"""Coinbase REST endpoints: (method, path template) -> endpoint class, and whether Coinbase wants a JWT.

Sources: ccxt 4.5.90 `coinbase.describe()['api']` (v2 Sign In With Coinbase and v3
Advanced Trade), the official SDK coinbase-advanced-py 1.8.4 (`coinbase/rest/*.py`), and
the Advanced Trade API reference (docs.cdp.coinbase.com/api-reference/advanced-trade-api).
Templates name path parameters `{...}`; each stands for one path segment of ids
(UUIDs, product ids such as BTC-USD, symbols such as BTC-PERP-INTX).

Class rules (docs/policy.md, as for Binance): signed GETs read; orders, cancels, edits,
previews, closes, margin settings and in-account conversions trade (a convert *quote*
reads, as Binance's getQuote); funds leaving the account withdraw; moves between
portfolios, futures sweeps, perpetuals allocation and fiat deposits transfer; portfolio,
wallet and profile management admin. Body-dependent cases (v2 transactions, sells, buys)
take the most dangerous class the body could ask for; see `coinbase.Coinbase.classify_request`.
An endpoint not listed here is refused as unknown_endpoint, never guessed.
"""

from __future__ import annotations

# (class, signed) -> "METHOD /path/{template}" entries
ENDPOINT_GROUPS: dict[tuple[str, bool], tuple[str, ...]] = {
    ("public", False): (
        # Advanced Trade public market data (no JWT)
        "GET /api/v3/brokerage/time",
        "GET /api/v3/brokerage/market/product_book",
        "GET /api/v3/brokerage/market/products",
        "GET /api/v3/brokerage/market/products/{product_id}",
        "GET /api/v3/brokerage/market/products/{product_id}/candles",
        "GET /api/v3/brokerage/market/products/{product_id}/ticker",
        # v2 public data (ccxt's v2 public section)
        "GET /v2/currencies",
        "GET /v2/currencies/crypto",
        "GET /v2/time",
        "GET /v2/exchange-rates",
        "GET /v2/users/{user_id}",
        "GET /v2/prices/{symbol}/buy",
        "GET /v2/prices/{symbol}/sell",
        "GET /v2/prices/{symbol}/spot",
    ),
    ("read", True): (
        "GET /api/v3/brokerage/accounts",
        "GET /api/v3/brokerage/accounts/{account_uuid}",
        "GET /api/v3/brokerage/orders/historical/batch",
        "GET /api/v3/brokerage/orders/historical/fills",
        "GET /api/v3/brokerage/orders/historical/{order_id}",
        "GET /api/v3/brokerage/products",
        "GET /api/v3/brokerage/products/{product_id}",
        "GET /api/v3/brokerage/products/{product_id}/candles",
        "GET /api/v3/brokerage/products/{product_id}/ticker",
        "GET /api/v3/brokerage/best_bid_ask",
        "GET /api/v3/brokerage/product_book",
        "GET /api/v3/brokerage/transaction_summary",
        "GET /api/v3/brokerage/portfolios",
        "GET /api/v3/brokerage/portfolios/{portfolio_uuid}",
        "GET /api/v3/brokerage/convert/trade/{trade_id}",
        "POST /api/v3/brokerage/convert/quote",
        "GET /api/v3/brokerage/cfm/balance_summary",
        "GET /api/v3/brokerage/cfm/positions",
        "GET /api/v3/brokerage/cfm/positions/{product_id}",
        "GET /api/v3/brokerage/cfm/sweeps",
        "GET /api/v3/brokerage/cfm/intraday/current_margin_window",
        "GET /api/v3/brokerage/cfm/intraday/margin_setting",
        "GET /api/v3/brokerage/intx/portfolio/{portfolio_uuid}",
        "GET /api/v3/brokerage/intx/positions/{portfolio_uuid}",
        "GET /api/v3/brokerage/intx/positions/{portfolio_uuid}/{symbol}",
        "GET /api/v3/brokerage/intx/balances/{portfolio_uuid}",
        "GET /api/v3/brokerage/payment_methods",
        "GET /api/v3/brokerage/payment_methods/{payment_method_id}",
        "GET /api/v3/brokerage/key_permissions",
        "GET /v2/accounts",
        "GET /v2/accounts/{account_id}",
        "GET /v2/accounts/{account_id}/addresses",
        "GET /v2/accounts/{account_id}/addresses/{address_id}",
        "GET /v2/accounts/{account_id}/addresses/{address_id}/transactions",
        "GET /v2/accounts/{account_id}/transactions",
        "GET /v2/accounts/{account_id}/transactions/{transaction_id}",
        "GET /v2/accounts/{account_id}/buys",
        "GET /v2/accounts/{account_id}/buys/{buy_id}",
        "GET /v2/accounts/{account_id}/sells",
        "GET /v2/accounts/{account_id}/sells/{sell_id}",
        "GET /v2/accounts/{account_id}/deposits",
        "GET /v2/accounts/{account_id}/deposits/{deposit_id}",
        "GET /v2/accounts/{account_id}/withdrawals",
        "GET /v2/accounts/{account_id}/withdrawals/{withdrawal_id}",
        "GET /v2/payment-methods",
        "GET /v2/payment-methods/{payment_method_id}",
        "GET /v2/user",
        "GET /v2/user/auth",
        "GET /v2/subscriptions/coinbase-one",
        # a new receiving address moves no funds (ccxt createDepositAddress)
        "POST /v2/accounts/{account_id}/addresses",
    ),
    ("trade", True): (
        "POST /api/v3/brokerage/orders",
        "POST /api/v3/brokerage/orders/batch_cancel",
        "POST /api/v3/brokerage/orders/edit",
        "POST /api/v3/brokerage/orders/edit_preview",
        "POST /api/v3/brokerage/orders/preview",
        "POST /api/v3/brokerage/orders/close_position",
        "POST /api/v3/brokerage/convert/trade/{trade_id}",
        "POST /api/v3/brokerage/cfm/intraday/margin_setting",
        "POST /api/v3/brokerage/intx/multi_asset_collateral",
    ),
    ("transfer", True): (
        "POST /api/v3/brokerage/portfolios/move_funds",
        "POST /api/v3/brokerage/cfm/sweeps/schedule",
        "DELETE /api/v3/brokerage/cfm/sweeps",
        "POST /api/v3/brokerage/intx/allocate",
        # fiat deposits pull from a linked bank (Binance's fiat/deposit is transfer too)
        "POST /v2/accounts/{account_id}/deposits",
        "POST /v2/accounts/{account_id}/deposits/{deposit_id}/commit",
        # deprecated v2 buys may debit a linked bank (payment_method), so not a plain trade
        "POST /v2/accounts/{account_id}/buys",
        "POST /v2/accounts/{account_id}/buys/{buy_id}/commit",
    ),
    ("withdraw", True): (
        # type "send" (crypto to an address or e-mail) is a withdrawal; "transfer" between the
        # user's own accounts is not, but the class cannot depend on the body here:
        # `Coinbase.classify_request` narrows it when the pipeline offers the body
        "POST /v2/accounts/{account_id}/transactions",
        # completing someone's money request sends funds; resend/cancel belong to the same flow
        "POST /v2/accounts/{account_id}/transactions/{transaction_id}/complete",
        "POST /v2/accounts/{account_id}/transactions/{transaction_id}/resend",
        "DELETE /v2/accounts/{account_id}/transactions/{transaction_id}",
        "POST /v2/accounts/{account_id}/withdrawals",
        "POST /v2/accounts/{account_id}/withdrawals/{withdrawal_id}/commit",
        # deprecated v2 sells pay out to a payment method, which may be a bank account
        "POST /v2/accounts/{account_id}/sells",
        "POST /v2/accounts/{account_id}/sells/{sell_id}/commit",
    ),
    ("admin", True): (
        "POST /api/v3/brokerage/portfolios",
        "PUT /api/v3/brokerage/portfolios/{portfolio_uuid}",
        "DELETE /api/v3/brokerage/portfolios/{portfolio_uuid}",
        "POST /v2/accounts",
        "POST /v2/accounts/{account_id}/primary",
        "PUT /v2/accounts/{account_id}",
        "DELETE /v2/accounts/{account_id}",
        "PUT /v2/user",
    ),
}
