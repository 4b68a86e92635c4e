from __future__ import annotations

from pathlib import Path

import pytest

from keyproxy.vault import FileSource, Vault
from keyproxy.vault.master import write_key_file


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    write_key_file(path)
    return path


@pytest.fixture
def vault(tmp_path: Path, key_file: Path) -> Vault:
    v = Vault.create(tmp_path / "state" / "vault.db", FileSource(key_file))
    yield v
    v.close()
