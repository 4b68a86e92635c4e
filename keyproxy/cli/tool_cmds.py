"""The emulator, the demo, shell completion and its `_names` helper."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from keyproxy.cli.context import Commands, Context
from keyproxy.errors import StateError


def _from_a_checkout(what: str) -> StateError:
    return StateError(f"{what} comes with a development checkout of keyproxy (git clone, then ./scripts/demo), "
                      "not with the installed package: a production install carries no exchange emulator")


def cmd_emulator(ctx: Context) -> int:
    try:
        from keyproxy.emulator.app import main as emulator_main
    except ImportError:
        raise _from_a_checkout("the exchange emulator") from None

    argv = ["--host", ctx.args.host, "--port", str(ctx.args.port), "--accounts", str(ctx.args.accounts)]
    if ctx.args.journal:
        argv += ["--journal", str(ctx.args.journal)]
    return emulator_main(argv)


def cmd_demo(ctx: Context) -> int:
    try:
        from keyproxy.emulator.demo import run_demo
    except ImportError:
        raise _from_a_checkout("the demo") from None
    return run_demo(ctx.stdout)


def cmd_completion(ctx: Context) -> int:
    """The shell's completion script, generated from this very parser by shtab (never written by hand)."""
    import shtab

    from keyproxy.cli import build_parser

    ctx.out(shtab.complete(build_parser(completion=True), shell=ctx.args.shell, preamble=COMPLETION_PREAMBLE))
    return 0


def cmd_names(ctx: Context) -> int:
    """`keyproxy _names accounts|bots`: names for completion, read without unlocking; silent when unreadable."""
    from keyproxy.vault.store import record_names

    for name in record_names(ctx.settings.vault.path, ctx.args.kind):
        ctx.out(name)
    return 0


# shell functions completing account and bot names from `keyproxy _names` (fast: no unlocking)
COMPLETION_PREAMBLE = {
    "bash": "_keyproxy_accounts() { compgen -W \"$(keyproxy _names accounts 2>/dev/null)\" -- \"$1\"; }\n"
            "_keyproxy_bots() { compgen -W \"$(keyproxy _names bots 2>/dev/null)\" -- \"$1\"; }\n",
    "zsh": "_keyproxy_accounts() { compadd -- ${(f)\"$(keyproxy _names accounts 2>/dev/null)\"} }\n"
           "_keyproxy_bots() { compadd -- ${(f)\"$(keyproxy _names bots 2>/dev/null)\"} }\n",
}

NAME_COMPLETERS = {
    "account": {"bash": "_keyproxy_accounts", "zsh": "_keyproxy_accounts",
                "fish": "(keyproxy _names accounts 2>/dev/null)"},
    "bot": {"bash": "_keyproxy_bots", "zsh": "_keyproxy_bots", "fish": "(keyproxy _names bots 2>/dev/null)"},
}


def complete_names(parser: argparse.ArgumentParser) -> None:
    """Attach the account and bot name completers (shtab reads `action.complete`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                complete_names(child)
        elif action.dest in NAME_COMPLETERS:
            action.complete = NAME_COMPLETERS[action.dest]  # type: ignore[attr-defined]


def register_emulator(sub: Any, cmd: Commands) -> None:
    sp = cmd(sub, "emulator", cmd_emulator, "run the exchange emulator on loopback (tests, demo, benchmarks)")
    sp.epilog = ('accounts file: {"keys": [{"exchange": "binance", "api_key": "...", "key_type": "hmac", '
                 '"secret": "...", "balances": {"USDT": "10000"}, "permissions": {...}}]} (ed25519/rsa/ec keys: '
                 '"public_key" PEM instead of "secret"; okx: "passphrase"; hyperliquid: key_type "eth", '
                 'api_key the master address). Then point `keyproxy key add ... --base-url http://127.0.0.1:PORT '
                 '--insecure-upstream` at it.')
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=0)
    sp.add_argument("--accounts", type=Path, required=True, help="JSON file of emulated keys (format below)")
    sp.add_argument("--journal", type=Path, help="append every received request as JSON lines")


def register(sub: Any, cmd: Commands) -> None:
    cmd(sub, "demo", cmd_demo, "run the built-in demonstration in a throw-away directory")
    sp = cmd(sub, "completion", cmd_completion, "print the shell completion script (bash, zsh, fish, tcsh)")
    sp.add_argument("shell", choices=("bash", "zsh", "fish", "tcsh"), help="the shell to complete for")
    sp.epilog = ("install: keyproxy completion bash > ~/.local/share/bash-completion/completions/keyproxy; "
                 "zsh: keyproxy completion zsh > \"${fpath[1]}/_keyproxy\"; "
                 "fish: keyproxy completion fish > ~/.config/fish/completions/keyproxy.fish")
    names = sub.add_parser("_names", help=argparse.SUPPRESS)  # completion's helper, not for people
    names.set_defaults(func=cmd_names)
    names.add_argument("kind", choices=("accounts", "bots"), help="which names")
