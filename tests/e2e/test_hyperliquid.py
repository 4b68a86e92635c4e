"""Hyperliquid through keyproxy: unmodified ccxt and hyperliquid-python-sdk hold only a virtual agent key.

The emulator recovers the signer of every action itself (emulator/hyperliquid_auth.py) and accepts only
the account's master or an agent it approved: an action that reached it from a bot was re-signed with
the real key. Three bots on one real key from three processes, across a daemon restart, never meet a
nonce error; what a bot may not do is refused before anything goes upstream.
"""

from __future__ import annotations

import json
import time
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from keyproxy.emulator.devstack import DevStack, new_real_key

ccxt = pytest.importorskip("ccxt")
pytest.importorskip("hyperliquid")


@pytest.fixture(scope="module")
def hl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("hyperliquid"))
    key = new_real_key("eth", exchange="hyperliquid")
    try:
        dev.serve_account("hl", key)
        dev.real_key = key  # type: ignore[attr-defined]
        dev.real_signer = Account.from_key(key.credentials["private_key"]).address.lower()  # type: ignore[attr-defined]
        yield dev
    finally:
        dev.close()


def _exchange_entries(dev: DevStack, start: int) -> list[dict[str, Any]]:
    return [e for e in dev.journal()[start:] if e.get("path") == "/exchange"]


def _ccxt(creds: dict[str, Any]) -> Any:
    ex = ccxt.hyperliquid({"walletAddress": creds["wallet_address"], "privateKey": creds["private_key"]})
    for name in ex.urls["api"]:
        ex.urls["api"][name] = creds["base_url"]
    return ex


def _sdk(creds: dict[str, Any]) -> Any:
    from hyperliquid.exchange import Exchange

    return Exchange(Account.from_key(creds["private_key"]), creds["base_url"], account_address=creds["wallet_address"])


def test_ccxt_trades_with_a_virtual_agent_key(hl: DevStack) -> None:
    creds = hl.add_bot("ccxt-bot", "hl", "read,trade")
    start = len(hl.journal())
    ex = _ccxt(creds)
    ex.load_markets()
    assert "BTC/USDC:USDC" in ex.markets
    assert ex.fetch_balance()["total"]["USDC"] == 100000
    order = ex.create_order("BTC/USDC:USDC", "limit", "buy", 0.001, 60000)
    assert [o["id"] for o in ex.fetch_open_orders()] == [order["id"]]
    assert ex.cancel_order(order["id"], "BTC/USDC:USDC")["info"] == "success"
    assert ex.fetch_open_orders() == []
    sent = _exchange_entries(hl, start)
    assert [json.loads(e["body"])["action"]["type"] for e in sent] == ["order", "cancel"]  # ccxt's fee approval stayed
    assert all(e["api_key"] == hl.real_signer and e["signature_verified"] for e in sent)  # type: ignore[attr-defined]
    assert creds["agent_address"] not in json.dumps(hl.journal()[start:]).lower()


def test_the_official_sdk_trades_with_a_virtual_agent_key(hl: DevStack) -> None:
    from hyperliquid.info import Info

    creds = hl.add_bot("sdk-bot", "hl", "read,trade")
    start = len(hl.journal())
    exchange = _sdk(creds)
    placed = exchange.order("ETH", True, 0.01, 3000, {"limit": {"tif": "Gtc"}})
    oid = placed["response"]["data"]["statuses"][0]["resting"]["oid"]
    info = Info(creds["base_url"], skip_ws=True)
    assert [o["oid"] for o in info.open_orders(creds["wallet_address"])] == [oid]
    assert float(info.user_state(creds["wallet_address"])["marginSummary"]["accountValue"]) == 100000
    assert exchange.cancel("ETH", oid)["response"]["data"]["statuses"] == ["success"]
    assert exchange.update_leverage(10, "ETH")["status"] == "ok"
    sent = _exchange_entries(hl, start)
    assert len(sent) == 3 and all(e["api_key"] == hl.real_signer for e in sent)  # type: ignore[attr-defined]



