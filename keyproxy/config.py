"""Configuration: one TOML file parsed once into frozen, typed settings.

Where the file is: `--config PATH`, else `$KEYPROXY_CONFIG`, else
`$XDG_CONFIG_HOME/keyproxy/keyproxy.toml` if it exists. With no file at all,
every setting has a default. Unknown keys are errors that name the file and
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keyproxy.errors import ConfigError
from keyproxy.files import read_bounded
from keyproxy.vault._crypto import KdfParams, check_kdf_params

MASTER_KEY_CHOICES = ("auto", "keyring", "passphrase", "file")
SECONDS_MAX = 86_400.0  # the longest timeout or grace a setting takes
CONFIG_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class VaultSettings:
    path: Path
    master_key: str = "auto"
    passphrase_file: Path | None = None
    key_file: Path | None = None
    kdf: KdfParams = field(default_factory=KdfParams)


@dataclass(frozen=True, slots=True)
class ListenSettings:
    host: str = "127.0.0.1"
    port: int = 8750
    allow_non_loopback: bool = False
    tls_cert: Path | None = None  # both set: the listener speaks https:// and wss:// (`keyproxy tls init`)
    tls_key: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def is_loopback(self) -> bool:
        """An IP literal of the loopback range (a name that merely starts with "127." is none: session 35's review
        had `127.evil.example` resolve to 0.0.0.0), or localhost."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def host_problem(self) -> str | None:
        """Why keyproxy must not listen on `host` (the config's and `serve --host`'s one check); None: it may."""
        if self.host != "localhost":
            try:
                ipaddress.ip_address(self.host)
            except ValueError:
                return f"must be an IP address, not {self.host!r}"
        if not self.is_loopback and not self.allow_non_loopback:
            return (f"{self.host} is not a loopback address; set listen.allow_non_loopback = true to listen there "
                    "on purpose")
        return None


@dataclass(frozen=True, slots=True)
class ProxySettings:
    max_body_bytes: int = 1 << 20
    header_timeout: float = 10.0  # aiohttp keepalive_timeout: the only deadline on reading headers
    body_timeout: float = 10.0
    upstream_timeout: float = 10.0
    max_response_bytes: int = 64 << 20
    shutdown_grace: float = 10.0
    # seconds keyproxy sends an exchange stream token (Kraken's WebSocket token, first use within 15 minutes)
    # on new connections before fetching a fresh one
    stream_token_reuse: float = 600.0
    max_sockets: int = 512  # bot WebSockets open at once (each holds one upstream); market data ones half at most


@dataclass(frozen=True, slots=True)
class GovernorSettings:
    """[governor]: the exchanges' own rate budgets, shared by every bot (policy/budget.py)."""

    enabled: bool = True
    reserve: float = 0.1  # the share of each budget kept for cancels and reduce-only orders
    limits: Mapping[str, int] = field(default_factory=dict)  # "binance.REQUEST_WEIGHT" -> limit per window
    shares: Mapping[str, float] = field(default_factory=dict)  # bot -> weight of its share of each budget
    tiers: Mapping[str, str] = field(default_factory=dict)  # account -> its tier at the exchange (Kraken)
    cache: Mapping[str, float] = field(default_factory=dict)  # "exchange:/path" -> seconds a public GET is shared


@dataclass(frozen=True, slots=True)
class AuditSettings:
    directory: Path | None = None  # default: <state dir>/audit
    fsync: str = "interval"
    fsync_interval_ms: int = 200
    max_bytes: int = 64 << 20
    fail_open: bool = False


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9750


@dataclass(frozen=True, slots=True)
class RotationSettings:
    rotate_every: int | None = None  # seconds; for accounts without their own --rotate-every
    warn_before: int = 7 * 86400  # a key counts as due this long before its date


@dataclass(frozen=True, slots=True)
class SharedStateSettings:
    """[shared_state]: the Redis a fleet of keyproxy instances shares (keyproxy/fleet/); unset, one daemon keeps
    everything in its own files, as before."""

    url: str  # redis://host:port/db, rediss:// (TLS, certificate verified) or unix:///path; never a password
    password_file: Path | None = None  # the password (or a systemd credential's path), never argv or the URL
    prefix: str = "keyproxy"
    instance: str | None = None  # this instance's name in `status`; default: host name and listen port
    timeout: float = 2.0  # seconds for one Redis call
    tls_ca_file: Path | None = None  # rediss://: the CA that signed Redis's certificate (default: the system's)

    def password(self) -> str | None:
        """Read when connecting (OSError to the caller): a rotated password file needs only a restart."""
        if self.password_file is None:
            return None
        return self.password_file.read_text().strip() or None


