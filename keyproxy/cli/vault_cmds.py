"""`keyproxy vault ...`: rekey, backup, restore, status."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from keyproxy.config import MASTER_KEY_CHOICES
from keyproxy.errors import StateError, UsageError
from keyproxy.state import StateStore
from keyproxy.statedir import direct_access
from keyproxy.unlock import source_for_kind
from keyproxy.cli.context import Commands, Context, admin_trail


def cmd_vault_rekey(ctx: Context) -> int:
    a = ctx.args
    st = ctx.call("rekey_to", a.to, a.new_passphrase_file, a.new_key_file)
    ctx.out(f"rekeyed vault {st['path']} (master key: {st['master_source']}, generation {st['master_generation']})")
    return 0


def cmd_vault_backup(ctx: Context) -> int:
    if str(ctx.args.file) == "-":
        raise UsageError("the backup must be a file (it is written atomically, mode 0600), not standard output")
    # absolute, not resolved: a symlink at the name (dangling ones too) is refused as an existing file, never
    # followed to where it points (session 35's review: `vault backup dangling-link` wrote its target)
    target = ctx.args.file.absolute()
    result = ctx.call("backup", path=str(target))
    ctx.out(f"backed up the vault to {result['backup']} (encrypted as the vault is; mode 0600)")
    return 0


def cmd_vault_restore(ctx: Context) -> int:
    from keyproxy.vault.store import restore_vault

    with direct_access(ctx.settings) as direct:
        if not direct:
            raise StateError("stop the daemon before restoring the vault (keyproxy serve holds it)")
        live = ctx.settings.vault.path
        result = restore_vault(live, ctx.args.file.resolve(),
                               lambda kind: source_for_kind(kind, ctx.settings, ctx.inputs), force=ctx.args.force)
        with ctx.open_vault() as vault:  # the audit trail records the restore, chained as ever
            with contextlib.closing(StateStore(ctx.settings.state_dir / "state.db")) as state:
                # the copy put in place on purpose is the one keyproxy now holds to
                state.record_vault_seen(vault.vault_id, vault.changes(), restored=True)
                with admin_trail(ctx.settings, vault, state) as trail:
                    trail.append("admin", op="vault.restore", result="ok", peer_uid=os.getuid(),
                                 file=str(ctx.args.file), forced=ctx.args.force, **{k: v for k, v in result.items()
                                                                                   if k != "restored"})
    ctx.out(f"restored the vault from {result['restored']}")
    return 0


def cmd_vault_status(ctx: Context) -> int:
    with ctx.open_vault() as vault:
        st = vault.status()
        st["integrity_problems"] = vault.check_integrity()
    if ctx.args.json:
        ctx.out_json(st)
    else:
        for k, v in st.items():
            if k != "integrity_problems":
                ctx.out(f"{k + ':':<19}{v}")
        ctx.out(f"{'integrity:':<19}" + ("ok" if not st["integrity_problems"] else "FAILED"))
        for p in st["integrity_problems"]:
            ctx.out(f"  {p}")
    return 1 if st["integrity_problems"] else 0


def register(sub: Any, cmd: Commands) -> None:
    vault = cmd.group(sub, "vault", "the vault itself", "vault_command")
    sp = cmd(vault, "rekey", cmd_vault_rekey, "wrap the data key under a new master key")
    sp.add_argument("--to", choices=MASTER_KEY_CHOICES, help="new master-key source (default: same kind)")
    sp.add_argument("--new-passphrase-file", type=Path, help="file holding the new passphrase")
    sp.add_argument("--new-key-file", type=Path, help="file holding the new 32-byte key")
    sp = cmd(vault, "backup", cmd_vault_backup, "consistent online copy of the vault (still encrypted)")
    sp.add_argument("file", type=Path)
    sp = cmd(vault, "restore", cmd_vault_restore, "replace the vault by a backup (daemon stopped)")
    sp.add_argument("file", type=Path)
    sp.add_argument("--force", action="store_true", help="restore even an older copy, or another vault's")
    sp = cmd(vault, "status", cmd_vault_status, "show vault metadata and check every record's integrity")
    sp.add_argument("--json", action="store_true")
