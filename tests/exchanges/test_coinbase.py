"""Coinbase adapter: JWTs from the official SDK and ccxt, drop-in verification, classification, re-signing.

Field names and lifetime: coinbase-advanced-py 1.8.4 `coinbase/jwt_generator.py` (build_jwt:
header kid + nonce, claims sub, iss "cdp", nbf, exp = nbf + 120, uri) and
https://docs.cdp.coinbase.com/get-started/authentication/jwt-authentication ("Your JWT expires
after 2 minutes"). Vectors in tests/vectors/coinbase/jwt.json were made by that SDK and by ccxt.
"""

from __future__ import annotations

from dataclasses import replace

import base64
import json
import re
from pathlib import Path

import pytest

from keyproxy.exchanges import _sign
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, EndpointClass, IncomingRequest, RealKey, SignContext, resolve_upstream,
)
from keyproxy.exchanges.coinbase import Coinbase
from keyproxy.emulator.coinbase_data import products_doc
from keyproxy.secret import Secret

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "coinbase" / "jwt.json").read_text())
ADAPTER = Coinbase()
NOW_S = VECTORS["now_s"]
NOW = NOW_S * 1000 + 1500
HOST, MOUNT = "127.0.0.1:8750", "/main"
ACCOUNTS = "/api/v3/brokerage/accounts"
ORDERS = "/api/v3/brokerage/orders"
HISTORICAL = "/api/v3/brokerage/orders/historical/batch"


def bot(kind: str = "ec") -> BotKey:
    v = VECTORS[kind]
    return BotKey(v["key_name"], kind, public_key=v["public_key"].encode())


def real(kind: str = "ec") -> RealKey:
    v = VECTORS[kind]
    pem = v["private_key"] if kind == "ec" else v["private_key_pem"]
    return RealKey(kind, Secret(v["key_name"]), private_key=Secret(pem))


def req(token: str | None, method: str = "GET", path: str = ACCOUNTS, query: str = "", body: bytes = b"",
        host: str = HOST, mount: str = MOUNT, authorization: str | None = None) -> IncomingRequest:
    headers = {"accept": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    elif token is not None:
        headers["authorization"] = "Bearer " + token
    return IncomingRequest(method, path, query, headers, body, host=host, mount=mount)


def parts(token: str) -> tuple[dict, dict, bytes]:  # type: ignore[type-arg]
    h, c, s = token.split(".")
    return (json.loads(_sign.b64url_decode(h)), json.loads(_sign.b64url_decode(c)), _sign.b64url_decode(s))


def forge(header: dict, claims: dict, private_pem: bytes) -> str:  # type: ignore[type-arg]
    """A JWT with exactly these fields, signed by `private_pem` (tests only)."""
    signing_input = ".".join(_sign.b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims))
    return signing_input + "." + _sign.b64url(_sign.jws_sign(private_pem, signing_input.encode()))


def bot_token(kind: str = "ec", method: str = "GET", path: str = ACCOUNTS, now_s: int = NOW_S, lifetime: int = 120,
              target: str | None = None, **overrides: object) -> str:
    """A bot's JWT for `method path` via keyproxy; an override of None removes that field."""
    v = VECTORS[kind]
    pem = (v["private_key"] if kind == "ec" else v["private_key_pem"]).encode()
    header = {"alg": "ES256" if kind == "ec" else "EdDSA", "kid": v["key_name"], "nonce": "ab" * 16, "typ": "JWT"}
    claims = {"sub": v["key_name"], "iss": "cdp", "nbf": now_s, "exp": now_s + lifetime,
              "uri": target or f"{method} {HOST}{MOUNT}{path}"}
    for k, val in overrides.items():
        (header if k in ("alg", "kid", "nonce", "typ", "crit") else claims)[k] = val
    for k in [k for k, val in {**header, **claims}.items() if val is None]:
        header.pop(k, None)
        claims.pop(k, None)
    return forge(header, claims, pem)


# --- published / cross-implementation vectors ----------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["tokens"], ids=lambda c: f"{c['client']} {c['key']}")
def test_sdk_and_ccxt_tokens_verify(case: dict) -> None:  # type: ignore[type-arg]
    """coinbase-advanced-py (bare host uri, also for a keyproxy base_url) and ccxt (http:// kept) tokens pass."""
    r = req(case["jwt"], case["method"], case["path"], host=case["host"] or HOST, mount=case["mount"] or MOUNT)
    assert ADAPTER.presented_key(r) == VECTORS[case["key"]]["key_name"]
    v = ADAPTER.verify(r, bot(case["key"]), ADAPTER.classify(case["method"], case["path"]), NOW)
    assert v.expires_ms == (NOW_S + 120) * 1000
    assert "authorization" not in v.request.headers and v.request.headers["accept"] == "application/json"
    assert parts(case["jwt"])[1].get("uri", (parts(case["jwt"])[1].get("uris") or [None])[0]) == case["uri"]
    # the same token on another path or method is refused
    other = ADAPTER.classify("GET", "/api/v3/brokerage/products")
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(req(case["jwt"], "GET", "/api/v3/brokerage/products"), bot(case["key"]), other, NOW)
    assert e.value.code == "bad_signature"


def test_minted_jwt_is_byte_identical_to_the_official_sdk() -> None:
    """Ed25519 is deterministic: with its clock and nonce fixed, build_rest_jwt made exactly this token."""
    d = VECTORS["deterministic"]
    assert Coinbase.mint_jwt(real("ed25519"), d["uri"], d["now_s"], nonce=d["nonce"]) == d["jwt"]


def test_raw_cdp_ed25519_secret_signs_like_its_pem() -> None:
    """The CDP portal's Ed25519 form, base64(seed ‖ public), mints the same (deterministic) token as its PEM."""
    d = VECTORS["deterministic"]
    raw = RealKey("ed25519", Secret(VECTORS["ed25519"]["key_name"]), private_key=Secret(VECTORS["ed25519"]["secret"]))
    assert Coinbase.mint_jwt(raw, d["uri"], d["now_s"], nonce=d["nonce"]) == d["jwt"]
    with pytest.raises(ValueError):
        _sign.ed25519_private_pem_from_raw(bytes(64))  # public half does not match the seed


def test_sdk_token_made_now_verifies() -> None:
    """Live: coinbase-advanced-py's RESTClient pointed at keyproxy (base_url = host + mount)."""
    pytest.importorskip("coinbase.rest")
    from coinbase.rest import RESTClient

    for kind in ("ec", "ed25519"):
        v = VECTORS[kind]
        secret = v["private_key"] if kind == "ec" else v["secret"]
        client = RESTClient(api_key=v["key_name"], api_secret=secret, base_url=HOST + MOUNT)
        token = client.set_headers("POST", ORDERS)["Authorization"].removeprefix("Bearer ")
        now_ms = parts(token)[1]["nbf"] * 1000
        ADAPTER.verify(req(token, "POST", ORDERS, body=b"{}"), bot(kind), ADAPTER.classify("POST", ORDERS), now_ms)


