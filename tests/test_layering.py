"""Who may import whom (STYLE.md): checked on the source with ast, so a slip fails CI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "keyproxy"


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)  # and `from keyproxy import daemon` imports keyproxy.daemon
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def modules(*parts: str) -> list[Path]:
    base = ROOT.joinpath(*parts)
    return sorted(base.rglob("*.py")) if base.is_dir() else [base]


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT.parent))


def test_only_the_two_crypto_modules_touch_hazmat() -> None:
    allowed = {ROOT / "vault" / "_crypto.py", ROOT / "exchanges" / "_sign.py"}
    offenders = [rel(p) for p in modules() if p not in allowed and not p.is_relative_to(ROOT / "emulator")
                 and any(n.startswith("cryptography.hazmat") for n in imports(p))]
    assert offenders == []


def test_only_the_eth_door_touches_ethereum_signing() -> None:
    """Hyperliquid's secp256k1/EIP-712/msgpack code lives behind exchanges/_eth.py (as hazmat behind _sign.py)."""
    libraries = ("eth_account", "eth_keys", "eth_utils", "msgpack", "coincurve")
    offenders = [rel(p) for p in modules() if p != ROOT / "exchanges" / "_eth.py"
                 and not p.is_relative_to(ROOT / "emulator")
                 and any(n.split(".")[0] in libraries for n in imports(p))]
    assert offenders == []


def test_pure_packages_do_no_io_and_no_aiohttp() -> None:
    pure = modules("exchanges") + modules("policy") + modules("anomaly", "rules.py") + modules("audit", "redact.py")
    for p in pure:
        if not p.exists():
            continue
        bad = {n for n in imports(p) if n.split(".")[0] in ("aiohttp", "sqlite3", "socket", "keyring")
               or n.startswith(("keyproxy.vault", "keyproxy.proxy", "keyproxy.daemon"))}
        assert not bad, f"{rel(p)} imports {bad}"


def test_pure_packages_import_only_pure_keyproxy_modules() -> None:
    """The sans-I/O layer (exchanges, policy, anomaly rules, redaction) reaches into keyproxy only for its own
    package and the value types every layer shares: `Secret`, policy's facts and budgets (both stdlib only)."""
    shared = ("keyproxy.secret", "keyproxy.errors", "keyproxy.policy.model", "keyproxy.policy.budget",
              "keyproxy.policy.codes")
    pure = {"exchanges": modules("exchanges"), "policy": modules("policy"), "anomaly": modules("anomaly", "rules.py"),
            "audit": modules("audit", "redact.py")}
    offenders = {}
    for package, paths in pure.items():
        for p in paths:
            bad = {n for n in imports(p) if n.startswith("keyproxy.") and not n.startswith(f"keyproxy.{package}")
                   and not n.startswith(shared) and n != "keyproxy"}
            if bad:
                offenders[rel(p)] = sorted(bad)
    assert offenders == {}
    for value_module in ("model.py", "budget.py"):  # what the shared value modules themselves may import
        assert {n for n in imports(ROOT / "policy" / value_module) if n.startswith("keyproxy")} <= set(shared)


def test_aiohttp_only_at_the_network_edges() -> None:
    allowed = ("proxy", "admin", "emulator")
    offenders = [rel(p) for p in modules()
                 if any(n.split(".")[0] == "aiohttp" for n in imports(p))
                 and p.relative_to(ROOT).parts[0] not in allowed and p.name not in ("daemon.py", "demo.py")]
    assert offenders == []


DRIVERS = {ROOT / "emulator" / "devstack.py", ROOT / "emulator" / "demo.py"}  # start keyproxy itself


def test_emulator_is_independent_of_the_adapters() -> None:
    """The emulator's judging code never sees keyproxy's (only the drivers that start keyproxy's processes)."""
    offenders = [rel(p) for p in modules("emulator") if p not in DRIVERS
                 and any(n.startswith("keyproxy.") and not n.startswith("keyproxy.emulator") for n in imports(p))]
    assert offenders == []


def test_nothing_imports_the_daemon() -> None:
    starters = {ROOT / "daemon.py", ROOT / "cli" / "daemon_cmds.py", ROOT / "emulator" / "demo.py"}  # serve, demo
    offenders = [rel(p) for p in modules() if p not in starters and "keyproxy.daemon" in imports(p)]
    assert offenders == []


def test_only_the_fleet_package_talks_to_redis() -> None:
    """Redis sees sealed blobs only: every key it holds is written by keyproxy/fleet/store.py's one class."""
    offenders = [rel(p) for p in modules() if not p.is_relative_to(ROOT / "fleet")
                 # the throw-away test server's own client, never the daemon's
                 and p != ROOT / "emulator" / "devstack.py"
                 and any(n.split(".")[0] == "redis" for n in imports(p))]
    assert offenders == []
