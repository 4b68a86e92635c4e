"""Rotation schedules: due dates, the warning window, config defaults, and the metrics fed to the alerts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from keyproxy.config import load_settings
from keyproxy.errors import ConfigError
from keyproxy.metrics import key_age_families, rotation_due

DAY = 86400.0


def acct(name: str, age_days: float, every_days: float | None) -> SimpleNamespace:
    return SimpleNamespace(name=name, rotated_at=1000 * DAY - age_days * DAY,
                           rotate_every=int(every_days * DAY) if every_days else None)


@pytest.mark.parametrize("age, every, default, due", [
    (10, 30, None, False),
    (24, 30, None, True),   # inside the 7-day warning window
    (40, 30, None, True),   # overdue
    (40, None, None, False),  # no schedule at all
    (40, None, 30, True),   # the config default applies
    (10, None, 30, False),
])
def test_due(age: float, every: float | None, default: float | None, due: bool) -> None:
    due_at, is_due = rotation_due(acct("a", age, every), 1000 * DAY, int(default * DAY) if default else None,
                                  int(7 * DAY))
    assert is_due is due
    if every or default:
        assert due_at == 1000 * DAY - age * DAY + (every or default) * DAY  # type: ignore[operator]


def test_metrics_families() -> None:
    families = key_age_families([acct("old", 40, 30), acct("new", 1, 30)], now=1000 * DAY)
    samples = {(f.name, s.labels["account"]): s.value for f in families for s in f.samples}
    assert samples[("keyproxy_key_rotation_due", "old")] == 1.0
    assert samples[("keyproxy_key_rotation_due", "new")] == 0.0
    assert samples[("keyproxy_key_age_seconds", "old")] == 40 * DAY


def test_rotation_config(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text('[rotation]\nrotate_every = "30d"\nwarn_before = "3d"\n')
    s = load_settings(cfg, {})
    assert (s.rotation.rotate_every, s.rotation.warn_before) == (30 * 86400, 3 * 86400)
    cfg.write_text('[rotation]\nrotate_every = "soon"\n')
    with pytest.raises(ConfigError, match="rotation.rotate_every: invalid duration"):
        load_settings(cfg, {})
