"""The project's own exceptions.

Every expected failure is a `KeyproxyError` whose message is one line, safe to
show (no secret ever goes into one), and meaningful to an operator. The CLI
prints `keyproxy: <message>` and exits 1; anything else is a bug.
"""


class KeyproxyError(Exception):
    """An expected failure with a message that is safe to show."""


class UsageError(KeyproxyError):
    """The operator asked for something malformed (bad name, unknown value...)."""


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
