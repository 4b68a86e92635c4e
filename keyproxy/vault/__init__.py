"""The encrypted key vault: `Vault` plus the master-key sources that unlock it."""

from keyproxy.vault.master import FileSource, KeyringSource, PassphraseSource
from keyproxy.vault.records import AccountInfo, Credentials, NewAccount
from keyproxy.vault.store import Vault

__all__ = [
    "AccountInfo",
    "Credentials",
    "FileSource",
    "KeyringSource",
    "NewAccount",
    "PassphraseSource",
    "Vault",
]
