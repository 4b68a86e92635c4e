"""kill -9 at random moments while adding and rekeying: nothing acknowledged is ever lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from keyproxy.secret import Secret
from keyproxy.vault import Vault
from tests.vault.crash_writer import PASSPHRASES, open_either
from tests.vault.helpers import passphrase_source

KILLS = int(os.environ.get("KEYPROXY_CRASH_KILLS", "20"))


def test_kill_9_during_add_and_rekey(tmp_path: Path) -> None:
    path = tmp_path / "state" / "vault.db"
    Vault.create(path, passphrase_source(PASSPHRASES[0])).close()
    acknowledged: list[str] = []
    generation = 1
    rng = random.Random(int(os.environ.get("KEYPROXY_CRASH_SEED", "1234")))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.vault.crash_writer", str(path), str(len(acknowledged))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()  # started (on a loaded machine an interpreter takes a while)
        time.sleep(rng.uniform(0.25, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # read through the same buffered file the first line came from (communicate() would read the descriptor
        # beneath it and miss what that file had buffered past the first line)
        out, err = first + proc.stdout.read(), proc.stderr.read()
        assert proc.returncode == -signal.SIGKILL, err
        rotated = 0
        for line in out.splitlines():
            kind, value = line.split()
            if kind == "added":
                acknowledged.append(value)
            elif kind == "rotated":
                rotated = max(rotated, int(value))
            else:
                generation = int(value)
        vault, _ = open_either(path)
        with vault:
            names = {a.name for a in vault.list_accounts()}
            missing = [n for n in acknowledged if n not in names]
            assert not missing, f"lost acknowledged accounts {missing}"
            assert vault.status()["master_generation"] >= generation
            # at most one unacknowledged commit can exist (killed between commit and print)
            assert len(names) - len(acknowledged) <= 1
            for name in acknowledged[-3:]:
                if name != "acct0":
                    assert vault.credentials(name).secret == Secret(f"secret-{name[4:]}")
            if "acct0" in names:  # a rotation is whole: the acknowledged version or a newer one, and it opens
                acct0 = vault.account("acct0")
                assert acct0.version >= max(rotated, 1)
                assert vault.credentials("acct0").secret is not None
            assert vault.check_integrity() == []
            # continue numbering after any unacknowledged commit too
            acknowledged.extend(sorted(names - set(acknowledged)))
        leftovers = [p.name for p in path.parent.iterdir() if ".tmp-" in p.name]
        assert leftovers == []
    assert len(acknowledged) > KILLS  # the writer really made progress between kills
