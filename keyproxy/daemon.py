"""The composition root: builds vault access, adapters, proxy, admin socket; runs until SIGTERM.

Nothing imports this module; it hands every part what it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from keyproxy.admin.controls import Controls
from keyproxy.admin.server import build_admin_app, prepare_socket_path
from keyproxy.config import Settings
from keyproxy.exchanges import default_adapters
from keyproxy.proxy.pipeline import Outcome, Pipeline, ProxyLimits
from keyproxy.proxy.registry import Snapshot, build_snapshot
from keyproxy.proxy.server import ProxyFrontDoor, SafeServer, allowed_hosts, assert_c_parser
from keyproxy.proxy.upstream import UpstreamClients
from keyproxy.state import NonceSequence, StateStore
from keyproxy.statedir import socket_path
from keyproxy.vault import Vault

log = logging.getLogger("keyproxy.daemon")


@dataclass
class State:
    """The current registry snapshot; replaced whole on every admin change."""

    snapshot: Snapshot


def configure_logging() -> None:
    """JSON-ish lines on stderr; aiohttp's own loggers are silenced (they echo raw request lines)."""
    import structlog

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    for name in ("aiohttp", "aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.client", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    structlog.configure(
        processors=[structlog.processors.TimeStamper(fmt="iso", utc=True), structlog.processors.add_log_level,
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def request_recorder() -> Callable[[Outcome, int], None]:
    import time

    import structlog

    logger = structlog.get_logger("keyproxy.request")

    def record(o: Outcome, status: int) -> None:
        logger.info("request", request_id=o.request_id, method=o.method, account=o.account, bot=o.bot,
                    endpoint_class=o.endpoint_class, endpoint=o.endpoint, decision=o.decision, code=o.code,
                    status=status, upstream_status=o.upstream_status,
                    upstream_ms=round(o.upstream_ms, 2) if o.upstream_ms is not None else None,
                    total_ms=round((time.perf_counter() - o.started) * 1000, 2))

    return record


async def run(settings: Settings, vault: Vault, ready: Callable[[str], None],
              stop: asyncio.Event | None = None) -> None:
    assert_c_parser()
    adapters = default_adapters()
    state = State(build_snapshot(vault, adapters))

    def reload() -> None:
        state.snapshot = build_snapshot(vault, adapters)

    ps = settings.proxy
    limits = ProxyLimits(ps.max_body_bytes, ps.body_timeout, ps.upstream_timeout, ps.max_response_bytes)
    clients = UpstreamClients()
    store = StateStore(settings.state_dir / "state.db")
    pipeline = Pipeline(lambda: state.snapshot, clients, limits, NonceSequence(store), store)
    listen = settings.listen
    if not listen.is_loopback:
        log.warning("listening on a non-loopback address %s (listen.allow_non_loopback)", listen.host)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    front = ProxyFrontDoor(pipeline, frozenset(), request_recorder())
    server = SafeServer(front, keepalive_timeout=ps.header_timeout, max_line_size=8190, max_field_size=8190,
                        access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=ps.shutdown_grace)
    await runner.setup()
    site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    front.allow_hosts(allowed_hosts(listen.host, port))  # known only once bound (port 0 in tests)
    base_url = f"http://{listen.host if ':' not in listen.host else f'[{listen.host}]'}:{port}"

    sock = socket_path(settings)
    prepare_socket_path(sock)
    admin_runner = web.AppRunner(build_admin_app(Controls(vault, adapters, base_url, reload)),
                                 handle_signals=False, access_log=None)
    await admin_runner.setup()
    old_umask = os.umask(0o177)
    try:
        await web.UnixSite(admin_runner, str(sock)).start()
    finally:
        os.umask(old_umask)
    os.chmod(sock, 0o600)
    ready(f"keyproxy listening on {base_url} (admin socket {sock})")
    try:
        await stop.wait()
    finally:
        log.info("shutting down: waiting up to %ss for requests in flight", ps.shutdown_grace)
        await admin_runner.cleanup()
        await runner.cleanup()  # stops accepting, lets in-flight requests finish (bounded)
        await clients.close()
        store.close()
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
