"""`keyproxy halt`, `resume` (with `--cancel-orders`) and `keyproxy incidents ...`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from keyproxy.admin.controls import INCIDENTS_PAGE, MAX_INCIDENTS_PAGE
from keyproxy.errors import UsageError
from keyproxy.cli.audit_cmds import printable
from keyproxy.cli.context import Commands, Context, table


def _halt_target(args: argparse.Namespace) -> tuple[str, str]:
    chosen = [(s, t) for s, t in (("all", "*" if args.all else None), ("account", args.account), ("bot", args.bot))
              if t]
    if len(chosen) != 1:
        raise UsageError("name exactly one of --all, --account ACCOUNT, --bot BOT")
    return chosen[0]


def cmd_halt(ctx: Context) -> int:
    scope, target = _halt_target(ctx.args)
    with ctx.controls() as controls:
        if ctx.args.cancel_orders and not controls.running:
            controls.cancel_orders(scope, target, ctx.args.reason)  # refused before the halt, in one line
        controls.halt(scope=scope, target=target, reason=ctx.args.reason)
        if not ctx.args.json:
            ctx.out(f"halted {scope} {target}: only reads and cancels (and reduce-only orders) pass")
        if not ctx.args.cancel_orders:
            if ctx.args.json:
                ctx.out_json({"halted": {"scope": scope, "target": target}})
            return 0
        if not ctx.args.json:
            ctx.out("cancelling open orders at the exchanges ...")
        summaries = controls.cancel_orders(scope, target, ctx.args.reason)
    if ctx.args.json:
        ctx.out_json({"halted": {"scope": scope, "target": target}, "accounts": summaries})
    else:
        for s in summaries:
            _print_cancel_summary(ctx, s)
    clean = all(not s["failed"] and not s["left"] and not s["error"] for s in summaries)
    return 0 if clean else 1


def _print_cancel_summary(ctx: Context, s: dict[str, Any]) -> None:
    who = f" (bot {s['bot']}'s orders)" if s["bot"] else ""
    ctx.out(f"{s['account']} [{s['exchange']}]{who}: cancelled {len(s['cancelled'])}, failed {len(s['failed'])}, "
            f"left {len(s['left'])}" + (f"; ERROR: {s['error']}" if s["error"] else ""))
    for f in s["failed"]:
        ctx.out(f"  FAILED {f['symbol']} {f['order_id']}: {f['error']}")
    for o in s["left"]:
        ctx.out(f"  STILL OPEN {o['symbol']} {o['order_id']}")


def cmd_resume(ctx: Context) -> int:
    scope, target = _halt_target(ctx.args)
    with ctx.controls() as controls:
        controls.resume(scope=scope, target=target)
    ctx.out(f"resumed {scope} {target}")
    return 0


def cmd_incidents_list(ctx: Context) -> int:
    """One page, oldest first (the newest --limit by default); the line after a full page says how to go on."""
    a = ctx.args
    incidents = ctx.call("list_incidents", limit=a.limit, before=a.before, since=a.since)
    if a.json:
        ctx.out_json(incidents)
    elif incidents:
        rows = [[str(i["id"]), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(i["ts"])), printable(i["rule"]),
                 printable(i["subject"]), printable(",".join(i["actions"]))] for i in incidents]
        ctx.out(table(rows, ["ID", "TIME (UTC)", "RULE", "SUBJECT", "ACTIONS"]))
        if len(incidents) == a.limit:
            on = f"newer ones: --since {incidents[-1]['id']}" if a.since is not None else \
                f"older ones: --before {incidents[0]['id']}"
            ctx.out(f"(a page of {a.limit}; {on})")
    else:
        ctx.out("no incidents")
    return 0


def cmd_incidents_show(ctx: Context) -> int:
    incident = ctx.call("show_incident", incident_id=ctx.args.id)
    if ctx.args.json:
        ctx.out_json(incident)
        return 0
    # a reason or an evidence line can carry what a bot sent (a withdrawal address): control characters shown, not
    # sent to the terminal
    ctx.out(f"incident {incident['id']} at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(incident['ts']))}")
    ctx.out(printable(f"rule:     {incident['rule']} ({incident['reason']})"))
    ctx.out(printable(f"subject:  {incident['subject']}"))
    ctx.out(printable(f"actions:  {', '.join(incident['actions'])}"))
    ctx.out(printable(f"evidence: request ids {', '.join(incident['evidence'])} (keyproxy audit tail / export)"))
    for step in incident["next_steps"]:
        ctx.out(printable(f"next:     {step}"))
    return 0


def register_incidents(sub: Any, cmd: Commands) -> None:
    incidents = cmd.group(sub, "incidents", "anomaly incidents", "incidents_command")
    sp = cmd(incidents, "list", cmd_incidents_list, "list incident records, a page at a time (oldest first)")
    sp.add_argument("--limit", type=int, default=INCIDENTS_PAGE, metavar="N",
                    help=f"at most N incidents (default {INCIDENTS_PAGE}, at most {MAX_INCIDENTS_PAGE})")
    page = sp.add_mutually_exclusive_group()
    page.add_argument("--before", type=int, metavar="ID", help="the newest N older than incident ID")
    page.add_argument("--since", type=int, metavar="ID", help="the oldest N newer than incident ID")
    sp.add_argument("--json", action="store_true")
    sp = cmd(incidents, "show", cmd_incidents_show, "show one incident: rule, evidence, actions, next steps")
    sp.add_argument("id", type=int)
    sp.add_argument("--json", action="store_true")


def register_halts(sub: Any, cmd: Commands) -> None:
    for name, fn, text in (("halt", cmd_halt, "kill switch: refuse everything but reads and cancels"),
                           ("resume", cmd_resume, "lift a halt")):
        sp = cmd(sub, name, fn, text)
        sp.add_argument("--all", action="store_true")
        sp.add_argument("--account")
        sp.add_argument("--bot")
        if name == "halt":
            sp.add_argument("--reason", default="halted by operator")
            sp.add_argument("--cancel-orders", action="store_true",
                            help="then cancel the scope's resting orders at the exchange (a bot: only its own)")
            sp.add_argument("--json", action="store_true")
