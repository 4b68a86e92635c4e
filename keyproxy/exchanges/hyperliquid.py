"""Hyperliquid (`POST /info`, `POST /exchange`), mainnet and testnet.

Hyperliquid has no API key: a bot signs each action with an Ethereum key, the account's own (master) key
or an "API wallet" (agent) the master approved. Signing, per Hyperliquid's docs "Signing"
(https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/signing) and hyperliquid-python-sdk
0.24 `utils/signing.py` (whose test vectors tests/exchanges/test_hyperliquid.py replays):

* L1 actions (orders, cancels, leverage, sub-account and vault transfers) are signed as a "phantom agent":
  EIP-712 `Agent{source, connectionId}` in domain `Exchange`/1/chain 1337, where connectionId =
  keccak256(msgpack(action) || nonce (8 bytes BE) || 0x00 or 0x01 + vaultAddress || [0x00 + expiresAfter])
  and source is "a" on mainnet, "b" on testnet.
* user-signed actions (withdraw3, usdSend, spotSend, usdClassTransfer, approveAgent, approveBuilderFee)
  are EIP-712 `HyperliquidTransaction:<Name>` in domain `HyperliquidSignTransaction`/1/signatureChainId,
  over the action's own fields, with `hyperliquidChain` "Mainnet"/"Testnet" and the nonce in `time` or
  `nonce`.

The bot's virtual credential is a secp256k1 key of its own: keyproxy finds the bot by the address that
signed (`presented_keys`), checks that signature over exactly the bytes Hyperliquid would hash, and
signs the action again with the real key and keyproxy's own nonce (`needs_nonce`, in milliseconds:
Hyperliquid keeps each signer's 100 highest nonces and wants each within (now - 2 days, now + 1 day), so
many bots on one real key need one nonce owner). The bot's SDK, pointed at keyproxy, thinks it is on
testnet (the SDK's `is_mainnet` is `base_url == MAINNET_API_URL`) while ccxt signs as mainnet: both
sources are accepted from a bot, and the real signature is always for the account's environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from keyproxy.exchanges import _eth
from keyproxy.exchanges.hooks import AdapterHooks
from keyproxy.exchanges.base import (
    OrderUpdate,
    AuthFailure,
    BadRequest,
    BotKey,
    Endpoint,
    EndpointClass,
    Environment,
    IncomingRequest,
    IssuedBotKey,
    KeyRejection,
    OrderBookChange,
    OutboundRequest,
    RealKey,
    SignContext,
    UnknownEndpoint,
    Verified,
)
from keyproxy.exchanges.hyperliquid_budget import BUDGETS, hyperliquid_costs
from keyproxy.exchanges.hyperliquid_facts import (
    endpoint_of,
    hyperliquid_facts,
    hyperliquid_market_names,
    hyperliquid_order_book_change,
    hyperliquid_prices,
    parse_exchange_body,
)
from keyproxy.exchanges.hyperliquid_fills import (
    hyperliquid_amend_verdicts, hyperliquid_cancelled_cloids, hyperliquid_order_updates, hyperliquid_placed_ids,
    hyperliquid_reconcile_request,
)
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

INFO_PATH = "/info"
EXCHANGE_PATH = "/exchange"
DAY_MS = 86_400_000
PAST_WINDOW_MS = 2 * DAY_MS  # Hyperliquid: a nonce within (T - 2 days, T + 1 day)
FUTURE_WINDOW_MS = DAY_MS

_CHAIN = {"name": "hyperliquidChain", "type": "string"}
_TIME = {"name": "time", "type": "uint64"}
_NONCE = {"name": "nonce", "type": "uint64"}
_DESTINATION = {"name": "destination", "type": "string"}
_AMOUNT = {"name": "amount", "type": "string"}
# user-signed action type -> (EIP-712 primary type, its fields, the field that carries the nonce)
USER_SIGNED: dict[str, tuple[str, list[dict[str, str]], str]] = {
    "withdraw3": ("HyperliquidTransaction:Withdraw", [_CHAIN, _DESTINATION, _AMOUNT, _TIME], "time"),
    "usdSend": ("HyperliquidTransaction:UsdSend", [_CHAIN, _DESTINATION, _AMOUNT, _TIME], "time"),
    "spotSend": ("HyperliquidTransaction:SpotSend",
                 [_CHAIN, _DESTINATION, {"name": "token", "type": "string"}, _AMOUNT, _TIME], "time"),
    "usdClassTransfer": ("HyperliquidTransaction:UsdClassTransfer",
                         [_CHAIN, _AMOUNT, {"name": "toPerp", "type": "bool"}, _NONCE], "nonce"),
    "approveAgent": ("HyperliquidTransaction:ApproveAgent",
                     [_CHAIN, {"name": "agentAddress", "type": "address"},
                      {"name": "agentName", "type": "string"}, _NONCE], "nonce"),
    "approveBuilderFee": ("HyperliquidTransaction:ApproveBuilderFee",
                          [_CHAIN, {"name": "maxFeeRate", "type": "string"},
                           {"name": "builder", "type": "address"}, _NONCE], "nonce"),
}
# the answers Hyperliquid gives a signer it does not know for the user (an agent revoked or never approved)
# a top-level error naming the signer: not a user or approved agent (the emulator's and Hyperliquid's wording); never
# a phrase alone ("does not exist"), which errors about what a bot named (a vault, an order) may carry too
_UNKNOWN_SIGNER = ("User or API Wallet ", "Must deposit before performing actions")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_RECOVERED_CACHE = 1024
CCXT_BUILDER = "0x6530512a6c89c7cfcebc3ba7fcd9ada5f30827a6"  # ccxt 4.5 hyperliquid.py `handle_builder_fee_approval`


def _only_the_master(kind: str, signer: str, key: RealKey) -> str | None:
    """Why a user-signed action cannot go with this key: Hyperliquid answers an API wallet's transfer "Must deposit
    before performing actions. User: <the agent>", which reads as a key it no longer knows, so one bot's transfer
    quarantined the key every bot of the account trades with (session 27's review)."""
    if signer.lower() == key.api_key.reveal().decode("ascii", "replace").strip().lower():
        return None
    return (f"{kind} must be signed by the account's master wallet, and the account's key is an API wallet (agent): "
            "Hyperliquid lets only the master move funds")


class Hyperliquid(AdapterHooks):
    order_id_keys = ("oid",)  # the member of an order answer naming the exchange's order id
    listings_set_counts = False  # `/info` listings are public reads: no count is ever set from them

    def cancelled_ids(self, req: OutboundRequest) -> tuple[tuple[str, ...], bool]:
        """`cancel`'s oids (its answer's statuses name none); `cancelByCloid` names client ids."""
        try:
            action = json.loads(req.body)["action"]
            kind, cancels = action["type"], action["cancels"]
        except (ValueError, KeyError, TypeError):
            return (), False
        if kind == "cancelByCloid":
            return (), True
        if kind != "cancel" or not isinstance(cancels, list):
            return (), False
        return tuple(str(c["o"]) for c in cancels if isinstance(c, dict) and isinstance(c.get("o"), int)
                     and not isinstance(c.get("o"), bool)), False
    def cancelled_client_ids(self, req: OutboundRequest, status: int, body: bytes) -> tuple[str, ...]:
        """`cancelByCloid`'s cloids (lowercased, as recorded when placed) whose status is "success"."""
        return hyperliquid_cancelled_cloids(req.body, status, body)

    # a modify places the order anew under its oid: its size is read as what rests after it, fills not counted
    # (if Hyperliquid counts them, keyproxy overstates what rests by the fills: never less than the truth)
    amend_size_is_remaining = True
    amend_may_turn = True  # the modify's order names its side (`b`), as a new order would
    # and a modified order may rest under a new oid (batchModify's statuses name it): read as replacing
    amend_replaces = True
    amend_sets_reduce_only = True  # a modify restates the whole order, `r` included
    fill_markets = frozenset({"perp", "spot"})  # hyperliquid_fills.py
    budgets = BUDGETS  # the IP's request weight (hyperliquid_budget.py)

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        return hyperliquid_costs(req.path, req.body)
    reconciles_by_owner = True  # userFills names the master address

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
        return hyperliquid_order_updates(req.path, req.body, status, body)

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        return hyperliquid_placed_ids(body)

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        return hyperliquid_amend_verdicts(body, legs)

    def reconcile_request(self, scope: str, since_ms: int, owner: str = "") -> tuple[str, str, str, bytes] | None:
        return hyperliquid_reconcile_request(owner, since_ms) if owner else None
    name = "hyperliquid"
    environments = (
        Environment("production", (("/", "https://api.hyperliquid.xyz"),)),
        Environment("testnet", (("/", "https://api.hyperliquid-testnet.xyz"),)),
    )
    relayed_response_headers = ("content-type",)
    needs_nonce = True
    nonce_in_ms = True  # keyproxy's sequence for this key counts milliseconds (Hyperliquid's window is in ms)
    ordered_nonces = False  # any unseen nonce above the smallest of the 100 highest: concurrent requests are fine
    verify_request = ("POST", INFO_PATH, "", b'{"type":"meta"}')
    # keyproxy's own public calls that publish the asset indexes orders name (`market_names` reads them)
    market_list_requests = (("POST", INFO_PATH, "", b'{"type":"meta"}'),
                            ("POST", INFO_PATH, "", b'{"type":"spotMeta"}'))

    def __init__(self) -> None:
        # body digest -> the addresses that may have signed it: `presented_keys` and `verify` read one
        # request's signature once (recovery costs ~0.5 ms per source)
        self._recovered: dict[bytes, _Recovery] = {}
        self._parsed: dict[bytes, dict[str, Any]] = {}  # body -> its document: parsed once per request, not six times
        self._mainnet_first = True  # which phantom-agent source to recover first (the last one that matched)
        self._last_source: dict[str, bool] = {}
        # the addresses keyproxy's real keys sign as: an answer calls the key refused only when it names one of them
        # (an action Hyperliquid hashes otherwise than keyproxy did recovers to a random address, named the same way)
        self._signed_as: set[str] = set()

    def warm(self) -> None:
        _eth.warm()

    # --- classification -----------------------------------------------------------------------------

    def classify(self, method: str, path: str) -> Endpoint | None:
        if method != "POST":
            return None
        if path == INFO_PATH:
            # every /info query is public at Hyperliquid (a user's state is queried by address, unsigned)
            return Endpoint(EndpointClass.PUBLIC, "info", signed=False)
        if path == EXCHANGE_PATH:
            return Endpoint(EndpointClass.TRADE, "exchange")  # refined by the action (`classify_request`)
        return None

    def classify_request(self, req: IncomingRequest) -> Endpoint | None:
        if req.path != EXCHANGE_PATH:
            return None
        doc = self._doc(req.body)
        action = doc["action"]
        if action["type"] == "setReferrer" or (
                action["type"] == "approveBuilderFee" and str(action.get("builder", "")).lower() == CCXT_BUILDER):
            # ccxt sends these on its own before a first order (and ignores their failure): account settings
            # that pay a third party, never forwarded for a bot, and not held against it as an admin attempt
            raise UnknownEndpoint(f"keyproxy does not forward ccxt's {action['type']} for a bot; ccxt goes on "
                                  "without it (options approvedBuilderFee: true, builderFee: false skip it)")
        endpoint = endpoint_of(doc)
        if endpoint is None:
            raise UnknownEndpoint(f"action type {doc['action']['type'][:40]!r} is not one keyproxy knows for "
                                  "hyperliquid")
        return endpoint

    # --- the bot's signature ------------------------------------------------------------------------

    def presented_key(self, req: IncomingRequest) -> str | None:
        return next(iter(self.presented_keys(req)), None)

    def presented_keys(self, req: IncomingRequest) -> Iterable[str]:
        """The addresses that may have signed, recovered one at a time as the core asks: one per source
        (mainnet, testnet) for an L1 action, the source that matched last time first."""
        if req.path != EXCHANGE_PATH:
            return ()
        try:
            return self._signers(req.body, self._doc(req.body))
        except BadRequest:
            return ()

    def _signers(self, body: bytes, doc: dict[str, Any]) -> _Recovery:
        digest = hashlib.sha256(body).digest()
        cached = self._recovered.get(digest)
        if cached is not None:
            return cached
        action, signature = doc["action"], doc.get("signature")
        candidates: list[Callable[[], str | None]] = []
        if action["type"] in USER_SIGNED:
            primary, fields, _ = USER_SIGNED[action["type"]]
            typed = _eth.user_typed_data(primary, fields, action, _chain_id(action))
            candidates.append(lambda: _eth.recover_typed(typed, signature))
        else:
            vault = doc.get("vaultAddress")
            if vault is not None and not _eth.is_address(vault):
                return _Recovery([])
            try:
                connection = _eth.action_hash(action, vault, doc["nonce"], doc.get("expiresAfter"))
            except (ValueError, TypeError, OverflowError):
                return _Recovery([])
            for mainnet in (self._mainnet_first, not self._mainnet_first):
                candidates.append(lambda m=mainnet: self._recover_l1(connection, m, signature))
        recovery = _Recovery(candidates)
        if len(self._recovered) >= _RECOVERED_CACHE:
            del self._recovered[next(iter(self._recovered))]
        self._recovered[digest] = recovery
        return recovery

    def _doc(self, body: bytes) -> dict[str, Any]:
        """The `/exchange` document of a body (BadRequest when malformed), remembered for the request's other
        steps; callers copy before changing it (`sign`)."""
        doc = self._parsed.get(body)
        if doc is None:
            doc = parse_exchange_body(body)
            if len(self._parsed) >= _RECOVERED_CACHE:
                del self._parsed[next(iter(self._parsed))]
            self._parsed[body] = doc
        return doc

    def _recover_l1(self, connection: bytes, mainnet: bool, signature: object) -> str | None:
        address = _eth.recover_typed(_eth.l1_typed_data(connection, mainnet), signature)
        if address is not None:
            if len(self._last_source) > _RECOVERED_CACHE:  # signers no bot claimed
                self._last_source.clear()
            self._last_source[address] = mainnet
        return address

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        if req.path != EXCHANGE_PATH:
            return Verified(req, replay_id="", expires_ms=0, proven=False)  # /info: public, nothing signed
        doc = self._doc(req.body)
        if doc.get("vaultAddress") is not None:
            raise BadRequest("vaultAddress: trading for a vault or sub-account through keyproxy is not supported; "
                             "give that account its own keyproxy account")
        nonce, expires = doc["nonce"], doc.get("expiresAfter")
        if not now_ms - PAST_WINDOW_MS < nonce < now_ms + FUTURE_WINDOW_MS:
            raise AuthFailure("stale_request", "nonce is outside (now - 2 days, now + 1 day) in milliseconds")
        if expires is not None and expires <= now_ms:
            raise AuthFailure("stale_request", "expiresAfter has passed")
        action = doc["action"]
        if action["type"] in USER_SIGNED:
            _, _, field = USER_SIGNED[action["type"]]
            if action.get(field) != nonce:
                raise BadRequest(f"the action's {field} must equal the request's nonce")
        signers = self._signers(req.body, doc)
        if bot.key_type != "eth" or not any(hmac.compare_digest(s, bot.key_id) for s in signers):
            raise AuthFailure("bad_signature", "the signature is not the virtual agent key's")
        if bot.key_id in self._last_source:  # a bot's SDK keeps its network: try that source first next time
            self._mainnet_first = self._last_source.pop(bot.key_id)
        self._last_source.clear()
        return Verified(req, replay_id="", expires_ms=nonce + FUTURE_WINDOW_MS, sequence=nonce)

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        return req  # the signature is replaced whole when keyproxy signs

    # --- real signing -------------------------------------------------------------------------------

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        headers = {"content-type": "application/json"}
        if req.path == INFO_PATH:
            return OutboundRequest("POST", ctx.origin, INFO_PATH, "", headers, req.body)
        if ctx.nonce is None or key.private_key is None:
            raise BadRequest("hyperliquid signing needs keyproxy's nonce and the account's private key")
        doc = self._doc(req.body)
        action = dict(doc["action"])  # the bot's key order: msgpack hashes it as sent
        mainnet = ctx.environment != "testnet"
        nonce = ctx.nonce
        try:
            private_key = _eth.parse_private_key(key.private_key.reveal())
            signer = _eth.address_of(private_key)  # cached: derived once per key
        except (ValueError, TypeError):
            raise BadRequest("the account's private key cannot sign") from None
        if action["type"] in USER_SIGNED:
            if (why := _only_the_master(action["type"], signer, key)) is not None:
                raise BadRequest(why)
            primary, fields, field = USER_SIGNED[action["type"]]
            action[field] = nonce
            action["hyperliquidChain"] = "Mainnet" if mainnet else "Testnet"
            typed = _eth.user_typed_data(primary, fields, action, _chain_id(action))
        else:
            typed = _eth.l1_typed_data(_eth.action_hash(action, None, nonce, doc.get("expiresAfter")), mainnet)
        try:
            signature = _eth.sign_typed(typed, private_key)
        except (ValueError, TypeError, OverflowError):
            raise BadRequest("the action cannot be encoded for signing") from None
        self._signed_as.add(signer)
        out: dict[str, Any] = {"action": action, "nonce": nonce, "signature": signature}
        if "vaultAddress" in doc:
            out["vaultAddress"] = None
        if "expiresAfter" in doc:
            out["expiresAfter"] = doc["expiresAfter"]
        return OutboundRequest("POST", ctx.origin, EXCHANGE_PATH, "", headers, json.dumps(out).encode())

    def unsignable(self, req: IncomingRequest, key: RealKey) -> str | None:
        """A user-signed action (a transfer, a withdrawal) with an API wallet in the vault: refused before the
        decision, so a refusal charges no daily withdrawal cap (session 27's diff review)."""
        if req.path != EXCHANGE_PATH or key.private_key is None:
            return None
        try:
            kind = self._doc(req.body)["action"]["type"]
        except (BadRequest, KeyError, TypeError):
            return None  # the decision refuses what it cannot read
        if kind not in USER_SIGNED:
            return None
        try:
            signer = self.signer_address(key)
        except (ValueError, TypeError):
            return "the account's private key cannot sign"
        return _only_the_master(kind, signer, key)

    @staticmethod
    def signer_address(key: RealKey) -> str:
        """The address the vault's key signs as (public; `key audit` asks whether the master approved it)."""
        if key.private_key is None:
            raise ValueError("the account's key has no private_key")
        return _eth.address_of(_eth.parse_private_key(key.private_key.reveal()))

    def issue_bot_key(self, key_type: str) -> IssuedBotKey:
        if key_type != "eth":
            raise ValueError("Hyperliquid keys are Ethereum (eth) keys only")
        private_key, address = _eth.new_private_key()
        return IssuedBotKey({"private_key": private_key, "agent_address": address}, BotKey(address, "eth"))

    # --- answers ------------------------------------------------------------------------------------

    def native_error(self, code: str, message: str) -> dict[str, object]:
        # Hyperliquid's error shape; `code`/`msg` are what hyperliquid-python-sdk's ClientError reads on a 4xx
        return {"status": "err", "response": message, "code": code, "msg": message}

    def refusal_status(self, code: str, status: int) -> int:
        return status

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None:
        """An answer saying the signer is no user or approved agent: the real key no longer trades."""
        if b'"err"' not in body[:40]:
            return None
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return None
        said = doc.get("response") if isinstance(doc, dict) and doc.get("status") == "err" else None
        if not isinstance(said, str) or not said.startswith(_UNKNOWN_SIGNER) and "is not an approved agent" not in said:
            return None
        # the signer it names must be keyproxy's: an action whose bytes Hyperliquid hashes otherwise (members in
        # another order, a cloid without 0x) recovers to a random address, and one bot's odd order must not
        # quarantine the key every bot of the account trades with
        named = {a.lower() for a in _ADDRESS.findall(said)}
        return KeyRejection.INVALID if named & self._signed_as else None

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        if req.path != EXCHANGE_PATH:
            return RequestFacts(action="other")
        return hyperliquid_facts(self._doc(req.body))

    def market_ids(self, req: IncomingRequest) -> tuple[str, ...]:
        """The `#<asset>` markets an action names (the core maps them to the exchange's names)."""
        if req.path != EXCHANGE_PATH:
            return ()
        try:
            facts = hyperliquid_facts(self._doc(req.body))
        except BadRequest:
            return ()
        return tuple(dict.fromkeys(leg.symbol for leg in (facts, *facts.orders) if leg.symbol))

    def market_names(self, path: str, body: bytes) -> dict[str, str]:
        return hyperliquid_market_names(body) if path == INFO_PATH else {}

    def prices(self, path: str, body: bytes) -> dict[str, Decimal]:
        return hyperliquid_prices(body) if path == INFO_PATH else {}

    def reference_request(self, leg: RequestFacts) -> tuple[str, str, str, bytes] | None:
        """`POST /info {"type": "allMids"}`: the mid of every market, by the names the facts carry."""
        return ("POST", INFO_PATH, "", b'{"type":"allMids"}') if leg.symbol else None

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        return hyperliquid_order_book_change(req.body, status, body, facts)


class _Recovery:
    """A request's candidate signers, each recovered only when asked for, and remembered."""

    def __init__(self, candidates: list[Callable[[], str | None]]) -> None:
        self._pending = candidates
        self._found: list[str] = []

    def __iter__(self) -> Iterator[str]:
        yield from list(self._found)
        while self._pending:
            address = self._pending.pop(0)()
            if address:
                self._found.append(address)
                yield address


def _chain_id(action: dict[str, Any]) -> int:
    """The wallet chain a user-signed action names (`signatureChainId`, hex)."""
    text = action.get("signatureChainId")
    if not isinstance(text, str) or not text.startswith("0x") or not 2 < len(text) <= 18:
        raise BadRequest("signatureChainId must be a hex chain id")
    try:
        return int(text, 16)
    except ValueError:
        raise BadRequest("signatureChainId must be a hex chain id") from None
