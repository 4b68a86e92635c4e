"""Bybit adapter: the docs' signing strings, drop-in verification, classification, re-signing.

Signing rule: https://bybit-exchange.github.io/docs/v5/guide ("Create A Request"): sign
`timestamp + api_key + recv_window + (queryString | jsonBodyString)`, HMAC-SHA256 as lower-case
hex or RSA-SHA256 as base64; accept `server_time - recv_window <= timestamp < server_time + 1000`.
Bybit publishes the strings and HMACs but not the secret behind them, so the vectors' signatures
come from the official SDK pybit over the published strings (tests/vectors/bybit/signing.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from keyproxy.exchanges import _sign
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, EndpointClass, IncomingRequest, RealKey, SignContext, resolve_upstream,
)
from keyproxy.exchanges.bybit import Bybit
from keyproxy.secret import Secret

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "bybit" / "signing.json").read_text())
CASES = VECTORS["cases"]
ADAPTER = Bybit()
GET_CASE, POST_CASE = CASES
NOW = 1658384314791 + 100
REALTIME, CREATE = "/v5/order/realtime", "/v5/order/create"
PROD = "https://api.bybit.com"


def real(kind: str = "hmac", api_key: str = "XXXXXXXXXX") -> RealKey:
    if kind == "hmac":
        return RealKey("hmac", Secret(api_key), secret=Secret(VECTORS["hmac_secret"]))
    return RealKey("rsa", Secret(api_key), private_key=Secret(VECTORS["rsa_private_key"]))


def bot(kind: str = "hmac", key_id: str = "XXXXXXXXXX") -> BotKey:
    if kind == "hmac":
        return BotKey(key_id, "hmac", secret=Secret(VECTORS["hmac_secret"]))
    return BotKey(key_id, "rsa", public_key=VECTORS["rsa_public_key"].encode())


def req(method: str = "GET", path: str = REALTIME, query: str = "", body: str = "", **headers: str) -> IncomingRequest:
    h = {k.replace("_", "-"): v for k, v in headers.items()}
    if body:
        h.setdefault("content-type", "application/json")
    return IncomingRequest(method, path, query, h, body.encode())


def signed(method: str, path: str, payload: str, ts: int, secret: str = VECTORS["hmac_secret"],
           key: str = "XXXXXXXXXX", window: str | None = "5000") -> IncomingRequest:
    message = f"{ts}{key}{window or ''}{payload}".encode()
    headers = {"x_bapi_api_key": key, "x_bapi_timestamp": str(ts), "x_bapi_sign":
               _sign.hmac_sha256_hex(secret.encode(), message)}
    if window is not None:
        headers["x_bapi_recv_window"] = window
    if method == "GET":
        return req(method, path, query=payload, **headers)
    return req(method, path, body=payload, **headers)


def case_request(case: dict, signature: str) -> IncomingRequest:  # type: ignore[type-arg]
    headers = {"x_bapi_api_key": case["api_key"], "x_bapi_timestamp": case["timestamp"],
               "x_bapi_recv_window": case["recv_window"], "x_bapi_sign": signature, "x_bapi_sign_type": "2"}
    if case["method"] == "GET":
        return req("GET", REALTIME, query=case["payload"], **headers)
    return req("POST", CREATE, body=case["payload"], **headers)


# --- the docs' examples ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
@pytest.mark.parametrize("kind", ["hmac", "rsa"])
def test_docs_examples_sign(case: dict, kind: str) -> None:  # type: ignore[type-arg]
    """keyproxy signs exactly the docs' "resulting string that needs to be signed" (pybit's signature over it)."""
    assert case["string_to_sign"] == case["timestamp"] + case["api_key"] + case["recv_window"] + case["payload"]
    incoming = ADAPTER.strip(case_request(case, "x"))
    endpoint = ADAPTER.classify(incoming.method, incoming.path)
    out = ADAPTER.sign(incoming, real(kind), endpoint, SignContext(PROD, "production", int(case["timestamp"])))
    assert out.headers["X-BAPI-SIGN"] == case["pybit_" + kind]
    assert out.headers["X-BAPI-API-KEY"] == "XXXXXXXXXX" and out.headers["X-BAPI-TIMESTAMP"] == case["timestamp"]
    assert out.headers["X-BAPI-RECV-WINDOW"] == "5000" and out.headers["X-BAPI-SIGN-TYPE"] == "2"
    expected = (case["payload"], b"") if case["method"] == "GET" else ("", case["payload"].encode())
    assert (out.query, out.body) == expected


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
@pytest.mark.parametrize("kind", ["hmac", "rsa"])
def test_docs_examples_verify(case: dict, kind: str) -> None:  # type: ignore[type-arg]
    r = case_request(case, case["pybit_" + kind])
    assert ADAPTER.presented_key(r) == "XXXXXXXXXX"
    endpoint = ADAPTER.classify(r.method, r.path)
    v = ADAPTER.verify(r, bot(kind), endpoint, int(case["timestamp"]) + 100)
    assert not any(h.startswith("x-bapi-") and h != "x-bapi-recv-window" for h in v.request.headers)
    assert v.expires_ms == int(case["timestamp"]) + 5000 + 1
    # the published HMAC was made with Bybit's own (unpublished) secret: not ours
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(case_request(case, case["published_hmac"]), bot("hmac"), endpoint, int(case["timestamp"]) + 100)
    assert e.value.code == "bad_signature"


def test_pybit_signs_the_same_string() -> None:
    """Live: the official SDK's signature function agrees with the stored vectors."""
    http_manager = pytest.importorskip("pybit._http_manager")
    for case in CASES:
        signed = http_manager.generate_signature(False, VECTORS["hmac_secret"], case["string_to_sign"])
        assert signed == case["pybit_hmac"]


