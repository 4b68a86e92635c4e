"""Deployment files: the Prometheus alert rules check and pass their promtool unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: ./scripts/test installs Debian's prometheus package; "
                    "or run `apt-get install prometheus`")
    return path


def test_alert_rules_are_valid(promtool: str) -> None:
    out = subprocess.run([promtool, "check", "rules", str(DEPLOY / "alerts.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 15 rules found" in out.stdout


def test_alert_rules_unit_tests(promtool: str) -> None:
    tests = sorted(str(p) for p in (DEPLOY / "tests").glob("*.yml"))
    out = subprocess.run([promtool, "test", "rules", *tests], capture_output=True, text=True, cwd=DEPLOY / "tests")
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_summary_and_description_and_is_tested() -> None:
    import re

    rules = (DEPLOY / "alerts.yml").read_text()
    names = re.findall(r"- alert: (\w+)", rules)
    assert len(names) == 15
    assert rules.count("summary:") == rules.count("description:") == 15
    tested = "".join(p.read_text() for p in (DEPLOY / "tests").glob("*.yml"))
    assert [n for n in names if f"alertname: {n}" not in tested] == []


def test_alert_expressions_use_exported_metric_names() -> None:
    """A renamed metric must not silently disable an alert."""
    import re

    from keyproxy.metrics import Metrics

    exported = {m.name for m in Metrics().registry.collect()} | {"keyproxy_key_rotation_due", "up",
                                                                 "keyproxy_exchange_budget_used_ratio"}  # scrape-time
    used = set(re.findall(r"\b(keyproxy_[a-z_]+|up)\b", (DEPLOY / "alerts.yml").read_text()))
    base = {u.removesuffix("_total") for u in used}
    assert base <= exported, base - exported


def test_every_file_beside_the_rules_is_a_rules_file_and_the_scrape_config_is_valid(promtool: str) -> None:
    """`promtool check rules deploy/prometheus/*.yml`, as an operator would run it, checks rules only; the
    scrape config lives apart and loads the rules it names."""
    files = sorted(str(p) for p in DEPLOY.glob("*.yml"))
    out = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([promtool, "check", "config", str(DEPLOY / "config" / "prometheus-scrape.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS: 15 rules found" in out.stdout, out.stdout + out.stderr


def test_the_grafana_dashboard_queries_are_valid_promql_on_metrics_keyproxy_exports(promtool: str,
                                                                                     tmp_path: Path) -> None:
    """Every panel's PromQL, wrapped into recording rules, passes `promtool check rules`; every metric it names
    is one keyproxy defines (a renamed metric cannot leave a panel silently empty)."""
    import json
    import re

    dashboard = json.loads((DEPLOY.parent / "grafana" / "keyproxy.json").read_text())
    assert dashboard["uid"] == "keyproxy" and dashboard["panels"]
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["targets"], panel
        exprs += [t["expr"] for t in panel["targets"]]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    rules = "groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: keyproxy:dashboard_{i}\n        expr: {json.dumps(e)}\n" for i, e in enumerate(exprs))
    (tmp_path / "dashboard.yml").write_text(rules)
    out = subprocess.run([promtool, "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True, text=True)
    assert out.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in out.stdout, out.stdout + out.stderr

    source = "".join(p.read_text() for p in (DEPLOY.parents[1] / "keyproxy").rglob("*.py"))
    defined = set(re.findall(r'"(keyproxy_[a-z_]+)"', source))
    exported = {n + suffix for n in defined for suffix in ("", "_total", "_bucket", "_sum", "_count")}
    used = {m for e in exprs for m in re.findall(r"\b(keyproxy_[a-z_]+)", e)}
    assert used and used <= exported, sorted(used - exported)
    for needed in ("keyproxy_requests_total", "keyproxy_denials_total", "keyproxy_anomalies_total",
                   "keyproxy_halts_active", "keyproxy_key_age_seconds", "keyproxy_key_rotation_due",
                   "keyproxy_audit_write_errors_total", "keyproxy_upstream_seconds_bucket"):
        assert needed in used, needed


def test_the_wheel_carries_docs_deployment_files_and_the_example_config(tmp_path: Path) -> None:
    """An operator who installs the wheel (not a git clone) gets what the docs tell them to copy."""
    import sys
    import zipfile

    root = DEPLOY.parents[1]
    # built from a clean copy, as a release is: setuptools merges a checkout's existing *.egg-info/SOURCES.txt
    # (an editable install's, possibly from before a package was excluded) into what the wheel carries
    import shutil

    source = tmp_path / "source"
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(".venv*", ".git", "build", "*.egg-info", "__pycache__",
                                                               ".hypothesis", ".ruff_cache", ".pytest_cache"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    [wheel] = tmp_path.glob("keyproxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    share = {n.split("/data/share/keyproxy/", 1)[1] for n in names if "/data/share/keyproxy/" in n}
    for needed in ("README.md", "SECURITY.md", "config/keyproxy.example.toml", "deploy/README.md",
                   "deploy/prometheus/alerts.yml", "deploy/prometheus/config/prometheus-scrape.yml",
                   "deploy/grafana/keyproxy.json", "deploy/systemd/keyproxy.service", "docs/incident-response.md"):
        assert needed in share, (needed, sorted(share))
    assert {p.name for p in (root / "docs").glob("*.md")} <= {Path(n).name for n in share if n.startswith("docs/")}
    assert any(n.endswith("licenses/LICENSE") for n in names)
    # a production install carries no exchange emulator (it accepts whatever it is told), devstack or demo
    assert "keyproxy/cli/__init__.py" in names and "keyproxy/daemon.py" in names
    assert not [n for n in names if n.startswith("keyproxy/emulator/")], [n for n in names if "emulator" in n][:5]


@pytest.mark.parametrize("command", [["demo"], ["emulator", "--accounts", "a.json"]])
def test_without_the_emulator_the_demo_and_emulator_commands_say_where_they_live(command: list[str]) -> None:
    """As in an install from the wheel, which leaves keyproxy/emulator/ out: one line, exit 1, no traceback."""
    import sys

    code = ("import sys; sys.modules['keyproxy.emulator'] = None; from keyproxy.cli import main; "
            f"sys.exit(main({command!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "comes with a development checkout of keyproxy" in out.stderr and len(out.stderr.splitlines()) == 1
