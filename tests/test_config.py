"""Config parsing: defaults, XDG, strictness with file and key in every error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keyproxy.config import load_settings
from keyproxy.errors import ConfigError


def test_defaults_without_any_file(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "c"), "XDG_DATA_HOME": str(tmp_path / "d")}
    s = load_settings(None, env)
    assert s.config_file is None
    assert s.vault.path == tmp_path / "d" / "keyproxy" / "vault.db"
    assert s.vault.master_key == "auto" and s.vault.kdf.memory_kib == 262144


def test_home_fallback_when_xdg_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load_settings(None, {})
    assert s.vault.path == tmp_path / ".local" / "share" / "keyproxy" / "vault.db"


def test_config_lookup_order(tmp_path: Path) -> None:
    xdg = tmp_path / "c" / "keyproxy"
    xdg.mkdir(parents=True)
    (xdg / "keyproxy.toml").write_text("[vault]\npath = 'from-xdg.db'\n")
    env_cfg = tmp_path / "env.toml"
    env_cfg.write_text("[vault]\npath = '/abs/from-env.db'\n")
    flag_cfg = tmp_path / "flag.toml"
    flag_cfg.write_text("[vault]\npath = 'rel/from-flag.db'\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "c")}
    assert load_settings(None, env).vault.path == xdg / "from-xdg.db"  # relative to the file
    env["KEYPROXY_CONFIG"] = str(env_cfg)
    assert load_settings(None, env).vault.path == Path("/abs/from-env.db")
    assert load_settings(flag_cfg, env).vault.path == tmp_path / "rel" / "from-flag.db"


@pytest.mark.parametrize("text, message", [
    ("[vault]\npaht = 'x'", "vault.paht: unknown key"),
    ("[vualt]\npath = 'x'", "vualt: unknown section"),
    ("[vault]\nmaster_key = 'hsm'", "vault.master_key: must be one of"),
    ("[vault]\npath = 5", "vault.path: must be a non-empty string"),
    ("[vault.kdf]\nmemory_kib = -1", "vault.kdf.memory_kib: must be a positive integer"),
    ("[vault.kdf]\nmemory_kib = 'lots'", "vault.kdf.memory_kib: must be a positive integer"),
    ("[vault.kdf]\nmemory_kib = 1024", "vault.kdf: below the OWASP floor"),
    ("[vault.kdf]\nmemroy = 1", "vault.kdf.memroy: unknown key"),
    ("vault = 3", "vault: must be a table"),
    ("[vault\n", "not valid TOML"),
    ("[proxy]\nmax_sockets = 1", "proxy.max_sockets: must be at least 2"),
    ("[proxy]\nmax_sockets = 0", "proxy.max_sockets: must be a positive integer"),
    # session 35's review: a NaN passed `<= 0`, and an upstream call with it had no deadline at all
    ("[proxy]\nupstream_timeout = nan", "proxy.upstream_timeout: must be a positive number up to"),
    ("[proxy]\nshutdown_grace = inf", "proxy.shutdown_grace: must be a positive number up to"),
    ("[proxy]\nstream_token_reuse = nan", "proxy.stream_token_reuse: must be a positive number up to"),
    # and a name that starts with 127. is no loopback address
    ("[listen]\nhost = '127.evil.example'", "listen.host: must be an IP address"),
    ("[listen]\nhost = '127.0.0.1.nip.io'", "listen.host: must be an IP address"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, {})
    assert str(e.value).startswith(f"{cfg}: ") and message in str(e.value)


def test_missing_explicit_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "none.toml", {})


@pytest.mark.parametrize("text, message", [
    ("[bots.alpha]\nmax_order_notional = -5", "bots.alpha.max_order_notional: must be a positive number"),
    ("[bots.alpha]\nallow_ips = ['10.0.0.0/33']", "bots.alpha.allow_ips: invalid CIDR"),
    ("[bots.alpha]\nscopes = ['read', 'root']", "bots.alpha.scopes: unknown scope"),
    ("[bots.alpha]\nmax_notional = 5", "bots.alpha.max_notional: unknown policy key"),
    ("[bots.Alpha]\nscopes = ['read']", "bots.Alpha: invalid bot name"),
    ("[bots]\nalpha = 3", "bots.alpha: must be a table"),
])
def test_bad_bot_policy_tables(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, {})
    assert str(e.value).startswith(f"{cfg}: ") and message in str(e.value)


def test_bot_policy_tables_parse(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text("[bots.alpha]\nmax_order_notional = 500\nsymbols = ['BTCUSDT']\n")
    assert dict(load_settings(cfg, {}).bot_policies["alpha"]) == {"max_order_notional": 500, "symbols": ["BTCUSDT"]}


def test_account_limit_tables(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text("[accounts.main]\nrequests_per_second = 10\nburst = 20\norders_per_minute = 100\n")
    limits = load_settings(cfg, {}).account_limits["main"]
    assert (limits.requests_per_second, limits.burst, limits.orders_per_minute) == (10.0, 20, 100)
    cfg.write_text("[accounts.main]\nmax_order_notional = 5\n")
    with pytest.raises(ConfigError, match="accounts.main.max_order_notional: unknown account limit"):
        load_settings(cfg, {})
    cfg.write_text("[accounts.main]\nburst = -2\n")
    with pytest.raises(ConfigError, match="accounts.main.burst: must be a positive number"):
        load_settings(cfg, {})


@pytest.mark.parametrize(("text", "message"), [
    ("[governor]\nreserve = 1.5\n", "governor.reserve: must be at least 0 and below 1"),
    ("[governor]\nreserve = -0.1\n", "governor.reserve: must be at least 0 and below 1"),
    ('[governor.limits]\n"binance.WEIGHTS" = 10\n', "governor.limits.binance.WEIGHTS: unknown budget"),
    ('[governor.limits]\n"binance.REQUEST_WEIGHT" = -5\n',
     "governor.limits.binance.REQUEST_WEIGHT: must be a positive"),
    ('[governor.limits]\n"binance.REQUEST_WEIGHT" = 1.5\n',
     "governor.limits.binance.REQUEST_WEIGHT: must be a positive"),
    ("[governor]\nspeed = 1\n", "governor.speed: unknown key"),
    ('[governor.shares]\nbig = 0\n', "governor.shares.big: must be a weight above 0"),
    ('[governor.shares]\nbig = "lots"\n', "governor.shares.big: must be a weight above 0"),
    ("[governor]\nshares = 3\n", "governor.shares: must be a table"),
    ('[governor.tiers]\nmain = "gold"\n',
     "governor.tiers.main: unknown tier 'gold' (known: intermediate, pro, starter)"),
    ('[governor.cache]\n"binance:/api/v3/account" = 5\n',
     "governor.cache.binance:/api/v3/account: not a public endpoint"),
    ('[governor.cache]\n"nowhere:/x" = 5\n', "governor.cache.nowhere:/x: must name an exchange and a path"),
    ('[governor.cache]\n"binance:/api/v3/time" = -1\n', "governor.cache.binance:/api/v3/time: must be seconds from 0"),
])
def test_bad_governor_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(cfg, {})


def test_governor_settings_parse(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text('[governor]\nreserve = 0.2\n[governor.limits]\n"binance.REQUEST_WEIGHT" = 1200\n')
    g = load_settings(cfg, {}).governor
    assert (g.enabled, g.reserve, dict(g.limits)) == (True, 0.2, {"binance.REQUEST_WEIGHT": 1200})
    cfg.write_text('[governor.shares]\nbig = 3\n[governor.tiers]\nkr = "pro"\n[governor.cache]\n'
                   '"binance:/api/v3/ticker/price" = 1.5\n"okx:/api/v5/public/time" = 0\n')
    g = load_settings(cfg, {}).governor
    assert (dict(g.shares), dict(g.tiers), dict(g.cache)) == (
        {"big": 3.0}, {"kr": "pro"}, {"binance:/api/v3/ticker/price": 1.5, "okx:/api/v5/public/time": 0.0})


def test_doctor_names_a_master_key_file_others_can_read(tmp_path: Path) -> None:
    """A passphrase file others can read is refused at unlock; `doctor` names it (and its fix) beforehand."""
    from keyproxy.doctor import check_files

    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    pw.chmod(0o644)
    cfg = tmp_path / "k.toml"
    cfg.write_text(f'[vault]\npath = "{tmp_path}/vault.db"\npassphrase_file = "{pw}"\n')
    cfg.chmod(0o600)
    findings = [f.as_json() for f in check_files(load_settings(cfg))]
    assert {"level": "fail", "check": "files", "what": f"passphrase file {pw} is mode 0o644, readable by others",
            "fix": f"chmod 600 {pw}"} in findings
    pw.chmod(0o600)
    assert not any("passphrase" in f.as_json()["what"] for f in check_files(load_settings(cfg)))
