"""Anomaly rules that act, end to end: pattern -> action within one request -> nothing more upstream ->
audit trail, /metrics and an incident show it -> a restart keeps it -> restore lifts it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import account_call, call, hmac_sign, now_ms

CONFIG = """
[anomaly.auth_failures]
threshold = 5
window_seconds = 60
actions = ["suspend_bot"]

[anomaly.deny_burst]
threshold = 4
window_seconds = 60
actions = ["suspend_bot"]
"""


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("anomaly"), extra_config=CONFIG)
    key = new_real_key()
    unknown_to_exchange = new_real_key()  # a real key the exchange does not (or no longer) know
    try:
        dev.start_emulator([key])
        dev.init()
        dev.add_account("main", key)
        dev.add_account("stale", unknown_to_exchange)
        dev.start_daemon()
        yield dev
    finally:
        dev.close()


def incidents(dev: DevStack) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(dev.cli("incidents", "list", "--json").stdout)


def audit_events(dev: DevStack, event: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for f in sorted(dev.audit_dir.glob("audit-*.jsonl")) for x in f.read_text().splitlines()
            if f'"event":"{event}"' in x]


def metric(dev: DevStack, line_start: str) -> float:
    return sum(float(x.rsplit(" ", 1)[1]) for x in dev.metrics().splitlines() if x.startswith(line_start))


def test_auth_failures_count_against_the_source_address_never_the_named_bot(watched: DevStack) -> None:
    """Junk signatures prove nothing about the bot whose key id they carry (anyone may hold a key id):
    they count against the address they came from, and the bot keeps working (issue 14 item 10)."""
    creds = watched.add_bot("guessed", "main", "read")
    assert account_call(creds)[0] == 200
    codes = [account_call(creds, secret="guess")[1]["error"] for _ in range(5)]
    assert codes == ["bad_signature"] * 5  # the 5th completes the finding
    assert account_call(creds)[0] == 200
    [incident] = [i for i in incidents(watched) if i["subject"] == "ip:loopback" and i["rule"] == "auth_failures"]
    assert len(incident["evidence"]) == 5
    assert not any(i["subject"] == "bot:guessed" for i in incidents(watched))
    assert metric(watched, 'keyproxy_anomalies_total{action="suspend_bot",rule="auth_failures"}') == 0


def test_foreign_ip_suspends_a_leaked_credential(watched: DevStack) -> None:
    creds = watched.add_bot("leaky", "main", "read")
    assert account_call(creds)[0] == 200
    assert account_call(creds, source="127.0.0.2")[1]["error"] == "ip_denied"
    start = len(watched.journal())
    status, body = account_call(creds)  # from its own address too: the credential leaked
    assert (status, body["error"]) == (403, "bot_suspended")
    assert watched.journal()[start:] == []
    [incident] = [i for i in incidents(watched) if i["subject"] == "bot:leaky"]
    assert incident["rule"] == "foreign_ip" and incident["actions"] == ["suspend_bot"]
    assert "bot restore leaky" in " ".join(incident["next_steps"])
    shown = watched.cli("incidents", "show", str(incident["id"])).stdout
    assert "foreign_ip" in shown and "next:" in shown
    assert any(a["rule"] == "foreign_ip" and a["subject"] == "bot:leaky" for a in audit_events(watched, "anomaly"))
    assert metric(watched, 'keyproxy_anomalies_total{action="suspend_bot",rule="foreign_ip"}') >= 1
    assert "SUSPENDED bot leaky" in watched.cli("status").stdout

    watched.stop_daemon()
    port = int(watched.proxy_url.rsplit(":", 1)[1])  # type: ignore[union-attr]
    watched.start_daemon(port)
    assert account_call(creds)[1]["error"] == "bot_suspended"  # a restart keeps it
    watched.cli("bot", "restore", "leaky")
    assert account_call(creds)[0] == 200  # restore lifts it
    restores = [a for a in audit_events(watched, "admin") if a.get("op") == "bot.restore"]
    assert restores and restores[-1]["result"] == "ok" and "peer_uid" in restores[-1]


def test_forbidden_scope_suspends_a_trade_bot_reaching_for_withdrawals(watched: DevStack) -> None:
    creds = watched.add_bot("greedy", "main", "read,trade")
    body = hmac_sign(creds["secret"], f"coin=USDT&address=0xabc&network=BSC&amount=10&timestamp={now_ms()}")
    ans = call(creds["base_url"], "POST", "/sapi/v1/capital/withdraw/apply", body=body,
               headers={"X-MBX-APIKEY": creds["api_key"]})
    assert ans.body["error"] == "scope_denied"
    assert account_call(creds)[1]["error"] == "bot_suspended"
    assert any(i["rule"] == "forbidden_scope" for i in incidents(watched))


def test_deny_burst_suspends_a_bot_gone_wrong(watched: DevStack) -> None:
    creds = watched.add_bot("wild", "main", "read,trade", "--set", "max_order_notional=10")
    start = len(watched.journal())
    for i in range(4):
        body = hmac_sign(creds["secret"], f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1"
                                          f"&price={20000 + i}&timestamp={now_ms()}")
        ans = call(creds["base_url"], "POST", "/api/v3/order", body=body, headers={"X-MBX-APIKEY": creds["api_key"]})
        assert ans.body["error"] == "notional_exceeded"
    assert account_call(creds)[1]["error"] == "bot_suspended"
    assert watched.journal()[start:] == []


def test_exchange_rejecting_the_key_quarantines_it(watched: DevStack) -> None:
    creds = watched.add_bot("onstale", "stale", "read")
    other = watched.add_bot("alsostale", "stale", "read")
    status, body = account_call(creds)
    assert status == 401 and body.get("code") == -2015  # the exchange's own answer, relayed unchanged
    start = len(watched.journal())
    assert account_call(other)[1]["error"] == "key_quarantined"  # no bot of that account uses the key now
    assert watched.journal()[start:] == []
    assert "QUARANTINED key of account stale" in watched.cli("status").stdout
    assert metric(watched, 'keyproxy_key_actions_total{account="stale",action="quarantine"}') == 1
    watched.cli("key", "restore", "stale")
    assert account_call(other)[0] == 401  # restored: requests reach the exchange again (which still refuses)


def test_steady_bot_triggers_nothing(watched: DevStack) -> None:
    creds = watched.add_bot("steady", "main", "read,trade")
    for _ in range(30):
        assert account_call(creds)[0] == 200
    # about this bot (an earlier test's last finding may still be being recorded)
    assert [i for i in incidents(watched) if i["subject"] == "bot:steady"] == []


def test_notional_spike_and_new_withdrawal_address_alert(watched: DevStack) -> None:
    trader = watched.add_bot("spiky", "main", "read,trade")
    for i, qty in enumerate(["0.001"] * 5 + ["0.1"]):
        order = hmac_sign(trader["secret"], f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity={qty}"
                                            f"&price={20000 + i}&timestamp={now_ms()}")
        call(trader["base_url"], "POST", "/api/v3/order", body=order, headers={"X-MBX-APIKEY": trader["api_key"]})
    assert ("notional_spike", "bot:spiky") in {(i["rule"], i["subject"]) for i in incidents(watched)}
    assert account_call(trader)[0] == 200  # an alert only: the bot keeps working

    payer = watched.add_bot("payer", "main", "read,withdraw")
    body = hmac_sign(payer["secret"], f"coin=USDT&address=0xnew&network=BSC&amount=1&timestamp={now_ms()}")
    ans = call(payer["base_url"], "POST", "/sapi/v1/capital/withdraw/apply", body=body,
               headers={"X-MBX-APIKEY": payer["api_key"]})
    found = {(i["rule"], i["subject"]) for i in incidents(watched)}
    assert ("new_withdrawal_address", "bot:payer") in found
    # the emulated key has no withdrawal permission: Binance answers -1002, a permission this key lacks,
    # which is the bot's miss (deny_burst), not a reason to quarantine the key every bot uses
    assert ans.status == 401 and ("exchange_rejects_key", "account:main") not in found
    assert account_call(trader)[0] == 200


def test_revoke_key_deletes_a_bybit_key_at_the_exchange(tmp_path_factory: pytest.TempPathFactory) -> None:
    """revoke_key: quarantine at once, then the exchange deletes the key (Bybit offers /v5/user/delete-api);
    a revoked key cannot be restored, only rotated."""
    import time as _time

    dev = DevStack(tmp_path_factory.mktemp("revoke"),
                   extra_config='[anomaly.forbidden_scope]\nactions = ["revoke_key"]\n')
    key = new_real_key(exchange="bybit")
    try:
        dev.serve_account("bb", key)
        creds = dev.add_bot("bbtrader", "bb", "read,trade")
        body = '{"coin":"USDT","chain":"ETH","address":"0xabc","amount":"10"}'
        ts = str(now_ms())
        import hashlib as _h
        import hmac as _hm

        signed = (ts + creds["api_key"] + "5000" + body).encode()
        sign = _hm.new(creds["secret"].encode(), signed, _h.sha256).hexdigest()
        ans = call(creds["base_url"], "POST", "/v5/asset/withdraw/create", body=body, headers={
            "X-BAPI-API-KEY": creds["api_key"], "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": "5000",
            "X-BAPI-SIGN": sign, "Content-Type": "application/json"})
        assert (ans.body.get("keyproxy_error") or ans.body.get("error")) == "scope_denied"
        deadline = _time.monotonic() + 10
        while _time.monotonic() < deadline:
            accounts = json.loads(dev.cli("key", "list", "--json").stdout)
            if accounts[0]["status"] == "revoked":
                break
            _time.sleep(0.2)
        assert accounts[0]["status"] == "revoked"
        deletes = [e for e in dev.journal() if e["path"] == "/v5/user/delete-api"]
        assert len(deletes) == 1 and deletes[0]["signature_verified"]
        assert deletes[0]["api_key"] == key.credentials["api_key"]
        refused = dev.cli("key", "restore", "bb", check=False)
        assert refused.returncode == 1 and "rotate" in refused.stderr
        assert any(a.get("result") == "revoked at the exchange" for a in audit_events(dev, "key.revoke"))
    finally:
        dev.close()


def test_rate_spike_throttles_and_off_hours_alerts(tmp_path_factory: pytest.TempPathFactory) -> None:
    """rate_spike with a short learning period (config), then a tenfold burst: throttled to 1 request/s;
    off_hours: trading attempts outside the bot's active hours raise an incident."""
    import time as _time

    config = ("[anomaly.rate_spike]\nthreshold = 10\nwindow_seconds = 1\nlearn_seconds = 2\n"
              "[anomaly.off_hours]\nthreshold = 2\n")
    dev = DevStack(tmp_path_factory.mktemp("spike"), extra_config=config)
    key = new_real_key()
    try:
        dev.serve_account("main", key)
        creds = dev.add_bot("surging", "main", "read")
        end = _time.monotonic() + 3.5
        while _time.monotonic() < end:  # a steady baseline of about 2 requests per second
            assert account_call(creds)[0] == 200
            _time.sleep(0.5)
        statuses = [account_call(creds)[0] for _ in range(120)]  # the burst
        assert 429 in statuses, statuses
        [incident] = [i for i in incidents(dev) if i["rule"] == "rate_spike"]
        assert incident["actions"] == ["throttle"] and "THROTTLED bot surging" in dev.cli("status").stdout

        now_h = int(_time.strftime("%H", _time.gmtime()))
        window = f"{(now_h + 3) % 24:02d}:00-{(now_h + 4) % 24:02d}:00"  # hours that are not now
        sleeper = dev.add_bot("sleeper", "main", "read,trade", "--set", f"active_hours={window}")
        for _ in range(2):
            body = hmac_sign(sleeper["secret"], f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                                                f"&price=20000&timestamp={now_ms()}")
            ans = call(sleeper["base_url"], "POST", "/api/v3/order", body=body,
                       headers={"X-MBX-APIKEY": sleeper["api_key"]})
            assert ans.body["error"] == "outside_hours"
        assert any(i["rule"] == "off_hours" and i["subject"] == "bot:sleeper" for i in incidents(dev))
    finally:
        dev.close()
