"""The running daemon: not dumpable, no core dumps, umask 077, no passphrase left in its environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_daemon_process_is_hardened(tmp_path: Path) -> None:
    dev = DevStack(tmp_path)
    key = new_real_key()
    try:
        dev.start_emulator([key])
        dev.init()
        dev.add_account("main", key)
        # the passphrase given in the environment this time (the file is unset): it must not stay there
        passphrase = (tmp_path / "passphrase").read_text().strip()
        del dev.env["KEYPROXY_PASSPHRASE_FILE"]
        dev.env["KEYPROXY_PASSPHRASE"] = passphrase
        dev.start_daemon()
        pid = dev.daemon().pid
        status = Path(f"/proc/{pid}/status").read_text()
        assert "Umask:\t0077" in status
        limits = Path(f"/proc/{pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"]
        # not dumpable: the kernel's own answer, read back with PR_GET_DUMPABLE by the daemon...
        assert "process hardened: dumpable=0" in dev.daemon_log()
        if os.geteuid() != 0:  # ...and, when we are not root, /proc/PID files become root-owned
            assert os.stat(f"/proc/{pid}/mem").st_uid == 0
        assert "KEYPROXY_PASSPHRASE was removed" in dev.daemon_log()
        assert passphrase.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        assert dev.metrics()  # serving
    finally:
        dev.close()


def test_take_secret_from_env() -> None:
    from keyproxy.hardening import take_secret_from_env

    env = {"KEYPROXY_PASSPHRASE": "s3cret", "OTHER": "x"}
    assert take_secret_from_env(env) == "s3cret" and env == {"OTHER": "x"}
    assert take_secret_from_env(env) is None


def test_daemon_tells_systemd_when_it_is_ready_and_when_it_stops(tmp_path: Path) -> None:
    """The unit is Type=notify: READY=1 reaches $NOTIFY_SOCKET only once every listener answers, so
    `systemctl start` returns when an admin command or a bot can use the daemon; STOPPING=1 on SIGTERM."""
    import socket
    import urllib.request

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.settimeout(30)
    dev = DevStack(tmp_path / "stack")
    try:
        dev.init()
        dev.env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
        dev.start_daemon()
        ready = listener.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=keyproxy listening on http://127.0.0.1:")
        assert dev.cli("status").returncode == 0  # the admin socket answers
        with urllib.request.urlopen(dev.metrics_url, timeout=10) as r:  # type: ignore[arg-type]
            assert r.status == 200
        assert dev.stop_daemon() == 0
        assert listener.recv(4096) == b"STOPPING=1"
    finally:
        listener.close()
        dev.close()


def test_notify_without_systemd_is_a_no_op() -> None:
    from keyproxy.sdnotify import notify

    assert notify("READY=1", environ={}) is False
    assert notify("READY=1", environ={"NOTIFY_SOCKET": "/nonexistent/notify.sock"}) is False  # logged, not raised
