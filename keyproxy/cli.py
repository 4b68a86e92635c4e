"""`keyproxy` command line: a thin argparse front end over the library.

Exit codes: 0 ok, 1 an expected failure (one line on stderr), 2 usage.
Secrets are read from stdin, a file or a terminal prompt, never from argv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from keyproxy import __version__
from keyproxy.admin.client import AdminClient
from keyproxy.admin.controls import Controls
from keyproxy.audit.trail import AuditTrail, AuditUnavailable
from keyproxy.config import MASTER_KEY_CHOICES, Settings, load_settings
from keyproxy.durations import format_duration, parse_duration
from keyproxy.errors import AlreadyExists, KeyproxyError, MasterKeyUnavailable, StateError, UsageError, where
from keyproxy.exchanges import default_adapters
from keyproxy.exchanges.catalog import EXCHANGES, KEY_TYPES
from keyproxy.state import StateStore
from keyproxy.statedir import daemon_lock, direct_access, socket_path
from keyproxy.secret import Secret
from keyproxy.unlock import UnlockInputs, source_for_kind, source_for_new
from keyproxy.vault import Credentials, NewAccount, Vault
from keyproxy.vault.records import BOT_MODES, check_account_meta, validate_new_account

MAX_STDIN_BYTES = 65_536
CREDENTIAL_FIELDS = ("api_key", "secret", "passphrase", "private_key")


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
        """The vault itself when no daemon runs, else the daemon's admin socket: never both writers."""
        with direct_access(self.settings) as direct:
            if direct:
                with self.open_vault() as vault, \
                        contextlib.closing(StateStore(self.settings.state_dir / "state.db")) as state:
                    if vault.replica is not None:  # halts and throttles are the fleet's too
                        state.mirror = vault.replica.fleet
                    # changes made here must not hide an older vault copied into place
                    state.check_vault_current(vault.vault_id, vault.changes(), vault.path)
                    trail = AuditTrail(self.settings.audit_dir, vault.audit_key(), fsync="always")
                    try:
                        yield Controls(vault, default_adapters(), listen_base_url(self.settings), audit=trail.append,
                                       state=state, pinned=lambda: self.settings.bot_policies)
                    finally:
                        trail.close()
                        state.record_vault_seen(vault.vault_id, vault.changes())
                return
        client = AdminClient(socket_path(self.settings))
        if not client.reachable():
            raise KeyproxyError(f"the keyproxy daemon holds {self.settings.vault.path} but its admin socket "
                                f"{client.socket_path} does not answer")
        yield RemoteControls(client)

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def out_json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=True), file=self.stdout)


def listen_base_url(settings: Settings) -> str:
    host = settings.listen.host
    return f"{settings.listen.scheme}://{host if ':' not in host else f'[{host}]'}:{settings.listen.port}"


class RemoteControls:
    """`Controls`' methods, carried out by the running daemon."""

    def __init__(self, client: AdminClient) -> None:
        self.client = client

    def add_account(self, acct: NewAccount) -> Any:
        creds = {k: v.reveal_str() for k, v in acct.credentials.fields().items() if v is not None}
        return self.client.call("add_account", name=acct.name, exchange=acct.exchange, key_type=acct.key_type,
                                base_url=acct.base_url, insecure_upstream=acct.insecure_upstream,
                                rotate_every=acct.rotate_every, environment=acct.environment,
                                credentials=creds)

    def __getattr__(self, op: str) -> Any:
        return getattr(self.client, op)


# --- reading secrets ----------------------------------------------------------


# Coinbase's CDP key file as downloaded: {"name": "organizations/.../apiKeys/...", "privateKey": "-----BEGIN ..."}
# (newer Ed25519 keys: {"id": "...", "privateKey": "<base64>"}); read as is
CDP_KEY_FILE = {"name": "api_key", "id": "api_key", "privateKey": "private_key"}
ACCEPTED_SHAPES = ('{"api_key", "secret", "passphrase", "private_key"} (keyproxy\'s own), or Coinbase\'s downloaded '
                   'CDP key file {"name", "privateKey"} / {"id", "privateKey"} as is')


def read_credentials(ctx: Context, key_type: str, exchange: str) -> Credentials:
    """JSON on stdin when it is not a terminal; otherwise prompt without echo. `--private-key-file`, where
    the command has it, supplies the PEM."""
    pem = _private_key_file(getattr(ctx.args, "private_key_file", None), key_type)
    if not ctx.stdin.isatty():
        raw = ctx.stdin.read(MAX_STDIN_BYTES + 1)
        if len(raw) > MAX_STDIN_BYTES:
            raise UsageError(f"credential JSON on stdin is larger than {MAX_STDIN_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise UsageError(f"stdin is not valid JSON; expected {ACCEPTED_SHAPES}") from None
        if not isinstance(doc, dict):
            raise UsageError("credential JSON on stdin must be an object")
        if exchange == "coinbase" and "privateKey" in doc:  # the downloaded file's shape
            extra = sorted(set(doc) - set(CDP_KEY_FILE))
            if extra:
                raise UsageError(f"unknown credential field(s) on stdin: {', '.join(u[:40] for u in extra)}; "
                                 f"accepted: {ACCEPTED_SHAPES}")
            if "name" in doc and "id" in doc:
                raise UsageError("the CDP key file has both name and id; keep the one Coinbase gave the key")
            doc = {CDP_KEY_FILE[k]: v for k, v in doc.items()}
        unknown = sorted(set(doc) - set(CREDENTIAL_FIELDS))
        if unknown:
            raise UsageError(f"unknown credential field(s) on stdin: {', '.join(u[:40] for u in unknown)}; "
                             f"accepted: {ACCEPTED_SHAPES}")
        for name, value in doc.items():
            if value is not None and not isinstance(value, str):
                raise UsageError(f"credential field {name} must be a string")
        if "api_key" not in doc:
            raise UsageError("credential JSON on stdin has no api_key")
        if pem is not None:
            if doc.get("private_key"):
                raise UsageError("the private key came twice: in the JSON on stdin and --private-key-file; give one")
            doc["private_key"] = pem.reveal_str()
        return Credentials(**{k: Secret(v) for k, v in doc.items() if v})  # empty -> missing
    creds = _prompt_credentials(key_type, exchange, pem)
    return creds


def _private_key_file(path: Path | None, key_type: str) -> Secret | None:
    """The PEM an operator generated (Binance Ed25519/RSA, Coinbase), read from its file: the path may be on
    argv, the key never is. A file others can read is refused: the key has already leaked to them."""
    if path is None:
        return None
    if key_type in ("hmac", "eth"):
        raise UsageError(f"--private-key-file is for ed25519, rsa and ec keys, not {key_type} (use --key-type)")
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise UsageError(f"{path} can be read by other users (mode {oct(mode & 0o777)}): chmod 600 it first")
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read --private-key-file {path}: {e.strerror}") from None
    if len(data) > MAX_STDIN_BYTES:
        raise UsageError(f"--private-key-file {path} is larger than {MAX_STDIN_BYTES} bytes: not a key")
    try:
        return Secret(data.decode("ascii"))
    except UnicodeDecodeError:
        raise UsageError(f"--private-key-file {path} is not a PEM text file") from None


def _prompt_credentials(key_type: str, exchange: str, pem: Secret | None = None) -> Credentials:
    if key_type == "eth":
        return Credentials(api_key=Secret(input("Master address (0x...): ").strip()),
                           private_key=Secret(getpass.getpass("Private key (0x..., not echoed): ")))
    fields: dict[str, Secret] = {"api_key": Secret(getpass.getpass("API key: "))}
    if key_type == "hmac":
        fields["secret"] = Secret(getpass.getpass("API secret: "))
    elif pem is not None:
        fields["private_key"] = pem
    else:
        path = input("Path of the private key PEM file: ").strip()
        fields["private_key"] = _private_key_file(Path(path).expanduser(), key_type) or Secret("")
    rules = EXCHANGES.get(exchange)
    if rules is not None and rules.needs_passphrase:  # asked only where the exchange issues one (OKX)
        fields["passphrase"] = Secret(getpass.getpass("API passphrase: "))
    return Credentials(**fields)  # type: ignore[arg-type]


def check_base_url(url: str, insecure: bool) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UsageError(f"invalid --base-url {url[:100]!r}") from None
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise UsageError("--base-url must be scheme://host[:port] with nothing else")
    if parts.scheme == "https" and parts.hostname:
        return f"https://{parts.hostname}" + (f":{port}" if port else "")
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        if not insecure:
            raise UsageError("a plain-http --base-url needs --insecure-upstream (loopback emulators only)")
        return url.rstrip("/")
    raise UsageError("--base-url must be https://HOST, or http://127.0.0.1:PORT with --insecure-upstream")


# --- commands -------------------------------------------------------------


def cmd_init(ctx: Context) -> int:
    from keyproxy.vault.store import ensure_private_dir

    choice = ctx.args.master_key or ctx.settings.vault.master_key
    path = ctx.settings.vault.path
    if path.exists():
        raise AlreadyExists(f"a vault already exists at {path}; refusing to overwrite it")
    ensure_private_dir(path.parent)
    source = source_for_new(choice, ctx.settings, ctx.inputs)
    with Vault.create(path, source) as vault:
        ctx.out(f"created vault {path} (master key: {vault.status()['master_source']})")
    return 0


def _day(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)) if ts else "-"


