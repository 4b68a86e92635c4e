"""Binance request authentication, written from Binance's own documentation.

Sources (binance/binance-spot-api-docs, ``rest-api.md``):

* "General Information on Endpoints": GET parameters come only from the query
  string; POST/PUT/DELETE parameters may come from the query string and/or an
  ``application/x-www-form-urlencoded`` body; a parameter present in both is
  taken from the query string.
* "SIGNED Endpoint security": ``signature`` may be in the query string or the
  body. "The signature payload of your request is the query string
  concatenated without separator to the HTTP body. Any non-ASCII character
  must be percent-encoded before signing." HMAC: hex HMAC-SHA256, case
  insensitive. RSA: RSASSA-PKCS1-v1_5 + SHA-256, base64. Ed25519: base64.
  Both base64 forms are case sensitive and percent-encoded on the wire.
* CHANGELOG 2026-01-15: payloads are percent-encoded *before* signing;
  anything else is rejected with -1022. So the server's payload is the wire
  text (with non-ASCII bytes percent-encoded), never a decoded form.
* "Timing security": ``timestamp`` mandatory (ms, or µs); ``recvWindow``
  defaults to 5000, max 60000, up to 3 decimals; accept only if
  ``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow``.
* ``errors.md``: -1021, -1022, -1101, -1102, -2014, -2015 texts.

Where the docs are silent (the order of checks, how the ``signature`` pair is
cut out of the payload) the choice made here is noted inline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from keyproxy.emulator.accounts import EmulatedKey

API_KEY_RE = re.compile(r"^[A-Za-z0-9]{64}$")
_LONG_RE = re.compile(r"^[0-9]{1,19}$")
_RECV_WINDOW_RE = re.compile(r"^[0-9]+(\.[0-9]{1,3})?$")
DEFAULT_RECV_WINDOW = Decimal(5000)
MAX_RECV_WINDOW = Decimal(60000)
FUTURE_TOLERANCE_MS = Decimal(1000)
_MICROSECONDS_ABOVE = 10**14  # 13-digit values are ms, 16-digit values are µs


class BinanceError(Exception):
    """An error answer in Binance's shape: HTTP status + ``{"code", "msg"}``."""

    def __init__(self, status: int, code: int, msg: str, data: dict[str, object] | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg
        self.data = data  # what a partly failed call did anyway (cancel-replace's halves)

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg} if self.data is None \
            else {"code": self.code, "msg": self.msg, "data": self.data}


