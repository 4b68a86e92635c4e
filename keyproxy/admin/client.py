"""The CLI's side of the admin socket: plain stdlib HTTP over AF_UNIX, no event loop."""

from __future__ import annotations

import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any

from keyproxy.admin.protocol import ERROR_CLASSES
from keyproxy.errors import KeyproxyError
from keyproxy.fleet.charges import STALE_S


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


class AdminClient:
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def reachable(self) -> bool:
        try:
            conn = _UnixConnection(self.socket_path, 2.0)
            conn.connect()
            conn.close()
            return True
        except OSError:
            return False

    def call(self, op: str, **args: Any) -> Any:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            conn.request("POST", "/v1/call", body=json.dumps({"op": op, "args": args}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise KeyproxyError(f"admin socket {self.socket_path}: {type(e).__name__}") from None
        finally:
            conn.close()
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise KeyproxyError(f"admin socket {self.socket_path}: the daemon answered HTTP {resp.status} without "
                                "a JSON body; see the daemon's log")
        if "error" in doc:
            raise ERROR_CLASSES.get(doc["error"], KeyproxyError)(doc.get("message", "admin call failed"))
        lagging = doc.get("fleet_lagging")
        if isinstance(lagging, list) and lagging:
            # instance names come from Redis heartbeats: shown escaped when they hold what a terminal acts on
            names = ", ".join(n if n.isprintable() else ascii(n) for n in map(str, lagging))
            print(f"keyproxy: warning: fleet instance(s) {names} have not applied this change "
                  f"yet; an instance that cannot reach the shared state refuses every bot request once its state is "
                  f"{STALE_S:g} s old", file=sys.stderr)
        return doc.get("result")

    def __getattr__(self, op: str) -> Any:
        """`client.add_bot(...)` reads like `controls.add_bot(...)`."""
        if op.startswith("_"):
            raise AttributeError(op)
        return lambda **args: self.call(op, **args)
