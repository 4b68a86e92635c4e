"""Binance adapter: published signing vectors, drop-in verification, classification, re-signing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from keyproxy.exchanges import _sign
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, EndpointClass, IncomingRequest, RealKey, SignContext, resolve_upstream,
)
from keyproxy.exchanges.binance import Binance, percent_encode_payload
from keyproxy.secret import Secret

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "binance" / "signing.json").read_text())
HMAC = VECTORS["hmac"]
ADAPTER = Binance()
ORDER = ADAPTER.classify("POST", "/api/v3/order")
NOW = 1499827319559 + 100


def real_hmac() -> RealKey:
    return RealKey("hmac", Secret(HMAC["api_key"]), secret=Secret(HMAC["secret"]))


def req(query: str = "", body: str = "", method: str = "POST", headers: dict | None = None,  # type: ignore[type-arg]
        path: str = "/api/v3/order") -> IncomingRequest:
    h = {"x-mbx-apikey": "VIRTUAL"} | ({"content-type": "application/x-www-form-urlencoded"} if body else {})
    return IncomingRequest(method, path, query, h | (headers or {}), body.encode())


@pytest.mark.parametrize("case", HMAC["cases"], ids=lambda c: c["name"])
def test_hmac_published_vectors_sign(case: dict) -> None:  # type: ignore[type-arg]
    out = ADAPTER.sign(req(case["query"], case["body"]), real_hmac(), ORDER,
                       SignContext("https://api.binance.com", "production", NOW))
    sent = out.query + out.body.decode()
    assert sent.endswith(f"signature={case['signature']}")
    assert out.headers["X-MBX-APIKEY"] == HMAC["api_key"]
    # the signature goes at the end of the body when there is one, else of the query
    assert (f"signature={case['signature']}" in out.body.decode()) == bool(case["body"])


@pytest.mark.parametrize("case", HMAC["cases"], ids=lambda c: c["name"])
def test_hmac_published_vectors_verify(case: dict) -> None:  # type: ignore[type-arg]
    bot = BotKey(HMAC["api_key"], "hmac", secret=Secret(HMAC["secret"]))
    sig = f"signature={case['signature']}"
    query, body = (case["query"], case["body"] + "&" + sig) if case["body"] else (case["query"] + "&" + sig, "")
    verified = ADAPTER.verify(req(query, body), bot, ORDER, NOW)
    assert "signature" not in verified.request.query + verified.request.body.decode()
    assert "x-mbx-apikey" not in verified.request.headers
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(req(query.replace("quantity=1", "quantity=2"), body.replace("quantity=1", "quantity=2")),
                       bot, ORDER, NOW)
    assert e.value.code == "bad_signature"


def test_ed25519_published_fix_vector() -> None:
    ed = VECTORS["ed25519"]
    payload = "\x01".join(ed["fix_logon"]["payload_soh_joined"]).encode()
    assert _sign.sign_ed25519_b64(ed["private_key"].encode(), payload) == ed["fix_logon"]["signature"]


def test_ed25519_real_signing_and_bot_verification() -> None:
    ed = VECTORS["ed25519"]
    case = ed["cases"][0]
    key = RealKey("ed25519", Secret("edkey"), private_key=Secret(ed["private_key"]))
    endpoint = ADAPTER.classify("POST", "/api/v3/order")
    out = ADAPTER.sign(req(case["query"]), key, endpoint,
                       SignContext("https://api.binance.com", "production", 1668481559918))
    assert out.query.endswith("signature=" + quote(case["signature"], safe=""))
    # and a bot holding that key pair verifies
    from cryptography.hazmat.primitives import serialization

    public = serialization.load_pem_private_key(ed["private_key"].encode(), None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    bot = BotKey("edbot", "ed25519", public_key=public)
    ADAPTER.verify(req(out.query), bot, endpoint, 1668481559918 + 10)


def test_rsa_round_trip() -> None:
    private, public = _sign.new_keypair_pem("rsa")
    bot = BotKey("rsabot", "rsa", public_key=public)
    q = f"symbol=BTCUSDT&timestamp={NOW}"
    sig = quote(_sign.sign_rsa_sha256_b64(private, q.encode()), safe="")
    ADAPTER.verify(req(q + "&signature=" + sig), bot, ORDER, NOW)
    with pytest.raises(AuthFailure):
        ADAPTER.verify(req(q.replace("BTC", "ETH") + "&signature=" + sig), bot, ORDER, NOW)


def bot_hmac() -> tuple[BotKey, str]:
    return BotKey("VIRTUAL", "hmac", secret=Secret("virtual-secret")), "virtual-secret"


def signed(query: str, secret: str) -> str:
    return query + "&signature=" + _sign.hmac_sha256_hex(secret.encode(), query.encode())


@pytest.mark.parametrize("ts_offset, window, ok", [
    (0, None, True),
    (-4999, None, True),
    (-5001, None, False),
    (-59_000, 60000, True),
    (-70_000, 60000, False),  # a 70-second-old signature
    (999, None, True),
    (1000, None, False),  # more than 1 s ahead
])
def test_timestamp_window(ts_offset: int, window: int | None, ok: bool) -> None:
    bot, secret = bot_hmac()
    q = f"symbol=BTCUSDT&timestamp={NOW + ts_offset}" + (f"&recvWindow={window}" if window else "")
    if ok:
        ADAPTER.verify(req(signed(q, secret)), bot, ORDER, NOW)
    else:
        with pytest.raises(AuthFailure) as e:
            ADAPTER.verify(req(signed(q, secret)), bot, ORDER, NOW)
        assert e.value.code == "stale_request"


def test_microsecond_timestamps() -> None:
    bot, secret = bot_hmac()
    ADAPTER.verify(req(signed(f"symbol=X&timestamp={NOW * 1000}", secret)), bot, ORDER, NOW)


@pytest.mark.parametrize("query, message", [
    ("symbol=X", "timestamp is missing"),
    ("symbol=X&timestamp=abc", "timestamp is missing or not a number"),
    (f"symbol=X&timestamp={NOW}&recvWindow=70000", "must not exceed 60000"),
    (f"symbol=X&timestamp={NOW}&recvWindow=1e9", "recvWindow is not a number"),
])
def test_malformed_timing_is_bad_request(query: str, message: str) -> None:
    bot, secret = bot_hmac()
    with pytest.raises(BadRequest, match=message):
        ADAPTER.verify(req(signed(query, secret)), bot, ORDER, NOW)


def test_missing_and_duplicate_signatures() -> None:
    bot, secret = bot_hmac()
    with pytest.raises(AuthFailure, match="needs a signature"):
        ADAPTER.verify(req(f"symbol=X&timestamp={NOW}"), bot, ORDER, NOW)
    with pytest.raises(BadRequest, match="more than one"):
        ADAPTER.verify(req(signed(f"symbol=X&timestamp={NOW}", secret) + "&signature=00"), bot, ORDER, NOW)


def test_python_binance_decoded_form_is_accepted() -> None:
    """python-binance signs decoded values but sends them form-encoded."""
    bot, secret = bot_hmac()
    decoded = f"newClientOrderId=a:b/c&timestamp={NOW}"
    sig = _sign.hmac_sha256_hex(secret.encode(), decoded.encode())
    ADAPTER.verify(req(body=f"newClientOrderId=a%3Ab%2Fc&timestamp={NOW}&signature={sig}"), bot, ORDER, NOW)


def test_forwarded_payload_is_percent_encoded_and_resigned() -> None:
    """ccxt sends some bodies raw (spaces, @, UTF-8); Binance now signs the encoded form."""
    body = f"coin=USDT&address=ab@c&name=my wallet é&timestamp={NOW}"
    out = ADAPTER.sign(req(body=body), real_hmac(), ADAPTER.classify("POST", "/sapi/v1/capital/withdraw/apply"),
                       SignContext("https://api.binance.com", "production", NOW))
    sent = out.body.decode()
    assert sent.startswith(f"coin=USDT&address=ab%40c&name=my%20wallet%20%C3%A9&timestamp={NOW}&signature=")
    payload = sent.rsplit("&signature=", 1)[0]
    assert sent.endswith(_sign.hmac_sha256_hex(HMAC["secret"].encode(), payload.encode()))


def test_percent_encoding_keeps_valid_escapes() -> None:
    assert percent_encode_payload(b"a=%2F&b=%zz&c=x y") == b"a=%2F&b=%25zz&c=x%20y"


def test_token_mode_adds_timestamp() -> None:
    stripped = ADAPTER.strip(req("symbol=BTCUSDT", method="GET", path="/api/v3/openOrders"))
    assert "x-mbx-apikey" not in stripped.headers
    endpoint = ADAPTER.classify("GET", "/api/v3/openOrders")
    out = ADAPTER.sign(stripped, real_hmac(), endpoint, SignContext("https://api.binance.com", "production", 1234))
    payload = "symbol=BTCUSDT&timestamp=1234"
    assert out.query == payload + "&signature=" + _sign.hmac_sha256_hex(HMAC["secret"].encode(), payload.encode())


def test_public_endpoints_carry_no_key() -> None:
    endpoint = ADAPTER.classify("GET", "/api/v3/exchangeInfo")
    assert endpoint.cls is EndpointClass.PUBLIC
    out = ADAPTER.sign(req(method="GET", path="/api/v3/exchangeInfo"), real_hmac(), endpoint,
                       SignContext("https://x", "production", NOW))
    assert out.headers == {}


def test_key_only_endpoint_swaps_the_key() -> None:
    endpoint = ADAPTER.classify("POST", "/fapi/v1/listenKey")
    assert endpoint.cls is EndpointClass.READ and not endpoint.signed
    bot, _ = bot_hmac()
    v = ADAPTER.verify(req(path="/fapi/v1/listenKey"), bot, endpoint, NOW)
    out = ADAPTER.sign(v.request, real_hmac(), endpoint, SignContext("https://fapi.binance.com", "production", NOW))
    assert out.headers["X-MBX-APIKEY"] == HMAC["api_key"] and "signature" not in out.query


@pytest.mark.parametrize("method, path, cls", [
    ("GET", "/api/v3/exchangeInfo", "public"),
    ("GET", "/api/v3/account", "read"),
    ("GET", "/sapi/v1/capital/config/getall", "read"),
    ("GET", "/sapi/v1/margin/allPairs", "read"),
    ("POST", "/api/v3/order", "trade"),
    ("DELETE", "/api/v3/order", "trade"),
    ("POST", "/fapi/v1/order", "trade"),
    ("POST", "/fapi/v1/leverage", "trade"),
    ("POST", "/sapi/v1/capital/withdraw/apply", "withdraw"),
    ("POST", "/sapi/v1/giftcard/createCode", "withdraw"),
    ("POST", "/sapi/v1/asset/transfer", "transfer"),
    ("POST", "/sapi/v1/sub-account/universalTransfer", "transfer"),
    ("POST", "/sapi/v1/margin/borrow-repay", "transfer"),
    ("POST", "/sapi/v1/sub-account/subAccountApi", "admin"),
    ("DELETE", "/sapi/v1/sub-account/subAccountApi", "admin"),
])
def test_classification(method: str, path: str, cls: str) -> None:
    assert ADAPTER.classify(method, path).cls == cls  # type: ignore[union-attr]


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v3/nonexistent"), ("POST", "/api/v3/account"), ("GET", "/api/v3/order/"),
    ("PATCH", "/api/v3/order"), ("GET", "/api/v3/../v3/order"), ("GET", "/API/V3/ORDER"),
])
def test_unknown_endpoints_are_not_guessed(method: str, path: str) -> None:
    assert ADAPTER.classify(method, path) is None


def test_upstream_hosts_come_only_from_the_table() -> None:
    prod = resolve_upstream(ADAPTER, None, False)
    assert prod.origin_for("/api/v3/order") == "https://api.binance.com"
    assert prod.origin_for("/fapi/v1/order") == "https://fapi.binance.com"
    assert prod.origin_for("/evil") is None
    test = resolve_upstream(ADAPTER, "https://testnet.binance.vision", False)
    assert test.origin_for("/fapi/v1/order") == "https://testnet.binancefuture.com"
    assert test.origin_for("/sapi/v1/capital/config/getall") is None
    emu = resolve_upstream(ADAPTER, "http://127.0.0.1:9999", True)
    assert emu.origin_for("/dapi/v1/exchangeInfo") == "http://127.0.0.1:9999" and emu.insecure_loopback
    for bad in ("https://evil.example", "http://127.0.0.1:9999"):
        with pytest.raises(ValueError):
            resolve_upstream(ADAPTER, bad, False)


def test_issued_bot_keys() -> None:
    issued = ADAPTER.issue_bot_key("hmac")
    assert len(issued.shown["api_key"]) == 64 and issued.kept.secret == Secret(issued.shown["secret"])
    ed = ADAPTER.issue_bot_key("ed25519")
    assert "PRIVATE KEY" in ed.shown["secret"] and ed.kept.secret is None and b"PUBLIC KEY" in ed.kept.public_key
    assert len(ed.shown["secret"]) <= 120  # ccxt tells Ed25519 from RSA by PEM length
    assert base64  # noqa: B018


def test_every_endpoint_ccxt_knows_is_classified() -> None:
    """Drop-in means any call an unmodified ccxt makes has a class (allowed or refused by scope, never unknown)."""
    import ccxt

    ex = ccxt.binance()
    unknown = []
    for section, methods in ex.describe()["api"].items():
        base = ex.urls["api"][section]
        prefix = base.split(".com", 1)[1]
        for method, paths in methods.items():
            for path in paths:
                if ADAPTER.classify(method.upper(), f"{prefix}/{path}") is None \
                        and ADAPTER.retired(method.upper(), f"{prefix}/{path}") is None:
                    unknown.append(f"{method.upper()} {prefix}/{path}")
    assert unknown == []
    # an endpoint Binance switched off is refused with the reason (spot listenKeys, 2026-02-20)
    assert ADAPTER.classify("POST", "/api/v3/userDataStream") is None
    assert "2026-02-20" in (ADAPTER.retired("PUT", "/api/v3/userDataStream") or "")


# --- request facts for policy -------------------------------------------------

from decimal import Decimal  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def facts_of(method: str, path: str, query: str = "", body: str = ""):  # type: ignore[no-untyped-def]
    return ADAPTER.facts(req(query, body, method=method, path=path), ADAPTER.classify(method, path))


def test_order_facts_from_body_and_query() -> None:
    f = facts_of("POST", "/api/v3/order",
                 body="symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.5&price=20000&timestamp=1")
    assert (f.action, f.symbol, f.side, f.quantity, f.price) == ("order", "BTCUSDT", "BUY", Decimal("0.5"),
                                                                 Decimal("20000"))
    # a parameter given twice (in one part, or in query and body) could be read differently: refused
    with pytest.raises(BadRequest, match="more than once"):
        facts_of("POST", "/api/v3/order", query="quantity=9", body="symbol=BTCUSDT&quantity=0.5&price=1")
    with pytest.raises(BadRequest, match="more than once"):
        facts_of("POST", "/api/v3/order", body="symbol=BTCUSDT&quantity=9&quantity=0.5&price=1")
    f = facts_of("POST", "/api/v3/order", body="symbol=BTCUSDT&type=MARKET&quoteOrderQty=150")
    assert f.quote_quantity == Decimal("150") and f.price is None
    f = facts_of("POST", "/fapi/v1/order", body="symbol=BTCUSDT&reduceOnly=true&quantity=1")
    assert f.reduce_only


def test_other_facts() -> None:
    assert facts_of("DELETE", "/api/v3/order", query="symbol=ETHUSDT&orderId=1").action == "cancel"
    lev = facts_of("POST", "/fapi/v1/leverage", body="symbol=BTCUSDT&leverage=25")
    assert (lev.action, lev.leverage) == ("leverage", Decimal("25"))
    wd = facts_of("POST", "/sapi/v1/capital/withdraw/apply", body="coin=usdt&address=0xabc&network=bsc&amount=10")
    assert (wd.action, wd.asset, wd.network, wd.address, wd.amount) == ("withdraw", "USDT", "BSC", "0xabc",
                                                                       Decimal("10"))
    assert facts_of("POST", "/api/v3/order/oco", body="symbol=BTCUSDT").action is None  # not read: refused if limited
    assert facts_of("POST", "/fapi/v1/marginType", body="symbol=BTCUSDT").action == "other"
    with pytest.raises(BadRequest):
        facts_of("POST", "/api/v3/order", body="symbol=BTCUSDT&quantity=NaN")
    with pytest.raises(BadRequest):
        facts_of("POST", "/api/v3/order", body="symbol=BTCUSDT&quantity=-1")



def test_batches_are_read_order_by_order() -> None:
    """Futures batchOrders (POST places, PUT amends): every leg valued as the single order it mirrors."""
    legs = [{"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.5", "price": "20000"},
            {"symbol": "ETHUSDT", "side": "SELL", "type": "MARKET", "quantity": 2, "reduceOnly": True}]
    f = facts_of("POST", "/fapi/v1/batchOrders", body="batchOrders=" + quote(json.dumps(legs)) + "&timestamp=1")
    assert f.action == "order" and [(o.symbol, o.quantity, o.price, o.reduce_only, o.market) for o in f.orders] == [
        ("BTCUSDT", Decimal("0.5"), Decimal("20000"), False, "usdm"), ("ETHUSDT", Decimal("2"), None, True, "usdm")]
    amend = facts_of("PUT", "/dapi/v1/batchOrders", body="batchOrders=" + json.dumps(legs[:1]))  # ccxt: raw JSON
    assert amend.action == "amend" and amend.orders[0].contract == "inverse" and amend.orders[0].market == "coinm"
    for bad in ("[", "{}", "[]", "[1]", json.dumps(legs * 3), '[{"symbol":"BTCUSDT","quantity":"1","quantity":"9"}]',
                '[{"symbol":"BTCUSDT","quantity":NaN}]', '[{"symbol":"BTCUSDT","quantity":{"a":1}}]'):
        with pytest.raises(BadRequest):
            facts_of("POST", "/fapi/v1/batchOrders", body="batchOrders=" + quote(bad))


def test_fields_the_order_type_ignores_are_conflicts() -> None:
    """A price on a market-executing type, or beside priceMatch / pegPriceType, is not what executes."""
    stop = facts_of("POST", "/fapi/v1/order", body="symbol=BTCUSDT&type=STOP_MARKET&quantity=2&price=0.1&stopPrice=1")
    assert stop.conflict and stop.price is None
    spot_stop = facts_of("POST", "/api/v3/order", body="symbol=BTCUSDT&type=STOP_LOSS&quantity=2&price=0.1")
    assert spot_stop.conflict and spot_stop.price is None
    take = facts_of("POST", "/fapi/v1/order", body="symbol=BTCUSDT&type=TAKE_PROFIT&quantity=2&price=30000&stopPrice=1")
    assert take.conflict is None and take.price == Decimal("30000")  # a futures limit order on trigger
    matched = facts_of("POST", "/fapi/v1/order", body="symbol=BTCUSDT&type=LIMIT&quantity=2&priceMatch=OPPONENT")
    assert matched.conflict is None and matched.price is None  # valued at the last price
    both = facts_of("POST", "/fapi/v1/order", body="symbol=BTCUSDT&type=LIMIT&quantity=2&price=1&priceMatch=QUEUE")
    assert both.conflict and both.price is None
    sor = facts_of("POST", "/api/v3/sor/order", body="symbol=BTCUSDT&type=MARKET&quantity=1&quoteOrderQty=5")
    assert sor.conflict and sor.quote_quantity is None
    # which of two sizes executes is unsure: what it trades too (refused under a position cap); a price-only
    # conflict leaves its size sure
    sized = facts_of("POST", "/api/v3/order", body="symbol=BTCUSDT&type=MARKET&quantity=1&quoteOrderQty=5")
    assert sized.conflict and sized.size_unsure
    assert not (stop.size_unsure or spot_stop.size_unsure or both.size_unsure or sor.size_unsure)
    replace = facts_of("POST", "/api/v3/order/cancelReplace",
                       body="symbol=BTCUSDT&cancelOrderId=1&type=LIMIT&quantity=1&price=20000")
    assert (replace.action, replace.quantity, replace.price) == ("order", Decimal("1"), Decimal("20000"))
    amend = facts_of("PUT", "/fapi/v1/order", body="symbol=BTCUSDT&orderId=1&side=BUY&quantity=1&price=20000")
    assert (amend.action, amend.quantity, amend.market, amend.order_id) == ("amend", Decimal("1"), "usdm", "1")
    assert facts_of("PUT", "/fapi/v1/order", body="symbol=BTCUSDT&orderId=007&side=BUY&quantity=1&price=1").order_id \
        == "7"  # as Binance reads it (a padded id named no order in the book)
    with pytest.raises(BadRequest):
        facts_of("PUT", "/fapi/v1/order", body="symbol=BTCUSDT&orderId=7e1&side=BUY&quantity=1&price=1")
    with pytest.raises(BadRequest):  # which one Binance reads is not documented: neither is believed
        facts_of("PUT", "/fapi/v1/order", body="symbol=BTCUSDT&orderId=7&orderId=8&side=BUY&quantity=1&price=1")
    # portfolio margin's Modify Order (session 18's second review: unread, so an unlimited bot grew another bot's)
    for path, market in (("/papi/v1/um/order", "papi-um"), ("/papi/v1/cm/order", "papi-cm")):
        pm = facts_of("PUT", path, body="symbol=BTCUSDT&orderId=7&side=BUY&quantity=50&price=20000")
        assert (pm.action, pm.market, pm.order_id, pm.quantity) == ("amend", market, "7", Decimal("50"))
        assert facts_of("PUT", path, body="symbol=BTCUSDT&origClientOrderId=v-1&side=BUY&quantity=50"
                        "&price=20000").order_id is None  # a client id: refused (decide._amend_leg)

@given(qty=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1000"), places=4),
       price=st.decimals(min_value=Decimal("1"), max_value=Decimal("100000"), places=2),
       qty_in_query=st.booleans(), decoy=st.booleans())
@settings(max_examples=200)
def test_no_order_above_the_cap_whatever_its_spelling(qty: Decimal, price: Decimal, qty_in_query: bool,
                                                      decoy: bool) -> None:
    """Parameters in the query or the body, a smaller decoy quantity beside the real one: never allowed above
    the cap (a decoy makes the request ambiguous, so it is refused outright)."""
    from keyproxy.policy.decide import Counters, decide
    from keyproxy.policy.model import parse_policy

    body = f"symbol=BTCUSDT&side=BUY&type=LIMIT&price={price}" + ("&quantity=0.0000001" if decoy else "")
    query = f"quantity={qty}" if qty_in_query else ""
    if not qty_in_query:
        body += f"&quantity={qty}"
    if decoy:
        with pytest.raises(BadRequest):
            facts_of("POST", "/api/v3/order", query=query, body=body)
        return
    facts = facts_of("POST", "/api/v3/order", query=query, body=body)
    d = decide(facts, "trade", parse_policy({"scopes": "trade", "max_order_notional": 1000}), Counters(), 0,
               bot="b", account="a")
    assert d.allow == (qty * price <= 1000)


def test_prices_from_public_tickers() -> None:
    assert ADAPTER.prices("/api/v3/ticker/24hr", b'{"symbol":"BTCUSDT","lastPrice":"50000.1"}') == {
        "BTCUSDT": Decimal("50000.1")}
    assert ADAPTER.prices("/api/v3/ticker/price", b'[{"symbol":"ETHUSDT","price":"3000"}]') == {
        "ETHUSDT": Decimal("3000")}
    assert ADAPTER.prices("/api/v3/account", b'{"symbol":"X","price":"1"}') == {}
    assert ADAPTER.prices("/api/v3/ticker/price", b"not json") == {}


def _reference_percent_encode(raw: bytes) -> bytes:
    """The plain byte loop, kept as the specification of percent_encode_payload."""
    import re as _re

    safe = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~=&+")
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x25 and _re.match(rb"%[0-9A-Fa-f]{2}", raw[i:i + 3]):
            out += raw[i:i + 3]
            i += 3
            continue
        out += bytes([raw[i]]) if raw[i] in safe else b"%%%02X" % raw[i]
        i += 1
    return bytes(out)


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_percent_encoding_matches_its_specification(raw: bytes) -> None:
    assert percent_encode_payload(raw) == _reference_percent_encode(raw)


def test_open_orders_counted_only_from_what_binance_confirmed() -> None:
    """A batch counts the legs answered resting; cancelReplace closes and opens only what its answer says."""
    import json

    from keyproxy.exchanges.base import OrderBookChange, OutboundRequest

    legs = [{"symbol": "BTCUSDT", "type": "LIMIT", "quantity": "1", "price": "1"}] * 3
    facts = facts_of("POST", "/fapi/v1/batchOrders", body="batchOrders=" + json.dumps(legs))
    out = OutboundRequest("POST", "https://fapi.binance.com", "/fapi/v1/batchOrders", "", {}, b"")
    answer = [{"status": "NEW"}, {"code": -2019, "msg": "Margin is insufficient."}, {"status": "FILLED"}]
    change = ADAPTER.order_book_change(out, 200, json.dumps(answer).encode(), facts)
    assert change.opened == ("usdm:BTCUSDT",) and change.closed == ()
    assert ADAPTER.order_book_change(out, 200, b"", facts).opened == ("usdm:BTCUSDT",) * 3  # unread: all counted
    facts = facts_of("POST", "/api/v3/order/cancelReplace", body="symbol=BTCUSDT&type=LIMIT&quantity=1&price=1")
    out = OutboundRequest("POST", "https://api.binance.com", "/api/v3/order/cancelReplace", "", {}, b"")
    failed = {"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED", "cancelResponse": {"code": -2011},
              "newOrderResponse": None}
    assert ADAPTER.order_book_change(out, 200, json.dumps(failed).encode(), facts) == OrderBookChange()
    done = {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS", "cancelResponse": {"status": "CANCELED"},
            "newOrderResponse": {"status": "NEW"}}
    change = ADAPTER.order_book_change(out, 200, json.dumps(done).encode(), facts)
    assert change.opened == change.closed == ("spot:BTCUSDT",)


def test_an_order_of_unknown_fate_counts_open() -> None:
    """Session 28's review: Binance's -1007 ("execution status unknown", HTTP 408 on futures) or -1006 "does not
    always mean the request failed": such an order counts as open until a whole listing says otherwise, on REST, in
    a batch's entry and on the WebSocket API; a plain refusal counts nothing."""
    import json

    from keyproxy.exchanges.base import OrderBookChange, OutboundRequest, IncomingRequest

    facts = facts_of("POST", "/api/v3/order", body="symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=1")
    out = OutboundRequest("POST", "https://api.binance.com", "/api/v3/order", "", {}, b"")
    for status, code in ((408, -1007), (503, -1007), (500, -1006), (408, 0)):
        answer = json.dumps({"code": code, "msg": "Timeout waiting for response from backend server."}).encode()
        assert ADAPTER.order_book_change(out, status, answer, facts).opened == ("spot:BTCUSDT",), (status, code)
    assert ADAPTER.order_book_change(out, 400, b'{"code": -2010, "msg": "insufficient"}', facts) == OrderBookChange()
    legs = [{"symbol": "BTCUSDT", "type": "LIMIT", "quantity": "1", "price": "1"}] * 2
    batch = facts_of("POST", "/fapi/v1/batchOrders", body="batchOrders=" + json.dumps(legs))
    out = OutboundRequest("POST", "https://fapi.binance.com", "/fapi/v1/batchOrders", "", {}, b"")
    answer = json.dumps([{"code": -1007, "msg": "unknown"}, {"code": -2019, "msg": "Margin is insufficient."}])
    assert ADAPTER.order_book_change(out, 200, answer.encode(), batch).opened == ("usdm:BTCUSDT",)
    dialect = ADAPTER.websocket("/ws-api/v3")
    assert dialect is not None
    frame = {"id": 1, "method": "order.place", "params": {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                          "quantity": "1", "price": "1", "timestamp": 1}}
    req = IncomingRequest("order.place", "/ws-api/v3", "", {}, json.dumps(frame).encode())
    ws_facts = dialect.facts(req, dialect.classify("order.place", "/ws-api/v3"))
    ws_out = OutboundRequest("order.place", "wss://ws-api.binance.com", "/ws-api/v3", "", {},
                             json.dumps(frame).encode())
    unknown = {"id": 1, "status": 408, "error": {"code": -1007, "msg": "Timeout waiting for response"}}
    assert dialect.order_book_change(ws_out, 408, json.dumps(unknown).encode(), ws_facts).opened == ("spot:BTCUSDT",)
    refused = {"id": 1, "status": 400, "error": {"code": -2010, "msg": "insufficient"}}
    assert dialect.order_book_change(ws_out, 400, json.dumps(refused).encode(), ws_facts) == OrderBookChange()


