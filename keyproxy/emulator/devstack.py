"""A throw-away keyproxy on loopback: exchange emulator + vault + daemon, as real processes.

Used by `keyproxy demo`, the end-to-end tests and the benchmarks, so all three
exercise exactly what an operator runs: the CLI, the daemon and the emulator
as separate processes talking HTTP on 127.0.0.1. Nothing here is used by the
daemon itself.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyproxy.emulator.keys import new_api_key, new_ed25519_key, new_hmac_key, new_rsa_key

# Every secret a DevStack handed out or was given, for the test suite's final leak scan.
HANDLED_SECRETS: set[str] = set()
ROOTS: list[Path] = []

FAST_KDF = "[vault.kdf]\nmemory_kib = 19456\niterations = 2\nlanes = 1\n"
# budgets the emulator does not enforce unless a test sets them, lent room in a stack (see DevStack.__post_init__)
LENT_BUDGETS = ("hyperliquid.IP_WEIGHT", "coinbase.PRIVATE_REQUESTS", "coinbase.PUBLIC_REQUESTS",
                "coinbase.WS_UNAUTHENTICATED", "okx.WS_CONNECTIONS", "kraken.WS_CONNECTIONS")
_URL = re.compile(r"https?://127\.0\.0\.1:[0-9]+")
DEFAULT_PERMISSIONS = {"enableReading": True, "enableSpotAndMarginTrading": True, "enableFutures": True}


@dataclass
class RealKey:
    """A key 'issued by the exchange': the emulator's entry and what `key add` reads on stdin."""

    emulated: dict[str, Any] = field(repr=False)  # never in a test's failure output (a fixture's repr)
    credentials: dict[str, str] = field(repr=False)


def new_real_key(key_type: str = "hmac", permissions: dict[str, Any] | None = None,
                 balances: dict[str, str] | None = None, exchange: str = "binance") -> RealKey:
    key = _new_real_key(key_type, permissions, balances, exchange)
    HANDLED_SECRETS.update(v for k, v in key.credentials.items() if k != "api_key")
    return key


def _new_real_key(key_type: str, permissions: dict[str, Any] | None, balances: dict[str, str] | None,
                  exchange: str) -> RealKey:
    if exchange != "binance":
        # each emulated exchange knows what its keys look like: new_key(key_type, permissions, balances)
        module = importlib.import_module(f"keyproxy.emulator.{exchange}")
        entry, credentials = module.new_key(key_type, permissions, balances)
        return RealKey(entry, credentials)
    api_key = new_api_key()
    entry: dict[str, Any] = {"exchange": "binance", "api_key": api_key, "key_type": key_type,
                             "permissions": permissions or DEFAULT_PERMISSIONS,
                             "balances": balances or {"USDT": "100000", "BTC": "10", "ETH": "100"}}
    if key_type == "hmac":
        secret = new_hmac_key()
        entry["secret"] = secret
        return RealKey(entry, {"api_key": api_key, "secret": secret})
    private_pem, public_pem = new_ed25519_key() if key_type == "ed25519" else new_rsa_key()
    entry["public_key"] = public_pem
    return RealKey(entry, {"api_key": api_key, "private_key": private_pem})


