"""A real redis-server (Debian's package, installed by scripts/_redis.sh) on a loopback port, for the fleet tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """redis-server with its own directory, AOF on (as `doctor` asks), a password from its config file."""

    def __init__(self, root: Path, password: str = "fleet-test-password") -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is missing: scripts/test installs Debian's redis-server package")
        self.root, self.password = root, password
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (root / "password").write_text(password + "\n")
        (root / "password").chmod(0o600)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def config(self) -> str:
        """The [shared_state] section a keyproxy of this fleet uses."""
        return f'\n[shared_state]\nurl = "{self.url}"\npassword_file = "{self.root / "password"}"\n'

    def start(self) -> RedisServer:
        conf = self.root / "redis.conf"
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.root}\nappendonly yes\nsave \"\"\n"
                        f"requirepass {self.password}\nlogfile {self.root / 'redis.log'}\n")
        self.proc = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def dump(self) -> bytes:
        """Every key and value (as `redis-cli --scan` and then each value would show) and the AOF files."""
        client, out = self.client(), []
        for key in client.scan_iter(count=1000):
            out.append(key)
            kind = client.type(key)
            if kind == b"string":
                out.append(client.get(key) or b"")
            elif kind == b"hash":
                for k, v in client.hgetall(key).items():
                    out += [k, v]
            elif kind == b"stream":
                for _id, fields in client.xrange(key):
                    for k, v in fields.items():
                        out += [k, v]
            else:
                out.append(repr(client.dump(key)).encode())
        for f in self.root.rglob("*.aof*"):
            if f.is_file():
                out.append(f.read_bytes())
        return b"\n".join(out)