def test_minus_2015_refuses_the_key_only_on_a_spot_read() -> None:
    from keyproxy.exchanges.base import KeyRejection

    body = b'{"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}'
    assert ADAPTER.key_rejected(401, body, "GET", "/api/v3/account") is KeyRejection.INVALID
    assert ADAPTER.key_rejected(401, body) is KeyRejection.INVALID  # keyproxy's own checks: the safe reading
    assert ADAPTER.key_rejected(401, body, "POST", "/fapi/v1/order") is KeyRejection.DENIED
    assert ADAPTER.key_rejected(401, body, "POST", "/api/v3/order") is KeyRejection.DENIED
    assert ADAPTER.key_rejected(401, b'{"code": -2008}', "POST", "/fapi/v1/order") is KeyRejection.INVALID


def test_cancels_name_the_orders_they_cancel() -> None:
    """What OrderOwners.only_own checks: a cancel's exchange ids (as Binance reads them), client ids, or every
    order of its symbol; a batch cancel's JSON lists, refused when not lists of ids."""
    one = facts_of("DELETE", "/api/v3/order", "symbol=BTCUSDT&orderId=007&origClientOrderId=c1")
    assert (one.action, one.cancels, one.cancels_by_client, one.scope) == ("cancel", ("7",), ("c1",), "spot:BTCUSDT")
    batch = facts_of("DELETE", "/fapi/v1/batchOrders", 'symbol=BTCUSDT&orderIdList=[1,2]&origClientOrderIdList=["a"]')
    assert (batch.cancels, batch.cancels_by_client) == (("1", "2"), ("a",))
    for bad in ("orderIdList=[true]", "orderIdList=1", 'orderIdList=["1"]', "origClientOrderIdList=[1]",
                "orderIdList=[NaN]"):
        with pytest.raises(BadRequest):
            facts_of("DELETE", "/fapi/v1/batchOrders", f"symbol=BTCUSDT&{bad}")
    assert facts_of("DELETE", "/api/v3/openOrders", "symbol=BTCUSDT").cancels_all
    for path in ("/papi/v1/um/allOpenOrders", "/papi/v1/margin/allOpenOrders", "/eapi/v1/allOpenOrders"):
        every = facts_of("DELETE", path, "symbol=BTCUSDT")  # were unread (refused to bots with limits, and
        assert every.action == "cancel" and every.cancels_all, path  # unchecked for a bot without)
    countdown = facts_of("POST", "/fapi/v1/countdownCancelAll", "symbol=BTCUSDT&countdownTime=1000")
    assert countdown.cancels_all and countdown.cancels_later and countdown.scope == "usdm:BTCUSDT"
    disarm = facts_of("POST", "/fapi/v1/countdownCancelAll", "symbol=BTCUSDT&countdownTime=0")
    assert not disarm.cancels_all and not disarm.cancels_later  # 0 turns it off: it cancels nothing
    # a superscript zero is a digit to str.isdigit but not to int(): it was a 500 (session 23's second review)
    assert facts_of("POST", "/fapi/v1/countdownCancelAll", "symbol=BTCUSDT&countdownTime=%E2%81%B0").cancels_later
    replace = facts_of("POST", "/api/v3/order/cancelReplace", "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
                       "&quantity=1&price=1&cancelReplaceMode=STOP_ON_FAILURE&cancelOrigClientOrderId=c2")
    assert (replace.action, replace.cancels, replace.cancels_by_client) == ("order", (), ("c2",))
    with pytest.raises(BadRequest):  # keyproxy reads it for its owner check: given twice, refused
        facts_of("DELETE", "/api/v3/order", "symbol=BTCUSDT&orderId=1&orderId=2")


