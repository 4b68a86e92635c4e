"""The project's own exceptions.

Every expected failure is a `KeyproxyError` whose message is one line, safe to
show (no secret ever goes into one), and meaningful to an operator. The CLI
prints `keyproxy: <message>` and exits 1; anything else is a bug.
"""


class KeyproxyError(Exception):
    """An expected failure with a message that is safe to show."""


class UsageError(KeyproxyError):
    """The operator asked for something malformed (bad name, unknown value...)."""


class StateError(KeyproxyError):
    """Asked correctly, but not possible now: a halt not in force, a revoked bot, the daemon running or not.
    An expected failure (exit 1), unlike a UsageError (exit 2)."""


class ConfigError(KeyproxyError):
    """The config file is missing, unreadable or invalid; names file and key."""


class VaultError(KeyproxyError):
    """The vault file cannot be used (missing, corrupt, not a vault)."""


class VaultLocked(VaultError):
    """The master key did not unlock the vault."""


class IntegrityError(VaultError):
    """A sealed record failed authentication: tampered, moved or corrupt."""


class NotFound(KeyproxyError):
    """A named account or bot does not exist."""


class AlreadyExists(KeyproxyError):
    """A named account or bot exists already."""


class MasterKeyUnavailable(KeyproxyError):
    """No master-key source could provide a key (no keyring, no TTY, no file)."""


def where(exc: BaseException) -> str:
    """Where an unexpected exception was raised, as 'keyproxy/x.py:12 in func': enough for a bug report,
    and safe to show (code locations only, never values or locals)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    frame = frames[-1]
    path = frame.filename.replace("\\", "/")
    short = path[path.rindex("keyproxy/"):] if "keyproxy/" in path else path.rsplit("/", 1)[-1]
    return f"{short}:{frame.lineno} in {frame.name}"
