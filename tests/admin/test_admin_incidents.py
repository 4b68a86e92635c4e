"""`list_incidents` over the admin socket: paged, and read and encoded off the event loop every bot shares."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from keyproxy.admin import server
from keyproxy.admin.client import AdminClient
from keyproxy.admin.controls import Controls
from keyproxy.errors import UsageError
from keyproxy.state import StateStore

READ_S = 0.8  # how long the slow list below holds whatever thread reads it


class Serving:
    def __init__(self, sock: Path, loop_thread: int) -> None:
        self.sock, self.loop_thread = sock, loop_thread


@contextlib.contextmanager
def serve(controls: Any, sock: Path) -> Iterator[Serving]:
    loop, ready, ident = asyncio.new_event_loop(), threading.Event(), []

    async def start() -> None:
        runner = web.AppRunner(server.build_admin_app(controls))
        await runner.setup()
        await web.UnixSite(runner, str(sock)).start()
        ident.append(threading.get_ident())
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield Serving(sock, ident[0])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class SlowControls:
    """A read that takes READ_S (a table of a million rows, a slow disk) beside a call that takes nothing."""

    def __init__(self) -> None:
        self.read_in: list[int] = []

    def list_incidents(self, **page: Any) -> list[dict[str, Any]]:
        self.read_in.append(threading.get_ident())
        time.sleep(READ_S)
        return [{"id": 1, "page": page}]

    def status(self) -> dict[str, Any]:
        return {"ok": True}


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[Serving, SlowControls]]:
    controls = SlowControls()
    with serve(controls, tmp_path / "admin.sock") as serving:
        yield serving, controls


def test_listing_incidents_does_not_hold_the_event_loop(slow: tuple[Serving, SlowControls],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """While the incidents are read and encoded, the loop answers everything else at once (before: every bot's
    request waited for the whole list: 370 ms for 20,000 incidents, ~19 s for a million)."""
    serving, controls = slow
    encoded_in: list[int] = []
    encode = getattr(server, "encode", None)
    monkeypatch.setattr(server, "encode", lambda answer: (encoded_in.append(threading.get_ident()), encode(answer))[1],
                        raising=False)  # the answer's JSON is made where this runs
    listed: list[Any] = []
    reader = threading.Thread(target=lambda: listed.append(AdminClient(serving.sock).call("list_incidents", limit=5)))
    reader.start()
    time.sleep(0.2)  # the list is being read
    t0 = time.monotonic()
    assert AdminClient(serving.sock).call("status") == {"ok": True}
    assert time.monotonic() - t0 < READ_S / 2
    reader.join(10)
    assert listed == [[{"id": 1, "page": {"limit": 5}}]]
    assert controls.read_in and serving.loop_thread not in controls.read_in
    assert encoded_in and serving.loop_thread not in encoded_in


def test_incidents_page_through_the_socket(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    for n in range(300):
        store.add_incident(float(n), "auth_failures", "ip:loopback", ["alert"], "r", [f"q{n}"], ["look"])
    controls = Controls(None, {}, "http://127.0.0.1:1", state=store)  # type: ignore[arg-type]
    with serve(controls, tmp_path / "admin.sock") as serving:
        client = AdminClient(serving.sock)
        assert [i["id"] for i in client.call("list_incidents")] == list(range(101, 301))
        assert [i["id"] for i in client.call("list_incidents", limit=5, before=100)] == [95, 96, 97, 98, 99]
        assert [i["id"] for i in client.call("list_incidents", limit=2, since=298)] == [299, 300]
        assert client.call("show_incident", incident_id=3)["evidence"] == ["q2"]
        with pytest.raises(UsageError, match="limit must be at most 1000"):
            client.call("list_incidents", limit=50_000)