def test_cancels_of_orders_keyproxy_cannot_attribute_are_judged_as_cancel_alls() -> None:
    """Session 19's review: an order list's cancel (by `orderListId`), algo and conditional cancels and an options
    batch cancel named no order keyproxy records, so any bot could cancel another's; a keepPriority amend was
    unread (action None: unchecked for a bot without limits). Now cancel-alls of their symbol, and an amend."""
    # (one algo order's cancel names it by its algoId since session 29: test_an_algo_orders_ids_are_the_accounts...)
    for path in ("/api/v3/orderList", "/sapi/v1/margin/orderList", "/papi/v1/margin/orderList",
                 "/fapi/v1/algoOpenOrders", "/papi/v1/um/conditional/order", "/papi/v1/um/algo/allOpenOrders",
                 "/eapi/v1/batchOrders"):
        f = facts_of("DELETE", path, "symbol=BTCUSDT&orderListId=5&algoId=9")
        assert f.action == "cancel" and f.cancels_all, path
        # conditional and algo orders show in no listing: refused once another bot placed there (session 20)
        assert f.cancels_unlisted == ("algo" in path.lower() or "conditional" in path), path
    keep = facts_of("PUT", "/api/v3/order/amend/keepPriority", "symbol=BTCUSDT&orderId=0123&newQty=0.5")
    assert (keep.action, keep.order_id, keep.quantity, keep.scope) == ("amend", "123", Decimal("0.5"), "spot:BTCUSDT")


