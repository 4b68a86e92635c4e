"""Reading a real credential: JSON on stdin (keyproxy's own shape, or Coinbase's downloaded CDP key file),
a private key from a 0600 file, or a prompt without echo; never from argv. A base URL checked."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from keyproxy.files import PIPE_S, read_bounded
from keyproxy.errors import UsageError
from keyproxy.exchanges.catalog import EXCHANGES
from keyproxy.admin.controls import credentials_from_json, field_names
from keyproxy.secret import Secret
from keyproxy.vault import Credentials
from keyproxy.cli.context import Context


MAX_STDIN_BYTES = 65_536


# Coinbase's CDP key file as downloaded: {"name": "organizations/.../apiKeys/...", "privateKey": "-----BEGIN ..."}
# (newer Ed25519 keys: {"id": "...", "privateKey": "<base64>"}); read as is
CDP_KEY_FILE = {"name": "api_key", "id": "api_key", "privateKey": "private_key"}

ACCEPTED_SHAPES = ('{"api_key", "secret", "passphrase", "private_key"} (keyproxy\'s own), or Coinbase\'s downloaded '
                   'CDP key file {"name", "privateKey"} / {"id", "privateKey"} as is')


def read_credentials(ctx: Context, key_type: str, exchange: str) -> Credentials:
    """JSON on stdin when it is not a terminal; otherwise prompt without echo. `--private-key-file`, where
    the command has it, supplies the PEM."""
    pem = private_key_file(getattr(ctx.args, "private_key_file", None), key_type)
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
                raise UsageError(f"unknown credential field(s) on stdin: {field_names(extra)}; "
                                 f"accepted: {ACCEPTED_SHAPES}")
            if "name" in doc and "id" in doc:
                raise UsageError("the CDP key file has both name and id; keep the one Coinbase gave the key")
            doc = {CDP_KEY_FILE[k]: v for k, v in doc.items()}
        if pem is not None:
            if doc.get("private_key"):
                raise UsageError("the private key came twice: in the JSON on stdin and --private-key-file; give one")
            doc["private_key"] = pem.reveal_str()
        return credentials_from_json(doc, "on stdin", ACCEPTED_SHAPES)
    creds = prompt_credentials(key_type, exchange, pem)
    return creds


def private_key_file(path: Path | None, key_type: str) -> Secret | None:
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
        data = read_bounded(path, MAX_STDIN_BYTES, pipe_s=PIPE_S)
    except OSError as e:
        raise UsageError(f"cannot read --private-key-file {path}: {e.strerror}") from None
    if len(data) > MAX_STDIN_BYTES:
        raise UsageError(f"--private-key-file {path} is larger than {MAX_STDIN_BYTES} bytes: not a key")
    try:
        return Secret(data.decode("ascii"))
    except UnicodeDecodeError:
        raise UsageError(f"--private-key-file {path} is not a PEM text file") from None


def prompt_credentials(key_type: str, exchange: str, pem: Secret | None = None) -> Credentials:
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
        fields["private_key"] = private_key_file(Path(path).expanduser(), key_type) or Secret("")
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
