"""Kraken adapter: the published API-Sign example, drop-in verification, nonce replacement, classification.

Signing: https://docs.kraken.com/api/docs/guides/spot-rest-auth (vector in tests/vectors/kraken/).
Endpoints: krakenfx/api-specs spot-rest/openapi_v3.yaml @ 2a6afd62 and ccxt's kraken api table.
Errors: https://docs.kraken.com/api/docs/guides/spot-errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from keyproxy.exchanges import default_adapters
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, EndpointClass, IncomingRequest, RealKey, SignContext, resolve_upstream,
)
from keyproxy.exchanges.kraken import MAX_NONCE, Kraken, api_sign
from keyproxy.exchanges.kraken_facts import kraken_market_names
from keyproxy.secret import Secret

VECTOR = json.loads((Path(__file__).parents[1] / "vectors" / "kraken" / "signing.json").read_text())
ADAPTER = Kraken()
ORIGIN = "https://api.kraken.com"
ADD_ORDER = ADAPTER.classify("POST", "/0/private/AddOrder")
BALANCE = ADAPTER.classify("POST", "/0/private/Balance")
BATCH = ADAPTER.classify("POST", "/0/private/AddOrderBatch")
FORM = "application/x-www-form-urlencoded"
BOT_SECRET = base64.b64encode(b"virtual secret of the bot, 64 bytes long .......................").decode()


def reference_sign(secret_b64: str, path: str, nonce: str, body: bytes) -> str:
    """Kraken's algorithm written out from the docs, independent of the adapter."""
    message = path.encode() + hashlib.sha256(nonce.encode() + body).digest()
    return base64.b64encode(hmac.new(base64.b64decode(secret_b64), message, hashlib.sha512).digest()).decode()


def req(body: str | bytes = "", path: str = "/0/private/AddOrder", ctype: str | None = FORM, sign: str | None = None,
        key: str | None = "VIRTUAL", query: str = "", method: str = "POST", mount: str = "") -> IncomingRequest:
    headers = {"user-agent": "test"}
    if ctype is not None:
        headers["content-type"] = ctype
    if key is not None:
        headers["api-key"] = key
    if sign is not None:
        headers["api-sign"] = sign
    raw = body.encode() if isinstance(body, str) else body
    return IncomingRequest(method, path, query, headers, raw, host="127.0.0.1:8750", mount=mount)


def signed(body: str, path: str = "/0/private/AddOrder", secret: str = BOT_SECRET, nonce: str | None = None,
           **kw: object) -> IncomingRequest:
    if nonce is None:
        nonce = body.split("nonce=", 1)[1].split("&", 1)[0] if "nonce=" in body else json.loads(body)["nonce"]
    return req(body, path, sign=reference_sign(secret, path, str(nonce), body.encode()), **kw)  # type: ignore[arg-type]


def bot() -> BotKey:
    return BotKey("VIRTUAL", "hmac", secret=Secret(BOT_SECRET))


def real() -> RealKey:
    return RealKey("hmac", Secret("REAL-API-KEY"), secret=Secret(VECTOR["private_key"]))


def ctx(nonce: int | None) -> SignContext:
    return SignContext(ORIGIN, "production", 1_700_000_000_000, nonce)


# --- published vector --------------------------------------------------------------

def test_published_vector_reference_algorithm() -> None:
    assert reference_sign(VECTOR["private_key"], VECTOR["uri_path"], str(VECTOR["nonce"]),
                          VECTOR["encoded_payload"].encode()) == VECTOR["api_sign"]
    assert api_sign(VECTOR["private_key"].encode(), VECTOR["uri_path"], str(VECTOR["nonce"]),
                    VECTOR["encoded_payload"].encode()) == VECTOR["api_sign"]


def test_published_vector_real_signing_is_byte_exact() -> None:
    """keyproxy's nonce replaces the bot's; every other byte of the body stays; API-Sign matches the docs."""
    bots_body = VECTOR["encoded_payload"].replace(str(VECTOR["nonce"]), "42")
    out = ADAPTER.sign(req(bots_body, key=None), real(), ADD_ORDER, ctx(VECTOR["nonce"]))
    assert out.body == VECTOR["encoded_payload"].encode()
    assert out.headers == {"API-Key": "REAL-API-KEY", "API-Sign": VECTOR["api_sign"], "Content-Type": FORM}
    assert (out.method, out.origin, out.path, out.query) == ("POST", ORIGIN, "/0/private/AddOrder", "")
    assert out.url == "https://api.kraken.com/0/private/AddOrder"


def test_published_vector_verifies_as_a_bot() -> None:
    key = BotKey("docs", "hmac", secret=Secret(VECTOR["private_key"]))
    v = ADAPTER.verify(req(VECTOR["encoded_payload"], sign=VECTOR["api_sign"], key="docs"), key, ADD_ORDER, 0)
    assert v.sequence == VECTOR["nonce"] and v.replay_id == "" and v.expires_ms == 0
    assert "api-key" not in v.request.headers and "api-sign" not in v.request.headers
    assert v.request.body == VECTOR["encoded_payload"].encode()
    # the same signature over a changed body does not
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(req(VECTOR["encoded_payload"].replace("1.25", "12.5"), sign=VECTOR["api_sign"]), key,
                       ADD_ORDER, 0)
    assert e.value.code == "bad_signature"


# --- drop-in verification ------------------------------------------------------------

def test_bot_signature_accepted_and_sequence_is_the_bots_nonce() -> None:
    v = ADAPTER.verify(signed("nonce=1700000000123456&pair=XBTUSD"), bot(), ADD_ORDER, 0)
    assert v.sequence == 1700000000123456


def test_mount_in_the_signed_path_is_accepted() -> None:
    """ccxt, krakenex and python-kraken-sdk sign /0/private/...; an SDK signing its full URL path works too."""
    r = signed("nonce=5", path="/acct/0/private/Balance")
    v = ADAPTER.verify(r.replace(path="/0/private/Balance", mount="/acct"), bot(), BALANCE, 0)
    assert v.sequence == 5


