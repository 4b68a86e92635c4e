"""The composition root: `Daemon` builds vault access, adapters, proxy, audit, metrics and the admin socket,
hands every part what it needs, and holds the live configuration; `run` serves until SIGTERM.

Nothing imports this module but `keyproxy serve` (cli/daemon_cmds.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from keyproxy.admin.controls import Controls
from keyproxy.admin.server import build_admin_app, prepare_socket_path
from keyproxy.anomaly.respond import Responder
from keyproxy.anomaly.rules import Engine
from keyproxy.audit.log import REDACTOR, get_logger
from keyproxy.audit.trail import AuditTrail
from keyproxy.config import Settings, load_settings
from keyproxy.errors import ConfigError
from keyproxy.fleet.store import SharedStateUnavailable
from keyproxy.exchanges import default_adapters
from keyproxy.policy.budget import Governor
from keyproxy.errors import KeyproxyError
from keyproxy.proxy.answer_journal import AnswerJournal, orphans
from keyproxy.proxy.cancel_orders import Canceller
from keyproxy.proxy.dead_man import DeadManKeeper, check_switches
from keyproxy.proxy.heartbeat import HeartbeatWatch
from keyproxy.proxy.risk_watch import RiskWatch
from keyproxy.proxy.own_calls import OwnCalls
from keyproxy.proxy.replay import LOOKBACK_S as REPLAY_LOOKBACK_S, recent_replays
from keyproxy.rotation import KeyAtExchange, audit_accounts, bot_scopes, check_new_key, real_key
from keyproxy.metrics import Metrics, budget_families, key_age_families, rotation_due
from keyproxy.proxy.pipeline import Pipeline, ProxyLimits
from keyproxy.proxy.websocket import SocketLimits, WebSocketEdge
from keyproxy.proxy.recorder import Recorder
from keyproxy.proxy.registry import Snapshot, build_snapshot
from keyproxy.tls import server_context
from keyproxy.proxy.server import ProxyFrontDoor, SafeServer, allowed_hosts, assert_c_parser
from keyproxy.proxy.upstream import UpstreamClients
from keyproxy.sdnotify import notify
from keyproxy.state import StateStore
from keyproxy.nonces import NonceSequence
from keyproxy.usage import UsageBook
from keyproxy.statedir import socket_path
from keyproxy.vault import Vault

log = get_logger("keyproxy.daemon")
CANCEL_OWED = "cancel_owed|"  # state.db usage key: an anomaly action's cancels not yet done (scope|target -> reason)
RUN_KEY = "daemon|run"  # state.db usage key: "running" from start to a clean stop ("stopped"): left "running", a crash
LAG_TICK_S = 0.025
ANOMALY_TICK_S = 10.0  # held-back anomaly findings are said at most this long after their window ends


@dataclass
class State:
    """The current registry snapshot; replaced whole on every admin change."""

    snapshot: Snapshot


def register_secrets(vault: Vault, snapshot: Snapshot) -> None:
    """Teach the log redactor every real and virtual secret the daemon holds."""
    values: list[str] = []
    for entry in snapshot.accounts.values():
        if entry.key is not None:
            for s in (entry.key.api_key, entry.key.secret, entry.key.passphrase, entry.key.private_key):
                if s is not None:
                    values.append(s.reveal().decode("utf-8", "replace"))
    for bot in snapshot.bots_by_key.values():
        if bot.key is not None:
            for s in (bot.key.secret, bot.key.passphrase):
                if s is not None:
                    values.append(s.reveal().decode("utf-8", "replace"))
    REDACTOR.register(values)


async def _listen(site: web.TCPSite, what: str, host: str, port: int) -> None:
    """Start a listener; an address in use or not ours is the operator's one-line error, not a crash."""
    try:
        await site.start()
    except OSError as e:
        hint = " (another keyproxy, or another program, listens there)" if e.errno == errno.EADDRINUSE else ""
        raise KeyproxyError(f"cannot listen on {host}:{port} for the {what}: {e.strerror or e}{hint}; "
                            "choose another with --port or the config's [listen]/[metrics] port") from None