def test_a_bot_cancels_only_its_own_orders(hl: DevStack) -> None:
    """Bots behind one Hyperliquid key share one account: a `cancel` naming another bot's oid, a `cancelByCloid`
    naming its cloid (recorded from the order's request: the answer does not echo it) and a `scheduleCancel` (every
    order, at a time) while another bot's order rests are refused, nothing sent; the bot's own it cancels."""
    from hyperliquid.utils.error import ClientError
    from hyperliquid.utils.types import Cloid

    victim, attacker = _sdk(hl.add_bot("hl-cx-victim", "hl", "read,trade")), \
        _sdk(hl.add_bot("hl-cx-attacker", "hl", "read,trade"))
    cloid = Cloid.from_str("0x" + "ab" * 16)
    placed = victim.order("ETH", True, 0.01, 3000, {"limit": {"tif": "Gtc"}}, cloid=cloid)
    assert placed["status"] == "ok", placed
    oid = placed["response"]["data"]["statuses"][0]["resting"]["oid"]
    start = len(hl.journal())
    for attack in (lambda: attacker.cancel("ETH", oid), lambda: attacker.cancel_by_cloid("ETH", cloid),
                   lambda: attacker.schedule_cancel(int(time.time() * 1000) + 60_000)):
        with pytest.raises(ClientError) as refused:
            attack()
        assert refused.value.error_code == "policy_denied", refused.value
    assert _exchange_entries(hl, start) == []
    own = attacker.order("ETH", True, 0.01, 2999, {"limit": {"tif": "Gtc"}})
    own_oid = own["response"]["data"]["statuses"][0]["resting"]["oid"]
    assert attacker.cancel("ETH", own_oid)["response"]["data"]["statuses"] == ["success"]
    assert victim.cancel("ETH", oid)["response"]["data"]["statuses"] == ["success"]  # by oid: the book learns it

BOT = """
import json, sys
from eth_account import Account
from hyperliquid.exchange import Exchange
creds = json.loads(sys.argv[1])
exchange = Exchange(Account.from_key(creds["private_key"]), creds["base_url"], account_address=creds["wallet_address"])
errors = []
for i in range(int(sys.argv[2])):
    answer = exchange.order("SOL", True, 1, 100 + i, {"limit": {"tif": "Gtc"}})
    status = answer["response"]["data"]["statuses"][0] if answer["status"] == "ok" else answer
    if "resting" not in status:
        errors.append(status)
        continue
    answer = exchange.cancel("SOL", status["resting"]["oid"])
    if answer["status"] != "ok" or answer["response"]["data"]["statuses"] != ["success"]:
        errors.append(answer)
print(json.dumps(errors))
"""


def _round(dev: DevStack, bots: list[dict[str, Any]], orders: int) -> list[Any]:
    procs = [subprocess.Popen([sys.executable, "-c", BOT, json.dumps(b), str(orders)], stdout=subprocess.PIPE,
                              text=True, env=dev.env) for b in bots]
    errors: list[Any] = []
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0
        errors += json.loads(out)
    return errors


def test_three_bots_on_one_real_key_across_a_restart_meet_no_nonce_error(hl: DevStack) -> None:
    bots = [hl.add_bot(f"proc{i}", "hl", "read,trade") for i in range(3)]
    start = len(hl.journal())
    assert _round(hl, bots, 6) == []
    hl.stop_daemon()
    hl.start_daemon(int(hl.proxy_url.rsplit(":", 1)[1]))  # type: ignore[union-attr]
    assert _round(hl, bots, 6) == []
    sent = _exchange_entries(hl, start)
    assert len(sent) == 72 and not [e for e in sent if e.get("error_code")]
    nonces = [json.loads(e["body"])["nonce"] for e in sent]
    assert len(set(nonces)) == 72  # keyproxy's own sequence: one signer, no nonce twice