# --- live clients ------------------------------------------------------------------------------------


def _from_wire(method: str, url: str, headers: dict, body: object) -> IncomingRequest:  # type: ignore[type-arg]
    u = urlsplit(url)
    raw = body.encode() if isinstance(body, str) else (body or b"")
    return IncomingRequest(method, u.path.removeprefix("/main"), u.query, {k.lower(): v for k, v in headers.items()},
                           raw, host="127.0.0.1:8750", mount="/main")


@pytest.mark.parametrize("kind", ["hmac", "rsa"])
def test_ccxt_requests_verify(kind: str) -> None:
    """An unmodified ccxt bybit whose urls['api'] all point at keyproxy (GET query and POST JSON body)."""
    import ccxt

    issued = ADAPTER.issue_bot_key(kind)
    ex = ccxt.bybit({"apiKey": issued.shown["api_key"], "secret": issued.shown["secret"]})
    ex.urls["api"] = {name: "http://127.0.0.1:8750/main" for name in ex.urls["api"]}
    for path, api, method, params in (
            ("v5/order/realtime", ["private"], "GET", {"category": "linear", "symbol": "BTCUSDT"}),
            ("v5/order/create", ["private"], "POST", {"category": "linear", "symbol": "BTCUSDT", "qty": "0.1"})):
        sent = ex.sign(path, api, method, params)
        incoming = _from_wire(method, sent["url"], sent["headers"], sent["body"])
        endpoint = ADAPTER.classify(method, incoming.path)
        ts = int(incoming.headers["x-bapi-timestamp"])
        v = ADAPTER.verify(incoming, issued.kept, endpoint, ts)
        assert v.replay_id.startswith(issued.kept.key_id + ":")


@pytest.mark.parametrize("kind", ["hmac", "rsa"])
def test_pybit_requests_verify(kind: str) -> None:
    """Live: pybit's HTTP session with `session.endpoint` set to keyproxy's base URL."""
    unified = pytest.importorskip("pybit.unified_trading")
    issued = ADAPTER.issue_bot_key(kind)
    session = unified.HTTP(api_key=issued.shown["api_key"], api_secret=issued.shown["secret"],
                           rsa_authentication=kind == "rsa")
    session.endpoint = "http://127.0.0.1:8750/main"
    sent = []

    def capture(request: object, timeout: object = None) -> None:
        sent.append(request)
        raise RuntimeError("captured")

    session.client.send = capture
    for call, kwargs in ((session.get_open_orders, {"category": "linear", "symbol": "BTCUSDT"}),
                         (session.place_order, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                                "orderType": "Market", "qty": "0.1"})):
        with pytest.raises(RuntimeError):
            call(**kwargs)
        r = sent[-1]
        incoming = _from_wire(r.method, r.url, dict(r.headers), r.body)
        assert incoming.headers["x-bapi-sign-type"] == "2"
        ADAPTER.verify(incoming, issued.kept, ADAPTER.classify(r.method, incoming.path),
                       int(incoming.headers["x-bapi-timestamp"]))


# --- drop-in refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("ts_offset, window, ok", [
    (0, "5000", True),
    (-5000, "5000", True),  # server_time - recv_window <= timestamp
    (-5001, "5000", False),
    (-19_000, "20000", True),
    (-70_000, "60000", False),
    (999, "5000", True),  # timestamp < server_time + 1000
    (1000, "5000", False),
    (-4999, None, True),  # no header: Bybit's default 5000
    (-5001, None, False),
])
def test_timestamp_window(ts_offset: int, window: str | None, ok: bool) -> None:
    r = signed("GET", REALTIME, "category=linear", NOW + ts_offset, window=window)
    endpoint = ADAPTER.classify("GET", REALTIME)
    if ok:
        ADAPTER.verify(r, bot(), endpoint, NOW)
    else:
        with pytest.raises(AuthFailure) as e:
            ADAPTER.verify(r, bot(), endpoint, NOW)
        assert e.value.code == "stale_request"