async def _serve_metrics(metrics: Metrics, host: str, port: int) -> tuple[web.AppRunner, str]:
    hosts: frozenset[str] = frozenset()

    async def handler(request: web.Request) -> web.Response:
        # the proxy's guards: a web page reaching 127.0.0.1 by DNS rebinding must not read account and
        # bot names (the Host names this listener; browser-shaped requests are refused)
        if hosts and request.headers.get("Host", "").lower() not in hosts:
            return web.Response(status=403, text="host_denied: the Host header must name this listener\n")
        if "Origin" in request.headers or any(h.lower().startswith("sec-fetch-") for h in request.headers) \
                or request.headers.get("X-Forwarded-Host"):
            return web.Response(status=403, text="browser_denied: requests from web browsers are refused\n")
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})  # for a health check or readiness probe: it says nothing

    app = web.Application()
    app.router.add_get("/metrics", handler)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await _listen(web.TCPSite(runner, host, port), "metrics", host, port)
    bound = runner.addresses[0][1]
    # on loopback the Host must name it (DNS rebinding); a scrape from another host names whatever it reached
    hosts = allowed_hosts(host, bound) if host in ("127.0.0.1", "localhost", "::1") else frozenset()
    return runner, f"http://{host if ':' not in host else f'[{host}]'}:{bound}/metrics"


