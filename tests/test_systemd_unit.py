"""The systemd unit: the hardening set is there, and systemd-analyze rates its exposure 2.0 or lower."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "keyproxy.service"


def test_unit_carries_the_hardening_set() -> None:
    text = UNIT.read_text()
    for line in ("NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                 "ProtectProc=invisible", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "RestrictNamespaces=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
                 "SystemCallFilter=@system-service", "LimitCORE=0", "UMask=0077", "StateDirectoryMode=0700",
                 "LoadCredentialEncrypted=keyproxy-master:", "User=keyproxy", "Type=notify\nNotifyAccess=main"):
        assert line in text, line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_exposure_is_at_most_2() -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for keyproxy\.service: ([0-9.]+) (\w+)", out.stdout)
    assert m, out.stdout[-500:] + out.stderr[-500:]
    assert float(m.group(1)) <= 2.0 and m.group(2) == "OK", m.group(0)
