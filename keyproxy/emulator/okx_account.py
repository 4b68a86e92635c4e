"""OKX account and funding endpoints (balances, key config, positions,
leverage, withdrawals), split from ``okx`` to keep modules small.

Shapes follow OKX v5 "Get balance" (``details`` per currency: ``cashBal``,
``availBal``, ``frozenBal``, ``eq``, ``eqUsd``...), "Get account configuration"
(``perm`` lists the key's permissions, e.g. ``read_only,withdraw,trade``, and
``ip`` its IP allow-list), "Set leverage" (``lever``, ``mgnMode``, ``instId``,
``posSide``) and "Withdrawal" (``ccy``, ``amt``, ``dest`` 3 internal / 4
on-chain, ``toAddr``, ``chain``; answer ``wdId``, ``clientId``, ``chain``), as
reproduced in ccxt's okx comments and the python-okx SDK.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from itertools import count
from typing import Any

from keyproxy.emulator.okx_auth import OkxError
from keyproxy.emulator.okx_data import CCYS, CHAINS, CURRENCIES, INSTRUMENTS, USD_PRICE, fmt
from keyproxy.emulator.okx_orders import decimal, empty, instrument, text
from keyproxy.emulator.okx_state import Account, OrderRejected

READ, TRADE, WITHDRAW = "read_only", "trade", "withdraw"
DEFAULT_PERMISSIONS: dict[str, Any] = {READ: True, TRADE: True, WITHDRAW: False, "demo": False}


@dataclass
class Call:
    params: Any  # dict, or a list for batch endpoints
    account: Account | None
    now: int  # ms

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account

    @property
    def query(self) -> dict[str, Any]:
        return self.params if isinstance(self.params, dict) else {}


class AccountHandlers:
    """Handlers of the account / funding endpoints (mixed into ``OkxEmulator``)."""

    _ids: count[int]

    def currencies(self, call: Call) -> list[dict[str, Any]]:
        wanted = [c for c in text(call.query, "ccy").split(",") if c]
        return [dict(c) for c in CURRENCIES if not wanted or c["ccy"] in wanted]

    def balance(self, call: Call) -> list[dict[str, Any]]:
        wanted = [c for c in text(call.query, "ccy").split(",") if c] or None
        acct = call.acct
        details = [acct.detail(c, call.now) for c in acct.currencies(wanted)]
        total = sum((acct.cash.get(c, Decimal(0)) * USD_PRICE.get(c, Decimal(0))
                     for c in acct.currencies(wanted)), Decimal(0))
        return [{"adjEq": "", "availEq": "", "borrowFroz": "", "details": details, "imr": "",
                 "isoEq": "0", "mgnRatio": "", "mmr": "", "notionalUsd": "", "ordFroz": "",
                 "totalEq": fmt(total), "uTime": str(acct.u_time or call.now), "upl": ""}]

    def asset_balances(self, call: Call) -> list[dict[str, str]]:
        wanted = [c for c in text(call.query, "ccy").split(",") if c] or None
        acct = call.acct
        return [{"availBal": fmt(acct.available(c)), "bal": fmt(acct.cash.get(c, Decimal(0))),
                 "ccy": c, "frozenBal": fmt(acct.frozen.get(c, Decimal(0)))}
                for c in acct.currencies(wanted)]

    def config(self, call: Call) -> list[dict[str, Any]]:
        key = call.acct.key
        perms = {**DEFAULT_PERMISSIONS, **key.permissions}
        uid = str(int(uuid.UUID(key.api_key).int % 10**17)) if _is_uuid(key.api_key) else "1"
        return [{
            "acctLv": "2", "acctStpMode": "cancel_maker", "autoLoan": False,
            "ctIsoMode": "automatic", "enableSpotBorrow": False, "feeType": "0",
            "greeksType": "PA", "ip": _ip_list(perms.get("ip")), "kycLv": "2",
            "label": str(perms.get("label", "emulated")), "level": "Lv1", "levelTmp": "",
            "liquidationGear": "-1", "mainUid": uid, "mgnIsoMode": "automatic", "opAuth": "0",
            "perm": ",".join(p for p in (READ, WITHDRAW, TRADE) if perms.get(p)),
            "posMode": "net_mode", "roleType": "0", "settleCcy": "USDT",
            "settleCcyList": ["USDT", "USDC"], "spotBorrowAutoRepay": False,
            "spotOffsetType": "", "spotRoleType": "0", "spotTraderInsts": [],
            "traderInsts": [], "type": "0", "uid": uid,
        }]

    def positions(self, call: Call) -> list[dict[str, Any]]:
        acct = call.acct
        out = []
        for inst_id, pos in acct.positions.items():
            i = INSTRUMENTS[inst_id]
            if text(call.query, "instId") not in ("", inst_id) or pos == 0:
                continue
            out.append({"instType": i.inst_type, "instId": inst_id, "mgnMode": "cross",
                        "posSide": "net", "pos": fmt(pos), "avgPx": fmt(i.last),
                        "markPx": fmt(i.last), "lever": acct.lever(i), "ccy": i.settle,
                        "upl": "0", "uTime": str(call.now), "cTime": str(call.now)})
        return out

    def set_leverage(self, call: Call) -> list[dict[str, Any]]:
        q = call.query
        lever = decimal(q, "lever")
        mode = text(q, "mgnMode")
        if not mode:
            raise empty("mgnMode")
        if mode not in ("cross", "isolated"):
            raise OkxError(400, "51000", "Parameter mgnMode error")
        if not text(q, "instId"):
            raise OkxError(400, "50015", "Either parameter instId or ccy is required.")
        inst = instrument(q)
        if lever < 1 or lever != lever.to_integral_value():
            raise OkxError(400, "51000", "Parameter lever error")
        if lever > Decimal(inst.lever or "10"):
            raise OrderRejected(
                "59102", "Leverage exceeds the maximum leverage. Please adjust the leverage.")
        call.acct.leverage[inst.inst_id] = fmt(lever)
        return [{"lever": fmt(lever), "mgnMode": mode, "instId": inst.inst_id,
                 "posSide": text(q, "posSide")}]

    def withdrawal(self, call: Call) -> list[dict[str, Any]]:
        q = call.query
        ccy = text(q, "ccy")
        if not ccy:
            raise empty("ccy")
        if ccy not in CCYS:
            raise OkxError(400, "51000", "Parameter ccy error")
        amount = decimal(q, "amt")
        dest, to_addr, chain = text(q, "dest"), text(q, "toAddr"), text(q, "chain")
        if dest not in ("3", "4"):
            raise OkxError(400, "51000", "Parameter dest error")
        if not to_addr:
            raise empty("toAddr")
        if chain and (chain not in CHAINS or CHAINS[chain]["ccy"] != ccy):
            raise OkxError(400, "51000", "Parameter chain error")
        chain = chain or next(c["chain"] for c in CURRENCIES if c["ccy"] == ccy)
        wd_id = str(next(self._ids) % 10**9)
        record = {"wdId": wd_id, "ccy": ccy, "amt": fmt(amount), "chain": chain, "dest": dest,
                  "toAddr": to_addr, "ts": call.now}
        call.acct.withdraw(ccy, amount, record, call.now)
        return [{"amt": fmt(amount), "wdId": wd_id, "ccy": ccy,
                 "clientId": text(q, "clientId"), "chain": chain}]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _ip_list(raw: Any) -> str:
    """``ip`` of the key (accounts file: a string or a list), comma-separated as OKX shows it."""
    if isinstance(raw, str):
        return raw
    return ",".join(str(i) for i in raw) if isinstance(raw, list) else ""
