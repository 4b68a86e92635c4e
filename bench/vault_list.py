"""How long `key list` takes on a vault with many accounts (issue: 10,000 in under 1 s after unlock).

Run: .venv/bin/python bench/vault_list.py [--accounts 10000]
Prints the time to add the accounts, to unlock (file master key, so no KDF),
to list them, and the CLI's own wall time for `keyproxy key list --json`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keyproxy.secret import Secret
from keyproxy.vault import Credentials, FileSource, NewAccount, Vault
from keyproxy.vault.master import write_key_file


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=10_000)
    n = ap.parse_args().accounts
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "k"
        write_key_file(key_file)
        path = Path(tmp) / "state" / "vault.db"
        t0 = time.perf_counter()
        with Vault.create(path, FileSource(key_file)) as v:
            for i in range(n):
                v.add_account(NewAccount(f"acct{i:05d}", "binance", "hmac",
                                         Credentials(Secret(f"AK{i}"), Secret(f"SK{i}"))))
        t_add = time.perf_counter() - t0
        t0 = time.perf_counter()
        v = Vault.open(path, lambda kind: FileSource(key_file))
        t_open = time.perf_counter() - t0
        t0 = time.perf_counter()
        accounts = v.list_accounts()
        t_list = time.perf_counter() - t0
        v.close()
        assert len(accounts) == n
        env = {**os.environ, "KEYPROXY_KEY_FILE": str(key_file)}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "keyproxy.cli", "--vault", str(path), "key", "list", "--json"],
                             env=env, capture_output=True, check=True).stdout
        t_cli = time.perf_counter() - t0
        print(f"accounts:            {n}")
        print(f"add (1 txn each):    {t_add:.2f} s  ({n / t_add:.0f} adds/s, synchronous=FULL)")
        print(f"unlock (key file):   {t_open * 1000:.1f} ms")
        print(f"list after unlock:   {t_list * 1000:.1f} ms")
        print(f"CLI key list --json: {t_cli * 1000:.0f} ms wall, {len(out) / 1e6:.1f} MB output "
              "(incl. interpreter start)")


if __name__ == "__main__":
    main()
