"""What every command shares: the Context (settings, unlock inputs, the streams, the controls: the vault
itself, or the running daemon through its admin socket), how commands are declared, and output helpers."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from keyproxy.admin.client import AdminClient
from keyproxy.audit.trail import AuditTrail
from keyproxy.config import Settings, load_settings
from keyproxy.durations import format_duration
from keyproxy.errors import KeyproxyError, StateError, UsageError
from keyproxy.exchanges import default_adapters
from keyproxy.state import StateStore
from keyproxy.statedir import audit_writer, direct_access, socket_path
from keyproxy.unlock import UnlockInputs, source_for_kind
from keyproxy.vault import Vault


class Context:
    """What every command needs: settings, unlock inputs and the standard streams."""

    def __init__(self, args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> None:
        self.args = args
        self.stdin, self.stdout = stdin, stdout
        self.settings: Settings = load_settings(args.config)
        if args.vault:
            from dataclasses import replace

            self.settings = replace(self.settings, vault=replace(self.settings.vault, path=args.vault))
        self.inputs = UnlockInputs.gather(
            self.settings, passphrase_file=args.passphrase_file, key_file=args.key_file
        )

    def open_vault(self, *, strict: bool = True, join_fleet: bool = True) -> Vault:
        """Open and unlock; in a fleet ([shared_state]) on the fleet's newest copy, and every change shared.
        `strict=False` (the daemon): an unreachable Redis does not stop the start. `join_fleet=False`: a
        reader that changes nothing (audit verify) works without Redis."""
        vault = Vault.open(self.settings.vault.path, lambda kind: source_for_kind(kind, self.settings, self.inputs))
        if self.settings.shared_state is not None and join_fleet:
            from keyproxy.fleet.replica import join

            try:
                join(self.settings.shared_state, vault, strict=strict)
            except BaseException:
                vault.close()
                raise
        return vault

    @contextlib.contextmanager
    def controls(self) -> Iterator[Any]:
        """The vault itself when no daemon runs, else the daemon's admin socket: never both writers. Either
        has the same operations (operations.py)."""
        from keyproxy.cli.operations import DirectControls, RemoteControls

        with direct_access(self.settings) as direct:
            if direct:
                with self.open_vault() as vault, \
                        contextlib.closing(StateStore(self.settings.state_dir / "state.db")) as state:
                    if vault.replica is not None:  # halts and throttles are the fleet's too
                        state.mirror = vault.replica.fleet
                    # changes made here must not hide an older vault copied into place
                    state.check_vault_current(vault.vault_id, vault.changes(), vault.path)
                    try:
                        with admin_trail(self.settings, vault, state) as trail:
                            yield DirectControls(vault, default_adapters(), listen_base_url(self.settings),
                                                 audit=trail.append, state=state,
                                                 pinned=lambda: self.settings.bot_policies, settings=self.settings)
                    finally:
                        state.record_vault_seen(vault.vault_id, vault.changes())
                return
        client = AdminClient(socket_path(self.settings))
        if not client.reachable():
            raise KeyproxyError(f"the keyproxy daemon holds {self.settings.vault.path} but its admin socket "
                                f"{client.socket_path} does not answer")
        yield RemoteControls(client)

    def call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """One operation on the controls (the vault, or the running daemon), its answer."""
        with self.controls() as controls:
            return getattr(controls, op)(*args, **kwargs)

    def out(self, text: str = "") -> None:
        """A line (or lines) for the operator's terminal, what a terminal acts on shown escaped: statuses, halts and
        incidents carry text a bot sent (session 35's review: a withdrawal address's escapes reached `status`)."""
        print("\n".join("\t".join(printable(cell) for cell in line.split("\t")) for line in text.split("\n"))
              if not text.isprintable() else text, file=self.stdout)

    def out_json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=True), file=self.stdout)


@contextlib.contextmanager
def admin_trail(settings: Settings, vault: Vault, state: StateStore) -> Iterator[AuditTrail]:
    """The audit trail as a command writes it with no daemon running: one such command at a time (`audit_writer`),
    the chain on from the newest line state.db recorded, and each line's seq recorded there as the daemon's are (so
    lines cut from the end are found whoever wrote them)."""
    with audit_writer(settings):
        trail = AuditTrail(settings.audit_dir, vault.audit_key(), fsync="always", recorded_seq=state.audit_head(),
                           on_head=lambda head: state.record_audit_head(head.seq))
        try:
            yield trail
        finally:
            trail.close()


def listen_base_url(settings: Settings) -> str:
    host = settings.listen.host
    return f"{settings.listen.scheme}://{host if ':' not in host else f'[{host}]'}:{settings.listen.port}"


def day(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)) if ts else "-"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


DURATION_FIELDS = frozenset({"rotate_every", "ttl", "ttl_seconds", "grace", "grace_seconds", "heartbeat_seconds",
                             "dead_man_seconds", "key_age"})  # shown as 30d, 12h, 90s (JSON keeps seconds)


def show(ctx: Context, info: dict[str, Any]) -> None:
    if ctx.args.json:
        ctx.out_json(info)
        return
    for k, v in info.items():
        if isinstance(v, dict):  # a policy: the keys set, as `bot set` takes them
            v = " ".join(f"{pk}={','.join(map(str, pv)) if isinstance(pv, list) else pv}"
                         for pk, pv in v.items() if pv not in (None, [], False)) or "-"
        elif isinstance(v, list):
            v = ", ".join(map(str, v)) or "-"
        elif k in DURATION_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = format_duration(int(v))
        elif k.endswith("_at") and isinstance(v, float):
            v = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v))
        ctx.out(f"{k + ':':<19}{v if v is not None else '-'}")


def confirm(ctx: Context, question: str) -> None:
    if ctx.args.yes:
        return
    if not ctx.stdin.isatty():
        raise UsageError("no terminal to confirm on; pass --yes to proceed")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise StateError("cancelled")


def has_tty() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        return True
    except OSError:
        return False


def assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, not {item[:60]!r}")
        out[key.strip()] = value.strip()
    return out


Command = Callable[["Context"], int]


class Commands:
    """Declares commands: each takes the global options after its name too (`keyproxy init --passphrase-file F`)."""

    def __init__(self, common: argparse.ArgumentParser) -> None:
        self.common = common

    def __call__(self, parent: Any, name: str, fn: Command, help: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help, parents=[self.common])
        sp.set_defaults(func=fn)
        return sp

    @staticmethod
    def group(sub: Any, name: str, help: str, dest: str) -> Any:
        """A command group (`keyproxy key ...`): its actions are added to what this returns."""
        return sub.add_parser(name, help=help).add_subparsers(dest=dest, required=True, metavar="ACTION")


def printable(text: str) -> str:
    """`text` with every character a terminal or a spreadsheet could act on shown as an escape (`\\x1b`,
    `\\u202e`): C0 and C1 controls, DEL, line and paragraph separators, bidi and other format characters.
    Trail fields can carry what a bot or a stranger sent, and an operator reads them in a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"