@pytest.mark.parametrize("mutate, code", [
    (lambda r: r.replace(headers={k: v for k, v in r.headers.items() if k != "api-sign"}), "bad_signature"),
    (lambda r: r.replace(body=r.body + b"&volume=9"), "bad_signature"),
    (lambda r: r.replace(path="/0/private/Withdraw"), "bad_signature"),
    (lambda r: r.replace(headers=r.headers | {"api-sign": "not base64!"}), "bad_signature"),
])
def test_tampered_or_unsigned_requests_are_refused(mutate, code) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(mutate(signed("nonce=7&pair=XBTUSD")), bot(), ADD_ORDER, 0)
    assert e.value.code == code


def test_wrong_secret_is_bad_signature() -> None:
    other = base64.b64encode(b"x" * 64).decode()
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(signed("nonce=7", secret=other), bot(), ADD_ORDER, 0)
    assert e.value.code == "bad_signature"
    with pytest.raises(AuthFailure):  # a bot key that is not base64 never verifies
        ADAPTER.verify(signed("nonce=7"), BotKey("VIRTUAL", "hmac", secret=Secret("%%%")), ADD_ORDER, 0)


@pytest.mark.parametrize("body, ctype, message", [
    ("pair=XBTUSD", FORM, "nonce is missing"),
    ("", FORM, "nonce is missing"),
    ("nonce=abc&pair=XBTUSD", FORM, "nonce must be an integer"),
    ("nonce=-5", FORM, "nonce must be an integer"),
    ("nonce=1.5e12", FORM, "nonce must be an integer"),
    (f"nonce={MAX_NONCE + 1}", FORM, "nonce must be an integer"),
    ("nonce=1&nonce=2", FORM, "more than one nonce"),
    ("nonce=1&non%63e=2", FORM, "more than one nonce"),  # Kraken decodes names, so keyproxy does too
    ('{"nonce": 1.5}', "application/json", "nonce must be an integer"),
    ('{"nonce": "1", "nonce": "2"}', "application/json", "more than one nonce"),
    ('{"non\\u0063e": "1", "nonce": "2"}', "application/json", "more than one nonce"),
    ('{"nonce": "1"', "application/json", "malformed JSON"),
    ('[{"nonce": "1"}]', "application/json", "must be an object"),
    ('{"nonce": "1"} x', "application/json", "data after"),
    ("nonce=1", "text/plain", "form-encoded or JSON"),
])
def test_malformed_nonce_or_body_is_bad_request(body: str, ctype: str, message: str) -> None:
    r = req(body, ctype=ctype, sign="c2lnbmF0dXJl")
    with pytest.raises(BadRequest, match=message):
        ADAPTER.verify(r, bot(), ADD_ORDER, 0)


def test_query_string_on_a_private_call_is_refused() -> None:
    """Nothing signs it, and Kraken takes private parameters in the body."""
    with pytest.raises(BadRequest, match="not the query string"):
        ADAPTER.verify(signed("nonce=7").replace(query="volume=100"), bot(), ADD_ORDER, 0)
    with pytest.raises(BadRequest, match="not the query string"):
        ADAPTER.sign(req("nonce=7", query="volume=100"), real(), ADD_ORDER, ctx(9))


def test_largest_nonce_is_accepted() -> None:
    assert ADAPTER.verify(signed(f"nonce={MAX_NONCE}"), bot(), ADD_ORDER, 0).sequence == MAX_NONCE


def test_public_endpoints_need_no_signature() -> None:
    ticker = ADAPTER.classify("GET", "/0/public/Ticker")
    v = ADAPTER.verify(req(path="/0/public/Ticker", query="pair=XBTUSD", method="GET", ctype=None), bot(), ticker, 0)
    assert v.sequence is None and "api-key" not in v.request.headers


# --- JSON bodies (ccxt's AddOrderBatch/CancelOrderBatch, python-kraken-sdk do_json) ----------------

CCXT_JSON = ('{"nonce":"1795621145856","pair":"XBTUSD",'
             '"orders":[{"ordertype":"limit","price":"1","type":"buy","volume":"1"}]}')
SDK_JSON = '{"pair": "XBTUSD", "orders": [{"price": "\u00e9 1"}], "nonce": "179562114585600000"}'


@pytest.mark.parametrize("body", [CCXT_JSON, SDK_JSON, '{"nonce": 1795621145857, "txid": "X"}'])
def test_json_bodies_verify_and_only_the_nonce_changes(body: str) -> None:
    r = signed(body, path="/0/private/AddOrderBatch", ctype="application/json; charset=utf-8")
    v = ADAPTER.verify(r, bot(), BATCH, 0)
    assert v.sequence == int(json.loads(body)["nonce"])
    out = ADAPTER.sign(v.request, real(), BATCH, ctx(2_000_000_000_000_001))
    old = json.loads(body)["nonce"]
    new = '"2000000000000001"' if isinstance(old, str) else "2000000000000001"
    old_token = f'"{old}"' if isinstance(old, str) else str(old)
    assert out.body == body.encode().replace(old_token.encode(), new.encode())
    nonce = 2_000_000_000_000_001
    assert json.loads(out.body)["nonce"] == (str(nonce) if isinstance(old, str) else nonce)
    assert out.headers["Content-Type"] == "application/json"
    assert out.headers["API-Sign"] == reference_sign(VECTOR["private_key"], "/0/private/AddOrderBatch",
                                                     "2000000000000001", out.body)


# --- token mode: strip, then sign adds keyproxy's nonce ---------------------------------------

