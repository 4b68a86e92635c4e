"""Hyperliquid adapter: signing vectors from Hyperliquid's own SDK, the bot's signature, re-signing, facts.

Vectors: hyperliquid-dex/hyperliquid-python-sdk `tests/signing_test.py` (commit 04f25f2), key
0x0123456789012345678901234567890123456789012345678901234567890123, nonce 0.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account

from keyproxy.exchanges import _eth
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, EndpointClass, IncomingRequest, RealKey, SignContext, UnknownEndpoint,
)
from keyproxy.exchanges.hyperliquid import CCXT_BUILDER, USER_SIGNED, Hyperliquid
from keyproxy.exchanges.hyperliquid_facts import hyperliquid_market_names, hyperliquid_order_book_change
from keyproxy.secret import Secret

SDK_KEY = bytes.fromhex("0123456789012345678901234567890123456789012345678901234567890123")
NOW = 1_790_000_000_000


def _l1(action: dict[str, Any], mainnet: bool, vault: str | None = None) -> dict[str, Any]:
    return _eth.sign_typed(_eth.l1_typed_data(_eth.action_hash(action, vault, 0, None), mainnet), SDK_KEY)


@pytest.mark.parametrize(("action", "vault", "mainnet", "r", "s", "v"), [
    ({"type": "dummy", "num": 100000000000}, None, True,
     "0x53749d5b30552aeb2fca34b530185976545bb22d0b3ce6f62e31be961a59298",
     "0x755c40ba9bf05223521753995abb2f73ab3229be8ec921f350cb447e384d8ed8", 27),
    ({"type": "dummy", "num": 100000000000}, None, False,
     "0x542af61ef1f429707e3c76c5293c80d01f74ef853e34b76efffcb57e574f9510",
     "0x17b8b32f086e8cdede991f1e2c529f5dd5297cbe8128500e00cbaf766204a613", 28),
    ({"type": "order", "orders": [{"a": 1, "b": True, "p": "100", "s": "100", "r": False,
                                   "t": {"limit": {"tif": "Gtc"}}}], "grouping": "na"}, None, True,
     "0xd65369825a9df5d80099e513cce430311d7d26ddf477f5b3a33d2806b100d78e",
     "0x2b54116ff64054968aa237c20ca9ff68000f977c93289157748a3162b6ea940e", 28),
    ({"type": "order", "orders": [{"a": 1, "b": True, "p": "100", "s": "100", "r": False,
                                   "t": {"limit": {"tif": "Gtc"}}, "c": "0x00000000000000000000000000000001"}],
      "grouping": "na"}, None, False,
     "0xeba0664bed2676fc4e5a743bf89e5c7501aa6d870bdb9446e122c9466c5cd16d",
     "0x7f3e74825c9114bc59086f1eebea2928c190fdfbfde144827cb02b85bbe90988", 28),
    ({"type": "dummy", "num": 100000000000}, "0x1719884eb866cb12b2287399b15f7db5e7d775ea", True,
     "0x3c548db75e479f8012acf3000ca3a6b05606bc2ec0c29c50c515066a326239",
     "0x4d402be7396ce74fbba3795769cda45aec00dc3125a984f2a9f23177b190da2c", 28),
    ({"type": "scheduleCancel", "time": 123456789}, None, True,
     "0x609cb20c737945d070716dcc696ba030e9976fcf5edad87afa7d877493109d55",
     "0x16c685d63b5c7a04512d73f183b3d7a00da5406ff1f8aad33f8ae2163bab758b", 28),
])
def test_l1_signing_matches_the_sdk_vectors(action: dict[str, Any], vault: str | None, mainnet: bool,
                                            r: str, s: str, v: int) -> None:
    assert _l1(action, mainnet, vault) == {"r": r, "s": s, "v": v}


def test_user_signed_withdraw_matches_the_sdk_vector() -> None:
    primary, fields, _ = USER_SIGNED["withdraw3"]
    message = {"destination": "0x5e9ee1089755c3435139848e47e6635505d5a13a", "amount": "1", "time": 1687816341423,
               "type": "withdraw3", "signatureChainId": "0x66eee", "hyperliquidChain": "Testnet"}
    assert _eth.sign_typed(_eth.user_typed_data(primary, fields, message, 0x66EEE), SDK_KEY) == {
        "r": "0x8363524c799e90ce9bc41022f7c39b4e9bdba786e5f9c72b20e43e1462c37cf9",
        "s": "0x58b1411a775938b83e29182e8ef74975f9054c8e97ebf5ec2dc8d51bfc893881", "v": 28}


# --- the bot's side ---------------------------------------------------------------------------------

BOT = Account.create()
REAL = Account.create()
MASTER = Account.create()
ORDER = {"type": "order", "orders": [{"a": 0, "b": True, "p": "60000", "s": "0.01", "r": False,
                                      "t": {"limit": {"tif": "Gtc"}}}], "grouping": "na"}


def _bot_request(action: dict[str, Any], nonce: int = NOW, mainnet: bool = False, key: Any = BOT,
                 **extra: Any) -> IncomingRequest:
    if action["type"] in USER_SIGNED:
        primary, fields, _ = USER_SIGNED[action["type"]]
        typed = _eth.user_typed_data(primary, fields, action, int(action["signatureChainId"], 16))
    else:
        typed = _eth.l1_typed_data(_eth.action_hash(action, extra.get("vaultAddress"), nonce,
                                                    extra.get("expiresAfter")), mainnet)
    body = {"action": action, "nonce": nonce, "signature": _eth.sign_typed(typed, bytes(key.key)),
            "vaultAddress": None, **extra}
    return IncomingRequest("POST", "/exchange", "", {"content-type": "application/json"}, json.dumps(body).encode())


def _bot_key() -> BotKey:
    return BotKey(str(BOT.address).lower(), "eth")


@pytest.mark.parametrize("mainnet", [True, False])
def test_the_bot_is_found_by_the_address_that_signed_on_either_network(mainnet: bool) -> None:
    adapter = Hyperliquid()
    req = _bot_request(ORDER, mainnet=mainnet)
    assert str(BOT.address).lower() in adapter.presented_keys(req)
    endpoint = adapter.classify_request(req)
    assert endpoint is not None and endpoint.cls is EndpointClass.TRADE
    verified = adapter.verify(req, _bot_key(), endpoint, NOW)
    assert verified.sequence == NOW  # the bot's own nonce must increase (the core keeps it durably)


def test_another_keys_signature_is_refused() -> None:
    adapter = Hyperliquid()
    req = _bot_request(ORDER, key=Account.create())
    with pytest.raises(AuthFailure) as e:
        adapter.verify(req, _bot_key(), adapter.classify_request(req), NOW)  # type: ignore[arg-type]
    assert e.value.code == "bad_signature"


def test_a_tampered_action_no_longer_recovers_to_the_bot() -> None:
    adapter = Hyperliquid()
    doc = json.loads(_bot_request(ORDER).body)
    doc["action"]["orders"][0]["s"] = "10"  # ten times the size the bot signed
    req = IncomingRequest("POST", "/exchange", "", {}, json.dumps(doc).encode())
    assert str(BOT.address).lower() not in adapter.presented_keys(req)
    with pytest.raises(AuthFailure):
        adapter.verify(req, _bot_key(), adapter.classify_request(req), NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("signature", [None, "0x00", {"r": "0x0", "s": "0x2", "v": 27}, {"r": 1, "s": 2, "v": 27},
                                       {"r": "0x" + "f" * 64, "s": "0x" + "f" * 64, "v": 29}, []])
def test_signatures_that_do_not_recover_present_no_key(signature: object) -> None:
    doc = json.loads(_bot_request(ORDER).body)
    doc["signature"] = signature
    presented = Hyperliquid().presented_keys(IncomingRequest("POST", "/exchange", "", {}, json.dumps(doc).encode()))
    assert list(presented) == []


@pytest.mark.parametrize(("nonce", "code"), [(NOW - 3 * 86_400_000, "stale_request"),
                                             (NOW + 2 * 86_400_000, "stale_request")])
def test_nonces_outside_hyperliquids_window_are_stale(nonce: int, code: str) -> None:
    adapter = Hyperliquid()
    req = _bot_request(ORDER, nonce=nonce)
    with pytest.raises(AuthFailure) as e:
        adapter.verify(req, _bot_key(), adapter.classify_request(req), NOW)  # type: ignore[arg-type]
    assert e.value.code == code


def test_a_vault_address_is_refused() -> None:
    adapter = Hyperliquid()
    req = _bot_request(ORDER, vaultAddress="0x1719884eb866cb12b2287399b15f7db5e7d775ea")
    with pytest.raises(BadRequest, match="vaultAddress"):
        adapter.verify(req, _bot_key(), adapter.classify_request(req), NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(("body", "error"), [
    (b"not json", BadRequest), (b"[]", BadRequest), (b'{"action": {"type": "order"}}', BadRequest),
    (b'{"action": {"type": "order"}, "nonce": -1}', BadRequest),
    (b'{"action": {"type": "order"}, "nonce": 1, "nonce": 2}', BadRequest),
    (b'{"action": {"type": "evmUserModify"}, "nonce": 1}', UnknownEndpoint),
    (b'{"action": {"type": "setReferrer", "code": "X"}, "nonce": 1}', UnknownEndpoint),
    (b'{"action": {"type": "order"}, "nonce": 1, "extra": 1}', BadRequest),
])
def test_bad_bodies_get_a_clear_refusal(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        Hyperliquid().classify_request(IncomingRequest("POST", "/exchange", "", {}, body))


def test_ccxts_builder_fee_approval_is_not_forwarded_but_any_other_builder_is_admin() -> None:
    adapter = Hyperliquid()
    action = {"hyperliquidChain": "Mainnet", "signatureChainId": "0x66eee", "maxFeeRate": "0.01%",
              "builder": CCXT_BUILDER, "nonce": NOW, "type": "approveBuilderFee"}
    with pytest.raises(UnknownEndpoint):
        adapter.classify_request(_bot_request(action))
    other = adapter.classify_request(_bot_request({**action, "builder": str(BOT.address).lower()}))
    assert other is not None and other.cls is EndpointClass.ADMIN


# --- keyproxy's signature ---------------------------------------------------------------------------

def _real_key() -> RealKey:
    return RealKey("eth", Secret(str(MASTER.address)), private_key=Secret("0x" + bytes(REAL.key).hex()))


@pytest.mark.parametrize("environment", ["production", "testnet"])
def test_keyproxy_re_signs_with_its_own_nonce_for_the_accounts_network(environment: str) -> None:
    adapter = Hyperliquid()
    req = _bot_request(ORDER, nonce=NOW, expiresAfter=NOW + 60_000)
    out = adapter.sign(req, _real_key(), adapter.classify_request(req),  # type: ignore[arg-type]
                       SignContext("https://api.hyperliquid.xyz", environment, NOW, nonce=NOW + 5))
    sent = json.loads(out.body)
    assert sent["nonce"] == NOW + 5 and sent["action"] == ORDER and sent["expiresAfter"] == NOW + 60_000
    connection = _eth.action_hash(sent["action"], None, NOW + 5, NOW + 60_000)
    typed = _eth.l1_typed_data(connection, environment == "production")
    assert _eth.recover_typed(typed, sent["signature"]) == str(REAL.address).lower()
    assert out.url == "https://api.hyperliquid.xyz/exchange"


def test_a_user_signed_action_carries_keyproxys_nonce_and_the_accounts_chain() -> None:
    adapter = Hyperliquid()
    action = {"type": "usdSend", "signatureChainId": "0x66eee", "hyperliquidChain": "Testnet",
              "destination": "0x5e9ee1089755c3435139848e47e6635505d5a13a", "amount": "1", "time": NOW}
    req = _bot_request(action)
    endpoint = adapter.classify_request(req)
    assert endpoint is not None and endpoint.cls is EndpointClass.WITHDRAW
    adapter.verify(req, _bot_key(), endpoint, NOW)
    master_key = RealKey("eth", Secret(str(REAL.address)), private_key=Secret("0x" + bytes(REAL.key).hex()))
    out = json.loads(adapter.sign(req, master_key, endpoint,
                                  SignContext("https://x", "production", NOW, NOW + 9)).body)
    assert out["action"]["time"] == NOW + 9 == out["nonce"] and out["action"]["hyperliquidChain"] == "Mainnet"
    # session 27's review: an API wallet's transfer is answered "Must deposit before performing actions. User:
    # <agent>", read as a key Hyperliquid no longer knows, and quarantined the key: never sent from an agent
    with pytest.raises(BadRequest, match="master wallet"):
        adapter.sign(req, _real_key(), endpoint, SignContext("https://x", "production", NOW, NOW + 10))
    primary, fields, _ = USER_SIGNED["usdSend"]
    assert _eth.recover_typed(_eth.user_typed_data(primary, fields, out["action"], 0x66EEE),
                              out["signature"]) == str(REAL.address).lower()


def test_a_user_signed_action_whose_time_is_not_its_nonce_is_refused() -> None:
    adapter = Hyperliquid()
    action = {"type": "withdraw3", "signatureChainId": "0x66eee", "hyperliquidChain": "Mainnet",
              "destination": "0x5e9ee1089755c3435139848e47e6635505d5a13a", "amount": "1", "time": NOW - 1}
    req = _bot_request(action)
    with pytest.raises(BadRequest, match="time"):
        adapter.verify(req, _bot_key(), adapter.classify_request(req), NOW)  # type: ignore[arg-type]


def test_issued_bot_keys_are_fresh_ethereum_keys_of_which_keyproxy_keeps_only_the_address() -> None:
    issued = Hyperliquid().issue_bot_key("eth")
    assert _eth.address_of(_eth.parse_private_key(issued.shown["private_key"].encode())) == issued.kept.key_id
    assert issued.kept.secret is None and issued.kept.public_key is None
    with pytest.raises(ValueError):
        Hyperliquid().issue_bot_key("hmac")


# --- facts ------------------------------------------------------------------------------------------

def _facts(action: dict[str, Any]) -> Any:
    adapter = Hyperliquid()
    req = _bot_request(action)
    return adapter.facts(req, adapter.classify_request(req))  # type: ignore[arg-type]


def test_an_order_is_valued_at_its_limit_price_by_asset_index() -> None:
    f = _facts(ORDER)
    assert (f.action, f.symbol, f.market, f.side, f.quantity, f.price) == (
        "order", "#0", "perp", "buy", Decimal("0.01"), Decimal("60000"))


def test_a_batch_is_read_order_by_order_and_a_spot_asset_is_spot() -> None:
    """A spot order's `r` is not believed: spot holds no position to reduce, so a reduce-only spot buy would
    pass halts and position caps on a flag nothing enforces (session 17's review)."""
    second = {"a": 10000, "b": False, "p": "0.2", "s": "100", "r": True, "t": {"limit": {"tif": "Ioc"}}}
    perp = {**second, "a": 1}
    f = _facts({**ORDER, "orders": [*ORDER["orders"], second, perp]})
    assert [(o.symbol, o.market, o.side, o.reduce_only) for o in f.orders] == [
        ("#0", "perp", "buy", False), ("#10000", "spot", "sell", False), ("#1", "perp", "sell", True)]


def test_a_modify_names_the_order_it_changes_by_the_exchanges_id() -> None:
    wire = ORDER["orders"][0]
    f = _facts({"type": "batchModify", "modifies": [{"oid": 77, "order": wire},
                                                     {"oid": "0x" + "ab" * 16, "order": wire}]})
    assert [(o.action, o.order_id, o.quantity) for o in f.orders] == [
        ("amend", "77", Decimal("0.01")), ("amend", None, Decimal("0.01"))]  # a client id: not the book's
    # a single modify is answered without the oid it leaves resting: no halt could find whose order that is
    with pytest.raises(BadRequest, match="batchModify"):
        _facts({"type": "modify", "oid": 77, "order": wire})
    with pytest.raises(BadRequest, match="TWAP"):  # a halt could not cancel one: no request lists running TWAPs
        _facts({"type": "twapOrder", "twap": {"a": 0, "b": True, "s": "0.01", "r": False, "m": 5, "t": False}})
    with pytest.raises(BadRequest, match="twapCancel"):  # session 27's review: it named a TWAP no bot placed
        _facts({"type": "twapCancel", "a": 0, "t": 7})


def test_a_trigger_order_is_valued_at_the_worse_of_trigger_and_limit() -> None:
    wire = {"a": 1, "b": True, "p": "100", "s": "2", "r": False,
            "t": {"trigger": {"triggerPx": "150", "isMarket": True, "tpsl": "sl"}}}
    assert _facts({**ORDER, "orders": [wire]}).price == Decimal("150")


def test_a_market_trigger_buy_is_worth_up_to_its_slippage_past_the_trigger() -> None:
    """Session 32's review: a market trigger fills within Hyperliquid's 10% of its trigger, whatever `p` says."""
    from keyproxy.policy.valuation import notional
    wire = {"a": 1, "b": True, "p": "100", "s": "2", "r": False,
            "t": {"trigger": {"triggerPx": "150", "isMarket": True, "tpsl": "sl"}}}
    buy = _facts({**ORDER, "orders": [wire]})
    assert buy.stop_limit == Decimal("165") and notional(buy, Decimal("140")) == Decimal("330")
    limit = {**wire, "t": {"trigger": {"triggerPx": "150", "isMarket": False, "tpsl": "sl"}}}
    assert _facts({**ORDER, "orders": [limit]}).stop_limit is None
    sell = {**wire, "b": False}
    assert _facts({**ORDER, "orders": [sell]}).stop_limit is None


@pytest.mark.parametrize("action", [
    {**ORDER, "builder": {"b": "0x0000000000000000000000000000000000000001", "f": 10}},
    {**ORDER, "orders": [{**ORDER["orders"][0], "p": "NaN"}]},
    {**ORDER, "orders": [{**ORDER["orders"][0], "a": -1}]},
    {**ORDER, "orders": [{**ORDER["orders"][0], "b": "yes"}]},
    {**ORDER, "orders": []},
    {"type": "updateLeverage", "asset": 0, "isCross": True, "leverage": 0},
])
def test_malformed_or_fee_paying_orders_are_bad_requests(action: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        _facts(action)


def test_leverage_and_withdrawals_carry_their_limits() -> None:
    assert _facts({"type": "updateLeverage", "asset": 1, "isCross": True, "leverage": 20}).leverage == 20
    w = _facts({"type": "withdraw3", "signatureChainId": "0x66eee", "hyperliquidChain": "Mainnet",
                "destination": "0x5E9EE1089755C3435139848E47E6635505D5A13A", "amount": "25", "time": NOW})
    assert (w.action, w.asset, w.address, w.network, w.amount) == (
        "withdraw", "USDC", "0x5e9ee1089755c3435139848e47e6635505d5a13a", "arbitrum", Decimal("25"))


def test_market_names_come_from_meta_and_spot_meta_answers() -> None:
    meta = {"universe": [{"name": "BTC", "szDecimals": 5}, {"name": "ETH", "szDecimals": 4}]}
    spot = {"universe": [{"tokens": [1, 0], "name": "PURR/USDC", "index": 0}], "tokens": []}
    assert hyperliquid_market_names(json.dumps(meta).encode()) == {"#0": "BTC", "#1": "ETH"}
    assert hyperliquid_market_names(json.dumps([spot, []]).encode()) == {"#10000": "PURR/USDC"}
    assert hyperliquid_market_names(b'{"BTC": "1"}') == {}
    # a HIP-3 dex's perps (`metaAndAssetCtxs` with `dex`, ccxt's load_markets asks): listed from 0, numbered from
    # 100000: they never rename the main perps (session 18's review: asset 0 became `xyz:XYZ100`, priced at its mid)
    dex = [{"universe": [{"name": "xyz:XYZ100", "szDecimals": 4}]}, [{"midPx": "25000.0"}]]
    assert hyperliquid_market_names(json.dumps(dex).encode()) == {}
    from keyproxy.exchanges.hyperliquid_facts import hyperliquid_prices
    assert hyperliquid_prices(json.dumps(dex).encode()) == {}


def test_only_confirmed_resting_orders_and_successful_cancels_count() -> None:
    f = _facts(ORDER)
    answer = {"status": "ok", "response": {"type": "order", "data": {"statuses": [{"resting": {"oid": 1}}]}}}
    assert hyperliquid_order_book_change(b"", 200, json.dumps(answer).encode(), f).opened == ("perp:#0",)
    filled = {"status": "ok", "response": {"type": "order", "data": {"statuses": [{"filled": {"oid": 1}}]}}}
    assert hyperliquid_order_book_change(b"", 200, json.dumps(filled).encode(), f).opened == ()
    cancel = {"type": "cancel", "cancels": [{"a": 0, "o": 1}, {"a": 10000, "o": 2}]}
    c = _facts(cancel)
    sent = json.dumps({"action": cancel}).encode()
    done = {"status": "ok", "response": {"type": "cancel", "data": {"statuses": ["success", {"error": "x"}]}}}
    assert hyperliquid_order_book_change(sent, 200, json.dumps(done).encode(), c).closed == ("perp:*",)
    assert hyperliquid_order_book_change(sent, 200, b'{"status": "err", "response": "x"}', c).closed == ()


def test_bots_on_both_networks_interleaved_are_all_found() -> None:
    """The adapter recovers the network that matched last time first; a bot on the other one still verifies."""
    adapter = Hyperliquid()
    for i, mainnet in enumerate((True, False, False, True, False)):
        req = _bot_request(ORDER, nonce=NOW + i, mainnet=mainnet)
        assert str(BOT.address).lower() in adapter.presented_keys(req)
        assert adapter.verify(req, _bot_key(), adapter.classify_request(req), NOW).sequence == NOW + i  # type: ignore[arg-type]


def test_an_unknown_signer_answer_rejects_the_key_and_an_order_error_does_not() -> None:
    from keyproxy.exchanges.base import KeyRejection

    adapter = Hyperliquid()
    req = _bot_request(ORDER)
    adapter.sign(req, _real_key(), adapter.classify_request(req),  # type: ignore[arg-type]
                 SignContext("https://api.hyperliquid.xyz", "production", NOW, nonce=NOW + 5))
    ours, other = str(REAL.address), "0x67cca3cc1ed80e5bb4ca43ac8b4e4c7e8e1c2d3f"
    gone = json.dumps({"status": "err", "response": f"User or API Wallet {ours} does not exist."}).encode()
    assert adapter.key_rejected(200, gone) is KeyRejection.INVALID
    # an action Hyperliquid hashes otherwise than keyproxy did (members reordered, a cloid without 0x) recovers to a
    # random signer, named the same way: one bot's odd order is no verdict on the account's key (session 25 review)
    stranger = json.dumps({"status": "err", "response": f"User or API Wallet {other} does not exist."}).encode()
    assert adapter.key_rejected(200, stranger) is None
    assert adapter.key_rejected(200, b'{"status": "err", "response": "User or API Wallet does not exist."}') is None
    order_error = b'{"status": "ok", "response": {"type": "order", "data": {"statuses": [{"error": "x"}]}}}'
    assert adapter.key_rejected(200, order_error) is None
    assert adapter.key_rejected(200, b'{"status": "err", "response": "Insufficient margin"}') is None
    # an error about what a bot named carries no verdict on the key (session 24: Kraken's error text, echoed from
    # a bot's cl_ord_id, quarantined the shared key; "does not exist" alone was read the same way here)
    for said in ("Vault 0x1111111111111111111111111111111111111111 does not exist.", "Order does not exist",
                 "Invalid cloid User or API Wallet 0xabc does not exist."):
        assert adapter.key_rejected(200, json.dumps({"status": "err", "response": said}).encode()) is None
    deposit = f"Must deposit before performing actions. User: {ours.lower()}"
    assert adapter.key_rejected(200, json.dumps({"status": "err", "response": deposit}).encode()) \
        is KeyRejection.INVALID


def test_a_vault_deposit_is_a_withdrawal_to_the_vault_and_taking_it_back_a_transfer() -> None:
    """A vault's leader trades what is deposited: funds leaving the account's control, decided against the
    withdrawal scope, allowlist and caps; a withdrawal from the vault brings money back (transfer)."""
    adapter = Hyperliquid()
    vault = "0x1719884eb866cb12b2287399b15f7db5e7d775ea"
    deposit = {"type": "vaultTransfer", "vaultAddress": vault.upper().replace("0X", "0x"), "isDeposit": True,
               "usd": 25_500_000}
    endpoint = adapter.classify_request(_bot_request(deposit))
    assert endpoint is not None and endpoint.cls is EndpointClass.WITHDRAW
    f = _facts(deposit)
    assert (f.action, f.asset, f.address, f.network, f.amount) == (
        "withdraw", "USDC", vault, "hyperliquid-vault", Decimal("25.5"))
    back = {**deposit, "isDeposit": False}
    assert adapter.classify_request(_bot_request(back)).cls is EndpointClass.TRANSFER  # type: ignore[union-attr]
    for odd in ({**deposit, "isDeposit": "no"}, {k: v for k, v in deposit.items() if k != "isDeposit"}):
        assert adapter.classify_request(_bot_request(odd)).cls is EndpointClass.WITHDRAW  # type: ignore[union-attr]
    for bad in ({**deposit, "usd": 1.5}, {**deposit, "usd": -1}, {**deposit, "vaultAddress": 7}):
        with pytest.raises(BadRequest):
            _facts(bad)


def test_taking_isolated_margin_out_is_a_leverage_change_keyproxy_cannot_value() -> None:
    from keyproxy.policy.decide import Counters, decide
    from keyproxy.policy.model import BotPolicy

    free = BotPolicy(scopes=("read", "trade"))
    capped = BotPolicy(scopes=("read", "trade"), max_leverage=Decimal(3))
    out = _facts({"type": "updateIsolatedMargin", "asset": 1, "isBuy": True, "ntli": -5_000_000})
    into = _facts({"type": "updateIsolatedMargin", "asset": 1, "isBuy": True, "ntli": 5_000_000})
    assert (out.action, out.symbol, into.action) == ("leverage", "#1", "other")
    refused = decide(out, "trade", capped, Counters(), 0.0, bot="b", account="a")
    assert not refused.allow and refused.code == "leverage_exceeded"
    assert decide(into, "trade", capped, Counters(), 0.0, bot="b", account="a").allow
    assert decide(out, "trade", free, Counters(), 0.0, bot="b", account="a").allow  # no cap: allowed
    with pytest.raises(BadRequest):
        _facts({"type": "updateIsolatedMargin", "asset": 1, "isBuy": True, "ntli": 1.5})


def test_a_cancel_leg_in_a_shape_keyproxy_does_not_read_is_refused() -> None:
    """Session 25's review: a leg whose order keyproxy could not read (`o` 1001.0, a cloid as a number) was left out
    of the owner check, which then passed the request: the leg could cancel another bot's order. Refused now."""
    from keyproxy.exchanges.base import BadRequest

    for cancels in ([{"a": 0, "o": 1001}, {"a": 0, "o": 1001.0}], [{"a": 0, "o": "1001"}]):
        with pytest.raises(BadRequest, match="names its order by `o`"):
            _facts({"type": "cancel", "cancels": cancels})
    with pytest.raises(BadRequest, match="names its order by `cloid`"):
        _facts({"type": "cancelByCloid", "cancels": [{"asset": 0, "cloid": 5}]})
    assert _facts({"type": "cancel", "cancels": [{"a": 0, "o": 1001}]}).cancels == ("1001",)


def test_prices_come_from_allmids_shaped_answers_only() -> None:
    """Session 27's review: any `/info` object was read as mids, and `"0"` names asset #0 (BTC): an answer of
    another shape a bot asks for must set no price."""
    from keyproxy.exchanges.hyperliquid_facts import hyperliquid_prices

    mids = {"BTC": "60000.5", "kPEPE": "0.01", "PURR/USDC": "0.2", "@107": "31.5"}
    assert hyperliquid_prices(json.dumps(mids).encode()) == {k: Decimal(v) for k, v in mids.items()}
    assert hyperliquid_prices(json.dumps({**mids, "@9": "0.0"}).encode()) == {k: Decimal(v) for k, v in mids.items()}
    for other in ({"0": "1"}, {"BTC": "60000", "0": "1"}, {"coin": "BTC", "time": 1, "levels": []},
                  {"name": "HYPE", "midPx": "30", "markPx": "30"}, {"BTC": 1}, {}, {"xyz:XYZ100": "5"}):
        assert hyperliquid_prices(json.dumps(other).encode()) == {}, other
