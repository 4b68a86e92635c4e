"""Account, futures-account and wallet (sapi) handlers of the Binance emulator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from keyproxy.emulator.binance_auth import BinanceError, mandatory_missing
from keyproxy.emulator.binance_coins import COINS, coin_config, margin_pairs
from keyproxy.emulator.binance_data import MARKETS, Market, fmt
from keyproxy.emulator.binance_orders import decimal_param
from keyproxy.emulator.binance_routes import (
    DEFAULT_PERMISSIONS,
    FUT_TRADE,
    SPOT_TRADE,
    WITHDRAW,
    Call,
)
from keyproxy.emulator.binance_state import ZERO


class WalletHandlers:
    """Mixin for ``BinanceEmulator``: balances, leverage, coins, withdrawals."""

    def _market(self, call: Call, required: bool = True) -> Market | None:
        """The ``symbol`` parameter's market; implemented by ``BinanceEmulator``."""
        raise NotImplementedError

    def _markets(self, call: Call) -> list[Market]:
        """The requested market, or all of the venue; implemented by ``BinanceEmulator``."""
        raise NotImplementedError

    def spot_account(self, call: Call) -> dict[str, Any]:
        acct = call.acct
        perms = {**DEFAULT_PERMISSIONS, **call.permissions}
        balances = [
            {
                "asset": a,
                "free": fmt(acct.free.get(a, ZERO)),
                "locked": fmt(acct.locked.get(a, ZERO)),
            }
            for a in acct.assets()
        ]
        if call.params.get("omitZeroBalances") == "true":
            balances = [b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])]
        rates = {"maker": fmt(ZERO), "taker": fmt(ZERO), "buyer": fmt(ZERO), "seller": fmt(ZERO)}
        return {
            "makerCommission": 0,
            "takerCommission": 0,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": rates,
            "canTrade": bool(perms[SPOT_TRADE]),
            "canWithdraw": bool(perms[WITHDRAW]),
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": acct.update_time or call.now,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    def _margin_assets(self, venue: str) -> list[str]:
        return sorted({m.margin_asset for m in MARKETS[venue].values()})

    def futures_balance(self, call: Call) -> list[dict[str, Any]]:
        out = []
        for asset in self._margin_assets(call.venue):
            bal = fmt(call.acct.free.get(asset, ZERO))
            out.append(
                {
                    "accountAlias": "SgsR",
                    "asset": asset,
                    "balance": bal,
                    "crossWalletBalance": bal,
                    "crossUnPnl": fmt(ZERO),
                    "availableBalance": bal,
                    "maxWithdrawAmount": bal,
                    "marginAvailable": True,
                    "updateTime": call.now,
                }
            )
        return out

    def position_risk(self, call: Call) -> list[dict[str, Any]]:
        out = []
        for m in self._markets(call):
            amt = call.acct.positions.get(m.symbol, ZERO)
            out.append(
                {
                    "symbol": m.symbol,
                    "positionSide": "BOTH",
                    "positionAmt": f"{amt.quantize(m.step):f}",
                    "entryPrice": fmt(m.last if amt else ZERO),
                    "breakEvenPrice": "0.0",
                    "markPrice": fmt(m.last),
                    "unRealizedProfit": fmt(ZERO),
                    "liquidationPrice": "0",
                    "isolatedMargin": "0",
                    "notional": str(amt * m.last),
                    "marginAsset": m.margin_asset,
                    "isolatedWallet": "0",
                    "initialMargin": "0",
                    "maintMargin": "0",
                    "leverage": str(call.acct.leverage.get(m.symbol, 20)),
                    "marginType": "cross",
                    "isolated": False,
                    "updateTime": call.now,
                }
            )
        return out

    def futures_account(self, call: Call) -> dict[str, Any]:
        zero = fmt(ZERO)
        assets = []
        for b in self.futures_balance(call):
            assets.append(
                {
                    "asset": b["asset"],
                    "walletBalance": b["balance"],
                    "unrealizedProfit": zero,
                    "marginBalance": b["balance"],
                    "maintMargin": zero,
                    "initialMargin": zero,
                    "positionInitialMargin": zero,
                    "openOrderInitialMargin": zero,
                    "crossWalletBalance": b["balance"],
                    "crossUnPnl": zero,
                    "availableBalance": b["balance"],
                    "maxWithdrawAmount": b["balance"],
                    "marginAvailable": True,
                    "updateTime": call.now,
                }
            )
        total = assets[0]["walletBalance"] if assets and call.venue == "fapi" else zero
        perms = {**DEFAULT_PERMISSIONS, **call.permissions}
        return {
            "feeTier": 0,
            "canTrade": bool(perms[FUT_TRADE]),
            "canDeposit": True,
            "canWithdraw": bool(perms[WITHDRAW]),
            "updateTime": call.now,
            "multiAssetsMargin": False,
            "tradeGroupId": -1,
            "totalInitialMargin": zero,
            "totalMaintMargin": zero,
            "totalWalletBalance": total,
            "totalUnrealizedProfit": zero,
            "totalMarginBalance": total,
            "totalPositionInitialMargin": zero,
            "totalOpenOrderInitialMargin": zero,
            "totalCrossWalletBalance": total,
            "totalCrossUnPnl": zero,
            "availableBalance": total,
            "maxWithdrawAmount": total,
            "assets": assets,
            "positions": self.position_risk(call),
        }

    def leverage_bracket(self, call: Call) -> Any:
        brackets = [
            (125, 50_000, 0, "0.004", "0"),
            (100, 600_000, 50_000, "0.005", "50"),
            (50, 3_000_000, 600_000, "0.01", "3050"),
        ]
        docs = [
            {
                "symbol": m.symbol,
                "notionalCoef": 1.0,
                "brackets": [
                    {
                        "bracket": i + 1,
                        "initialLeverage": lev,
                        "notionalCap": cap,
                        "notionalFloor": floor,
                        "maintMarginRatio": float(ratio),
                        "cum": float(cum),
                    }
                    for i, (lev, cap, floor, ratio, cum) in enumerate(brackets)
                ],
            }
            for m in self._markets(call)
        ]
        return docs[0] if call.params.get("symbol") else docs

    def leverage(self, call: Call) -> dict[str, Any]:
        market = self._market(call)
        assert market is not None
        raw = call.params.get("leverage")
        if not raw:
            raise mandatory_missing("leverage")
        if not raw.isdigit() or not 1 <= int(raw) <= 125:
            raise BinanceError(400, -4028, f"Leverage {raw} is not valid")
        call.acct.leverage[market.symbol] = int(raw)
        doc: dict[str, Any] = {"leverage": int(raw), "symbol": market.symbol}
        doc["maxNotionalValue" if call.venue == "fapi" else "maxQty"] = "1000000"
        return doc

    # -- wallet / margin ----------------------------------------------------------
    def capital_config(self, call: Call) -> list[dict[str, Any]]:
        acct = call.acct
        return [coin_config(c, acct.free.get(c, ZERO), acct.locked.get(c, ZERO)) for c in COINS]

    def margin_all_pairs(self, call: Call) -> list[dict[str, Any]]:
        return margin_pairs(isolated=False)

    def margin_isolated_pairs(self, call: Call) -> list[dict[str, Any]]:
        return margin_pairs(isolated=True)

    def api_restrictions(self, call: Call) -> dict[str, Any]:
        perms = {**DEFAULT_PERMISSIONS, **call.permissions}
        return {"createTime": 1698645219000, **perms}

    def withdraw(self, call: Call) -> dict[str, Any]:
        coin = call.params.get("coin")
        if not coin:
            raise mandatory_missing("coin")
        address = call.params.get("address")
        if not address:
            raise mandatory_missing("address")
        amount = decimal_param(call.params, "amount")
        if amount is None or amount <= 0:
            raise mandatory_missing("amount")
        if coin not in COINS:
            raise BinanceError(400, -4018, "We don't have this asset.")
        config = coin_config(coin, ZERO, ZERO)["networkList"][0]
        withdraw_id = uuid.uuid4().hex
        record = {
            "id": withdraw_id,
            "amount": fmt(amount),
            "transactionFee": config["withdrawFee"],
            "coin": coin,
            "status": 6,
            "address": address,
            "txId": "0x" + uuid.uuid4().hex * 2,
            "applyTime": datetime.fromtimestamp(call.now / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "network": call.params.get("network", config["network"]),
            "transferType": 0,
            "withdrawOrderId": call.params.get("withdrawOrderId", ""),
            "info": "",
            "confirmNo": 1,
            "walletType": 1 if call.params.get("walletType") == "1" else 0,
            "txKey": "",
            "addressTag": call.params.get("addressTag", ""),
        }
        call.acct.withdraw(coin, amount, record)
        return {"id": withdraw_id}

    def withdraw_history(self, call: Call) -> list[dict[str, Any]]:
        coin = call.params.get("coin")
        return [w for w in reversed(call.acct.withdrawals) if coin is None or w["coin"] == coin]
