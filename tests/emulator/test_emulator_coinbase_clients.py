"""Real, unmodified clients against the Coinbase emulator: ccxt ``coinbase()``
and the official SDK coinbase-advanced-py (``RESTClient``).

Both sign the JWT ``uri`` with the host they talk to, and the SDK only
speaks https, so the emulator is served over TLS here (a throwaway
self-signed certificate the clients are told to trust) and the test adds
its ``127.0.0.1:port`` to the accepted JWT hosts. Only URLs and the CA file
change; every ccxt option stays at its default.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyproxy.emulator.devstack import point_ccxt_at
from keyproxy.emulator import coinbase
from keyproxy.emulator.accounts import parse_accounts
from keyproxy.emulator.app import EMULATORS, JOURNAL, build_app

BTC_ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"


def _self_signed(tmp: Path) -> tuple[str, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return str(cert_path), context


@dataclass
class TlsEmulator:
    url: str
    host: str
    cafile: str
    app: web.Application

    def journal(self) -> list[dict[str, Any]]:
        return self.app[JOURNAL].entries()


@pytest.fixture
async def tls_coinbase(tmp_path) -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def _start(entries: list[dict[str, Any]]) -> TlsEmulator:
        cafile, context = _self_signed(tmp_path)
        app = build_app(parse_accounts({"keys": entries}))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        runners.append(runner)
        host = f"127.0.0.1:{runner.addresses[0][1]}"
        app[EMULATORS][0].jwt_hosts.add(host)  # the host a direct client signs
        return TlsEmulator(f"https://{host}", host, cafile, app)

    yield _start
    for runner in runners:
        await runner.cleanup()


def _claims(entry: dict[str, Any]) -> dict[str, Any]:
    token = entry["headers"]["Authorization"].split(" ", 1)[1]
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize("key_type", ["ec", "ed25519"])
async def test_ccxt_round_trip(tls_coinbase, key_type):
    entry, cred = coinbase.new_key(key_type, permissions={"can_transfer": True},
                                   balances={"USD": "10000", "BTC": "1"})
    emu = await tls_coinbase([entry])
    exchange = ccxt.coinbase({"apiKey": cred["api_key"], "secret": cred["private_key"],
                              "cafile": emu.cafile})
    point_ccxt_at(exchange, emu.url)
    try:
        markets = await exchange.load_markets()
        assert {"BTC/USD", "ETH/USD", "BTC/USDC", "ETH/BTC"} <= set(markets)
        balance = await exchange.fetch_balance()
        assert balance["USD"]["total"] == 10000 and balance["BTC"]["total"] == 1
        order = await exchange.create_order("BTC/USD", "limit", "buy", 0.01, 50000)
        open_orders = await exchange.fetch_open_orders("BTC/USD")
        assert [(o["id"], o["status"], o["price"], o["amount"]) for o in open_orders] == [
            (order["id"], "open", 50000, 0.01)
        ]
        cancelled = await exchange.cancel_order(order["id"])
        assert cancelled["id"] == order["id"]
        assert await exchange.fetch_open_orders("BTC/USD") == []
        sent = await exchange.withdraw("BTC", 0.5, BTC_ADDRESS)
        assert sent["status"] == "pending" and sent["amount"] == 0.5
    finally:
        await exchange.close()
    journal = emu.journal()
    assert all(e["status"] == 200 for e in journal), [e for e in journal if e["status"] != 200]
    private = [e for e in journal if e["api_key"] is not None]
    assert all(e["signature_verified"] is True and e["api_key"] == cred["api_key"] for e in private)
    assert [(e["method"], e["path"]) for e in private] == [
        ("GET", "/api/v3/brokerage/transaction_summary"),
        ("GET", "/v2/accounts"),
        ("POST", "/api/v3/brokerage/orders"),
        ("GET", "/api/v3/brokerage/orders/historical/batch"),
        ("POST", "/api/v3/brokerage/orders/batch_cancel"),
        ("GET", "/api/v3/brokerage/orders/historical/batch"),
        ("GET", "/api/v3/brokerage/accounts"),
        ("POST", f"/v2/accounts/{private[-1]['path'].split('/')[3]}/transactions"),
    ]
    public = {(e["path"], e["query"]) for e in journal if e["api_key"] is None}
    assert public == {("/v2/currencies", ""), ("/v2/currencies/crypto", ""),
                      ("/v2/exchange-rates", ""), ("/api/v3/brokerage/market/products", ""),
                      ("/api/v3/brokerage/market/products", "product_type=FUTURE")}
    claims = _claims(private[0])
    # ccxt signs "METHOD " + URL without "https://" and without the query
    assert claims.get("uri", (claims.get("uris") or [None])[0]) == (
        f"GET {emu.host}/api/v3/brokerage/transaction_summary")


async def test_ccxt_withdraw_refused_without_transfer_scope(tls_coinbase):
    entry, cred = coinbase.new_key()
    emu = await tls_coinbase([entry])
    exchange = ccxt.coinbase({"apiKey": cred["api_key"], "secret": cred["private_key"],
                              "cafile": emu.cafile})
    point_ccxt_at(exchange, emu.url)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="invalid_scope"):
            await exchange.withdraw("BTC", 0.5, BTC_ADDRESS)
    finally:
        await exchange.close()
    assert emu.journal()[-1]["status"] == 403


async def test_ccxt_over_plain_http_signs_the_scheme_into_the_uri(emulator_factory):
    """ccxt strips only "https://" from the URL, so over http the uri keeps "http://"."""
    entry, cred = coinbase.new_key()
    emu = await emulator_factory(parse_accounts({"keys": [entry]}))
    exchange = ccxt.coinbase({"apiKey": cred["api_key"], "secret": cred["private_key"]})
    point_ccxt_at(exchange, emu.url)
    try:
        with pytest.raises(ccxt.AuthenticationError):
            await exchange.load_markets()  # its transaction_summary call is signed
    finally:
        await exchange.close()
    refused = next(e for e in emu.journal.entries() if e["status"] != 200)
    assert refused["status"] == 401 and refused["signature_verified"] is True
    assert _claims(refused)["uri"] == f"GET {emu.url}/api/v3/brokerage/transaction_summary"


@pytest.mark.parametrize("key_type", ["ec", "ed25519"])
async def test_official_sdk_round_trip(tls_coinbase, key_type):
    rest = pytest.importorskip("coinbase.rest")
    entry, cred = coinbase.new_key(key_type, balances={"USD": "10000"})
    emu = await tls_coinbase([entry])
    client = rest.RESTClient(api_key=cred["api_key"], api_secret=cred["private_key"],
                             base_url=emu.host)
    client.session.verify = emu.cafile

    def work() -> tuple[Any, ...]:
        accounts = client.get_accounts()
        order = client.limit_order_gtc_buy(client_order_id="sdk-1", product_id="BTC-USD",
                                           base_size="0.01", limit_price="50000")
        listed = client.list_orders(order_status=["OPEN"])
        cancelled = client.cancel_orders(order_ids=[order.success_response["order_id"]])
        return accounts, order, listed, cancelled

    accounts, order, listed, cancelled = await asyncio.to_thread(work)
    assert [a.currency for a in accounts.accounts] == ["USD"]
    assert order.success is True
    assert [o.order_id for o in listed.orders] == [order.success_response["order_id"]]
    assert cancelled.results[0].success is True
    journal = emu.journal()
    assert [(e["method"], e["path"], e["status"], e["signature_verified"]) for e in journal] == [
        ("GET", "/api/v3/brokerage/accounts", 200, True),
        ("POST", "/api/v3/brokerage/orders", 200, True),
        ("GET", "/api/v3/brokerage/orders/historical/batch", 200, True),
        ("POST", "/api/v3/brokerage/orders/batch_cancel", 200, True),
    ]
    # the SDK signs f"{method} {base_url}{path}", base_url verbatim
    assert _claims(journal[0])["uri"] == f"GET {emu.host}/api/v3/brokerage/accounts"
    assert _claims(journal[0])["iss"] == "cdp"


async def test_default_hosts_refuse_a_client_signing_the_emulator_host(emulator_factory, http):
    """Without the test's extra host only "api.coinbase.com" verifies: what a proxy must sign."""
    jwt_generator = pytest.importorskip("coinbase.jwt_generator")
    entry, cred = coinbase.new_key()
    emu = await emulator_factory(parse_accounts({"keys": [entry]}))
    host = emu.url.removeprefix("http://")
    path = "/api/v3/brokerage/accounts"
    for signed_host, status in ((host, 401), ("api.coinbase.com", 200)):
        token = jwt_generator.build_rest_jwt(f"GET {signed_host}{path}", cred["api_key"],
                                             cred["private_key"])
        async with http.get(emu.url + path, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == status

