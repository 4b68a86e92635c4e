"""`keyproxy doctor`: check an installation and explain each problem with its fix. It changes nothing.

Each check returns findings (`level` ok | warn | fail, what, fix). Network checks (exchange key
permissions, clock skew) go through keyproxy's own upstream sessions, like every other call.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from keyproxy.config import Settings


OFFLINE_FIX = ("check the network path to the exchange; on a host without one, "
               "`keyproxy doctor --offline` skips the exchange checks")


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warn | fail
    check: str
    what: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return None


def check_files(settings: Settings) -> list[Finding]:
    out = []
    wanted = [(settings.state_dir, 0o700, "directory"), (settings.vault.path, 0o600, "vault"),
              (settings.state_dir / "state.db", 0o600, "state database"),
              (settings.audit_dir, 0o700, "audit directory"),
              (settings.state_dir / "admin.sock", 0o600, "admin socket")]
    if settings.config_file is not None:
        wanted.append((settings.config_file, 0o600, "config file"))
    # the master key's files, as unlocking finds them (refused there when others can read them: said here first)
    from keyproxy.unlock import UnlockInputs
    from keyproxy.vault.master import is_systemd_credential

    inputs = UnlockInputs.gather(settings)
    for path, what in ((inputs.passphrase_file, "passphrase file"), (inputs.key_file, "master key file")):
        if path is not None and not is_systemd_credential(path):
            wanted.append((path, 0o600, what))
    for path, mode, what in wanted:
        actual = _mode(path)
        if actual is None:
            if what in ("vault",):
                out.append(Finding("fail", "files", f"no {what} at {path}", "run `keyproxy init`"))
            continue
        if actual & ~mode & 0o077:
            out.append(Finding("fail", "files", f"{what} {path} is mode {oct(actual)}, readable by others",
                               f"chmod {oct(mode)[2:]} {path}"))
    if not out:
        out.append(Finding("ok", "files", "vault, state and audit files are private (0600/0700)"))
    return out


def check_master_source(settings: Settings, vault_kind: str | None) -> list[Finding]:
    out = []
    if os.environ.get("KEYPROXY_PASSPHRASE"):
        out.append(Finding("warn", "master key", "the passphrase is in the environment (KEYPROXY_PASSPHRASE)",
                           "use KEYPROXY_PASSPHRASE_FILE or a systemd credential (LoadCredentialEncrypted=)"))
    if vault_kind == "keyring":
        from keyproxy.vault.master import usable_keyring

        backend, why = usable_keyring()
        if backend is None:
            out.append(Finding("fail", "master key", f"the vault uses the OS keyring but {why}",
                               "run where the keyring is available, or `vault rekey --to file`"))
    if not out:
        out.append(Finding("ok", "master key", f"master key from {vault_kind or 'an unknown source'}"))
    return out


def check_listeners(settings: Settings) -> list[Finding]:
    out = []
    if not settings.listen.is_loopback:
        out.append(Finding("warn", "listeners", f"the proxy listens on {settings.listen.host}, not loopback",
                           "listen on 127.0.0.1 unless bots run on other hosts (then firewall the port)"))
    if settings.metrics.enabled and settings.metrics.host not in ("127.0.0.1", "::1", "localhost"):
        out.append(Finding("warn", "listeners", f"/metrics listens on {settings.metrics.host}",
                           "serve metrics on loopback and scrape locally"))
    if settings.audit.fail_open:
        out.append(Finding("warn", "audit", "audit.fail_open = true: requests go on when the trail cannot be written",
                           "set audit.fail_open = false"))
    return out or [Finding("ok", "listeners", "proxy and metrics listen on loopback")]


def check_vault(settings: Settings, vault: Any, state_db: Any) -> list[Finding]:
    from keyproxy.metrics import rotation_due
    from keyproxy.proxy.dead_man import switch_problem
    from keyproxy.state import VaultRolledBack

    out = []
    try:
        if state_db is not None:
            state_db.check_vault_current(vault.vault_id, vault.changes(), vault.path)
    except VaultRolledBack as e:
        out.append(Finding("fail", "vault", e.what, e.fix))
    problems = vault.check_integrity()
    for p in problems:
        out.append(Finding("fail", "vault", p, "restore that account from a backup, or remove and re-add it"))
    now = time.time()
    for a in vault.list_accounts():
        due_at, due = rotation_due(a, now, settings.rotation.rotate_every, settings.rotation.warn_before)
        if due and due_at is not None:
            state = "overdue" if now >= due_at else "due " + time.strftime("%Y-%m-%d", time.gmtime(due_at))
            out.append(Finding("warn", "rotation", f"the key of account {a.name} is {state} for rotation",
                               f"keyproxy key rotate {a.name}"))
        seconds = getattr(settings.account_limits.get(a.name), "dead_man_seconds", None)
        problem = switch_problem(a.exchange, seconds) if seconds is not None else None
        if problem:
            out.append(Finding("fail", "dead-man's switch", f"[accounts.{a.name}] dead_man_seconds: {problem}",
                               "remove dead_man_seconds for this account (see docs/incident-response.md)"))
        if a.status != "active":
            out.append(Finding("warn", "quarantine", f"the key of account {a.name} is {a.status}",
                               f"keyproxy incidents list; then keyproxy key restore {a.name} or rotate it"))
    for b in vault.list_bots():
        if b.status == "suspended":
            out.append(Finding("warn", "suspension", f"bot {b.name} is suspended",
                               f"keyproxy incidents list; then keyproxy bot restore {b.name}"))
    if state_db is not None:
        for scope, target, reason, since in state_db.halts():
            out.append(Finding("warn", "halt", f"halt on {scope} {target} since "
                               f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(since))}: {reason}",
                               f"keyproxy resume --{scope if scope != 'all' else 'all'}"
                               + ("" if scope == "all" else f" {target}")))
    return out or [Finding("ok", "vault", "every record opens; no key due, quarantined or halted")]


def check_shared_state(settings: Settings, vault_id: str) -> list[Finding]:
    """A fleet's Redis ([shared_state]): reachable with keyproxy's credentials, encrypted when it is not on
    this host, keeping an append-only file (a Redis restart must not forget halts and revocations) and evicting
    nothing (a counter dropped is a limit forgotten)."""
    shared = settings.shared_state
    if shared is None:
        return []
    from keyproxy.fleet.store import FleetStore, SharedStateUnavailable

    try:
        fleet = FleetStore(shared, vault_id)
        try:
            fleet.ping()
            aof = fleet.aof_enabled()
            eviction = fleet.eviction_policy()
            report = fleet.report()
        finally:
            fleet.close()
    except SharedStateUnavailable as e:
        return [Finding("fail", "shared state", str(e), "start Redis, or check [shared_state] url and password_file")]
    out = []
    host = (shared.url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].rsplit(":", 1)[0]).strip("[]")
    local = shared.url.startswith("unix://") or host in ("127.0.0.1", "localhost", "::1")
    if not shared.url.startswith("rediss://") and not local:
        out.append(Finding("warn", "shared state", f"{fleet.where} is reached without TLS across the network",
                           "use rediss:// (Redis with tls-port and a certificate)"))
    if shared.password_file is None and not local:
        out.append(Finding("warn", "shared state", f"{fleet.where} is reached without a password",
                           "set requirepass (or an ACL user) in Redis and [shared_state] password_file"))
    if not aof:
        out.append(Finding("warn", "shared state", f"{fleet.where} keeps no append-only file: a Redis restart "
                           "forgets the fleet's halts and counters", "set `appendonly yes` in /etc/redis/redis.conf"))
    if eviction != "noeviction":
        out.append(Finding("warn", "shared state", f"{fleet.where} evicts keys under memory pressure "
                           f"(maxmemory-policy {eviction}): a daily cap, a replay id or an order's reservation "
                           "dropped is a limit forgotten", "set `maxmemory-policy noeviction` in redis.conf"))
    lagging = [i["instance"] for i in report["instances"] if i["live"] and i["lag"] > 0]
    if lagging:
        out.append(Finding("warn", "shared state", f"instances behind the fleet's version: {', '.join(lagging)}",
                           "check those instances' logs (keyproxy.fleet) and their path to Redis"))
    live = sum(1 for i in report["instances"] if i["live"])
    return out or [Finding("ok", "shared state", f"{fleet.where} answers (AOF on; {live} live instances, "
                           f"version {report['version']})")]


def check_audit(settings: Settings, vault: Any, recorded_head: int | None) -> list[Finding]:
    from keyproxy.audit.trail import trail_files, verify

    if settings.audit_dir.exists() and not settings.audit_dir.is_dir():  # every audited write would fail
        return [Finding("fail", "audit", f"{settings.audit_dir} is not a directory: nothing can be audited, so every "
                        "change and request is refused", "move it aside; keyproxy makes the directory")]
    files = trail_files(settings.audit_dir)
    if not files:
        return [Finding("ok", "audit", "no audit trail yet")]
    result = verify(files, vault.audit_key(), recorded_head)
    if result.ok:
        return [Finding("ok", "audit", f"audit trail verifies ({result.lines} lines)")]
    return [Finding("fail", "audit", f"audit trail: {result.problem}",
                    "keep the files as evidence; investigate who had write access to the state directory")]


def _fix_for(result: dict[str, Any], account: str) -> str:
    """The fix that matches what went wrong: the network, a key or secret the exchange refuses, a stored
    secret that cannot sign, or permissions wider than the bots need."""
    if result.get("unreachable"):
        return OFFLINE_FIX
    if result.get("unsigned"):
        return (f"the stored secret is not in the exchange's format: `keyproxy key rotate {account}` with the key "
                "as the exchange shows it")
    if result.get("rejected"):
        return ("the exchange refused the key or its signature (an invalid-signature code such as Binance -1022 "
                f"means the wrong secret): check the key at the exchange, then `keyproxy key rotate {account}`")
    return "narrow the key's permissions and IP list at the exchange"


async def check_exchanges(vault: Any, state_db: Any, max_skew: float = 1.0) -> list[Finding]:
    """Exchange-side key permissions against the bots' needs (`key audit`'s own check), and clock skew
    against each exchange (the adapter's public time endpoint)."""
    from keyproxy.proxy.own_calls import exchange_clock
    from keyproxy.proxy.upstream import UpstreamClients
    from keyproxy.rotation import audit_accounts, bot_scopes, stored_nonces, vault_targets

    out: list[Finding] = []
    targets = vault_targets(vault, active_only=True)
    bots = vault.list_bots()
    clients = UpstreamClients()
    checked_clock: set[str] = set()
    try:
        results = await audit_accounts(targets, lambda account: bot_scopes(bots, account), clients,
                                       stored_nonces(state_db))
        for t in targets:
            result = results[t.name]
            for w in result["warnings"]:
                out.append(Finding("warn", "exchange permissions", f"account {t.name}: {w}", _fix_for(result, t.name)))
            path = t.adapter.time_path
            origin = t.upstream.origin_for(path) if path else None
            if path and origin and origin not in checked_clock:
                checked_clock.add(origin)
                try:
                    body, local = await exchange_clock(t.upstream, clients, path)
                    skew = t.adapter.server_time(body) - local
                    if abs(skew) > max_skew:
                        out.append(Finding("warn", "clock", f"{t.exchange}: this host's clock is {skew:+.2f} s off",
                                           "enable NTP (systemd-timesyncd or chrony)"))
                except Exception as e:  # noqa: BLE001 - doctor reports every failure, it never crashes
                    out.append(Finding("warn", "clock", f"{t.exchange}: cannot read the exchange's time "
                                       f"({type(e).__name__})", OFFLINE_FIX))
    finally:
        await clients.close()
    return out or [Finding("ok", "exchanges", "key permissions match the bots' needs; clocks agree within 1 s")]


def run_doctor(settings: Settings, open_vault: Any, network: bool = True) -> list[Finding]:
    findings = check_files(settings) + check_listeners(settings)
    try:
        vault = open_vault()
    except Exception as e:  # report, never crash: doctor explains
        return findings + [Finding("fail", "vault", f"cannot open the vault: {e}",
                                   "check the master-key source (see `keyproxy vault status`)")]
    state_db = None
    try:
        state_path = settings.state_dir / "state.db"
        if state_path.exists():
            from keyproxy.state import StateStore

            try:
                state_db = StateStore(state_path)
            except Exception as e:  # report, never crash: the rest is checked without it
                findings.append(Finding("fail", "state", f"cannot open {state_path}: {str(e)[:200]}",
                                        "restore it from a backup, or move it aside (halts, usage and incidents "
                                        "start empty)"))
        findings += check_master_source(settings, vault.status()["master_source"])
        findings += check_vault(settings, vault, state_db)
        findings += check_shared_state(settings, vault.vault_id)
        findings += check_audit(settings, vault, state_db.audit_head() if state_db else None)
        if network:
            findings += asyncio.run(check_exchanges(vault, state_db))
    finally:
        vault.close()
        if state_db is not None:
            state_db.close()
    return findings
