"""Pick the master-key source from config, flags, environment and the terminal.

Order for a new vault (`master_key = "auto"`): a passphrase file
(`--passphrase-file` or `$KEYPROXY_PASSPHRASE_FILE`), else the OS keyring when
a real backend exists, else a passphrase prompt on the terminal. An existing
vault's header names its source; this module only finds the input for it.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from keyproxy.config import Settings
from keyproxy.errors import MasterKeyUnavailable
from keyproxy.secret import Secret
from keyproxy.vault.master import (
    MAX_PASSPHRASE_BYTES,
    FileSource,
    KeyringSource,
    MasterSource,
    PassphraseSource,
    passphrase_from_file,
    usable_keyring,
)

CREDENTIAL_NAME = "keyproxy-master"


@dataclass(frozen=True, slots=True)
class UnlockInputs:
    passphrase_file: Path | None
    key_file: Path | None

    @classmethod
    def gather(cls, settings: Settings, *, passphrase_file: Path | None = None,
               key_file: Path | None = None, env: Mapping[str, str] | None = None) -> UnlockInputs:
        """Flags beat environment, environment beats config."""
        env = os.environ if env is None else env
        pf = passphrase_file or _env_path(env, "KEYPROXY_PASSPHRASE_FILE") or settings.vault.passphrase_file
        kf = key_file or _env_path(env, "KEYPROXY_KEY_FILE") or settings.vault.key_file
        if kf is None and env.get("CREDENTIALS_DIRECTORY"):
            candidate = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
            kf = candidate if candidate.exists() else None
        return cls(passphrase_file=pf, key_file=kf)


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name)
    return Path(value).expanduser() if value else None


def _open_tty() -> None:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise MasterKeyUnavailable(
            "no passphrase: there is no terminal to prompt on; set KEYPROXY_PASSPHRASE_FILE "
            "or pass --passphrase-file, or use a key file (master_key = \"file\")"
        ) from None
    try:
        # started in the background (`keyproxy serve &`): turning echo off would stop the process on
        # SIGTTOU ("suspended (tty output)") with nothing said; say it instead
        background = os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:
        background = False
    finally:
        os.close(fd)
    if background:
        raise MasterKeyUnavailable(
            "keyproxy needs the vault passphrase but runs in the background, where it cannot ask: start it "
            "in the foreground (another terminal, or `keyproxy serve` then Ctrl-Z and `bg` after unlocking), "
            "or give the passphrase in a file (--passphrase-file / KEYPROXY_PASSPHRASE_FILE)")


def prompt_passphrase(confirm: bool) -> Secret:
    """Ask on the controlling terminal without echo (getpass uses /dev/tty)."""
    _open_tty()
    first = getpass.getpass("Vault passphrase: ")
    if not first:
        raise MasterKeyUnavailable("empty passphrase")
    if len(first.encode()) > MAX_PASSPHRASE_BYTES:
        raise MasterKeyUnavailable(f"passphrase longer than {MAX_PASSPHRASE_BYTES} bytes")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise MasterKeyUnavailable("the passphrases do not match")
    return Secret(first)


def _passphrase_source(settings: Settings, passphrase_file: Path | None, file_first: bool = False
                       ) -> PassphraseSource:
    """`file_first`: a new vault's or a rekey's passphrase file, named on purpose, wins over KEYPROXY_PASSPHRASE
    (session 35's review: a rekey to `--new-passphrase-file` took the environment's passphrase instead, and the
    vault then opened with that one only)."""
    from keyproxy.hardening import take_secret_from_env

    from_env = take_secret_from_env(os.environ)  # removed at once; children never inherit it
    if file_first and passphrase_file is not None:
        path = passphrase_file
        return PassphraseSource(lambda _confirm: passphrase_from_file(path), kdf=settings.vault.kdf)
    if from_env:
        secret = Secret(from_env)
        return PassphraseSource(lambda _confirm: secret, kdf=settings.vault.kdf)
    if passphrase_file is not None:
        path = passphrase_file
        return PassphraseSource(lambda _confirm: passphrase_from_file(path), kdf=settings.vault.kdf)
    return PassphraseSource(prompt_passphrase, kdf=settings.vault.kdf)


def _file_source(key_file: Path | None) -> FileSource:
    if key_file is None:
        raise MasterKeyUnavailable(
            "master key source is 'file' but no key file is set: pass --key-file, set "
            f"KEYPROXY_KEY_FILE or vault.key_file, or provide $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}"
        )
    return FileSource(key_file)


def source_for_kind(kind: str, settings: Settings, inputs: UnlockInputs) -> MasterSource:
    """The source that can recover the master key of a vault whose header says `kind`."""
    if kind == "passphrase":
        return _passphrase_source(settings, inputs.passphrase_file)
    if kind == "file":
        return _file_source(inputs.key_file)
    if kind == "keyring":
        return KeyringSource()
    raise MasterKeyUnavailable(f"vault header names an unknown master-key source {kind!r}")


def source_for_new(choice: str, settings: Settings, inputs: UnlockInputs, named: bool = False) -> MasterSource:
    """The source for a new vault or a rekey; `choice` is auto|keyring|passphrase|file. `named`: `inputs` are what
    the operator named for the new key itself (a rekey's --new-passphrase-file), which win over KEYPROXY_PASSPHRASE;
    else a file from the environment or the config is taken in the order a vault is opened with."""
    if named and (choice == "passphrase" or (choice == "auto" and inputs.passphrase_file is not None)):
        return _passphrase_source(settings, inputs.passphrase_file, file_first=True)
    if choice != "auto":
        return source_for_kind(choice, settings, inputs)
    if inputs.passphrase_file is not None:
        return _passphrase_source(settings, inputs.passphrase_file)
    backend, why = usable_keyring()
    if backend is not None:
        return KeyringSource()
    try:
        _open_tty()
    except MasterKeyUnavailable:
        raise MasterKeyUnavailable(
            f"{why} (keyring.errors.NoKeyringError on a headless machine); use a passphrase file "
            "(KEYPROXY_PASSPHRASE_FILE or --passphrase-file) or a key file (--master-key file --key-file PATH)"
        ) from None
    return _passphrase_source(settings, None)