@pytest.mark.parametrize("change, message", [
    ({"x-bapi-timestamp": "abc"}, "X-BAPI-TIMESTAMP"),
    ({"x-bapi-timestamp": "1.5e12"}, "X-BAPI-TIMESTAMP"),
    ({"x-bapi-timestamp": None}, "X-BAPI-TIMESTAMP"),
    ({"x-bapi-recv-window": "70000"}, "must not exceed 60000"),
    ({"x-bapi-recv-window": "5s"}, "X-BAPI-RECV-WINDOW"),
    ({"x-bapi-recv-window": "-1"}, "X-BAPI-RECV-WINDOW"),
])
def test_malformed_timing_is_bad_request(change: dict, message: str) -> None:  # type: ignore[type-arg]
    r = signed("GET", REALTIME, "category=linear", NOW)
    headers = {**r.headers, **{k: v for k, v in change.items() if v is not None}}
    headers = {k: v for k, v in headers.items() if change.get(k, "") is not None}
    with pytest.raises(BadRequest, match=message):
        ADAPTER.verify(r.replace(headers=headers), bot(), ADAPTER.classify("GET", REALTIME), NOW)


def test_malformed_shape_is_bad_request() -> None:
    endpoint = ADAPTER.classify("GET", REALTIME)
    get = signed("GET", REALTIME, "category=linear", NOW)
    with pytest.raises(BadRequest, match="GET carries no body"):
        ADAPTER.verify(get.replace(body=b"{}"), bot(), endpoint, NOW)
    post = signed("POST", CREATE, '{"category":"linear"}', NOW)
    with pytest.raises(BadRequest, match="not the query string"):
        ADAPTER.verify(post.replace(query="qty=100"), bot(), ADAPTER.classify("POST", CREATE), NOW)


def test_wrong_key_wrong_signature_and_tampering() -> None:
    endpoint = ADAPTER.classify("POST", CREATE)
    body = '{"category":"linear","symbol":"BTCUSDT","side":"Buy","qty":"0.1"}'
    r = signed("POST", CREATE, body, NOW)
    ADAPTER.verify(r, bot(), endpoint, NOW)
    for bad in (
        r.replace(body=body.replace("0.1", "100").encode()),  # another body
        r.replace(headers={**r.headers, "x-bapi-recv-window": "6000"}),  # the window is signed too
        r.replace(headers={**r.headers, "x-bapi-timestamp": str(NOW - 1)}),
        r.replace(headers={**r.headers, "x-bapi-sign": "0" * 64}),
    ):
        with pytest.raises(AuthFailure) as e:
            ADAPTER.verify(bad, bot(), endpoint, NOW)
        assert e.value.code == "bad_signature"
    with pytest.raises(AuthFailure):  # same request, another bot's secret
        ADAPTER.verify(r, BotKey("XXXXXXXXXX", "hmac", secret=Secret("another-secret")), endpoint, NOW)
    with pytest.raises(AuthFailure):  # an HMAC signature for an RSA bot
        ADAPTER.verify(r, bot("rsa"), endpoint, NOW)
    # the virtual key is part of the signed string: a signature made for another key id fails
    other = signed("POST", CREATE, body, NOW, key="YYYYYYYYYY")
    with pytest.raises(AuthFailure):
        ADAPTER.verify(other.replace(headers={**other.headers, "x-bapi-api-key": "XXXXXXXXXX"}), bot(), endpoint, NOW)


def test_upper_case_hex_is_accepted_and_replays_share_an_id() -> None:
    endpoint = ADAPTER.classify("GET", REALTIME)
    r = signed("GET", REALTIME, "category=linear", NOW)
    upper = r.replace(headers={**r.headers, "x-bapi-sign": r.headers["x-bapi-sign"].upper()})
    assert ADAPTER.verify(r, bot(), endpoint, NOW).replay_id == ADAPTER.verify(upper, bot(), endpoint, NOW).replay_id
    later = signed("GET", REALTIME, "category=linear", NOW + 1)
    assert ADAPTER.verify(later, bot(), endpoint, NOW).replay_id != ADAPTER.verify(r, bot(), endpoint, NOW).replay_id


def test_missing_signature() -> None:
    r = signed("GET", REALTIME, "category=linear", NOW)
    no_sign = r.replace(headers={k: v for k, v in r.headers.items() if k != "x-bapi-sign"})
    with pytest.raises(AuthFailure, match="needs X-BAPI-SIGN"):
        ADAPTER.verify(no_sign, bot(), ADAPTER.classify("GET", REALTIME), NOW)
    public = ADAPTER.classify("GET", "/v5/market/tickers")
    v = ADAPTER.verify(no_sign.replace(path="/v5/market/tickers"), bot(), public, NOW)
    assert v.replay_id == "" and "x-bapi-api-key" not in v.request.headers


# --- real signing ------------------------------------------------------------------------------------


