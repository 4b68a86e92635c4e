"""The daemon as an object (keyproxy/daemon.py `Daemon`): built in process from a real vault and config
file, without listening; its config reload tested directly (the e2e tests drive it by SIGHUP and
`keyproxy reload`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyproxy.config import load_settings
from keyproxy.daemon import Daemon
from keyproxy.emulator.devstack import DevStack, new_real_key
from keyproxy.errors import ConfigError
from keyproxy.unlock import UnlockInputs, source_for_kind
from keyproxy.vault import Vault


async def test_reload_config_in_process_takes_a_valid_file_and_keeps_the_old_one_for_a_bad_one(
        tmp_path: Path) -> None:
    dev = DevStack(tmp_path)
    try:
        dev.start_emulator([new_real_key()])
        dev.init()
        dev.add_account("main", new_real_key())
        dev.add_bot("scalper", "main", "read,trade")
    finally:
        dev.close()  # only the files are needed: the daemon is built here, in this process
    config = tmp_path / "keyproxy.toml"
    settings = load_settings(config)
    inputs = UnlockInputs(passphrase_file=tmp_path / "passphrase", key_file=None)
    vault = Vault.open(settings.vault.path, lambda kind: source_for_kind(kind, settings, inputs))
    daemon = Daemon(settings, vault)
    try:
        policy = daemon.state.snapshot.bot_named("scalper").policy
        assert policy.max_order_notional is None

        good = config.read_text()
        config.write_text(good + '\n[bots.scalper]\nmax_order_notional = "500"\n')
        result = daemon.reload_config()
        assert result["pinned_bots"] == ["scalper"] and result["restart_needed"] == []
        assert str(daemon.state.snapshot.bot_named("scalper").policy.max_order_notional) == "500"
        assert daemon.settings.bot_policies == daemon.file_settings.bot_policies

        config.write_text(good + '\n[bots.scalper]\nmax_order_notional = "lots"\n')
        with pytest.raises(ConfigError):
            daemon.reload_config()
        assert str(daemon.state.snapshot.bot_named("scalper").policy.max_order_notional) == "500"  # the old one stays

        config.write_text(good + '\n[listen]\nport = 9999\n')
        assert daemon.reload_config()["restart_needed"] == ["listen"]
        assert daemon.settings.listen == settings.listen  # the listener changes only on restart
        lines = daemon.trail.directory.glob("audit-*.jsonl")
        text = "".join(p.read_text() for p in lines)
        assert text.count('"config.reload"') == 3 and '"refused: ' in text
    finally:
        await daemon.stop()
        vault.close()
