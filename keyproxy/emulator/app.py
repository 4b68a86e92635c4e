"""Generic exchange-emulator app: loopback guard, journal, control API, routing.

Exchange specifics live in one module per exchange (``EXCHANGE_MODULES``);
this file only decides which module owns a path and records every request.
Control endpoints live under ``/_emulator/`` (no exchange uses that prefix):

* ``GET  /_emulator/health``  -> ``{"status": "ok", "exchanges": [...]}``
* ``GET  /_emulator/journal`` -> list of request records (oldest first)
* ``GET  /_emulator/state``   -> balances / orders / withdrawals per key
* ``POST /_emulator/reset``   -> clear journal and state
* ``GET|POST /_emulator/limits`` -> the exchanges' rate limits (``binance_limits.py``, ``rate_limits.py``)
* ``POST /_emulator/framing`` -> ``{"chunked": true}``: answer with chunked transfer encoding and no
  Content-Length, as exchanges behind a CDN do (``false`` restores Content-Length)
* ``POST /_emulator/price`` -> ``{"exchange": "binance", "symbol": "BTCUSDT", "price": "59000"[, "venue":
  "fapi"]}``: the market's price moves there, and resting limit orders it crosses fill (Binance, Hyperliquid) and
  the conditional orders it passes fire (Binance's algo orders; OKX's, symbol an instId: ``BTC-USDT``)
* ``POST /_emulator/dcp`` -> ``{"api_key": "...", "products": ["SPOT", "DERIVATIVES"]}``: Bybit's account
  manager switches disconnect-cancel-all on for these products of the key's account (``bybit_dcp.py``);
  ``{"drop_sockets": true}``: Bybit closes every private socket (a network cut), as it may at any time
* ``POST /_emulator/faults`` -> ``{"fail_containing": ["..."]}``: an exchange request whose query or body
  contains one of these strings (an order id) is answered HTTP 503 and not carried out (``[]`` clears);
  ``hold_before_containing`` / ``hold_after_containing`` with ``hold_seconds`` slow them instead, and
  ``binary_containing`` has Binance's WebSocket API answer such a frame in a binary frame (as SBE answers come)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import ipaddress
import signal
import sys
import time
from decimal import Decimal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from keyproxy.emulator.accounts import AccountsError, EmulatedKey, load_accounts
from keyproxy.emulator.binance_streams import serve_market
from keyproxy.emulator.base import Clock, ExchangeEmulator, RequestNote
from keyproxy.emulator.journal import Journal

EXCHANGE_MODULES = {
    "binance": "keyproxy.emulator.binance",
    "bybit": "keyproxy.emulator.bybit",
    "coinbase": "keyproxy.emulator.coinbase",
    "hyperliquid": "keyproxy.emulator.hyperliquid",
    "kraken": "keyproxy.emulator.kraken",
    "okx": "keyproxy.emulator.okx",
}
CONTROL_PREFIX = "/_emulator/"

JOURNAL = web.AppKey("journal", Journal)
EMULATORS = web.AppKey("emulators", list)
CLOCK = web.AppKey("clock", object)
FRAMING = web.AppKey("framing", dict)
FAULTS = web.AppKey("faults", dict)
_NOTE: Any = (
    web.RequestKey("note", RequestNote) if hasattr(web, "RequestKey") else "keyproxy.emulator.note"
)


def check_loopback(host: str) -> None:
    """Refuse anything but a loopback address: the emulator accepts any key it
    is given and must never be reachable from another machine."""
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"refusing to listen on {host!r}: not a loopback IP address") from None
    if not address.is_loopback:
        raise ValueError(f"refusing to listen on {host}: not a loopback address")


def _emulators(
    accounts: list[EmulatedKey], exchanges: Sequence[str] | None, clock: Clock
) -> list[Any]:
    """One emulator per exchange named in ``exchanges`` or in the accounts (default binance)."""
    names = list(exchanges or [])
    names += [k.exchange for k in accounts if k.exchange not in names]
    names = list(dict.fromkeys(names)) or ["binance"]
    for name in names:
        if name not in EXCHANGE_MODULES:
            raise AccountsError(
                f"accounts: exchange {name!r} is not emulated "
                f"(supported: {', '.join(sorted(EXCHANGE_MODULES))})"
            )
    return [
        importlib.import_module(EXCHANGE_MODULES[n]).create(
            [k for k in accounts if k.exchange == n], clock
        )
        for n in names
    ]


@web.middleware
async def _journal_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Record every exchange request as it arrived, with what the exchange decided."""
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    body = await request.read()
    note = RequestNote()
    request[_NOTE] = note
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        clock: Clock = request.app[CLOCK]  # type: ignore[assignment]
        request.app[JOURNAL].record(
            {
                "time": int(clock() * 1000),
                "exchange": note.exchange,
                "method": request.method,
                "path": request.path,
                "query": request.raw_path.partition("?")[2],
                "headers": {k: ", ".join(request.headers.getall(k)) for k in request.headers},
                "body": body.decode("utf-8", errors="replace"),
                "api_key": note.api_key,
                "signature_verified": note.signature_verified,
                "status": status,
                "error_code": note.error_code,
            }
        )