@pytest.mark.parametrize("kind", ["ec", "ed25519"])
def test_ccxt_request_made_now_verifies(kind: str) -> None:
    """Live: an unmodified ccxt coinbase whose urls['api']['rest'] is keyproxy's base URL."""
    import ccxt

    v = VECTORS[kind]
    ex = ccxt.coinbase({"apiKey": v["key_name"], "secret": v["private_key"] if kind == "ec" else v["secret"]})
    ex.urls["api"]["rest"] = f"http://{HOST}{MOUNT}"
    sent = ex.sign("brokerage/orders/historical/batch", ["v3", "private"], "GET", {"limit": 5})
    assert sent["url"] == f"http://{HOST}{MOUNT}/api/v3/brokerage/orders/historical/batch?limit=5"
    token = sent["headers"]["Authorization"].removeprefix("Bearer ")
    path = "/api/v3/brokerage/orders/historical/batch"
    ADAPTER.verify(req(token, "GET", path, "limit=5"), bot(kind), ADAPTER.classify("GET", path),
                   parts(token)[1]["nbf"] * 1000)


# --- drop-in refusals ------------------------------------------------------------------------------


def test_self_made_token_verifies_and_names_the_request() -> None:
    v = ADAPTER.verify(req(bot_token()), bot(), ADAPTER.classify("GET", ACCOUNTS), NOW)
    assert v.replay_id.startswith(VECTORS["ec"]["key_name"] + ":") and v.expires_ms == (NOW_S + 120) * 1000


@pytest.mark.parametrize("uri", [
    f"GET {HOST}{MOUNT}{ACCOUNTS}",  # coinbase-advanced-py with base_url=host+mount
    f"GET http://{HOST}{MOUNT}{ACCOUNTS}",  # ccxt with urls['api']['rest']='http://host/mount'
    f"GET api.coinbase.com{ACCOUNTS}",  # a token made for Coinbase itself
    f"GET API.Coinbase.com{ACCOUNTS}",  # hosts compare case-insensitively
])
def test_accepted_uri_forms(uri: str) -> None:
    ADAPTER.verify(req(bot_token(target=uri)), bot(), ADAPTER.classify("GET", ACCOUNTS), NOW)


@pytest.mark.parametrize("uri", [
    f"POST {HOST}{MOUNT}{ACCOUNTS}",  # another method
    f"get {HOST}{MOUNT}{ACCOUNTS}",
    f"GET {HOST}{MOUNT}/api/v3/brokerage/orders",  # another path
    f"GET {HOST}{MOUNT}{ACCOUNTS}/x",
    f"GET {HOST}{MOUNT}{ACCOUNTS}?limit=1",  # neither client puts the query in
    f"GET {HOST}/other{ACCOUNTS}",  # another account's mount
    f"GET {HOST}{ACCOUNTS}",  # no mount
    f"GET evil.example{ACCOUNTS}",  # another host
    f"GET https://{HOST}{MOUNT}{ACCOUNTS}",
    f"GET api.coinbase.com/main{ACCOUNTS}",
    f"GET  {HOST}{MOUNT}{ACCOUNTS}",
])
def test_uri_naming_another_request_is_refused(uri: str) -> None:
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(req(bot_token(target=uri)), bot(), ADAPTER.classify("GET", ACCOUNTS), NOW)
    assert e.value.code == "bad_signature"


def test_ccxt_eddsa_uris_list() -> None:
    token = bot_token("ed25519", uris=[f"GET http://{HOST}{MOUNT}{ACCOUNTS}"], uri=None)
    assert "uri" not in parts(token)[1]
    ADAPTER.verify(req(token), bot("ed25519"), ADAPTER.classify("GET", ACCOUNTS), NOW)
    both = bot_token("ed25519", uris=[f"GET {HOST}{MOUNT}{ACCOUNTS}", f"POST {HOST}{MOUNT}{ORDERS}"])
    with pytest.raises(AuthFailure):
        ADAPTER.verify(req(both), bot("ed25519"), ADAPTER.classify("GET", ACCOUNTS), NOW)


@pytest.mark.parametrize("offset_ms, ok", [
    (0, True), (119_999, True), (120_000, False),  # exp is exclusive
    (-5000, True), (-5001, False),  # nbf may be up to 5 s ahead of keyproxy's clock
])
def test_validity_window(offset_ms: int, ok: bool) -> None:
    token, endpoint = bot_token(), ADAPTER.classify("GET", ACCOUNTS)
    if ok:
        ADAPTER.verify(req(token), bot(), endpoint, NOW_S * 1000 + offset_ms)
    else:
        with pytest.raises(AuthFailure) as e:
            ADAPTER.verify(req(token), bot(), endpoint, NOW_S * 1000 + offset_ms)
        assert e.value.code == "stale_request"


@pytest.mark.parametrize("lifetime", [121, 3600, 0, -5])
def test_lifetime_over_two_minutes_is_refused(lifetime: int) -> None:
    with pytest.raises(BadRequest, match="lifetime"):
        ADAPTER.verify(req(bot_token(lifetime=lifetime)), bot(), ADAPTER.classify("GET", ACCOUNTS), NOW)


def test_wrong_key_and_wrong_signature() -> None:
    endpoint = ADAPTER.classify("GET", ACCOUNTS)
    other = ADAPTER.issue_bot_key("ec").kept
    impostor = BotKey(VECTORS["ec"]["key_name"], "ec", public_key=other.public_key)
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(req(bot_token()), impostor, endpoint, NOW)
    assert e.value.code == "bad_signature"
    h, c, s = bot_token().split(".")
    flipped = _sign.b64url(bytes([_sign.b64url_decode(s)[0] ^ 1]) + _sign.b64url_decode(s)[1:])
    claims = json.loads(_sign.b64url_decode(c)) | {"exp": NOW_S + 100}
    for token in (f"{h}.{c}.{flipped}", f"{h}.{_sign.b64url(json.dumps(claims).encode())}.{s}"):
        with pytest.raises(AuthFailure) as e:
            ADAPTER.verify(req(token), bot(), endpoint, NOW)
        assert e.value.code == "bad_signature"