@pytest.mark.parametrize("body, ctype, expected", [
    ("", FORM, b"nonce=77"),
    ("", None, b"nonce=77"),
    ("pair=XBTUSD&type=buy", FORM, b"nonce=77&pair=XBTUSD&type=buy"),
    ("nonce=1&pair=XBTUSD", FORM, b"nonce=77&pair=XBTUSD"),
    ("pair=X&nonce=garbage", FORM, b"pair=X&nonce=77"),  # token mode replaces whatever the bot put there
    ("", "application/json", b'{"nonce":77}'),
    ("{}", "application/json", b'{"nonce":77}'),
    ('{"txid": "O1"}', "application/json", b'{"nonce":77,"txid": "O1"}'),
    (' { } ', "application/json", b' {"nonce":77 } '),
])
def test_token_mode_adds_keyproxys_nonce(body: str, ctype: str | None, expected: bytes) -> None:
    stripped = ADAPTER.strip(req(body, path="/0/private/Balance", ctype=ctype, sign="x"))
    assert "api-key" not in stripped.headers and "api-sign" not in stripped.headers
    out = ADAPTER.sign(stripped, real(), BALANCE, ctx(77))
    assert out.body == expected
    assert out.headers["API-Sign"] == reference_sign(VECTOR["private_key"], "/0/private/Balance", "77", expected)
    assert out.headers["API-Key"] == "REAL-API-KEY"


def test_private_signing_needs_keyproxys_nonce() -> None:
    assert ADAPTER.needs_nonce is True
    with pytest.raises(ValueError, match="nonce"):
        ADAPTER.sign(req("nonce=1"), real(), ADD_ORDER, ctx(None))


def test_public_requests_go_out_unsigned() -> None:
    ticker = ADAPTER.classify("GET", "/0/public/Ticker")
    out = ADAPTER.sign(req(path="/0/public/Ticker", query="pair=XBTUSD", method="GET", ctype=None, key=None),
                       real(), ticker, ctx(None))
    assert out.headers == {} and out.url == "https://api.kraken.com/0/public/Ticker?pair=XBTUSD"


# --- real SDKs pointed at keyproxy -------------------------------------------------------------

def test_ccxt_requests_verify() -> None:
    ccxt = pytest.importorskip("ccxt")
    issued = ADAPTER.issue_bot_key("hmac")
    ex = ccxt.kraken({"apiKey": issued.shown["api_key"], "secret": issued.shown["secret"]})
    ex.urls["api"]["private"] = ex.urls["api"]["public"] = "http://127.0.0.1:8750/acct"
    calls = [("AddOrder", {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "37500", "volume": "1.25"}),
             ("Balance", {}),
             ("AddOrderBatch", {"pair": "XBTUSD", "orders": [{"ordertype": "limit", "price": "1", "type": "buy"}]}),
             ("CancelOrderBatch", {"orders": ["O1", "O2"]})]
    last = 0
    for name, params in calls:
        r = ex.sign(name, ["private"], "POST", params)
        url = urlsplit(r["url"])
        assert url.path == f"/acct/0/private/{name}"
        headers = {k.lower(): v for k, v in r["headers"].items()}
        incoming = IncomingRequest("POST", url.path[len("/acct"):], url.query, headers, r["body"].encode(),
                                   mount="/acct")
        endpoint = ADAPTER.classify("POST", incoming.path)
        assert ADAPTER.presented_key(incoming) == issued.kept.key_id
        v = ADAPTER.verify(incoming, issued.kept, endpoint, 0)
        assert v.sequence is not None and v.sequence > last
        last = v.sequence
        out = ADAPTER.sign(v.request, real(), endpoint, ctx(last + 10**6))
        assert str(last + 10**6) in out.body.decode()
        assert out.headers["API-Sign"] == reference_sign(VECTOR["private_key"], incoming.path, str(last + 10**6),
                                                         out.body)


def test_krakenex_requests_verify() -> None:
    krakenex = pytest.importorskip("krakenex")
    requests = pytest.importorskip("requests")
    sent = []

    class Capture(requests.adapters.BaseAdapter):  # type: ignore[name-defined,misc]
        def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
            sent.append(request)
            response = requests.Response()
            response.status_code, response._content = 200, b'{"error":[],"result":{}}'
            return response

        def close(self) -> None:
            pass

    issued = ADAPTER.issue_bot_key("hmac")
    api = krakenex.API(issued.shown["api_key"], issued.shown["secret"])
    api.uri = "http://127.0.0.1:8750/acct"
    api.session.mount("http://", Capture())
    api.query_private("AddOrder", {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "volume": "1.25"})
    api.query_public("Ticker", {"pair": "XBTUSD"})
    private, public = sent
    url = urlsplit(private.url)
    incoming = IncomingRequest("POST", url.path[len("/acct"):], url.query,
                               {k.lower(): v for k, v in private.headers.items()}, private.body.encode(), mount="/acct")
    v = ADAPTER.verify(incoming, issued.kept, ADD_ORDER, 0)
    assert v.sequence == int(dict(p.split("=") for p in private.body.split("&"))["nonce"])
    # "Since 2024-01-31, public endpoints only support GET" (krakenex's comment): so keyproxy classifies GET only
    assert public.method == "GET" and ADAPTER.classify("GET", urlsplit(public.url).path[len("/acct"):]) is not None


