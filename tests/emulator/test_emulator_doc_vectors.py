"""Signature verification against Binance's own published examples.

Sources (binance/binance-spot-api-docs on GitHub):

* HMAC, current text ("SIGNED Endpoint Examples for POST /api/v3/order" ->
  "HMAC Keys"), ASCII and non-ASCII symbol examples:
  https://github.com/binance/binance-spot-api-docs/blob/4987e707f84f20d736ee6a2bcb71396111cffee1/rest-api.md
* HMAC, body and mixed query+body examples (Examples 1 and 3, removed from the
  text in Dec 2025 but still what "query string concatenated without
  separator to the HTTP body" means):
  https://github.com/binance/binance-spot-api-docs/blob/6ad97145cfa9d48977e9c8b6f6ec8ad9d7eb8e86/rest-api.md
* Ed25519 private key + signature published for the FIX Logon message:
  https://github.com/binance/binance-spot-api-docs/blob/29c227d84058dd2be3fe3b42ab368d1d1ce910e5/fix-api.md

The REST RSA/Ed25519 examples publish signatures but not the keys that made
them (``./test-prv-key.pem``), and the REST Ed25519 example signature is a
256-byte RSA-sized value that is not even valid base64 -- so for those key
types the published FIX key is used, and RSA is checked with a fresh key
over the published payloads.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from emulator_testlib import FakeClock, sign
from yarl import URL

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.binance_auth import Verifier
from keyproxy.emulator.keys import new_rsa_key

DOC_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIG = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
DOC_QUERY_NON_ASCII = (
    "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
    "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIG_NON_ASCII = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
DOC_MIXED_QUERY = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
DOC_MIXED_BODY = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
DOC_MIXED_SIG = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
DOC_TIME = 1499827319.559 + 0.2  # server clock 200 ms after the example's timestamp

FIX_PRIVATE_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIIJEYWtGBrhACmb9Dvy+qa8WEf0lQOl1s4CLIAB9m89u\n"
    "-----END PRIVATE KEY-----\n"
)
FIX_PAYLOAD = "\x01".join(["A", "EXAMPLE", "SPOT", "1", "20240627-11:17:25.223"]).encode()
FIX_SIGNATURE = (
    "4MHXelVVcpkdwuLbl6n73HQUXUf1dse2PCgT1DYqW9w8AVZ1RACFGM+5UdlGPrQHrgtS3CvsRURC1oj73j8gCA=="
)
REST_PAYLOAD = (
    "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2"
    "&timestamp=1668481559918&recvWindow=5000"
)


def doc_key() -> EmulatedKey:
    return EmulatedKey(
        "binance",
        DOC_API_KEY,
        "hmac",
        secret=DOC_SECRET,
        permissions={"enableSpotAndMarginTrading": True},
        balances={"BTC": 10},
    )


def public_pem(private_pem: str) -> str:
    private = load_pem_private_key(private_pem.encode(), None)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def _post(http, emu, query: str, body: str | None = None):
    url = URL(f"{emu.url}/api/v3/order?{query}", encoded=True)
    headers = {"X-MBX-APIKEY": DOC_API_KEY}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_hmac_doc_example_query_string(emulator_factory, http):
    emu = await emulator_factory([doc_key()], clock=FakeClock(DOC_TIME))
    status, doc = await _post(http, emu, f"{DOC_QUERY}&signature={DOC_SIG}")
    assert status == 200, doc
    assert doc["symbol"] == "LTCBTC" and doc["side"] == "BUY"
    assert emu.journal.entries()[-1]["signature_verified"] is True


async def test_hmac_doc_example_in_body(emulator_factory, http):
    emu = await emulator_factory([doc_key()], clock=FakeClock(DOC_TIME))
    url = URL(f"{emu.url}/api/v3/order")
    headers = {"X-MBX-APIKEY": DOC_API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(url, data=f"{DOC_QUERY}&signature={DOC_SIG}", headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def test_hmac_doc_example_mixed_query_and_body(emulator_factory, http):
    emu = await emulator_factory([doc_key()], clock=FakeClock(DOC_TIME))
    status, doc = await _post(
        http, emu, DOC_MIXED_QUERY, f"{DOC_MIXED_BODY}&signature={DOC_MIXED_SIG}"
    )
    assert status == 200, doc
    # The query+body signature is not valid for the same parameters joined with '&'.
    status, doc = await _post(http, emu, DOC_MIXED_QUERY, f"{DOC_MIXED_BODY}&signature={DOC_SIG}")
    assert (status, doc["code"]) == (400, -1022)


async def test_hmac_doc_example_non_ascii_symbol(emulator_factory, http):
    emu = await emulator_factory([doc_key()], clock=FakeClock(DOC_TIME))
    status, doc = await _post(http, emu, f"{DOC_QUERY_NON_ASCII}&signature={DOC_SIG_NON_ASCII}")
    # Signature verifies over the percent-encoded payload; the symbol itself does not exist.
    assert (status, doc) == (400, {"code": -1121, "msg": "Invalid symbol."})
    assert emu.journal.entries()[-1]["signature_verified"] is True


async def test_hmac_signature_is_case_insensitive(emulator_factory, http):
    """Docs: "Signatures generated using HMAC are not case-sensitive"."""
    emu = await emulator_factory([doc_key()], clock=FakeClock(DOC_TIME))
    status, doc = await _post(http, emu, f"{DOC_QUERY}&signature={DOC_SIG.upper()}")
    assert status == 200, doc


async def test_hmac_doc_example_one_byte_changed_fails(emulator_factory, http):
    emu = await emulator_factory([doc_key()], clock=FakeClock(DOC_TIME))
    status, doc = await _post(
        http, emu, f"{DOC_QUERY.replace('price=0.1', 'price=0.2')}&signature={DOC_SIG}"
    )
    assert (status, doc) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )


def test_ed25519_published_fix_vector_verifies():
    key = EmulatedKey("binance", "x" * 64, "ed25519", public_key=public_pem(FIX_PRIVATE_PEM))
    verifier = Verifier(key)
    assert verifier.verify(FIX_PAYLOAD, FIX_SIGNATURE)
    assert not verifier.verify(FIX_PAYLOAD + b"x", FIX_SIGNATURE)
    assert not verifier.verify(FIX_PAYLOAD, FIX_SIGNATURE.lower())  # base64 is case-sensitive


async def test_ed25519_published_key_signs_doc_rest_payload(emulator_factory, http):
    api_key = (
        "4yNzx3yWC5bS6YTwEkSRaC0nRmSQIIStAUOh1b6kqaBrTLIhjCpI5lJH8q8R8WNO"  # docs' Ed25519 key
    )
    key = EmulatedKey(
        "binance",
        api_key,
        "ed25519",
        public_key=public_pem(FIX_PRIVATE_PEM),
        permissions={"enableSpotAndMarginTrading": True},
        balances={"BTC": 2},
    )
    emu = await emulator_factory([key], clock=FakeClock(1668481559.918 + 0.5))
    signature = sign("ed25519", FIX_PRIVATE_PEM, REST_PAYLOAD)
    encoded = signature.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    url = URL(f"{emu.url}/api/v3/order?{REST_PAYLOAD}&signature={encoded}", encoded=True)
    async with http.post(url, headers={"X-MBX-APIKEY": api_key}) as resp:
        # Verified; the docs' order (sell 1 BTC at 0.2 USDT) then fails the NOTIONAL filter,
        # as it would at Binance.
        assert (resp.status, await resp.json()) == (
            400,
            {"code": -1013, "msg": "Filter failure: NOTIONAL"},
        )
    assert emu.journal.entries()[-1]["signature_verified"] is True
    # Unencoded '+' in a form value means space: the signature no longer decodes to the same bytes.
    if "+" in signature:
        url = URL(f"{emu.url}/api/v3/order?{REST_PAYLOAD}&signature={signature}", encoded=True)
        async with http.post(url, headers={"X-MBX-APIKEY": api_key}) as resp:
            assert (await resp.json())["code"] == -1022


def test_rsa_pkcs1v15_sha256_over_doc_payloads():
    private_pem, public = new_rsa_key()
    verifier = Verifier(EmulatedKey("binance", "x" * 64, "rsa", public_key=public))
    for payload in (
        REST_PAYLOAD,
        REST_PAYLOAD.replace("symbol=BTCUSDT", "symbol=%EF%BC%91%EF%BC%92"),
    ):
        signature = sign("rsa", private_pem, payload)
        assert len(base64.b64decode(signature)) == 256
        assert verifier.verify(payload.encode(), signature)
        assert not verifier.verify(payload.encode(), signature.swapcase())  # RSA is case-sensitive
        assert not verifier.verify(payload.encode() + b"&x=1", signature)
