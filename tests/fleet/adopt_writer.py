"""Child process for the kill -9 test: adopts two images of one vault in turn, forever."""

from __future__ import annotations

import sys
from pathlib import Path

from keyproxy.vault import Vault
from tests.vault.helpers import passphrase_source


def main() -> None:
    path, first, second = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes()
    with Vault.open(path, lambda kind: passphrase_source("fleet")) as vault:
        print("open", flush=True)
        while True:
            vault.adopt(first)
            vault.adopt(second)


if __name__ == "__main__":
    main()
