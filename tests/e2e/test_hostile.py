"""The hostile battery at CI size (bench/hostile.py runs it at full size; figures in docs/reliability.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.battery import kill_nine, malformed
from tests.e2e.battery_concurrency import concurrency, start_stack
from tests.e2e.battery_generated import generated
from tests.e2e.battery_slow import SlowResult, slow_clients

MALFORMED = int(os.environ.get("KEYPROXY_BATTERY_MALFORMED", "200"))
GENERATED = int(os.environ.get("KEYPROXY_BATTERY_GENERATED", "200"))
KILLS = int(os.environ.get("KEYPROXY_BATTERY_KILLS", "10"))  # bench/hostile.py runs 1,000
SLOW = int(os.environ.get("KEYPROXY_BATTERY_SLOW", "100"))
DEADLINES = "[proxy]\nheader_timeout = 2\nbody_timeout = 2\n"  # production's 10 s would only make CI slower

# load far above Binance's published budgets (the emulator does not enforce them): no governor here
NO_GOVERNOR = "[governor]\nenabled = false\n"

@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # generated requests sign with a real bot's key and fail: keep the bot (auth_failures would suspend it)
    # so that every one of them reaches signature verification
    dev = DevStack(tmp_path_factory.mktemp("hostile"), log_level="info",
                   extra_config="[anomaly.auth_failures]\nenabled = false\n" + DEADLINES + NO_GOVERNOR)
    key = new_real_key()
    try:
        dev.serve_account("main", key)
        yield dev
    finally:
        dev.close()


def test_malformed_requests_never_reach_the_exchange(target: DevStack) -> None:
    result = malformed(target, MALFORMED)
    assert result.sent + result.hangs == MALFORMED
    assert result.hangs == 0 and result.reached_exchange == 0 and result.echoed_canary == 0
    assert result.tracebacks == 0 and result.daemon_alive
    assert not {s for s in result.statuses if s.startswith("5")}, result.statuses


def test_hypothesis_generated_requests_never_reach_the_exchange(target: DevStack) -> None:
    bot = target.add_bot("probed", "main", "read,trade")  # its key is real; the generated signatures are not
    result = generated(target, GENERATED, bot["api_key"])
    assert result.sent == GENERATED and result.hangs == 0
    assert result.reached_exchange == 0 and result.echoed_canary == 0 and result.tracebacks == 0
    assert result.daemon_alive
    # the requests got as far as keyproxy's own checks, not only the HTTP parser's
    assert {"400", "401", "403", "404"} <= set(result.statuses), result.statuses
    assert {"bad_signature", "unknown_bot", "unknown_endpoint", "unknown_account"} <= set(result.codes), result.codes


def test_slow_clients_are_cut_by_the_deadlines_and_do_not_starve_a_bot(target: DevStack) -> None:
    honest, slowpoke = target.add_bot("honest", "main", "read"), target.add_bot("slowpoke", "main", "read,trade")
    result = slow_clients(target, honest, slowpoke["api_key"], SLOW, header_timeout=2, body_timeout=2)
    assert result.never_cut == 0 and result.cut == SLOW
    assert result.answered_408 == SLOW // 2  # every dribbled body: 408 request_timeout
    # the deadlines count from the first byte (headers) and from the end of the headers (body, then at most
    # 1 s of lingering: aiohttp reads what is still coming so that the bot sees the 408, not a reset)
    assert result.headers_cut_after < 2 + 1 and result.body_cut_after < 2 + 1 + 1, result
    assert result.honest_failed == 0 and len(result.honest_during_ms) >= 10
    before, during = (SlowResult.percentile(v, 50) for v in (result.honest_before_ms, result.honest_during_ms))
    assert during < 4 * before + 50, (before, during)  # bench/hostile.py prints the real figures
    assert "Traceback" not in target.daemon_log()


def test_kill_nine_under_traffic_and_admin_writes(target: DevStack) -> None:
    result = kill_nine(target, KILLS)
    assert result.kills == KILLS and result.vault_opened == KILLS
    assert result.lost_bots == 0
    assert result.audit_ok == KILLS, result.audit_problems
    # after the last restart the torn tail is cut and the whole chain verifies
    assert target.cli("audit", "verify").returncode == 0


CONCURRENCY_SECONDS = float(os.environ.get("KEYPROXY_BATTERY_SECONDS", "7"))


def test_concurrency_rotations_revocations_halts_and_reloads_under_32_bots(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    with DevStack(tmp_path_factory.mktemp("concurrency"), log_level="info", extra_config=NO_GOVERNOR) as dev:
        accounts = start_stack(dev, spares=3)
        result = concurrency(dev, accounts, bots=32, seconds=CONCURRENCY_SECONDS)
        assert result.violations == [], result.violations[:10]
        assert result.unverified_signatures == 0 and result.tracebacks == 0 and result.daemon_alive
        # the battery did what it says: every kind of change happened under traffic, and was tested
        assert {"key_rotate", "key_retire", "bot_revoke", "bot_rotate", "reload", "bot_add", "sighup", "halt",
                "resume"} <= set(
            result.admin_ops), result.admin_ops
        assert result.dead_credential_tried >= result.admin_ops["bot_revoke"] + result.admin_ops["bot_rotate"]
        assert result.statuses.get("403 notional_exceeded", 0) > 0 and result.statuses.get("403 halted", 0) > 0
        assert result.reached_exchange > 1000
        assert dev.cli("audit", "verify").returncode == 0