# --- classification ----------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, cls", [
    ("GET", "/0/public/Time", "public"),
    ("GET", "/0/public/AssetPairs", "public"),
    ("GET", "/0/public/Depth", "public"),
    ("POST", "/0/private/Balance", "read"),
    ("POST", "/0/private/BalanceEx", "read"),
    ("POST", "/0/private/TradeBalance", "read"),
    ("POST", "/0/private/OpenOrders", "read"),
    ("POST", "/0/private/ClosedOrders", "read"),
    ("POST", "/0/private/QueryOrders", "read"),
    ("POST", "/0/private/TradesHistory", "read"),
    ("POST", "/0/private/QueryTrades", "read"),
    ("POST", "/0/private/OpenPositions", "read"),
    ("POST", "/0/private/Ledgers", "read"),
    ("POST", "/0/private/QueryLedgers", "read"),
    ("POST", "/0/private/TradeVolume", "read"),
    ("POST", "/0/private/DepositMethods", "read"),
    ("POST", "/0/private/DepositAddresses", "read"),
    ("POST", "/0/private/DepositStatus", "read"),
    ("POST", "/0/private/WithdrawStatus", "read"),
    ("POST", "/0/private/WithdrawInfo", "read"),
    ("POST", "/0/private/WithdrawMethods", "read"),
    ("POST", "/0/private/Earn/Strategies", "read"),
    ("POST", "/0/private/AddOrder", "trade"),
    ("POST", "/0/private/AddOrderBatch", "trade"),
    ("POST", "/0/private/EditOrder", "trade"),
    ("POST", "/0/private/AmendOrder", "trade"),
    ("POST", "/0/private/CancelOrder", "trade"),
    ("POST", "/0/private/CancelAll", "trade"),
    ("POST", "/0/private/CancelAllOrdersAfter", "trade"),
    ("POST", "/0/private/CancelOrderBatch", "trade"),
    ("POST", "/0/private/Withdraw", "withdraw"),
    ("POST", "/0/private/WithdrawCancel", "withdraw"),
    ("POST", "/0/private/WalletTransfer", "transfer"),
    ("POST", "/0/private/AccountTransfer", "transfer"),
    ("POST", "/0/private/Earn/Allocate", "transfer"),
    ("POST", "/0/private/Earn/Deallocate", "transfer"),
    ("POST", "/0/private/Stake", "transfer"),
    ("POST", "/0/private/CreateSubaccount", "admin"),
])
def test_classification(method: str, path: str, cls: str) -> None:
    endpoint = ADAPTER.classify(method, path)
    assert endpoint is not None and endpoint.cls == cls
    assert endpoint.signed == (cls != "public")


@pytest.mark.parametrize("method, path", [
    ("GET", "/0/private/Balance"),  # private calls are POST only
    ("PUT", "/0/public/Time"),
    ("POST", "/0/public/Time"),  # public endpoints are GET only since 2024-01-31
    ("POST", "/0/private/balance"),
    ("POST", "/0/private/Nonexistent"),
    ("POST", "/0/public/Balance"),
    ("POST", "/0/private/Time"),
    ("POST", "/0/private/Balance/"),
    ("POST", "/0/private/../private/Balance"),
    ("POST", "/0/private/Earn"),
    ("GET", "/1/public/Time"),
    ("GET", "/0/public/"),
    ("GET", "/derivatives/api/v3/accounts"),
])
def test_unknown_endpoints_are_not_guessed(method: str, path: str) -> None:
    assert ADAPTER.classify(method, path) is None


def test_every_endpoint_ccxt_knows_is_classified() -> None:
    """Drop-in: any call an unmodified ccxt makes has a class (allowed or refused by scope, never unknown)."""
    ccxt = pytest.importorskip("ccxt")
    ex = ccxt.kraken()
    unknown, wrong_public = [], []
    api = ex.describe()["api"]
    assert set(api) == {"public", "private", "zendesk"}  # zendesk: kraken.zendesk.com help articles, not the API
    for section in ("public", "private"):
        for method, paths in api[section].items():
            for name in paths:
                path = f"/0/{section}/{name}"
                endpoint = ADAPTER.classify(method.upper(), path)
                if endpoint is None:
                    unknown.append(f"{method.upper()} {path}")
                elif (endpoint.cls is EndpointClass.PUBLIC) != (section == "public"):
                    wrong_public.append(path)
    assert unknown == [] and wrong_public == []


def test_upstream_hosts_come_only_from_the_table() -> None:
    prod = resolve_upstream(ADAPTER, None, False)
    assert prod.environment.name == "production"
    assert prod.origin_for("/0/private/AddOrder") == ORIGIN == prod.origin_for("/0/public/Time")
    assert prod.origin_for("/derivatives/api/v3/accounts") is None
    with pytest.raises(ValueError):
        resolve_upstream(ADAPTER, "https://futures.kraken.com", False)
    emu = resolve_upstream(ADAPTER, "http://127.0.0.1:9999", True)
    assert emu.origin_for("/0/private/Balance") == "http://127.0.0.1:9999"


def test_registered_as_a_default_adapter() -> None:
    assert isinstance(default_adapters()["kraken"], Kraken)


# --- credentials and errors ----------------------------------------------------------------------

def test_issued_bot_keys_look_like_krakens() -> None:
    issued = ADAPTER.issue_bot_key("hmac")
    assert set(issued.shown) == {"api_key", "secret"}
    assert len(issued.shown["api_key"]) == 56 and len(base64.b64decode(issued.shown["api_key"])) == 42
    assert len(base64.b64decode(issued.shown["secret"], validate=True)) == 64
    assert issued.kept.key_id == issued.shown["api_key"] and issued.kept.key_type == "hmac"
    assert issued.kept.secret == Secret(issued.shown["secret"]) and issued.kept.passphrase is None
    assert ADAPTER.issue_bot_key("hmac").shown != issued.shown
    with pytest.raises(ValueError):
        ADAPTER.issue_bot_key("ed25519")


