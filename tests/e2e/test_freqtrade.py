"""freqtrade (2026.9, a whole bot framework, unmodified) trading live through keyproxy (issue 18, item 1).

`freqtrade trade` runs in live mode (`dry_run: false`) on Binance spot against the emulator, configured only
by the block `keyproxy bot add ... --client freqtrade` prints: it loads markets, syncs the wallet, fetches
candles, places a market buy that fills, sees it filled, sells and closes the trade. keyproxy's audit trail
shows every one of its requests allowed and signed, the emulator never sees the virtual key. A second bot
limited to another symbol gets keyproxy's `symbol_denied`, which freqtrade logs, and nothing reaches the
exchange. freqtrade lives in `.venv-freqtrade` (scripts/_freqtrade.sh installs it once).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key

ROOT = Path(__file__).resolve().parents[2]
FREQTRADE = Path(os.environ.get("KEYPROXY_FREQTRADE", ROOT / ".venv-freqtrade" / "bin" / "freqtrade"))
STRATEGIES = Path(__file__).resolve().parent / "freqtrade"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    if not FREQTRADE.exists():
        pytest.fail(f"freqtrade not found at {FREQTRADE}: ./scripts/test installs it (scripts/_freqtrade.sh)")
    stack = DevStack(tmp_path_factory.mktemp("freqtrade"))
    try:
        stack.serve_accounts({"bn": new_real_key("hmac")})
        yield stack
    finally:
        stack.close()


def config(dev: DevStack, bot: str, *settings: str, account: str = "bn", **overrides: Any) -> dict[str, Any]:
    """A freqtrade configuration for a bot added with `settings` (`key=value` policy), from the exchange block
    `keyproxy bot add --client freqtrade` prints; `overrides` replace top-level keys."""
    extra = [x for s in settings for x in ("--set", s)]
    block = json.loads(dev.cli("bot", "add", bot, "--account", account, "--scope", "read,trade", *extra,
                               "--client", "freqtrade").stdout)["exchange"]
    block.update({"pair_whitelist": ["BTC/USDT"], "pair_blacklist": []})
    return {"max_open_trades": 1, "stake_currency": "USDT", "stake_amount": 100, "dry_run": False,
            "trading_mode": "spot", "timeframe": "1m", "exchange": block,
            "pairlists": [{"method": "StaticPairList"}],
            "entry_pricing": {"price_side": "other", "use_order_book": False, "price_last_balance": 0.0},
            "exit_pricing": {"price_side": "other", "use_order_book": False},
            "order_types": {"entry": "market", "exit": "market", "stoploss": "market", "stoploss_on_exchange": False},
            "internals": {"process_throttle_secs": 1, "heartbeat_interval": 0},
            "bot_name": bot, "initial_state": "running",
            "telegram": {"enabled": False, "token": "", "chat_id": ""}, **overrides}


def run_freqtrade(dev: DevStack, bot: str, doc: dict[str, Any], done: Any, limit: float = 90) -> tuple[str, float]:
    """`freqtrade trade` until `done(workdir, log)` holds (or `limit` s); its log and how long it ran."""
    work = dev.root / f"ft-{bot}"
    (work / "user_data").mkdir(parents=True)
    (work / "config.json").write_text(json.dumps(doc))
    log = work / "freqtrade.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPROXY")}
    env["COLUMNS"] = "2000"  # its rich log handler wraps lines at the width it is given (pytest-xdist's workers: 80)
    with log.open("w") as out:
        proc = subprocess.Popen([str(FREQTRADE), "trade", "--config", str(work / "config.json"),
                                 "--strategy", "KeyproxyProbe", "--strategy-path", str(STRATEGIES),
                                 "--userdir", str(work / "user_data"), "--db-url", f"sqlite:///{work}/trades.sqlite"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        started = time.monotonic()
        try:
            while time.monotonic() - started < limit and proc.poll() is None and not done(work, log.read_text()):
                time.sleep(0.5)
        finally:
            elapsed = time.monotonic() - started
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    return log.read_text(), elapsed


def closed_trades(work: Path) -> int:
    db = work / "trades.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM trades WHERE is_open = 0").fetchone()[0])
    except sqlite3.Error:
        return 0


def audit_of(dev: DevStack, bot: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for f in sorted(dev.audit_dir.glob("audit-*.jsonl")) for x in f.read_text().splitlines()]
    return [e for e in lines if e.get("bot") == bot and e.get("event", "").startswith("request.")]


def test_freqtrade_trades_live_through_keyproxy_with_configuration_only(dev: DevStack) -> None:
    doc = config(dev, "ft")
    virtual_key = doc["exchange"]["key"]
    start = len(dev.journal())
    log, elapsed = run_freqtrade(dev, "ft", doc, lambda work, _log: closed_trades(work) >= 1)
    assert closed_trades(dev.root / "ft-ft") >= 1, log[-4000:]
    assert "Exit for BTC/USDT detected. Reason: roi" in log, log[-3000:]
    assert "MARKET_BUY has been fulfilled" in log and "MARKET_SELL has been fulfilled" in log
    # up to the closed trade: what the test's SIGINT interrupts after it (a sqlalchemy transaction in the loop, its
    # cleanup's PendingRollbackError, logged before "SIGINT received") is freqtrade's own shutdown
    trading = log.split("as closed as the trade is fulfilled", 1)[0]
    assert "Traceback" not in trading and " - ERROR - " not in trading, trading[-3000:]

    seen = dev.journal()[start:]
    orders = [e for e in seen if e["method"] == "POST" and e["path"] == "/api/v3/order"]
    assert len(orders) >= 2 and all(e["signature_verified"] for e in orders)
    assert {"/api/v3/klines", "/api/v3/account", "/api/v3/exchangeInfo"} <= {e["path"] for e in seen}
    assert virtual_key not in json.dumps(seen)  # the exchange only ever saw the real key

    events = audit_of(dev, "ft")
    decided = [e for e in events if e["event"] in ("request.done", "request.deny")]
    assert decided and all(e.get("decision") == "allow" for e in decided), [e for e in decided
                                                                           if e.get("decision") != "allow"][:3]
    signed = [e for e in events if e["event"] == "request.forward"]
    assert len(signed) >= len(orders)
    per_minute = len(decided) * 60 / elapsed
    print(f"\nfreqtrade: first trade closed after {elapsed:.1f} s; {len(decided)} requests through keyproxy "
          f"({per_minute:.0f} per minute), {len(orders)} orders")


def test_a_limited_freqtrade_bot_logs_keyproxys_refusal_and_nothing_reaches_the_exchange(dev: DevStack) -> None:
    doc = config(dev, "ft-limited", "symbols=ETHUSDT")
    start = len(dev.journal())
    log, _ = run_freqtrade(dev, "ft-limited", doc, lambda _work, text: "symbol_denied" in text, limit=60)
    assert "Unable to create trade for BTC/USDT" in log, log[-3000:]
    assert "symbol BTCUSDT is not in the bot's allowlist" in log  # freqtrade logs keyproxy's own words
    assert not [e for e in dev.journal()[start:] if e["method"] == "POST" and e["path"] == "/api/v3/order"]
    denied = [e for e in audit_of(dev, "ft-limited") if e["event"] == "request.deny"]
    assert denied and {e["code"] for e in denied} == {"symbol_denied"}
