"""The daemon: `serve`, `reload`, `status`, `doctor`, `config check`, `tls init`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from keyproxy.config import Settings, load_settings
from keyproxy.errors import StateError, UsageError
from keyproxy.statedir import daemon_lock
from keyproxy.unlock import source_for_kind
from keyproxy.vault import Vault
from keyproxy.cli.context import Commands, Context, day


def cmd_reload(ctx: Context) -> int:
    result = ctx.call("reload")
    ctx.out(f"reloaded {result['config_file'] or '(defaults)'}" +
            (f"; restart needed for: {', '.join(result['restart_needed'])}" if result["restart_needed"] else ""))
    return 0


def cmd_config_check(ctx: Context) -> int:
    settings = load_settings(ctx.args.path) if ctx.args.path else ctx.settings
    from keyproxy.proxy.dead_man import check_switches
    from keyproxy.vault.store import account_exchanges

    if settings.vault.path.exists():  # settings that depend on an account's exchange
        check_switches(settings.account_limits, account_exchanges(settings.vault.path))
    where = settings.config_file or "(no config file: defaults)"
    ctx.out(f"ok: {where} ({len(settings.bot_policies)} bot policies, vault {settings.vault.path})")
    return 0


def cmd_doctor(ctx: Context) -> int:
    from keyproxy.doctor import run_doctor

    findings = run_doctor(ctx.settings, lambda: Vault.open(
        ctx.settings.vault.path, lambda kind: source_for_kind(kind, ctx.settings, ctx.inputs), maintain=False),
        network=not ctx.args.offline)
    if ctx.args.json:
        ctx.out_json([f.as_json() for f in findings])
    else:
        for f in findings:
            ctx.out(f"{f.level.upper():<5} {f.check}: {f.what}" + (f"\n      fix: {f.fix}" if f.fix else ""))
    return 0 if all(f.level == "ok" for f in findings) else 1


def cmd_status(ctx: Context) -> int:
    with ctx.controls() as controls:
        st = controls.status()
    st["daemon"] = "running" if controls.running else "stopped"
    if ctx.args.json:
        ctx.out_json(st)
        return 0
    ctx.out(f"daemon: {st['daemon']}; accounts: {st['accounts']}; bots: {st['bots']}; incidents: {st['incidents']}")
    for name in st["suspended_bots"]:
        ctx.out(f"SUSPENDED bot {name}")
    for name in st["quarantined_keys"]:
        ctx.out(f"QUARANTINED key of account {name}")
    for name in st.get("throttled_bots", []):
        ctx.out(f"THROTTLED bot {name} (1 request/s for 5 minutes after a rate spike)")
    for h in st["halts"]:
        ctx.out(f"HALT {h['scope']} {h['target']} since {day(h['since'])}: {h['reason']}")
    for d in st.get("dead_man", []):
        when = (f"last armed {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(d['armed_at']))}"
                if d["armed_at"] else "never armed")
        failing = f"; FAILING ({d['failures']} in a row): {d['error']}" if d["error"] else ""
        ctx.out(f"dead-man's switch {d['account']}: {d['seconds']} s, {when}{failing}")
    for r in st.get("risk", []):
        held = "; ".join(f"{x['scope']} {x['position']} (resting buy {x['open_buy']}, sell {x['open_sell']}; price "
                         f"{x['price'] or '?'}, "
                         f"{'%s s old' % x['price_age_s'] if x['price_age_s'] is not None else 'none'})"
                         for x in r["positions"]) or "no position"
        limit = f" of limit -{r['max_daily_loss']}" if r["max_daily_loss"] else ""
        hit = "; LOSS LIMIT HIT: only reducing orders pass today" if r["loss_limit_hit"] else ""
        ctx.out(f"risk bot {r['bot']}: {held}; day P&L {r['day_pnl'] or '?'}{limit}{hit}")
    for b in st.get("budgets", []):
        closed = f"; CLOSED for {b['closed_s']:g} s (the exchange refused for rate)" if b["closed_s"] else ""
        ctx.out(f"budget {b['scope']} {b['budget']}: {b['used']:g} of {b['limit']} "
                f"({100 * b['used'] / b['limit']:.0f}%){closed}; bots: {', '.join(b['bots']) or '-'}")
    fleet = st.get("fleet")
    if fleet:
        if not fleet["reachable"]:
            ctx.out(f"fleet {fleet['where']}: UNREACHABLE ({fleet.get('problem', '')}); orders are refused, "
                    "reads, cancels and reduce-only orders pass")
        else:
            ctx.out(f"fleet {fleet['where']}: version {fleet['version']}")
        for i in fleet["instances"]:
            state = "this instance" if i["this"] else ("live" if i["live"] else "NOT HEARD FROM")
            ctx.out(f"instance {i['instance']} ({state}, {i['listen']}): applied {i['applied']}, "
                    f"{i['lag']} behind, last heartbeat {i['seen_s_ago']:g} s ago")
    return 0


def cmd_serve(ctx: Context) -> int:
    from dataclasses import replace

    from keyproxy import daemon

    settings = ctx.settings
    if ctx.args.port is not None and not 0 <= ctx.args.port <= 65535:  # before the vault is unlocked for nothing
        raise UsageError(f"--port must be 0 to 65535 (0: any free port), not {ctx.args.port}")
    if ctx.args.port is not None or ctx.args.host is not None:
        listen = replace(settings.listen, host=ctx.args.host or settings.listen.host,
                         port=settings.listen.port if ctx.args.port is None else ctx.args.port)
        if (problem := listen.host_problem()) is not None:
            raise UsageError(f"--host: {problem}")
        settings = replace(settings, listen=listen)
    from keyproxy.audit.log import configure_logging

    import logging

    from keyproxy.hardening import dumpable, harden_process

    level = os.environ.get("KEYPROXY_LOG_LEVEL", "info").upper()
    configure_logging(level=getattr(logging, level, logging.INFO))
    log = logging.getLogger("keyproxy.daemon")
    for problem in harden_process():  # no core dumps, no same-uid ptrace, umask 077
        log.warning("hardening step skipped: %s", problem)
    log.info("process hardened: dumpable=%s, core limit 0, umask 077", dumpable())
    if os.environ.get("KEYPROXY_PASSPHRASE") is not None:
        log.warning("KEYPROXY_PASSPHRASE was removed from the environment; a passphrase file "
                    "(KEYPROXY_PASSPHRASE_FILE) or a systemd credential is safer")
    from keyproxy.eventloop import loop_factory

    workers = ctx.args.workers
    if workers < 1 or workers > 64:
        raise UsageError(f"--workers must be 1-64, not {workers}")
    if workers > 1:
        if settings.shared_state is None:
            raise UsageError("--workers needs [shared_state] (a Redis): the workers share limits, replay ids, "
                             "nonces and halts through it as a fleet's instances do (docs/fleet.md)")
        from keyproxy.workers import run_workers

        with daemon_lock(settings):
            return run_workers(ctx.args.argv, workers, lambda line: _ready(ctx, line))
    worker = _worker_of(ctx.args.worker, settings) if ctx.args.worker else None
    factory, loop_name = loop_factory(ctx.args.loop)
    log.info("event loop: %s", loop_name)
    with daemon_lock(settings) if worker is None else contextlib.nullcontext(), \
            ctx.open_vault(strict=False) as vault, asyncio.Runner(loop_factory=factory) as runner:
        runner.run(daemon.run(settings, vault, ready=lambda line: _ready(ctx, line, notify_systemd=worker is None),
                              worker=worker))
    return 0


def _worker_of(spec: str, settings: Settings) -> tuple[int, int]:
    """`--worker I/N` (set by `serve --workers N` for its children, never by hand): the parent must hold the
    daemon lock, so a worker can never be a second daemon beside a running one."""
    from keyproxy.statedir import lock_path

    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UsageError(f"--worker is I/N, not {spec!r}") from None
    if not 0 <= index < count or settings.shared_state is None:
        raise UsageError("--worker is set by `serve --workers N` for its own workers")
    try:
        holder = int(lock_path(settings).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        holder = -1
    if holder != os.getppid():
        raise UsageError("--worker is set by `serve --workers N` for its own workers (its parent holds the lock)")
    return index, count


def _ready(ctx: Context, line: str, notify_systemd: bool = True) -> None:
    from keyproxy.sdnotify import notify

    print(line, file=ctx.stdout, flush=True)
    if notify_systemd:
        notify(f"READY=1\nSTATUS={line}")  # under systemd (Type=notify): `systemctl start` returns now


def cmd_tls_init(ctx: Context) -> int:
    from keyproxy.tls import make_local_ca

    directory = (ctx.args.dir or ctx.settings.state_dir / "tls").resolve()
    if (directory / "key.pem").exists() and not ctx.args.force:
        raise StateError(f"{directory}/key.pem exists; --force replaces the certificate (restart the daemon after)")
    files = make_local_ca(directory, ctx.args.days)
    ctx.out(f"wrote {files.ca} (the CA clients trust), {files.cert} and {files.key} (0600)\n"
            f"config:\n  [listen]\n  tls_cert = \"{files.cert}\"\n  tls_key = \"{files.key}\"\n"
            f"clients: SSL_CERT_FILE={files.ca} (Python), or add it to the client's CA bundle")
    return 0


def register(sub: Any, cmd: Commands) -> None:
    cmd(sub, "reload", cmd_reload, "make the running daemon re-read its config file (as SIGHUP does)")
    config = cmd.group(sub, "config", "the config file", "config_command")
    sp = cmd(config, "check", cmd_config_check, "validate a config file without starting anything")
    sp.add_argument("path", nargs="?", type=Path)
    sp = cmd(sub, "doctor", cmd_doctor,
             "check the installation and explain each problem with its fix (changes nothing)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--offline", action="store_true", help="skip the exchange checks (key permissions, clock skew)")
    sp = cmd(sub, "status", cmd_status, "daemon, accounts, bots, halts in force and the exchanges' rate budgets in use")
    sp.add_argument("--json", action="store_true")

    sp = cmd(sub, "serve", cmd_serve, "run the signing proxy daemon")
    sp.add_argument("--host", help="listen address (default: listen.host, 127.0.0.1)")
    sp.add_argument("--port", type=int, help="listen port (default: listen.port, 8750; 0 picks a free one)")
    sp.add_argument("--loop", choices=("asyncio", "uvloop", "auto"), default="asyncio",
                    help="event loop: asyncio's own (default), uvloop, or auto (uvloop where installed)")
    sp.add_argument("--workers", type=int, default=1,
                    help="processes sharing the port (SO_REUSEPORT), one host's cores; needs [shared_state]")
    sp.add_argument("--worker", help=argparse.SUPPRESS)  # I/N: set by --workers for its own children

    tls = cmd.group(sub, "tls", "the optional TLS listener", "tls_command")
    sp = cmd(tls, "init", cmd_tls_init, "make a local CA and a loopback certificate for [listen] tls_cert/tls_key")
    sp.add_argument("--dir", type=Path, help="where to write ca.pem, cert.pem, key.pem (default: <state>/tls)")
    sp.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    sp.add_argument("--force", action="store_true", help="replace an existing certificate")