class Daemon:
    """The running daemon, wired in one place: built from the settings and the open vault (`__init__`),
    started (`start`: the fleet's state, listeners, admin socket, background tasks), changed while it runs
    (`reload` after an admin change, `reload_config` on SIGHUP or `keyproxy reload`, `revoke` for the
    anomaly action) and stopped (`stop`). The live configuration is `settings` (the effective one, with
    `serve --port` overrides; reloads replace its bot policies and account limits) and `file_settings`
    (the config file's own view, what a reload compares against).

    `worker` (index, count): one of `serve --workers N`'s processes on a shared port (workers.py); worker 0
    keeps the admin socket and the configured audit directory, the others `audit/worker-I` and no socket."""

    def __init__(self, settings: Settings, vault: Vault, worker: tuple[int, int] | None = None) -> None:
        assert_c_parser()
        self.vault, self.worker = vault, worker
        self.index = index = worker[0] if worker else 0
        self.adapters = adapters = default_adapters()
        # durable as the audit trail is: fsync per commit only when the audit trail fsyncs every line (state.py)
        self.store = store = StateStore(settings.state_dir / "state.db",
                                        "FULL" if settings.audit.fsync == "always" else "NORMAL")
        # an older vault copied into place would bring back revoked bots and keys: refuse to serve it
        store.check_vault_current(vault.vault_id, vault.changes(), vault.path)
        self.fleet = fleet = vault.replica.fleet if vault.replica is not None else None
        if fleet is not None:  # a fleet: halts and throttles are shared (the fleet's are taken before serving)
            store.mirror = fleet
            fleet.never_before(int(store.usage_value("fleet|control_seq") or "0"))
        store.record_vault_seen(vault.vault_id, vault.changes())
        self.settings = settings
        self.file_settings = settings
        with contextlib.suppress(ConfigError):
            self.file_settings = load_settings(settings.config_file)
        check_switches(settings.account_limits, {a.name: a.exchange for a in vault.list_accounts()})
        self.state = State(build_snapshot(vault, adapters, store.halts(), settings.bot_policies,
                                          settings.account_limits, store.throttles(time.time())))
        register_secrets(vault, self.state.snapshot)
        for exchange in {a.info.exchange for a in self.state.snapshot.accounts.values()}:
            if exchange in adapters:
                adapters[exchange].warm()  # a library's first import, paid now rather than by the first order

        au = settings.audit
        audit_dir = settings.audit_dir / f"worker-{index}" if index else settings.audit_dir  # one writer per chain
        # the chain goes on from the newest line state.db recorded, never from a trail cut short while stopped
        self.trail = trail = AuditTrail(audit_dir, vault.audit_key(), fsync=au.fsync,
                                        interval_ms=au.fsync_interval_ms, max_bytes=au.max_bytes,
                                        recorded_seq=None if index else store.audit_head())
        if trail.cut is not None:
            log.error("audit trail ends before the line keyproxy recorded writing: lines were cut from its end; "
                      "the chain goes on from the recorded line (audit verify names the gap)",
                      found_seq=trail.cut[0], recorded_seq=trail.cut[1])
        if trail.recovered_bytes:
            trail.append("trail.recovered", dropped_bytes=trail.recovered_bytes)
        if au.fail_open:
            log.warning("audit.fail_open = true: requests are forwarded even when the audit trail cannot be written")
        self.metrics = metrics = Metrics()
        metrics.add_collector(lambda: key_age_families(
            (e.info for e in self.state.snapshot.accounts.values()), None, self.settings.rotation.rotate_every,
            self.settings.rotation.warn_before))
        self.recorder = recorder = Recorder(trail, metrics, fail_open=au.fail_open)
        recorder.responder = Responder(Engine(dict(settings.anomaly) if settings.anomaly else None), vault, store,
                                       trail.append, metrics, self.reload, revoke=self.revoke)
        metrics.halts_active.set(len(self.state.snapshot.halts))

        ps = settings.proxy
        limits = ProxyLimits(ps.max_body_bytes, ps.body_timeout, ps.upstream_timeout, ps.max_response_bytes)
        self.clients = UpstreamClients()
        self.nonces = NonceSequence(store)
        gs = settings.governor
        self.governor = Governor(gs.reserve, dict(gs.shares), dict(gs.limits), dict(gs.tiers)) if gs.enabled else None
        self.pipeline = pipeline = Pipeline(lambda: self.state.snapshot, self.clients, limits, recorder.before_forward,
                                            self.nonces, store, UsageBook(store), governor=self.governor,
                                            public_ttls=gs.cache)
        recorder.unsent = pipeline.core.in_flight.land  # a refused order gives back what it held on its way
        # after a crash (the last run did not stop), a rate-limit bucket starts with what it could have refilled
        # since this start, never full: a kill -9 gave a bot a new minute's orders (session 34's crash review);
        # after a clean stop (or a first start) the buckets start full, as they always did
        if store.usage_value(RUN_KEY) == "running" and not index:
            pipeline.core.counters.started = time.time()  # "running" is written once serving (`start`)
        # the replay ids of the requests forwarded in the last minutes (their forward lines): a replay after a
        # restart is refused within the request's window as before it (session 34's crash review)
        started = time.time()
        kept = pipeline.core.replays.preload(recent_replays(audit_dir, started - REPLAY_LOOKBACK_S),
                                             int(started * 1000))
        if kept:
            log.info("signed requests still in their window remembered from the audit trail", count=kept)
        # an order's answer written down before it is relayed, learned just after (replayed at start: `start`)
        pipeline.core.journal = AnswerJournal(settings.state_dir, store, index)
        if pipeline.core.governor is not None:
            metrics.add_collector(lambda: budget_families(pipeline.core.governor, time.time()))  # type: ignore[arg-type]
        if not settings.listen.is_loopback:
            log.warning("listening on a non-loopback address (listen.allow_non_loopback)", host=settings.listen.host)
        self.own_calls = OwnCalls(pipeline.core, self.clients, safety=True)  # a pool of its own, the turn first
        self.canceller = Canceller(lambda: self.state.snapshot, store, self.own_calls, trail.append)
        self.canceller.on_their_way = self._orders_on_their_way
        self._cancelling: set[asyncio.Task[Any]] = set()
        recorder.responder.cancel_orders = self.cancel_later
        self.fleet_sync: Any = None
        self.fleet_usage: Any = None
        self.fleet_book: Any = None  # fleet/book.py: every instance's positions book holds every bot's orders
        self.background: list[asyncio.Task[Any]] = []
        self.base_url = ""
        self.socket = socket_path(settings)
        self._admin_runner: web.AppRunner | None = None
        self._runner: web.ServerRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._websockets: WebSocketEdge | None = None

    # --- changes while running ------------------------------------------------

    def reload(self) -> None:
        """A new snapshot from the vault and the state (after any admin change or anomaly action)."""
        s = self.settings
        self.state.snapshot = build_snapshot(self.vault, self.adapters, self.store.halts(), s.bot_policies,
                                             s.account_limits, self.store.throttles(time.time()))
        register_secrets(self.vault, self.state.snapshot)
        self.metrics.halts_active.set(len(self.state.snapshot.halts))
        self.store.record_vault_seen(self.vault.vault_id, self.vault.changes())

    def reload_config(self) -> dict[str, Any]:
        """SIGHUP / `keyproxy reload`: a valid file takes effect for bot policies without dropping a
        connection; an invalid one is refused (file, key, reason logged) and the old one stays."""
        old = self.file_settings
        try:
            new = load_settings(old.config_file)
            check_switches(new.account_limits, {a.name: a.exchange for a in self.vault.list_accounts()})
        except ConfigError as e:
            log.error("config reload refused; keeping the running config", reason=str(e))
            self.trail.append("config.reload", result=f"refused: {e}"[:300])
            raise
        restart = [name for name in ("vault", "listen", "proxy", "audit", "metrics", "shared_state")
                   if getattr(new, name) != getattr(old, name)]
        ng = new.governor
        if ng.enabled != old.governor.enabled or ng.cache != old.governor.cache:
            restart.append("governor")
        if self.pipeline.core.governor is not None:  # budgets, shares and tiers apply at once
            self.pipeline.core.governor.configure(ng.reserve, ng.shares, ng.limits, ng.tiers)
        self.file_settings = new
        self.settings = replace(self.settings, bot_policies=new.bot_policies, account_limits=new.account_limits)
        self.reload()
        self.trail.append("config.reload", result="ok", pinned_bots=sorted(new.bot_policies), restart_needed=restart)
        log.info("config reloaded", file=str(new.config_file), pinned_bots=sorted(new.bot_policies))
        if restart:
            log.warning("config reloaded; these sections change only on restart", sections=restart)
        return {"config_file": str(new.config_file) if new.config_file else None,
                "pinned_bots": sorted(new.bot_policies), "restart_needed": restart}

    def _on_sighup(self) -> None:
        with contextlib.suppress(ConfigError):
            self.reload_config()

    def revoke(self, account: str) -> None:
        """The revoke_key anomaly action: asked of the exchange after the request that triggered it."""
        asyncio.get_running_loop().create_task(self._revoke_at_exchange(account))

    async def _revoke_at_exchange(self, account: str) -> None:
        """Ask the exchange to delete the (already quarantined) real key."""
        entry = self.state.snapshot.accounts.get(account)
        spec = entry.adapter.revoke_request if entry is not None and entry.adapter is not None else None
        if entry is None or entry.adapter is None or entry.upstream is None or entry.key is None or spec is None:
            self.trail.append("key.revoke", account=account, result="not offered by this exchange: quarantined only")
            return
        method, path, body = spec
        try:
            status, answer = await self.own_calls.send(entry, (method, path, "", body))
            revoked = status == 200 and not entry.adapter.key_rejected(status, answer)  # type: ignore[attr-defined]
        except Exception as e:
            self.trail.append("key.revoke", account=account, result=f"failed: {type(e).__name__}")
            return
        if revoked:
            self.vault.set_account_status(account, "revoked")
            self.metrics.key_actions.labels(account, "revoke").inc()
            self.reload()
        self.trail.append("key.revoke", account=account, result="revoked at the exchange" if revoked else
                          f"the exchange answered {status}: still quarantined")

    def cancel_later(self, scope: str, target: str, reason: str) -> None:
        """An anomaly action's cancels: after the request that completed the finding, never inside it. Owed in
        state.db until done (`CANCEL_OWED`): a kill before they ran left the halted bot's orders resting under an
        incident saying they were cancelled (session 34's crash review); the next start does them."""
        owed = f"{CANCEL_OWED}{scope}|{target}"
        if not self.index:
            self.store.set_usage(owed, reason)

        async def cancel() -> None:
            try:
                await self.canceller.cancel(scope, target, reason)
            except Exception as e:  # a bug or a vanished scope: logged, the halt stays in force
                log.error("cancelling orders failed", scope=scope, target=target, kind=type(e).__name__)
            finally:
                if not self.index:
                    self.store.forget_usage(owed)
        task = asyncio.get_running_loop().create_task(cancel())
        self._cancelling.add(task)
        task.add_done_callback(self._cancelling.discard)

    def _source_for_rekey(self, kind: str, passphrase_file: str | None, key_file: str | None) -> Any:
        from pathlib import Path

        from keyproxy.unlock import UnlockInputs, source_for_new

        inputs = UnlockInputs(Path(passphrase_file) if passphrase_file else None, Path(key_file) if key_file else None)
        return source_for_new(kind, self.settings, inputs, named=True)  # the rekey's own --new-passphrase-file

    # --- asking the exchange about keys (admin socket) -----------------------------

    def _at_exchange(self, entry: Any, key: Any = None) -> KeyAtExchange | None:
        if entry is None or entry.adapter is None or entry.upstream is None or (key or entry.key) is None:
            return None
        return KeyAtExchange(entry.info.name, entry.info.exchange, entry.adapter, entry.upstream, key or entry.key)

    def _own_nonce(self, target: KeyAtExchange) -> int | None:
        return self.nonces.for_adapter(target.name, target.adapter)

    async def verify_new_key(self, account: str, creds: Any) -> tuple[bool, str]:
        entry = self.state.snapshot.accounts.get(account)
        target = self._at_exchange(entry, real_key(entry.info.key_type, creds)) if entry is not None else None
        if target is None:
            return False, f"no account {account!r} served by this daemon"
        return await check_new_key(target, self.clients, self._own_nonce(target))

    async def audit_keys(self, name: str | None) -> dict[str, Any]:
        targets = [t for t in map(self._at_exchange, self.state.snapshot.accounts.values()) if t is not None]
        return await audit_accounts(targets, lambda account: bot_scopes(self.vault.list_bots(), account),
                                    self.clients, self._own_nonce, name)

    # --- start and stop ---------------------------------------------------------

    async def _join_fleet(self) -> None:
        """In a fleet, the gate charges what holds across instances; the fleet's state before serving."""
        from keyproxy.fleet.book import FleetBook
        from keyproxy.fleet.gate import FleetGate
        from keyproxy.fleet.usage import FleetUsage
        from keyproxy.fleet.nonces import FleetNonces
        from keyproxy.fleet.sync import FleetSync

        fleet, vault, pipeline, metrics = self.fleet, self.vault, self.pipeline, self.metrics
        assert fleet is not None and vault.replica is not None
        metrics.shared_state_up.set(0)

        def fleet_up(ok: bool) -> None:
            metrics.shared_state_up.set(1 if ok else 0)
            metrics.shared_state_version.set(self.fleet_sync.applied if self.fleet_sync else 0)

        shared = self.settings.shared_state
        governor = self.governor
        self.fleet_sync = FleetSync(fleet, vault, vault.replica, self.store, self.reload,
                                    (shared.instance if shared else None) or "", "", fleet_up,
                                    lambda: self.trail.head.seq,
                                    governor.set_fleet if governor is not None else (lambda fleet, on_this_host: None),
                                    pipeline.core.last_seen, pipeline.core.risk.latch)
        pipeline.core.fleet = True
        pipeline.core.counters.started = None  # the fleet's buckets are in Redis: a restart refills none of them
        gate = FleetGate(fleet)
        pipeline.admission.gate, pipeline.admission.sync = gate, self.fleet_sync
        pipeline.core.sweeps.fleet_pending = gate.others_pending  # cancels wait for the other instances' orders too
        self.canceller.fleet_pending = gate.pending_of  # and a halt's sweep for the scope's orders through any of them
        pipeline.core.shared_nonces = FleetNonces(fleet)
        self.fleet_usage = FleetUsage(fleet)
        pipeline.core.in_flight.flights = self.fleet_usage
        pipeline.core.sweeps.fleet_release = self.fleet_usage.release  # a cancel-all's turn in Redis ends
        if pipeline.core.usage is not None:
            pipeline.core.usage.mirror = self.fleet_usage
        self.store.placed_mirror = self.fleet_usage
        self.fleet_book = book = FleetBook(fleet, self.fleet_usage, pipeline.core.risk.book, self.store)
        pipeline.core.sweeps.fleet_book = book.holds_newest  # a cancel-all is judged on the fleet's newest book
        pipeline.core.book_seen = lambda bot: book.seen.get(bot, 0)
        pipeline.admission.book, pipeline.admission.usage = book, self.fleet_usage
        try:  # the fleet's vault, halts and throttles, before the first request
            await self.fleet_sync.catch_up()
        except SharedStateUnavailable as e:
            log.error("starting with the vault and halts this instance last had", reason=str(e))

    async def _listen_for_bots(self) -> None:
        ps, listen, pipeline, recorder = self.settings.proxy, self.settings.listen, self.pipeline, self.recorder
        socket_limits = SocketLimits(stream_token_reuse_ms=int(ps.stream_token_reuse * 1000),
                                     max_sockets=ps.max_sockets)
        self._websockets = WebSocketEdge(pipeline.core, self.clients, socket_limits, recorder.finish, recorder.react,
                                         lambda account, n: self.metrics.websockets.labels(account).inc(n),
                                         admission=pipeline.admission)
        front = ProxyFrontDoor(pipeline, frozenset(), recorder.finish, recorder.react, self._websockets)
        # lingering: after an answer sent before the whole body was read, aiohttp reads and drops the rest
        # (so the bot sees the answer, not a reset) for 10 s by default; 1 s covers any bot on a working
        # link and keeps a slow one from holding the connection that long past body_timeout
        server = SafeServer(front, keepalive_timeout=ps.header_timeout, max_line_size=8190, max_field_size=8190,
                            lingering_time=1.0, access_log=None)
        self._runner = runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=ps.shutdown_grace)
        await runner.setup()
        tls = server_context(listen.tls_cert, listen.tls_key) if listen.tls_cert and listen.tls_key else None
        site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True, reuse_port=self.worker is not None,
                           ssl_context=tls)
        await _listen(site, "proxy", listen.host, listen.port)
        port = runner.addresses[0][1]
        front.allow_hosts(allowed_hosts(listen.host, port))  # known only once bound (port 0 in tests)
        self.base_url = f"{listen.scheme}://{listen.host if ':' not in listen.host else f'[{listen.host}]'}:{port}"
        if self.fleet_sync is not None:  # named once the port is known
            self.fleet_sync.instance = (self.fleet_sync.instance or f"{socket.gethostname()}:{port}") + \
                (f"-w{self.index}" if self.worker else "")
            self.fleet_sync.listen = self.base_url
            with contextlib.suppress(SharedStateUnavailable):
                await self.fleet_sync.heartbeat()

    async def _open_admin_socket(self, keeper: DeadManKeeper) -> None:
        controls = self.controls = Controls(
            self.vault, self.adapters, self.base_url, self.reload, audit=self.trail.append, state=self.store,
            pinned=lambda: self.settings.bot_policies, reload_config=self.reload_config,
            source_for_new=self._source_for_rekey,
            budgets=(lambda: self.governor.report(time.time())) if self.governor is not None else None)
        controls.dead_man = keeper.report
        self._admin_runner = web.AppRunner(build_admin_app(controls, self.verify_new_key, self.audit_keys,
                                                           self.canceller, self.fleet_sync),
                                           handle_signals=False, access_log=None)
        await self._admin_runner.setup()
        if not self.index:  # the other workers take admin changes from the fleet, as other hosts do
            old_umask = os.umask(0o177)
            try:
                await web.UnixSite(self._admin_runner, str(self.socket)).start()
            finally:
                os.umask(old_umask)
            os.chmod(self.socket, 0o600)

    async def start(self, ready: Callable[[str], None]) -> None:
        """Serve: the fleet's state first, then the listeners, the admin socket and the background work."""
        if self.fleet is not None and self.vault.replica is not None:
            await self._join_fleet()
        # answers relayed but not yet learned when the last run was killed, learned before any bot is served (worker
        # 0 also learns those of workers a run with more of them left)
        core = self.pipeline.core
        replayed = core.replay_journal()
        if not self.index:
            for index in orphans(self.settings.state_dir, self.worker[1] if self.worker else 1):
                replayed += core.replay_journal(AnswerJournal(self.settings.state_dir, self.store, index))
        if replayed:
            self.trail.append("journal.replayed", answers=replayed)
        await self._listen_for_bots()
        s = self.settings
        metrics_port = s.metrics.port + self.index if s.metrics.port and self.index else s.metrics.port
        self._metrics_runner, metrics_url = (await _serve_metrics(self.metrics, s.metrics.host, metrics_port)
                                             if s.metrics.enabled else (None, "disabled"))
        if not self.index:
            prepare_socket_path(self.socket)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        keeper = DeadManKeeper(lambda: self.state.snapshot, self.own_calls, self.trail.append, self.metrics)
        await self._open_admin_socket(keeper)
        self._start_background(keeper)
        for owed, reason in ({} if self.index else self.store.usage_items(CANCEL_OWED)).items():
            scope, _, target = owed[len(CANCEL_OWED):].partition("|")
            log.warning("cancelling orders an anomaly action owed before the restart", scope=scope, target=target)
            self.cancel_later(scope, target, reason)
        if not self.index:  # serving: a stop from here on is clean or a crash (a failed start is neither)
            self.store.set_usage(RUN_KEY, "running")
        snap = self.state.snapshot
        self.trail.append("daemon.start", listen=self.base_url, vault_changes=self.vault.changes(),
                          accounts=len(snap.accounts), bots=len(snap.bots_by_key) + len(snap.bots_by_token),
                          **({"instance": self.fleet_sync.instance} if self.fleet_sync is not None else {}))
        ready(f"keyproxy worker {self.index} listening on {self.base_url} (metrics {metrics_url})" if self.index else
              f"keyproxy listening on {self.base_url} (admin socket {self.socket}; metrics {metrics_url})")

    def _start_background(self, keeper: DeadManKeeper) -> None:
        tasks = [self.trail.run_flusher(), keeper.run()]
        if not self.index:  # state.db's audit head is the configured trail's (a worker's is published to the fleet)
            tasks.append(self._persist_head())
        heartbeats = HeartbeatWatch(lambda: self.state.snapshot, self.pipeline.core.last_seen, self.canceller,
                                    self.store, self.trail.append, self.metrics,
                                    fleet_seen=(lambda: self.fleet_sync.fleet_last_seen) if self.fleet_sync else dict)
        risk_watch = RiskWatch(self.pipeline.core, self.pipeline.market_data, self.own_calls, self.canceller,
                               self.store, self.trail.append, self.metrics, responder=self.recorder.responder)
        self.controls.risk = risk_watch.report
        # after a sweep, the book reads what the exchange says of the swept scopes at once (not a scope a minute)
        self.canceller.after = lambda account: risk_watch.reconcile(account, every_scope=True)
        tasks += [heartbeats.run(), risk_watch.run(), self._rotation_reminders(), self._watch_loop_lag(),
                  self._anomaly_ticks()]
        if self.fleet_sync is not None:
            self.controls.fleet = self.fleet_sync.report
            tasks.append(self.fleet_sync.run())
            if self.fleet_usage is not None:
                tasks.append(self.fleet_usage.run())
            if self.fleet_book is not None:
                tasks.append(self.fleet_book.run())
        self.background = [asyncio.create_task(t) for t in tasks]

    async def _persist_head(self) -> None:
        while True:  # a synchronous=FULL commit takes ~1-5 ms: off the event loop
            await asyncio.sleep(1)
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(None, self.store.record_audit_head,
                                                                 self.trail.synced.seq)  # fsynced lines only

    def _orders_on_their_way(self, account: str, bot: str | None) -> tuple[int, int]:
        """The orders of `bot` (None: of every bot of `account`) sent whose answer may still be read (a sweep waits
        for them), and those whose answer never will be (timed out, a 5xx, their socket closed: fate unknown)."""
        core = self.pipeline.core
        now, snap = core.clock_ms() / 1000, self.state.snapshot
        bots = [bot] if bot is not None else [b for b in core.in_flight.bots()
                                               if (entry := snap.bot_named(b)) is not None
                                               and entry.info.account == account]
        awaited = sum(len(legs) for b in bots for legs in core.in_flight.awaited(b, now))  # legs, as `count`
        return awaited, sum(core.in_flight.count(b, now) for b in bots) - awaited

    async def _anomaly_ticks(self) -> None:
        """The findings anomaly rules held back (their alert budget), said when their window ends."""
        while True:
            await asyncio.sleep(ANOMALY_TICK_S)
            if self.recorder.responder is not None:
                with contextlib.suppress(Exception):  # logged and counted by the responder
                    self.recorder.responder.tick(time.time())

    async def _watch_loop_lag(self) -> None:
        """`keyproxy_event_loop_lag_seconds`: how late a 25 ms timer fires, 40 times a second. A request's
        time on the loop is every other request's wait, so this is what a synchronous step costs them all."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(LAG_TICK_S)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - asked - LAG_TICK_S))

    async def _rotation_reminders(self) -> None:
        """Once a day (and at start): a warning for every key that is due or overdue for rotation."""
        while True:
            ro = self.settings.rotation
            now = time.time()
            for entry in self.state.snapshot.accounts.values():
                due_at, due = rotation_due(entry.info, now, ro.rotate_every, ro.warn_before)
                if due and due_at is not None:
                    log.warning("key due for rotation", account=entry.info.name,
                                due=time.strftime("%Y-%m-%d", time.gmtime(due_at)), overdue=now >= due_at)
            await asyncio.sleep(86400)

    async def stop(self) -> None:
        """Requests in flight finish (bounded by shutdown_grace), sockets get a going-away close, every
        writer is flushed and closed, the fleet is told this instance left."""
        notify("STOPPING=1")
        grace = self.settings.proxy.shutdown_grace
        log.info("shutting down: waiting for requests in flight", grace_seconds=grace)
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        if self._websockets is not None:
            await self._websockets.close_all(min(grace, 5.0))  # going-away close for every bot socket
        if self._runner is not None:
            await self._runner.cleanup()  # stops accepting, lets in-flight requests finish (bounded)
        self.pipeline.core.flush_learning()  # the last answers' bookkeeping, while the fleet's writer still runs
        if self.fleet_usage is not None and not await self.fleet_usage.drained(min(grace, 5.0)):
            log.error("stopping with bookkeeping the fleet has not received (Redis out of reach): the bots' open "
                      "orders listed through keyproxy set their counts again")
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        for task in self.background:
            task.cancel()
        await self.clients.close()
        for fleet_client in (self.pipeline.admission.gate, self.pipeline.core.shared_nonces):
            if fleet_client is not None:
                with contextlib.suppress(Exception):
                    await fleet_client.close()
        with contextlib.suppress(Exception):
            self.trail.append("daemon.stop")
        self.trail.close()
        if not self.index:
            self.store.record_audit_head(self.trail.head.seq)
        self.pipeline.core.flush_learning()  # anything learned since (nothing, normally), before state.db closes
        if not self.index:
            self.store.set_usage(RUN_KEY, "stopped")
        self.store.close()
        if self.fleet is not None:
            if self.fleet_sync is not None:
                with contextlib.suppress(SharedStateUnavailable):
                    self.fleet.leave(self.fleet_sync.instance)
            self.fleet.close()
        if not self.index:
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()


async def run(settings: Settings, vault: Vault, ready: Callable[[str], None],
              stop: asyncio.Event | None = None, worker: tuple[int, int] | None = None) -> None:
    """`keyproxy serve`: build the daemon, serve until SIGTERM/SIGINT (or `stop`), then stop it."""
    daemon = Daemon(settings, vault, worker)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await daemon.start(ready)  # a start that fails (an address in use) ends the process: nothing to undo
    try:
        await stop.wait()
    finally:
        await daemon.stop()