@web.middleware
async def _framing_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Re-send an exchange answer chunked (no Content-Length) when the framing control asks for it."""
    response = await handler(request)
    if request.path.startswith(CONTROL_PREFIX) or not request.app[FRAMING].get("chunked"):
        return response
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes | bytearray):
        return response
    body = bytes(response.body)
    chunked = web.StreamResponse(status=response.status, reason=response.reason)
    for name, value in response.headers.items():
        if name.lower() not in ("content-length", "transfer-encoding"):
            chunked.headers.add(name, value)
    chunked.enable_chunked_encoding()
    await chunked.prepare(request)
    for i in range(0, len(body), 64):  # several chunks, as a CDN would send them
        await chunked.write(body[i:i + 64])
    await chunked.write_eof()
    return chunked


@web.middleware
async def _fault_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """An exchange outage for chosen requests (those naming a string the faults control lists), or a slow one: held
    `hold_seconds` before it is executed (`hold_before_containing`) or before its answer leaves (`hold_after_...`)."""
    faults = request.app[FAULTS]
    kinds = ("fail_containing", "hold_before_containing", "hold_after_containing")
    if request.path.startswith(CONTROL_PREFIX) or not any(faults.get(kind) for kind in kinds):
        return await handler(request)
    seen = request.query_string + (await request.read()).decode("utf-8", "replace")

    def named(kind: str) -> bool:
        return any(n in seen for n in faults.get(kind) or ())

    if named("fail_containing"):
        return web.json_response({"error": "emulated failure"}, status=503)
    if named("hold_before_containing"):
        await asyncio.sleep(faults.get("hold_seconds", 1.0))
    response = await handler(request)
    if named("hold_after_containing"):
        await asyncio.sleep(faults.get("hold_seconds", 1.0))
    return response


TIMERS = web.AppKey("timers", asyncio.Task)


async def _start_timers(app: web.Application) -> None:
    """The exchanges' own timers (dead-man's switches) fire whether or not a request arrives."""
    async def tick() -> None:
        while True:
            await asyncio.sleep(0.2)
            for emulator in app[EMULATORS]:
                fire = getattr(emulator, "fire_timers", None)
                if fire is not None:
                    fire()
    app[TIMERS] = asyncio.get_running_loop().create_task(tick())


async def _stop_timers(app: web.Application) -> None:
    app[TIMERS].cancel()


async def _price(request: web.Request) -> web.Response:
    try:
        doc = await request.json()
        price = Decimal(str(doc["price"]))
        if not price.is_finite() or price <= 0:
            raise ValueError
    except (ValueError, KeyError, TypeError, ArithmeticError):
        return web.json_response({"error": 'expected {"exchange", "symbol", "price" > 0}'}, status=400)
    owner = next((e for e in request.app[EMULATORS] if e.name == doc.get("exchange")), None)
    if owner is None or not hasattr(owner, "set_price"):
        return web.json_response({"error": "price moves are emulated for binance, okx and hyperliquid only"},
                                 status=400)
    try:
        filled = owner.set_price(str(doc.get("symbol")), price, str(doc.get("venue", "spot")))
    except KeyError:
        return web.json_response({"error": f"no market {str(doc.get('symbol'))[:40]}"}, status=400)
    return web.json_response({"filled": filled})


async def _dcp(request: web.Request) -> web.Response:
    try:
        doc = await request.json()
        bybit = next(e for e in request.app[EMULATORS] if e.name == "bybit")
        if doc.get("drop_sockets") is True:
            return web.json_response({"dropped": await bybit.ws.drop()})  # type: ignore[attr-defined]
        products = [str(p) for p in doc["products"]]
        bybit.enable_dcp(str(doc["api_key"]), products)  # type: ignore[attr-defined]
    except (ValueError, KeyError, TypeError, StopIteration, AttributeError):
        return web.json_response({"error": 'expected {"api_key" of an emulated Bybit key, "products": [...]}'},
                                 status=400)
    return web.json_response({"products": products})


async def _faults(request: web.Request) -> web.Response:
    doc = await request.json()
    faults = request.app[FAULTS]
    for kind in ("fail_containing", "hold_before_containing", "hold_after_containing", "binary_containing"):
        faults[kind] = [str(n) for n in doc.get(kind) or [] if str(n)]
    faults["hold_seconds"] = float(doc.get("hold_seconds", 1.0))
    return web.json_response(faults)


async def _limits(request: web.Request) -> web.Response:
    """The exchanges' rate limits, off until set. POST: Binance's request weight (binance_limits.py):
    `binance_weight_per_minute`, `ban_seconds`, `ban_now` (seconds of a 418 ban starting now),
    `binance_sapi_weight_per_minute` (each /sapi/ endpoint's, binance_limits.SapiLimits); Bybit's, OKX's
    and Kraken's (rate_limits.py): `bybit_ip_per_5s`, `bybit_uid_per_s`, `bybit_ban_seconds`, `bybit_reset`,
    `bybit_ban_now` (seconds), `okx_per_2s` ({path: limit}), `kraken_counter` ({"limit", "seconds_per_unit"}),
    `coinbase_per_s` ({"private", "public"}: requests a second, per key and for the IP).
    GET (and POST) report Binance's limit, weight and answers, and every exchange's refusals (`refused`)."""
    by_name = {e.name: e for e in request.app[EMULATORS]}
    doc = await request.json() if request.method == "POST" else {}
    binance, bybit, okx, kraken, coinbase = (by_name.get(n) for n in ("binance", "bybit", "okx", "kraken", "coinbase"))
    out: dict[str, Any] = {"refused": {}}
    if binance is not None:
        limits = binance.limits
        if "binance_weight_per_minute" in doc:
            limits.per_minute = doc["binance_weight_per_minute"]
        limits.ban_seconds = float(doc.get("ban_seconds", limits.ban_seconds))
        if doc.get("ban_now"):
            limits.banned_until = request.app[CLOCK]() + float(doc["ban_now"])  # type: ignore[operator]
        if "binance_sapi_weight_per_minute" in doc:
            binance.sapi_limits.per_minute = doc["binance_sapi_weight_per_minute"]
        out["sapi_answered_429"] = binance.sapi_limits.answered
        out.update({"per_minute": limits.per_minute, "used": limits.used, "ban_seconds": limits.ban_seconds,
                    "answered": {str(k): v for k, v in limits.answered.items()}})
        out["refused"]["binance"] = out["answered"]
    if bybit is not None:
        rate = bybit.rate
        if "bybit_ip_per_5s" in doc:
            rate.ip.limit = doc["bybit_ip_per_5s"]
        if "bybit_uid_per_s" in doc:
            rate.uid_per_s = doc["bybit_uid_per_s"]
        rate.ban_seconds = float(doc.get("bybit_ban_seconds", rate.ban_seconds))
        if doc.get("bybit_reset"):
            rate.banned_until, rate.uid = 0.0, {}
            rate.ip.log.clear()
        if doc.get("bybit_ban_now"):
            rate.banned_until = request.app[CLOCK]() + float(doc["bybit_ban_now"])  # type: ignore[operator]
        out["refused"]["bybit"] = dict(rate.answered)
    if okx is not None:
        if "okx_per_2s" in doc:
            okx.rate.per_2s = dict(doc["okx_per_2s"] or {})
        out["refused"]["okx"] = dict(okx.rate.answered)
    if kraken is not None:
        if "kraken_counter" in doc:
            setting = doc["kraken_counter"] or {}
            kraken.rate.limit = setting.get("limit")
            kraken.rate.seconds_per_unit = float(setting.get("seconds_per_unit", 3.0))
        out["refused"]["kraken"] = dict(kraken.rate.answered)
    if coinbase is not None:
        if "coinbase_per_s" in doc:
            setting = doc["coinbase_per_s"] or {}
            coinbase.rate.private_per_s, coinbase.rate.public.limit = setting.get("private"), setting.get("public")
        out["refused"]["coinbase"] = dict(coinbase.rate.answered)
    return web.json_response(out)


async def _framing(request: web.Request) -> web.Response:
    doc = await request.json()
    request.app[FRAMING]["chunked"] = bool(doc.get("chunked"))
    return web.json_response(request.app[FRAMING])


async def _dispatch(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    note: RequestNote = request.get(_NOTE) or RequestNote()
    owners: list[ExchangeEmulator] = [e for e in request.app[EMULATORS] if e.owns(request.path)]
    if owners:
        # Binance owns all of "/api/"; a module with a more specific prefix under it
        # (Coinbase "/api/v3/brokerage/") sets a higher ``owns_priority`` (default 0).
        emulator = max(owners, key=lambda e: getattr(e, "owns_priority", 0))
        return await emulator.handle(request, body, note)
    return web.Response(status=404, text=f"emulator: no emulated exchange serves {request.path}")


async def _binance_user_stream(request: web.Request) -> web.StreamResponse:
    """Binance USD-M futures' private stream (`/private/ws?listenKey=`, `/private/ws/<listenKey>`;
    binance_streams.py)."""
    emulator = next((e for e in request.app[EMULATORS] if e.name == "binance"), None)
    if emulator is None:
        return web.Response(status=404, text="emulator: no emulated exchange serves /private/ws")
    return await emulator.streams.serve(request, request.match_info.get("key"))  # `/private/ws/<listenKey>` too


async def _binance_stream(request: web.Request) -> web.StreamResponse:
    """Binance's streams: COIN-M's user data `/ws/<listenKey>` (dstream), else spot market data (`/ws`,
    `/ws/<stream>`, `/stream`), binance_streams.py."""
    emulator = next((e for e in request.app[EMULATORS] if e.name == "binance"), None)
    if emulator is None:
        return web.Response(status=404, text="emulator: no stream here")
    key = request.match_info.get("stream", "")
    if key in emulator.dstreams.keys:
        return await emulator.dstreams.serve(request, key)
    if key in emulator.streams.keys:  # USD-M's classic `wss://fstream.binance.com/ws/<listenKey>`
        return await emulator.streams.serve(request, key)
    return await serve_market(request, lambda: request.app[CLOCK]() * 1000)  # type: ignore[operator]


def _private_ws(exchange: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler of an exchange module's private WebSocket (its `ws.serve`: binance_ws.py `/ws-api/v3`;
    okx_ws.py `/ws/v5/private`, `/ws/v5/business`; bybit_ws.py `/v5/private`, `/v5/trade`; kraken_ws.py `/v2`);
    each frame is journaled."""

    async def handle(request: web.Request) -> web.StreamResponse:
        emulator = next((e for e in request.app[EMULATORS] if e.name == exchange), None)
        if emulator is None:
            return web.Response(status=404, text=f"emulator: no emulated exchange serves {exchange} WebSockets")
        clock: Clock = request.app[CLOCK]  # type: ignore[assignment]

        def record(entry: dict[str, Any]) -> None:
            request.app[JOURNAL].record({"time": int(clock() * 1000), "query": "", "headers": {}, **entry})

        faults = request.app[FAULTS]

        def hold_after(text: str) -> float:  # a slow answer to a frame naming a listed string (Binance's socket)
            named = any(n in text for n in faults.get("hold_after_containing") or ())
            return float(faults.get("hold_seconds", 1.0)) if named else 0.0

        request["hold_after"] = hold_after
        # an answer in a binary frame to a frame naming a listed string (Binance's socket), as SBE answers come
        request["binary"] = lambda text: any(n in text for n in faults.get("binary_containing") or ())
        return await emulator.ws.serve(request, record)  # type: ignore[attr-defined,no-any-return]

    return handle


