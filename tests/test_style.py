"""The code's own rules, run by the suite: pyflakes' checks (unused imports and names, undefined names) and the
120-column width, as pyproject.toml's [tool.ruff] sets them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_the_package_the_tests_and_the_benchmarks() -> None:
    ruff = Path(sys.executable).with_name("ruff")  # installed with the test extras, beside this interpreter
    out = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", "keyproxy", "tests", "bench"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-1000:]
