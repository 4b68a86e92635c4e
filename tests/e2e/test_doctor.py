"""keyproxy doctor: a healthy install exits 0; a broken one names each problem with its fix; nothing changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from keyproxy.emulator.devstack import DevStack, new_real_key

TIGHT = {"enableReading": True, "enableSpotAndMarginTrading": True, "enableWithdrawals": False, "ipRestrict": True}


def snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
            for p in sorted((root / "state").rglob("*")) if p.is_file()}


def test_doctor_on_a_healthy_and_a_broken_install(tmp_path: Path) -> None:
    dev = DevStack(tmp_path / "stack")
    key = new_real_key(permissions=TIGHT)
    try:
        dev.start_emulator([key])
        dev.init()
        dev.add_account("main", key)
        dev.add_bot("trader", "main", "read,trade")
        (dev.root / "keyproxy.toml").chmod(0o600)
        before = snapshot(dev.root)
        healthy = dev.cli("doctor", "--json", check=False)
        findings = json.loads(healthy.stdout)
        assert healthy.returncode == 0, findings
        assert all(f["level"] == "ok" for f in findings)
        assert snapshot(dev.root) == before  # doctor changes nothing

        # break it: a world-readable vault, a halt, an overdue key, a key that can withdraw
        vault = dev.root / "state" / "vault.db"
        vault.chmod(0o644)
        dev.cli("halt", "--all", "--reason", "incident 9")
        over = new_real_key(permissions={**TIGHT, "enableWithdrawals": True, "ipRestrict": False})
        dev.close()
        dev.start_emulator([key, over])
        dev.cli("key", "add", "old", "--exchange", "binance", "--base-url", dev.emulator_url,  # type: ignore[arg-type]
                "--insecure-upstream", "--rotate-every", "1s", input=json.dumps(over.credentials))
        broken = dev.cli("doctor", check=False)
        text = broken.stdout
        assert broken.returncode == 1
        assert "vault" in text and "mode 0o644" in text and "fix: chmod 600" in text
        assert "halt on all * since" in text and "keyproxy resume --all" in text
        assert "account old: the key can withdraw but no bot of this account has the withdraw scope" in text
        assert "the key has no IP restriction" in text
        assert "key of account old is" in text and "keyproxy key rotate old" in text

        # no network path to the exchange: the fix says so, and names --offline, which then passes
        dev.close()
        away = dev.cli("doctor", "--json", check=False)
        unreachable = [f for f in json.loads(away.stdout) if "cannot" in f["what"]]
        assert away.returncode == 1 and {f["check"] for f in unreachable} == {"exchange permissions", "clock"}
        assert all("keyproxy doctor --offline" in f["fix"] for f in unreachable), unreachable
        offline = json.loads(dev.cli("doctor", "--offline", "--json", check=False).stdout)
        assert not [f for f in offline if f["check"] in ("exchange permissions", "clock")]
    finally:
        dev.close()


def test_doctors_fix_matches_a_wrong_secret(tmp_path: Path) -> None:
    """A key whose secret the exchange does not accept (Binance -1022) is 'wrong secret', not the network and
    not narrow permissions."""
    dev = DevStack(tmp_path / "stack")
    key = new_real_key(permissions=TIGHT)
    try:
        dev.start_emulator([key])
        dev.init()
        wrong = {**key.credentials, "secret": new_real_key().credentials["secret"]}
        dev.cli("key", "add", "main", "--exchange", "binance", "--base-url", dev.emulator_url,  # type: ignore[arg-type]
                "--insecure-upstream", input=json.dumps(wrong))
        findings = json.loads(dev.cli("doctor", "--json", check=False).stdout)
        [refused] = [f for f in findings if f["check"] == "exchange permissions"]
        assert "-1022" in refused["what"] or "Signature" in refused["what"], refused
        assert "wrong secret" in refused["fix"] and "keyproxy key rotate main" in refused["fix"]
        assert "narrow" not in refused["fix"] and "network" not in refused["fix"]
    finally:
        dev.close()
