"""`keyproxy demo`: the whole product in one run, against the built-in exchange emulator.

Starts real processes on 127.0.0.1 in a throw-away directory (emulator,
daemon, CLI calls), runs an unmodified ccxt Binance bot through keyproxy and
shows, step by step, what the bot sent, what the exchange received, and
what keyproxy refused. Nothing touches the operator's own vault or keyring.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any, TextIO

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at


def _mask(value: str) -> str:
    return value[:6] + "…" if len(value) > 6 else "…"


def run_demo(out: TextIO) -> int:
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    try:
        import ccxt
    except ImportError:
        say("keyproxy demo needs ccxt (pip install 'keyproxy[test]' or run ./scripts/demo)")
        return 1
    with tempfile.TemporaryDirectory(prefix="keyproxy-demo-") as tmp, DevStack(Path(tmp)) as stack:
        real = new_real_key("hmac")
        say(f"1. The exchange (built-in Binance emulator) issues a real API key {_mask(real.credentials['api_key'])}")
        say(f"   emulator: {stack.start_emulator([real])}")
        stack.init()
        stack.add_account("main", real)
        say("2. `keyproxy init` + `keyproxy key add main --exchange binance` (secret read from stdin):")
        for line in stack.cli("key", "list").stdout.splitlines():
            say("   " + line)
        vault_dir = stack.root / "state"
        leaked = [p.name for p in vault_dir.iterdir() if p.is_file()
                  and any(v.encode() in p.read_bytes() for v in real.credentials.values())]
        say("   raw vault files searched for the key and secret: "
            f"{'FOUND in ' + str(leaked) if leaked else 'not found'} (each field sealed with AES-256-GCM)")
        say(f"3. `keyproxy serve`: {stack.start_daemon()}")
        bot = stack.add_bot("demo-bot", "main", "read,trade")
        say("4. `keyproxy bot add demo-bot --account main --scope read,trade` prints the bot's credential once:")
        say(f"   base_url={bot['base_url']} api_key={_mask(bot['api_key'])} secret={_mask(bot['secret'])} (virtual)")
        ex = point_ccxt_at(ccxt.binance({"apiKey": bot["api_key"], "secret": bot["secret"]}), bot["base_url"])
        say("5. An unmodified ccxt.binance() bot with only its URLs changed:")
        ex.load_markets()
        say(f"   load_markets: {len(ex.markets)} markets")
        say(f"   fetch_balance: USDT free {ex.fetch_balance()['USDT']['free']}")
        order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
        say(f"   create_order: id {order['id']} {order['status']}")
        say(f"   fetch_open_orders: {[o['id'] for o in ex.fetch_open_orders('BTC/USDT')]}")
        say(f"   cancel_order: {ex.cancel_order(order['id'], 'BTC/USDT')['status']}")
        journal = stack.journal()
        signed = [e for e in journal if e.get("signature_verified") is not None]
        said_virtual = any(bot["api_key"] in json.dumps(e) for e in journal)
        say(f"6. The exchange received {len(journal)} requests; {len(signed)} signed, "
            f"{sum(1 for e in signed if e['signature_verified'])} verified with the REAL key; "
            f"virtual key seen upstream: {said_virtual}")
        said_virtual = _websocket_step(say, stack, bot) or said_virtual
        _refusal(say, "7. The bot tries to withdraw (it has no withdraw scope):", lambda: ex.withdraw(
            "USDT", 10, "0x0000000000000000000000000000000000000001", params={"network": "BSC"}))
        arrived = [e for e in stack.journal() if "withdraw" in e["path"]]
        say(f"   withdrawal requests that reached the exchange: {len(arrived)}")
        for incident in json.loads(stack.cli("incidents", "list", "--json").stdout):
            say(f"   anomaly rule {incident['rule']} acted: {', '.join(incident['actions'])} "
                f"(incident {incident['id']}: {incident['reason']})")
        stack.cli("bot", "restore", "demo-bot")
        say("   `keyproxy bot restore demo-bot` (an operator decides; recorded in the audit trail)")
        wrong = point_ccxt_at(ccxt.binance({"apiKey": bot["api_key"], "secret": "guessed-secret"}), bot["base_url"])
        wrong.options["fetchCurrencies"] = False
        _refusal(say, "8. Someone with the bot's key id but not its secret:", wrong.fetch_balance)
        stack.cli("bot", "revoke", "demo-bot")
        _refusal(say, "9. `keyproxy bot revoke demo-bot` while the daemon runs; the bot's next call:",
                 ex.fetch_balance)
        log = stack.daemon_log()
        secrets_in_log = [n for n, v in (("real secret", real.credentials["secret"]), ("virtual secret", bot["secret"]))
                          if v in log]
        say(f"10. The daemon logged one JSON line per request ({log.count(chr(10))} lines); secrets in it: "
            f"{', '.join(secrets_in_log) or 'none'}")
        stack.close()
        return 1 if leaked or said_virtual or arrived or secrets_in_log else 0


def _websocket_step(say: Any, stack: DevStack, bot: dict[str, str]) -> bool:
    """ccxt.pro over Binance's WebSocket API through keyproxy; True if the exchange saw the virtual key."""
    try:
        import ccxt.pro as ccxtpro
    except ImportError:
        say("6b. (ccxt.pro is not installed: the WebSocket step is skipped)")
        return False

    async def run() -> tuple[dict[str, Any], list[str]]:
        ex = point_ccxt_at(ccxtpro.binance({"apiKey": bot["api_key"], "secret": bot["secret"],
                                            "options": {"defaultType": "spot"}}), bot["base_url"])
        try:
            await ex.load_markets()
            watcher = asyncio.create_task(ex.watch_orders("BTC/USDT"))
            await asyncio.sleep(1.0)  # the user data stream subscription is up
            order = await ex.create_order_ws("BTC/USDT", "limit", "buy", 0.001, 20000)
            seen = await asyncio.wait_for(watcher, 15)
            statuses = [o["status"] for o in seen if o["id"] == order["id"]]  # before the cancel updates them
            await ex.cancel_order_ws(order["id"], "BTC/USDT")
            return order, statuses
        finally:
            await ex.close()

    start = len(stack.journal())
    say("6b. The same bot with ccxt.pro over Binance's WebSocket API (ws://.../main/ws-api/v3):")
    order, statuses = asyncio.run(run())
    say(f"   create_order_ws: id {order['id']}; watch_orders event: {statuses}")
    frames = [e for e in stack.journal()[start:] if e.get("transport") == "ws"]
    said_virtual = any(bot["api_key"] in json.dumps(e) for e in frames)
    say(f"   frames that reached the exchange: {len(frames)}, "
        f"{sum(1 for e in frames if e.get('signature_verified'))} verified with the REAL key "
        f"(each checked and re-signed by keyproxy); virtual key seen upstream: {said_virtual}")
    return said_virtual


def _refusal(say: Any, title: str, call: Any) -> None:
    say(title)
    try:
        call()
        say("   NOT refused (this is a bug)")
    except Exception as e:  # ccxt raises its own exception types
        text = str(e)
        try:
            doc = json.loads(text[text.index("{"):])
            say(f"   refused: {type(e).__name__}: {doc['error']} - {doc['message']}")
        except ValueError:
            say(f"   refused: {type(e).__name__}: {text[:160]}")
