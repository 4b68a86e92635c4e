"""Hyperliquid REST emulator (``POST /info``, ``POST /exchange``), playing mainnet.

Written from Hyperliquid's docs ("Info endpoint", "Exchange endpoint", "Nonces and API wallets") and the
answers recorded in hyperliquid-python-sdk's test cassettes, apart from keyproxy's adapter
(``hyperliquid_auth`` checks signatures). Errors are HTTP 200 ``{"status": "err", "response": "..."}``
as Hyperliquid answers; an unknown ``/info`` type is HTTP 422.

Accounts file entries: ``{"exchange": "hyperliquid", "api_key": "<master address>", "key_type": "eth",
"permissions": {"agents": ["<approved agent address>", ...]}, "balances": {"USDC": "10000"}}``: the
master address is the user; the agents it approved may sign L1 actions for it, never user-signed ones.

Served for unmodified ccxt 4.5.90 ``hyperliquid()`` and hyperliquid-python-sdk 0.24: ``meta``,
``spotMeta``, ``metaAndAssetCtxs``, ``spotMetaAndAssetCtxs``, ``allMids``, ``perpDexs``,
``clearinghouseState``, ``spotClearinghouseState``, ``openOrders``, ``frontendOpenOrders``,
``orderStatus``, ``userFills``, ``userAbstraction``, ``userRole``, ``extraAgents``; actions ``order``,
``cancel``, ``cancelByCloid``, ``updateLeverage``, ``scheduleCancel``, ``approveAgent``,
``approveBuilderFee``, ``batchModify``, ``withdraw3``, ``usdSend``, ``spotSend``, ``usdClassTransfer``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.base import Clock, RequestNote
from keyproxy.emulator.hyperliquid_auth import USER_SIGNED, HyperliquidError, NonceSet, l1_signer, user_signer

PERPS = (("BTC", 5, 50, "65000.0"), ("ETH", 4, 25, "3500.0"), ("SOL", 2, 20, "150.0"))  # name, szDecimals, lev, mid
# name, base token index, mid: Hyperliquid names every pair but the first few by its index (`@1`), in spotMeta and
# allMids alike
SPOT = (("PURR/USDC", 0, "0.2"), ("@1", 2, "1.5"))
SPOT_OFFSET = 10_000
TOKENS = ({"name": "USDC", "szDecimals": 8, "weiDecimals": 8, "index": 0,
           "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054", "isCanonical": True, "evmContract": None, "fullName": None},
          {"name": "PURR", "szDecimals": 0, "weiDecimals": 5, "index": 1,
           "tokenId": "0xc1fb593aeffbeb02f85e0308e9956a90", "isCanonical": True, "evmContract": None, "fullName": None},
          {"name": "HFUN", "szDecimals": 2, "weiDecimals": 8, "index": 2,
           "tokenId": "0xbaf265ef389da684513d98d68edf4eae", "isCanonical": False, "evmContract": None,
           "fullName": None})


def _meta() -> dict[str, Any]:
    return {"universe": [{"name": n, "szDecimals": d, "maxLeverage": lev, "onlyIsolated": False}
                         for n, d, lev, _ in PERPS]}


def _spot_meta() -> dict[str, Any]:
    return {"universe": [{"tokens": [base, 0], "name": n, "index": i, "isCanonical": not n.startswith("@")}
                         for i, (n, base, _) in enumerate(SPOT)], "tokens": list(TOKENS)}


def _mids() -> dict[str, str]:
    return {**{n: mid for n, _, _, mid in PERPS}, **{n: mid for n, _, mid in SPOT}}


def _coin(asset: int) -> str:
    if 0 <= asset < len(PERPS):
        return PERPS[asset][0]
    if 0 <= asset - SPOT_OFFSET < len(SPOT):
        return SPOT[asset - SPOT_OFFSET][0]
    raise HyperliquidError(f"Unknown asset {asset}")


@dataclass
class Order:
    oid: int
    coin: str
    side: str  # B | A
    limit_px: str
    sz: str
    timestamp: int
    reduce_only: bool
    tif: str
    cloid: str | None
    status: str = "open"

    def wire(self) -> dict[str, Any]:
        return {"coin": self.coin, "side": self.side, "limitPx": self.limit_px, "sz": self.sz, "oid": self.oid,
                "timestamp": self.timestamp, "origSz": self.sz, "cloid": self.cloid}

    def frontend(self) -> dict[str, Any]:
        return {**self.wire(), "orderType": "Limit", "tif": self.tif, "reduceOnly": self.reduce_only,
                "isTrigger": False, "triggerPx": "0.0", "triggerCondition": "N/A", "isPositionTpsl": False,
                "children": []}


@dataclass
class User:
    address: str
    agents: set[str]
    usdc: Decimal
    orders: dict[int, Order] = field(default_factory=dict)
    leverage: dict[int, int] = field(default_factory=dict)
    withdrawals: list[dict[str, Any]] = field(default_factory=list)
    builder_fees: dict[str, str] = field(default_factory=dict)
    dead_man_at: int | None = None  # scheduleCancel: when every open order is cancelled (ms)
    fills: list[dict[str, Any]] = field(default_factory=list)  # userFills, newest first


class HyperliquidEmulator:
    name = "hyperliquid"

    def __init__(self, keys: list[EmulatedKey], clock: Clock) -> None:
        self._keys = keys
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self.users: dict[str, User] = {}
        for key in self._keys:
            agents = {str(a).lower() for a in key.permissions.get("agents", [])}
            self.users[key.api_key.lower()] = User(key.api_key.lower(), agents, key.balances.get("USDC", Decimal(0)))
        self.nonces = NonceSet()
        self._next_oid = 1000
        self._moved: dict[str, str] = {}  # coin -> mid set by the price hook (`set_price`)

    def mids(self) -> dict[str, str]:
        return {**_mids(), **self._moved}

    def set_price(self, symbol: str, price: Decimal, venue: str = "") -> list[int]:
        """The test hook that moves a market (`POST /_emulator/price`): its mid becomes `price`, and every
        resting order it crosses (a buy at or above, a sell at or below) fills at its own price."""
        if symbol not in _mids():
            raise KeyError(symbol)
        self._moved[symbol] = f"{price.normalize():f}"
        filled = []
        for user in self.users.values():
            for order in user.orders.values():
                buy = order.side == "B"
                if order.status == "open" and order.coin == symbol and (
                        Decimal(order.limit_px) >= price if buy else Decimal(order.limit_px) <= price):
                    order.status = "filled"
                    self._fill(user, order.oid, order.coin, order.side, order.limit_px, order.sz)
                    filled.append(order.oid)
        return filled

    def _fill(self, user: User, oid: int, coin: str, side: str, px: str, sz: str) -> None:
        now = self._now()
        user.fills.insert(0, {"coin": coin, "px": px, "sz": sz, "side": side, "time": now, "startPosition": "0.0",
                              "dir": "Open Long" if side == "B" else "Open Short", "closedPnl": "0.0",
                              "hash": "0x" + f"{oid:064x}", "oid": oid, "crossed": True, "fee": "0.0",
                              "tid": oid * 10 + len(user.fills), "feeToken": "USDC"})

    def state(self) -> dict[str, Any]:
        return {u.address: {"agents": sorted(u.agents), "usdc": str(u.usdc),
                            "orders": [{**o.frontend(), "status": o.status} for o in u.orders.values()],
                            "leverage": {str(k): v for k, v in u.leverage.items()}, "withdrawals": u.withdrawals,
                            "builder_fees": u.builder_fees, "nonces": self.nonces.kept}
                for u in self.users.values()}

    def owns(self, path: str) -> bool:
        return path in ("/info", "/exchange")

    def fire_timers(self) -> None:
        now = self._now()
        for user in self.users.values():
            if user.dead_man_at is not None and user.dead_man_at <= now:
                user.dead_man_at = None
                for order in user.orders.values():
                    if order.status == "open":
                        order.status = "canceled"

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        note.exchange = self.name
        if request.method != "POST":
            return web.Response(status=405, text="Method Not Allowed")
        try:
            doc = json.loads(body)
        except ValueError:
            return web.Response(status=422, text="Failed to deserialize the JSON body into the target type")
        if not isinstance(doc, dict):
            return web.Response(status=422, text="Failed to deserialize the JSON body into the target type")
        if request.path == "/info":
            answer = self._info(doc)
            if answer is None:
                return web.Response(status=422, text="Failed to deserialize the JSON body into the target type")
            return web.json_response(answer)
        try:
            result = self._exchange(doc, note)
        except HyperliquidError as e:
            note.error_code = str(e)[:80]
            return web.json_response({"status": "err", "response": str(e)})
        return web.json_response({"status": "ok", "response": result})

    # --- /info ---------------------------------------------------------------------------------------

    def _info(self, doc: dict[str, Any]) -> Any:  # noqa: C901 - one table of query types
        kind, user = doc.get("type"), self.users.get(str(doc.get("user", "")).lower())
        mids = self.mids()
        if kind == "meta":
            return _meta()
        if kind == "spotMeta":
            return _spot_meta()
        if kind == "allMids":
            return mids
        if kind == "perpDexs":
            return [None]
        if kind == "metaAndAssetCtxs":
            return [_meta(), [{"funding": "0.0000125", "openInterest": "100.0", "prevDayPx": mid,
                               "dayNtlVlm": "1000000.0", "premium": "0.0", "oraclePx": mid, "markPx": mid, "midPx": mid,
                               "impactPxs": [mid, mid], "dayBaseVlm": "10.0"} for _, _, _, mid in PERPS]]
        if kind == "spotMetaAndAssetCtxs":
            return [_spot_meta(), [{"coin": n, "prevDayPx": mid, "dayNtlVlm": "1000.0", "markPx": mid, "midPx": mid,
                                    "circulatingSupply": "1000000.0", "totalSupply": "1000000.0",
                                    "dayBaseVlm": "1000.0"} for n, _, mid in SPOT]]
        if kind == "userAbstraction":
            return "default"
        if kind == "userRole":
            if str(doc.get("user", "")).lower() in self.users:
                return {"role": "user"}
            owner = self._owner_of(str(doc.get("user", "")).lower())
            return {"role": "agent", "data": {"user": owner.address}} if owner else {"role": "missing"}
        if kind in ("clearinghouseState", "spotClearinghouseState", "openOrders", "frontendOpenOrders", "userFills",
                    "extraAgents", "orderStatus") and user is None:
            return self._empty(kind)
        assert user is not None or kind not in ("clearinghouseState",)
        if kind == "clearinghouseState":
            value = str(user.usdc)
            summary = {"accountValue": value, "totalNtlPos": "0.0", "totalRawUsd": value, "totalMarginUsed": "0.0"}
            return {"marginSummary": summary, "crossMarginSummary": summary, "crossMaintenanceMarginUsed": "0.0",
                    "withdrawable": value, "assetPositions": [], "time": self._now()}
        if kind == "spotClearinghouseState":
            return {"balances": [{"coin": "USDC", "token": 0, "hold": "0.0", "total": str(user.usdc),
                                  "entryNtl": "0.0"}]}
        if kind == "openOrders":
            return [o.wire() for o in user.orders.values() if o.status == "open"]
        if kind == "frontendOpenOrders":
            return [o.frontend() for o in user.orders.values() if o.status == "open"]
        if kind == "userFills":
            return list(user.fills[:2000])
        if kind == "extraAgents":
            return [{"name": "agent", "address": a, "validUntil": self._now() + 180 * 86_400_000}
                    for a in sorted(user.agents)]
        if kind == "orderStatus":
            order = user.orders.get(doc.get("oid")) if isinstance(doc.get("oid"), int) else None
            if order is None:
                return {"status": "unknownOid"}
            return {"status": "order", "order": {"order": order.frontend(), "status": order.status,
                                                 "statusTimestamp": self._now()}}
        return None

    @staticmethod
    def _empty(kind: str) -> Any:
        if kind == "clearinghouseState":
            zero = {"accountValue": "0.0", "totalNtlPos": "0.0", "totalRawUsd": "0.0", "totalMarginUsed": "0.0"}
            return {"marginSummary": zero, "crossMarginSummary": zero, "crossMaintenanceMarginUsed": "0.0",
                    "withdrawable": "0.0", "assetPositions": [], "time": 0}
        if kind == "spotClearinghouseState":
            return {"balances": []}
        return {"status": "unknownOid"} if kind == "orderStatus" else []

    def _owner_of(self, signer: str) -> User | None:
        return next((u for u in self.users.values() if signer in u.agents), None)

    # --- /exchange -----------------------------------------------------------------------------------

    def _exchange(self, doc: dict[str, Any], note: RequestNote) -> dict[str, Any]:
        action, nonce = doc.get("action"), doc.get("nonce")
        if not isinstance(action, dict) or not isinstance(nonce, int) or isinstance(nonce, bool):
            raise HyperliquidError("Failed to deserialize the JSON body")
        if doc.get("vaultAddress") is not None:
            raise HyperliquidError("Vault trading is not emulated")
        kind = action.get("type")
        if kind in USER_SIGNED:
            signer = user_signer(action, nonce, doc.get("signature"))
            user = self.users.get(signer)
            if user is None:  # an agent cannot sign for the user here
                raise HyperliquidError(f"User or API Wallet {signer} does not exist.")
        else:
            signer = l1_signer(action, nonce, None, doc.get("expiresAfter"), doc.get("signature"))
            user = self.users.get(signer) or self._owner_of(signer)
            if user is None:
                raise HyperliquidError(f"User or API Wallet {signer} does not exist.")
        note.api_key, note.signature_verified = signer, True
        expires = doc.get("expiresAfter")
        if isinstance(expires, int) and expires < self._now():
            raise HyperliquidError("Action expired")
        self.nonces.use(signer, nonce, self._now())
        return self._act(user, action)

    def _act(self, user: User, action: dict[str, Any]) -> dict[str, Any]:  # noqa: C901 - one table of actions
        kind = action["type"]
        if kind == "order":
            return {"type": "order", "data": {"statuses": [self._place(user, w) for w in action.get("orders", [])]}}
        if kind in ("cancel", "cancelByCloid"):
            statuses: list[Any] = []
            for c in action.get("cancels", []):
                if kind == "cancel":
                    order = user.orders.get(c.get("o"))
                else:
                    order = next((o for o in user.orders.values() if o.cloid == c.get("cloid")), None)
                if order is None or order.status != "open":
                    statuses.append({"error": "Order was never placed, already canceled, or filled."})
                else:
                    order.status = "canceled"
                    statuses.append("success")
            return {"type": "cancel", "data": {"statuses": statuses}}
        if kind == "batchModify":  # each order named (by oid, or by cloid) cancelled and placed anew, under a new oid
            statuses = []
            for m in action.get("modifies", []):
                ref = m.get("oid") if isinstance(m, dict) else None
                order = user.orders.get(ref) if isinstance(ref, int) else next(
                    (o for o in user.orders.values() if ref is not None and o.cloid == ref), None)
                if order is None or order.status != "open":
                    statuses.append({"error": "Cannot modify canceled or filled order"})
                    continue
                order.status = "canceled"
                statuses.append(self._place(user, m.get("order")))
            return {"type": "order", "data": {"statuses": statuses}}
        if kind == "updateLeverage":
            asset, leverage = action.get("asset"), action.get("leverage")
            _coin(asset)
            user.leverage[asset] = leverage
            return {"type": "default"}
        if kind == "scheduleCancel":  # the dead-man's switch: at `time` (>= 5 s ahead) every open order goes
            at = action.get("time")
            if at is not None and (not isinstance(at, int) or at < self._now() + 5000):
                raise HyperliquidError("Scheduled cancel time too early, must be at least 5 seconds from now.")
            user.dead_man_at = at
            return {"type": "default"}
        if kind == "approveAgent":
            user.agents.add(str(action.get("agentAddress", "")).lower())
            return {"type": "default"}
        if kind == "approveBuilderFee":
            user.builder_fees[str(action.get("builder", "")).lower()] = str(action.get("maxFeeRate"))
            return {"type": "default"}
        if kind in ("withdraw3", "usdSend", "spotSend", "usdClassTransfer"):
            try:
                amount = Decimal(str(action.get("amount")))
            except InvalidOperation:
                raise HyperliquidError("Invalid amount") from None
            if kind != "usdClassTransfer":
                if amount > user.usdc:
                    raise HyperliquidError("Insufficient balance for withdrawal")
                user.usdc -= amount
                user.withdrawals.append({"type": kind, "destination": action.get("destination"), "amount": str(amount)})
            return {"type": "default"}
        raise HyperliquidError(f"Unknown action type {str(kind)[:40]}")

    def _place(self, user: User, wire: Any) -> dict[str, Any]:
        try:
            coin = _coin(wire["a"])
            price, size = Decimal(wire["p"]), Decimal(wire["s"])
            tif = wire["t"]["limit"]["tif"] if "limit" in wire["t"] else "Gtc"
        except (KeyError, TypeError, InvalidOperation, HyperliquidError):
            return {"error": "Order has invalid price or size."}
        if price <= 0 or size <= 0:
            return {"error": "Order has invalid price or size."}
        self._next_oid += 1
        mid = Decimal(self.mids()[coin])
        buy = bool(wire.get("b"))
        crosses = price >= mid if buy else price <= mid
        if tif == "Ioc" and not crosses:
            return {"error": "Order could not immediately match against any resting orders."}
        if crosses:
            self._fill(user, self._next_oid, coin, "B" if buy else "A", str(mid), wire["s"])
            return {"filled": {"totalSz": wire["s"], "avgPx": str(mid), "oid": self._next_oid}}
        user.orders[self._next_oid] = Order(self._next_oid, coin, "B" if buy else "A", wire["p"], wire["s"],
                                            self._now(), bool(wire.get("r")), tif, wire.get("c"))
        return {"resting": {"oid": self._next_oid}}


def create(keys: list[EmulatedKey], clock: Clock) -> HyperliquidEmulator:
    """Module entry point used by ``keyproxy.emulator.app``."""
    return HyperliquidEmulator(keys, clock)


def new_key(key_type: str = "eth", permissions: dict[str, Any] | None = None,
            balances: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """A fresh Hyperliquid user with an approved agent: (accounts-file entry, credentials for `key add`).

    The credential is the agent's key (an API wallet, which cannot withdraw); `permissions={"master": True}`
    gives the master's own key instead."""
    from eth_account import Account

    if key_type != "eth":
        raise ValueError(f"hyperliquid keys are Ethereum keys (eth), not {key_type!r}")
    master, agent = Account.create(), Account.create()
    use_master = bool((permissions or {}).get("master"))
    entry = {"exchange": "hyperliquid", "api_key": str(master.address).lower(), "key_type": "eth",
             "permissions": {"agents": [str(agent.address).lower()]}, "balances": dict(balances or {"USDC": "100000"})}
    signer = master if use_master else agent
    return entry, {"api_key": str(master.address), "private_key": "0x" + bytes(signer.key).hex()}