def test_an_algo_order_is_read_as_the_order_it_becomes_under_the_algo_services_names() -> None:
    """`POST /fapi/v1/algoOrder` (futures conditional orders since December 2025): `triggerPrice` and
    `activatePrice` are its stop and activation prices (a `stopPrice` there means nothing to Binance and is not
    read); closePosition is reduce-only; an algoType other than CONDITIONAL is not read."""
    f = facts_of("POST", "/fapi/v1/algoOrder", body="algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP"
                 "&quantity=0.5&price=18900&triggerPrice=19000&stopPrice=1&reduceOnly=true&clientAlgoId=a1")
    assert (f.action, f.market, f.side, f.order_type, f.quantity, f.price, f.trigger_price, f.reduce_only) == (
        "order", "usdm", "SELL", "STOP", Decimal("0.5"), Decimal("18900"), Decimal("19000"), True)
    assert f.conditional and f.scope == "usdm:BTCUSDT"
    trailing = facts_of("POST", "/fapi/v1/algoOrder", body="algoType=CONDITIONAL&symbol=BTCUSDT&side=BUY"
                        "&type=TRAILING_STOP_MARKET&quantity=1&activatePrice=21000&callbackRate=1")
    assert (trailing.trigger_price, trailing.trigger_relative, trailing.price) == (Decimal("21000"), True, None)
    closes = facts_of("POST", "/fapi/v1/algoOrder", body="algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL"
                      "&type=STOP_MARKET&closePosition=true&triggerPrice=19000")
    assert closes.reduce_only and closes.quantity is None
    assert facts_of("POST", "/fapi/v1/algoOrder", body="algoType=VP&symbol=BTCUSDT&side=SELL&quantity=1"
                    ).action is None
    assert facts_of("POST", "/papi/v1/um/algo/order", body="algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL"
                    "&type=STOP_MARKET&quantity=1&triggerPrice=1").market == "papi-um"


