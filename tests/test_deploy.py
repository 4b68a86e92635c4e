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
    assert "SUCCESS: 12 rules found" in out.stdout


def test_alert_rules_unit_tests(promtool: str) -> None:
    tests = sorted(str(p) for p in (DEPLOY / "tests").glob("*.yml"))
    out = subprocess.run([promtool, "test", "rules", *tests], capture_output=True, text=True, cwd=DEPLOY / "tests")
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_summary_and_description_and_is_tested() -> None:
    import re

    rules = (DEPLOY / "alerts.yml").read_text()
    names = re.findall(r"- alert: (\w+)", rules)
    assert len(names) == 12
    assert rules.count("summary:") == rules.count("description:") == 12
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
    assert out.returncode == 0 and "SUCCESS: 12 rules found" in out.stdout, out.stdout + out.stderr