@pytest.mark.parametrize("overrides", [
    {"alg": "none"}, {"alg": "HS256"}, {"alg": "EdDSA"}, {"alg": "ES384"},  # not what an ec key signs
    {"kid": "organizations/x/apiKeys/other"}, {"sub": "organizations/x/apiKeys/other"}, {"sub": None},
    {"iss": "someone"}, {"iss": None},
])
def test_header_and_claims_must_match_the_key(overrides: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(AuthFailure) as e:
        ADAPTER.verify(req(bot_token(**overrides)), bot(), ADAPTER.classify("GET", ACCOUNTS), NOW)
    assert e.value.code == "bad_signature"


def test_es256_token_for_an_ed25519_bot_is_refused() -> None:
    with pytest.raises(AuthFailure):
        ADAPTER.verify(req(bot_token("ec")), BotKey(VECTORS["ec"]["key_name"], "ed25519",
                                                    public_key=VECTORS["ed25519"]["public_key"].encode()),
                       ADAPTER.classify("GET", ACCOUNTS), NOW)


def _seg(obj: object) -> str:
    return _sign.b64url(json.dumps(obj).encode())


DUPLICATE_ALG = _sign.b64url(b'{"alg":"ES256","alg":"none"}')


@pytest.mark.parametrize("authorization", [
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Bearer a.b",
    "Bearer a.b.c.d",
    "Bearer a b",
    "Bearer !!!.???.###",
    f"Bearer {_seg([1])}.{_seg({})}.AAAA",  # header not an object
    f"Bearer {_seg({'alg': 'ES256'})}.{_sign.b64url(b'not json')}.AAAA",
    f"Bearer {DUPLICATE_ALG}.{_seg({})}.AAAA",  # duplicate member
    f"Bearer {_seg({'alg': 'ES256'})}.{_seg({})}.AA==",  # padding
    f"Bearer {_seg({'kid': 'x'})}.{_seg({})}.AAAA",  # no alg
])
def test_malformed_tokens_are_bad_requests(authorization: str) -> None:
    with pytest.raises(BadRequest):
        ADAPTER.verify(req(None, authorization=authorization), bot(), ADAPTER.classify("GET", ACCOUNTS), NOW)


@pytest.mark.parametrize("overrides", [
    {"nbf": "1767225600"}, {"exp": 1.5e9}, {"nbf": None}, {"exp": True}, {"uri": 7}, {"uris": "GET x"},
    {"uri": None}, {"crit": ["b64"]},
])
def test_malformed_claims_are_bad_requests(overrides: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(BadRequest):
        ADAPTER.verify(req(bot_token(**overrides)), bot(), ADAPTER.classify("GET", ACCOUNTS), NOW)


def test_replay_id_survives_ecdsa_malleability() -> None:
    """(r, n - s) is a second valid ES256 signature of the same token: it must not look like a new request."""
    token = bot_token()
    h, c, s = token.split(".")
    raw = _sign.b64url_decode(s)
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    twin = f"{h}.{c}." + _sign.b64url(raw[:32] + (n - int.from_bytes(raw[32:], "big")).to_bytes(32, "big"))
    endpoint = ADAPTER.classify("GET", ACCOUNTS)
    first = ADAPTER.verify(req(token), bot(), endpoint, NOW)
    second = ADAPTER.verify(req(twin), bot(), endpoint, NOW)
    assert first.replay_id == second.replay_id
    assert ADAPTER.verify(req(bot_token(nonce="cd" * 16)), bot(), endpoint, NOW).replay_id != first.replay_id


def test_presented_key() -> None:
    assert ADAPTER.presented_key(req(bot_token())) == VECTORS["ec"]["key_name"]
    assert ADAPTER.presented_key(req(bot_token(kid=None))) == VECTORS["ec"]["key_name"]  # falls back to sub
    for auth in ("Basic x", "Bearer x.y.z", "Bearer", ""):
        assert ADAPTER.presented_key(req(None, authorization=auth)) is None
    assert ADAPTER.presented_key(req(None)) is None


# --- real signing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ec", "ed25519"])
def test_real_signing_mints_a_fresh_verifiable_jwt(kind: str) -> None:
    endpoint = ADAPTER.classify("POST", ORDERS)
    body = b'{"product_id":"BTC-USD","side":"BUY"}'
    verified = ADAPTER.verify(req(bot_token(method="POST", path=ORDERS), "POST", ORDERS, body=body), bot(),
                              endpoint, NOW)
    out = ADAPTER.sign(verified.request, real(kind), endpoint,
                       SignContext("https://api.coinbase.com", "production", NOW))
    assert out.url == "https://api.coinbase.com/api/v3/brokerage/orders" and out.body == body
    assert out.headers["Content-Type"] == "application/json" and "accept" not in out.headers
    scheme, token = out.headers["Authorization"].split(" ")
    header, claims, signature = parts(token)
    name = VECTORS[kind]["key_name"]
    assert scheme == "Bearer"
    assert header["alg"] == ("ES256" if kind == "ec" else "EdDSA") and header["typ"] == "JWT" and header["kid"] == name
    assert re.fullmatch(r"[0-9a-f]{64}", header["nonce"])
    assert claims == {"sub": name, "iss": "cdp", "nbf": NOW // 1000, "exp": NOW // 1000 + 120,
                      "uri": "POST api.coinbase.com/api/v3/brokerage/orders"}
    assert len(signature) == 64  # ES256 as raw r||s, not DER
    h, c, _ = token.split(".")
    assert _sign.jws_verify(VECTORS[kind]["public_key"].encode(), header["alg"], f"{h}.{c}".encode(), signature)
    again = ADAPTER.sign(verified.request, real(kind), endpoint,
                         SignContext("https://api.coinbase.com", "production", NOW))
    assert parts(again.headers["Authorization"].split(" ")[1])[0]["nonce"] != header["nonce"]


def test_real_jwt_decodes_with_pyjwt() -> None:
    """An independent JWT implementation (the one the official SDK uses) accepts keyproxy's tokens."""
    jwt = pytest.importorskip("jwt")
    for kind in ("ec", "ed25519"):
        token = Coinbase.mint_jwt(real(kind), "GET api.coinbase.com/api/v3/brokerage/accounts", NOW_S)
        claims = jwt.decode(token, VECTORS[kind]["public_key"], algorithms=["ES256", "EdDSA"],
                            options={"verify_exp": False, "verify_nbf": False})
        assert claims["uri"] == "GET api.coinbase.com/api/v3/brokerage/accounts"


def test_uri_names_the_upstream_host_and_omits_the_query() -> None:
    """A loopback emulator plays Coinbase: the uri names the Coinbase host of that environment."""
    endpoint = ADAPTER.classify("GET", "/v2/accounts")
    r = ADAPTER.strip(req(None, "GET", "/v2/accounts", "limit=100&order=asc"))
    for origin, env, host in (("https://api.coinbase.com", "production", "api.coinbase.com"),
                              ("https://api-sandbox.coinbase.com", "sandbox", "api-sandbox.coinbase.com"),
                              ("http://127.0.0.1:9999", "loopback", "api.coinbase.com"),
                              ("http://127.0.0.1:9999", "production", "api.coinbase.com"),
                              ("http://127.0.0.1:9999", "sandbox", "api-sandbox.coinbase.com")):
        out = ADAPTER.sign(r, real(), endpoint, SignContext(origin, env, NOW))
        assert out.query == "limit=100&order=asc" and out.origin == origin
        assert parts(out.headers["Authorization"].split(" ")[1])[1]["uri"] == f"GET {host}/v2/accounts"


def test_token_mode_strip_then_sign() -> None:
    r = req(None, "GET", ACCOUNTS, authorization="Bearer something-from-elsewhere")
    r = r.replace(headers={**r.headers, "cb-access-key": "legacy", "cb-version": "2024-01-01"})
    stripped = ADAPTER.strip(r)
    assert "authorization" not in stripped.headers and "cb-access-key" not in stripped.headers
    out = ADAPTER.sign(stripped, real(), ADAPTER.classify("GET", ACCOUNTS),
                       SignContext("https://api.coinbase.com", "production", NOW))
    assert out.headers["Authorization"].startswith("Bearer ey") and out.headers["Cb-Version"] == "2024-01-01"
    assert "Content-Type" not in out.headers  # no body


def test_public_endpoints_carry_no_jwt() -> None:
    path = "/api/v3/brokerage/market/products/BTC-USD/ticker"
    endpoint = ADAPTER.classify("GET", path)
    assert endpoint.cls is EndpointClass.PUBLIC and not endpoint.signed
    out = ADAPTER.sign(req(None, "GET", path, "limit=1"), real(), endpoint,
                       SignContext("https://api.coinbase.com", "production", NOW))
    assert out.headers == {} and out.query == "limit=1"
    # a bot that sends its JWT to a public endpoint anyway is still checked
    token = bot_token(path=path)
    v = ADAPTER.verify(req(token, "GET", path), bot(), endpoint, NOW)
    assert "authorization" not in v.request.headers


# --- classification --------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, cls", [
    ("GET", "/api/v3/brokerage/time", "public"),
    ("GET", "/api/v3/brokerage/market/products", "public"),
    ("GET", "/api/v3/brokerage/market/products/BTC-USD/candles", "public"),
    ("GET", "/v2/currencies", "public"),
    ("GET", "/v2/exchange-rates", "public"),
    ("GET", "/v2/prices/BTC-USD/spot", "public"),
    ("GET", "/api/v3/brokerage/accounts", "read"),
    ("GET", "/api/v3/brokerage/accounts/8bfc20d7-f7c6-4422-bf07-8243ca4169fe", "read"),
    ("GET", "/api/v3/brokerage/orders/historical/0000-000000-000000", "read"),
    ("GET", "/api/v3/brokerage/orders/historical/batch", "read"),
    ("GET", "/api/v3/brokerage/intx/positions/5189861793/BTC-PERP-INTX", "read"),
    ("GET", "/api/v3/brokerage/key_permissions", "read"),
    ("POST", "/api/v3/brokerage/convert/quote", "read"),
    ("GET", "/v2/accounts", "read"),
    ("GET", "/v2/user", "read"),
    ("GET", "/v2/accounts/2bbf394c-193b-5b2a-9155-3b4732659ede/transactions", "read"),
    ("POST", "/v2/accounts/2bbf394c-193b-5b2a-9155-3b4732659ede/addresses", "read"),
    ("POST", "/api/v3/brokerage/orders", "trade"),
    ("POST", "/api/v3/brokerage/orders/batch_cancel", "trade"),
    ("POST", "/api/v3/brokerage/orders/edit", "trade"),
    ("POST", "/api/v3/brokerage/orders/close_position", "trade"),
    ("POST", "/api/v3/brokerage/convert/trade/abc-123", "trade"),
    ("POST", "/api/v3/brokerage/cfm/intraday/margin_setting", "trade"),
    ("POST", "/v2/accounts/2bbf394c-193b-5b2a-9155-3b4732659ede/transactions", "withdraw"),
    ("POST", "/v2/accounts/2bbf394c/withdrawals", "withdraw"),
    ("POST", "/v2/accounts/2bbf394c/withdrawals/67e0eaec/commit", "withdraw"),
    ("POST", "/v2/accounts/2bbf394c/sells", "withdraw"),
    ("POST", "/api/v3/brokerage/portfolios/move_funds", "transfer"),
    ("POST", "/api/v3/brokerage/intx/allocate", "transfer"),
    ("POST", "/api/v3/brokerage/cfm/sweeps/schedule", "transfer"),
    ("DELETE", "/api/v3/brokerage/cfm/sweeps", "transfer"),
    ("POST", "/v2/accounts/2bbf394c/deposits", "transfer"),
    ("POST", "/v2/accounts/2bbf394c/buys", "transfer"),
    ("POST", "/api/v3/brokerage/portfolios", "admin"),
    ("DELETE", "/api/v3/brokerage/portfolios/8bfc20d7", "admin"),
    ("PUT", "/v2/user", "admin"),
    ("DELETE", "/v2/accounts/2bbf394c", "admin"),
])
def test_classification(method: str, path: str, cls: str) -> None:
    endpoint = ADAPTER.classify(method, path)
    assert endpoint is not None and endpoint.cls == cls
    assert endpoint.signed == (cls != "public")


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v3/brokerage/nonexistent"), ("POST", "/api/v3/brokerage/accounts"),
    ("GET", "/api/v3/brokerage/accounts/"), ("GET", "/api/v3/brokerage/accounts/a/b"),
    ("PATCH", "/api/v3/brokerage/orders"), ("GET", "/API/V3/BROKERAGE/ACCOUNTS"),
    ("GET", "/v2/notifications"), ("GET", "/v2/accounts/a b"), ("GET", "/v2/accounts/a?b"),
    ("GET", "/api/v3/brokerage/orders/historical/"), ("GET", "/v3/brokerage/accounts"),
    ("POST", "/api/v3/brokerage/orders/x"), ("GET", "/api/v2/accounts"),
])
def test_unknown_endpoints_are_not_guessed(method: str, path: str) -> None:
    assert ADAPTER.classify(method, path) is None