def test_an_algo_orders_ids_are_the_accounts_and_its_cancel_names_them() -> None:
    from keyproxy.exchanges.base import OutboundRequest

    answer = {"algoId": 1000000033225453, "clientAlgoId": "x-1", "algoStatus": "NEW", "orderType": "STOP_MARKET"}
    body = json.dumps(answer).encode()
    assert ADAPTER.placed_order_ids(200, body) == ("algo#1000000033225453",)
    # the client id also as the matching engine's: the order a trigger creates carries it (a cancel by it is checked)
    assert ADAPTER.placed_client_ids(200, body) == ("algo#x-1", "x-1")
    assert not ADAPTER.id_per_market("algo#1000000033225453") and ADAPTER.id_per_market("88937381063")
    cancel = facts_of("DELETE", "/fapi/v1/algoOrder", query="algoId=0001000000033225453&clientAlgoId=x-1")
    assert (cancel.action, cancel.cancels, cancel.cancels_by_client, cancel.cancels_all) == (
        "cancel", ("algo#1000000033225453",), ("algo#x-1",), False)
    with pytest.raises(BadRequest, match="algoId"):
        facts_of("DELETE", "/fapi/v1/algoOrder", query="algoId=1e3")
    out = OutboundRequest("DELETE", "https://fapi.binance.com", "/fapi/v1/algoOrder", "algoId=0042", {}, b"")
    assert ADAPTER.cancelled_ids(out) == (("algo#42",), False)
    assert facts_of("DELETE", "/fapi/v1/algoOpenOrders", query="symbol=BTCUSDT").cancels_unlisted


