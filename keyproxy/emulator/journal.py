"""Request journal: what the emulated exchange actually received.

Tests and benchmarks assert on the journal (e.g. "every private request
reached the exchange with a signature that verified"), so it records the
request exactly as it arrived on the wire, not as a client meant it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class Journal:
    """In-memory list of request records, optionally mirrored as JSON lines."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._entries: list[dict[str, Any]] = []
        self._path = Path(path) if path is not None else None
        self._seq = 0

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one record (a ``seq`` number is added) and return it."""
        self._seq += 1
        entry = {"seq": self._seq, **entry}
        self._entries.append(entry)
        if self._path is not None:
            with self._path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """A copy of all records, oldest first."""
        return list(self._entries)

    def clear(self) -> None:
        """Forget the in-memory records (the JSON-lines file is an append-only log)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
