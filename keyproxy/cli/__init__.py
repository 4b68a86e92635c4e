"""`keyproxy` command line: a thin argparse front end over the library, one module per command group
(`key_cmds`, `bot_cmds`, `vault_cmds`, `incident_cmds`, `daemon_cmds`, `audit_cmds`, `tool_cmds`), each
command a function of its `Context` (arguments, settings, the controls, the output streams).

Exit codes: 0 ok, 1 an expected failure (one line on stderr), 2 usage.
Secrets are read from stdin, a file or a terminal prompt, never from argv.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from keyproxy import __version__
from keyproxy.audit.trail import AuditUnavailable
from keyproxy.cli import audit_cmds, bot_cmds, daemon_cmds, incident_cmds, key_cmds, tool_cmds, vault_cmds
from keyproxy.cli.context import Commands, Context
from keyproxy.errors import KeyproxyError, UsageError, where

__all__ = ["build_parser", "main"]


# --- parser ---------------------------------------------------------------


_HELP = {
    "json": "print JSON (for scripts) instead of text",
    "account": "the account's name (`keyproxy key list`)",
    "bot": "the bot's name (`keyproxy bot list`)",
    "id": "the incident's number (`keyproxy incidents list`)",
    "vault backup:file": "the new backup file (written atomically, mode 0600; never standard output)",
    "vault restore:file": "the backup file to put in place of the vault",
    "bot renew:ttl": "how long the credential stays valid from now (e.g. 30d); none: no expiry",
    "bot set:assignments": "policy changes, KEY=VALUE (docs/policy.md lists the keys; KEY=none clears one)",
    "halt:all": "every account and bot", "resume:all": "the halt of everything",
    "halt:account": "one account, all its bots", "resume:account": "the halt of one account",
    "halt:bot": "one bot", "resume:bot": "the halt of one bot",
    "halt:reason": "why: recorded in the audit trail, shown by `keyproxy status`",
    "config check:path": "the config file to check (default: the one keyproxy would use)",
    "emulator:host": "address to listen on (default loopback)", "emulator:port": "port (0: any free one)",
    "audit tail:bot": "only this bot's events", "audit tail:account": "only this account's events",
    "audit export:bot": "only this bot's events", "audit export:account": "only this account's events",
    "audit tail:lines": "how many of the newest events to print (0: none; with -f, only new ones)",
    "audit tail:follow": "keep printing new events as they are written (Ctrl-C ends)",
    "audit export:until": "end of the span (same forms as --since)",
    "audit export:format": "jsonl (one event per line, default) or csv (the common fields)",
}


def _explain(parser: argparse.ArgumentParser, path: list[str]) -> None:
    """Fill in the help of arguments declared without one (every option is explained in `--help`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                _explain(child, path + [name])
        elif action.help is None:
            action.help = _HELP.get(f"{' '.join(path)}:{action.dest}") or _HELP.get(action.dest)


def build_parser(completion: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="keyproxy", description="Keep exchange API keys away from trading bots.")
    p.add_argument("--version", action="version", version=f"keyproxy {__version__}")
    # the global options, also accepted after the command (`keyproxy init --passphrase-file F`): given
    # there they win; absent there (SUPPRESS) they leave what was given before the command
    common = argparse.ArgumentParser(add_help=False)
    for parser, default in ((p, None), (common, argparse.SUPPRESS)):
        parser.add_argument("--config", type=Path, default=default,
                            help="config file (default: $KEYPROXY_CONFIG or XDG config)")
        parser.add_argument("--vault", type=Path, default=default, help="vault file (overrides vault.path)")
        parser.add_argument("--passphrase-file", type=Path, default=default,
                            help="file whose first line is the vault passphrase")
        parser.add_argument("--key-file", type=Path, default=default,
                            help="32-byte master key file (master_key = \"file\")")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = Commands(common)
    # in the order `keyproxy --help` lists them
    for register in (key_cmds.register, incident_cmds.register_incidents, vault_cmds.register, bot_cmds.register,
                     incident_cmds.register_halts, daemon_cmds.register, tool_cmds.register_emulator,
                     audit_cmds.register, tool_cmds.register):
        register(sub, cmd)
    if completion:
        tool_cmds.complete_names(p)
    _explain(p, [])
    return p


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    os.umask(0o077)
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])  # `serve --workers` starts each worker with it
    try:
        return args.func(Context(args, stdin, stdout))
    except BrokenPipeError:  # `keyproxy audit export | head`: the reader left; stop quietly, as Unix tools do
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())  # no second error flushing at exit
        return 141
    except UsageError as e:  # asked wrongly: a missing or conflicting option, a bad value (README: exit 2)
        print(f"keyproxy: {e}", file=stderr)
        return 2
    except (KeyproxyError, AuditUnavailable) as e:
        print(f"keyproxy: {e}", file=stderr)
        return 1
    except KeyboardInterrupt:
        print("keyproxy: interrupted", file=stderr)
        return 130
    except EOFError:
        print("keyproxy: no input (end of file)", file=stderr)
        return 1
    except Exception as e:  # a bug: say so in one line, without a traceback that could carry data
        print(f"keyproxy: internal error ({type(e).__name__} at {where(e)}); this is a bug, please report it",
              file=stderr)
        return 70