def test_open_algo_orders_are_counted_apart_from_the_symbols_other_orders() -> None:
    """A listing of a symbol's orders never shows its algo orders (and the reverse): each sets its own count. Algo
    orders are counted per market (`usdm-algo:*`): a cancel names one by id alone, so only the market's whole listing
    sets their count (a symbol's listing or cancel-all sets nothing)."""
    from keyproxy.exchanges.base import OrderBookChange, OutboundRequest

    def change(method: str, path: str, query: str, body: str, answer: object, status: int = 200) -> OrderBookChange:
        facts = facts_of(method, path, query=query, body=body)
        out = OutboundRequest(method, "https://fapi.binance.com", path, query, {}, body.encode())
        return ADAPTER.order_book_change(out, status, json.dumps(answer).encode(), facts)

    place = "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=1&triggerPrice=1"
    assert change("POST", "/fapi/v1/algoOrder", "", place, {"algoId": 1, "algoStatus": "NEW"}).opened == (
        "usdm-algo:*",)
    assert change("POST", "/fapi/v1/algoOrder", "", place, {"algoId": 1, "algoStatus": "REJECTED"}).opened == ()
    assert change("POST", "/fapi/v1/algoOrder", "", place, {"code": -1006, "msg": "?"}, 500).opened == (
        "usdm-algo:*",)  # its fate unknown: counted
    for named in ("algoId=1", "algoId=1&symbol=ETHUSDT"):  # the symbol a cancel names is not where it frees
        assert change("DELETE", "/fapi/v1/algoOrder", named, "", {"algoId": 1, "code": "200", "msg": "success"}
                      ).closed == ("usdm-algo:*",)
    assert change("DELETE", "/fapi/v1/algoOrder", "algoId=1", "", {"code": -2011, "msg": "Unknown"}).closed == ()
    assert change("DELETE", "/fapi/v1/algoOpenOrders", "symbol=BTCUSDT", "", {"code": 200, "msg": "done"}
                  ) == OrderBookChange()
    assert change("GET", "/fapi/v1/openAlgoOrders", "", "", [{"algoId": 1}, {"algoId": 2}]).counted == (
        ("usdm-algo:*", 2),)
    for query in ("symbol=BTCUSDT", "symbol=btc-usdt", "algoId=1", "algoType=X"):  # part of the market's: nothing
        assert change("GET", "/fapi/v1/openAlgoOrders", query, "", []).counted == (), query


