"""Loopback exchange emulator for keyproxy's tests, benchmarks and demo.

It plays the real exchange behind keyproxy and verifies signatures the way
the exchange documents it, written independently of ``keyproxy.exchanges``
(nothing outside this package is imported) so that a mistake shared with
keyproxy's adapters cannot pass unseen.

Run: ``python -m keyproxy.emulator --host 127.0.0.1 --port 0 --accounts FILE``.
In-process: ``await start(build_app(keys))`` -> ``RunningEmulator.url``.
"""

from keyproxy.emulator.accounts import AccountsError, EmulatedKey, load_accounts, parse_accounts
from keyproxy.emulator.app import RunningEmulator, build_app, main, serve, start
from keyproxy.emulator.keys import new_ed25519_key, new_emulated_key, new_hmac_key, new_rsa_key

__all__ = [
    "AccountsError",
    "EmulatedKey",
    "RunningEmulator",
    "build_app",
    "load_accounts",
    "main",
    "new_ed25519_key",
    "new_emulated_key",
    "new_hmac_key",
    "new_rsa_key",
    "parse_accounts",
    "serve",
    "start",
]