def mandatory_missing(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


BAD_KEY_FORMAT = (401, -2014, "API-key format invalid.")
REJECTED_KEY = (401, -2015, "Invalid API-key, IP, or permissions for action.")
BAD_SIGNATURE = (400, -1022, "Signature for this request is not valid.")


def _pct_non_ascii(raw: bytes) -> bytes:
    """Percent-encode bytes >= 0x80, the canonical (signed) form of the wire text."""
    if raw.isascii():
        return raw
    return b"".join(b"%%%02X" % b if b >= 0x80 else bytes([b]) for b in raw)


def _strip_signature(raw: bytes) -> bytes:
    """Drop every ``signature=...`` pair; the rest is kept byte for byte.

    Binance's examples always append ``&signature=`` last; dropping the pair
    wherever it sits (rather than only a trailing one) is this emulator's
    reading of "the payload is everything except the signature".
    """
    if b"signature" not in raw:
        return raw
    kept = [part for part in raw.split(b"&") if part.split(b"=", 1)[0] != b"signature"]
    return b"&".join(kept)


def _pairs(raw: bytes) -> list[tuple[str, str]]:
    text = raw.decode("utf-8", errors="surrogateescape")
    return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise BinanceError(400, -1101, "Duplicate values for a parameter detected.")
        out[name] = value
    return out


@dataclass
class ParsedRequest:
    """Parameters and signature payload of one request, as Binance sees them."""

    params: dict[str, str]
    payload: bytes
    signature: str | None


def parse_request(method: str, raw_query: bytes, raw_body: bytes) -> ParsedRequest:
    """Merge query and body parameters and build the signature payload."""
    query = _unique(_pairs(raw_query))
    if method.upper() == "GET":
        body: dict[str, str] = {}
        raw_body = b""  # "For GET endpoints, parameters must be sent as a query string."
    else:
        body = _unique(_pairs(raw_body))
    params = {**body, **query}  # query string wins
    signature = params.pop("signature", None)
    payload = _pct_non_ascii(_strip_signature(raw_query)) + _pct_non_ascii(
        _strip_signature(raw_body)
    )
    return ParsedRequest(params=params, payload=payload, signature=signature)


class Verifier:
    """Checks signatures for one key, the way its key type is documented."""

    def __init__(self, key: EmulatedKey) -> None:
        self.key = key
        self._secret = (key.secret or "").encode("utf-8")
        self._public = None
        if key.key_type != "hmac":
            self._public = load_pem_public_key((key.public_key or "").encode("ascii"))

    def verify(self, payload: bytes, signature: str) -> bool:
        if self.key.key_type == "hmac":
            expected = hmac.new(self._secret, payload, hashlib.sha256).hexdigest().encode("ascii")
            provided = signature.lower().encode("utf-8", errors="surrogateescape")
            return hmac.compare_digest(expected, provided)  # HMAC signatures are case-insensitive
        try:
            raw_sig = base64.b64decode(signature.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        try:
            if isinstance(self._public, ed25519.Ed25519PublicKey):
                self._public.verify(raw_sig, payload)
            elif isinstance(self._public, rsa.RSAPublicKey):
                self._public.verify(raw_sig, payload, padding.PKCS1v15(), hashes.SHA256())
            else:  # pragma: no cover - accounts loader rejects other key kinds
                return False
        except InvalidSignature:
            return False
        return True


def check_timing(params: dict[str, str], now_ms: Decimal) -> None:
    """Apply Binance's timing-security rule; raise -1102 or -1021."""
    raw_ts = params.get("timestamp", "")
    if not _LONG_RE.match(raw_ts):
        raise mandatory_missing("timestamp")
    timestamp = Decimal(raw_ts)
    if timestamp > _MICROSECONDS_ABOVE:
        timestamp = timestamp / 1000
    raw_window = params.get("recvWindow")
    window = DEFAULT_RECV_WINDOW
    if raw_window is not None:
        if not _RECV_WINDOW_RE.match(raw_window):
            raise mandatory_missing("recvWindow")
        try:
            window = Decimal(raw_window)
        except InvalidOperation:  # pragma: no cover - regex already guards
            raise mandatory_missing("recvWindow") from None
        if window > MAX_RECV_WINDOW:
            raise BinanceError(
                400, -1102, "'recvWindow' contains unexpected value. Cannot be greater than 60000."
            )
    if timestamp >= now_ms + FUTURE_TOLERANCE_MS:
        raise BinanceError(
            400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        )
    if now_ms - timestamp > window:
        raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


@dataclass
class AuthOutcome:
    """What authentication learned; filled in as far as it got, for the journal."""

    api_key: str | None = None
    key: EmulatedKey | None = None
    signature_verified: bool | None = None


def authenticate(
    *,
    signed: bool,
    api_key_header: str | None,
    parsed: ParsedRequest,
    verifiers: dict[str, Verifier],
    now_ms: Decimal,
    outcome: AuthOutcome,
) -> EmulatedKey:
    """Authenticate an API-key (``signed=False``) or SIGNED request.

    Check order (the docs do not specify one): API-key format (-2014),
    known key (-2015), mandatory ``timestamp``/``signature`` (-1102),
    timing (-1021), signature (-1022). The signature is verified whenever
    it can be, so the journal records the cryptographic result even when
    an earlier check decides the answer.
    """
    outcome.api_key = api_key_header
    if not api_key_header or not API_KEY_RE.match(api_key_header):
        raise BinanceError(*BAD_KEY_FORMAT)
    verifier = verifiers.get(api_key_header)
    if verifier is None:
        raise BinanceError(*REJECTED_KEY)
    outcome.key = verifier.key
    if not signed and parsed.signature is None:
        return verifier.key
    if parsed.signature:
        outcome.signature_verified = verifier.verify(parsed.payload, parsed.signature)
    if "timestamp" not in parsed.params or not parsed.params["timestamp"]:
        raise mandatory_missing("timestamp")
    if not parsed.signature:
        raise mandatory_missing("signature")
    check_timing(parsed.params, now_ms)
    if not outcome.signature_verified:
        raise BinanceError(*BAD_SIGNATURE)
    return verifier.key
