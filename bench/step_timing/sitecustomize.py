"""Loaded by the daemon a bench starts when `bench/step_timing.py` runs it (never by keyproxy itself): wraps the
methods named in KP_STEP_TIMING with a timer and writes each one's median over the last 4,000 calls to
KP_STEP_TIMING_OUT every 4,000 calls of the first one. Timing inside the daemon under load shows what each step
costs where it runs (caches cold between a benchmark's requests), which a profiler's shares do not."""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import os
import statistics
import sys
import time
from typing import Any

_SPEC = os.environ.get("KP_STEP_TIMING", "")
_OUT = os.environ.get("KP_STEP_TIMING_OUT", "")


def _install() -> None:
    samples: dict[str, list[int]] = {}
    order: list[str] = []

    def wrap(module: str, qualname: str) -> None:
        owner: Any = importlib.import_module(module)
        *path, name = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        static = isinstance(owner.__dict__.get(name), staticmethod) if isinstance(owner, type) else False
        fn = getattr(owner, name)
        samples[qualname] = []
        order.append(qualname)

        def note(start: int) -> None:
            mine = samples[qualname]
            mine.append(time.perf_counter_ns() - start)
            if qualname == order[0] and len(mine) % 4000 == 0:
                with open(_OUT, "a") as f:
                    f.write("\t".join(f"{q}={statistics.median(samples[q][-4000:]) / 1000:.1f}"
                                      for q in order if samples[q]) + "\n")

        if inspect.iscoroutinefunction(fn):  # a coroutine's wall time, its awaits included
            @functools.wraps(fn)
            async def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter_ns()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    note(start)
        else:
            @functools.wraps(fn)
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter_ns()
                try:
                    return fn(*args, **kwargs)
                finally:
                    note(start)

        setattr(owner, name, staticmethod(timed) if static else timed)

    for item in _SPEC.split(","):
        module, _, qualname = item.strip().partition(":")
        wrap(module, qualname)


if _SPEC and _OUT:
    _import = builtins.__import__
    _done = [False]

    def _hook(name: str, *args: Any, **kwargs: Any) -> Any:
        module = _import(name, *args, **kwargs)
        if not _done[0] and "keyproxy.daemon" in sys.modules:  # the daemon is starting: its modules are importable
            _done[0] = True
            builtins.__import__ = _import
            try:
                _install()
            except Exception as e:  # noqa: BLE001 - a bench aid: say so and let the daemon run untimed
                sys.stderr.write(f"step timing not installed: {e!r}\n")
        return module

    builtins.__import__ = _hook
