"""The bot-facing HTTP listener: aiohttp's low-level server with our own error answers.

aiohttp's default answer to a malformed request echoes the offending header
line (bot credential included) into the 400 body and into an ERROR log line;
`SafeRequestHandler` replaces both. Browser-shaped requests (Origin,
Sec-Fetch-*) and Host values other than the listener's are refused, since a
web page can reach 127.0.0.1 through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from aiohttp import http_parser, web
from aiohttp.web_protocol import RequestHandler

from keyproxy.errors import where
from keyproxy.proxy.pipeline import BotNotReading, Outcome, Pipeline, new_request_id, split_target
from keyproxy.proxy.refusal import STATUS, Refused, exchange_code

log = logging.getLogger("keyproxy.proxy")


def assert_c_parser() -> None:
    """The pure-Python parser carries most of aiohttp's smuggling CVEs; refuse to run on it."""
    if http_parser.HttpRequestParser is not getattr(http_parser, "HttpRequestParserC", None):
        raise RuntimeError("aiohttp's C HTTP parser is not in use (is AIOHTTP_NO_EXTENSIONS set?)")


def error_response(code: str, message: str, request_id: str, extra: dict[str, Any] | None = None,
                   retry_after: float | None = None) -> web.Response:
    """keyproxy's JSON refusal, plus the exchange's own error fields (`extra`).

    Where the exchange's shape uses `error` itself (Kraken: a list of strings),
    the exchange's value stays there for its SDKs and keyproxy's stable code
    moves to `keyproxy_error`.
    """
    body: dict[str, Any] = {"error": code, "message": message, "request_id": request_id}
    if extra and "error" in extra:
        body["keyproxy_error"] = code
    body.update(extra or {})
    headers = {"X-Request-Id": request_id}
    if code == "unavailable":
        headers["Retry-After"] = "1"
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    resp = web.Response(status=STATUS[code], text=json.dumps(body), content_type="application/json",
                        headers=headers)
    if code == "request_timeout":
        resp.force_close()  # a bot this slow gets no second request on the connection
    return resp


class SafeRequestHandler(RequestHandler):
    """Renders parser errors as keyproxy's own JSON and logs only their kind."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.warning("malformed request refused", extra={"status": status, "kind": type(exc).__name__})
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        code = "body_too_large" if status == 413 else ("internal_error" if status >= 500 else "bad_request")
        resp = error_response(code, "malformed HTTP request" if code == "bad_request" else code.replace("_", " "),
                              new_request_id())
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        log.error("request handling failed", extra={"kind": type(exc).__name__ if exc else None})


class SafeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return SafeRequestHandler(self, loop=self._loop, **self._kwargs)


HEALTH_PATH = "/_keyproxy/health"


class ProxyFrontDoor:
    """Guards that apply before any routing, then the pipeline, then one log line."""

    def __init__(self, pipeline: Pipeline, allowed_hosts: frozenset[str],
                 record: Callable[[Outcome, int], None],
                 react: Callable[[Outcome], None] = lambda o: None, websockets: Any = None) -> None:
        self._pipeline = pipeline
        self._websockets = websockets  # WebSocketEdge: upgrades go there, after the same guards
        self._hosts = allowed_hosts
        self._record = record
        self._react = react

    def allow_hosts(self, hosts: frozenset[str]) -> None:
        self._hosts = hosts

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.raw_path == HEALTH_PATH and request.method == "GET":
            # a health check or readiness probe: answered once the listener is up (the daemon is ready),
            # says nothing about accounts or bots, and is neither audited nor counted
            return web.json_response({"status": "ok"})
        outcome = Outcome(request_id=new_request_id())
        status = 500
        try:
            self._guard(request)
            if self._websockets is not None and request.headers.get("Upgrade", "").lower() == "websocket":
                account, path, query = split_target(request.raw_path, stream_names=True)
                response = await self._websockets.handle(request, account, path, query, outcome)
                status = 101
                return response
            response = await self._pipeline.handle(request, outcome)
            status = response.status
            return response
        except Refused as e:
            outcome.code = e.code
            status = e.status
            adapter = outcome.adapter
            extra = adapter.native_error(exchange_code(e.code), e.message) if adapter else None  # type: ignore[attr-defined]
            response = error_response(e.code, e.message, outcome.request_id, extra, e.retry_after)
            if adapter is not None:
                response.set_status(adapter.refusal_status(e.code, e.status))  # type: ignore[attr-defined]
            return response
        except BotNotReading:  # its answer was read from the exchange and learned; the bot did not take it
            status = outcome.upstream_status or 502  # what the exchange answered is what the audit line records
            log.warning("the bot did not read its answer in time, or closed its connection first: its answer is lost",
                        extra={"request_id": outcome.request_id, "upstream_status": outcome.upstream_status})
            return web.Response(status=status)  # to a closed connection: aiohttp writes nothing
        except Exception as e:  # never a traceback to the bot; the log gets the kind only
            if request.writer is not None and request.writer.output_size > 0:
                raise  # the answer has started: aiohttp closes the connection
            outcome.code = "internal_error"
            log.error("internal error", extra={"kind": type(e).__name__, "where": where(e),
                                               "request_id": outcome.request_id})
            return error_response("internal_error", "internal error", outcome.request_id)
        finally:
            # Anomaly reactions run now, before the next request is read; the outcome's audit line,
            # metrics and log line run just after the answer is written (the request.forward line,
            # written before anything went upstream, is what fails closed).
            self._react(outcome)
            asyncio.get_running_loop().call_soon(self._record, outcome, status)

    def _guard(self, request: web.BaseRequest) -> None:
        if request.method == "CONNECT":
            raise Refused("bad_request", "CONNECT is not supported")
        host = request.headers.get("Host", "").lower()
        if host not in self._hosts:
            raise Refused("host_denied", "the Host header must name this listener")
        origin = request.headers.get("Origin")
        # a page's origin is refused; keyproxy's own (http://127.0.0.1:PORT) is no page's, since keyproxy serves
        # none: websocket-client (pybit's socket library) sends it with every handshake
        if origin is not None and origin.lower() not in {f"{scheme}://{h}" for scheme in ("http", "ws", "https", "wss")
                                                         for h in self._hosts}:
            raise Refused("browser_denied", "requests from web browsers are refused")
        if any(h.lower().startswith("sec-fetch-") for h in request.headers):
            raise Refused("browser_denied", "requests from web browsers are refused")
        if request.headers.get("X-Forwarded-Host"):
            raise Refused("bad_request", "X-Forwarded-Host is not accepted")


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    names = {host, "127.0.0.1", "localhost", "[::1]"} if host in ("127.0.0.1", "localhost", "::1") else {host}
    return frozenset(f"{n if ':' not in n or n.startswith('[') else f'[{n}]'}:{port}".lower() for n in names)