async def _health(request: web.Request) -> web.Response:
    return web.json_response(
        {"status": "ok", "exchanges": [e.name for e in request.app[EMULATORS]]}
    )


async def _journal(request: web.Request) -> web.Response:
    return web.json_response(request.app[JOURNAL].entries())


async def _state(request: web.Request) -> web.Response:
    return web.json_response({e.name: e.state() for e in request.app[EMULATORS]})


async def _reset(request: web.Request) -> web.Response:
    request.app[JOURNAL].clear()
    for emulator in request.app[EMULATORS]:
        emulator.reset()
    return web.json_response({"status": "reset"})


def build_app(
    accounts: list[EmulatedKey],
    *,
    clock: Clock = time.time,
    journal_path: str | Path | None = None,
    exchanges: Sequence[str] | None = None,
) -> web.Application:
    """Build the emulator app for ``accounts`` (exchanges default to those named there)."""
    app = web.Application(middlewares=[_journal_middleware, _framing_middleware, _fault_middleware])
    app[JOURNAL] = Journal(journal_path)
    app[EMULATORS] = _emulators(accounts, exchanges, clock)
    app[CLOCK] = clock
    app[FRAMING] = {"chunked": False}
    app[FAULTS] = {"fail_containing": []}
    app.on_startup.append(_start_timers)
    app.on_cleanup.append(_stop_timers)
    app.router.add_get(CONTROL_PREFIX + "health", _health)
    app.router.add_get(CONTROL_PREFIX + "journal", _journal)
    app.router.add_get(CONTROL_PREFIX + "state", _state)
    app.router.add_post(CONTROL_PREFIX + "reset", _reset)
    app.router.add_post(CONTROL_PREFIX + "framing", _framing)
    app.router.add_post(CONTROL_PREFIX + "faults", _faults)
    app.router.add_post(CONTROL_PREFIX + "dcp", _dcp)
    app.router.add_post(CONTROL_PREFIX + "price", _price)
    app.router.add_route("*", CONTROL_PREFIX + "limits", _limits)
    app.router.add_get("/ws-api/v3", _private_ws("binance"))
    app.router.add_get("/private/ws", _binance_user_stream)
    app.router.add_get("/private/ws/{key}", _binance_user_stream)
    for exchange, paths in (("okx", ("/ws/v5/private", "/ws/v5/business")), ("bybit", ("/v5/private", "/v5/trade")),
                            ("kraken", ("/v2",)), ("coinbase", ("/",))):
        for ws_path in paths:
            app.router.add_get(ws_path, _private_ws(exchange))
    app.router.add_get("/ws/{stream}", _binance_stream)
    app.router.add_get("/ws", _binance_stream)
    app.router.add_get("/stream", _binance_stream)
    for market_path in ("/public/ws", "/market/ws", "/public/stream", "/market/stream", "/public/ws/{stream}",
                        "/market/ws/{stream}"):
        app.router.add_get(market_path, _binance_stream)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