@pytest.mark.parametrize("code, native, ccxt_error", [
    ("unknown_bot", "EAPI:Invalid key", "AuthenticationError"),
    ("bad_signature", "EAPI:Invalid signature", "ExchangeError"),
    ("stale_request", "EAPI:Invalid nonce", "InvalidNonce"),
    ("replayed_request", "EAPI:Invalid nonce", "InvalidNonce"),
    ("scope_denied", "EGeneral:Permission denied", "PermissionDenied"),
    ("ip_denied", "EGeneral:Permission denied", "PermissionDenied"),
    ("bad_request", "EGeneral:Invalid arguments", "BadRequest"),
    ("body_too_large", "EGeneral:Invalid arguments", "BadRequest"),
    ("unknown_endpoint", "EGeneral:Unknown method", "ExchangeError"),
    ("upstream_timeout", "EService:Deadline elapsed", "ExchangeError"),
    ("unavailable", "EService:Unavailable", "ExchangeNotAvailable"),
    ("audit_unavailable", "EService:Unavailable", "ExchangeNotAvailable"),
    ("rate_limited", "EAPI:Rate limit exceeded", "DDoSProtection"),
    ("notional_exceeded", "EOrder:Invalid order", "InvalidOrder"),
    ("notional_unknown", "EOrder:Invalid order", "InvalidOrder"),
    ("symbol_denied", "EOrder:Invalid order", "InvalidOrder"),
    ("open_orders_exceeded", "EOrder:Invalid order", "InvalidOrder"),
    ("reduce_only", "EOrder:Invalid order", "InvalidOrder"),
    ("halted", "EGeneral:Permission denied", "PermissionDenied"),
    ("outside_hours", "EGeneral:Permission denied", "PermissionDenied"),
    ("address_denied", "EGeneral:Permission denied", "PermissionDenied"),
    ("withdrawal_limit", "EGeneral:Permission denied", "PermissionDenied"),
])
def test_refusals_in_krakens_shape(code: str, native: str, ccxt_error: str) -> None:
    extra = ADAPTER.native_error(code, "why")
    assert extra == {"error": [native]}
    assert ADAPTER.refusal_status(code, 403) == 200
    ccxt = pytest.importorskip("ccxt")
    # the body keyproxy's server renders: Kraken's `error` list stays, keyproxy's code moves aside
    body = {"error": code, "message": "why", "request_id": "r", "keyproxy_error": code} | extra
    with pytest.raises(getattr(ccxt, ccxt_error)) as e:
        ccxt.kraken().handle_errors(200, "OK", "u", "POST", {}, json.dumps(body), body, {}, "")
    assert type(e.value).__name__ == ccxt_error


# --- request facts for policy ----------------------------------------------------------------------

from decimal import Decimal  # noqa: E402


# the pairs' names as keyproxy learns them from `GET /0/public/AssetPairs` (every spelling -> the altname)
PAIRS = kraken_market_names("/0/public/AssetPairs", json.dumps({"error": [], "result": {
    "XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD"}, "XETHZUSD": {"altname": "ETHUSD", "wsname": "ETH/USD"},
    "XDGUSD": {"altname": "XDGUSD", "wsname": "XDG/USD"}}}).encode())


def facts_of(path: str, body: str, ctype: str = FORM):  # type: ignore[no-untyped-def]
    return ADAPTER.facts(req(body, path=path, ctype=ctype).replace(markets=PAIRS), ADAPTER.classify("POST", path))


def test_every_spelling_of_a_pair_is_one_symbol() -> None:
    """Session 26's review (high): `XBTUSD`, `XXBTZUSD`, `XBT/USD` and WebSocket v2's `BTC/USD` are one order book,
    but were three symbols, each with its own position cap, repeated-order count and self-cross book. Every spelling
    is the pair's altname once keyproxy has Kraken's AssetPairs; a spelling it has not learned stays `#...` (the
    core fetches the pairs, then refuses what is still unknown)."""
    for pair in ("XBTUSD", "XXBTZUSD", "XBT/USD", "BTC/USD", "xbt-usd"):
        f = facts_of("/0/private/AddOrder", f"nonce=1&pair={pair}&type=buy&ordertype=limit&volume=1&price=10")
        assert f.symbol == "XBTUSD", pair
    assert facts_of("/0/private/AddOrder", "nonce=1&pair=DOGE/USD&type=buy&ordertype=limit&volume=1&price=1"
                    ).symbol == "XDGUSD"
    unknown = ADAPTER.facts(req("nonce=1&pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=10"),
                            ADAPTER.classify("POST", "/0/private/AddOrder"))
    assert unknown.symbol == "#XBTUSD"
    assert ADAPTER.market_ids(req("nonce=1&pair=XBT/USD&type=buy")) == ("#XBTUSD",)
    clash = kraken_market_names("/0/public/AssetPairs", json.dumps({"result": {
        "A": {"altname": "ABUSD", "wsname": "AB/USD"}, "B": {"altname": "XYUSD", "wsname": "AB/USD"}}}).encode())
    assert "#ABUSD" not in clash  # a spelling two pairs share names neither


def test_add_order_facts() -> None:
    f = facts_of("/0/private/AddOrder", VECTOR["encoded_payload"])
    assert (f.action, f.symbol, f.side, f.order_type, f.quantity, f.price, f.quote_quantity, f.reduce_only) == (
        "order", "XBTUSD", "BUY", "LIMIT", Decimal("1.25"), Decimal("37500"), None, False)
    f = facts_of("/0/private/AddOrder", '{"nonce":"1","pair":"XBT/USD","type":"sell","ordertype":"market",'
                 '"volume":"2","reduce_only":true,"leverage":"5:1"}', "application/json")
    assert (f.symbol, f.side, f.quantity, f.price, f.reduce_only, f.leverage) == (
        "XBTUSD", "SELL", Decimal("2"), None, True, Decimal("5"))
    # volume in quote currency
    f = facts_of("/0/private/AddOrder", "nonce=1&pair=XBTUSD&type=buy&ordertype=market&volume=150&oflags=post,viqc")
    assert (f.quantity, f.quote_quantity) == (None, Decimal("150"))
    # session 23's review: viqc elsewhere (a limit, a sell, a leveraged order) is not what Kraken documents: which
    # unit it reads `volume` in is unknown, so the order has no size (refused under a notional or position limit)
    for odd in ("type=buy&ordertype=limit&price=100", "type=sell&ordertype=market", "type=buy&ordertype=market"
                "&leverage=2"):
        f = facts_of("/0/private/AddOrder", f"nonce=1&pair=XBTUSD&{odd}&volume=150&oflags=viqc")
        assert (f.quantity, f.quote_quantity) == (None, None) and "viqc" in (f.conflict or ""), odd
    # relative prices are not valued; a *-limit order is valued at its limit price (price2)
    assert facts_of("/0/private/AddOrder", "pair=XBTUSD&ordertype=limit&price=%2B1.5%25&volume=1").price is None
    assert facts_of("/0/private/AddOrder", "pair=XBTUSD&ordertype=trailing-stop&price=-5&volume=1").price is None
    f = facts_of("/0/private/AddOrder", "pair=XBTUSD&ordertype=stop-loss-limit&price=30000&price2=29000&volume=1")
    assert (f.price, f.trigger_price) == (Decimal("29000"), Decimal("30000"))
    # a stop-loss (no -limit) executes at market once triggered: `price` is its trigger, never a limit (session 18's
    # review: a buy stop at price=1 was valued 10 x 1 and bought 10 XBT at the market)
    stop = facts_of("/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=stop-loss&price=1&volume=10")
    assert (stop.price, stop.trigger_price, stop.conflict) == (None, Decimal("1"), None)
    from keyproxy.policy.valuation import notional
    assert notional(stop, Decimal("50000")) == Decimal("500000") and notional(stop, None) is None
    assert facts_of("/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=take-profit&price=%2B5%25&volume=1"
                    ).conflict  # a relative trigger: what it executes at is set by the market
    assert facts_of("/0/private/AddOrder", "pair=XBTUSD&volume=1&leverage=3").leverage == Decimal("3")
    edit = facts_of("/0/private/EditOrder", "pair=XBTUSD&txid=O1&volume=3&price=10")
    assert (edit.action, edit.quantity, edit.order_id) == ("amend", Decimal("3"), "O1")
    # a userref (digits) is a client reference several orders may share: no order id keyproxy could check
    assert facts_of("/0/private/EditOrder", "pair=XBTUSD&txid=12345&volume=3&price=10").order_id is None
    decoy = facts_of("/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=market&volume=2&price=0.1")
    assert decoy.conflict and decoy.price is None  # Kraken ignores a market order's price


