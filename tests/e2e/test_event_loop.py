"""`keyproxy serve --loop`: asyncio's own by default, uvloop on request; both serve a bot and the admin socket."""

from __future__ import annotations

from pathlib import Path

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at


@pytest.mark.parametrize("loop", ["uvloop"])  # asyncio, the default, serves every other test
def test_each_event_loop_serves_an_unmodified_bot_and_says_which_it_is(tmp_path: Path, loop: str) -> None:
    with DevStack(tmp_path) as dev:
        key = new_real_key()
        dev.start_emulator([key])
        dev.init()
        dev.add_account("main", key)
        dev.start_daemon(0, "--loop", loop)
        creds = dev.add_bot("bot", "main", "read")
        bot = point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                          "options": {"defaultType": "spot"}}), creds["base_url"])
        assert bot.fetch_balance()["free"]["USDT"] > 0
        assert "bot" in dev.cli("bot", "list").stdout  # the admin socket (SO_PEERCRED) answers on this loop too
        assert f"event loop: {loop}" in dev.daemon_log()
