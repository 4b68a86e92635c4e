"""Config reload: SIGHUP and `keyproxy reload` apply [bots.NAME] limits live; a bad file changes nothing."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack
from tests.e2e.conftest import call, hmac_sign, now_ms, one_account_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    yield from one_account_stack(tmp_path_factory, "reload")


def place(creds: dict, qty: str = "0.01") -> tuple[int, dict]:  # type: ignore[type-arg]
    body = hmac_sign(creds["secret"], f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity={qty}"
                                      f"&price=20000&timestamp={now_ms()}")
    ans = call(creds["base_url"], "POST", "/api/v3/order", body=body, headers={"X-MBX-APIKEY": creds["api_key"]})
    return ans.status, ans.body


def set_config(dev: DevStack, extra: str) -> None:
    config = dev.root / "keyproxy.toml"
    base = config.read_text().split("\n# --- test ---\n")[0]
    config.write_text(base + "\n# --- test ---\n" + extra)


def test_reload_applies_pinned_limits_and_refuses_a_bad_file(stack: DevStack) -> None:
    creds = stack.add_bot("pinned", "main", "read,trade")
    assert place(creds)[0] == 200
    set_config(stack, "[bots.pinned]\nmax_order_notional = 100\n")
    out = stack.cli("reload")
    assert "reloaded" in out.stdout
    status, body = place(creds)
    assert (status, body["error"]) == (403, "notional_exceeded")
    # the config pins it: bot set refuses to change what the file decides
    refused = stack.cli("bot", "set", "pinned", "max_order_notional=5000", check=False)
    assert refused.returncode == 1 and "set in the config file" in refused.stderr
    # an invalid file is refused with file, key and reason (by the CLI, and by the daemon on SIGHUP);
    # the running limits stay
    set_config(stack, "[bots.pinned]\nmax_order_notional = -1\n")
    bad = stack.cli("reload", check=False)
    assert bad.returncode == 1 and "bots.pinned.max_order_notional" in bad.stderr and "keyproxy.toml" in bad.stderr
    check = stack.cli("config", "check", check=False)
    assert check.returncode == 1 and "bots.pinned.max_order_notional" in check.stderr
    stack.daemon().send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "config reload refused" not in stack.daemon_log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = [json.loads(x) for x in stack.daemon_log().splitlines() if "config reload refused" in x][-1]
    assert "keyproxy.toml: bots.pinned.max_order_notional: must be a positive number" in log["reason"]
    assert place(creds)[1]["error"] == "notional_exceeded"
    set_config(stack, "")


def test_sighup_reloads_without_dropping_connections(stack: DevStack) -> None:
    creds = stack.add_bot("hupped", "main", "read,trade")
    set_config(stack, "[bots.hupped]\nmax_order_notional = 100\n")
    stack.daemon().send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while place(creds)[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert place(creds)[1]["error"] == "notional_exceeded"
    set_config(stack, "")
    stack.daemon().send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while place(creds)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert place(creds)[0] == 200
    assert stack.cli("config", "check").stdout.startswith("ok: ")
    lines = [json.loads(x) for f in sorted(stack.audit_dir.glob("audit-*.jsonl")) for x in f.read_text().splitlines()]
    assert any(ln["event"] == "config.reload" and ln["result"].startswith("refused") for ln in lines)
    assert all(ln.get("restart_needed") == [] for ln in lines
               if ln["event"] == "config.reload" and "ok" == ln["result"])
