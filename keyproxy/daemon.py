"""The composition root: builds vault access, adapters, proxy, audit, metrics, admin socket; runs until SIGTERM.

Nothing imports this module; it hands every part what it needs.
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

import aiohttp
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
from keyproxy.exchanges.base import IncomingRequest, SignContext
from keyproxy.errors import KeyproxyError
from keyproxy.proxy.cancel_orders import Canceller
from keyproxy.proxy.dead_man import DeadManKeeper, check_switches
from keyproxy.proxy.heartbeat import HeartbeatWatch
from keyproxy.proxy.risk_watch import RiskWatch
from keyproxy.proxy.own_calls import OwnCalls
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
from keyproxy.state import NonceSequence, StateStore, UsageBook
from keyproxy.statedir import socket_path
from keyproxy.vault import Vault

log = get_logger("keyproxy.daemon")


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


async def run(settings: Settings, vault: Vault, ready: Callable[[str], None],
              stop: asyncio.Event | None = None, worker: tuple[int, int] | None = None) -> None:
    """`worker` (index, count): one of `serve --workers N`'s processes on a shared port (workers.py); worker 0
    keeps the admin socket and the configured audit directory, the others `audit/worker-I` and no socket."""
    assert_c_parser()
    index = worker[0] if worker else 0
    adapters = default_adapters()
    # durable as the audit trail is: fsync per commit only when the audit trail fsyncs every line (state.py)
    store = StateStore(settings.state_dir / "state.db", "FULL" if settings.audit.fsync == "always" else "NORMAL")
    # an older vault copied into place would bring back revoked bots and keys: refuse to serve it
    store.check_vault_current(vault.vault_id, vault.changes(), vault.path)
    fleet = vault.replica.fleet if vault.replica is not None else None
    if fleet is not None:  # a fleet: halts and throttles are shared (the fleet's are taken before serving)
        store.mirror = fleet
        fleet.never_before(int(store.usage_items("fleet|control_seq").get("fleet|control_seq", "0")))
    store.record_vault_seen(vault.vault_id, vault.changes())
    # replaced whole by a config reload; "file" is the file's own view (without `serve --port` overrides)
    config = {"settings": settings, "file": settings}
    with contextlib.suppress(ConfigError):
        config["file"] = load_settings(settings.config_file)
    check_switches(settings.account_limits, {a.name: a.exchange for a in vault.list_accounts()})
    state = State(build_snapshot(vault, adapters, store.halts(), settings.bot_policies, settings.account_limits,
                                 store.throttles(time.time())))
    register_secrets(vault, state.snapshot)
    for exchange in {a.info.exchange for a in state.snapshot.accounts.values()}:
        if exchange in adapters:
            adapters[exchange].warm()  # a library's first import, paid now rather than by the first order

    au = settings.audit
    audit_dir = settings.audit_dir / f"worker-{index}" if index else settings.audit_dir  # one writer per chain
    trail = AuditTrail(audit_dir, vault.audit_key(), fsync=au.fsync, interval_ms=au.fsync_interval_ms,
                       max_bytes=au.max_bytes)
    if trail.recovered_bytes:
        trail.append("trail.recovered", dropped_bytes=trail.recovered_bytes)
    if au.fail_open:
        log.warning("audit.fail_open = true: requests are forwarded even when the audit trail cannot be written")
    metrics = Metrics()
    metrics.add_collector(lambda: key_age_families(
        (e.info for e in state.snapshot.accounts.values()), None, config["settings"].rotation.rotate_every,
        config["settings"].rotation.warn_before))
    recorder = Recorder(trail, metrics, fail_open=au.fail_open)

    def reload() -> None:
        state.snapshot = build_snapshot(vault, adapters, store.halts(), config["settings"].bot_policies,
                                        config["settings"].account_limits, store.throttles(time.time()))
        register_secrets(vault, state.snapshot)
        metrics.halts_active.set(len(state.snapshot.halts))
        store.record_vault_seen(vault.vault_id, vault.changes())

    def revoke(account: str) -> None:
        asyncio.get_running_loop().create_task(revoke_at_exchange(account))

    async def revoke_at_exchange(account: str) -> None:
        """The revoke_key action: ask the exchange to delete the (already quarantined) real key."""
        entry = state.snapshot.accounts.get(account)
        spec = getattr(entry.adapter, "revoke_request", None) if entry else None
        if entry is None or entry.adapter is None or entry.upstream is None or entry.key is None or spec is None:
            trail.append("key.revoke", account=account, result="not offered by this exchange: quarantined only")
            return
        method, path, body = spec
        endpoint = entry.adapter.classify(method, path)
        origin = entry.upstream.origin_for(path)
        request = IncomingRequest(method, path, "", {"content-type": "application/json"}, body)
        try:
            out = entry.adapter.sign(request, entry.key, endpoint, SignContext(  # type: ignore[arg-type]
                origin or "", entry.upstream.environment.name, int(time.time() * 1000)))
            session = clients.session(entry.upstream.insecure_loopback)
            async with session.request(out.method, out.url, headers=out.headers, data=out.body or None,
                                       allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                answer = await resp.read()
            revoked = resp.status == 200 and not entry.adapter.key_rejected(resp.status, answer)  # type: ignore[attr-defined]
        except Exception as e:
            trail.append("key.revoke", account=account, result=f"failed: {type(e).__name__}")
            return
        if revoked:
            vault.set_account_status(account, "revoked")
            metrics.key_actions.labels(account, "revoke").inc()
            reload()
        trail.append("key.revoke", account=account, result="revoked at the exchange" if revoked else
                     f"the exchange answered {resp.status}: still quarantined")

    recorder.responder = Responder(Engine(dict(settings.anomaly) if settings.anomaly else None), vault, store,
                                   trail.append, metrics, reload, revoke=revoke)

    metrics.halts_active.set(len(state.snapshot.halts))

    ps = settings.proxy
    limits = ProxyLimits(ps.max_body_bytes, ps.body_timeout, ps.upstream_timeout, ps.max_response_bytes)
    clients = UpstreamClients()
    nonces = NonceSequence(store)
    gs = settings.governor
    governor = Governor(gs.reserve, dict(gs.shares), dict(gs.limits), dict(gs.tiers)) if gs.enabled else None
    pipeline = Pipeline(lambda: state.snapshot, clients, limits, recorder.before_forward,
                        nonces, store, UsageBook(store), governor=governor, public_ttls=gs.cache)
    if pipeline.core.governor is not None:
        metrics.add_collector(lambda: budget_families(pipeline.core.governor, time.time()))  # type: ignore[arg-type]
    listen = settings.listen
    if not listen.is_loopback:
        log.warning("listening on a non-loopback address (listen.allow_non_loopback)", host=listen.host)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    fleet_sync = fleet_usage = None
    if fleet is not None and vault.replica is not None:  # a fleet: the gate charges what holds across instances
        from keyproxy.fleet.gate import FleetGate, FleetUsage
        from keyproxy.fleet.nonces import FleetNonces
        from keyproxy.fleet.sync import FleetSync

        metrics.shared_state_up.set(0)

        def fleet_up(ok: bool) -> None:
            metrics.shared_state_up.set(1 if ok else 0)
            metrics.shared_state_version.set(fleet_sync.applied if fleet_sync else 0)

        shared = settings.shared_state
        fleet_sync = FleetSync(fleet, vault, vault.replica, store, reload, (shared.instance if shared else None) or "",
                               "", fleet_up, lambda: trail.head.seq,
                               governor.set_fleet if governor is not None else (lambda fleet, on_this_host: None),
                               pipeline.core.last_seen)
        pipeline.core.fleet = True
        pipeline.admission.gate, pipeline.admission.sync = FleetGate(fleet), fleet_sync
        pipeline.core.shared_nonces = FleetNonces(fleet)
        fleet_usage = FleetUsage(fleet)
        if pipeline.core.usage is not None:
            pipeline.core.usage.mirror = fleet_usage
        store.placed_mirror = fleet_usage
        try:  # the fleet's vault, halts and throttles, before the first request
            await fleet_sync.catch_up()
        except SharedStateUnavailable as e:
            log.error("starting with the vault and halts this instance last had", reason=str(e))

    socket_limits = SocketLimits(stream_token_reuse_ms=int(ps.stream_token_reuse * 1000))
    websockets = WebSocketEdge(pipeline.core, clients, socket_limits, recorder.finish, recorder.react,
                               lambda account, n: metrics.websockets.labels(account).inc(n),
                               admission=pipeline.admission)
    front = ProxyFrontDoor(pipeline, frozenset(), recorder.finish, recorder.react, websockets)
    # lingering: after an answer sent before the whole body was read, aiohttp reads and drops the rest
    # (so the bot sees the answer, not a reset) for 10 s by default; 1 s covers any bot on a working
    # link and keeps a slow one from holding the connection that long past body_timeout
    server = SafeServer(front, keepalive_timeout=ps.header_timeout, max_line_size=8190, max_field_size=8190,
                        lingering_time=1.0, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=ps.shutdown_grace)
    await runner.setup()
    tls = server_context(listen.tls_cert, listen.tls_key) if listen.tls_cert and listen.tls_key else None
    await _listen(web.TCPSite(runner, listen.host, listen.port, reuse_address=True, reuse_port=worker is not None,
                              ssl_context=tls), "proxy", listen.host, listen.port)
    port = runner.addresses[0][1]
    front.allow_hosts(allowed_hosts(listen.host, port))  # known only once bound (port 0 in tests)
    base_url = f"{listen.scheme}://{listen.host if ':' not in listen.host else f'[{listen.host}]'}:{port}"

    if fleet_sync is not None:  # named once the port is known
        fleet_sync.instance = (fleet_sync.instance or f"{socket.gethostname()}:{port}") + (f"-w{index}" if worker else "")
        fleet_sync.listen = base_url
        with contextlib.suppress(SharedStateUnavailable):
            await fleet_sync.heartbeat()

    metrics_port = settings.metrics.port + index if settings.metrics.port and index else settings.metrics.port
    metrics_runner, metrics_url = (await _serve_metrics(metrics, settings.metrics.host, metrics_port)
                                   if settings.metrics.enabled else (None, "disabled"))

    sock = socket_path(settings)
    if not index:
        prepare_socket_path(sock)
    def reload_config() -> dict[str, Any]:
        """SIGHUP / `keyproxy reload`: a valid file takes effect for bot policies without dropping a
        connection; an invalid one is refused (file, key, reason logged) and the old one stays."""
        old = config["file"]
        try:
            new = load_settings(old.config_file)
        except ConfigError as e:
            log.error("config reload refused; keeping the running config", reason=str(e))
            trail.append("config.reload", result=f"refused: {e}"[:300])
            raise
        try:
            check_switches(new.account_limits, {a.name: a.exchange for a in vault.list_accounts()})
        except ConfigError as e:
            log.error("config reload refused; keeping the running config", reason=str(e))
            trail.append("config.reload", result=f"refused: {e}"[:300])
            raise
        restart = [name for name in ("vault", "listen", "proxy", "audit", "metrics", "shared_state")
                   if getattr(new, name) != getattr(old, name)]
        ng = new.governor
        if ng.enabled != old.governor.enabled or ng.cache != old.governor.cache:
            restart.append("governor")
        if pipeline.core.governor is not None:  # budgets, shares and tiers apply at once
            pipeline.core.governor.configure(ng.reserve, ng.shares, ng.limits, ng.tiers)
        config["file"] = new
        config["settings"] = replace(config["settings"], bot_policies=new.bot_policies,
                                     account_limits=new.account_limits)
        reload()
        trail.append("config.reload", result="ok", pinned_bots=sorted(new.bot_policies), restart_needed=restart)
        log.info("config reloaded", file=str(new.config_file), pinned_bots=sorted(new.bot_policies))
        if restart:
            log.warning("config reloaded; these sections change only on restart", sections=restart)
        return {"config_file": str(new.config_file) if new.config_file else None,
                "pinned_bots": sorted(new.bot_policies), "restart_needed": restart}

    def on_sighup() -> None:
        with contextlib.suppress(ConfigError):
            reload_config()

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    def source_for_rekey(kind: str, passphrase_file: str | None, key_file: str | None) -> Any:
        from pathlib import Path

        from keyproxy.unlock import UnlockInputs, source_for_new

        inputs = UnlockInputs(Path(passphrase_file) if passphrase_file else None, Path(key_file) if key_file else None)
        return source_for_new(kind, config["settings"], inputs)

    controls = Controls(vault, adapters, base_url, reload, audit=trail.append, state=store,
                        pinned=lambda: config["settings"].bot_policies, reload_config=reload_config,
                        source_for_new=source_for_rekey,
                        budgets=(lambda: governor.report(time.time())) if governor is not None else None)
    def at_exchange(entry: Any, key: Any = None) -> KeyAtExchange | None:
        if entry is None or entry.adapter is None or entry.upstream is None or (key or entry.key) is None:
            return None
        return KeyAtExchange(entry.info.name, entry.info.exchange, entry.adapter, entry.upstream, key or entry.key)

    def own_nonce(target: KeyAtExchange) -> int | None:
        return nonces.next(target.name) if target.adapter.needs_nonce else None

    async def verify_new_key(account: str, creds: Any) -> tuple[bool, str]:
        entry = state.snapshot.accounts.get(account)
        target = at_exchange(entry, real_key(entry.info.key_type, creds)) if entry is not None else None
        if target is None:
            return False, f"no account {account!r} served by this daemon"
        return await check_new_key(target, clients, own_nonce(target))

    async def audit_keys(name: str | None) -> dict[str, Any]:
        targets = [t for t in map(at_exchange, state.snapshot.accounts.values()) if t is not None]
        return await audit_accounts(targets, lambda account: bot_scopes(vault.list_bots(), account), clients,
                                    own_nonce, name)

    canceller = Canceller(lambda: state.snapshot, store, OwnCalls(pipeline.core, clients), trail.append)
    cancelling: set[asyncio.Task[Any]] = set()

    def cancel_later(scope: str, target: str, reason: str) -> None:
        """An anomaly action's cancels: after the request that completed the finding, never inside it."""
        async def run() -> None:
            try:
                await canceller.cancel(scope, target, reason)
            except Exception as e:  # a bug or a vanished scope: logged, the halt stays in force
                log.error("cancelling orders failed", scope=scope, target=target, kind=type(e).__name__)
        task = loop.create_task(run())
        cancelling.add(task)
        task.add_done_callback(cancelling.discard)

    recorder.responder.cancel_orders = cancel_later
    keeper = DeadManKeeper(lambda: state.snapshot, OwnCalls(pipeline.core, clients), trail.append, metrics)
    controls.dead_man = keeper.report
    admin_runner = web.AppRunner(build_admin_app(controls, verify_new_key, audit_keys, canceller, fleet_sync),
                                 handle_signals=False, access_log=None)
    await admin_runner.setup()
    if not index:  # the other workers take admin changes from the fleet, as other hosts do
        old_umask = os.umask(0o177)
        try:
            await web.UnixSite(admin_runner, str(sock)).start()
        finally:
            os.umask(old_umask)
        os.chmod(sock, 0o600)

    background: list[asyncio.Task[Any]] = [asyncio.create_task(trail.run_flusher())]

    async def persist_head() -> None:
        while True:  # a synchronous=FULL commit takes ~1-5 ms: off the event loop
            await asyncio.sleep(1)
            with contextlib.suppress(Exception):
                await loop.run_in_executor(None, store.record_audit_head, trail.head.seq)

    if not index:  # state.db's audit head is the configured trail's (a worker's is published to the fleet)
        background.append(asyncio.create_task(persist_head()))
    background.append(asyncio.create_task(keeper.run()))
    heartbeats = HeartbeatWatch(lambda: state.snapshot, pipeline.core.last_seen, canceller, store, trail.append,
                                metrics, fleet_seen=(lambda: fleet_sync.fleet_last_seen) if fleet_sync else dict)
    background.append(asyncio.create_task(heartbeats.run()))
    risk_watch = RiskWatch(pipeline.core, pipeline.market_data, OwnCalls(pipeline.core, clients), canceller, store,
                           trail.append, metrics, responder=recorder.responder)
    background.append(asyncio.create_task(risk_watch.run()))
    controls.risk = risk_watch.report
    if fleet_sync is not None:
        controls.fleet = fleet_sync.report

    async def rotation_reminders() -> None:
        """Once a day (and at start): a warning for every key that is due or overdue for rotation."""
        while True:
            ro = config["settings"].rotation
            now = time.time()
            for entry in state.snapshot.accounts.values():
                due_at, due = rotation_due(entry.info, now, ro.rotate_every, ro.warn_before)
                if due and due_at is not None:
                    log.warning("key due for rotation", account=entry.info.name,
                                due=time.strftime("%Y-%m-%d", time.gmtime(due_at)), overdue=now >= due_at)
            await asyncio.sleep(86400)

    background.append(asyncio.create_task(rotation_reminders()))
    if fleet_sync is not None:
        background.append(asyncio.create_task(fleet_sync.run()))
        if fleet_usage is not None:
            background.append(asyncio.create_task(fleet_usage.run()))
    trail.append("daemon.start", listen=base_url, vault_changes=vault.changes(), accounts=len(state.snapshot.accounts),
                 bots=len(state.snapshot.bots_by_key) + len(state.snapshot.bots_by_token),
                 **({"instance": fleet_sync.instance} if fleet_sync is not None else {}))
    ready(f"keyproxy worker {index} listening on {base_url} (metrics {metrics_url})" if index else
          f"keyproxy listening on {base_url} (admin socket {sock}; metrics {metrics_url})")
    try:
        await stop.wait()
    finally:
        notify("STOPPING=1")
        log.info("shutting down: waiting for requests in flight", grace_seconds=ps.shutdown_grace)
        await admin_runner.cleanup()
        await websockets.close_all(min(ps.shutdown_grace, 5.0))  # going-away close for every bot socket
        await runner.cleanup()  # stops accepting, lets in-flight requests finish (bounded)
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        for task in background:
            task.cancel()
        await clients.close()
        for fleet_client in (pipeline.admission.gate, pipeline.core.shared_nonces):
            if fleet_client is not None:
                with contextlib.suppress(Exception):
                    await fleet_client.close()
        with contextlib.suppress(Exception):
            trail.append("daemon.stop")
        trail.close()
        if not index:
            store.record_audit_head(trail.head.seq)
        store.close()
        if fleet is not None:
            if fleet_sync is not None:
                with contextlib.suppress(SharedStateUnavailable):
                    fleet.leave(fleet_sync.instance)
            fleet.close()
        if not index:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