def test_add_order_batch_is_read_order_by_order() -> None:
    """ccxt's create_orders sends AddOrderBatch as JSON: each order valued; bad shapes are bad requests."""
    body = json.dumps({"nonce": "1", "pair": "XBTUSD", "orders": [
        {"ordertype": "limit", "type": "buy", "volume": "1", "price": "20000"},
        {"ordertype": "market", "type": "sell", "volume": "2", "oflags": "viqc"}]})
    f = facts_of("/0/private/AddOrderBatch", body, "application/json")
    assert f.action == "order" and [(o.symbol, o.quantity, o.quote_quantity, o.price) for o in f.orders] == [
        ("XBTUSD", Decimal("1"), None, Decimal("20000")), ("XBTUSD", None, None, None)]  # viqc on a sell: no size
    for orders in ([], [{"volume": "1"}], [{"volume": "1"}] * 16, [1, 2]):
        with pytest.raises(BadRequest):
            facts_of("/0/private/AddOrderBatch", json.dumps({"pair": "XBTUSD", "orders": orders}), "application/json")
    assert facts_of("/0/private/AddOrderBatch", "nonce=1&orders[0][volume]=1").action is None  # form: not read


def test_open_orders_only_from_what_kraken_confirmed() -> None:
    from keyproxy.exchanges.kraken_facts import kraken_order_book_change as change

    order = facts_of("/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=1")
    cancel = facts_of("/0/private/CancelOrder", "nonce=1&txid=O1")

    def answer(doc: dict) -> bytes:  # type: ignore[type-arg]
        return json.dumps(doc).encode()

    assert change("/0/private/AddOrder", 200, answer({"error": [], "result": {"txid": ["O1"]}}), order).opened == (
        "spot:XBTUSD",)
    assert change("/0/private/AddOrder", 200, answer({"error": ["EOrder:Insufficient funds"]}), order).opened == ()
    unknown = answer({"error": ["EOrder:Unknown order"]})  # HTTP 200, as Kraken answers it
    assert change("/0/private/CancelOrder", 200, unknown, cancel).closed == ()
    assert change("/0/private/CancelOrder", 200, answer({"error": [], "result": {"count": 2}}), cancel).closed == (
        "spot:*", "spot:*")
    listed = answer({"error": [], "result": {"open": {"O1": {"descr": {"pair": "XBTUSD"}},
                                                      "O2": {"descr": {"pair": "ETHUSD"}}}}})
    opened = change("/0/private/OpenOrders", 200, listed, facts_of("/0/private/OpenOrders", "nonce=1"))
    assert opened.reset == ("spot",) and dict(opened.counted) == {"spot:XBTUSD": 1, "spot:ETHUSD": 1}


@pytest.mark.parametrize("body, ctype", [
    ("pair=XBTUSD&volume=1&volume=100", FORM),  # a decoy: which one would Kraken use?
    ('{"pair":"XBTUSD","volume":"1","volume":"100"}', "application/json"),
    ("pair=XBTUSD&volume=NaN", FORM),
    ("pair=XBTUSD&volume=-1", FORM),
    ("pair=XBTUSD&volume=1&leverage=5:2", FORM),
    ('{"pair":"XBTUSD","volume":{"a":1}}', "application/json"),
    ('["pair"]', "application/json"),
])
def test_unreadable_order_values_are_bad_requests(body: str, ctype: str) -> None:
    with pytest.raises(BadRequest):
        facts_of("/0/private/AddOrder", body, ctype)


