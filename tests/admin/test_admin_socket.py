"""The admin socket: live changes while the daemon runs, file modes, and the peer-uid fence."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import call, hmac_sign, now_ms


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    dev = DevStack(tmp_path_factory.mktemp("admin"))
    keys = [new_real_key(), new_real_key()]
    try:
        dev.start_emulator(keys)
        dev.init()
        dev.start_daemon()
        yield dev, keys
    finally:
        dev.close()


def test_key_add_and_bot_add_take_effect_live(running) -> None:  # type: ignore[no-untyped-def]
    dev, keys = running
    dev.add_account("live", keys[0])  # through the admin socket: the daemon holds the vault
    creds = dev.add_bot("livebot", "live", "read")
    q = hmac_sign(creds["secret"], f"timestamp={now_ms()}")
    headers = {"X-MBX-APIKEY": creds["api_key"]}
    assert call(creds["base_url"], "GET", "/api/v3/account", q, headers=headers).status == 200
    listed = json.loads(dev.cli("key", "list", "--json").stdout)
    assert [a["name"] for a in listed] == ["live"]


def test_daemon_holds_the_vault_so_a_second_daemon_is_refused(running) -> None:  # type: ignore[no-untyped-def]
    dev, _ = running
    out = dev.cli("serve", "--port", "0", check=False, timeout=30)
    assert out.returncode == 1 and "another keyproxy daemon" in out.stderr


def test_socket_and_state_dir_modes(running) -> None:  # type: ignore[no-untyped-def]
    dev, _ = running
    state = dev.root / "state"
    sock = state / "admin.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert sock.stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700


def test_errors_travel_back_as_one_line(running) -> None:  # type: ignore[no-untyped-def]
    dev, keys = running
    out = dev.cli("bot", "add", "x", "--account", "nope", "--scope", "read", check=False)
    assert (out.returncode, out.stderr.strip()) == (1, "keyproxy: no account named 'nope'")
    out = dev.cli("bot", "add", "y", "--account", "live", "--scope", "admin", check=False)
    assert out.returncode == 2 and "never granted" in out.stderr  # a bad --scope value: usage


RAW_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
body = b'{"op": "status", "args": {}}'
s.sendall(b"POST /v1/call HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nContent-Length: "
          + str(len(body)).encode() + b"\\r\\nConnection: close\\r\\n\\r\\n" + body)
print(s.recv(65536).decode(errors="replace"))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="needs root (to run a client as another uid) and a system python3")
def test_other_uid_is_refused_by_peer_credentials() -> None:
    """Even with the directory and socket opened up to everyone, SO_PEERCRED stops another uid."""
    import tempfile

    from aiohttp import web  # noqa: F401  (the server runs in a child; this only checks the import works)

    work = Path(tempfile.mkdtemp(prefix="kp-peercred-", dir="/tmp"))
    work.chmod(0o755)
    script = work / "serve_admin.py"
    script.write_text(f"""
import asyncio, os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from aiohttp import web
from keyproxy.admin.server import build_admin_app
class FakeControls:
    def status(self): return {{"ok": True}}
async def main():
    runner = web.AppRunner(build_admin_app(FakeControls()))
    await runner.setup()
    await web.UnixSite(runner, sys.argv[1]).start()
    os.chmod(sys.argv[1], 0o666)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
""")
    sock = work / "admin.sock"
    server = subprocess.Popen([sys.executable, str(script), str(sock)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        as_root = subprocess.run(["/usr/bin/python3", "-c", RAW_CLIENT, str(sock)], capture_output=True, text=True)
        assert '"ok": true' in as_root.stdout, as_root
        as_nobody = subprocess.run(["/usr/bin/python3", "-c", RAW_CLIENT, str(sock)], capture_output=True,
                                   text=True, user=65534, group=65534, cwd="/")
        assert as_nobody.stdout.startswith("HTTP/1.1 403") and "permission denied" in as_nobody.stdout, as_nobody
    finally:
        server.kill()
        server.wait()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def test_a_bug_in_an_admin_call_comes_back_as_one_json_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An unexpected exception in the daemon is the operator's one-line error (no traceback, not a
    'JSONDecodeError'), naming the call; its text stays out of the answer (it could carry anything)."""
    import asyncio
    import threading

    from aiohttp import web

    from keyproxy.admin.client import AdminClient
    from keyproxy.admin.server import build_admin_app
    from keyproxy.errors import KeyproxyError

    class Broken:
        def status(self) -> None:
            raise FileNotFoundError("/somewhere/.vault.tmp-abc detail")

    sock, loop, ready = tmp_path / "admin.sock", asyncio.new_event_loop(), threading.Event()

    async def serve() -> None:
        runner = web.AppRunner(build_admin_app(Broken()))  # type: ignore[arg-type]
        await runner.setup()
        await web.UnixSite(runner, str(sock)).start()
        ready.set()

    threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True).start()
    assert ready.wait(10)
    try:
        with pytest.raises(KeyproxyError) as info:
            AdminClient(sock).call("status")
        assert str(info.value) == ("internal error in status (FileNotFoundError); this is a bug, see the daemon's "
                                   "log")
    finally:
        loop.call_soon_threadsafe(loop.stop)
