"""The CLI's admin client: what it prints of a daemon's answer it did not write itself."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from keyproxy.admin.client import AdminClient


def _answer_once(path: Path, doc: dict[str, object]) -> threading.Thread:
    """A one-shot admin socket on `path` that answers the first call with `doc`."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            while len(body) < length:
                body += conn.recv(4096)
            raw = json.dumps(doc).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(raw)).encode() + b"\r\nConnection: close\r\n\r\n" + raw)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_lagging_instance_names_are_escaped_on_the_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    """Instance names come from Redis heartbeats, which any host of the fleet writes: a name holding a terminal
    escape (a screen clear, a title change) or a direction override is printed escaped in the CLI's warning."""
    path = tmp_path / "admin.sock"
    evil = "host-b\x1b]0;owned\x07\x1b[2J"
    served = _answer_once(path, {"result": {"ok": True}, "fleet_lagging": ["host-a", evil, "host\u202ec"]})
    assert AdminClient(path, timeout=5).call("halt") == {"ok": True}
    served.join(5)
    err = capsys.readouterr().err
    assert "host-a" in err and "have not applied this change" in err
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    assert ascii(evil) in err and ascii("host\u202ec") in err