def test_real_signing_recomputes_with_the_real_key() -> None:
    body = '{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"1"}'
    endpoint = ADAPTER.classify("POST", CREATE)
    verified = ADAPTER.verify(signed("POST", CREATE, body, NOW, secret="virtual-secret", key="VIRTUALKEY",
                                     window="10000"), BotKey("VIRTUALKEY", "hmac", secret=Secret("virtual-secret")),
                              endpoint, NOW)
    incoming = verified.request.replace(headers={**verified.request.headers, "referer": "CCXT"})
    out = ADAPTER.sign(incoming, real("hmac", "REALKEY123456789AB"), endpoint, SignContext(PROD, "production", NOW + 7))
    assert out.url == "https://api.bybit.com/v5/order/create" and out.body == body.encode()
    expected = _sign.hmac_sha256_hex(VECTORS["hmac_secret"].encode(),
                                     f"{NOW + 7}REALKEY123456789AB10000{body}".encode())
    assert out.headers == {"Content-Type": "application/json", "Referer": "CCXT",
                           "X-BAPI-API-KEY": "REALKEY123456789AB", "X-BAPI-TIMESTAMP": str(NOW + 7),
                           "X-BAPI-RECV-WINDOW": "10000", "X-BAPI-SIGN": expected, "X-BAPI-SIGN-TYPE": "2"}
    rsa = ADAPTER.sign(incoming, real("rsa", "REALKEY123456789AB"), endpoint, SignContext(PROD, "production", NOW + 7))
    message = f"{NOW + 7}REALKEY123456789AB10000{body}".encode()
    assert _sign.verify_b64_signature(VECTORS["rsa_public_key"].encode(), rsa.headers["X-BAPI-SIGN"], message)


def test_token_mode_strip_then_sign() -> None:
    r = req("GET", REALTIME, "category=linear&symbol=BTCUSDT", x_bapi_api_key="junk", x_bapi_sign="junk",
            x_bapi_timestamp="1", x_bapi_sign_type="2", accept="application/json")
    stripped = ADAPTER.strip(r)
    assert set(stripped.headers) == {"accept"}
    out = ADAPTER.sign(stripped, real(), ADAPTER.classify("GET", REALTIME), SignContext(PROD, "production", 1234))
    payload = "1234XXXXXXXXXX5000category=linear&symbol=BTCUSDT"
    assert out.headers["X-BAPI-SIGN"] == _sign.hmac_sha256_hex(VECTORS["hmac_secret"].encode(), payload.encode())
    assert out.query == "category=linear&symbol=BTCUSDT" and "Content-Type" not in out.headers
    with pytest.raises(BadRequest):
        ADAPTER.sign(stripped.replace(body=b"{}"), real(), ADAPTER.classify("GET", REALTIME),
                     SignContext(PROD, "production", 1234))


def test_public_endpoints_carry_no_key() -> None:
    endpoint = ADAPTER.classify("GET", "/v5/market/instruments-info")
    assert endpoint.cls is EndpointClass.PUBLIC and not endpoint.signed
    out = ADAPTER.sign(req("GET", "/v5/market/instruments-info", "category=linear"), real(), endpoint,
                       SignContext(PROD, "production", NOW))
    assert out.headers == {} and out.query == "category=linear"


# --- classification --------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, cls", [
    ("GET", "/v5/market/tickers", "public"),
    ("GET", "/v5/market/kline", "public"),
    ("GET", "/v5/market/time", "public"),
    ("GET", "/v5/announcements/index", "public"),
    ("GET", "/v5/account/wallet-balance", "read"),
    ("GET", "/v5/order/realtime", "read"),
    ("GET", "/v5/order/history", "read"),
    ("GET", "/v5/position/list", "read"),
    ("GET", "/v5/execution/list", "read"),
    ("GET", "/v5/asset/coin/query-info", "read"),
    ("GET", "/v5/asset/deposit/query-address", "read"),
    ("GET", "/v5/user/query-api", "read"),
    ("POST", "/v5/asset/exchange/quote-apply", "read"),
    ("POST", "/v5/order/create", "trade"),
    ("POST", "/v5/order/amend", "trade"),
    ("POST", "/v5/order/cancel", "trade"),
    ("POST", "/v5/order/cancel-all", "trade"),
    ("POST", "/v5/order/create-batch", "trade"),
    ("POST", "/v5/position/set-leverage", "trade"),
    ("POST", "/v5/position/switch-isolated", "trade"),
    ("POST", "/v5/position/trading-stop", "trade"),
    ("POST", "/v5/position/set-tpsl-mode", "trade"),
    ("POST", "/v5/account/set-margin-mode", "trade"),
    ("POST", "/v5/asset/exchange/convert-execute", "trade"),
    ("POST", "/v5/asset/withdraw/create", "withdraw"),
    ("POST", "/v5/asset/withdraw/cancel", "withdraw"),
    ("POST", "/v5/asset/transfer/inter-transfer", "transfer"),
    ("POST", "/v5/asset/transfer/universal-transfer", "transfer"),
    ("POST", "/v5/position/move-positions", "transfer"),
    ("POST", "/v5/account/borrow", "transfer"),
    ("POST", "/v5/earn/place-order", "transfer"),
    ("GET", "/v5/crypto-loan/adjust-ltv", "transfer"),  # pybit's GET of a mutating endpoint
    ("POST", "/v5/user/create-sub-member", "admin"),
    ("POST", "/v5/user/create-sub-api", "admin"),
    ("POST", "/v5/user/update-api", "admin"),
    ("POST", "/v5/user/delete-api", "admin"),
    ("GET", "/v5/user/del-submember", "admin"),
    ("POST", "/v5/asset/transfer/save-transfer-sub-member", "admin"),
    ("POST", "/v5/account/upgrade-to-uta", "admin"),
])
def test_classification(method: str, path: str, cls: str) -> None:
    endpoint = ADAPTER.classify(method, path)
    assert endpoint is not None and endpoint.cls == cls and endpoint.signed == (cls != "public")


