"""Shared fixtures. The environment is scrubbed so a developer's shell cannot change a result."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRUBBED_PREFIXES = ("KEYPROXY_", "XDG_", "PYTHON_KEYRING", "CREDENTIALS_DIRECTORY")
SCRUBBED_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                  "all_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
                  "CURL_CA_BUNDLE")

# Argon2id at the OWASP floor keeps tests fast; the production default is tested once on its own.
FAST_KDF_TOML = "[vault.kdf]\nmemory_kib = 19456\niterations = 2\nlanes = 1\n"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(SCRUBBED_PREFIXES) or name in SCRUBBED_NAMES:
            monkeypatch.delenv(name, raising=False)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Home:
    """A private XDG home with a config using the fast KDF and a passphrase file."""

    root: Path
    env: dict[str, str]
    passphrase_file: Path

    @property
    def vault(self) -> Path:
        return self.root / "data" / "keyproxy" / "vault.db"

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> CliResult:
        """Run the real CLI in a subprocess with no controlling terminal."""
        proc = subprocess.run(
            [sys.executable, "-m", "keyproxy.cli", *args],
            input=input if input is not None else "", capture_output=True, text=True,
            env={**self.env, **(env or {})}, timeout=timeout, start_new_session=True,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)


def child_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(SCRUBBED_PREFIXES) and k not in SCRUBBED_NAMES}
    env.update({
        "HOME": str(root),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CONFIG_HOME": str(root / "config"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    })
    return env


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    (tmp_path / "config" / "keyproxy").mkdir(parents=True)
    (tmp_path / "config" / "keyproxy" / "keyproxy.toml").write_text(FAST_KDF_TOML)
    pw = tmp_path / "passphrase"
    pw.write_text("correct horse battery staple\n")
    pw.chmod(0o600)
    env = child_env(tmp_path)
    env["KEYPROXY_PASSPHRASE_FILE"] = str(pw)
    yield Home(tmp_path, env, pw)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the whole suite: no secret any DevStack handled appears in any of their logs, audit trails or
    answers journals, in any encoding (raw, hex, base64, URL-encoded, JSON-escaped), failure paths included."""
    from keyproxy.audit.redact import encodings
    from keyproxy.emulator.devstack import HANDLED_SECRETS, ROOTS

    texts = []
    for root in ROOTS:
        for sub in ("logs", "state/audit"):
            folder = root / sub
            if folder.is_dir():
                texts += [p.read_text(errors="replace") for p in folder.iterdir() if p.is_file()]
        # the answers journal's lines (order answers and their requests, credentials blanked)
        texts += [p.read_text(errors="replace") for p in (root / "state").glob("answers*.journal")]
    blob = "\n".join(texts)
    leaks = []
    for secret in HANDLED_SECRETS:
        forms = set(encodings(secret)) | {line for line in secret.splitlines()
                                          if len(line) >= 16 and "-----" not in line}
        leaks += [form[:8] + "..." for form in forms if form in blob]
    result = (len(HANDLED_SECRETS), len(texts), leaks)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller adds up every worker's scan
        workeroutput["leak_scan"] = result
        return
    workers = session.config.stash.get(WORKER_SCANS_KEY, [])
    if workers:  # the controller of a parallel run scanned nothing of its own
        result = (sum(w[0] for w in workers), sum(w[1] for w in workers), [x for w in workers for x in w[2]])
    session.config.stash[LEAK_KEY] = result
    if result[2] and session.exitstatus == 0:
        session.exitstatus = 1


LEAK_KEY = pytest.StashKey[tuple]()  # type: ignore[type-arg]
WORKER_SCANS_KEY = pytest.StashKey[list]()  # type: ignore[type-arg]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[WORKER_SCANS_KEY] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # type: ignore[no-untyped-def]
    """A pytest-xdist worker finished: keep its leak scan for the controller's total."""
    scan = getattr(node, "workeroutput", {}).get("leak_scan")
    if scan is not None:
        node.config.stash[WORKER_SCANS_KEY].append(scan)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    result = config.stash.get(LEAK_KEY, None)
    if result is None:
        return
    secrets, files, leaks = result
    if leaks:
        terminalreporter.write_line(f"SECRET LEAK: {len(leaks)} secret forms found in logs/audit: {leaks[:5]}",
                                    red=True)
    else:
        terminalreporter.write_line(f"leak scan: {secrets} secrets handled by the e2e stacks, {files} log and audit "
                                    "files searched in every encoding: 0 found")