def _post(dev: DevStack, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{dev.proxy_url}/hl/exchange", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_what_a_bot_may_not_do_never_goes_upstream(hl: DevStack) -> None:
    from hyperliquid.utils.error import ClientError

    capped = hl.add_bot("capped", "hl", "read,trade", "--set", "max_order_notional=100")
    start = len(hl.journal())
    with pytest.raises(ClientError) as refused:
        _sdk(capped).order("BTC", True, 0.01, 60000, {"limit": {"tif": "Gtc"}})  # 600 USDC
    assert refused.value.error_code == "notional_exceeded"
    with pytest.raises(ClientError) as refused:
        _sdk(capped).withdraw_from_bridge(5.0, "0x5e9ee1089755c3435139848e47e6635505d5a13a")
    assert refused.value.error_code == "scope_denied"
    levered = hl.add_bot("levered", "hl", "read,trade", "--set", "max_leverage=5")
    with pytest.raises(ClientError) as refused:
        _sdk(levered).update_leverage(10, "BTC")
    assert refused.value.error_code == "leverage_exceeded"
    assert _sdk(levered).update_leverage(5, "BTC")["status"] == "ok"
    stranger = {**capped, "private_key": "0x" + bytes(Account.create().key).hex()}
    with pytest.raises(ClientError) as refused:
        _sdk(stranger).order("BTC", True, 0.0001, 60000, {"limit": {"tif": "Gtc"}})
    assert refused.value.error_code == "unknown_bot"
    for body, code in ((b"{not json", "bad_request"), (b'{"action": {"type": "evmUserModify"}, "nonce": 1}',
                                                        "unknown_endpoint")):
        status, answer = _post(hl, body)
        assert (status, answer["error"], answer["status"]) == (400, code, "err")
    assert [json.loads(e["body"])["action"]["type"] for e in _exchange_entries(hl, start)] == ["updateLeverage"]


def test_a_transfer_through_an_agent_key_is_refused_and_quarantines_nothing(hl: DevStack) -> None:
    """Session 27's review: the account's key is an API wallet (agent), which Hyperliquid lets trade but not move
    funds. A bot allowed to transfer sent `usdClassTransfer`; keyproxy signed it with the agent, Hyperliquid answered
    that the agent is no user ("Must deposit before performing actions. User: <agent>"), keyproxy read that as its
    key rejected and quarantined it: every bot of the account stopped trading. Now refused before signing."""
    from hyperliquid.utils.error import ClientError

    mover = hl.add_bot("mover", "hl", "read,trade,transfer,withdraw", "--set", "daily_withdrawal_cap=10",
                       "--set", "withdraw_addresses=USDC:arbitrum:0x5e9ee1089755c3435139848e47e6635505d5a13a")
    trader = hl.add_bot("trader-after", "hl", "read,trade")
    start = len(hl.journal())
    for _ in range(2):
        with pytest.raises(ClientError) as refused:
            _sdk(mover).usd_class_transfer(1.0, True)
        assert refused.value.error_code == "bad_request" and "master wallet" in str(refused.value.error_message)
    for _ in range(3):  # a refused withdrawal charges no daily cap (session 27's diff review): a fourth of 5 would
        with pytest.raises(ClientError) as refused:  # be refused `withdrawal_cap_exceeded` if each had
            _sdk(mover).withdraw_from_bridge(5.0, "0x5e9ee1089755c3435139848e47e6635505d5a13a")
        assert refused.value.error_code == "bad_request", refused.value.error_message
    assert _exchange_entries(hl, start) == []  # nothing went upstream
    time.sleep(1.0)  # what a finding would have done has been done
    placed = _sdk(trader).order("BTC", True, 0.0001, 60000, {"limit": {"tif": "Gtc"}})
    assert placed["status"] == "ok", placed  # the key trades on
    assert _sdk(trader).cancel("BTC", placed["response"]["data"]["statuses"][0]["resting"]["oid"])["status"] == "ok"


def test_an_sdk_that_loaded_markets_before_a_restart_still_trades(hl: DevStack) -> None:
    """The SDK reads `meta` once, at start; keyproxy's asset names are in memory. After a restart keyproxy
    fetches the market lists itself when an order names an asset it has not seen."""
    creds = hl.add_bot("long-lived", "hl", "read,trade")
    exchange = _sdk(creds)
    hl.stop_daemon()
    hl.start_daemon(int(hl.proxy_url.rsplit(":", 1)[1]))  # type: ignore[union-attr]
    start = len(hl.journal())
    placed = exchange.order("BTC", True, 0.001, 60000, {"limit": {"tif": "Gtc"}})
    oid = placed["response"]["data"]["statuses"][0]["resting"]["oid"]
    assert exchange.cancel("BTC", oid)["status"] == "ok"
    info = [json.loads(e["body"])["type"] for e in hl.journal()[start:] if e.get("path") == "/info"]
    assert info == ["meta", "spotMeta"]  # keyproxy's own calls, once


def test_eight_bots_at_once_on_one_key_need_no_turns(hl: DevStack) -> None:
    """Hyperliquid takes any unseen nonce above the smallest of a signer's 100 highest, so keyproxy lets
    one key's requests overtake each other (no per-account turn, unlike Kraken) and none is refused."""
    import threading

    bots = [hl.add_bot(f"thread{i}", "hl", "read,trade") for i in range(8)]
    start = len(hl.journal())
    errors: list[Any] = []

    def trade(creds: dict[str, Any]) -> None:
        exchange = _sdk(creds)
        for i in range(5):
            answer = exchange.order("SOL", True, 1, 90 + i, {"limit": {"tif": "Gtc"}})
            if answer["status"] != "ok" or "resting" not in answer["response"]["data"]["statuses"][0]:
                errors.append(answer)

    threads = [threading.Thread(target=trade, args=(b,)) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    sent = _exchange_entries(hl, start)
    assert len(sent) == 40 and not [e for e in sent if e.get("error_code")]


def test_key_rotate_accepts_only_a_signer_the_master_approved(hl: DevStack) -> None:
    master = hl.real_key.emulated["api_key"]  # type: ignore[attr-defined]
    stranger = {"api_key": master, "private_key": "0x" + bytes(Account.create().key).hex()}
    refused = hl.cli("key", "rotate", "hl", input=json.dumps(stranger), check=False)
    assert refused.returncode != 0 and "is not an approved agent of" in refused.stderr
    same = hl.cli("key", "rotate", "hl", input=json.dumps(hl.real_key.credentials), check=False)  # type: ignore[attr-defined]
    assert same.returncode == 0, same.stderr
    # the rotation's own check drew a nonce in µs for a ms exchange, so every nonce after it was outside Hyperliquid's
    # window and no order went again (session 32): an order after the rotation is placed
    placed = _sdk(hl.add_bot("hl-after-rotate", "hl", "read,trade")).order("ETH", True, 0.01, 3000,
                                                                          {"limit": {"tif": "Gtc"}})
    assert placed["status"] == "ok" and "resting" in placed["response"]["data"]["statuses"][0], placed


def _signed_body(private_key: str, nonce: int, vault: str | None = None, corrupt: bool = False) -> bytes:
    from keyproxy.exchanges import _eth

    action = {"type": "order", "orders": [{"a": 0, "b": True, "p": "60000", "s": "0.001", "r": False,
                                           "t": {"limit": {"tif": "Gtc"}}}], "grouping": "na"}
    key = _eth.parse_private_key(private_key.encode())
    signature = _eth.sign_typed(_eth.l1_typed_data(_eth.action_hash(action, vault, nonce, None), True), key)
    if corrupt:
        signature = {"r": "0x0", "s": signature["s"], "v": 27}
    return json.dumps({"action": action, "nonce": nonce, "signature": signature, "vaultAddress": vault}).encode()


def test_bad_signatures_vaults_and_stale_nonces_get_clear_codes_and_nothing_goes_upstream(hl: DevStack) -> None:
    import time

    creds = hl.add_bot("prober", "hl", "read,trade")
    now = int(time.time() * 1000)
    start = len(hl.journal())
    cases = [
        (_signed_body(creds["private_key"], now, corrupt=True), 401, "unknown_bot"),  # recovers to no one
        (_signed_body(creds["private_key"], now + 1, vault="0x1719884eb866cb12b2287399b15f7db5e7d775ea"), 400,
         "bad_request"),
        (_signed_body(creds["private_key"], now - 3 * 86_400_000), 401, "stale_request"),
    ]
    for body, status, code in cases:
        got, answer = _post(hl, body)
        assert (got, answer["error"], answer["status"], answer["code"]) == (status, code, "err", code), answer
    assert _exchange_entries(hl, start) == []



def test_an_allowlist_names_spot_pairs_as_hyperliquid_does(hl: DevStack) -> None:
    """Session 32's review: `symbols=@1` (Hyperliquid's own name for most spot pairs) was read as asset number 1, the
    ETH perpetual, so a bot held to one spot pair traded ETH perps; and `symbols=PURR/USDC`, as the docs spell it,
    allowed nothing. Each now allows the pair it names, and only that."""
    from hyperliquid.utils.error import ClientError

    at_one = _sdk(hl.add_bot("hl-at-one", "hl", "read,trade", "--set", "symbols=@1"))
    start = len(hl.journal())
    with pytest.raises(ClientError) as refused:
        at_one.order("ETH", True, 0.01, 3000, {"limit": {"tif": "Gtc"}})
    assert refused.value.error_code == "symbol_denied" and _exchange_entries(hl, start) == [], refused.value
    placed = at_one.order("@1", True, 10, 1.4, {"limit": {"tif": "Gtc"}})
    assert "resting" in placed["response"]["data"]["statuses"][0], placed
    purr = _sdk(hl.add_bot("hl-purr", "hl", "read,trade", "--set", "symbols=PURR/USDC"))
    placed = purr.order("PURR/USDC", True, 100, 0.19, {"limit": {"tif": "Gtc"}})
    assert "resting" in placed["response"]["data"]["statuses"][0], placed
    with pytest.raises(ClientError) as refused:
        purr.order("@1", True, 10, 1.4, {"limit": {"tif": "Gtc"}})
    assert refused.value.error_code == "symbol_denied", refused.value


def test_a_modify_takes_no_other_bots_cloid(hl: DevStack) -> None:
    """Session 32's review: a `batchModify` leg's `c` was never checked against the record of client ids, and its
    answer recorded that cloid as the modifier's: a bot restating its own order under another bot's cloid became
    that cloid's owner, so the other bot could no longer cancel its own order by it, and this one could. Refused
    (`policy_denied`, nothing sent); a modify under the bot's own cloid goes."""
    from hyperliquid.utils.error import ClientError
    from hyperliquid.utils.types import Cloid

    victim, attacker = _sdk(hl.add_bot("hl-mod-victim", "hl", "read,trade")), \
        _sdk(hl.add_bot("hl-mod-attacker", "hl", "read,trade"))
    theirs, mine = Cloid.from_str("0x" + "cd" * 16), Cloid.from_str("0x" + "ef" * 16)
    assert victim.order("ETH", True, 0.01, 3001, {"limit": {"tif": "Gtc"}}, cloid=theirs)["status"] == "ok"
    own = attacker.order("ETH", True, 0.01, 3002, {"limit": {"tif": "Gtc"}})
    oid = own["response"]["data"]["statuses"][0]["resting"]["oid"]
    start = len(hl.journal())
    with pytest.raises(ClientError) as refused:
        attacker.modify_order(oid, "ETH", True, 0.01, 3003, {"limit": {"tif": "Gtc"}}, cloid=theirs)
    assert refused.value.error_code == "policy_denied" and _exchange_entries(hl, start) == [], refused.value
    moved = attacker.modify_order(oid, "ETH", True, 0.01, 3003, {"limit": {"tif": "Gtc"}}, cloid=mine)
    assert "resting" in moved["response"]["data"]["statuses"][0], moved
    assert victim.cancel_by_cloid("ETH", theirs)["response"]["data"]["statuses"] == ["success"]


def test_a_modify_of_an_order_of_no_owner_is_refused_under_an_open_order_cap(hl: DevStack) -> None:
    """Session 32's review: an amend that replaces an order (Hyperliquid's modify, Kraken's EditOrder) of one placed
    outside keyproxy made the new order the bot's, though its count never held it: cancelling it freed a place, one
    more resting than `max_open_orders` each time. Refused to a bot with the cap; one without it may."""
    from hyperliquid.utils.error import ClientError

    # an order placed with the real key, not through keyproxy (on the exchange's site, say)
    body = _signed_body(hl.real_key.credentials["private_key"], int(time.time() * 1000) - 5000)  # type: ignore[attr-defined]
    with urllib.request.urlopen(urllib.request.Request(f"{hl.emulator_url}/exchange", data=body, headers={
            "Content-Type": "application/json"}), timeout=10) as resp:
        placed = json.loads(resp.read())
    oid = placed["response"]["data"]["statuses"][0]["resting"]["oid"]
    capped = _sdk(hl.add_bot("hl-mod-capped", "hl", "read,trade", "--set", "max_open_orders=5"))
    start = len(hl.journal())
    with pytest.raises(ClientError) as refused:
        capped.modify_order(oid, "BTC", True, 0.001, 59000, {"limit": {"tif": "Gtc"}})
    assert refused.value.error_code == "open_orders_exceeded" and _exchange_entries(hl, start) == [], refused.value
    free = _sdk(hl.add_bot("hl-mod-free", "hl", "read,trade"))
    moved = free.modify_order(oid, "BTC", True, 0.001, 59000, {"limit": {"tif": "Gtc"}})
    assert "resting" in moved["response"]["data"]["statuses"][0], moved