@pytest.mark.parametrize("method, path", [
    ("GET", "/v5/order/create"), ("POST", "/v5/order/realtime"), ("GET", "/v5/nonexistent"),
    ("GET", "/v5/market/tickers/"), ("GET", "/V5/MARKET/TICKERS"), ("DELETE", "/v5/order/cancel"),
    ("POST", "/v5/p2p/order/finish"), ("POST", "/v5/earn/pwm/fund-transfer"), ("POST", "/v5/grid/create-grid"),
    ("GET", "/spot/v3/private/order"), ("POST", "/v2/private/order/create"), ("GET", "/v3/public/time"),
])
def test_unknown_endpoints_are_not_guessed(method: str, path: str) -> None:
    assert ADAPTER.classify(method, path) is None


def test_every_v5_endpoint_ccxt_knows_is_classified() -> None:
    """ccxt's table also lists retired v3/v2 paths; ccxt 4.5.90 calls only v5, and only v5 is served."""
    import ccxt

    unknown, legacy = [], []
    for side, methods in ccxt.bybit().describe()["api"].items():
        for method, paths in methods.items():
            for path in paths:
                endpoint = ADAPTER.classify(method.upper(), "/" + path)
                if not path.startswith("v5/"):
                    legacy.append(endpoint)
                elif endpoint is None or (side == "public" and endpoint.cls is not EndpointClass.PUBLIC):
                    unknown.append(f"{method.upper()} /{path} ({side})")
    assert unknown == [] and legacy and all(e is None for e in legacy)


def test_every_endpoint_pybit_calls_is_classified_or_deliberately_refused() -> None:
    pytest.importorskip("pybit")
    import inspect
    import re
    from enum import Enum

    import pybit

    paths = set()
    for module in (Path(pybit.__file__).parent).glob("*.py"):
        for cls in re.findall(r"class (\w+)\(str, Enum\)", module.read_text()):
            mod = __import__(f"pybit.{module.stem}", fromlist=[cls])
            enum = getattr(mod, cls)
            if inspect.isclass(enum) and issubclass(enum, Enum):
                paths.update(member.value for member in enum if str(member.value).startswith("/v5/"))
    assert len(paths) > 300
    refused = ("/v5/p2p/", "/v5/earn/pwm/")
    missing = sorted(p for p in paths if not p.startswith(refused)
                     and ADAPTER.classify("GET", p) is None and ADAPTER.classify("POST", p) is None)
    assert missing == []


def test_upstream_hosts_come_only_from_the_table() -> None:
    assert resolve_upstream(ADAPTER, None, False).origin_for(CREATE) == "https://api.bybit.com"
    assert resolve_upstream(ADAPTER, None, False, "testnet").origin_for(CREATE) == "https://api-testnet.bybit.com"
    assert resolve_upstream(ADAPTER, None, False, "demo").origin_for(CREATE) == "https://api-demo.bybit.com"
    bytick = resolve_upstream(ADAPTER, "https://api.bytick.com", False)
    assert bytick.environment.name == "production" and bytick.origin_for(CREATE) == "https://api.bytick.com"
    assert resolve_upstream(ADAPTER, "https://api.bybit.nl", False, "production").origin_for(CREATE)
    assert resolve_upstream(ADAPTER, None, False).origin_for("/spot/v3/private/order") is None
    for bad in ("https://api.bybit.com.evil.example", "http://api.bybit.com", "http://127.0.0.1:9"):
        with pytest.raises(ValueError):
            resolve_upstream(ADAPTER, bad, False)
    with pytest.raises(ValueError):
        resolve_upstream(ADAPTER, "https://api-testnet.bybit.com", False, "production")


# --- credentials and errors --------------------------------------------------------------------------


def test_issued_bot_keys() -> None:
    issued = ADAPTER.issue_bot_key("hmac")
    assert len(issued.shown["api_key"]) == 18 and issued.shown["api_key"].isalnum()
    assert len(issued.shown["secret"]) == 36 and issued.kept.secret == Secret(issued.shown["secret"])
    rsa = ADAPTER.issue_bot_key("rsa")
    assert len(rsa.shown["api_key"]) == 18 and "PRIVATE KEY" in rsa.shown["secret"]  # ccxt's RSA switch
    assert rsa.kept.secret is None and _sign.public_pem_of(rsa.shown["secret"].encode()) == rsa.kept.public_key
    with pytest.raises(ValueError):
        ADAPTER.issue_bot_key("ed25519")


