"""`keyproxy serve --workers N`: N daemon processes on one port, so one host uses all its cores.

The kernel spreads new connections over the processes bound with SO_REUSEPORT; each is a whole daemon and
one instance of the fleet (`[shared_state]` is required: limits, replay ids, nonces, halts and vault changes
must agree between them exactly as between hosts). This parent holds the daemon lock, unlocks nothing and
serves nothing: it starts worker 0 (which keeps the admin socket and picks the port when it is 0), then the
others on the same port, prints one ready line, forwards SIGTERM/SIGINT, and stops them all when one dies
(systemd's Restart= then brings the whole set back).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from keyproxy.errors import KeyproxyError
from keyproxy.hardening import take_secret_from_env

READY_S = 60.0  # a worker unlocks the vault (the KDF) before it listens
_URL = re.compile(r"https?://[^\s)]+")


def worker_argv(argv: Sequence[str], index: int, count: int, port: int | None) -> list[str]:
    """The parent's own command line, as worker `index` of `count` runs it (on `port` once one is chosen)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    out += ["--worker", f"{index}/{count}"]
    if port is not None:
        out += ["--port", str(port)]
    return [sys.executable, "-m", "keyproxy.cli", *out]


def _ready_line(proc: subprocess.Popen[str], index: int) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            if _URL.search(line):
                return line.strip()
            continue
        if proc.poll() is not None:
            raise KeyproxyError(f"worker {index} exited with {proc.returncode} before it listened (its log says why)")
    raise KeyproxyError(f"worker {index} did not listen within {READY_S:.0f} s")


def run_workers(argv: Sequence[str], count: int, ready: Callable[[str], None]) -> int:
    """Start `count` workers, say ready once all listen, wait; the exit code of the first to stop."""
    # a passphrase in the environment goes to the workers (each takes it out of its own at once) and out of this
    # parent's, which stays up as long as they do (session 35's review: its /proc/PID/environ showed it throughout)
    passphrase = take_secret_from_env(os.environ)
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # this parent tells systemd, not they
    if passphrase is not None:
        env["KEYPROXY_PASSPHRASE"] = passphrase
    procs: list[subprocess.Popen[str]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        procs.append(subprocess.Popen(worker_argv(argv, 0, count, None), stdout=subprocess.PIPE, text=True,
                                      env=env, stdin=subprocess.DEVNULL))
        first = _ready_line(procs[0], 0)
        port = int(_URL.findall(first)[0].rsplit(":", 1)[1])
        for i in range(1, count):
            procs.append(subprocess.Popen(worker_argv(argv, i, count, port), stdout=subprocess.PIPE, text=True,
                                          env=env, stdin=subprocess.DEVNULL))
        for i, p in enumerate(procs[1:], 1):
            _ready_line(p, i)
        ready(f"{first} [{count} workers on one port]")
        while not stopping:
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    print(f"keyproxy: worker {i} stopped ({p.returncode}); stopping the others", file=sys.stderr)
                    stop(signal.SIGTERM, None)
                    break
            time.sleep(0.2)
        codes = [p.wait(60) for p in procs]
        return next((c for c in codes if c not in (0, -signal.SIGTERM)), 0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