def test_every_endpoint_ccxt_knows_is_classified() -> None:
    import ccxt

    unknown = []
    for version, sides in ccxt.coinbase().describe()["api"].items():
        prefix = "/api/v3/" if version == "v3" else "/v2/"
        for side, methods in sides.items():
            for method, paths in methods.items():
                for path in paths:
                    concrete = prefix + re.sub(r"\{[a-z_]+\}", "8bfc20d7-f7c6-4422-bf07-8243ca4169fe", path)
                    endpoint = ADAPTER.classify(method.upper(), concrete)
                    if endpoint is None or (side == "public") != (endpoint.cls is EndpointClass.PUBLIC):
                        unknown.append(f"{method.upper()} {prefix}{path} ({side})")
    assert unknown == []


# every REST call of coinbase-advanced-py 1.8.4 (coinbase/rest/*.py endpoint = f"{API_PREFIX}/...")
SDK_ENDPOINTS = [
    "GET accounts", "GET accounts/{uuid}", "POST convert/quote", "GET convert/trade/{id}", "POST convert/trade/{id}",
    "GET key_permissions", "GET transaction_summary", "GET cfm/balance_summary", "GET cfm/positions",
    "GET cfm/positions/{id}", "POST cfm/sweeps/schedule", "GET cfm/sweeps", "DELETE cfm/sweeps",
    "GET cfm/intraday/margin_setting", "GET cfm/intraday/current_margin_window", "POST cfm/intraday/margin_setting",
    "GET products/{id}/candles", "GET products/{id}/ticker", "POST orders", "GET orders/historical/{id}",
    "GET orders/historical/batch", "GET orders/historical/fills", "POST orders/edit", "POST orders/edit_preview",
    "POST orders/batch_cancel", "POST orders/preview", "POST orders/close_position", "GET payment_methods",
    "GET payment_methods/{id}", "POST intx/allocate", "GET intx/portfolio/{id}", "GET intx/positions/{id}",
    "GET intx/positions/{id}/{symbol}", "GET intx/balances/{id}", "POST intx/multi_asset_collateral",
    "GET portfolios", "POST portfolios", "GET portfolios/{uuid}", "POST portfolios/move_funds",
    "PUT portfolios/{uuid}", "DELETE portfolios/{uuid}", "GET products", "GET products/{id}", "GET product_book",
    "GET best_bid_ask", "GET time", "GET market/product_book", "GET market/products", "GET market/products/{id}",
    "GET market/products/{id}/candles", "GET market/products/{id}/ticker",
]