@pytest.mark.parametrize("code, ret_code, expected", [
    ("unknown_bot", 10003, "AuthenticationError"), ("bad_signature", 10004, "AuthenticationError"),
    ("replayed_request", 10004, "AuthenticationError"), ("stale_request", 10002, "InvalidNonce"),
    ("scope_denied", 10005, "PermissionDenied"), ("ip_denied", 10010, "PermissionDenied"),
    ("unknown_endpoint", 10017, "BadRequest"), ("bad_request", 10001, "BadRequest"),
    ("unavailable", 10006, "RateLimitExceeded"), ("upstream_timeout", 10016, "ExchangeError"),
    ("upstream_error", 10016, "ExchangeError"), ("internal_error", 10016, "ExchangeError"),
])
def test_native_errors_raise_what_ccxt_knows(code: str, ret_code: int, expected: str) -> None:
    import ccxt

    native = ADAPTER.native_error(code, "refused by keyproxy")
    assert native == {"retCode": ret_code, "retMsg": "refused by keyproxy", "result": {}, "retExtInfo": {}}
    body = {"error": code, "message": "refused by keyproxy", "request_id": "r", **native}
    with pytest.raises(ccxt.BaseError) as e:
        ccxt.bybit().handle_errors(401, "", "http://x/v5/order/create", "POST", {}, json.dumps(body), body, {}, None)
    assert type(e.value).__name__ == expected
    assert ADAPTER.refusal_status(code, 401) == 200  # Bybit's way: pybit only reads retCode from a 200


def test_pybit_raises_the_ret_code_of_a_refusal() -> None:
    """Live: pybit turns keyproxy's 200 + retCode into InvalidRequestError carrying that code."""
    http_manager = pytest.importorskip("pybit._http_manager")
    exceptions = pytest.importorskip("pybit.exceptions")

    class Answer:
        status_code = ADAPTER.refusal_status("scope_denied", 403)
        headers: dict[str, str] = {}
        url = "http://127.0.0.1/main/v5/order/create"

        @staticmethod
        def json() -> dict:  # type: ignore[type-arg]
            return {"error": "scope_denied", **ADAPTER.native_error("scope_denied", "the bot lacks the trade scope")}

    manager = http_manager._V5HTTPManager(api_key="k", api_secret="s")
    manager._check_status_code(Answer(), "POST", "/v5/order/create", "{}")
    with pytest.raises(exceptions.InvalidRequestError) as e:
        manager._handle_response(Answer(), "POST", "/v5/order/create", "{}", 5000, 3)
    assert e.value.status_code == 10005


# --- request facts for policy --------------------------------------------------------------------------


def facts(path: str, body: object, method: str = "POST"):  # type: ignore[no-untyped-def]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ADAPTER.facts(req(method, path).replace(body=raw), ADAPTER.classify(method, path))


def test_order_facts() -> None:
    from decimal import Decimal

    f = facts(CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.01",
                       "price": "65000", "reduceOnly": False})
    assert (f.action, f.symbol, f.side, f.order_type, f.quantity, f.price, f.quote_quantity, f.reduce_only) == (
        "order", "BTCUSDT", "BUY", "LIMIT", Decimal("0.01"), Decimal("65000"), None, False)
    # docs/v5/order/create-order.mdx: a spot market Buy is by value unless marketUnit says baseCoin
    spot_buy = facts(CREATE, {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market",
                              "qty": "100"})
    assert spot_buy.quote_quantity == Decimal("100") and spot_buy.quantity is None
    spot_base = facts(CREATE, {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market",
                               "qty": "0.001", "marketUnit": "baseCoin"})
    assert spot_base.quantity == Decimal("0.001") and spot_base.quote_quantity is None
    spot_sell = facts(CREATE, {"category": "spot", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market",
                               "qty": "1"})
    assert spot_sell.quantity == Decimal("1")
    inverse = facts(CREATE, {"category": "inverse", "symbol": "BTCUSD", "side": "Buy", "orderType": "Market",
                             "qty": "500"})
    assert inverse.quote_quantity == Decimal("500")  # inverse contracts are 1 USD each
    # "Pre-check order" places none (its answer names an orderId and orderLinkId all the same): a read, never
    # learned as a placement
    assert ADAPTER.classify("POST", "/v5/order/pre-check").cls is EndpointClass.READ
    assert facts("/v5/order/pre-check", {"category": "linear", "symbol": "ETHUSDT", "qty": 2}).action != "order"