class RunningEmulator:
    """An emulator app served on loopback inside the current event loop (for tests)."""

    def __init__(self, app: web.Application, runner: web.AppRunner, url: str) -> None:
        self.app = app
        self.runner = runner
        self.url = url

    @property
    def journal(self) -> Journal:
        return self.app[JOURNAL]

    async def close(self) -> None:
        await self.runner.cleanup()


async def start(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> RunningEmulator:
    """Serve ``app`` on ``host:port`` (0 = any free port) and return its base URL."""
    check_loopback(host)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return RunningEmulator(app, runner, f"http://{shown}:{bound_port}")


async def serve(
    host: str, port: int, accounts_file: str | Path, journal_file: str | Path | None = None
) -> None:
    """Run until SIGINT/SIGTERM; print the ready line other processes wait for."""
    check_loopback(host)
    app = build_app(load_accounts(accounts_file), journal_path=journal_file)
    running = await start(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"emulator listening on {running.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await running.close()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m keyproxy.emulator --host H --port N --accounts FILE [--journal FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m keyproxy.emulator",
        description="Loopback exchange emulator for keyproxy tests and demos.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port, 0 picks a free one (default 0)"
    )
    parser.add_argument("--accounts", required=True, help="accounts JSON file")
    parser.add_argument(
        "--journal", default=None, help="append every request as a JSON line to this file"
    )
    args = parser.parse_args(argv)
    try:
        check_loopback(args.host)
        asyncio.run(serve(args.host, args.port, args.accounts, args.journal))
    except (AccountsError, ValueError, OSError) as exc:
        print(f"emulator: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