@pytest.mark.parametrize("entry", SDK_ENDPOINTS)
def test_every_endpoint_the_official_sdk_calls_is_classified(entry: str) -> None:
    method, path = entry.split(" ")
    assert ADAPTER.classify(method, "/api/v3/brokerage/" + re.sub(r"\{\w+\}", "BTC-USD", path)) is not None


@pytest.mark.parametrize("body, query, cls", [
    (b'{"type":"send","to":"0xabc","amount":"1","currency":"ETH"}', "", "withdraw"),  # ccxt withdraw()
    (b'{"type":"transfer","to":"58542935-67b5-56e1-a3f9-42686e07fa40","amount":"1","currency":"BTC"}', "", "transfer"),
    (b'{"type":"transfer","to":"x"}', "type=send", "withdraw"),  # a query could override the body
    (b'{"type":"transfer","type":"send"}', "", "withdraw"),  # duplicate members: parsers disagree
    (b'{"type":"Transfer"}', "", "withdraw"),
    (b'{"type":"request"}', "", "withdraw"),
    (b"type=transfer&to=x", "", "withdraw"),  # not JSON
    (b'["type","transfer"]', "", "withdraw"),
    (b"\xff", "", "withdraw"),
    (b"", "", "withdraw"),
])
def test_v2_transactions_are_withdrawals_unless_the_body_proves_a_transfer(body: bytes, query: str, cls: str) -> None:
    path = "/v2/accounts/2bbf394c-193b-5b2a-9155-3b4732659ede/transactions"
    assert ADAPTER.classify("POST", path).cls == "withdraw"  # type: ignore[union-attr]
    endpoint = ADAPTER.classify_request(req(None, "POST", path, query, body))
    assert endpoint is not None and endpoint.cls == cls
    assert ADAPTER.classify_request(req(None, "GET", ACCOUNTS)) == ADAPTER.classify("GET", ACCOUNTS)


def test_upstream_hosts_come_only_from_the_table() -> None:
    prod = resolve_upstream(ADAPTER, None, False)
    assert prod.origin_for("/api/v3/brokerage/orders") == "https://api.coinbase.com"
    assert prod.origin_for("/v2/accounts") == "https://api.coinbase.com"
    assert prod.origin_for("/evil") is None
    sandbox = resolve_upstream(ADAPTER, None, False, "sandbox")
    assert sandbox.origin_for("/api/v3/brokerage/accounts") == "https://api-sandbox.coinbase.com"
    assert sandbox.origin_for("/v2/accounts") is None
    assert resolve_upstream(ADAPTER, "https://api-sandbox.coinbase.com", False).environment.name == "sandbox"
    emu = resolve_upstream(ADAPTER, "http://127.0.0.1:9999", True)
    assert emu.origin_for("/v2/time") == "http://127.0.0.1:9999" and emu.insecure_loopback
    with pytest.raises(ValueError):
        resolve_upstream(ADAPTER, "https://api.exchange.coinbase.com", False)


# --- credentials and errors --------------------------------------------------------------------------


def test_issued_ec_key_looks_like_a_cdp_key_and_works_in_ccxt() -> None:
    issued = ADAPTER.issue_bot_key("ec")
    uuid_re = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert re.fullmatch(f"organizations/{uuid_re}/apiKeys/{uuid_re}", issued.shown["api_key"])
    assert issued.shown["secret"].startswith("-----BEGIN EC PRIVATE KEY-----\n")
    kept = issued.kept
    assert kept.key_id == issued.shown["api_key"] and kept.secret is None and b"PUBLIC KEY" in kept.public_key
    assert _sign.public_pem_of(issued.shown["secret"].encode()) == kept.public_key


def test_issued_ed25519_key_is_the_cdp_raw_form() -> None:
    issued = ADAPTER.issue_bot_key("ed25519")
    assert re.fullmatch("[0-9a-f-]{36}", issued.shown["api_key"])
    secret = issued.shown["secret"]
    raw = base64.b64decode(secret, validate=True)
    assert len(secret) == 88 and len(raw) == 64  # ccxt picks EdDSA by this length
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    public = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32]).public_key()
    assert public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == raw[32:]
    assert public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo) == issued.kept.public_key
    with pytest.raises(ValueError):
        ADAPTER.issue_bot_key("hmac")