def test_other_facts() -> None:
    assert facts_of("/0/private/CancelOrder", "nonce=1&txid=O1").action == "cancel"
    assert facts_of("/0/private/CancelAll", "nonce=1").action == "cancel"
    assert facts_of("/0/private/Balance", "nonce=1").action == "other"
    assert facts_of("/0/private/WalletTransfer", "nonce=1&asset=XBT&amount=1").action == "other"
    # AmendOrder changes an order in place (its id kept): read as an amend of the order its txid names; a
    # cl_ord_id or a userref names none keyproxy can check (refused), a relative price is a conflict
    amend = facts_of("/0/private/AmendOrder", "nonce=1&txid=OABCDE-FGHIJ-KLMNOP&order_qty=5&limit_price=100")
    assert (amend.action, amend.order_id, amend.quantity, amend.price) == ("amend", "OABCDE-FGHIJ-KLMNOP",
                                                                          Decimal("5"), Decimal("100"))
    assert facts_of("/0/private/AmendOrder", "nonce=1&cl_ord_id=victim-1&order_qty=5").order_id is None
    assert facts_of("/0/private/AmendOrder", "nonce=1&txid=O1&limit_price=%2B1%25").conflict
    # the bot gets a virtual token, which trades only through keyproxy: a read, like a listenKey
    assert facts_of("/0/private/GetWebSocketsToken", "nonce=1").action == "other"
    assert ADAPTER.classify("POST", "/0/private/GetWebSocketsToken").cls.value == "read"
    wd = facts_of("/0/private/Withdraw", "nonce=1&asset=xbt&key=cold+wallet&amount=0.5")
    assert (wd.action, wd.asset, wd.address, wd.network, wd.amount) == ("withdraw", "XBT", "cold wallet", None,
                                                                       Decimal("0.5"))
    assert facts_of("/0/private/Withdraw", "asset=XBT&key=k&address=bc1q&amount=1").address == "bc1q"
    assert ADAPTER.facts(req(path="/0/public/Ticker", method="GET"), ADAPTER.classify("GET", "/0/public/Ticker")
                         ).action == "other"


def test_prices_from_the_public_ticker() -> None:
    body = b'{"error":[],"result":{"XXBTZUSD":{"a":["30000.2","1","1.000"],"c":["30000.1","0.1"]},"BAD":{"c":["x"]}}}'
    assert ADAPTER.prices("/0/public/Ticker", body) == {"XXBTZUSD": Decimal("30000.1")}
    assert ADAPTER.prices("/0/public/Depth", body) == {}
    assert ADAPTER.prices("/0/public/Ticker", b"<html>") == {}


def test_a_cancel_names_its_orders_by_txid_and_a_userref_or_client_id_names_none() -> None:
    """Kraken's CancelOrder answer (`count`) names no order: whose orders it closed comes from the txids it sent."""
    from keyproxy.exchanges.base import OutboundRequest

    def sent(body: str, ctype: str = "application/x-www-form-urlencoded") -> tuple[tuple[str, ...], bool]:
        return ADAPTER.cancelled_ids(OutboundRequest("POST", "https://api.kraken.com", "/0/private/CancelOrder", "",
                                                     {"Content-Type": ctype}, body.encode()))
    assert sent("nonce=1&txid=OAAAAA-BBBBB-CCCCCC") == (("OAAAAA-BBBBB-CCCCCC",), False)
    assert sent("nonce=1&txid=OAAAAA-BBBBB-CCCCCC,12345") == (("OAAAAA-BBBBB-CCCCCC",), True)  # a userref too
    assert sent("nonce=1&cl_ord_id=c-1") == ((), True)
    assert sent('{"nonce": 1, "txid": ["OAAAAA-BBBBB-CCCCCC"]}', "application/json") == ((), True)  # not read


def test_a_cancel_by_any_userref_is_judged_as_a_cancel_all() -> None:
    """A userref (an int32, negative ones too) may name any bot's orders: a cancel naming one, alone or beside a
    txid, is judged as a cancel of every order (session 19's review: `-5` was read as a txid nobody owned)."""
    for txid in ("5", "-5", "+5", "OAAAAA-BBBBB-CCCCCC,7"):
        f = facts_of("/0/private/CancelOrder", f"nonce=1&txid={quote(txid)}")
        assert f.cancels_all, txid
    one = facts_of("/0/private/CancelOrder", "nonce=1&txid=OAAAAA-BBBBB-CCCCCC&cl_ord_id=c1")
    assert (one.cancels, one.cancels_by_client, one.cancels_all) == (("OAAAAA-BBBBB-CCCCCC",), ("c1",), False)


def test_a_negative_userref_is_a_userref_wherever_a_txid_is_read() -> None:
    """`order_txid` reads every integer as a userref (an int32), so an EditOrder or AmendOrder naming `-5` names no
    order keyproxy can check (an amend by a client reference: refused where it matters), as a cancel's does."""
    from keyproxy.exchanges.kraken_facts import order_txid

    assert [order_txid(t) for t in ("OAAAAA-BBBBB-CCCCCC", "5", "-5", "+5", "")] == \
        ["OAAAAA-BBBBB-CCCCCC", None, None, None, None]
    assert facts_of("/0/private/AmendOrder", "nonce=1&txid=-5&order_qty=1").order_id is None


def test_only_krakens_error_list_says_the_key_or_the_rate_is_refused() -> None:
    """An answer echoes what a bot wrote (an order's cl_ord_id): read as Kraken's own error, a bot naming its order
    "EAPI:Invalid key" had the shared key quarantined (session 24's review). Only the `error` list counts."""
    from keyproxy.exchanges.base import KeyRejection

    for text in ("EAPI:Invalid key", "EGeneral:Permission denied", "EGeneral:Temporary lockout",
                 "EAPI:Rate limit exceeded"):
        echo = json.dumps({"error": [], "result": {"open": {"OABC-1": {"cl_ord_id": text, "status": "open"}}}})
        assert ADAPTER.key_rejected(200, echo.encode()) is None
        assert ADAPTER.rate_limit_hold(200, {}, echo.encode()) is None
        assert ADAPTER.key_rejected(200, json.dumps({"error": ["EService:Unavailable"], "result": {"x": text}})
                                    .encode()) is None
    assert ADAPTER.key_rejected(200, b'{"error":["EAPI:Invalid key"]}') is KeyRejection.INVALID
    assert ADAPTER.key_rejected(200, b'{"error":["EGeneral:Permission denied"]}') is KeyRejection.DENIED
    assert ADAPTER.rate_limit_hold(200, {}, b'{"error":["EAPI:Rate limit exceeded"]}') == (3.0, "CALL_COUNTER")
    assert ADAPTER.key_rejected(200, b"not json EAPI:Invalid key") is None


