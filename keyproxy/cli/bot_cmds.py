"""`keyproxy bot ...`: bot credentials, their policies and client configurations."""

from __future__ import annotations

import time
from typing import Any

from keyproxy.durations import parse_duration
from keyproxy.errors import StateError, UsageError
from keyproxy.vault.records import BOT_MODES
from keyproxy.cli.context import Commands, Context, assignments, day, show, table


def cmd_bot_add(ctx: Context) -> int:
    a = ctx.args
    from keyproxy.vault.records import check_name, parse_cidrs, parse_scopes

    check_name("bot", a.bot)
    check_name("account", a.account)
    parse_scopes(a.scope)
    parse_cidrs(a.allow_ip or [])
    if a.client:
        _known_client(a.client)
    with ctx.controls() as controls:
        shown = controls.add_bot(name=a.bot, account=a.account, scopes=a.scope, allow_ips=a.allow_ip or None,
                                 mode=a.mode, key_type=a.key_type, policy=assignments(a.set or []),
                                 ttl_seconds=parse_duration(a.ttl) if a.ttl else None)
        exchange = controls.bot_where(name=a.bot)["exchange"] if a.client else ""
    if not a.client:
        ctx.out_json(shown)  # the only time the bot's credential is shown
        return 0
    from keyproxy.client_configs import ClientConfigError, snippet

    try:
        ctx.out(snippet(a.client, exchange, shown))  # the only time: the snippet carries the secret
    except ClientConfigError as e:  # the bot exists now: its credential must not be lost
        ctx.out_json(shown)
        raise StateError(f"bot {a.bot} was added (its credential is above), but no --client snippet: {e}") from None
    return 0


def _known_client(client: str) -> None:
    from keyproxy.client_configs import CLIENTS

    if client not in CLIENTS:
        raise UsageError(f"unknown --client {client!r}; known: {', '.join(CLIENTS)}")


def cmd_bot_config(ctx: Context) -> int:
    """A client's configuration for an existing bot, again: everything but the secret."""
    from keyproxy.client_configs import ClientConfigError, shown_again, snippet

    _known_client(ctx.args.client)
    where = ctx.call("bot_where", name=ctx.args.bot)
    try:
        ctx.out(snippet(ctx.args.client, where["exchange"], shown_again(where)))
    except ClientConfigError as e:
        raise UsageError(str(e)) from None
    return 0


def cmd_bot_list(ctx: Context) -> int:
    bots = ctx.call("list_bots")
    if ctx.args.json:
        ctx.out_json(bots)
    elif bots:
        rows = [[b["name"], b["account"], b["mode"], ",".join(b["scopes"]), b["status"], day(b["created_at"]),
                 (b["key_id"] or "")[:12]] for b in bots]
        ctx.out(table(rows, ["BOT", "ACCOUNT", "MODE", "SCOPES", "STATUS", "CREATED", "KEY"]))
    else:
        ctx.out("no bots; add one with `keyproxy bot add BOT --account ACCOUNT --scope read,trade`")
    return 0


def cmd_bot_show(ctx: Context) -> int:
    with ctx.controls() as controls:
        show(ctx, controls.show_bot(name=ctx.args.bot))
    return 0


def cmd_bot_set(ctx: Context) -> int:
    changes = assignments(ctx.args.assignments)
    info = ctx.call("set_bot", name=ctx.args.bot, changes=changes)
    ctx.out(f"bot {info['name']}: " + ", ".join(f"{k}={info['policy'][k]}" for k in changes))
    return 0


def cmd_bot_rotate(ctx: Context) -> int:
    grace = parse_duration(ctx.args.grace) if ctx.args.grace != "0" else 0
    shown = ctx.call("rotate_bot", name=ctx.args.bot, grace_seconds=grace)
    ctx.out_json(shown)  # the only time the new credential is shown
    return 0


def cmd_bot_renew(ctx: Context) -> int:
    info = ctx.call("renew_bot", name=ctx.args.bot, ttl_seconds=parse_duration(ctx.args.ttl) if ctx.args.ttl else None)
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["expires_at"])) if info["expires_at"] else "never"
    ctx.out(f"bot {info['name']}: credential expires {until}")
    return 0


def cmd_bot_restore(ctx: Context) -> int:
    info = ctx.call("restore_bot", name=ctx.args.bot)
    ctx.out(f"bot {info['name']} is {info['status']}")
    return 0


def cmd_bot_revoke(ctx: Context) -> int:
    info = ctx.call("revoke_bot", name=ctx.args.bot)
    ctx.out(f"revoked bot {info['name']}; its credential is refused from now on")
    return 0


def register(sub: Any, cmd: Commands) -> None:
    from keyproxy.client_configs import CLIENTS

    bot = cmd.group(sub, "bot", "bot credentials", "bot_command")
    sp = cmd(bot, "add", cmd_bot_add, "create a bot credential; printed once as JSON")
    sp.add_argument("bot")
    sp.add_argument("--account", required=True)
    sp.add_argument("--scope", required=True, help="comma list of read, trade, withdraw, transfer")
    sp.add_argument("--allow-ip", action="append", metavar="CIDR",
                    help="repeatable; replaces the loopback-only default (add 127.0.0.1/32 to keep it)")
    sp.add_argument("--mode", choices=BOT_MODES, default="dropin",
                    help="dropin: the bot's SDK signs with a virtual key; token: X-Keyproxy-Token header")
    sp.add_argument("--key-type", help="virtual key type for drop-in bots (default: the exchange's usual one; "
                                       "binance: hmac, ed25519, rsa; coinbase: ec, ed25519; bybit: hmac, rsa)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="a policy limit (see docs/policy.md)")
    sp.add_argument("--ttl", help="the credential expires after this long (e.g. 8h); `bot renew` extends it")
    sp.add_argument("--client", metavar="CLIENT", help="print the credential as CLIENT's configuration instead "
                    f"of JSON: {', '.join(CLIENTS)}")
    sp = cmd(bot, "config", cmd_bot_config, "print a client's configuration for a bot again (without its secret)")
    sp.add_argument("bot")
    sp.add_argument("--client", required=True, metavar="CLIENT", help=", ".join(CLIENTS))
    sp = cmd(bot, "list", cmd_bot_list, "list bots (never their secrets)")
    sp.add_argument("--json", action="store_true")
    sp = cmd(bot, "show", cmd_bot_show, "show one bot")
    sp.add_argument("bot")
    sp.add_argument("--json", action="store_true")
    sp = cmd(bot, "revoke", cmd_bot_revoke, "revoke a bot's credential (takes effect on its next request)")
    sp.add_argument("bot")
    sp = cmd(bot, "rotate", cmd_bot_rotate, "issue a new virtual credential; the old one works for --grace")
    sp.add_argument("bot")
    sp.add_argument("--grace", default="1h", help="how long the old credential stays valid (default 1h; 0: none)")
    sp = cmd(bot, "renew", cmd_bot_renew, "extend a bot credential's expiry (--ttl), or lift it (no --ttl)")
    sp.add_argument("bot")
    sp.add_argument("--ttl")
    sp = cmd(bot, "restore", cmd_bot_restore, "lift a bot's suspension")
    sp.add_argument("bot")
    sp = cmd(bot, "set", cmd_bot_set, "change a bot's policy, live (e.g. max_order_notional=500 symbols=BTCUSDT)")
    sp.add_argument("bot")
    sp.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