def test_what_an_algo_order_became_is_read_from_its_answers_events_and_keyproxys_own_query() -> None:
    """A triggered algo order names the order it became (`actualOrderId`, the event's `ai`): the book follows that
    one as the bot's (proxy/risk.py `_spawn`); keyproxy's own reconciliation asks for an algo order by its algoId."""
    from keyproxy.exchanges.base import OutboundRequest
    from keyproxy.exchanges.binance_fills import binance_stream_updates

    def updates(path: str, answer: object) -> tuple:  # type: ignore[type-arg]
        out = OutboundRequest("GET", "https://fapi.binance.com", path, "", {}, b"")
        return ADAPTER.order_updates(out, 200, json.dumps(answer).encode())

    doc = {"algoId": 7, "clientAlgoId": "c", "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.015", "price": "0",
           "algoStatus": "FINISHED", "actualOrderId": "88937381063", "orderType": "STOP_MARKET"}
    [u] = updates("/fapi/v1/algoOrder", doc)
    assert (u.order_id, u.scope, u.side, u.quantity, u.price, u.final, u.spawned) == (
        "algo#7", "usdm:BTCUSDT", "buy", Decimal("0.015"), None, True, "88937381063")
    [new] = updates("/fapi/v1/openAlgoOrders", [{**doc, "algoStatus": "NEW", "actualOrderId": ""}])
    assert (new.final, new.spawned) == (False, "")
    for status in ("TRIGGERING", "TRIGGERED", "FINISHED", "SOMETHING_NEW"):  # no order named: its size still counts
        assert updates("/fapi/v1/algoOrder", {**doc, "algoStatus": status, "actualOrderId": ""})[0].final is False
    assert updates("/fapi/v1/algoOrder", {**doc, "algoStatus": "EXPIRED", "actualOrderId": ""})[0].final is True
    [gone] = updates("/fapi/v1/algoOrder", {"algoId": 7, "clientAlgoId": "c", "code": "200", "msg": "success"})
    assert (gone.order_id, gone.scope, gone.final) == ("algo#7", "", True)
    event = {"e": "ALGO_UPDATE", "T": 1, "E": 1, "o": {"caid": "c", "aid": 7, "at": "CONDITIONAL", "o": "STOP_MARKET",
                                                      "s": "BTCUSDT", "S": "SELL", "q": "0.01", "X": "TRIGGERED",
                                                      "ai": "881", "p": "0"}}
    [streamed] = binance_stream_updates(json.dumps(event))
    assert (streamed.order_id, streamed.side, streamed.final, streamed.spawned) == ("algo#7", "sell", True, "881")
    assert ADAPTER.order_query_request("usdm:BTCUSDT", "algo#7") == ("GET", "/fapi/v1/algoOrder", "algoId=7", b"")
    assert ADAPTER.conditional_reconcile_request("usdm:BTCUSDT", 5) == (
        "GET", "/fapi/v1/allAlgoOrders", "symbol=BTCUSDT&startTime=5&limit=1000", b"")
    assert ADAPTER.conditional_reconcile_request("spot:BTCUSDT", 5) is None


