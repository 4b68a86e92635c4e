"""Defects a new operator met (issue 18, item 8), each as the operator meets it: the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from tests.conftest import Home
from tests.test_cli import creds


def ready(home: Home) -> None:
    assert home.run("init").returncode == 0
    assert home.run("key", "add", "main", "--exchange", "binance", input=creds()).returncode == 0
    assert home.run("bot", "add", "b1", "--account", "main", "--scope", "read,trade").returncode == 0


def test_audit_tail_n_0_prints_nothing_and_a_negative_count_is_refused(home: Home) -> None:
    ready(home)
    assert home.run("audit", "tail", "-n", "2").stdout.count("\n") == 2
    r = home.run("audit", "tail", "-n", "0")
    assert (r.returncode, r.stdout) == (0, "")
    r = home.run("audit", "tail", "-n", "-1")
    assert r.returncode == 2 and "-n/--lines must be 0 or more" in r.stderr


def test_audit_export_takes_times_back_from_now(home: Home) -> None:
    ready(home)
    recent = home.run("audit", "export", "--since", "1h")
    assert recent.returncode == 0 and len(recent.stdout.splitlines()) >= 2, recent.stderr
    assert home.run("audit", "export", "--since", "2d").stdout == recent.stdout
    bad = home.run("audit", "export", "--since", "yesterday")
    assert bad.returncode == 2 and "a time back from now (90s, 30m, 1h, 2d)" in bad.stderr
    for nonsense in ("nan", "inf", "Infinity"):  # nan matched no line and exited 0 with an empty export
        bad = home.run("audit", "export", "--since", nonsense)
        assert bad.returncode == 2 and "not a number of seconds" in bad.stderr, bad.stderr


def test_vault_backup_to_dash_is_refused_not_a_file_named_dash(home: Home) -> None:
    ready(home)
    r = home.run("vault", "backup", "-")
    assert r.returncode == 2 and "not standard output" in r.stderr
    assert not (home.root / "-").exists() and not os.path.exists("-")


def test_bot_show_prints_the_policy_as_bot_set_takes_it(home: Home) -> None:
    ready(home)
    assert home.run("bot", "set", "b1", "symbols=BTCUSDT", "max_order_notional=500").returncode == 0
    out = home.run("bot", "show", "b1").stdout
    [line] = [x for x in out.splitlines() if x.startswith("policy:")]
    assert "{" not in line and "'" not in line
    assert "scopes=read,trade" in line and "symbols=BTCUSDT" in line and "max_order_notional=500" in line


def test_a_reader_that_leaves_early_ends_the_output_quietly(home: Home) -> None:
    """`keyproxy audit export | head -1`: the pipe closes, keyproxy stops without an error line."""
    ready(home)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    proc = subprocess.run([sys.executable, "-m", "keyproxy.cli", "audit", "export", "--since", "1d"],
                          stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=home.env,
                          timeout=60, text=True)
    os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_a_listen_port_in_use_is_named_in_one_line(home: Home) -> None:
    ready(home)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        r = home.run("serve", "--port", str(port), timeout=60)
    finally:
        taken.close()
    assert r.returncode == 1, r.stderr
    [line] = [x for x in r.stderr.splitlines() if x.startswith("keyproxy:")]
    assert f"cannot listen on 127.0.0.1:{port} for the proxy" in line and "internal error" not in r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(home.run("status", "--json").stdout)["daemon"] == "stopped"


def _on_a_terminal(home: Home, args: list[str], answers: list[str]) -> str:
    """Run the CLI with a pseudo-terminal as its controlling terminal; answer each prompt; the transcript."""
    import fcntl
    import pty
    import select
    import termios
    import time

    main, follower = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(follower, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "keyproxy.cli", *args], stdin=follower, stdout=follower,
                            stderr=follower, env=home.env, preexec_fn=own_terminal, close_fds=True)
    os.close(follower)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready_fds, _, _ = select.select([main], [], [], 0.2)
        if ready_fds:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            prompts = sum(1 for line in seen.split(b"\n") if line.rstrip().endswith(b":"))
            while pending and prompts > len(answers) - len(pending):  # one answer per prompt shown
                os.write(main, pending.pop(0).encode() + b"\n")
        elif proc.poll() is not None:
            break
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        seen += b"\n[killed: no exit]"
    os.close(main)
    return seen.decode(errors="replace")


def test_the_prompt_asks_for_a_passphrase_only_where_the_exchange_issues_one(home: Home) -> None:
    assert home.run("init").returncode == 0
    kraken = _on_a_terminal(home, ["key", "add", "kr", "--exchange", "kraken"],
                            ["KPCANARYAPIKEY0123456789abcdef", "a3Jha2VuIHNlY3JldCBmb3IgdGVzdHM="])
    assert "API key:" in kraken and "API secret:" in kraken and "passphrase" not in kraken.lower(), kraken
    assert "added account kr" in kraken
    okx = _on_a_terminal(home, ["key", "add", "ok", "--exchange", "okx"], ["k", "s", "p"])
    assert "API passphrase:" in okx and "added account ok" in okx, okx
    assert json.loads(home.run("key", "show", "kr", "--json").stdout)["exchange"] == "kraken"


def test_a_kraken_secret_that_is_not_base64_is_refused_at_key_add(home: Home) -> None:
    assert home.run("init").returncode == 0
    r = home.run("key", "add", "kr", "--exchange", "kraken", input=creds(secret="not-base64!secret"))
    assert r.returncode == 2 and "secret: a Kraken private key is base64" in r.stderr
    assert "not-base64" not in r.stderr and json.loads(home.run("key", "list", "--json").stdout) == []
    ok = home.run("key", "add", "kr", "--exchange", "kraken", input=creds(secret="a3Jha2VuIHNlY3JldA=="))
    assert ok.returncode == 0, ok.stderr


def test_a_stored_kraken_secret_that_cannot_sign_is_a_clear_refusal_not_a_500() -> None:
    """A key stored before `key add` checked the format: the bot is told what is wrong (400), never 500."""
    import pytest

    from keyproxy.exchanges import default_adapters
    from keyproxy.exchanges.base import BadRequest, IncomingRequest, RealKey, SignContext
    from keyproxy.secret import Secret

    kraken = default_adapters()["kraken"]
    endpoint = kraken.classify("POST", "/0/private/Balance")
    request = IncomingRequest("POST", "/0/private/Balance", "", {"content-type": "application/x-www-form-urlencoded"},
                              b"")
    with pytest.raises(BadRequest, match="stored Kraken secret is not base64"):
        kraken.sign(request, RealKey("hmac", Secret("k"), Secret("not base64!")), endpoint,
                    SignContext("https://api.kraken.com", "production", 0, 1))


def test_global_options_are_accepted_after_the_command_too(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other.db"
    env = {"KEYPROXY_PASSPHRASE_FILE": ""}
    r = home.run("init", "--vault", str(other), "--passphrase-file", str(home.passphrase_file), env=env)
    assert r.returncode == 0 and other.exists(), r.stderr
    assert home.run("key", "list", "--vault", str(other), "--json").stdout.strip() == "[]"
    assert home.run("--vault", str(other), "key", "list", "--json").stdout.strip() == "[]"
    assert not home.vault.exists()  # the default vault was never touched


def test_every_option_of_every_command_says_what_it_does() -> None:
    import argparse

    from keyproxy.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, path + [name])
            elif not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    walk(build_parser(), [])
    assert missing == []


def test_serve_in_the_background_that_needs_a_passphrase_says_so_instead_of_stopping(home: Home) -> None:
    """`keyproxy serve &` in an interactive shell: it cannot prompt there (echo off would stop it on SIGTTOU)."""
    import pty
    import textwrap

    assert home.run("init").returncode == 0
    wrapper = textwrap.dedent("""
        import fcntl, os, subprocess, sys, termios
        fd = int(sys.argv[1])
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)  # this session's terminal; this process group in the foreground
        done = subprocess.run([sys.executable, "-m", "keyproxy.cli", "serve", "--port", "0"],
                              preexec_fn=os.setpgrp, stdin=fd, stdout=fd, stderr=subprocess.PIPE, timeout=30)
        sys.stdout.write(f"{done.returncode}\\n" + done.stderr.decode())
    """)
    main, follower = pty.openpty()
    env = {k: v for k, v in home.env.items() if k != "KEYPROXY_PASSPHRASE_FILE"}
    try:
        out = subprocess.run([sys.executable, "-c", wrapper, str(follower)], pass_fds=[follower], env=env,
                             capture_output=True, text=True, timeout=60, start_new_session=True)
    finally:
        os.close(follower)
        os.close(main)
    code, _, said = out.stdout.partition("\n")
    assert code == "1", out.stdout + out.stderr
    assert "runs in the background, where it cannot ask" in said and "--passphrase-file" in said


def test_coinbase_cdp_key_file_is_accepted_as_downloaded(home: Home) -> None:
    from keyproxy.emulator.devstack import new_real_key

    assert home.run("init").returncode == 0
    key = new_real_key("ec", exchange="coinbase").credentials
    cdp = {"name": key["api_key"], "privateKey": key["private_key"]}
    r = home.run("key", "add", "cb", "--exchange", "coinbase", input=json.dumps(cdp))
    assert r.returncode == 0, r.stderr
    assert json.loads(home.run("key", "show", "cb", "--json").stdout)["key_type"] == "ec"
    bad = home.run("key", "add", "cb2", "--exchange", "coinbase", input=json.dumps({**cdp, "nickname": "x"}))
    assert bad.returncode == 2 and "unknown credential field(s) on stdin: nickname" in bad.stderr
    assert "Coinbase's downloaded CDP key file" in bad.stderr and "BEGIN" not in bad.stderr


def test_a_private_key_file_is_read_from_its_path_never_from_argv(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from keyproxy.emulator.devstack import new_real_key

    assert home.run("init").returncode == 0
    key = new_real_key("ed25519").credentials
    pem = tmp_path / "binance-ed25519.pem"
    pem.write_text(key["private_key"])
    pem.chmod(0o644)
    args = ("key", "add", "ed", "--exchange", "binance", "--key-type", "ed25519", "--private-key-file", str(pem))
    r = home.run(*args, input=json.dumps({"api_key": key["api_key"]}))
    assert r.returncode == 2 and "can be read by other users (mode 0o644): chmod 600 it first" in r.stderr
    pem.chmod(0o600)
    twice = home.run(*args, input=json.dumps(key))
    assert twice.returncode == 2 and "the private key came twice" in twice.stderr
    r = home.run(*args, input=json.dumps({"api_key": key["api_key"]}))
    assert r.returncode == 0, r.stderr
    assert json.loads(home.run("key", "show", "ed", "--json").stdout)["key_type"] == "ed25519"
    hmac = home.run("key", "add", "h", "--exchange", "binance", "--private-key-file", str(pem),
                    input=json.dumps({"api_key": "k", "secret": "s"}))
    assert hmac.returncode == 2 and "--private-key-file is for ed25519, rsa and ec keys, not hmac" in hmac.stderr
    not_pem = tmp_path / "junk.pem"
    not_pem.write_bytes(b"hello")
    not_pem.chmod(0o600)
    junk = home.run("key", "add", "j", "--exchange", "binance", "--key-type", "ed25519", "--private-key-file",
                    str(not_pem), input=json.dumps({"api_key": "k"}))
    assert junk.returncode == 2 and "Traceback" not in junk.stderr
    assert [a["name"] for a in json.loads(home.run("key", "list", "--json").stdout)] == ["ed"]


def test_bash_completion_completes_commands_options_and_names(home: Home) -> None:
    """The script `keyproxy completion bash` prints, sourced into a real bash, completes as a user types."""
    import shutil

    ready(home)  # account main, bot b1
    script = home.run("completion", "bash")
    assert script.returncode == 0 and "complete" in script.stdout
    for shell in ("zsh", "fish"):
        other = home.run("completion", shell)
        assert other.returncode == 0 and "keyproxy _names bots" in other.stdout
    (home.root / "keyproxy.bash").write_text(script.stdout)
    bin_dir = home.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "keyproxy").write_text(f"#!/bin/sh\nexec {sys.executable} -m keyproxy.cli \"$@\"\n")
    (bin_dir / "keyproxy").chmod(0o755)

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        program = (f"source {home.root / 'keyproxy.bash'}\n"
                   f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
                   f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
                   "_shtab_keyproxy keyproxy \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
                   "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        env = {**home.env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        done = subprocess.run([shutil.which("bash") or "bash", "--norc", "-c", program], capture_output=True,
                              text=True, env=env, timeout=60)
        return [w for w in done.stdout.split("\n") if w]

    assert "halt" in complete("keyproxy ha") and "status" in complete("keyproxy st")
    assert complete("keyproxy bot show ") == ["b1"]
    assert complete("keyproxy key show m") == ["main"]
    assert "--cancel-orders" in complete("keyproxy halt --c")
    assert "_names" not in complete("keyproxy _")  # the helper is not offered to people


def test_durations_are_shown_as_people_write_them(home: Home) -> None:
    assert home.run("init").returncode == 0
    added = home.run("key", "add", "main", "--exchange", "binance", "--rotate-every", "30d", input=creds())
    assert added.returncode == 0
    shown = home.run("key", "show", "main").stdout
    [line] = [x for x in shown.splitlines() if x.startswith("rotate_every:")]
    assert line.split()[-1] == "30d", shown
    assert json.loads(home.run("key", "show", "main", "--json").stdout)["rotate_every"] == 30 * 86400