def _account_row(a: dict[str, Any], settings: Settings) -> list[str]:
    from types import SimpleNamespace

    from keyproxy.metrics import rotation_due

    now = time.time()
    due_at, due = rotation_due(SimpleNamespace(**a), now, settings.rotation.rotate_every, settings.rotation.warn_before)
    due_text = "-" if due_at is None else _day(due_at) + (" OVERDUE" if now >= due_at else " due" if due else "")
    return [a["name"], a["exchange"], a["key_type"], a["status"], str(a["version"]), a["fingerprint"],
            f"{int((now - a['rotated_at']) // 86400)}d", due_text]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def cmd_key_add(ctx: Context) -> int:
    a = ctx.args
    key_type = a.key_type or EXCHANGES.get(a.exchange, EXCHANGES["binance"]).key_types[0]
    base_url = check_base_url(a.base_url, a.insecure_upstream) if a.base_url else None
    if a.insecure_upstream and not base_url:
        raise UsageError("--insecure-upstream only goes with a loopback --base-url")
    rotate_every = parse_duration(a.rotate_every) if a.rotate_every else None
    check_account_meta(a.account, a.exchange, key_type)  # before reading secrets or unlocking
    creds = read_credentials(ctx, key_type, a.exchange)
    acct = NewAccount(a.account, a.exchange, key_type, creds, base_url, a.insecure_upstream, rotate_every,
                      a.environment)
    validate_new_account(acct)
    if key_type == "eth" and creds.private_key is not None:
        from keyproxy.exchanges import _eth

        if _eth.address_of(_eth.parse_private_key(creds.private_key.reveal())) == creds.api_key.reveal_str().lower():
            print("warning: this is the account's master key, which can withdraw; an API wallet (agent) key "
                  "approved for the account is the safer choice (an agent cannot withdraw)", file=sys.stderr)
    with ctx.controls() as controls:
        if a.verify:  # the check `key rotate` makes, before anything is written
            meta = {"name": acct.name, "exchange": acct.exchange, "key_type": key_type, "base_url": base_url,
                    "insecure_upstream": a.insecure_upstream, "environment": a.environment}
            ok, answer = asyncio.run(_verify_direct(ctx, controls if isinstance(controls, Controls) else None,
                                                    meta, creds))
            if not ok:
                raise KeyproxyError(f"the exchange did not accept the key ({answer}); nothing was added")
        info = controls.add_account(acct)
    ctx.out(f"added account {info['name']} ({info['exchange']}, {info['key_type']}, "
            f"fingerprint {info['fingerprint']})")
    return 0


def cmd_key_rotate(ctx: Context) -> int:
    """Read the new credential like `key add`, check it at the exchange, then switch."""
    with ctx.controls() as controls:
        info = controls.show_account(name=ctx.args.account)
        creds = read_credentials(ctx, info["key_type"], info["exchange"])
        if isinstance(controls, RemoteControls):
            out = controls.client.call("rotate_key", name=info["name"], credentials={
                k: v.reveal_str() for k, v in creds.fields().items() if v is not None})
        else:
            ok, answer = asyncio.run(_verify_direct(ctx, controls, info, creds))
            if not ok:
                raise KeyproxyError(f"the new key was not activated: the exchange answered {answer}")
            out = controls.rotate_key(info["name"], creds, verified=answer)
    ctx.out(f"rotated account {out['name']} to key version {out['version']} (fingerprint {out['fingerprint']}); "
            f"the previous version stays for `keyproxy key rollback {out['name']}`")
    return 0


async def _verify_direct(ctx: Context, controls: Controls | None, info: dict[str, Any], creds: Credentials
                         ) -> tuple[bool, str]:
    from keyproxy.exchanges.base import RealKey, resolve_upstream
    from keyproxy.proxy.upstream import UpstreamClients
    from keyproxy.proxy.own_calls import verify_key
    from keyproxy.state import NonceSequence

    adapter = default_adapters().get(info["exchange"])
    if adapter is None:
        raise UsageError(f"exchange {info['exchange']} is not supported by this version")
    upstream = resolve_upstream(adapter, info["base_url"], info["insecure_upstream"], info.get("environment"))
    key = RealKey(info["key_type"], creds.api_key, creds.secret, creds.passphrase, creds.private_key)
    nonce = None
    if adapter.needs_nonce:  # the account's own sequence when this process holds the state; else the clock
        state = controls.state if controls is not None else None
        nonce = NonceSequence(state).next(info["name"]) if state else time.time_ns() // 1000
    clients = UpstreamClients()
    try:
        return await verify_key(adapter, upstream, key, clients, nonce)
    finally:
        await clients.close()


