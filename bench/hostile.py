"""The hostile battery at full size: malformed requests and kill -9 under traffic.

Run: .venv/bin/python bench/hostile.py [--malformed 10000] [--kills 1000]
Prints what the CI-size test asserts, at the sizes asked for (figures in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keyproxy.devstack import DevStack, new_real_key  # noqa: E402
from tests.e2e.battery import kill_nine, malformed  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--malformed", type=int, default=10_000)
    ap.add_argument("--kills", type=int, default=1_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="keyproxy-hostile-") as tmp, \
            DevStack(Path(tmp), log_level="info") as dev:
        key = new_real_key()
        dev.start_emulator([key])
        dev.init()
        dev.add_account("main", key)
        dev.start_daemon()
        started = time.monotonic()
        m = malformed(dev, args.malformed)
        print(f"malformed: {m.sent} sent in {time.monotonic() - started:.1f} s; answers {dict(sorted(m.statuses.items()))}; "
              f"reached the exchange {m.reached_exchange}; hangs {m.hangs}; tracebacks {m.tracebacks}; "
              f"canary echoed {m.echoed_canary}; daemon alive {m.daemon_alive}")
        started = time.monotonic()
        k = kill_nine(dev, args.kills)
        print(f"kill -9: {k.kills} kills in {time.monotonic() - started:.1f} s; vault opened {k.vault_opened}; "
              f"bots lost {k.lost_bots}; audit chain verified up to its last complete line {k.audit_ok}"
              + (f"; problems {k.audit_problems[:3]}" if k.audit_problems else ""))
        ok = (m.reached_exchange == m.hangs == m.tracebacks == m.echoed_canary == 0 and m.daemon_alive
              and k.lost_bots == 0 and k.audit_ok == k.kills)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
