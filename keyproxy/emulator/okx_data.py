"""Static market data for the OKX emulator.

Instruments follow OKX v5 "Get instruments" (``GET /api/v5/public/instruments``)
fields as reproduced in ccxt's ``okx.parse_market`` comments: ``instType``,
``instId``, ``uly``, ``instFamily``, ``baseCcy``, ``quoteCcy``, ``settleCcy``,
``ctVal``, ``ctMult``, ``ctValCcy``, ``ctType`` (linear/inverse), ``optType``,
``stk``, ``expTime``, ``lever``, ``tickSz``, ``lotSz``, ``minSz``, ``state``.
Currencies follow "Get currencies" (``GET /api/v5/asset/currencies``): one
entry per chain with ``ccy``, ``chain``, ``canDep``, ``canWd``, ``minWd``,
``maxWd``, ``wdTickSz``, ``fee``... Ids follow OKX's formats: spot
``BTC-USDT``, swap ``BTC-USDT-SWAP``, futures ``BTC-USD-YYMMDD``, options
``BTC-USD-YYMMDD-STRIKE-C``. Every instrument has a fixed last price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

EXPIRY = datetime(2030, 12, 27, 8, 0, tzinfo=UTC)  # far enough to stay "live"
EXPIRY_MS = str(int(EXPIRY.timestamp() * 1000))
EXP = EXPIRY.strftime("%y%m%d")
LIST_TIME = "1606468572000"
USD_PRICE = {"BTC": Decimal(60000), "ETH": Decimal(3000), "USDT": Decimal(1), "USDC": Decimal(1)}


@dataclass(frozen=True)
class Instrument:
    """Trading rules the order handlers enforce for one instrument."""

    inst_type: str  # SPOT | SWAP | FUTURES | OPTION
    inst_id: str
    base: str
    quote: str
    settle: str = ""
    tick: Decimal = Decimal("0.1")
    lot: Decimal = Decimal("0.00000001")
    min_sz: Decimal = Decimal("0.00001")
    last: Decimal = Decimal(0)
    ct_val: str = ""
    ct_val_ccy: str = ""
    ct_type: str = ""
    lever: str = ""
    opt_type: str = ""
    strike: str = ""

    @property
    def family(self) -> str:
        return f"{self.base}-{self.quote}"

    @property
    def spot(self) -> bool:
        return self.inst_type == "SPOT"

    def doc(self) -> dict[str, Any]:
        spot = self.spot
        return {
            "alias": "quarter" if self.inst_type == "FUTURES" else "",
            "baseCcy": self.base if spot else "",
            "category": "1",
            "ctMult": "" if spot else "1",
            "ctType": self.ct_type,
            "ctVal": self.ct_val,
            "ctValCcy": self.ct_val_ccy,
            "expTime": EXPIRY_MS if self.inst_type in ("FUTURES", "OPTION") else "",
            "instFamily": "" if spot else self.family,
            "instId": self.inst_id,
            "instIdCode": INST_ID_CODES[self.inst_id],
            "instType": self.inst_type,
            "lever": self.lever,
            "listTime": LIST_TIME,
            "lotSz": str(self.lot),
            "maxIcebergSz": "9999999999",
            "maxLmtAmt": "20000000",
            "maxLmtSz": "9999999999",
            "maxMktAmt": "1000000" if spot else "",
            "maxMktSz": "1000000" if spot else "10000",
            "maxStopSz": "1000000" if spot else "10000",
            "maxTriggerSz": "9999999999",
            "maxTwapSz": "9999999999",
            "minSz": str(self.min_sz),
            "optType": self.opt_type,
            "quoteCcy": self.quote if spot else "",
            "ruleType": "normal",
            "settleCcy": self.settle,
            "state": "live",
            "stk": self.strike,
            "tickSz": str(self.tick),
            "uly": "" if spot else self.family,
        }


def _d(text: str) -> Decimal:
    return Decimal(text)


def _contract(kind: str, inst_id: str, base: str, quote: str, settle: str, last: str,
              ct_val: str, ct_val_ccy: str) -> Instrument:
    """A swap or future: linear (settled in the quote) lots of 0.01, inverse lots of 1."""
    linear = settle == quote
    return Instrument(kind, inst_id, base, quote, settle, tick=_d("0.1"),
                      lot=_d("0.01" if linear else "1"), min_sz=_d("0.01" if linear else "1"),
                      last=_d(last), ct_val=ct_val, ct_val_ccy=ct_val_ccy,
                      ct_type="linear" if linear else "inverse", lever="100")


def _instruments() -> list[Instrument]:
    out = [
        Instrument("SPOT", "BTC-USDT", "BTC", "USDT", tick=_d("0.1"), lot=_d("0.00000001"),
                   min_sz=_d("0.00001"), last=_d("60000")),
        Instrument("SPOT", "ETH-USDT", "ETH", "USDT", tick=_d("0.01"), lot=_d("0.000001"),
                   min_sz=_d("0.0001"), last=_d("3000")),
        Instrument("SPOT", "ETH-BTC", "ETH", "BTC", tick=_d("0.00001"), lot=_d("0.000001"),
                   min_sz=_d("0.001"), last=_d("0.05")),
    ]
    for kind, suffix in (("SWAP", "SWAP"), ("FUTURES", EXP)):
        out += [
            _contract(kind, f"BTC-USDT-{suffix}", "BTC", "USDT", "USDT", "60000", "0.01", "BTC"),
            _contract(kind, f"BTC-USD-{suffix}", "BTC", "USD", "BTC", "60000", "100", "USD"),
        ]
    out.append(_contract("SWAP", "ETH-USDT-SWAP", "ETH", "USDT", "USDT", "3000", "0.1", "ETH"))
    for base, strike, tick in (("BTC", "60000", "0.0005"), ("ETH", "3000", "0.0005")):
        for opt in ("C", "P"):
            out.append(Instrument(
                "OPTION", f"{base}-USD-{EXP}-{strike}-{opt}", base, "USD", base,
                tick=_d(tick), lot=_d("1"), min_sz=_d("1"), last=_d("0.05"),
                ct_val="0.01" if base == "BTC" else "0.1", ct_val_ccy=base, opt_type=opt,
                strike=strike,
            ))
    return out


INSTRUMENTS: dict[str, Instrument] = {i.inst_id: i for i in _instruments()}
INST_ID_CODES: dict[str, int] = {inst_id: 10_000 + n for n, inst_id in enumerate(INSTRUMENTS)}
INST_BY_CODE: dict[int, str] = {code: inst_id for inst_id, code in INST_ID_CODES.items()}
INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")


def _chain(ccy: str, name: str, chain: str, fee: str, min_wd: str, tick: str,
           main: bool) -> dict[str, Any]:
    return {
        "burningFeeRate": "", "canDep": True, "canInternal": True, "canWd": True,
        "ccy": ccy, "chain": chain, "ctAddr": "", "depEstOpenTime": "", "depQuotaFixed": "",
        "depQuoteDailyLayer2": "", "fee": fee, "logoLink": "", "mainNet": main,
        "maxFee": fee, "maxFeeForCtAddr": "", "maxWd": "1000000", "minDep": "0.00005",
        "minDepArrivalConfirm": "1", "minFee": fee, "minFeeForCtAddr": "", "minInternal": "0.0001",
        "minWd": min_wd, "minWdUnlockConfirm": "2", "name": name, "needTag": False,
        "usedDepQuotaFixed": "", "usedWdQuota": "0", "wdEstOpenTime": "", "wdQuota": "10000000",
        "wdTickSz": tick,
    }


CURRENCIES: list[dict[str, Any]] = [
    _chain("BTC", "Bitcoin", "BTC-Bitcoin", "0.0002", "0.0005", "8", True),
    _chain("ETH", "Ethereum", "ETH-ERC20", "0.0012", "0.001", "8", True),
    _chain("USDT", "Tether", "USDT-ERC20", "5", "10", "6", False),
    _chain("USDT", "Tether", "USDT-TRC20", "1.5", "10", "6", False),
    _chain("USDC", "USD Coin", "USDC-ERC20", "5", "10", "6", False),
]
CCYS = {c["ccy"] for c in CURRENCIES}
CHAINS = {c["chain"]: c for c in CURRENCIES}


def fmt(value: Decimal) -> str:
    """OKX prints amounts as plain decimal strings without exponent or trailing zeros."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0") else text
