"""Child process for the kill -9 test: adds accounts and rekeys in a loop.

Prints `added NAME` / `rekeyed GEN` only after the call returned, i.e. after
the commit; the parent kills it at random and checks every printed change.
"""

from __future__ import annotations

import sys
from pathlib import Path

from keyproxy.errors import VaultLocked
from keyproxy.secret import Secret
from keyproxy.vault import Credentials
from keyproxy.vault import Vault
from tests.vault.helpers import hmac_account, passphrase_source

PASSPHRASES = ("first passphrase", "second passphrase")


def open_either(path: Path) -> tuple[Vault, int]:
    for i, pw in enumerate(PASSPHRASES):
        try:
            return Vault.open(path, lambda kind, pw=pw: passphrase_source(pw)), i
        except VaultLocked:
            continue
    raise SystemExit("neither passphrase opens the vault")


def main() -> None:
    path, start = Path(sys.argv[1]), int(sys.argv[2])
    vault, current = open_either(path)
    n = start
    while True:
        vault.add_account(hmac_account(f"acct{n}", secret=f"secret-{n}"))
        print(f"added acct{n}", flush=True)
        n += 1
        if n % 3 == 0 and n > 1:  # rotate the first account's key too
            info = vault.rotate_account("acct0", Credentials(api_key=Secret(f"AK-r{n}"), secret=Secret(f"rot-{n}")))
            print(f"rotated {info.version}", flush=True)
        if n % 4 == 0:
            current = 1 - current
            vault.rekey(passphrase_source(PASSPHRASES[current]))
            print(f"rekeyed {vault.status()['master_generation']}", flush=True)


if __name__ == "__main__":
    main()
