"""Coinbase REST emulator: Advanced Trade ``/api/v3/brokerage`` and the v2
App API ``/v2`` (host api.coinbase.com), authenticated with CDP API keys.

Written from Coinbase's documentation (see ``coinbase_auth``), independently
of keyproxy's exchange adapters. The exchange holds only each key's PUBLIC
key; clients sign a fresh JWT per request with the private key.

Endpoints an unmodified ccxt 4.5.90 ``coinbase()`` (apiKey = key name,
secret = the PEM, default options) calls, in order; all served:

* ``load_markets()``: ``GET /v2/currencies``, ``GET /v2/currencies/crypto``,
  ``GET /v2/exchange-rates`` (public, fetch_currencies), then
  ``GET /api/v3/brokerage/market/products`` (public),
  ``GET /api/v3/brokerage/transaction_summary`` (JWT) and
  ``GET /api/v3/brokerage/market/products?product_type=FUTURE`` (public).
* ``fetch_balance()``: ``GET /v2/accounts?limit=250``.
* ``create_order()`` limit: ``POST /api/v3/brokerage/orders``.
* ``fetch_open_orders()``: ``GET /api/v3/brokerage/orders/historical/batch?
  order_status=OPEN&limit=100`` (``&product_id=`` with a symbol).
* ``cancel_order()``: ``POST /api/v3/brokerage/orders/batch_cancel``.
* ``withdraw()``: ``GET /api/v3/brokerage/accounts?limit=250`` (finds the wallet
  id), then ``POST /v2/accounts/{id}/transactions`` (type send; needs can_transfer).

The official SDK coinbase-advanced-py 1.8.4 calls ``GET /api/v3/brokerage/
accounts`` (get_accounts), ``POST /api/v3/brokerage/orders`` (create_order /
limit_order_gtc_buy), ``GET /api/v3/brokerage/orders/historical/batch``
(list_orders), ``POST /api/v3/brokerage/orders/batch_cancel`` (cancel_orders),
``GET /api/v3/brokerage/key_permissions`` (get_api_key_permissions). It signs a
JWT even for public endpoints once it has a key.

JWT ``uri`` host: clients sign the host they talk to (ccxt: the URL minus a
leading ``https://``, so a plain-http base leaves ``http://`` in the uri; the
SDK: ``base_url`` verbatim, always over https). The emulator accepts only the
hosts in ``CoinbaseEmulator.jwt_hosts`` (default ``{"api.coinbase.com"}``,
what a proxy must sign); a test pointing a client straight at the emulator
adds the emulator's ``host:port``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from keyproxy.emulator.accounts import AccountsError, EmulatedKey
from keyproxy.emulator.base import Clock, RequestNote
from keyproxy.emulator.coinbase_auth import (
    REST_HOST,
    AuthResult,
    CoinbaseAuthError,
    KeyVerifier,
    authenticate,
)
from keyproxy.emulator.coinbase_handlers import CoinbaseHandlers
from keyproxy.emulator.coinbase_routes import (
    DEFAULT_PERMISSIONS,
    PREFIXES,
    Call,
    CoinbaseError,
    Route,
    bad_request,
    forbidden,
    match,
    rate_limited,
    unauthorized,
)
from keyproxy.emulator.coinbase_state import Account
from keyproxy.emulator.coinbase_ws import CoinbaseWs
from keyproxy.emulator.rate_limits import CoinbaseLimits

KEY_TYPES = ("ec", "ed25519")
DEFAULT_BALANCES = {"USD": "100000", "USDC": "100000", "BTC": "10", "ETH": "100"}
REASON_HEADER = "X-Emulator-Auth-Error"  # not sent by Coinbase; says why a JWT was refused


class CoinbaseEmulator(CoinbaseHandlers):
    """Coinbase, as far as ccxt and the official SDK can tell."""

    name = "coinbase"
    # Binance owns every "/api/" path; Coinbase's "/api/v3/brokerage/" is more
    # specific, so it wins when both exchanges share one emulator port.
    owns_priority = 1

    def __init__(self, keys: list[EmulatedKey], clock: Clock) -> None:
        for key in keys:
            _check_key(key)
        self.clock = clock
        self.keys = list(keys)
        self.verifiers = {k.api_key: KeyVerifier(k) for k in keys}
        self.jwt_hosts: set[str] = {REST_HOST}
        self.ws = CoinbaseWs(self)
        self.rate = CoinbaseLimits()  # off until a test sets it (POST /_emulator/limits); kept across resets
        self.reset()

    def reset(self) -> None:
        self.accounts = {k.api_key: Account.fresh(k) for k in self.keys}

    def state(self) -> dict[str, Any]:
        return {name: acct.snapshot() for name, acct in self.accounts.items()}

    def owns(self, path: str) -> bool:
        return path.startswith(PREFIXES)

    async def handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        note.exchange = self.name
        found = match(request.method, request.path)
        if found is None:
            return web.Response(
                status=404, text=f"emulator: no Coinbase endpoint {request.method} {request.path}"
            )
        route, path_id = found
        now = self.clock()
        try:
            account, perms = self._authenticate(request, route, note, now)
            # Advanced Trade's per-second limits: a private request per user, a public one per IP (the v2 App
            # API counts by the hour: not enforced here)
            if route.api == "v3" and self.rate.refused(
                    account.key.api_key if route.private and account else None, now):
                raise rate_limited(route.api)
            call = Call(
                api=route.api,
                query=parse_qs(request.raw_path.partition("?")[2], keep_blank_values=True),
                body=_json_body(route, body),
                account=account,
                now_ms=int(now * 1000),
                path_id=path_id,
                extra={"permissions": perms},
            )
            handler: Callable[[Call], Any] = getattr(self, route.handler)
            before = {o.order_id: o.status for o in account.orders.values()} if account else {}
            result = handler(call)
            if account is not None:  # the `user` channel hears of every order that changed
                self.ws.publish(account, [o for o in account.orders.values() if before.get(o.order_id) != o.status])
        except CoinbaseError as err:
            note.error_code = _error_id(err)
            return _error_response(err)
        if isinstance(result, dict) and result.get("success") is False:
            note.error_code = result["error_response"]["error"]  # refused order, HTTP 200
        return web.json_response(result)

    def _authenticate(
        self, request: web.Request, route: Route, note: RequestNote, now: float
    ) -> tuple[Account | None, dict[str, Any]]:
        """Verify the JWT of a private route; public routes ignore a bad one.

        Coinbase does not say what a public endpoint does with a JWT; the
        official SDK sends one with every request once it has a key, so
        public routes verify it for the journal only and never refuse.
        """
        authorization = request.headers.get("Authorization")
        if not route.private and authorization is None:
            return None, {}
        result = AuthResult()
        try:
            key = authenticate(
                authorization,
                method=request.method,
                path=request.raw_path.partition("?")[0],
                hosts=frozenset(self.jwt_hosts),
                verifiers=self.verifiers,
                now=now,
                result=result,
            )
        except CoinbaseAuthError as exc:
            if not route.private:
                return None, {}
            err = unauthorized(route.api)
            err.reason = exc.reason
            raise err from None
        finally:
            note.api_key = result.key_name
            note.signature_verified = result.signature_verified
        perms = {**DEFAULT_PERMISSIONS, **key.permissions}
        if route.private and route.permission and not perms.get(route.permission):
            raise forbidden(route.api)
        return self.accounts[key.api_key], perms


def _json_body(route: Route, body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request(route.api, "request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise bad_request(route.api, "request body must be a JSON object")
    return parsed


def _error_id(err: CoinbaseError) -> str:
    """Coinbase errors have no number: the journal gets the error id / text."""
    if isinstance(err.body, str):
        return err.body
    if "errors" in err.body:
        return str(err.body["errors"][0]["id"])
    return str(err.body.get("error"))


def _error_response(err: CoinbaseError) -> web.Response:
    headers = {}
    if err.reason:
        headers[REASON_HEADER] = err.reason
    if isinstance(err.body, str):
        return web.Response(status=err.status, text=err.body, headers=headers)
    return web.json_response(err.body, status=err.status, headers=headers)


def _check_key(key: EmulatedKey) -> None:
    if key.key_type not in KEY_TYPES:
        raise AccountsError(
            f"accounts: coinbase key {key.api_key!r} must be key_type 'ec' or 'ed25519' "
            "(CDP keys; the exchange stores only the public key)"
        )
    if key.key_type == "ec":
        public = serialization.load_pem_public_key((key.public_key or "").encode("ascii"))
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
            raise AccountsError(f"accounts: coinbase key {key.api_key!r}: EC key must be P-256")


def _public_pem(private: Any) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def new_key(
    key_type: str = "ec",
    permissions: dict[str, Any] | None = None,
    balances: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A fresh CDP key: (accounts-file entry, credentials for ``keyproxy key add``).

    ECDSA keys come as CDP hands them out: name ``organizations/{org_id}/
    apiKeys/{key_id}`` and a SEC1 ``-----BEGIN EC PRIVATE KEY-----`` PEM.
    Ed25519 keys (the CDP default since Feb 2025) come as a UUID key id and
    a base64 secret of the 32-byte seed followed by the 32-byte public key
    (docs.cdp.coinbase.com JwtOptions: "Edwards key (Ed25519)" example).
    """
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if key_type == "ec":
        private = ec.generate_private_key(ec.SECP256R1())
        name = f"organizations/{uuid.uuid4()}/apiKeys/{uuid.uuid4()}"
        secret = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode("ascii")
    elif key_type == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        name = str(uuid.uuid4())
        raw = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ) + private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        secret = base64.b64encode(raw).decode("ascii")
    else:
        raise ValueError(f"coinbase keys are 'ec' or 'ed25519' CDP keys, not {key_type!r}")
    entry: dict[str, Any] = {
        "exchange": "coinbase",
        "api_key": name,
        "key_type": key_type,
        "public_key": _public_pem(private),
        "permissions": {**DEFAULT_PERMISSIONS, **(permissions or {})},
        "balances": {k.upper(): str(Decimal(v)) for k, v in (balances or DEFAULT_BALANCES).items()},
    }
    return entry, {"api_key": name, "private_key": secret}


def create(keys: list[EmulatedKey], clock: Clock) -> CoinbaseEmulator:
    """Module entry point used by ``keyproxy.emulator.app``."""
    return CoinbaseEmulator(keys, clock)
