"""Wallet-side static data for the Binance emulator: coins with their
networks (``GET /sapi/v1/capital/config/getall``) and margin pairs
(``/sapi/v1/margin/allPairs``, ``/sapi/v1/margin/isolated/allPairs``), shaped
as Binance documents them and as ccxt's ``parse_currency`` reads them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from keyproxy.emulator.binance_data import SPOT, fmt

_NETWORKS = {
    "BTC": ("BTC", "Bitcoin", "0.0002", "0.0005", "^(bc1|[13])[a-zA-HJ-NP-Z0-9]{25,62}$"),
    "ETH": ("ETH", "Ethereum (ERC20)", "0.0008", "0.0016", "^(0x)[0-9A-Fa-f]{40}$"),
    "USDT": ("ETH", "Ethereum (ERC20)", "4", "10", "^(0x)[0-9A-Fa-f]{40}$"),
    "LTC": ("LTC", "Litecoin", "0.001", "0.002", "^(L|M|3|ltc1)[A-Za-z0-9]{25,62}$"),
    "BNB": ("BSC", "BNB Smart Chain (BEP20)", "0.0005", "0.01", "^(0x)[0-9A-Fa-f]{40}$"),
}
_COIN_NAMES = {
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
    "USDT": "TetherUS",
    "LTC": "Litecoin",
    "BNB": "BNB",
}


def coin_config(coin: str, free: Decimal, locked: Decimal) -> dict[str, Any]:
    """One entry of ``GET /sapi/v1/capital/config/getall``."""
    network, net_name, fee, minimum, regex = _NETWORKS[coin]
    return {
        "coin": coin,
        "depositAllEnable": True,
        "withdrawAllEnable": True,
        "name": _COIN_NAMES[coin],
        "free": fmt(free),
        "locked": fmt(locked),
        "freeze": "0",
        "withdrawing": "0",
        "ipoing": "0",
        "ipoable": "0",
        "storage": "0",
        "isLegalMoney": False,
        "trading": True,
        "networkList": [
            {
                "network": network,
                "coin": coin,
                "withdrawIntegerMultiple": "0.00000001",
                "isDefault": True,
                "depositEnable": True,
                "withdrawEnable": True,
                "depositDesc": "",
                "withdrawDesc": "",
                "specialTips": "",
                "specialWithdrawTips": "",
                "name": net_name,
                "resetAddressStatus": False,
                "addressRegex": regex,
                "memoRegex": "",
                "withdrawFee": fee,
                "withdrawMin": minimum,
                "withdrawMax": "9999999999.99999999",
                "minConfirm": 1,
                "unLockConfirm": 0,
                "sameAddress": False,
                "estimatedArrivalTime": 5,
                "busy": False,
            }
        ],
    }


COINS = tuple(_NETWORKS)


def margin_pairs(isolated: bool) -> list[dict[str, Any]]:
    """``GET /sapi/v1/margin/allPairs`` and ``.../isolated/allPairs``."""
    out = []
    for i, m in enumerate(SPOT.values()):
        pair: dict[str, Any] = {
            "symbol": m.symbol,
            "base": m.base,
            "quote": m.quote,
            "isMarginTrade": True,
            "isBuyAllowed": True,
            "isSellAllowed": True,
        }
        if not isolated:
            pair = {"id": str(351637150141315861 + i), **pair}
        out.append(pair)
    return out