@dataclass(frozen=True, slots=True)
class Settings:
    config_file: Path | None
    vault: VaultSettings
    listen: ListenSettings = field(default_factory=ListenSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    rotation: RotationSettings = field(default_factory=RotationSettings)
    governor: GovernorSettings = field(default_factory=GovernorSettings)
    bot_policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [bots.NAME] tables
    account_limits: Mapping[str, Any] = field(default_factory=dict)  # [accounts.NAME] -> AccountLimits
    anomaly: Mapping[str, Any] | None = None  # rule name -> RuleConfig ([anomaly.RULE]); None: defaults
    shared_state: SharedStateSettings | None = None  # [shared_state]: a fleet sharing state through Redis

    @property
    def audit_dir(self) -> Path:
        return self.audit.directory or self.state_dir / "audit"

    @property
    def state_dir(self) -> Path:
        """Where the daemon keeps its socket, lock and state: beside the vault (0700)."""
        return self.vault.path.parent


def _xdg(env: Mapping[str, str], name: str, fallback: str) -> Path:
    value = env.get(name)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def default_config_path(env: Mapping[str, str]) -> Path:
    return _xdg(env, "XDG_CONFIG_HOME", ".config") / "keyproxy" / "keyproxy.toml"


def default_vault_path(env: Mapping[str, str]) -> Path:
    return _xdg(env, "XDG_DATA_HOME", ".local/share") / "keyproxy" / "vault.db"


class _Reader:
    """Walks a parsed TOML table, naming file and dotted key in every error."""

    def __init__(self, file: Path, base: Path) -> None:
        self.file, self.base = file, base

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.file}: {key}: {reason}")

    def table(self, doc: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = doc.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        for name in value:
            if name not in allowed:
                raise self.error(f"{key}.{name}", f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def string(self, t: Mapping[str, Any], key: str, name: str, choices: tuple[str, ...] = ()) -> str | None:
        if name not in t:
            return None
        value = t[name]
        if not isinstance(value, str) or not value:
            raise self.error(f"{key}.{name}", "must be a non-empty string")
        if choices and value not in choices:
            raise self.error(f"{key}.{name}", f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def path(self, t: Mapping[str, Any], key: str, name: str) -> Path | None:
        value = self.string(t, key, name)
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    def number(self, t: Mapping[str, Any], key: str, name: str, default: float) -> float:
        """A positive number of seconds, finite and at most SECONDS_MAX (a NaN passed `<= 0` and left the upstream
        call with no deadline at all: session 35's review)."""
        value = t.get(name, default)
        if type(value) not in (int, float) or not 0 < value <= SECONDS_MAX:
            raise self.error(f"{key}.{name}", f"must be a positive number up to {SECONDS_MAX}, not {value!r}")
        return float(value)

    def boolean(self, t: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        value = t.get(name, default)
        if not isinstance(value, bool):
            raise self.error(f"{key}.{name}", f"must be true or false, not {value!r}")
        return value

    def integer(self, t: Mapping[str, Any], key: str, name: str, default: int) -> int:
        value = t.get(name, default)
        if type(value) is not int or value <= 0:
            raise self.error(f"{key}.{name}", f"must be a positive integer, not {value!r}")
        return value


def load_settings(config: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Find, read and validate the config; defaults when no file exists."""
    env = os.environ if env is None else env
    explicit = config or (Path(env["KEYPROXY_CONFIG"]) if env.get("KEYPROXY_CONFIG") else None)
    file = explicit or default_config_path(env)
    doc: dict[str, Any] = {}
    if explicit is not None or file.exists():
        try:
            data = read_bounded(file, CONFIG_MAX_BYTES)
            if len(data) > CONFIG_MAX_BYTES:
                raise ConfigError(f"{file}: larger than {CONFIG_MAX_BYTES} bytes: not a keyproxy config")
            doc = tomllib.loads(data.decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{file}: config file not found") from None
        except OSError as e:
            raise ConfigError(f"{file}: cannot read config file: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file}: not valid TOML: {e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file}: not valid TOML: not UTF-8 text") from None
    else:
        file = None  # type: ignore[assignment]
    return parse_settings(doc, file, env)


def parse_settings(doc: Mapping[str, Any], file: Path | None, env: Mapping[str, str]) -> Settings:
    r = _Reader(file or Path("<defaults>"), (file.parent if file else Path.cwd()))
    sections = {"vault", "listen", "proxy", "audit", "metrics", "bots", "accounts", "anomaly", "rotation", "governor",
                "shared_state"}
    for name in doc:
        if name not in sections:
            raise r.error(name, f"unknown section (known: {', '.join(sorted(sections))})")
    v = r.table(doc, "vault", {"path", "master_key", "passphrase_file", "key_file", "kdf"})
    k = r.table(v, "vault.kdf", {"memory_kib", "iterations", "lanes"})
    defaults = KdfParams()
    kdf = KdfParams(
        memory_kib=r.integer(k, "vault.kdf", "memory_kib", defaults.memory_kib),
        iterations=r.integer(k, "vault.kdf", "iterations", defaults.iterations),
        lanes=r.integer(k, "vault.kdf", "lanes", defaults.lanes),
    )
    problem = check_kdf_params(kdf, creating=True)
    if problem:
        raise r.error("vault.kdf", problem)
    vault = VaultSettings(
        path=r.path(v, "vault", "path") or default_vault_path(env),
        master_key=r.string(v, "vault", "master_key", MASTER_KEY_CHOICES) or "auto",
        passphrase_file=r.path(v, "vault", "passphrase_file"),
        key_file=r.path(v, "vault", "key_file"),
        kdf=kdf,
    )
    ls = r.table(doc, "listen", {"host", "port", "allow_non_loopback", "tls_cert", "tls_key"})
    port = ls.get("port", 8750)
    if type(port) is not int or not 0 <= port <= 65535:
        raise r.error("listen.port", f"must be a port number 0-65535, not {port!r}")
    listen = ListenSettings(
        host=r.string(ls, "listen", "host") or "127.0.0.1",
        port=port,
        allow_non_loopback=r.boolean(ls, "listen", "allow_non_loopback", False),
        tls_cert=r.path(ls, "listen", "tls_cert"),
        tls_key=r.path(ls, "listen", "tls_key"),
    )
    if (listen.tls_cert is None) != (listen.tls_key is None):
        raise r.error("listen.tls_cert", "tls_cert and tls_key go together (make both with `keyproxy tls init`)")
    _check_host(r, listen)
    ps = r.table(doc, "proxy", {"max_body_bytes", "header_timeout", "body_timeout", "upstream_timeout",
                                "max_response_bytes", "shutdown_grace", "stream_token_reuse", "max_sockets"})
    d = ProxySettings()
    proxy = ProxySettings(
        max_body_bytes=r.integer(ps, "proxy", "max_body_bytes", d.max_body_bytes),
        header_timeout=r.number(ps, "proxy", "header_timeout", d.header_timeout),
        body_timeout=r.number(ps, "proxy", "body_timeout", d.body_timeout),
        upstream_timeout=r.number(ps, "proxy", "upstream_timeout", d.upstream_timeout),
        max_response_bytes=r.integer(ps, "proxy", "max_response_bytes", d.max_response_bytes),
        shutdown_grace=r.number(ps, "proxy", "shutdown_grace", d.shutdown_grace),
        stream_token_reuse=r.number(ps, "proxy", "stream_token_reuse", d.stream_token_reuse),
        max_sockets=r.integer(ps, "proxy", "max_sockets", d.max_sockets),
    )
    if proxy.max_sockets < 2:
        raise r.error("proxy.max_sockets", "must be at least 2 (half of them at most carry market data)")
    if proxy.stream_token_reuse > 840:
        raise r.error("proxy.stream_token_reuse", "must be at most 840 s (Kraken's tokens must be used within 900)")
    au = r.table(doc, "audit", {"dir", "fsync", "fsync_interval_ms", "max_bytes", "fail_open"})
    audit = AuditSettings(
        directory=r.path(au, "audit", "dir"),
        fsync=r.string(au, "audit", "fsync", ("always", "interval")) or "interval",
        fsync_interval_ms=r.integer(au, "audit", "fsync_interval_ms", 200),
        max_bytes=r.integer(au, "audit", "max_bytes", 64 << 20),
        fail_open=r.boolean(au, "audit", "fail_open", False),
    )
    ms = r.table(doc, "metrics", {"enabled", "host", "port"})
    mport = ms.get("port", 9750)
    if type(mport) is not int or not 0 <= mport <= 65535:
        raise r.error("metrics.port", f"must be a port number 0-65535, not {mport!r}")
    metrics = MetricsSettings(enabled=r.boolean(ms, "metrics", "enabled", True),
                              host=r.string(ms, "metrics", "host") or "127.0.0.1", port=mport)
    if metrics.host not in ("127.0.0.1", "::1", "localhost") and not listen.allow_non_loopback:
        raise r.error("metrics.host", "metrics are served on loopback only unless listen.allow_non_loopback = true")
    ro = r.table(doc, "rotation", {"rotate_every", "warn_before"})
    rotation = RotationSettings(rotate_every=_duration(r, ro, "rotation", "rotate_every"),
                                warn_before=_duration(r, ro, "rotation", "warn_before") or 7 * 86400)
    return Settings(config_file=file, vault=vault, listen=listen, proxy=proxy, audit=audit, metrics=metrics,
                    rotation=rotation, governor=_governor(r, doc),
                    bot_policies=_bot_policies(r, doc.get("bots", {})),
                    account_limits=_account_limits(r, doc.get("accounts", {})),
                    anomaly=_anomaly(r, doc.get("anomaly", {})), shared_state=_shared_state(r, doc))


def _shared_state(r: _Reader, doc: Any) -> SharedStateSettings | None:
    """`[shared_state]` url (redis://, rediss:// or unix://; a password in it is refused: the config file is
    no place for one), password_file, prefix, instance, timeout."""
    if "shared_state" not in doc:
        return None
    t = r.table(doc, "shared_state", {"url", "password_file", "prefix", "instance", "timeout", "tls_ca_file"})
    url = r.string(t, "shared_state", "url")
    if not url:
        raise r.error("shared_state.url", "is required: the Redis the fleet shares, e.g. redis://127.0.0.1:6379/0")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise r.error("shared_state.url", f"must start with redis://, rediss:// or unix://, not {parts.scheme!r}")
    if parts.password is not None:
        raise r.error("shared_state.url", "must not carry a password: put it in [shared_state] password_file")
    prefix = r.string(t, "shared_state", "prefix") or "keyproxy"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", prefix):
        raise r.error("shared_state.prefix", "must be 1-64 letters, digits, '_', '.' or '-'")
    instance = r.string(t, "shared_state", "instance")
    if instance is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", instance):
        raise r.error("shared_state.instance", "must be 1-64 letters, digits, '_', '.', ':' or '-'")
    timeout = r.number(t, "shared_state", "timeout", 2.0)
    if not 0.05 <= timeout <= 30:
        raise r.error("shared_state.timeout", "must be between 0.05 and 30 seconds")
    ca = r.path(t, "shared_state", "tls_ca_file")
    if ca is not None and parts.scheme != "rediss":
        raise r.error("shared_state.tls_ca_file", "is for a rediss:// url (Redis over TLS)")
    return SharedStateSettings(url=url, password_file=r.path(t, "shared_state", "password_file"), prefix=prefix,
                               instance=instance, timeout=timeout, tls_ca_file=ca)


def _governor(r: _Reader, doc: Any) -> GovernorSettings:
    """`[governor]` enabled, reserve (0 <= r < 1), `[governor.limits]` ("exchange.BUDGET" = a positive limit
    per window, for budgets the exchange adapters model), `[governor.shares]` (bot = a positive weight),
    `[governor.tiers]` (account = a tier the exchange publishes limits for) and `[governor.cache]`
    ("exchange:/path" = seconds a public GET's answer is shared by every bot, 0 for never)."""
    from keyproxy.exchanges import default_adapters

    g = r.table(doc, "governor", {"enabled", "reserve", "limits", "shares", "tiers", "cache"})
    reserve = g.get("reserve", 0.1)
    if type(reserve) not in (int, float) or not 0 <= reserve < 1:
        raise r.error("governor.reserve", f"must be at least 0 and below 1 (a share of each budget), not {reserve}")
    # the adapters (their budgets and tiers) only when a table names them: most configs have none
    adapters = default_adapters() if any(g.get(n) for n in ("limits", "tiers", "cache")) else {}

    def entries(name: str, shape: str) -> dict[str, Any]:
        table = g.get(name, {})
        if not isinstance(table, dict):
            raise r.error(f"governor.{name}", f"must be a table of {shape}")
        return table

    known = {f"{name}.{budget.name}" for name, adapter in adapters.items() for budget in adapter.budgets}
    limits: dict[str, int] = {}
    for key, value in entries("limits", '"exchange.BUDGET" = limit').items():
        if key not in known:
            raise r.error(f"governor.limits.{key}", f"unknown budget (known: {', '.join(sorted(known))})")
        if type(value) is not int or value <= 0:
            raise r.error(f"governor.limits.{key}", f"must be a positive whole number, not {value!r}")
        limits[key] = value
    shares: dict[str, float] = {}
    for key, value in entries("shares", "bot = weight").items():
        if type(value) not in (int, float) or not 0 < value <= 1000:
            raise r.error(f"governor.shares.{key}", f"must be a weight above 0 and at most 1000, not {value!r}")
        shares[key] = float(value)
    tier_names = {t for adapter in adapters.values() for t in adapter.budget_tiers}
    tiers: dict[str, str] = {}
    for key, value in entries("tiers", 'account = "tier"').items():
        if not isinstance(value, str) or value not in tier_names:
            raise r.error(f"governor.tiers.{key}", f"unknown tier {value!r} (known: {', '.join(sorted(tier_names))})")
        tiers[key] = value
    cache: dict[str, float] = {}
    for key, value in entries("cache", '"exchange:/path" = seconds').items():
        exchange, _, path = key.partition(":")
        adapter = adapters.get(exchange)
        if adapter is None or not path.startswith("/"):
            raise r.error(f"governor.cache.{key}", f"must name an exchange and a path, like \"binance:/api/v3/time\" "
                          f"(exchanges: {', '.join(sorted(adapters))})")
        endpoint = adapter.classify("GET", path)
        if endpoint is None or endpoint.cls.value != "public":
            raise r.error(f"governor.cache.{key}",
                          f"not a public endpoint of {exchange}: only public answers are shared")
        if type(value) not in (int, float) or not 0 <= value <= 3600:
            raise r.error(f"governor.cache.{key}", f"must be seconds from 0 to 3600, not {value!r}")
        cache[f"{exchange}:{path}"] = float(value)
    return GovernorSettings(enabled=r.boolean(g, "governor", "enabled", True), reserve=float(reserve), limits=limits,
                            shares=shares, tiers=tiers, cache=cache)


def _anomaly(r: _Reader, doc: Any) -> dict[str, Any]:
    from keyproxy.anomaly.rules import RuleError, parse_rules

    if not isinstance(doc, dict):
        raise r.error("anomaly", "must be a table of [anomaly.RULE] tables")
    try:
        return parse_rules(doc)
    except RuleError as e:
        key, _, reason = str(e).partition(": ")
        raise r.error(f"anomaly.{key}", reason) from None


def _duration(r: _Reader, t: Mapping[str, Any], key: str, name: str) -> int | None:
    from keyproxy.durations import parse_duration
    from keyproxy.errors import UsageError

    value = r.string(t, key, name)
    if value is None:
        return None
    try:
        return parse_duration(value)
    except UsageError as e:
        raise r.error(f"{key}.{name}", str(e)) from None


def _account_limits(r: _Reader, accounts: Any) -> dict[str, Any]:
    """`[accounts.NAME]` tables: rate limits shared by all of an account's bots."""
    from keyproxy.policy.model import PolicyError, parse_account_limits
    from keyproxy.vault.records import NAME_RE

    if not isinstance(accounts, dict):
        raise r.error("accounts", "must be a table of [accounts.NAME] tables")
    out = {}
    for name, table in accounts.items():
        if not NAME_RE.fullmatch(name) or not isinstance(table, dict):
            raise r.error(f"accounts.{name}", "must be a table named like an account (a-z 0-9 _ -)")
        try:
            out[name] = parse_account_limits(table)
        except PolicyError as e:
            key, _, reason = str(e).partition(": ")
            raise r.error(f"accounts.{name}.{key}", reason) from None
    return out


def _bot_policies(r: _Reader, bots: Any) -> dict[str, dict[str, Any]]:
    """`[bots.NAME]` tables: policy keys the config pins for a bot (they override `bot set`)."""
    from keyproxy.policy.model import PolicyError, parse_policy
    from keyproxy.vault.records import NAME_RE

    if not isinstance(bots, dict):
        raise r.error("bots", "must be a table of [bots.NAME] tables")
    out: dict[str, dict[str, Any]] = {}
    for name, table in bots.items():
        if not NAME_RE.fullmatch(name):
            raise r.error(f"bots.{name}", "invalid bot name (1-64 of a-z 0-9 _ -)")
        if not isinstance(table, dict):
            raise r.error(f"bots.{name}", "must be a table")
        try:
            parse_policy(table)
        except PolicyError as e:
            key, _, reason = str(e).partition(": ")
            raise r.error(f"bots.{name}.{key}", reason) from None
        out[name] = dict(table)
    return out


def _check_host(r: _Reader, listen: ListenSettings) -> None:
    if (problem := listen.host_problem()) is not None:
        raise r.error("listen.host", problem)
