from __future__ import annotations

from keyproxy.secret import Secret
from keyproxy.vault import Credentials, NewAccount, PassphraseSource
from keyproxy.vault._crypto import KDF_FLOOR


def passphrase_source(text: str) -> PassphraseSource:
    return PassphraseSource(lambda _confirm: Secret(text), kdf=KDF_FLOOR)


def hmac_account(name: str, api_key: str = "", secret: str = "") -> NewAccount:
    return NewAccount(name, "binance", "hmac",
                      Credentials(api_key=Secret(api_key or f"AK-{name}"), secret=Secret(secret or f"SK-{name}")))
