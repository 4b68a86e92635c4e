"""Orders decided while another request holds the account's nonce turn (Kraken REST: one request at a time, in
nonce order) count against the caps of the decisions after them (session 18's fifth review: each was counted on
its way only once it had the turn, so five orders decided during a slow read all passed max_open_orders=1)."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e import delay_upstream


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("nonce-turn-race"))
    key = new_real_key(exchange="kraken")
    try:
        stack.start_emulator([key])
        real = stack.emulator_url
        stack.emulator_url = delay_upstream.start(real, "/0/private/Balance", 0.5)  # Balance answered 0.5 s late
        stack.init()
        stack.add_account("kr", key)
        stack.emulator_url = real
        stack.start_daemon()
        yield stack
    finally:
        stack.close()


def post(base: str, token: str, method: str, body: str) -> bytes:
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("POST", u.path.rstrip("/") + f"/0/private/{method}", body=body,
                 headers={"X-Keyproxy-Token": token, "Content-Type": "application/x-www-form-urlencoded"})
    raw = conn.getresponse().read()
    conn.close()
    return raw


def test_orders_decided_while_the_nonce_turn_is_held_count_against_the_cap(dev: DevStack) -> None:
    creds = dev.add_bot("krrace", "kr", "read,trade", "--mode", "token", "--set", "max_open_orders=1")
    reader = dev.add_bot("krreader", "kr", "read", "--mode", "token")
    start = len(dev.journal())
    holder = threading.Thread(target=post, args=(reader["base_url"], reader["token"], "Balance", ""))
    holder.start()
    time.sleep(0.15)  # the read holds the account's nonce turn now
    answers: list[bytes] = []
    order = "pair=XBTUSD&type=buy&ordertype=limit&price=20000&volume=0.001"
    threads = [threading.Thread(target=lambda: answers.append(post(creds["base_url"], creds["token"], "AddOrder",
                                                                   order))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in [*threads, holder]:
        t.join()
    added = [e for e in dev.journal()[start:] if e["path"] == "/0/private/AddOrder"]
    assert len(added) == 1 and sum(b"open_orders_exceeded" in a for a in answers) == 4, answers
