"""What the WebSocket end-to-end tests share: one exchange's stack (emulator, vault with one account,
daemon) and the emulator journal's WebSocket frames."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from keyproxy.emulator.devstack import DevStack, new_real_key


@contextmanager
def exchange_stack(root: Path, account: str, exchange: str = "binance", key_type: str = "hmac",
                   extra_config: str = "") -> Iterator[DevStack]:
    """A running stack whose one account (`account`) holds a fresh real key, kept as `stack.real_key`."""
    stack = DevStack(root, extra_config=extra_config)
    key = new_real_key(key_type, exchange=exchange)
    try:
        stack.serve_account(account, key)
        stack.real_key = key  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.close()


def ws_entries(dev: DevStack, start: int) -> list[dict[str, Any]]:
    """The frames the emulator received on WebSockets since journal entry `start`."""
    return [e for e in dev.journal()[start:] if e.get("transport") == "ws"]
