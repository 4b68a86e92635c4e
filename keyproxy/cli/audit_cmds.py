"""`keyproxy audit ...`: verify, tail and export the trail (a fleet's trails together)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keyproxy.durations import parse_duration
from keyproxy.errors import StateError, UsageError
from keyproxy.cli.context import Commands, Context, printable


def cmd_audit_verify(ctx: Context) -> int:
    """Each trail named (default: this host's) on its own: its chain and MACs, and that it was not cut
    short: against the head this host's state.db recorded, and in a fleet the head its instance last
    published to Redis."""
    from keyproxy.audit.trail import trail_files, verify
    from keyproxy.state import StateStore

    targets = ctx.args.path or [ctx.settings.audit_dir]
    trails = []
    for target in targets:
        files = trail_files(target) if target.is_dir() else [target]
        if not files or not all(f.exists() for f in files):
            raise StateError(f"no audit trail at {target}")
        if not all(f.is_file() for f in files):  # a FIFO would block the read, a device never end
            raise StateError(f"{target}: not a regular file (a pipe or a device), so no audit trail")
        trails.append((target, files))
    head = None
    state_db = ctx.settings.state_dir / "state.db"
    if not ctx.args.path and state_db.exists():
        head = StateStore(state_db).audit_head()
    reports, ok = [], True
    with ctx.open_vault(join_fleet=False) as vault:  # read only: safe while the daemon runs
        published = _published_audit_heads(ctx, vault.vault_id)
        for target, files in trails:
            instance = trail_instance(files)
            heads = [h for h in (head, published.get(instance or "")) if h]
            result = verify(files, vault.audit_key(), max(heads) if heads else None)
            ok = ok and result.ok
            reports.append({"trail": str(target), "instance": instance, "ok": result.ok, "lines": result.lines,
                            "last_seq": result.last_seq, "problem": result.problem, "files": [str(f) for f in files]})
    if ctx.args.json:
        ctx.out_json(reports[0] if len(reports) == 1 else reports)
        return 0 if ok else 1
    for r in reports:  # the instance is read from the trail before it is verified: shown, never sent raw
        who = printable(f"{r['trail']}" + (f" (instance {r['instance']})" if r["instance"] else ""))
        if r["ok"]:
            ctx.out(f"ok: {who}: {r['lines']} lines in {len(r['files'])} file(s), chain and MACs verify "
                    f"(last seq {r['last_seq']})")
        else:
            ctx.out(f"FAILED: {who}: after {r['lines']} good lines: {printable(str(r['problem']))}")
    return 0 if ok else 1


def _trail_files(directory: Path) -> list[Path]:
    from keyproxy.audit.trail import trail_files

    files = trail_files(directory)
    if not files:
        raise StateError(f"no audit trail at {directory}")
    return files


def trail_instance(files: list[Path]) -> str | None:
    """The fleet instance that wrote a trail: its newest daemon.start says (None outside a fleet)."""
    from keyproxy.audit.trail import iter_lines

    instance = None
    for _, _, raw, torn in iter_lines(files):
        if not torn and b'"daemon.start"' in raw:
            with contextlib.suppress(ValueError):
                instance = json.loads(raw).get("instance") or instance
    return instance


def _published_audit_heads(ctx: Context, vault_id: str) -> dict[str, int]:
    """In a fleet: instance -> the newest audit seq it published with its heartbeat (unreachable: none)."""
    shared = ctx.settings.shared_state
    if shared is None:
        return {}
    from keyproxy.fleet.store import FleetStore, SharedStateUnavailable

    try:
        fleet = FleetStore(shared, vault_id)
        try:
            return {name: int(rec.get("audit_seq", 0)) for name, rec in fleet.instances(live_only=False).items()}
        finally:
            fleet.close()
    except SharedStateUnavailable:
        return {}


def _audit_lines(ctx: Context, directory: Path | None = None) -> Iterator[dict[str, Any]]:
    from keyproxy.audit.trail import iter_lines, trail_files

    for _, _, raw, torn in iter_lines(trail_files(directory or ctx.settings.audit_dir)):
        if not torn:
            try:
                line = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            # a line that is no trail line (`audit verify` names it) is left out: tail and export sort and
            # compare by these fields (session 35's review: `[1]` and `{"ts": "x"}` ended them in tracebacks)
            if isinstance(line, dict) and all(type(line.get(k, 0)) in (int, float) for k in ("ts", "seq")):
                yield line


def _matches(line: dict[str, Any], args: argparse.Namespace) -> bool:
    return ((not getattr(args, "bot", None) or line.get("bot") == args.bot)
            and (not getattr(args, "account", None) or line.get("account") == args.account))


def _parse_time(text: str) -> float:
    """Unix seconds, ISO 8601, or a duration back from now (`1h`, `30m`, `2d`)."""
    from datetime import datetime, timezone

    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return value
        raise UsageError(f"invalid time {text[:40]!r}: not a number of seconds")  # nan would match no line
    if text[-1:] in ("s", "m", "h", "d") and text[:-1].isdigit():
        return time.time() - parse_duration(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid time {text[:40]!r}: use ISO 8601 (2026-11-25T10:00:00Z), Unix seconds "
                         "or a time back from now (90s, 30m, 1h, 2d)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def cmd_audit_tail(ctx: Context) -> int:
    if ctx.args.lines < 0:
        raise UsageError(f"-n/--lines must be 0 or more, not {ctx.args.lines}")
    lines = [ln for ln in _audit_lines(ctx) if _matches(ln, ctx.args)]
    for line in lines[len(lines) - ctx.args.lines:] if ctx.args.lines else []:  # -n 0: only what follows
        ctx.out(json.dumps(line, sort_keys=True))
    if not ctx.args.follow:
        return 0
    seen = lines[-1]["seq"] if lines else 0
    try:
        while True:
            time.sleep(0.5)
            for line in _audit_lines(ctx):
                if line.get("seq", 0) > seen:
                    seen = line["seq"]
                    if _matches(line, ctx.args):
                        ctx.out(json.dumps(line, sort_keys=True))
                        ctx.stdout.flush()
    except KeyboardInterrupt:
        return 0


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may take for a formula (OWASP CSV injection)


def csv_cell(value: Any) -> str:
    """One export cell: `printable`, and a text that a spreadsheet would run as a formula (`=HYPERLINK(...)`)
    kept as text by a leading `'`. Numbers keep their sign (a spreadsheet reads -5 as a number)."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    text = value if isinstance(value, str) else str(value)
    return printable("'" + text if text.startswith(FORMULA_STARTS) else text)


EXPORT_FIELDS = ("seq", "ts", "event", "request_id", "bot", "account", "source_ip", "method", "path", "endpoint",
                 "endpoint_class", "decision", "code", "status", "upstream_status", "proxy_ms", "upstream_ms", "op",
                 "result", "peer_uid", "instance")


def cmd_audit_export(ctx: Context) -> int:
    import csv

    since = _parse_time(ctx.args.since)
    until = _parse_time(ctx.args.until) if ctx.args.until else float("inf")
    rows = []
    for directory in ctx.args.trail or [None]:  # a fleet's trails, one per instance: merged in time order
        files = None if directory is None else directory
        instance = trail_instance(_trail_files(files)) if files is not None else None
        for ln in _audit_lines(ctx, files):
            if since <= ln.get("ts", 0) <= until and _matches(ln, ctx.args):
                rows.append({**ln, "instance": instance} if instance else ln)
    if ctx.args.trail:
        rows.sort(key=lambda ln: (ln.get("ts", 0), ln.get("instance") or "", ln.get("seq", 0)))
    if ctx.args.format == "csv":
        writer = csv.writer(ctx.stdout)
        writer.writerow(EXPORT_FIELDS)
        writer.writerows([csv_cell(row.get(name)) for name in EXPORT_FIELDS] for row in rows)
    else:
        for row in rows:
            ctx.out(json.dumps(row, sort_keys=True))
    return 0


def register(sub: Any, cmd: Commands) -> None:
    audit = cmd.group(sub, "audit", "the audit trail", "audit_command")
    sp = cmd(audit, "verify", cmd_audit_verify, "check the trail's chain and MACs; name the first bad line")
    sp.add_argument("path", nargs="*", type=Path, help="trail files or directories, e.g. every fleet instance's "
                    "(default: the configured one)")
    sp.add_argument("--json", action="store_true")
    sp = cmd(audit, "tail", cmd_audit_tail, "print the newest audit events")
    sp.add_argument("--bot")
    sp.add_argument("--account")
    sp.add_argument("-n", "--lines", type=int, default=20)
    sp.add_argument("-f", "--follow", action="store_true")
    sp = cmd(audit, "export", cmd_audit_export, "export events in a time range for incident review")
    sp.add_argument("--since", required=True, help="ISO 8601 time or Unix seconds")
    sp.add_argument("--until")
    sp.add_argument("--bot")
    sp.add_argument("--account")
    sp.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    sp.add_argument("--trail", action="append", type=Path, metavar="DIR",
                    help="a trail directory to merge (repeat for each fleet instance's); default: the configured one")
