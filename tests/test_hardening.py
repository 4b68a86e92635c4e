"""The running daemon: not dumpable, no core dumps, umask 077, no passphrase left in its environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keyproxy.devstack import DevStack, new_real_key


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