def test_reduce_only_only_where_bybit_honours_it() -> None:
    base = {"symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "1"}
    assert facts(CREATE, base | {"category": "linear", "reduceOnly": True}).reduce_only
    assert facts(CREATE, base | {"category": "inverse", "closeOnTrigger": True}).reduce_only
    assert not facts(CREATE, base | {"category": "spot", "reduceOnly": True}).reduce_only  # ignored for spot
    assert not facts(CREATE, base | {"category": "option", "closeOnTrigger": True}).reduce_only
    assert not facts(CREATE, base | {"category": "linear", "reduceOnly": "true"}).reduce_only  # not a JSON true


def test_other_facts() -> None:
    from decimal import Decimal

    assert facts("/v5/order/cancel", {"category": "linear", "symbol": "BTCUSDT", "orderId": "x"}).action == "cancel"
    # the orders a cancel names (only the bot's own: OrderOwners.only_own)
    assert facts("/v5/order/cancel", {"category": "linear", "symbol": "BTCUSDT", "orderId": "x"}).cancels == ("x",)
    assert facts("/v5/order/cancel", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "c"}
                 ).cancels_by_client == ("c",)
    batch_cancel = facts("/v5/order/cancel-batch", {"category": "linear", "request": [
        {"symbol": "BTCUSDT", "orderId": "a"}, {"symbol": "BTCUSDT", "orderLinkId": "b"}]})
    assert (batch_cancel.cancels, batch_cancel.cancels_by_client) == (("a",), ("b",))
    every = facts("/v5/order/cancel-all", {"category": "linear", "settleCoin": "USDT"})
    assert every.cancels_all and every.scope == "linear:*"
    lev = facts("/v5/position/set-leverage", {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "5",
                                              "sellLeverage": "10"})
    assert (lev.action, lev.symbol, lev.leverage) == ("leverage", "BTCUSDT", Decimal("10"))
    assert facts("/v5/spot-margin-trade/set-leverage", {"leverage": "4"}).leverage == Decimal("4")
    assert facts("/v5/position/trading-stop", {"category": "linear", "symbol": "BTCUSDT"}).action == "other"
    amend = facts("/v5/order/amend", {"category": "linear", "symbol": "BTCUSDT", "orderId": "x", "qty": "3"})
    assert (amend.action, amend.quantity, amend.order_id) == ("amend", Decimal("3"), "x")  # the order it changes
    assert facts("/v5/order/amend", {"category": "linear", "symbol": "BTCUSDT", "takeProfit": "1"}).action == "other"
    # a tp/sl-only amend names the order it touches (only the bot's own: OrderOwners.only_own), None by a client id
    assert facts("/v5/order/amend", {"category": "linear", "symbol": "BTCUSDT", "orderId": "x", "stopLoss": "1"}
                 ).touches == ("x",)
    assert facts("/v5/order/amend", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "c", "stopLoss": "1"}
                 ).touches == (None,)
    mixed = facts("/v5/order/amend-batch", {"category": "linear", "request": [
        {"symbol": "BTCUSDT", "orderId": "a", "qty": "1"}, {"symbol": "BTCUSDT", "orderId": "b", "takeProfit": "9"}]})
    assert [o.order_id for o in mixed.orders] == ["a"] and mixed.touches == ("b",)
    # session 18's third review: a new trigger alone was "other" (no band, no own-order check), and an option's
    # orderIv (which Bybit prices the order by, over price) was not read
    trigger = facts("/v5/order/amend", {"category": "linear", "symbol": "BTCUSDT", "orderId": "x",
                                        "triggerPrice": "600000"})
    assert (trigger.action, trigger.trigger_price, trigger.order_id) == ("amend", Decimal("600000"), "x")
    implied = facts("/v5/order/amend", {"category": "option", "symbol": "BTC-27DEC25-80000-C", "orderId": "y",
                                        "qty": "10", "price": "1", "orderIv": "9"})
    assert implied.action == "amend" and implied.price is None and implied.conflict
    batch = facts("/v5/order/create-batch", {"category": "linear", "request": [
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.1", "price": "20000"},
        {"symbol": "ETHUSDT", "side": "Sell", "orderType": "Market", "qty": "1", "reduceOnly": True}]})
    assert batch.action == "order" and [(o.symbol, o.quantity, o.price, o.reduce_only, o.market)
                                        for o in batch.orders] == [
        ("BTCUSDT", Decimal("0.1"), Decimal("20000"), False, "linear"), ("ETHUSDT", Decimal("1"), None, True, "linear")]
    for bad in ({"category": "linear", "request": []}, {"category": "linear", "request": [1]},
                {"category": "spot", "request": [{"symbol": "BTCUSDT"}] * 11}):
        with pytest.raises(BadRequest):
            facts("/v5/order/create-batch", bad)
    decoy = facts(CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market",
                           "qty": "2", "price": "0.1"})
    assert decoy.conflict and decoy.price is None  # the issue's attack: valued 2 x 0.1 under a 1,000 cap
    iv = facts(CREATE, {"category": "option", "symbol": "BTC-30DEC30-60000-C", "side": "Buy", "orderType": "Limit",
                        "qty": "1", "price": "1", "orderIv": "0.5"})
    assert iv.conflict and not iv.size_unsure and not decoy.size_unsure
    odd = facts(CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Twap", "qty": "2"})
    assert odd.conflict and odd.size_unsure  # a type keyproxy does not read: what it trades is unsure
    # session 23's review: a sold option was valued at its premium (qty x price) though its exposure is its
    # underlying; bought, the premium is what it costs; sold reduce-only, it closes a long option
    option = {"category": "option", "symbol": "BTC-30DEC30-60000-C", "orderType": "Limit", "qty": "1", "price": "5"}
    assert facts(CREATE, option | {"side": "Sell"}).conflict and facts(CREATE, option | {"side": "Sell"}).size_unsure
    assert facts(CREATE, option | {"side": "Buy"}).conflict is None
    assert facts(CREATE, option | {"side": "Sell", "reduceOnly": True}).conflict is None
    margin = facts(CREATE, {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
                            "qty": "1", "price": "1", "isLeverage": 1})
    assert margin.borrows
    assert facts("/v5/asset/exchange/convert-execute", {"quoteTxId": "x"}).action is None
    w = facts("/v5/asset/withdraw/create", {"coin": "usdt", "chain": "eth", "address": "0xabc", "amount": "10",
                                            "timestamp": 1})
    assert (w.action, w.asset, w.network, w.address, w.amount) == ("withdraw", "USDT", "ETH", "0xabc", Decimal("10"))
    assert facts("/v5/asset/withdraw/create", {"coin": "XRP", "chain": "XRP", "address": "r1", "amount": "10",
                                               "tag": "666", "timestamp": 1}).memo == "666"
    assert facts("/v5/asset/withdraw/cancel", {"id": "1"}).action == "cancel"
    assert facts("/v5/asset/transfer/inter-transfer", {"amount": "1"}).action == "other"
    assert facts("/v5/account/wallet-balance", b"", "GET").action == "other"


@pytest.mark.parametrize("body", [
    b'{"category":"linear","qty":"1","qty":"100"}',  # duplicate members: parsers disagree on which wins
    b'["order"]', b"not json", b'{"qty":NaN}', b'{"qty":"-1"}', b'{"qty":"1e"}', b'{"qty":true}', b"\xff",
])
def test_malformed_order_bodies_are_bad_requests(body: bytes) -> None:
    with pytest.raises(BadRequest):
        facts(CREATE, body)


def test_prices_from_public_tickers() -> None:
    from decimal import Decimal

    answer = {"retCode": 0, "result": {"category": "linear", "list": [
        {"symbol": "BTCUSDT", "lastPrice": "65000.5"}, {"symbol": "ETHUSDT", "lastPrice": "bad"},
        {"symbol": "XUSDT", "lastPrice": "0"}]}}
    assert ADAPTER.prices("/v5/market/tickers", json.dumps(answer).encode()) == {"BTCUSDT": Decimal("65000.5")}
    assert ADAPTER.prices("/v5/market/kline", json.dumps(answer).encode()) == {}
    assert ADAPTER.prices("/v5/market/tickers", b"<html>") == {}


def test_reads_of_two_paths_with_the_same_query_are_two_requests_and_a_read_is_remembered_for_writes() -> None:
    history = "/v5/order/history"
    a = ADAPTER.verify(signed("GET", REALTIME, "category=linear", NOW), bot(), ADAPTER.classify("GET", REALTIME), NOW)
    b = ADAPTER.verify(signed("GET", history, "category=linear", NOW), bot(), ADAPTER.classify("GET", history), NOW)
    assert a.replay_id != b.replay_id and a.also_seen == b.also_seen != ""
    create = ADAPTER.classify("POST", CREATE)
    w = ADAPTER.verify(signed("POST", CREATE, "category=linear", NOW), bot(), create, NOW)
    assert w.replay_id == a.also_seen and w.also_seen == ""  # a write with a read's parameters is that read again


def test_disconnect_cancel_all_is_judged_as_a_cancel_all() -> None:
    """Session 19's review: Bybit's DCP window cancels every order of the account when a socket drops (Binance's
    countdownCancelAll's counterpart): a cancel-all now."""
    assert facts("/v5/order/disconnected-cancel-all", {"product": "DERIVATIVES", "timeWindow": 3}).cancels_all


def test_an_orders_client_id_and_self_trade_prevention_are_read() -> None:
    """Session 32's review: a create's `orderLinkId` is its client id (never another bot's: OrderOwners), and an
    `smpType` that cancels the resting order it meets (CancelMaker, CancelBoth) is marked, as it may be any bot's."""
    base = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "1", "price": "1"}
    assert facts(CREATE, {**base, "orderLinkId": "mine-1"}).client_id == "mine-1"
    assert facts(CREATE, base).client_id is None and not facts(CREATE, base).cancels_met
    for smp, met in (("CancelMaker", True), ("CancelBoth", True), ("CancelTaker", False), ("None", False)):
        assert facts(CREATE, {**base, "smpType": smp}).cancels_met is met, smp
    batch = facts("/v5/order/create-batch", {"category": "linear", "request": [{**base, "smpType": "CancelMaker"}]})
    assert batch.orders[0].cancels_met
    # closeOnTrigger: Bybit cancels or reduces the account's other active orders when the margin runs short
    assert facts(CREATE, {**base, "closeOnTrigger": True}).cancels_met
    assert facts(CREATE, {**base, "closeOnTrigger": "true"}).cancels_met  # a spelling Bybit may read as true
    assert not facts(CREATE, {**base, "closeOnTrigger": False}).cancels_met
    assert not facts(CREATE, {**base, "category": "spot", "closeOnTrigger": True}).cancels_met
