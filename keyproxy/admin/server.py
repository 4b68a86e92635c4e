"""The admin API on a Unix socket (0600, in the 0700 state directory).

Every connection's peer uid is read with SO_PEERCRED and must be the daemon's
own uid (or root): file modes are the first fence, the uid check the second,
since socket permissions are not honoured everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

from aiohttp import web

from keyproxy.admin.controls import Controls, credentials_from_json
from keyproxy.admin.protocol import ERROR_CLASSES, OPS, VAULT_OPS
from keyproxy.audit.trail import AuditUnavailable
from keyproxy.errors import KeyproxyError, NotFound, StateError, UsageError, where
from keyproxy.vault import NewAccount

log = logging.getLogger("keyproxy.admin")
MAX_REQUEST_BYTES = 256 * 1024
# calls that read state.db tables and answer with their rows: read and encoded in a worker thread, since the event
# loop that runs them serves every bot (a list of thousands of incidents held it 370 ms)
OFF_LOOP_OPS = frozenset({"list_incidents", "show_incident"})


def peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _call(controls: Controls, op: str, args: dict[str, Any]) -> Any:
    if op == "add_account":
        creds = credentials_from_json(args.pop("credentials", {}) or {})
        return controls.add_account(NewAccount(credentials=creds, **args))
    return getattr(controls, op)(**args)


def encode(answer: dict[str, Any]) -> str:
    """An answer's JSON, as `web.json_response` writes it (a function of its own: run in a worker thread)."""
    return json.dumps(answer)


async def _cancel_orders(controls: Controls, canceller: Any, scope: str, target: str, reason: str) -> Any:
    """Only under a halt of exactly that scope: cancelling while the scope may still place orders would
    race the bots that are placing them."""
    if canceller is None:
        raise KeyproxyError("this daemon cannot cancel orders")
    if not any(h["scope"] == scope and h["target"] == target for h in controls.list_halts()):
        raise StateError(f"no halt in force for {scope} {target}: halt it first (`keyproxy halt ... --cancel-orders`)")
    controls._record("cancel_orders", "attempt", scope=scope, target=target)
    try:
        return await canceller.cancel(scope, target, reason)
    except KeyError as e:
        raise NotFound(str(e.args[0])) from None


def build_admin_app(controls: Controls, verifier: Any = None, auditor: Any = None,
                    canceller: Any = None, fleet: Any = None) -> web.Application:
    """`fleet` (fleet/sync.py's FleetSync, in a fleet): a call that changed shared state returns once every
    live instance has applied the change (at most a second; a laggard is logged)."""
    allowed = {os.geteuid(), 0}

    async def call(request: web.Request) -> web.Response:
        uid = peer_uid(request)
        if uid not in allowed:
            log.warning("admin call refused", extra={"peer_uid": uid})
            return web.json_response({"error": "KeyproxyError", "message": "permission denied"}, status=403)
        try:
            doc = json.loads(await request.read())
            op, args = doc["op"], doc.get("args") or {}
            if op not in OPS or not isinstance(args, dict):
                raise KeyError(op)
        except (ValueError, KeyError, TypeError, RecursionError):  # a request nested past the parser's depth too
            return web.json_response({"error": "UsageError", "message": "malformed admin request"}, status=400)
        controls.actor_uid = uid if uid is not None else -1
        before = fleet.fleet.last_version if fleet is not None else 0
        # a fleet's vault change waits for the write lease here, not on the event loop every bot's request shares
        lease = fleet.fleet.held_lease() if fleet is not None and op in VAULT_OPS else contextlib.nullcontext()
        try:
            if op == "rotate_key":  # check the new key at the exchange before switching
                creds = credentials_from_json(args.get("credentials") or {})
                if verifier is None:
                    raise KeyproxyError("this daemon cannot verify keys")
                if not isinstance(args.get("name"), str):
                    raise UsageError("rotate_key needs the account's name")
                ok, answer = await verifier(args["name"], creds)
                if not ok:
                    raise KeyproxyError(f"the new key was not activated: the exchange answered {answer}")
                async with lease:
                    controls.actor_uid = uid if uid is not None else -1  # another call may have set it meanwhile
                    result = controls.rotate_key(args["name"], creds, verified=answer)
            elif op == "audit_keys":  # asks each exchange: async, in the daemon
                if auditor is None:
                    raise KeyproxyError("this daemon cannot audit keys")
                result = await auditor(args.get("name"))
            elif op == "cancel_orders":  # keyproxy's own cancels at the exchanges: async, in the daemon
                result = await _cancel_orders(controls, canceller, **args)
            elif op in OFF_LOOP_OPS:  # reads only: no lease, no audit line
                result = await asyncio.to_thread(_call, controls, op, args)
            else:
                async with lease:
                    controls.actor_uid = uid if uid is not None else -1  # set again after any wait for the lease
                    result = _call(controls, op, args)
        except KeyproxyError as e:
            name = type(e).__name__ if type(e).__name__ in ERROR_CLASSES else "KeyproxyError"
            return web.json_response({"error": name, "message": str(e)}, status=400)
        except TypeError:
            return web.json_response({"error": "UsageError", "message": f"bad arguments for {op}"}, status=400)
        except AuditUnavailable as e:
            return web.json_response({"error": "KeyproxyError", "message": f"refused: {e}"}, status=503)
        except Exception as e:  # a bug: the operator still gets one JSON line, the log gets the kind only
            log.error("admin call failed", extra={"op": op, "kind": type(e).__name__, "where": where(e)})
            return web.json_response({"error": "KeyproxyError", "message": f"internal error in {op} "
                                      f"({type(e).__name__}); this is a bug, see the daemon's log"}, status=500)
        log.info("admin call", extra={"op": op, "peer_uid": uid})
        if fleet is not None and fleet.fleet.last_version > before:
            lagging = await fleet.wait_others(fleet.fleet.last_version)
            if lagging:
                log.warning("fleet instances have not applied the change yet", extra={"op": op, "instances": lagging})
        else:
            lagging = []
        answer = {"result": result, **({"fleet_lagging": lagging} if lagging else {})}  # the CLI warns of them
        if op in OFF_LOOP_OPS:
            return web.Response(text=await asyncio.to_thread(encode, answer), content_type="application/json")
        return web.json_response(answer)

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post("/v1/call", call)
    return app


def prepare_socket_path(path: Path) -> None:
    """Refuse anything at `path` that is not a stale socket of ours; then clear it."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    import stat as stat_mod

    if not stat_mod.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise KeyproxyError(f"{path} exists and is not a keyproxy admin socket; refusing to replace it")
    path.unlink()
