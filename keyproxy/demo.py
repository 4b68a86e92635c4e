"""`keyproxy demo`: show what keyproxy does, end to end, in a throw-away directory.

Everything happens under a fresh temporary directory that is removed at the
end; nothing touches the operator's real vault or keyring.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import TextIO

from keyproxy.secret import Secret
from keyproxy.vault import Credentials, FileSource, NewAccount, Vault
from keyproxy.vault.master import write_key_file


def run_demo(out: TextIO) -> int:
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="keyproxy-demo-") as tmp:
        root = Path(tmp)
        key_file = root / "master.key"
        write_key_file(key_file)
        vault_path = root / "state" / "vault.db"
        say(f"1. New vault at {vault_path}, master key from a 32-byte key file (mode 0600)")
        vault = Vault.create(vault_path, FileSource(key_file))

        api_key = "demo" + secrets.token_hex(16)
        secret = "DEMOSECRET" + secrets.token_hex(24)
        say("2. Adding account 'demo-binance' (binance, hmac) with a freshly generated secret")
        info = vault.add_account(NewAccount(
            "demo-binance", "binance", "hmac", Credentials(api_key=Secret(api_key), secret=Secret(secret))
        ))
        say(f"   fingerprint {info.fingerprint} (HMAC of the API key under the vault key; not the key)")

        say("3. `keyproxy key list` shows metadata only:")
        for a in vault.list_accounts():
            say(f"   {a.name}  {a.exchange}  {a.key_type}  {a.status}  v{a.version}  {a.fingerprint}")

        vault.close()
        files = sorted(p for p in vault_path.parent.iterdir() if p.is_file())
        leaks = [p.name for p in files for needle in (api_key, secret) if needle.encode() in p.read_bytes()]
        mode = oct(vault_path.stat().st_mode & 0o777)
        say(f"4. Raw bytes of {', '.join(p.name for p in files)} searched for the API key and the secret:")
        say(f"   {'FOUND in ' + ', '.join(leaks) if leaks else 'not found: the vault holds them only sealed'}"
            f" (AES-256-GCM); vault file mode {mode}")
        reopened = Vault.open(vault_path, lambda kind: FileSource(key_file))
        same = reopened.credentials("demo-binance").secret == Secret(secret)
        reopened.close()
        say(f"5. Reopened with the master key: the secret opens again intact: {same}")
        return 0 if not leaks and same else 1
