"""An order's answer is written to the answers journal before the bot sees it and learned just after: a kill -9
between the two loses nothing, the restart learns it again before serving (proxy/answer_journal.py).

The daemon is killed at that exact point by a sitecustomize on its path (only for that run): the learn queue's flush
(proxy/learn_queue.py), holding a journalled answer already relayed, sends the daemon SIGKILL before it learns
anything. Nothing of keyproxy's is replaced."""

from __future__ import annotations

import json
import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyproxy.emulator.devstack import DevStack
from tests.e2e.conftest import restart_with_fault, call, hmac_sign, now_ms, one_account_stack

KILL_IN_LEARN = '''
import os, signal
from keyproxy.proxy import learn_queue

_flush = learn_queue.LearnQueue.flush


def flush(self):
    if any(learning[6] is not None for learning in self._waiting):  # journalled answers, relayed: die before learning
        os.kill(os.getpid(), signal.SIGKILL)
    return _flush(self)


learn_queue.LearnQueue.flush = flush
'''


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    yield from one_account_stack(tmp_path_factory, "journal", enableReading=True, enableSpotAndMarginTrading=True)


def send(creds: dict[str, str], method: str, path: str, params: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    ans = call(creds["base_url"], method, path, body=hmac_sign(creds["secret"], f"{params}&timestamp={now_ms()}"),
               headers={"X-MBX-APIKEY": creds["api_key"]})
    return ans.status, ans.body


def audit_events(dev: DevStack, event: str) -> list[dict]:  # type: ignore[type-arg]
    return [doc for f in sorted(dev.audit_dir.rglob("audit-*.jsonl")) for line in f.read_text().splitlines()
            if (doc := json.loads(line)).get("event") == event]


def test_a_kill_between_an_orders_relay_and_its_bookkeeping_loses_nothing(dev: DevStack, tmp_path: Path) -> None:
    owner = dev.add_bot("journal-owner", "main", "read,trade", "--set", "max_open_orders=1")
    other = dev.add_bot("journal-other", "main", "read,trade")
    port = urllib.parse.urlsplit(dev.proxy_url).port
    restart_with_fault(dev, KILL_IN_LEARN, tmp_path)
    status, body = send(owner, "POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
                        "&quantity=0.001&price=20000&newClientOrderId=journal-1")
    assert status == 200 and body.get("orderId"), body  # the bot has its answer; the daemon died just after
    order_id = body["orderId"]
    assert dev.stop_daemon(timeout=10) == -signal.SIGKILL
    journal = next(dev.root.rglob("answers.journal"))
    assert b'"journal-owner"' in journal.read_bytes()
    dev.start_daemon(port)
    assert [e["answers"] for e in audit_events(dev, "journal.replayed")] == [1]
    # what the answer taught is all there: the order is the owner's, it rests, it counts against the owner's cap
    status, body = send(other, "DELETE", "/api/v3/order", f"symbol=BTCUSDT&orderId={order_id}")
    assert body.get("error") == "policy_denied" and "another bot" in body["message"], body
    status, body = send(other, "DELETE", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=journal-1")
    assert body.get("error") == "policy_denied", body
    status, body = send(owner, "POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
                        "&quantity=0.001&price=20000")
    assert body.get("error") == "open_orders_exceeded", body
    assert journal.read_bytes() == b""  # emptied once learned
    dev.stop_daemon()  # a clean restart learns nothing twice
    dev.start_daemon(port)
    assert [e["answers"] for e in audit_events(dev, "journal.replayed")] == [1]
    status, body = send(owner, "DELETE", "/api/v3/order", f"symbol=BTCUSDT&orderId={order_id}")
    assert status == 200, body


def test_a_signed_request_sent_again_after_a_kill_is_a_replay(dev: DevStack) -> None:
    """Session 34's crash review: the replay check lived in memory only, so an order's signed request sent again
    after a kill -9 (the daemon served again within a second) was placed a second time, well inside its 60 s
    recvWindow. Each forward line keeps the request's replay ids (digests) and their expiry, read back at start."""
    bot = dev.add_bot("journal-replayer", "main", "read,trade")
    port = urllib.parse.urlsplit(dev.proxy_url).port
    body = hmac_sign(bot["secret"], "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=20000"
                                    f"&recvWindow=60000&timestamp={now_ms()}")
    headers = {"X-MBX-APIKEY": bot["api_key"]}
    first = call(bot["base_url"], "POST", "/api/v3/order", body=body, headers=headers)
    assert first.status == 200 and first.body.get("orderId"), first.body
    again = call(bot["base_url"], "POST", "/api/v3/order", body=body, headers=headers)
    assert again.body.get("error") == "replayed_request", again.body
    assert dev.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    dev.start_daemon(port)
    start = len(dev.journal())
    after = call(bot["base_url"], "POST", "/api/v3/order", body=body, headers=headers)
    assert after.body.get("error") == "replayed_request", after.body
    # nothing placed (keyproxy's own reconciliation may read the order: a GET)
    assert [e for e in dev.journal()[start:] if e["path"] == "/api/v3/order" and e["method"] == "POST"] == []
    [line] = [e for e in audit_events(dev, "request.forward") if e.get("bot") == "journal-replayer"]
    assert len(line["replay"]) == 2 and bot["api_key"] not in json.dumps(line)  # a digest and the expiry only


def test_a_kill_refills_no_rate_limit(dev: DevStack) -> None:
    """Session 34's crash review: rate-limit buckets lived in memory and started full, so a kill -9 gave a bot with
    `orders_per_minute=2` two more orders within the minute. After a crash (the last run never stopped cleanly) a
    bucket first used starts with only what it could have refilled since the start (here 2 a minute: none within
    seconds); after a clean stop the buckets start full as always."""
    bot = dev.add_bot("journal-rated", "main", "read,trade", "--set", "orders_per_minute=2")
    port = urllib.parse.urlsplit(dev.proxy_url).port
    order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=20000"
    dev.stop_daemon()
    dev.start_daemon(port)  # a clean stop: full buckets
    statuses = [send(bot, "POST", "/api/v3/order", order)[0] for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
    assert dev.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    dev.start_daemon(port)
    status, body = send(bot, "POST", "/api/v3/order", order)
    assert (status, body.get("error")) == (429, "rate_limited"), body


def test_a_websocket_session_logon_sent_again_after_a_kill_is_a_replay(dev: DevStack) -> None:
    """The regression review of the fix above: Binance's `session.logon` is answered by keyproxy itself (no forward
    line), so its replay after a kill opened a session that placed orders with unsigned frames. Its answer's line
    keeps the replay ids too."""
    import asyncio
    import base64

    import aiohttp
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    creds = dev.add_bot("journal-logon", "main", "read,trade", "--key-type", "ed25519")
    key = load_pem_private_key(creds["secret"].encode(), None)
    params: dict[str, object] = {"apiKey": creds["api_key"], "timestamp": now_ms(), "recvWindow": 60000}
    signing = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = base64.b64encode(key.sign(signing.encode())).decode()  # type: ignore[call-arg]
    url = creds["base_url"].replace("http://", "ws://") + "/ws-api/v3"

    async def logon() -> dict:  # type: ignore[type-arg]
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"id": 1, "method": "session.logon", "params": params}))
            return json.loads((await ws.receive(timeout=10)).data)  # type: ignore[no-any-return]
    assert asyncio.run(logon())["status"] == 200
    assert asyncio.run(logon()).get("keyproxy_error") == "replayed_request"
    port = urllib.parse.urlsplit(dev.proxy_url).port
    assert dev.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    dev.start_daemon(port)
    assert asyncio.run(logon()).get("keyproxy_error") == "replayed_request"


def test_a_start_that_fails_before_serving_is_not_taken_for_a_crash(dev: DevStack) -> None:
    """The run marker is written once the daemon serves: a start refused before it (its port taken) left "running"
    behind, and the next start after a clean stop throttled every bot as after a crash (the regression review)."""
    import socket

    bot = dev.add_bot("journal-restarted", "main", "read,trade", "--set", "orders_per_minute=2")
    port = urllib.parse.urlsplit(dev.proxy_url).port
    assert port is not None
    dev.stop_daemon()  # clean
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(RuntimeError, match="before it was ready"):
            dev.start_daemon(port)
        dev._procs.pop("daemon").wait(10)
    dev.start_daemon(port)
    order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=20000"
    assert [send(bot, "POST", "/api/v3/order", order)[0] for _ in range(3)] == [200, 200, 429]
