"""The hostile battery at CI size (bench/hostile.py runs it at full size; figures in docs/reliability.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from keyproxy.devstack import DevStack, new_real_key
from tests.e2e.battery import kill_nine, malformed

MALFORMED = int(os.environ.get("KEYPROXY_BATTERY_MALFORMED", "300"))
KILLS = int(os.environ.get("KEYPROXY_BATTERY_KILLS", "50"))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("hostile"), log_level="info")
    key = new_real_key()
    try:
        dev.start_emulator([key])
        dev.init()
        dev.add_account("main", key)
        dev.start_daemon()
        yield dev
    finally:
        dev.close()


def test_malformed_requests_never_reach_the_exchange(target: DevStack) -> None:
    result = malformed(target, MALFORMED)
    assert result.sent + result.hangs == MALFORMED
    assert result.hangs == 0 and result.reached_exchange == 0 and result.echoed_canary == 0
    assert result.tracebacks == 0 and result.daemon_alive
    assert not {s for s in result.statuses if s.startswith("5")}, result.statuses


def test_kill_nine_under_traffic_and_admin_writes(target: DevStack) -> None:
    result = kill_nine(target, KILLS)
    assert result.kills == KILLS and result.vault_opened == KILLS
    assert result.lost_bots == 0
    assert result.audit_ok == KILLS, result.audit_problems
    # after the last restart the torn tail is cut and the whole chain verifies
    assert target.cli("audit", "verify").returncode == 0