@pytest.mark.parametrize("code, expected", [
    ("unknown_bot", "AuthenticationError"), ("bad_signature", "AuthenticationError"),
    ("stale_request", "AuthenticationError"), ("replayed_request", "AuthenticationError"),
    ("scope_denied", "PermissionDenied"), ("ip_denied", "PermissionDenied"), ("unknown_endpoint", "PermissionDenied"),
    ("bad_request", "BadRequest"), ("unavailable", "RateLimitExceeded"), ("upstream_timeout", "ExchangeError"),
])
def test_native_errors_raise_what_ccxt_knows(code: str, expected: str) -> None:
    import ccxt

    body = {"error": code, "message": "refused", "request_id": "r"}
    body.update(ADAPTER.native_error(code, "refused"))  # as keyproxy's error answer merges them
    assert body["errors"][0]["message"] == "refused"  # type: ignore[index]
    with pytest.raises(ccxt.BaseError) as e:
        ccxt.coinbase().handle_errors(401, "", "u", "GET", {}, json.dumps(body), body, {}, None)
    assert type(e.value).__name__ == expected
    assert ADAPTER.refusal_status(code, 401) == 401


# --- request facts for policy --------------------------------------------------------------------------


# the emulator's product list, as keyproxy learns it (BTC-USDC trades on BTC-USD's book)
MARKETS = ADAPTER.market_names("/api/v3/brokerage/market/products", json.dumps(products_doc(None)).encode())


