"""One refusal-kind table (exchanges/base.py RefusalKind): every refusal code has a kind, and each exchange
answers every code of one kind in one native shape, unless it names a finer answer of its own for that code
(its `_*_CODES` table). What each kind raises in ccxt is pinned per exchange in test_<exchange>.py."""

from __future__ import annotations

import pytest

from keyproxy.exchanges import default_adapters
from keyproxy.exchanges.base import REFUSAL_KINDS, RefusalKind, refusal_kind
from keyproxy.proxy.refusal import STATUS

ADAPTERS = default_adapters()
FINER = {  # the codes an exchange answers with a code of their own (the adapter modules say why)
    "binance": {"expired_credential"}, "bybit": {"ip_denied"}, "okx": {"ip_denied", "open_orders_exceeded"},
    "kraken": {"replayed_request"}, "coinbase": set(), "hyperliquid": set(),
}


def test_every_refusal_code_has_a_kind() -> None:
    assert set(REFUSAL_KINDS) == set(STATUS)
    assert refusal_kind("halted") is RefusalKind.PAUSED
    assert refusal_kind("notional_exceeded") is RefusalKind.ORDER_REJECTED


@pytest.mark.parametrize("exchange", sorted(ADAPTERS))
@pytest.mark.parametrize("kind", list(RefusalKind))
def test_one_native_answer_per_kind(exchange: str, kind: RefusalKind) -> None:
    adapter = ADAPTERS[exchange]
    codes = [c for c, k in REFUSAL_KINDS.items() if k is kind and c not in FINER[exchange]]
    # the answer without what names the code or explains it (Hyperliquid echoes the code, as its SDK reads
    # it; Coinbase's error_details says which scopes are missing)
    shapes = {repr(sorted((k, v) for k, v in adapter.native_error(c, "m").items()
                          if (k != "code" or exchange != "hyperliquid") and k != "error_details")) for c in codes}
    assert len(shapes) == 1, (exchange, kind, {c: adapter.native_error(c, "m") for c in codes})


@pytest.mark.parametrize(("exchange", "code", "ccxt_error"), [
    # the drift this table ended: these raised an unrelated exception before
    ("coinbase", "rate_limited", "RateLimitExceeded"), ("coinbase", "notional_exceeded", "BadRequest"),
    ("coinbase", "audit_unavailable", "RateLimitExceeded"), ("coinbase", "outside_hours", "PermissionDenied"),
    ("coinbase", "expired_credential", "AuthenticationError"),
    ("bybit", "expired_credential", "AuthenticationError"), ("bybit", "outside_hours", "PermissionDenied"),
    ("bybit", "audit_unavailable", "RateLimitExceeded"), ("bybit", "notional_exceeded", "BadRequest"),
    ("okx", "expired_credential", "AuthenticationError"), ("kraken", "expired_credential", "AuthenticationError"),
])
def test_what_ccxt_raises_for_codes_that_drifted(exchange: str, code: str, ccxt_error: str) -> None:
    import json

    ccxt = pytest.importorskip("ccxt")
    body = {"error": code, "message": "m", "request_id": "r", "keyproxy_error": code}
    body.update(ADAPTERS[exchange].native_error(code, "m"))
    with pytest.raises(getattr(ccxt, ccxt_error)):
        getattr(ccxt, exchange)().handle_errors(ADAPTERS[exchange].refusal_status(code, STATUS[code]), "", "u", "GET",
                                                {}, json.dumps(body), body, {}, None)
