"""The daemon's event loop (`serve --loop`): asyncio's own by default, uvloop (libuv) on request.

Measured side by side on this project's 2-core VM (docs/performance.md), uvloop gave keyproxy no gain:
its time goes to its own Python work per request, not to the loop. `auto` takes uvloop where it imports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from keyproxy.errors import UsageError

CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """(a loop factory for `asyncio.Runner`, its name); `auto` is uvloop when it imports, else asyncio."""
    if choice == "asyncio":
        return None, "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UsageError("--loop uvloop: uvloop is not installed (pip install uvloop; Linux and macOS)") from None
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"