def _read_ready_line(proc: subprocess.Popen[str], what: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
            continue
        if _URL.search(line):
            return line
    raise RuntimeError(f"{what} did not become ready in {timeout} s")


def _read_url(proc: subprocess.Popen[str], what: str, timeout: float = 30.0) -> str:
    m = _URL.search(_read_ready_line(proc, what, timeout))
    assert m is not None
    return m.group(0)


@dataclass
class DevStack:
    root: Path
    extra_config: str = ""
    log_level: str = "debug"  # debug: one log line per allowed request too (tests search them for secrets)
    env: dict[str, str] = field(init=False)
    emulator_url: str | None = None
    proxy_url: str | None = None
    metrics_url: str | None = None
    _procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ROOTS.append(self.root)
        (self.root / "passphrase").write_text("devstack passphrase\n")
        (self.root / "passphrase").chmod(0o600)
        config = self.root / "keyproxy.toml"
        extra = self.extra_config
        # a test reads, orders and connects far faster than a bot (each Hyperliquid SDK client reads two market
        # lists, 40 of the 1,200 a minute; a Coinbase test places 40 orders in a second; OKX allows 3 sockets a
        # second): a stack lends these budgets room unless its config sets one itself (tests of the governor do)
        lend = "".join(f'"{name}" = 1000000\n' for name in LENT_BUDGETS if name not in extra)
        if lend:
            extra = extra.replace("[governor.limits]\n", "[governor.limits]\n" + lend, 1) \
                if "[governor.limits]\n" in extra else extra + "\n[governor.limits]\n" + lend
        config.write_text(FAST_KDF + "\n[vault]\npath = \"state/vault.db\"\n"
                          + ("" if "[metrics]" in extra else "\n[metrics]\nport = 0\n") + extra)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KEYPROXY_", "XDG_"))}
        self.env = {**base, "KEYPROXY_CONFIG": str(config), "KEYPROXY_PASSPHRASE_FILE": str(self.root / "passphrase"),
                    # the checkout first; a bench's own path after it (bench/step_timing.py times steps in situ)
                    "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                   *([os.environ["KEYPROXY_BENCH_PATH"]]
                                                     if os.environ.get("KEYPROXY_BENCH_PATH") else [])]),
                    "HOME": str(self.root),
                    "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "KEYPROXY_LOG_LEVEL": self.log_level}

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def cli(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "keyproxy.cli", *args], input=input or "", text=True,
                              capture_output=True, env=self.env, timeout=timeout, start_new_session=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"keyproxy {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[str]:
        self.logs.mkdir(exist_ok=True)
        err = open(self.logs / f"{name}.err", "a")
        proc = subprocess.Popen([sys.executable, "-m", "keyproxy.cli", *args], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=self.env, start_new_session=True)
        err.close()
        self._procs[name] = proc
        return proc

    def start_emulator(self, keys: list[RealKey]) -> str:
        accounts = self.root / "emulator-accounts.json"
        accounts.write_text(json.dumps({"keys": [k.emulated for k in keys]}))
        self.emulator_url = _read_url(self._spawn("emulator", "emulator", "--accounts", str(accounts), "--port", "0"),
                                      "emulator")
        return self.emulator_url

    def init(self) -> None:
        self.cli("init")

    def add_account(self, name: str, key: RealKey, *extra: str) -> None:
        assert self.emulator_url, "start the emulator first"
        self.cli("key", "add", name, "--exchange", key.emulated["exchange"], "--key-type", key.emulated["key_type"],
                 "--base-url", self.emulator_url, "--insecure-upstream", *extra, input=json.dumps(key.credentials))

    def serve_account(self, name: str, key: RealKey) -> str:
        """Emulator, new vault, one account on `key`, daemon: the usual start of an e2e stack."""
        return self.serve_accounts({name: key})

    def serve_accounts(self, keys: dict[str, RealKey]) -> str:
        """Emulator, new vault, an account per name on its key (any exchanges), daemon."""
        self.start_emulator(list(keys.values()))
        self.init()
        for name, key in keys.items():
            self.add_account(name, key)
        return self.start_daemon()

    def add_bot(self, name: str, account: str, scope: str, *extra: str) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(self.cli("bot", "add", name, "--account", account, "--scope", scope,
                                                    *extra).stdout)
        HANDLED_SECRETS.update(shown[k] for k in ("secret", "passphrase", "token") if shown.get(k))
        if str(shown.get("private_key", "")).startswith("0x"):  # a Hyperliquid bot's virtual agent key
            HANDLED_SECRETS.add(shown["private_key"])
        return shown

    def start_daemon(self, port: int = 0, *extra: str) -> str:
        line = _read_ready_line(self._spawn("daemon", "serve", "--port", str(port), *extra), "daemon")
        urls = _URL.findall(line)
        self.proxy_url = urls[0]
        self.metrics_url = urls[1] + "/metrics" if len(urls) > 1 else None
        return self.proxy_url

    def metrics(self) -> str:
        assert self.metrics_url, "metrics are disabled"
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            return r.read().decode()

    @property
    def audit_dir(self) -> Path:
        return self.root / "state" / "audit"

    def daemon(self) -> subprocess.Popen[str]:
        return self._procs["daemon"]

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        proc = self._procs.pop("daemon")
        proc.send_signal(sig)
        code = proc.wait(timeout)
        if proc.stdout:
            proc.stdout.close()
        return code

    def daemon_log(self) -> str:
        path = self.logs / "daemon.err"
        return path.read_text() if path.exists() else ""

    def journal(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.emulator_url}/_emulator/journal", timeout=10) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def reset_journal(self) -> None:
        req = urllib.request.Request(f"{self.emulator_url}/_emulator/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self._procs.clear()

    def __enter__(self) -> DevStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a real redis-server for a fleet ([shared_state]): tests and benchmarks ------------------------------

def free_port() -> int:
    """A free loopback port (for a server that cannot be told to pick one itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """redis-server with its own directory, AOF on (as `doctor` asks), a password from its config file."""

    def __init__(self, root: Path, password: str = "fleet-test-password", tls: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is missing: scripts/test installs Debian's redis-server package")
        self.root, self.password = root, password
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls  # TLS only (port 0), with a local CA made by keyproxy's own `tls init` code
        self.proc: subprocess.Popen[bytes] | None = None
        (root / "password").write_text(password + "\n")
        (root / "password").chmod(0o600)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def config(self) -> str:
        """The [shared_state] section a keyproxy of this fleet uses."""
        ca = f'tls_ca_file = "{self.root / "tls" / "ca.pem"}"\n' if self.tls else ""
        return f'\n[shared_state]\nurl = "{self.url}"\npassword_file = "{self.root / "password"}"\n' + ca

    def start(self) -> RedisServer:
        import redis

        conf = self.root / "redis.conf"
        listen = f"port {self.port}\n"
        if self.tls:
            from keyproxy.tls import make_local_ca

            tls_dir = self.root / "tls"
            if not (tls_dir / "ca.pem").exists():  # kept across a restart of the same server
                make_local_ca(tls_dir)
            listen = (f"port 0\ntls-port {self.port}\ntls-cert-file {tls_dir / 'cert.pem'}\n"
                      f"tls-key-file {tls_dir / 'key.pem'}\ntls-ca-cert-file {tls_dir / 'ca.pem'}\n"
                      "tls-auth-clients no\n")
        conf.write_text(f"{listen}bind 127.0.0.1\ndir {self.root}\nappendonly yes\nsave \"\"\n"
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

    def client(self) -> Any:
        import redis

        tls = {"ssl": True, "ssl_ca_certs": str(self.root / "tls" / "ca.pem")} if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5, **tls)

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


def point_ccxt_at(exchange: Any, base_url: str) -> Any:
    """Point every REST and WebSocket URL of a ccxt exchange at keyproxy: the only change a bot makes.

    Each URL's scheme and host (placeholders such as ``{hostname}`` included)
    become the bot's base URL; the path after it stays, so the exchange's own
    path prefixes (``/api/v3``, ``/sapi``, ``/fapi``, ``/0/private``...) arrive as they would
    at the exchange.
    """
    ws_base = re.sub(r"^http", "ws", base_url.rstrip("/"))

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"^wss?://[^/]+", ws_base, re.sub(r"^https?://[^/]+", base_url.rstrip("/"), value))
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        return value

    exchange.urls["api"] = rewrite(exchange.urls["api"])
    return exchange
