"""Margin taken out of an isolated position raises its leverage: decided under `max_leverage` as a leverage change.

Session 27's review: a bot capped at `max_leverage=2` was refused `set-leverage 50` but took margin out of its
isolated position instead (OKX `margin-balance` type `reduce`, Bybit `add-margin` with a negative margin, Binance
`positionMargin` type 2), classed as a setting and sent. By how much that raises the leverage depends on the
position, which keyproxy cannot compute: refused under a leverage cap, as Hyperliquid's `updateIsolatedMargin`
already was. Adding margin lowers leverage and passes. Unmodified ccxt, real daemon and emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at

ccxt = pytest.importorskip("ccxt")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("margin-leverage"))
    try:
        stack.serve_accounts({"ok": new_real_key("hmac", exchange="okx"), "by": new_real_key("hmac", exchange="bybit"),
                              "bn": new_real_key("hmac")})
        yield stack
    finally:
        stack.close()


def _client(dev: DevStack, name: str, account: str, exchange: str) -> Any:
    creds = dev.add_bot(name, account, "read,trade", "--set", "max_leverage=2")
    config = {"apiKey": creds["api_key"], "secret": creds["secret"], "enableRateLimit": False}
    if creds.get("passphrase"):
        config["password"] = creds["passphrase"]
    return point_ccxt_at(getattr(ccxt, exchange)(config), creds["base_url"])


def _reached(dev: DevStack, path: str) -> int:
    return sum(1 for e in dev.journal() if e.get("path") == path)


CASES = [
    ("okx", "ok", "/api/v5/account/position/margin-balance", "private_post_account_position_margin_balance",
     {"instId": "BTC-USDT-SWAP", "posSide": "net", "type": "reduce", "amt": "100000"}, {"type": "add"}),
    ("bybit", "by", "/v5/position/add-margin", "private_post_v5_position_add_margin",
     {"category": "linear", "symbol": "BTCUSDT", "margin": "-100000"}, {"margin": "10"}),
    ("binance", "bn", "/fapi/v1/positionMargin", "fapiprivate_post_positionmargin",
     {"symbol": "BTCUSDT", "amount": "100000", "type": 2}, {"type": 1}),
]


@pytest.mark.parametrize("exchange,account,path,call,taken_out,added", CASES, ids=[c[0] for c in CASES])
def test_taking_margin_out_is_refused_under_a_leverage_cap(dev: DevStack, exchange: str, account: str, path: str,
                                                           call: str, taken_out: dict[str, Any],
                                                           added: dict[str, Any]) -> None:
    ex = _client(dev, f"{exchange}-lev", account, exchange)
    before = _reached(dev, path)
    with pytest.raises(ccxt.BaseError) as refused:
        getattr(ex, call)(taken_out)
    assert "leverage_exceeded" in str(refused.value)
    assert _reached(dev, path) == before  # nothing went upstream
    try:  # adding margin lowers leverage: sent (the emulator may not serve the endpoint)
        getattr(ex, call)({**taken_out, **added})
    except ccxt.BaseError as e:
        assert "leverage_exceeded" not in str(e), e
    assert _reached(dev, path) == before + 1