def cmd_key_audit(ctx: Context) -> int:
    """Ask each exchange what the real key may do; warn where it exceeds what the bots need."""
    name = ctx.args.account
    with ctx.controls() as controls:
        if isinstance(controls, RemoteControls):
            results = controls.client.call("audit_keys", name=name)
        else:
            results = asyncio.run(_audit_direct(controls, name))
    if ctx.args.json:
        ctx.out_json(results)
    for account, r in sorted(results.items()):
        if ctx.args.json:
            break
        ctx.out(f"{account}: {'ok' if r['ok'] else 'WARN'}")
        for w in r["warnings"]:
            ctx.out(f"  - {w}")
    return 0 if all(r["ok"] for r in results.values()) else 1


async def _audit_direct(controls: Controls, name: str | None) -> dict[str, Any]:
    from keyproxy.exchanges.base import RealKey, resolve_upstream
    from keyproxy.proxy.upstream import UpstreamClients
    from keyproxy.proxy.own_calls import audit_key
    from keyproxy.state import NonceSequence

    accounts = [a for a in controls.list_accounts() if name is None or a["name"] == name]
    if name is not None and not accounts:
        raise KeyproxyError(f"no account named {name!r}")
    clients = UpstreamClients()
    results = {}
    try:
        for a in accounts:
            adapter = default_adapters().get(a["exchange"])
            if adapter is None:
                continue
            upstream = resolve_upstream(adapter, a["base_url"], a["insecure_upstream"], a.get("environment"))
            c = controls.vault.credentials(a["name"])
            key = RealKey(a["key_type"], c.api_key, c.secret, c.passphrase, c.private_key)
            scopes = {s for b in controls.list_bots() if b["account"] == a["name"] and b["status"] == "active"
                      for s in b["scopes"]}
            nonce = NonceSequence(controls.state).next(a["name"]) if adapter.needs_nonce and controls.state else None
            results[a["name"]] = await audit_key(a["exchange"], adapter, upstream, key, clients, scopes, nonce)
    finally:
        await clients.close()
    return results


