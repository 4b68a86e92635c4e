"""`keyproxy init` and `keyproxy key ...`: accounts and their real keys (add, rotate, audit, versions)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from keyproxy.config import MASTER_KEY_CHOICES, Settings
from keyproxy.durations import parse_duration
from keyproxy.errors import AlreadyExists, KeyproxyError, UsageError
from keyproxy.exchanges.catalog import EXCHANGES, KEY_TYPES
from keyproxy.unlock import source_for_new
from keyproxy.vault import NewAccount, Vault
from keyproxy.vault.records import check_account_meta, validate_new_account
from keyproxy.cli.operations import check_key
from keyproxy.cli.context import Commands, Context, confirm, day, show, table
from keyproxy.cli.credentials import check_base_url, read_credentials


def cmd_init(ctx: Context) -> int:
    from keyproxy.vault.store import ensure_private_dir

    choice = ctx.args.master_key or ctx.settings.vault.master_key
    path = ctx.settings.vault.path
    if path.exists():
        raise AlreadyExists(f"a vault already exists at {path}; refusing to overwrite it")
    ensure_private_dir(path.parent)
    source = source_for_new(choice, ctx.settings, ctx.inputs)
    with Vault.create(path, source) as vault:
        ctx.out(f"created vault {path} (master key: {vault.status()['master_source']})")
    return 0


def _account_row(a: dict[str, Any], settings: Settings) -> list[str]:
    from types import SimpleNamespace

    from keyproxy.metrics import rotation_due

    now = time.time()
    due_at, due = rotation_due(SimpleNamespace(**a), now, settings.rotation.rotate_every, settings.rotation.warn_before)
    due_text = "-" if due_at is None else day(due_at) + (" OVERDUE" if now >= due_at else " due" if due else "")
    return [a["name"], a["exchange"], a["key_type"], a["status"], str(a["version"]), a["fingerprint"],
            f"{int((now - a['rotated_at']) // 86400)}d", due_text]


def cmd_key_add(ctx: Context) -> int:
    a = ctx.args
    key_type = a.key_type or EXCHANGES.get(a.exchange, EXCHANGES["binance"]).key_types[0]
    base_url = check_base_url(a.base_url, a.insecure_upstream) if a.base_url else None
    if a.insecure_upstream and not base_url:
        raise UsageError("--insecure-upstream only goes with a loopback --base-url")
    rotate_every = parse_duration(a.rotate_every) if a.rotate_every else None
    check_account_meta(a.account, a.exchange, key_type)  # before reading secrets or unlocking
    creds = read_credentials(ctx, key_type, a.exchange)
    acct = NewAccount(a.account, a.exchange, key_type, creds, base_url, a.insecure_upstream, rotate_every,
                      a.environment)
    validate_new_account(acct)
    if key_type == "eth" and creds.private_key is not None:
        from keyproxy.exchanges import _eth

        if _eth.address_of(_eth.parse_private_key(creds.private_key.reveal())) == creds.api_key.reveal_str().lower():
            print("warning: this is the account's master key, which can withdraw; an API wallet (agent) key "
                  "approved for the account is the safer choice (an agent cannot withdraw)", file=sys.stderr)
    with ctx.controls() as controls:
        if a.verify:  # the check `key rotate` makes, before anything is written
            meta = {"name": acct.name, "exchange": acct.exchange, "key_type": key_type, "base_url": base_url,
                    "insecure_upstream": a.insecure_upstream, "environment": a.environment}
            ok, answer = asyncio.run(check_key(meta, creds, None if controls.running else controls.state))
            if not ok:
                raise KeyproxyError(f"the exchange did not accept the key ({answer}); nothing was added")
        info = controls.add_account(acct)
    ctx.out(f"added account {info['name']} ({info['exchange']}, {info['key_type']}, "
            f"fingerprint {info['fingerprint']})")
    return 0


def cmd_key_rotate(ctx: Context) -> int:
    """Read the new credential like `key add`, check it at the exchange, then switch."""
    with ctx.controls() as controls:
        info = controls.show_account(name=ctx.args.account)
        creds = read_credentials(ctx, info["key_type"], info["exchange"])
        out = controls.rotate_key_checked(info["name"], creds)
    ctx.out(f"rotated account {out['name']} to key version {out['version']} (fingerprint {out['fingerprint']}); "
            f"the previous version stays for `keyproxy key rollback {out['name']}`")
    return 0


def cmd_key_audit(ctx: Context) -> int:
    """Ask each exchange what the real key may do; warn where it exceeds what the bots need."""
    results = ctx.call("audit_keys", ctx.args.account)
    if ctx.args.json:
        ctx.out_json(results)
    for account, r in sorted(results.items()):
        if ctx.args.json:
            break
        ctx.out(f"{account}: {'ok' if r['ok'] else 'WARN'}")
        for w in r["warnings"]:
            ctx.out(f"  - {w}")
    return 0 if all(r["ok"] for r in results.values()) else 1


def cmd_key_rollback(ctx: Context) -> int:
    info = ctx.call("rollback_key", name=ctx.args.account)
    ctx.out(f"account {info['name']} uses key version {info['version']} again")
    return 0


def cmd_key_retire(ctx: Context) -> int:
    info = ctx.call("retire_key", name=ctx.args.account)
    ctx.out(f"account {info['name']}: forgot {info['retired_versions']} previous key version(s)")
    return 0


def cmd_key_list(ctx: Context) -> int:
    accounts = ctx.call("list_accounts")
    if ctx.args.json:
        ctx.out_json(accounts)
    elif accounts:
        header = ["ACCOUNT", "EXCHANGE", "TYPE", "STATUS", "VER", "FINGERPRINT", "KEY AGE", "ROTATE BY"]
        ctx.out(table([_account_row(a, ctx.settings) for a in accounts], header))
    else:
        ctx.out("no accounts; add one with `keyproxy key add ACCOUNT --exchange EXCHANGE`")
    return 0


def cmd_key_show(ctx: Context) -> int:
    info = ctx.call("show_account", name=ctx.args.account)
    show(ctx, info)
    return 0


def cmd_key_remove(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.show_account(name=ctx.args.account)
        bots = [b["name"] for b in controls.list_bots() if b["account"] == info["name"]]
        also = f" and its bots ({', '.join(bots)})" if bots else ""
        confirm(ctx, f"Remove account {info['name']} ({info['exchange']}), all its key versions{also}?")
        controls.remove_account(name=info["name"])
    ctx.out(f"removed account {info['name']}" + (f" and bots {', '.join(bots)}" if bots else ""))
    return 0


def cmd_key_restore(ctx: Context) -> int:
    info = ctx.call("restore_key", name=ctx.args.account)
    ctx.out(f"account {info['name']} is {info['status']}")
    return 0


def register(sub: Any, cmd: Commands) -> None:
    sp = cmd(sub, "init", cmd_init, "create a new, empty vault")
    sp.add_argument("--master-key", choices=MASTER_KEY_CHOICES, help="where the master key comes from")

    key = cmd.group(sub, "key", "exchange API keys", "key_command")
    sp = cmd(key, "add", cmd_key_add, "add an account; credential JSON on stdin, or prompted")
    sp.add_argument("account")
    sp.add_argument("--exchange", required=True, help=f"one of {', '.join(sorted(EXCHANGES))}")
    sp.add_argument("--key-type", help=f"one of {', '.join(KEY_TYPES)} (default: the exchange's first)")
    sp.add_argument("--base-url", help="e.g. the exchange's testnet, or a loopback emulator")
    sp.add_argument("--insecure-upstream", action="store_true", help="allow a plain-http loopback base URL")
    sp.add_argument("--environment", help="the exchange's environment: production (default), testnet, demo")
    sp.add_argument("--rotate-every", help="rotation schedule, e.g. 30d")
    sp.add_argument("--verify", action="store_true",
                    help="first make a signed read at the exchange with the key; add it only if it works")
    sp.add_argument("--private-key-file", type=Path, metavar="PEM",
                    help="the ed25519/rsa/ec private key, read from this file (mode 0600); api_key still on stdin")
    sp = cmd(key, "list", cmd_key_list, "list accounts (never secrets)")
    sp.add_argument("--json", action="store_true")
    sp = cmd(key, "show", cmd_key_show, "show one account's metadata and fingerprint")
    sp.add_argument("account")
    sp.add_argument("--json", action="store_true")
    sp = cmd(key, "remove", cmd_key_remove, "remove an account and all its key versions")
    sp.add_argument("account")
    sp.add_argument("--yes", action="store_true", help="do not ask to confirm")

    sp = cmd(key, "rotate", cmd_key_rotate, "switch to a new key (stdin as for `key add`), checked at the exchange")
    sp.add_argument("account")
    sp.add_argument("--private-key-file", type=Path, metavar="PEM",
                    help="the new ed25519/rsa/ec private key, read from this file (mode 0600)")
    sp = cmd(key, "audit", cmd_key_audit,
             "ask each exchange what the real key may do; warn where it exceeds the bots' needs")
    sp.add_argument("account", nargs="?")
    sp.add_argument("--json", action="store_true")
    sp = cmd(key, "rollback", cmd_key_rollback, "go back to the previous key version")
    sp.add_argument("account")
    sp = cmd(key, "retire", cmd_key_retire, "forget the previous key versions")
    sp.add_argument("account")
    sp = cmd(key, "restore", cmd_key_restore, "lift a key's quarantine (refused for a key the exchange revoked)")
    sp.add_argument("account")