def facts(path: str, body: object, method: str = "POST", query: str = "",  # type: ignore[no-untyped-def]
          markets: dict[str, str] | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    incoming = req(None, method, path, query=query, body=raw).replace(markets=MARKETS if markets is None else markets)
    return ADAPTER.facts(incoming, ADAPTER.classify(method, path))


def test_order_facts() -> None:
    from decimal import Decimal

    limit = facts(ORDERS, {"client_order_id": "1", "product_id": "BTC-USD", "side": "BUY", "order_configuration": {
        "limit_limit_gtc": {"base_size": "0.01", "limit_price": "60000", "post_only": False}}})
    assert (limit.action, limit.symbol, limit.side, limit.order_type, limit.quantity, limit.price) == (
        "order", "BTCUSD", "BUY", "LIMIT", Decimal("0.01"), Decimal("60000"))
    market = facts(ORDERS, {"product_id": "ETH-USDC", "side": "BUY",
                            "order_configuration": {"market_market_ioc": {"quote_size": "100"}}, "leverage": "3"})
    assert (market.order_type, market.quote_quantity, market.quantity, market.leverage) == (
        "MARKET", Decimal("100"), None, Decimal("3"))
    stop = facts("/api/v3/brokerage/orders/preview", {"product_id": "BTC-USD", "side": "SELL", "order_configuration": {
        "stop_limit_stop_limit_gtc": {"base_size": "1", "limit_price": "50000", "stop_price": "51000"}}})
    assert stop.order_type == "STOP_LIMIT" and stop.quantity == Decimal("1")
    # a buy bracket's stop, once triggered, is placed at its trigger + 5% (Coinbase places it): it may pay that
    from keyproxy.policy.valuation import notional
    bracket = facts(ORDERS, {"product_id": "BTC-PERP-INTX", "side": "BUY", "order_configuration": {
        "trigger_bracket_gtc": {"base_size": "1", "limit_price": "90", "stop_trigger_price": "10000"}}})
    assert (bracket.price, bracket.stop_limit) == (Decimal("90"), Decimal("10500"))
    assert notional(replace(bracket, contract=None), None) == Decimal("10500")
    sell = facts(ORDERS, {"product_id": "BTC-USD", "side": "SELL", "order_configuration": {
        "trigger_bracket_gtc": {"base_size": "1", "limit_price": "110", "stop_trigger_price": "90"}}})
    assert sell.stop_limit is None and notional(sell, Decimal("100")) == Decimal("110")
    two = facts(ORDERS, {"product_id": "BTC-USD", "side": "BUY", "order_configuration": {
        "market_market_ioc": {"quote_size": "1"}, "limit_limit_gtc": {"base_size": "9", "limit_price": "1"}}})
    assert two.action is None  # ambiguous: keyproxy cannot say which one Coinbase would take
    assert facts("/api/v3/brokerage/orders/batch_cancel", {"order_ids": ["a"]}).action == "cancel"
    close = facts("/api/v3/brokerage/orders/close_position", {"product_id": "BIT-28JUL23-CDE", "size": "2"})
    assert close.action == "order" and close.reduce_only and close.quantity == Decimal("2")
    edit = facts("/api/v3/brokerage/orders/edit", {"order_id": "x", "price": "10", "size": "5"})
    assert (edit.action, edit.symbol, edit.quantity, edit.price, edit.order_id) == (
        "amend", None, Decimal("5"), Decimal("10"), "x")
    assert edit.untracked is None and edit.trigger_price is None
    # an edit that attaches (or cancels) a take-profit / stop-loss order: an order no cap could count, as on a create
    # (session 25's review); a new stop price is a trigger the price band checks
    attach = facts("/api/v3/brokerage/orders/edit", {"order_id": "x", "price": "10", "size": "5", "stop_price": "9",
                                                     "attached_order_configuration": {"trigger_bracket_gtc": {}}})
    assert attach.untracked and attach.trigger_price == Decimal("9")
    # the fields each configuration executes: a decoy limit_price on a market order, two sizes: conflicts
    decoy = facts(ORDERS, {"product_id": "BTC-USD", "side": "BUY", "order_configuration": {
        "market_market_ioc": {"base_size": "2", "limit_price": "0.1"}}})
    assert decoy.conflict and decoy.price is None
    both = facts(ORDERS, {"product_id": "BTC-USD", "side": "BUY", "order_configuration": {
        "limit_limit_gtc": {"base_size": "0.0001", "quote_size": "100000", "limit_price": "60000"}}})
    assert both.conflict and both.size_unsure and not decoy.size_unsure
    # a limit order sized in quote is quote / limit_price in base: it rests at that size (not valued by the
    # last price, which a bot could push the order's size past its cap with)
    in_quote = facts(ORDERS, {"product_id": "BTC-USD", "side": "BUY", "order_configuration": {
        "limit_limit_gtc": {"quote_size": "600", "limit_price": "20000"}}})
    assert (in_quote.quantity, in_quote.quote_quantity, in_quote.price) == (Decimal("0.03"), None, Decimal("20000"))
    future = facts(ORDERS, {"product_id": "XRP-30DEC30-CDE", "side": "BUY", "order_configuration": {
        "limit_limit_gtc": {"base_size": "10", "limit_price": "0.5"}}})
    assert (future.contract, future.market, future.quantity, future.contract_size) == ("linear", "future",
                                                                                      Decimal("10"), None)
    assert facts("/api/v3/brokerage/convert/trade/abc", {"from_account": "a", "to_account": "b"}).action is None
    # a leverage change keyproxy cannot compute (session 32's review; it was read as a setting)
    assert facts("/api/v3/brokerage/cfm/intraday/margin_setting", {"setting": "x"}).action == "leverage"


def test_withdrawal_facts() -> None:
    from decimal import Decimal

    send = facts("/v2/accounts/acct/transactions", {"type": "send", "to": "0xabc", "amount": "0.5",
                                                    "currency": "eth", "network": "base"})
    assert (send.action, send.asset, send.address, send.network, send.amount) == (
        "withdraw", "ETH", "0xabc", "BASE", Decimal("0.5"))
    fiat = facts("/v2/accounts/acct/withdrawals", {"amount": "100", "currency": "USD", "payment_method": "pm-1"})
    assert (fiat.asset, fiat.address, fiat.amount) == ("USD", "pm-1", Decimal("100"))
    sell = facts("/v2/accounts/acct/sells", {"amount": "1", "currency": "BTC"})
    assert sell.action == "withdraw" and sell.amount is None and sell.address is None
    assert facts("/api/v3/brokerage/portfolios/move_funds", {"funds": {}}).action == "other"
    assert facts(ACCOUNTS, b"", "GET").action == "other"


@pytest.mark.parametrize("body", [
    b'{"product_id":"BTC-USD","product_id":"ETH-USD"}', b"[]", b"nope", b'{"leverage":"x"}',
    b'{"order_configuration":{"limit_limit_gtc":{"base_size":"-1"}}}', b'{"leverage":Infinity}',
    b'{"order_configuration":{"limit_limit_gtc":"x"}}',
])
def test_malformed_order_bodies_are_bad_requests(body: bytes) -> None:
    with pytest.raises(BadRequest):
        facts(ORDERS, body)


def test_prices_from_public_market_answers() -> None:
    from decimal import Decimal

    products = {"products": [{"product_id": "BTC-USD", "price": "65000.01"}, {"product_id": "X-USD", "price": ""}]}
    assert ADAPTER.prices("/api/v3/brokerage/market/products", json.dumps(products).encode()) == {
        "BTCUSD": Decimal("65000.01")}
    one = {"product_id": "ETH-USD", "price": "3000"}
    assert ADAPTER.prices("/api/v3/brokerage/market/products/ETH-USD", json.dumps(one).encode()) == {
        "ETHUSD": Decimal("3000")}
    ticker = {"trades": [{"product_id": "SOL-USD", "price": "150.5"}], "best_bid": "150", "best_ask": "151"}
    # a ticker's trades are those before the `end` the bot names: a past price (session 27's review), never learned
    assert ADAPTER.prices("/api/v3/brokerage/market/products/SOL-USD/ticker", json.dumps(ticker).encode()) == {}
    assert ADAPTER.prices("/api/v3/brokerage/market/products/SOL-USD/candles", json.dumps(ticker).encode()) == {}
    assert ADAPTER.prices("/api/v3/brokerage/market/products", b"oops") == {}


def test_contract_sizes_and_open_orders_from_answers() -> None:
    import json
    from decimal import Decimal

    from keyproxy.exchanges.base import OutboundRequest

    products = json.dumps({"products": [
        {"product_id": "XRP-30DEC30-CDE", "future_product_details": {"contract_size": "10000"}},
        {"product_id": "BTC-USD", "future_product_details": None}]}).encode()
    assert ADAPTER.contract_sizes("/api/v3/brokerage/products", products) == {"future:XRP30DEC30CDE": Decimal("10000")}
    order = facts(ORDERS, {"product_id": "BTC-USD", "side": "BUY", "order_configuration": {
        "limit_limit_gtc": {"base_size": "1", "limit_price": "1"}}})
    out = OutboundRequest("POST", "https://api.coinbase.com", ORDERS, "", {}, b"")
    refused = json.dumps({"success": False, "error_response": {"error": "INSUFFICIENT_FUND"}}).encode()
    assert ADAPTER.order_book_change(out, 200, refused, order).opened == ()  # HTTP 200, success false
    placed = json.dumps({"success": True, "success_response": {"order_id": "x"}}).encode()
    assert ADAPTER.order_book_change(out, 200, placed, order).opened == ("spot:BTCUSD",)
    cancel = facts("/api/v3/brokerage/orders/batch_cancel", {"order_ids": ["a", "b"]})
    results = json.dumps({"results": [{"success": True}, {"success": False}]}).encode()
    assert ADAPTER.order_book_change(out, 200, results, cancel).closed == ("spot:*",)
    listing = OutboundRequest("GET", "https://api.coinbase.com", "/api/v3/brokerage/orders/historical/batch",
                              "order_status=OPEN&product_ids=BTC-USD", {}, b"")
    doc = json.dumps({"orders": [{}, {}], "has_next": False}).encode()
    eth = replace(listing, query="order_status=OPEN&product_ids=ETH-USD")
    assert ADAPTER.order_book_change(eth, 200, doc, facts(HISTORICAL, b"", "GET", eth.query)).counted == (
        ("spot:ETHUSD", 2),)
    # a book several products trade on: one product's listing may not show the other's orders; unknown: neither
    for shown, markets in (("BTC-USD", None), ("BTC-USDC", None), ("ETH-USD", {}), ("ETH-USD&product_ids=BTC-USD",
                                                                                   None)):
        one = replace(listing, query=f"order_status=OPEN&product_ids={shown}")
        assert ADAPTER.order_book_change(one, 200, doc, facts(HISTORICAL, b"", "GET", one.query, markets)).counted == ()
    both = replace(listing, query="order_status=OPEN&product_ids=BTC-USDC&product_ids=BTC-USD")  # the whole book
    assert ADAPTER.order_book_change(both, 200, doc, facts(HISTORICAL, b"", "GET", both.query)).counted == (
        ("spot:BTCUSD", 2),)
    twice = replace(listing, query="order_status=OPEN&product_ids=BTC-USD&product_ids=BTC-USDC&order_status=OPEN")
    assert ADAPTER.order_book_change(twice, 200, doc, facts(HISTORICAL, b"", "GET", twice.query)).counted == ()


def test_usd_and_usdc_products_trading_on_one_book_are_one_market() -> None:
    """Coinbase trades BTC-USDC on BTC-USD's book (`alias` / `alias_to` in its product list): an order on either is
    named by the book (positions, bands, duplicates, crossing); a product keyproxy has no name for stays `#...`
    (the core fetches the list first, `market_ids`, then refuses what stays unknown); futures keep their own."""
    assert MARKETS["#BTCUSDC"] == MARKETS["#BTCUSD"] == "BTCUSD" and MARKETS["#ETHUSD"] == "ETHUSD"
    assert "*BTCUSD" in MARKETS and "*ETHUSD" not in MARKETS
    buy = {"product_id": "BTC-USDC", "side": "BUY", "order_configuration": {
        "limit_limit_gtc": {"base_size": "0.01", "limit_price": "60000"}}}
    assert facts(ORDERS, buy).symbol == "BTCUSD"
    assert facts(ORDERS, {**buy, "product_id": "DOGE-USD"}).symbol == "#DOGEUSD"
    assert facts(ORDERS, buy, markets={}).symbol == "#BTCUSDC"
    raw = json.dumps(buy).encode()
    assert ADAPTER.market_ids(req(None, "POST", ORDERS, body=raw)) == ("#BTCUSDC",)
    assert ADAPTER.market_ids(req(None, "POST", ORDERS, body=json.dumps(
        {**buy, "product_id": "BIT-28JUL23-CDE"}).encode())) == ()
    assert ADAPTER.market_ids(req(None, "GET", ORDERS)) == ()
    assert facts(ORDERS, {**buy, "product_id": "BIT-28JUL23-CDE"}).symbol == "BIT28JUL23CDE"
    odd = json.dumps({"products": [{"product_id": "X-USD", "alias": "BIT-28JUL23-CDE"},
                                   {"product_id": "Y-USD", "alias": "Y-USD"}, {"product_id": 5}]}).encode()
    assert ADAPTER.market_names("/api/v3/brokerage/market/products", odd) == {"#XUSD": "XUSD", "#YUSD": "YUSD"}


def test_a_sends_destination_tag_is_its_memo() -> None:
    """On a shared deposit address the tag picks who is credited: it is part of the allowlist entry."""
    f = facts("/v2/accounts/abc/transactions", {"type": "send", "to": "rShared", "amount": "10", "currency": "XRP",
                                                 "destination_tag": "666"})
    assert (f.action, f.address, f.memo) == ("withdraw", "rShared", "666")


def test_a_member_spelled_in_camel_case_is_refused() -> None:
    """Session 23's review: Advanced Trade reads bodies as protobuf JSON, which takes `attachedOrderConfiguration` as
    well as `attached_order_configuration`; keyproxy read only the latter, so attached take-profit / stop-loss orders
    spelled the other way went unseen past max_position and max_open_orders. Any capital letter in a member name,
    at any depth, is refused now (Coinbase's own names are all snake_case)."""
    order = {"client_order_id": "x", "product_id": "BTC-USD", "side": "BUY",
             "order_configuration": {"limit_limit_gtc": {"base_size": "0.001", "limit_price": "50000"}}}
    for odd in ({**order, "attachedOrderConfiguration": {}}, {**order, "order_configuration": {
            "limit_limit_gtc": {"baseSize": "0.001", "limit_price": "50000"}}}):
        with pytest.raises(BadRequest, match="snake_case"):
            facts(ORDERS, odd)
    assert facts(ORDERS, order).action == "order"


def test_a_ladder_and_a_twap_are_orders_of_coinbases_own_and_the_margin_setting_a_leverage_change() -> None:
    """Session 32's review: a scaled order is a ladder of limit orders, a TWAP slices: neither is one order of the
    size and price it names. The futures margin setting and multi-asset collateral change leverage unreadably."""
    for kind in ("scaled_limit_gtc", "twap_limit_gtd"):
        f = facts("/api/v3/brokerage/orders", {"client_order_id": "x", "product_id": "BTC-USD", "side": "BUY",
                                               "order_configuration": {kind: {"quote_size": "1000"}}})
        assert f.untracked and kind in f.untracked, kind
    for path in ("/api/v3/brokerage/cfm/intraday/margin_setting", "/api/v3/brokerage/intx/multi_asset_collateral"):
        f = facts(path, {"setting": "INTRADAY_MARGIN_SETTING_INTRADAY"})
        assert (f.action, f.leverage) == ("leverage", None), path


def test_every_create_carries_its_client_order_id_and_only_as_text() -> None:
    """Coinbase answers a create reusing a client_order_id with the order holding it, so keyproxy checks every
    create's (a close_position's, an order of a shape it cannot read too); a number, which a protobuf JSON reader may
    take as the same client id, is refused (session 33's review: unread, it named the operator's order unchecked)."""
    order = {"client_order_id": "c-1", "product_id": "BTC-USD", "side": "BUY",
             "order_configuration": {"limit_limit_gtc": {"base_size": "0.01", "limit_price": "60000"}}}
    assert facts(ORDERS, order).client_id == "c-1"
    odd = facts(ORDERS, {**order, "order_configuration": {"a": {}, "b": {}}})
    assert (odd.action, odd.client_id) == (None, "c-1")
    # a preview places nothing: its client id is nobody's, never claimed (a claim squatted one: session 33's review)
    assert facts("/api/v3/brokerage/orders/preview", order).client_id is None
    close = facts("/api/v3/brokerage/orders/close_position", {"client_order_id": "c-2", "product_id": "BIT-28JUL23-CDE",
                                                             "size": "1"})
    assert close.client_id == "c-2"
    for bad in (1796654366903, "", ["c-1"], {"id": "c-1"}, True):
        for path in (ORDERS, "/api/v3/brokerage/orders/close_position"):
            with pytest.raises(BadRequest, match="client_order_id"):
                facts(path, {**order, "client_order_id": bad})


def test_every_order_a_read_reports_gives_its_client_id() -> None:
    """Not only the first 1,000 (the bot reads them all: session 33's review pushed the operator's order to place
    1,001 and took it); an order read too large to read before relaying is never relayed (`reports_client_ids`)."""
    from keyproxy.exchanges.base import OutboundRequest

    listing = json.dumps({"orders": [{"order_id": f"o-{i}", "client_order_id": f"c-{i}", "product_id": "BTC-USD"}
                                     for i in range(1500)]}).encode()
    out = OutboundRequest("GET", "", "/api/v3/brokerage/orders/historical/batch", "limit=1500", {})
    reported = ADAPTER.reported_client_ids(out, 200, listing)
    assert len(reported) == 1500 and reported[-1] == ("o-1499", "spot:BTCUSD", "c-1499", None)
    assert ADAPTER.reports_client_ids(out.path) and ADAPTER.reports_client_ids("/api/v3/brokerage/orders/historical/x")
    assert not ADAPTER.reports_client_ids("/api/v3/brokerage/orders/historical/fills")