def test_a_stop_cancelled_by_its_client_id_alone_is_judged_as_a_cancel_all() -> None:
    """Session 30's third review: a stop's client-id records pruned, a cancel by `clientAlgoId` alone named an order of
    no owner and passed. Judged as OKX's `algoClOrdId` cancel is: refused once another bot placed anything."""
    f = facts_of("DELETE", "/fapi/v1/algoOrder", query="clientAlgoId=x-1")
    assert (f.action, f.cancels_all, f.cancels_unlisted, f.cancels, f.cancels_by_client) == (
        "cancel", True, True, (), ())


def test_what_session_32s_review_found_is_read() -> None:
    """Self-trade prevention asked to expire the resting order met (`cancels_met`); smart order routing (`routed`);
    a margin order list's borrowing; a keepPriority amend's new client id."""
    order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=20000"
    for mode, met in (("EXPIRE_MAKER", True), ("EXPIRE_BOTH", True), ("DECREMENT", True), ("EXPIRE_TAKER", False),
                      ("NONE", False)):
        assert facts_of("POST", "/api/v3/order", order + f"&selfTradePreventionMode={mode}").cancels_met is met
    assert facts_of("POST", "/api/v3/sor/order", order).routed and not facts_of("POST", "/api/v3/order", order).routed
    oco = facts_of("POST", "/sapi/v1/margin/order/oco", order + "&sideEffectType=MARGIN_BUY")
    assert oco.action is None and oco.borrows
    assert not facts_of("POST", "/api/v3/orderList/oco", order + "&sideEffectType=MARGIN_BUY").borrows
    kept = facts_of("PUT", "/api/v3/order/amend/keepPriority", "symbol=BTCUSDT&orderId=5&newQty=0.5"
                    "&newClientOrderId=mine-2")
    assert (kept.action, kept.client_id) == ("amend", "mine-2")
    # an order list takes self-trade prevention too; a test order places nothing, so it routes and meets nothing
    assert facts_of("POST", "/api/v3/orderList/oto", order + "&selfTradePreventionMode=EXPIRE_MAKER").cancels_met
    test = facts_of("POST", "/api/v3/sor/order/test", order + "&selfTradePreventionMode=EXPIRE_MAKER")
    assert not test.routed and not test.cancels_met