def test_an_allowlist_written_in_any_spelling_allows_the_pair_and_a_cancel_needs_no_pair_list() -> None:
    """Session 26's diff review: with every spelling named `XBTUSD`, an operator's `symbols=XXBTZUSD` (what ccxt
    sends) or `BTC/USD` refused every order; the allowlist is named as the facts are. A cancel naming a pair is
    never held up for the pair list (only orders ask for it: `market_ids`)."""
    from keyproxy.policy.model import BotPolicy
    from keyproxy.proxy.markets import MarketBook
    book = MarketBook(lambda: 0.0)
    book.names["kr"] = dict(PAIRS)
    for written in ("XXBTZUSD", "BTCUSD", "XBTUSD"):
        named = book.named_policy("kr", BotPolicy(symbols=(written, "ETHUSD")))
        assert named.symbols is not None and "XBTUSD" in named.symbols and written in named.symbols
    cancel = ADAPTER.facts(req("nonce=1&pair=XBT/USD&txid=O1", path="/0/private/CancelOrder"),
                           ADAPTER.classify("POST", "/0/private/CancelOrder"))
    assert not (cancel.symbol or "").startswith("#")
    assert ADAPTER.market_ids(req("nonce=1&pair=XBTUSD&txid=O1", path="/0/private/CancelOrder")) == ()
    assert ADAPTER.market_ids(req("nonce=1&pair=XBTUSD,ETHUSD", path="/0/private/TradeVolume")) == ()


def test_an_edits_limit_and_an_amend_naming_two_orders() -> None:
    """Session 27's review: EditOrder names no order type, so a `price2` (a stop-limit's limit) went unread and
    unchecked against the band; an AmendOrder naming the bot's own txid and another bot's cl_ord_id was checked
    by the txid alone."""
    edited = facts_of("/0/private/EditOrder", "nonce=1&txid=OAAAAA-BBBBB-CCCCCC&pair=XBTUSD&volume=1&price=30000"
                      "&price2=1")
    assert edited.action == "amend" and edited.trigger_price == Decimal("30000") and edited.price == Decimal("1")
    with pytest.raises(BadRequest, match="not both"):
        facts_of("/0/private/AmendOrder", "nonce=1&txid=OMINE1-AAAAA-BBBBBB&cl_ord_id=theirs&order_qty=5")
    with pytest.raises(BadRequest, match="no ordertype"):  # naming one, which would Kraken read `price` as?
        facts_of("/0/private/EditOrder", "nonce=1&txid=OAAAAA-BBBBB-CCCCCC&pair=XBTUSD&price=30000&price2=1"
                 "&ordertype=limit")


def test_addorder_self_trade_prevention_that_cancels_the_resting_order_is_marked() -> None:
    """`stptype` cancel-oldest / cancel-both: Kraken cancels the resting order met, which may be another bot's."""
    order = "nonce=1&pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=10"
    assert not facts_of("/0/private/AddOrder", order).cancels_met
    assert not facts_of("/0/private/AddOrder", order + "&stptype=cancel-newest").cancels_met
    assert facts_of("/0/private/AddOrder", order + "&stptype=cancel-oldest").cancels_met
    assert facts_of("/0/private/AddOrder", order + "&stptype=cancel-both").cancels_met


def test_an_edit_takes_its_side_from_the_book_and_names_no_array() -> None:
    """Session 32's review: EditOrder documents no `type`; one sent with it was read as the order's side (a buy
    valued as a sell). And a form's bracketed name (`orders[0]`), which Kraken reads as an array and keyproxy did
    not read at all, is refused but where keyproxy reads it (AddOrder's `close[...]`, AddOrderBatch's `orders[...]`)."""
    edit = facts_of("/0/private/EditOrder", "nonce=1&txid=OABCDE-FGHIJ-KLMNOP&pair=XBTUSD&type=sell&volume=1&price=1")
    assert (edit.action, edit.side, edit.price, edit.replaces) == ("amend", None, Decimal("1"), True)
    # AmendOrder keeps the order's id: it replaces nothing (an unowned order's amend is not refused for it)
    assert not facts_of("/0/private/AmendOrder", "nonce=1&txid=OABCDE-FGHIJ-KLMNOP&order_qty=1").replaces
    for path, form in (("/0/private/CancelOrderBatch", "nonce=1&orders[0]=OABCDE-FGHIJ-KLMNOP"),
                       ("/0/private/CancelOrder", "nonce=1&txid[0]=OABCDE-FGHIJ-KLMNOP"),
                       ("/0/private/AddOrder", "nonce=1&pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=1"
                                               "&orders[0][volume]=5")):
        with pytest.raises(BadRequest, match="bracketed"):
            facts_of(path, form)
    close = facts_of("/0/private/AddOrder", "nonce=1&pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=1"
                                            "&close[ordertype]=limit&close[price]=2")
    assert close.untracked
    assert facts_of("/0/private/AddOrderBatch", "nonce=1&pair=XBTUSD&orders[0][volume]=1").action is None


def test_a_withdrawals_asset_has_one_name() -> None:
    """Session 32's review: `XXBT`, `XBT` and `BTC` are one asset at Kraken, and the daily cap counted each apart."""
    from keyproxy.exchanges.kraken_facts import kraken_asset_id
    for spelling, one in (("XXBT", "XBT"), ("xbt", "XBT"), ("BTC", "XBT"), ("ZUSD", "USD"), ("XETH", "ETH"),
                          ("XXDG", "XDG"), ("DOGE", "XDG"), ("SOL", "SOL"), ("XTZ", "XTZ")):
        assert kraken_asset_id(spelling) == one, spelling
    w = facts_of("/0/private/Withdraw", "nonce=1&asset=XXBT&key=k&amount=1")
    assert (w.asset, w.asset_id, w.withdrawn_asset) == ("XXBT", "XBT", "XBT")
