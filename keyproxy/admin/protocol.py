"""The admin socket's tiny protocol: `POST /v1/call {"op", "args"}` -> `{"result"}` or `{"error", "message"}`.

Errors travel as the name of a `KeyproxyError` subclass, so the CLI raises the
same exception (and prints the same one line) whether it talked to the daemon
or opened the vault itself.
"""

from __future__ import annotations

from keyproxy import errors

OPS = ("add_account", "list_accounts", "show_account", "remove_account",
       "add_bot", "list_bots", "show_bot", "revoke_bot", "set_bot", "halt", "resume", "list_halts", "status",
       "reload", "restore_bot", "restore_key", "list_incidents", "show_incident",
       "rotate_key", "rollback_key", "retire_key", "rotate_bot", "renew_bot", "rekey", "audit_keys", "backup",
       "cancel_orders", "bot_where")

# the calls that change the vault: in a fleet each is made under the fleet's write lease, taken first without
# blocking the daemon (halts and throttles are not: they never wait for a lease)
VAULT_OPS = frozenset({"add_account", "remove_account", "add_bot", "revoke_bot", "set_bot", "restore_bot",
                       "restore_key", "rotate_key", "rollback_key", "retire_key", "rotate_bot", "renew_bot", "rekey"})

ERROR_CLASSES: dict[str, type[errors.KeyproxyError]] = {
    cls.__name__: cls for cls in (
        errors.KeyproxyError, errors.UsageError, errors.StateError, errors.ConfigError, errors.VaultError,
        errors.VaultLocked, errors.IntegrityError, errors.NotFound, errors.AlreadyExists, errors.MasterKeyUnavailable,
    )
}