def cmd_key_rollback(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.rollback_key(name=ctx.args.account)
    ctx.out(f"account {info['name']} uses key version {info['version']} again")
    return 0


def cmd_key_retire(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.retire_key(name=ctx.args.account)
    ctx.out(f"account {info['name']}: forgot {info['retired_versions']} previous key version(s)")
    return 0


def cmd_key_list(ctx: Context) -> int:
    with ctx.controls() as controls:
        accounts = controls.list_accounts()
    if ctx.args.json:
        ctx.out_json(accounts)
    elif accounts:
        header = ["ACCOUNT", "EXCHANGE", "TYPE", "STATUS", "VER", "FINGERPRINT", "KEY AGE", "ROTATE BY"]
        ctx.out(_table([_account_row(a, ctx.settings) for a in accounts], header))
    else:
        ctx.out("no accounts; add one with `keyproxy key add ACCOUNT --exchange EXCHANGE`")
    return 0


def cmd_key_show(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.show_account(name=ctx.args.account)
    _show(ctx, info)
    return 0


DURATION_FIELDS = frozenset({"rotate_every", "ttl", "ttl_seconds", "grace", "grace_seconds", "heartbeat_seconds",
                             "dead_man_seconds", "key_age"})  # shown as 30d, 12h, 90s (JSON keeps seconds)


def _show(ctx: Context, info: dict[str, Any]) -> None:
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


def cmd_key_remove(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.show_account(name=ctx.args.account)
        bots = [b["name"] for b in controls.list_bots() if b["account"] == info["name"]]
        also = f" and its bots ({', '.join(bots)})" if bots else ""
        confirm(ctx, f"Remove account {info['name']} ({info['exchange']}), all its key versions{also}?")
        controls.remove_account(name=info["name"])
    ctx.out(f"removed account {info['name']}" + (f" and bots {', '.join(bots)}" if bots else ""))
    return 0


def cmd_vault_rekey(ctx: Context) -> int:
    a = ctx.args
    new_inputs = UnlockInputs(
        passphrase_file=a.new_passphrase_file,
        key_file=a.new_key_file,
    )
    with ctx.controls() as controls:
        if isinstance(controls, RemoteControls):  # the running daemon rewraps its data key: no restart
            if a.to == "passphrase" and a.new_passphrase_file is None:
                raise UsageError("while the daemon runs, rekey to a passphrase needs --new-passphrase-file")
            st = controls.client.call("rekey", to=a.to,
                                      new_passphrase_file=str(a.new_passphrase_file) if a.new_passphrase_file else None,
                                      new_key_file=str(a.new_key_file) if a.new_key_file else None)
        else:
            vault = controls.vault
            choice = a.to or vault.status()["master_source"]
            if choice == "passphrase" and a.new_passphrase_file is None and not _has_tty():
                raise MasterKeyUnavailable("rekey to a passphrase needs --new-passphrase-file or a terminal")
            controls.rekey_with(source_for_new(choice, ctx.settings, new_inputs))
            st = vault.status()
    ctx.out(f"rekeyed vault {st['path']} (master key: {st['master_source']}, generation {st['master_generation']})")
    return 0


def cmd_vault_backup(ctx: Context) -> int:
    if str(ctx.args.file) == "-":
        raise UsageError("the backup must be a file (it is written atomically, mode 0600), not standard output")
    target = ctx.args.file.resolve()
    with ctx.controls() as controls:
        result = controls.backup(path=str(target))
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
            trail = AuditTrail(ctx.settings.audit_dir, vault.audit_key(), fsync="always")
            try:
                trail.append("admin", op="vault.restore", result="ok", peer_uid=os.getuid(),
                             file=str(ctx.args.file), forced=ctx.args.force, **{k: v for k, v in result.items()
                                                                               if k != "restored"})
            finally:
                trail.close()
    ctx.out(f"restored the vault from {result['restored']}")
    return 0


def _has_tty() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        return True
    except OSError:
        return False


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


def cmd_bot_add(ctx: Context) -> int:
    a = ctx.args
    from keyproxy.vault.records import check_name, parse_cidrs, parse_scopes

    check_name("bot", a.bot)
    check_name("account", a.account)
    parse_scopes(a.scope)
    parse_cidrs(a.allow_ip or [])
    if a.client:
        _known_client(a.client)
    with ctx.controls() as controls:
        shown = controls.add_bot(name=a.bot, account=a.account, scopes=a.scope, allow_ips=a.allow_ip or None,
                                 mode=a.mode, key_type=a.key_type, policy=_assignments(a.set or []),
                                 ttl_seconds=parse_duration(a.ttl) if a.ttl else None)
        exchange = controls.bot_where(name=a.bot)["exchange"] if a.client else ""
    if not a.client:
        ctx.out_json(shown)  # the only time the bot's credential is shown
        return 0
    from keyproxy.client_configs import ClientConfigError, snippet

    try:
        ctx.out(snippet(a.client, exchange, shown))  # the only time: the snippet carries the secret
    except ClientConfigError as e:  # the bot exists now: its credential must not be lost
        ctx.out_json(shown)
        raise StateError(f"bot {a.bot} was added (its credential is above), but no --client snippet: {e}") from None
    return 0


def _known_client(client: str) -> None:
    from keyproxy.client_configs import CLIENTS

    if client not in CLIENTS:
        raise UsageError(f"unknown --client {client!r}; known: {', '.join(CLIENTS)}")


def cmd_bot_config(ctx: Context) -> int:
    """A client's configuration for an existing bot, again: everything but the secret."""
    from keyproxy.client_configs import ClientConfigError, shown_again, snippet

    _known_client(ctx.args.client)
    with ctx.controls() as controls:
        where = controls.bot_where(name=ctx.args.bot)
    try:
        ctx.out(snippet(ctx.args.client, where["exchange"], shown_again(where)))
    except ClientConfigError as e:
        raise UsageError(str(e)) from None
    return 0


def cmd_bot_list(ctx: Context) -> int:
    with ctx.controls() as controls:
        bots = controls.list_bots()
    if ctx.args.json:
        ctx.out_json(bots)
    elif bots:
        rows = [[b["name"], b["account"], b["mode"], ",".join(b["scopes"]), b["status"], _day(b["created_at"]),
                 (b["key_id"] or "")[:12]] for b in bots]
        ctx.out(_table(rows, ["BOT", "ACCOUNT", "MODE", "SCOPES", "STATUS", "CREATED", "KEY"]))
    else:
        ctx.out("no bots; add one with `keyproxy bot add BOT --account ACCOUNT --scope read,trade`")
    return 0


def cmd_bot_show(ctx: Context) -> int:
    with ctx.controls() as controls:
        _show(ctx, controls.show_bot(name=ctx.args.bot))
    return 0


def _assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, not {item[:60]!r}")
        out[key.strip()] = value.strip()
    return out


def cmd_bot_set(ctx: Context) -> int:
    changes = _assignments(ctx.args.assignments)
    with ctx.controls() as controls:
        info = controls.set_bot(name=ctx.args.bot, changes=changes)
    ctx.out(f"bot {info['name']}: " + ", ".join(f"{k}={info['policy'][k]}" for k in changes))
    return 0


def _halt_target(args: argparse.Namespace) -> tuple[str, str]:
    chosen = [(s, t) for s, t in (("all", "*" if args.all else None), ("account", args.account), ("bot", args.bot))
              if t]
    if len(chosen) != 1:
        raise UsageError("name exactly one of --all, --account ACCOUNT, --bot BOT")
    return chosen[0]


def cmd_halt(ctx: Context) -> int:
    scope, target = _halt_target(ctx.args)
    with ctx.controls() as controls:
        if ctx.args.cancel_orders and not isinstance(controls, RemoteControls):
            raise StateError("--cancel-orders needs the running daemon (it holds the keys and the record of who "
                             "placed which order); start `keyproxy serve`, or cancel on the exchange")
        controls.halt(scope=scope, target=target, reason=ctx.args.reason)
        if not ctx.args.json:
            ctx.out(f"halted {scope} {target}: only reads and cancels (and reduce-only orders) pass")
        if not ctx.args.cancel_orders:
            if ctx.args.json:
                ctx.out_json({"halted": {"scope": scope, "target": target}})
            return 0
        if not ctx.args.json:
            ctx.out("cancelling open orders at the exchanges ...")
        controls.client.timeout = CANCEL_TIMEOUT_S
        summaries = controls.client.call("cancel_orders", scope=scope, target=target, reason=ctx.args.reason)
    if ctx.args.json:
        ctx.out_json({"halted": {"scope": scope, "target": target}, "accounts": summaries})
    else:
        for s in summaries:
            _print_cancel_summary(ctx, s)
    clean = all(not s["failed"] and not s["left"] and not s["error"] for s in summaries)
    return 0 if clean else 1


CANCEL_TIMEOUT_S = 300.0  # the daemon lists and cancels at every exchange of the scope


def _print_cancel_summary(ctx: Context, s: dict[str, Any]) -> None:
    who = f" (bot {s['bot']}'s orders)" if s["bot"] else ""
    ctx.out(f"{s['account']} [{s['exchange']}]{who}: cancelled {len(s['cancelled'])}, failed {len(s['failed'])}, "
            f"left {len(s['left'])}" + (f"; ERROR: {s['error']}" if s["error"] else ""))
    for f in s["failed"]:
        ctx.out(f"  FAILED {f['symbol']} {f['order_id']}: {f['error']}")
    for o in s["left"]:
        ctx.out(f"  STILL OPEN {o['symbol']} {o['order_id']}")


def cmd_resume(ctx: Context) -> int:
    scope, target = _halt_target(ctx.args)
    with ctx.controls() as controls:
        controls.resume(scope=scope, target=target)
    ctx.out(f"resumed {scope} {target}")
    return 0


def cmd_reload(ctx: Context) -> int:
    with ctx.controls() as controls:
        if not isinstance(controls, RemoteControls):
            raise StateError("no daemon is running; the config is read when `keyproxy serve` starts")
        result = controls.reload()
    ctx.out(f"reloaded {result['config_file'] or '(defaults)'}" +
            (f"; restart needed for: {', '.join(result['restart_needed'])}" if result["restart_needed"] else ""))
    return 0


def cmd_config_check(ctx: Context) -> int:
    settings = load_settings(ctx.args.path) if ctx.args.path else ctx.settings
    from keyproxy.proxy.dead_man import check_switches
    from keyproxy.vault.store import account_exchanges

    if settings.vault.path.exists():  # settings that depend on an account's exchange
        check_switches(settings.account_limits, account_exchanges(settings.vault.path))
    where = settings.config_file or "(no config file: defaults)"
    ctx.out(f"ok: {where} ({len(settings.bot_policies)} bot policies, vault {settings.vault.path})")
    return 0


def cmd_doctor(ctx: Context) -> int:
    from keyproxy.doctor import run_doctor

    findings = run_doctor(ctx.settings, lambda: Vault.open(
        ctx.settings.vault.path, lambda kind: source_for_kind(kind, ctx.settings, ctx.inputs), maintain=False),
        network=not ctx.args.offline)
    if ctx.args.json:
        ctx.out_json([f.as_json() for f in findings])
    else:
        for f in findings:
            ctx.out(f"{f.level.upper():<5} {f.check}: {f.what}" + (f"\n      fix: {f.fix}" if f.fix else ""))
    return 0 if all(f.level == "ok" for f in findings) else 1


def cmd_status(ctx: Context) -> int:
    with ctx.controls() as controls:
        st = controls.status()
    st["daemon"] = "running" if isinstance(controls, RemoteControls) else "stopped"
    if ctx.args.json:
        ctx.out_json(st)
        return 0
    ctx.out(f"daemon: {st['daemon']}; accounts: {st['accounts']}; bots: {st['bots']}; incidents: {st['incidents']}")
    for name in st["suspended_bots"]:
        ctx.out(f"SUSPENDED bot {name}")
    for name in st["quarantined_keys"]:
        ctx.out(f"QUARANTINED key of account {name}")
    for name in st.get("throttled_bots", []):
        ctx.out(f"THROTTLED bot {name} (1 request/s for 5 minutes after a rate spike)")
    for h in st["halts"]:
        ctx.out(f"HALT {h['scope']} {h['target']} since {_day(h['since'])}: {h['reason']}")
    for d in st.get("dead_man", []):
        when = (f"last armed {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(d['armed_at']))}"
                if d["armed_at"] else "never armed")
        failing = f"; FAILING ({d['failures']} in a row): {d['error']}" if d["error"] else ""
        ctx.out(f"dead-man's switch {d['account']}: {d['seconds']} s, {when}{failing}")
    for r in st.get("risk", []):
        held = "; ".join(f"{x['scope']} {x['position']} (resting buy {x['open_buy']}, sell {x['open_sell']}; price "
                         f"{x['price'] or '?'}, {'%s s old' % x['price_age_s'] if x['price_age_s'] is not None else 'none'})"
                         for x in r["positions"]) or "no position"
        limit = f" of limit -{r['max_daily_loss']}" if r["max_daily_loss"] else ""
        hit = "; LOSS LIMIT HIT: only reducing orders pass today" if r["loss_limit_hit"] else ""
        ctx.out(f"risk bot {r['bot']}: {held}; day P&L {r['day_pnl'] or '?'}{limit}{hit}")
    for b in st.get("budgets", []):
        closed = f"; CLOSED for {b['closed_s']:g} s (the exchange refused for rate)" if b["closed_s"] else ""
        ctx.out(f"budget {b['scope']} {b['budget']}: {b['used']:g} of {b['limit']} "
                f"({100 * b['used'] / b['limit']:.0f}%){closed}; bots: {', '.join(b['bots']) or '-'}")
    fleet = st.get("fleet")
    if fleet:
        if not fleet["reachable"]:
            ctx.out(f"fleet {fleet['where']}: UNREACHABLE ({fleet.get('problem', '')}); orders are refused, "
                    "reads, cancels and reduce-only orders pass")
        else:
            ctx.out(f"fleet {fleet['where']}: version {fleet['version']}")
        for i in fleet["instances"]:
            state = "this instance" if i["this"] else ("live" if i["live"] else "NOT HEARD FROM")
            ctx.out(f"instance {i['instance']} ({state}, {i['listen']}): applied {i['applied']}, "
                    f"{i['lag']} behind, last heartbeat {i['seen_s_ago']:g} s ago")
    return 0


def cmd_bot_rotate(ctx: Context) -> int:
    grace = parse_duration(ctx.args.grace) if ctx.args.grace != "0" else 0
    with ctx.controls() as controls:
        shown = controls.rotate_bot(name=ctx.args.bot, grace_seconds=grace)
    ctx.out_json(shown)  # the only time the new credential is shown
    return 0


def cmd_bot_renew(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.renew_bot(name=ctx.args.bot, ttl_seconds=parse_duration(ctx.args.ttl) if ctx.args.ttl else None)
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["expires_at"])) if info["expires_at"] else "never"
    ctx.out(f"bot {info['name']}: credential expires {until}")
    return 0


def cmd_bot_restore(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.restore_bot(name=ctx.args.bot)
    ctx.out(f"bot {info['name']} is {info['status']}")
    return 0


def cmd_key_restore(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.restore_key(name=ctx.args.account)
    ctx.out(f"account {info['name']} is {info['status']}")
    return 0


def cmd_incidents_list(ctx: Context) -> int:
    with ctx.controls() as controls:
        incidents = controls.list_incidents()
    if ctx.args.json:
        ctx.out_json(incidents)
    elif incidents:
        rows = [[str(i["id"]), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(i["ts"])), i["rule"], i["subject"],
                 ",".join(i["actions"])] for i in incidents]
        ctx.out(_table(rows, ["ID", "TIME (UTC)", "RULE", "SUBJECT", "ACTIONS"]))
    else:
        ctx.out("no incidents")
    return 0


def cmd_incidents_show(ctx: Context) -> int:
    with ctx.controls() as controls:
        incident = controls.show_incident(incident_id=ctx.args.id)
    if ctx.args.json:
        ctx.out_json(incident)
        return 0
    ctx.out(f"incident {incident['id']} at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(incident['ts']))}")
    ctx.out(f"rule:     {incident['rule']} ({incident['reason']})")
    ctx.out(f"subject:  {incident['subject']}")
    ctx.out(f"actions:  {', '.join(incident['actions'])}")
    ctx.out(f"evidence: request ids {', '.join(incident['evidence'])} (keyproxy audit tail / export)")
    for step in incident["next_steps"]:
        ctx.out(f"next:     {step}")
    return 0


def cmd_bot_revoke(ctx: Context) -> int:
    with ctx.controls() as controls:
        info = controls.revoke_bot(name=ctx.args.bot)
    ctx.out(f"revoked bot {info['name']}; its credential is refused from now on")
    return 0


def cmd_serve(ctx: Context) -> int:
    from dataclasses import replace

    from keyproxy import daemon

    settings = ctx.settings
    if ctx.args.port is not None or ctx.args.host is not None:
        listen = replace(settings.listen, host=ctx.args.host or settings.listen.host,
                         port=settings.listen.port if ctx.args.port is None else ctx.args.port)
        if not listen.is_loopback and not listen.allow_non_loopback:
            raise UsageError(f"{listen.host} is not a loopback address; set listen.allow_non_loopback = true "
                             "in the config to listen there on purpose")
        settings = replace(settings, listen=listen)
    from keyproxy.audit.log import configure_logging

    import logging

    from keyproxy.hardening import dumpable, harden_process

    level = os.environ.get("KEYPROXY_LOG_LEVEL", "info").upper()
    configure_logging(level=getattr(logging, level, logging.INFO))
    log = logging.getLogger("keyproxy.daemon")
    for problem in harden_process():  # no core dumps, no same-uid ptrace, umask 077
        log.warning("hardening step skipped: %s", problem)
    log.info("process hardened: dumpable=%s, core limit 0, umask 077", dumpable())
    if os.environ.get("KEYPROXY_PASSPHRASE") is not None:
        log.warning("KEYPROXY_PASSPHRASE was removed from the environment; a passphrase file "
                    "(KEYPROXY_PASSPHRASE_FILE) or a systemd credential is safer")
    from keyproxy.eventloop import loop_factory

    workers = ctx.args.workers
    if workers < 1 or workers > 64:
        raise UsageError(f"--workers must be 1-64, not {workers}")
    if workers > 1:
        if settings.shared_state is None:
            raise UsageError("--workers needs [shared_state] (a Redis): the workers share limits, replay ids, "
                             "nonces and halts through it as a fleet's instances do (docs/fleet.md)")
        from keyproxy.workers import run_workers

        with daemon_lock(settings):
            return run_workers(ctx.args.argv, workers, lambda line: _ready(ctx, line))
    worker = _worker_of(ctx.args.worker, settings) if ctx.args.worker else None
    factory, loop_name = loop_factory(ctx.args.loop)
    log.info("event loop: %s", loop_name)
    with daemon_lock(settings) if worker is None else contextlib.nullcontext(), \
            ctx.open_vault(strict=False) as vault, asyncio.Runner(loop_factory=factory) as runner:
        runner.run(daemon.run(settings, vault, ready=lambda line: _ready(ctx, line, notify_systemd=worker is None),
                              worker=worker))
    return 0


def _worker_of(spec: str, settings: Settings) -> tuple[int, int]:
    """`--worker I/N` (set by `serve --workers N` for its children, never by hand): the parent must hold the
    daemon lock, so a worker can never be a second daemon beside a running one."""
    from keyproxy.statedir import lock_path

    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UsageError(f"--worker is I/N, not {spec!r}") from None
    if not 0 <= index < count or settings.shared_state is None:
        raise UsageError("--worker is set by `serve --workers N` for its own workers")
    try:
        holder = int(lock_path(settings).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        holder = -1
    if holder != os.getppid():
        raise UsageError("--worker is set by `serve --workers N` for its own workers (its parent holds the lock)")
    return index, count


def _ready(ctx: Context, line: str, notify_systemd: bool = True) -> None:
    from keyproxy.sdnotify import notify

    print(line, file=ctx.stdout, flush=True)
    if notify_systemd:
        notify(f"READY=1\nSTATUS={line}")  # under systemd (Type=notify): `systemctl start` returns now


def cmd_tls_init(ctx: Context) -> int:
    from keyproxy.tls import make_local_ca

    directory = (ctx.args.dir or ctx.settings.state_dir / "tls").resolve()
    if (directory / "key.pem").exists() and not ctx.args.force:
        raise StateError(f"{directory}/key.pem exists; --force replaces the certificate (restart the daemon after)")
    files = make_local_ca(directory, ctx.args.days)
    ctx.out(f"wrote {files.ca} (the CA clients trust), {files.cert} and {files.key} (0600)\n"
            f"config:\n  [listen]\n  tls_cert = \"{files.cert}\"\n  tls_key = \"{files.key}\"\n"
            f"clients: SSL_CERT_FILE={files.ca} (Python), or add it to the client's CA bundle")
    return 0


def cmd_emulator(ctx: Context) -> int:
    from keyproxy.emulator.app import main as emulator_main

    argv = ["--host", ctx.args.host, "--port", str(ctx.args.port), "--accounts", str(ctx.args.accounts)]
    if ctx.args.journal:
        argv += ["--journal", str(ctx.args.journal)]
    return emulator_main(argv)


def cmd_audit_verify(ctx: Context) -> int:
    """Each trail named (default: this host's) on its own: its chain and MACs, and that it was not cut
    short: against the head this host's state.db recorded, and in a fleet the head its instance last
    published to Redis."""
    from keyproxy.audit.trail import trail_files, verify
    from keyproxy.state import StateStore

    targets = ctx.args.path or [ctx.settings.audit_dir]
    trails = []
    for target in targets:
        files = trail_files(target) if target.is_dir() else [target]
        if not files or not all(f.exists() for f in files):
            raise StateError(f"no audit trail at {target}")
        trails.append((target, files))
    head = None
    state_db = ctx.settings.state_dir / "state.db"
    if not ctx.args.path and state_db.exists():
        head = StateStore(state_db).audit_head()
    reports, ok = [], True
    with ctx.open_vault(join_fleet=False) as vault:  # read only: safe while the daemon runs
        published = _published_audit_heads(ctx, vault.vault_id)
        for target, files in trails:
            instance = trail_instance(files)
            heads = [h for h in (head, published.get(instance or "")) if h]
            result = verify(files, vault.audit_key(), max(heads) if heads else None)
            ok = ok and result.ok
            reports.append({"trail": str(target), "instance": instance, "ok": result.ok, "lines": result.lines,
                            "last_seq": result.last_seq, "problem": result.problem, "files": [str(f) for f in files]})
    if ctx.args.json:
        ctx.out_json(reports[0] if len(reports) == 1 else reports)
        return 0 if ok else 1
    for r in reports:
        who = f"{r['trail']}" + (f" (instance {r['instance']})" if r["instance"] else "")
        if r["ok"]:
            ctx.out(f"ok: {who}: {r['lines']} lines in {len(r['files'])} file(s), chain and MACs verify "
                    f"(last seq {r['last_seq']})")
        else:
            ctx.out(f"FAILED: {who}: after {r['lines']} good lines: {r['problem']}")
    return 0 if ok else 1


def _trail_files(directory: Path) -> list[Path]:
    from keyproxy.audit.trail import trail_files

    files = trail_files(directory)
    if not files:
        raise StateError(f"no audit trail at {directory}")
    return files


def trail_instance(files: list[Path]) -> str | None:
    """The fleet instance that wrote a trail: its newest daemon.start says (None outside a fleet)."""
    from keyproxy.audit.trail import iter_lines

    instance = None
    for _, _, raw, torn in iter_lines(files):
        if not torn and b'"daemon.start"' in raw:
            with contextlib.suppress(ValueError):
                instance = json.loads(raw).get("instance") or instance
    return instance


def _published_audit_heads(ctx: Context, vault_id: str) -> dict[str, int]:
    """In a fleet: instance -> the newest audit seq it published with its heartbeat (unreachable: none)."""
    shared = ctx.settings.shared_state
    if shared is None:
        return {}
    from keyproxy.fleet.store import FleetStore, SharedStateUnavailable

    try:
        fleet = FleetStore(shared, vault_id)
        try:
            return {name: int(rec.get("audit_seq", 0)) for name, rec in fleet.instances(live_only=False).items()}
        finally:
            fleet.close()
    except SharedStateUnavailable:
        return {}


def _audit_lines(ctx: Context, directory: Path | None = None) -> Iterator[dict[str, Any]]:
    from keyproxy.audit.trail import iter_lines, trail_files

    for _, _, raw, torn in iter_lines(trail_files(directory or ctx.settings.audit_dir)):
        if not torn:
            try:
                yield json.loads(raw)
            except ValueError:
                continue


def _matches(line: dict[str, Any], args: argparse.Namespace) -> bool:
    return ((not getattr(args, "bot", None) or line.get("bot") == args.bot)
            and (not getattr(args, "account", None) or line.get("account") == args.account))


def _parse_time(text: str) -> float:
    """Unix seconds, ISO 8601, or a duration back from now (`1h`, `30m`, `2d`)."""
    from datetime import datetime, timezone

    try:
        return float(text)
    except ValueError:
        pass
    if text[-1:] in ("s", "m", "h", "d") and text[:-1].isdigit():
        return time.time() - parse_duration(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid time {text[:40]!r}: use ISO 8601 (2026-11-25T10:00:00Z), Unix seconds "
                         "or a time back from now (90s, 30m, 1h, 2d)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def cmd_audit_tail(ctx: Context) -> int:
    if ctx.args.lines < 0:
        raise UsageError(f"-n/--lines must be 0 or more, not {ctx.args.lines}")
    lines = [ln for ln in _audit_lines(ctx) if _matches(ln, ctx.args)]
    for line in lines[len(lines) - ctx.args.lines:] if ctx.args.lines else []:  # -n 0: only what follows
        ctx.out(json.dumps(line, sort_keys=True))
    if not ctx.args.follow:
        return 0
    seen = lines[-1]["seq"] if lines else 0
    try:
        while True:
            time.sleep(0.5)
            for line in _audit_lines(ctx):
                if line.get("seq", 0) > seen:
                    seen = line["seq"]
                    if _matches(line, ctx.args):
                        ctx.out(json.dumps(line, sort_keys=True))
                        ctx.stdout.flush()
    except KeyboardInterrupt:
        return 0


EXPORT_FIELDS = ("seq", "ts", "event", "request_id", "bot", "account", "source_ip", "method", "path", "endpoint",
                 "endpoint_class", "decision", "code", "status", "upstream_status", "proxy_ms", "upstream_ms", "op",
                 "result", "peer_uid", "instance")


def cmd_audit_export(ctx: Context) -> int:
    import csv

    since = _parse_time(ctx.args.since)
    until = _parse_time(ctx.args.until) if ctx.args.until else float("inf")
    rows = []
    for directory in ctx.args.trail or [None]:  # a fleet's trails, one per instance: merged in time order
        files = None if directory is None else directory
        instance = trail_instance(_trail_files(files)) if files is not None else None
        for ln in _audit_lines(ctx, files):
            if since <= ln.get("ts", 0) <= until and _matches(ln, ctx.args):
                rows.append({**ln, "instance": instance} if instance else ln)
    if ctx.args.trail:
        rows.sort(key=lambda ln: (ln.get("ts", 0), ln.get("instance") or "", ln.get("seq", 0)))
    if ctx.args.format == "csv":
        writer = csv.DictWriter(ctx.stdout, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            ctx.out(json.dumps(row, sort_keys=True))
    return 0


def cmd_completion(ctx: Context) -> int:
    """The shell's completion script, generated from this very parser by shtab (never written by hand)."""
    import shtab

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
    "account": {"bash": "_keyproxy_accounts", "zsh": "_keyproxy_accounts", "fish": "(keyproxy _names accounts 2>/dev/null)"},
    "bot": {"bash": "_keyproxy_bots", "zsh": "_keyproxy_bots", "fish": "(keyproxy _names bots 2>/dev/null)"},
}


def _complete_names(parser: argparse.ArgumentParser) -> None:
    """Attach the account and bot name completers (shtab reads `action.complete`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _complete_names(child)
        elif action.dest in NAME_COMPLETERS:
            action.complete = NAME_COMPLETERS[action.dest]  # type: ignore[attr-defined]


def cmd_demo(ctx: Context) -> int:
    from keyproxy.demo import run_demo

    return run_demo(ctx.stdout)


# --- parser ---------------------------------------------------------------


# help for the arguments many commands share, by "command path:dest" first, then by dest
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

    def cmd(parent: Any, name: str, fn: Callable[[Context], int], help: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help, parents=[common])
        sp.set_defaults(func=fn)
        return sp

    sp = cmd(sub, "init", cmd_init, "create a new, empty vault")
    sp.add_argument("--master-key", choices=MASTER_KEY_CHOICES, help="where the master key comes from")

    key = sub.add_parser("key", help="exchange API keys").add_subparsers(dest="key_command", required=True,
                                                                          metavar="ACTION")
    sp = cmd(key, "add", cmd_key_add, "add an account; credential JSON on stdin, or prompted")
    sp.add_argument("account")
    sp.add_argument("--exchange", required=True, help=f"one of {', '.join(sorted(EXCHANGES))}")
    sp.add_argument("--key-type", help=f"one of {', '.join(KEY_TYPES)} (default: the exchange's first)")
    sp.add_argument("--base-url", help="e.g. the exchange's testnet, or a loopback emulator")
    sp.add_argument("--insecure-upstream", action="store_true", help="allow a plain-http loopback base URL")
    sp.add_argument("--environment", help="the exchange's environment: production (default), testnet, demo")
    sp.add_argument("--rotate-every", help="rotation schedule, e.g. 30d")
    sp.add_argument("--verify", action="store_true",
                    help="first make a signed read at the exchange with the key; add it only if it works")
    sp.add_argument("--private-key-file", type=Path, metavar="PEM",
                    help="the ed25519/rsa/ec private key, read from this file (mode 0600); api_key still on stdin")
    sp = cmd(key, "list", cmd_key_list, "list accounts (never secrets)")
    sp.add_argument("--json", action="store_true")
    sp = cmd(key, "show", cmd_key_show, "show one account's metadata and fingerprint")
    sp.add_argument("account")
    sp.add_argument("--json", action="store_true")
    sp = cmd(key, "remove", cmd_key_remove, "remove an account and all its key versions")
    sp.add_argument("account")
    sp.add_argument("--yes", action="store_true", help="do not ask to confirm")

    sp = cmd(key, "rotate", cmd_key_rotate, "switch to a new key (stdin as for `key add`), checked at the exchange")
    sp.add_argument("account")
    sp.add_argument("--private-key-file", type=Path, metavar="PEM",
                    help="the new ed25519/rsa/ec private key, read from this file (mode 0600)")
    sp = cmd(key, "audit", cmd_key_audit, "ask each exchange what the real key may do; warn where it exceeds the bots' needs")
    sp.add_argument("account", nargs="?")
    sp.add_argument("--json", action="store_true")
    sp = cmd(key, "rollback", cmd_key_rollback, "go back to the previous key version")
    sp.add_argument("account")
    sp = cmd(key, "retire", cmd_key_retire, "forget the previous key versions")
    sp.add_argument("account")
    sp = cmd(key, "restore", cmd_key_restore, "lift a key's quarantine (refused for a key the exchange revoked)")
    sp.add_argument("account")

    incidents = sub.add_parser("incidents", help="anomaly incidents").add_subparsers(
        dest="incidents_command", required=True, metavar="ACTION")
    sp = cmd(incidents, "list", cmd_incidents_list, "list incident records")
    sp.add_argument("--json", action="store_true")
    sp = cmd(incidents, "show", cmd_incidents_show, "show one incident: rule, evidence, actions, next steps")
    sp.add_argument("id", type=int)
    sp.add_argument("--json", action="store_true")

    vault = sub.add_parser("vault", help="the vault itself").add_subparsers(dest="vault_command",
                                                                             required=True, metavar="ACTION")
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

    bot = sub.add_parser("bot", help="bot credentials").add_subparsers(dest="bot_command", required=True,
                                                                       metavar="ACTION")
    sp = cmd(bot, "add", cmd_bot_add, "create a bot credential; printed once as JSON")
    sp.add_argument("bot")
    sp.add_argument("--account", required=True)
    sp.add_argument("--scope", required=True, help="comma list of read, trade, withdraw, transfer")
    sp.add_argument("--allow-ip", action="append", metavar="CIDR", help="repeatable; replaces the loopback-only default (add 127.0.0.1/32 to keep it)")
    sp.add_argument("--mode", choices=BOT_MODES, default="dropin",
                    help="dropin: the bot's SDK signs with a virtual key; token: X-Keyproxy-Token header")
    sp.add_argument("--key-type", help="virtual key type for drop-in bots (default: the exchange's usual one; "
                                       "binance: hmac, ed25519, rsa; coinbase: ec, ed25519; bybit: hmac, rsa)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="a policy limit (see docs/policy.md)")
    sp.add_argument("--ttl", help="the credential expires after this long (e.g. 8h); `bot renew` extends it")
    from keyproxy.client_configs import CLIENTS

    sp.add_argument("--client", metavar="CLIENT", help="print the credential as CLIENT's configuration instead "
                    f"of JSON: {', '.join(CLIENTS)}")
    sp = cmd(bot, "config", cmd_bot_config, "print a client's configuration for a bot again (without its secret)")
    sp.add_argument("bot")
    sp.add_argument("--client", required=True, metavar="CLIENT", help=", ".join(CLIENTS))
    sp = cmd(bot, "list", cmd_bot_list, "list bots (never their secrets)")
    sp.add_argument("--json", action="store_true")
    sp = cmd(bot, "show", cmd_bot_show, "show one bot")
    sp.add_argument("bot")
    sp.add_argument("--json", action="store_true")
    sp = cmd(bot, "revoke", cmd_bot_revoke, "revoke a bot's credential (takes effect on its next request)")
    sp.add_argument("bot")
    sp = cmd(bot, "rotate", cmd_bot_rotate, "issue a new virtual credential; the old one works for --grace")
    sp.add_argument("bot")
    sp.add_argument("--grace", default="1h", help="how long the old credential stays valid (default 1h; 0: none)")
    sp = cmd(bot, "renew", cmd_bot_renew, "extend a bot credential's expiry (--ttl), or lift it (no --ttl)")
    sp.add_argument("bot")
    sp.add_argument("--ttl")
    sp = cmd(bot, "restore", cmd_bot_restore, "lift a bot's suspension")
    sp.add_argument("bot")
    sp = cmd(bot, "set", cmd_bot_set, "change a bot's policy, live (e.g. max_order_notional=500 symbols=BTCUSDT)")
    sp.add_argument("bot")
    sp.add_argument("assignments", nargs="+", metavar="KEY=VALUE")

    for name, fn, text in (("halt", cmd_halt, "kill switch: refuse everything but reads and cancels"),
                           ("resume", cmd_resume, "lift a halt")):
        sp = cmd(sub, name, fn, text)
        sp.add_argument("--all", action="store_true")
        sp.add_argument("--account")
        sp.add_argument("--bot")
        if name == "halt":
            sp.add_argument("--reason", default="halted by operator")
            sp.add_argument("--cancel-orders", action="store_true",
                            help="then cancel the scope's resting orders at the exchange (a bot: only its own)")
            sp.add_argument("--json", action="store_true")
    cmd(sub, "reload", cmd_reload, "make the running daemon re-read its config file (as SIGHUP does)")
    config = sub.add_parser("config", help="the config file").add_subparsers(dest="config_command", required=True,
                                                                             metavar="ACTION")
    sp = cmd(config, "check", cmd_config_check, "validate a config file without starting anything")
    sp.add_argument("path", nargs="?", type=Path)
    sp = cmd(sub, "doctor", cmd_doctor, "check the installation and explain each problem with its fix (changes nothing)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--offline", action="store_true", help="skip the exchange checks (key permissions, clock skew)")
    sp = cmd(sub, "status", cmd_status, "daemon, accounts, bots, halts in force and the exchanges' rate budgets in use")
    sp.add_argument("--json", action="store_true")

    sp = cmd(sub, "serve", cmd_serve, "run the signing proxy daemon")
    sp.add_argument("--host", help="listen address (default: listen.host, 127.0.0.1)")
    sp.add_argument("--port", type=int, help="listen port (default: listen.port, 8750; 0 picks a free one)")
    sp.add_argument("--loop", choices=("asyncio", "uvloop", "auto"), default="asyncio",
                    help="event loop: asyncio's own (default), uvloop, or auto (uvloop where installed)")
    sp.add_argument("--workers", type=int, default=1,
                    help="processes sharing the port (SO_REUSEPORT), one host's cores; needs [shared_state]")
    sp.add_argument("--worker", help=argparse.SUPPRESS)  # I/N: set by --workers for its own children

    tls = sub.add_parser("tls", help="the optional TLS listener").add_subparsers(dest="tls_command", required=True,
                                                                              metavar="ACTION")
    sp = cmd(tls, "init", cmd_tls_init, "make a local CA and a loopback certificate for [listen] tls_cert/tls_key")
    sp.add_argument("--dir", type=Path, help="where to write ca.pem, cert.pem, key.pem (default: <state>/tls)")
    sp.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    sp.add_argument("--force", action="store_true", help="replace an existing certificate")

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

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True,
                                                                           metavar="ACTION")
    sp = cmd(audit, "verify", cmd_audit_verify, "check the trail's chain and MACs; name the first bad line")
    sp.add_argument("path", nargs="*", type=Path, help="trail files or directories, e.g. every fleet instance's "
                    "(default: the configured one)")
    sp.add_argument("--json", action="store_true")
    sp = cmd(audit, "tail", cmd_audit_tail, "print the newest audit events")
    sp.add_argument("--bot")
    sp.add_argument("--account")
    sp.add_argument("-n", "--lines", type=int, default=20)
    sp.add_argument("-f", "--follow", action="store_true")
    sp = cmd(audit, "export", cmd_audit_export, "export events in a time range for incident review")
    sp.add_argument("--since", required=True, help="ISO 8601 time or Unix seconds")
    sp.add_argument("--until")
    sp.add_argument("--bot")
    sp.add_argument("--account")
    sp.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    sp.add_argument("--trail", action="append", type=Path, metavar="DIR",
                    help="a trail directory to merge (repeat for each fleet instance's); default: the configured one")

    cmd(sub, "demo", cmd_demo, "run the built-in demonstration in a throw-away directory")
    sp = cmd(sub, "completion", cmd_completion, "print the shell completion script (bash, zsh, fish, tcsh)")
    sp.add_argument("shell", choices=("bash", "zsh", "fish", "tcsh"), help="the shell to complete for")
    sp.epilog = ("install: keyproxy completion bash > ~/.local/share/bash-completion/completions/keyproxy; "
                 "zsh: keyproxy completion zsh > \"${fpath[1]}/_keyproxy\"; "
                 "fish: keyproxy completion fish > ~/.config/fish/completions/keyproxy.fish")
    names = sub.add_parser("_names", help=argparse.SUPPRESS)  # completion's helper, not for people
    names.set_defaults(func=cmd_names)
    names.add_argument("kind", choices=("accounts", "bots"), help="which names")
    if completion:
        _complete_names(p)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
