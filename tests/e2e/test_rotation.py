"""Staged key rotation: checked at the exchange, switched under load with zero failed requests, rolled back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at


@pytest.fixture(scope="module")
def rot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevStack, list]]:  # type: ignore[type-arg]
    # requests in a loop through a rekey: more weight than Binance's budget allows a minute, and the emulator
    # does not enforce it here; the governor is tested in test_governor*.py
    dev = DevStack(tmp_path_factory.mktemp("rotation"), extra_config="[governor]\nenabled = false\n")
    keys = [new_real_key(), new_real_key(), new_real_key()]  # old, new, and a spare for a later rotation
    for key in keys:
        key.emulated["account"] = "main"  # one exchange account: every key sees its orders
    unknown = new_real_key()  # never registered at the exchange
    try:
        dev.start_emulator(keys)
        dev.init()
        dev.add_account("main", keys[0])
        dev.start_daemon()
        yield dev, [*keys, unknown]
    finally:
        dev.close()


def test_rotation_under_load_has_zero_failed_requests(rot) -> None:  # type: ignore[no-untyped-def]
    dev, keys = rot
    creds = dev.add_bot("looper", "main", "read,trade")
    ex = point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                     "options": {"fetchCurrencies": False, "fetchMargins": False}}), creds["base_url"])
    ex.load_markets()
    stop, errors, done = threading.Event(), [], [0]

    def loop() -> None:
        # an order rests, then is cancelled: across the switch, one placed with the old key is cancelled
        # with the new one, as at Binance where both keys see the account's orders
        while not stop.is_set():
            try:
                order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
                ex.fetch_balance()
                ex.cancel_order(order["id"], "BTC/USDT")
                done[0] += 1
            except Exception as e:  # any failure is a failed request
                errors.append(repr(e))

    start = len(dev.journal())
    worker = threading.Thread(target=loop)
    worker.start()
    try:
        while done[0] < 5:
            pass
        out = dev.cli("key", "rotate", "main", input=json.dumps(keys[1].credentials))
        assert "rotated account main to key version 2" in out.stdout
        target = done[0] + 5
        while done[0] < target and not errors:
            pass
    finally:
        stop.set()
        worker.join(30)
    assert errors == []
    used = [e["api_key"] for e in dev.journal()[start:] if e["path"] == "/api/v3/order"]
    old, new = keys[0].credentials["api_key"], keys[1].credentials["api_key"]
    assert used[0] == old and used[-1] == new and set(used) <= {old, new}
    switch = used.index(new)
    assert all(k == old for k in used[:switch]) and all(k == new for k in used[switch:])  # never a mix
    assert all(e["signature_verified"] for e in dev.journal()[start:] if e["path"] == "/api/v3/order")


def test_a_key_the_exchange_refuses_is_not_activated(rot) -> None:  # type: ignore[no-untyped-def]
    dev, keys = rot
    before = json.loads(dev.cli("key", "show", "main", "--json").stdout)
    out = dev.cli("key", "rotate", "main", input=json.dumps(keys[3].credentials), check=False)
    assert out.returncode == 1 and "not activated" in out.stderr and "-2015" in out.stderr
    assert json.loads(dev.cli("key", "show", "main", "--json").stdout)["version"] == before["version"]


def test_rollback_and_retire(rot) -> None:  # type: ignore[no-untyped-def]
    dev, keys = rot
    creds = dev.add_bot("checker", "main", "read")
    bot = point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                      "options": {"fetchCurrencies": False, "fetchMargins": False}}), creds["base_url"])
    assert "uses key version 1 again" in dev.cli("key", "rollback", "main").stdout
    shown = json.loads(dev.cli("key", "show", "main", "--json").stdout)
    assert shown["version"] == 1
    start = len(dev.journal())
    bot.fetch_balance()
    assert dev.journal()[start:][-1]["api_key"] == keys[0].credentials["api_key"]
    assert "forgot 1 previous key version" in dev.cli("key", "retire", "main").stdout
    refused = dev.cli("key", "rollback", "main", check=False)
    assert refused.returncode == 1 and "no previous key version" in refused.stderr


def test_rotation_with_the_daemon_stopped(rot) -> None:  # type: ignore[no-untyped-def]
    dev, keys = rot
    dev.stop_daemon()
    try:
        out = dev.cli("key", "rotate", "main", input=json.dumps(keys[2].credentials))
        assert "rotated account main" in out.stdout
        audit = [json.loads(x) for f in sorted(dev.audit_dir.glob("audit-*.jsonl")) for x in f.read_text().splitlines()]
        rotations = [a for a in audit if a.get("op") == "key.rotate" and a["result"] == "ok"]
        assert len(rotations) == 2 and rotations[-1]["verified"].startswith("HTTP 200")
    finally:
        dev.start_daemon()


def _balance(creds: dict) -> tuple[int, dict]:  # type: ignore[type-arg]
    import time

    from tests.e2e.conftest import call, hmac_sign

    # microsecond timestamps: two identical requests in one millisecond would be one request replayed
    ans = call(creds["base_url"], "GET", "/api/v3/account",
               hmac_sign(creds["secret"], f"timestamp={time.time_ns() // 1000}"),
               headers={"X-MBX-APIKEY": creds["api_key"]})
    return ans.status, ans.body


def test_bot_rotation_keeps_the_old_credential_for_the_grace_period(rot) -> None:  # type: ignore[no-untyped-def]
    import time

    dev, _ = rot
    old = dev.add_bot("rotbot", "main", "read")
    new = json.loads(dev.cli("bot", "rotate", "rotbot", "--grace", "2s").stdout)
    assert new["api_key"] != old["api_key"] and new["previous_valid_until"]
    assert _balance(old)[0] == 200 and _balance(new)[0] == 200  # both during the grace period
    time.sleep(2.2)
    status, body = _balance(old)
    assert (status, body["error"]) == (401, "expired_credential")
    assert _balance(new)[0] == 200


def test_bot_ttl_and_renew(rot) -> None:  # type: ignore[no-untyped-def]
    import time

    dev, _ = rot
    creds = dev.add_bot("shortlived", "main", "read", "--ttl", "2s")
    assert creds["expires_at"] and _balance(creds)[0] == 200
    time.sleep(2.2)
    assert _balance(creds)[1]["error"] == "expired_credential"
    out = dev.cli("bot", "renew", "shortlived", "--ttl", "1h")
    assert "expires" in out.stdout and _balance(creds)[0] == 200


def test_master_key_rekey_while_running_fails_no_request(rot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dev, _ = rot
    creds = dev.add_bot("duringrekey", "main", "read")
    new_pass = tmp_path / "new-passphrase"
    new_pass.write_text("a new master passphrase\n")
    new_pass.chmod(0o600)
    results: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            results.append(_balance(creds)[0])

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        out = dev.cli("vault", "rekey", "--new-passphrase-file", str(new_pass))
        assert "generation 2" in out.stdout
    finally:
        stop.set()
        worker.join(30)
    assert results and set(results) == {200}
    # the old passphrase no longer opens the vault; the new one does
    dev.env["KEYPROXY_PASSPHRASE_FILE"] = str(new_pass)
    assert json.loads(dev.cli("vault", "status", "--json").stdout)["master_generation"] == 2
