"""Kraken spot REST authentication, written from Kraken's own documentation.

Sources:

* docs.kraken.com/api/docs/guides/spot-rest-auth ("Spot REST Authentication"):
  headers ``API-Key`` (public key) and ``API-Sign``; payload parameter
  ``nonce`` ("always increasing, unsigned 64-bit integer"); optional ``otp``.
  ``API-Sign`` = HMAC-SHA512 of (URI path + SHA256(nonce + POST data)) keyed
  with the base64-decoded secret, base64-encoded; the URI path is the part
  starting with ``/0/private``. Published example: secret
  ``kQH5HW/8p1uG...uXg==``, nonce 1616492376594, URI ``/0/private/AddOrder``,
  payload ``nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25``,
  ``API-Sign``
  ``4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==``.
* docs.kraken.com/api/docs/guides/spot-rest-intro: "Request payloads supports
  Json encoding (Content-Type: application/json) as well as form-encoded";
  HTTP status codes are not used for errors: the ``error`` array says it,
  e.g. ``{"error": ["EGeneral:Invalid arguments:ordertype"]}``.
* support.kraken.com "API error messages": ``EAPI:Invalid key``,
  ``EAPI:Invalid signature``, ``EAPI:Invalid nonce``, ``EGeneral:Permission denied``.
* Fast API key settings (kraken-sandbox docs, ``/oauth/fast-api-key``):
  ``nonce_window`` = "Nonce amount to accept from highest nonce".

Where the docs are silent the choice is noted inline: the key is checked
before the signature, the signature before the nonce, and only a request
whose signature verified can move a key's nonce forward.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from keyproxy.emulator.accounts import EmulatedKey

INVALID_KEY = "EAPI:Invalid key"
INVALID_SIGNATURE = "EAPI:Invalid signature"
INVALID_NONCE = "EAPI:Invalid nonce"
PERMISSION_DENIED = "EGeneral:Permission denied"
INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
UNKNOWN_METHOD = "EGeneral:Unknown method"
_U64_MAX = 2**64 - 1
_NONCE_RE = re.compile(r"^[0-9]{1,20}$")
_SEEN_LIMIT = 1000  # nonces remembered per key when a nonce window is configured


class KrakenError(Exception):
    """An error answer in Kraken's shape: HTTP 200 + ``{"error": [...]}``."""

    def __init__(self, *errors: str) -> None:
        super().__init__(", ".join(errors))
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        return {"error": self.errors}


def invalid_argument(name: str) -> KrakenError:
    """``EGeneral:Invalid arguments:<name>``, the documented per-field form."""
    return KrakenError(f"{INVALID_ARGUMENTS}:{name}")


@dataclass
class PrivateRequest:
    """Parameters of one private POST and the nonce text that was hashed."""

    params: dict[str, Any]
    nonce_text: str | None


def parse_private_body(content_type: str, body: bytes) -> PrivateRequest:
    """Decode a form-encoded or JSON payload; the signature hashes ``body`` as sent.

    A JSON nonce may be a string or an integer; its decimal text is what
    gets hashed (``nonce + POST data``). Anything that cannot be decoded
    leaves the nonce missing, which Kraken answers with ``EAPI:Invalid nonce``.
    """
    text = body.decode("utf-8", errors="replace")
    params: dict[str, Any] = {}
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            decoded = json.loads(text) if text.strip() else {}
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            params = decoded
    else:
        for name, value in parse_qsl(text, keep_blank_values=True):
            params.setdefault(name, value)  # first value wins for repeated names
    raw_nonce = params.get("nonce")
    if isinstance(raw_nonce, bool):
        nonce_text = None
    elif isinstance(raw_nonce, int):
        nonce_text = str(raw_nonce)
    elif isinstance(raw_nonce, str):
        nonce_text = raw_nonce
    else:
        nonce_text = None
    return PrivateRequest(params, nonce_text)


def api_sign(secret_b64: str, uri_path: str, nonce: str, post_data: bytes) -> str:
    """The documented API-Sign: b64(HMAC-SHA512(b64dec(secret), path + SHA256(nonce + data)))."""
    digest = hashlib.sha256(nonce.encode("utf-8") + post_data).digest()
    mac = hmac.new(base64.b64decode(secret_b64), uri_path.encode("utf-8") + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode("ascii")


class Verifier:
    """Checks ``API-Sign`` for one key; Kraken keys are HMAC only."""

    def __init__(self, key: EmulatedKey) -> None:
        self.key = key
        self._secret = base64.b64decode(key.secret or "", validate=True)

    def verify(self, uri_path: str, nonce: str, post_data: bytes, signature: str) -> bool:
        try:
            provided = base64.b64decode(signature.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        digest = hashlib.sha256(nonce.encode("utf-8") + post_data).digest()
        expected = hmac.new(self._secret, uri_path.encode("utf-8") + digest, hashlib.sha512)
        return hmac.compare_digest(expected.digest(), provided)


@dataclass
class NonceBook:
    """Highest accepted nonce per key (and, with a nonce window, the ones seen)."""

    highest: dict[str, int] = field(default_factory=dict)
    seen: dict[str, set[int]] = field(default_factory=dict)

    def accept(self, api_key: str, nonce: int, window: int) -> bool:
        """Take ``nonce`` if it is above the key's highest, or inside the window and unused."""
        last = self.highest.get(api_key)
        seen = self.seen.setdefault(api_key, set())
        if last is not None and nonce <= last:
            if window <= 0 or nonce <= last - window or nonce in seen:
                return False
        else:
            self.highest[api_key] = nonce
        if window > 0:
            seen.add(nonce)
            if len(seen) > _SEEN_LIMIT:
                seen.discard(min(seen))
        return True


@dataclass
class AuthOutcome:
    """What authentication learned, filled in as far as it got (for the journal)."""

    api_key: str | None = None
    signature_verified: bool | None = None


def nonce_window(key: EmulatedKey) -> int:
    """The key's ``nonce_window`` setting (accounts-file ``permissions``), default 0."""
    raw = key.permissions.get("nonce_window", 0)
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else 0


def authenticate(
    *,
    api_key: str | None,
    signature: str | None,
    uri_path: str,
    body: bytes,
    request: PrivateRequest,
    verifiers: dict[str, Verifier],
    nonces: NonceBook,
    outcome: AuthOutcome,
) -> EmulatedKey:
    """Authenticate one private request, in the order key -> signature -> nonce.

    A missing or malformed nonce cannot be hashed the way the client did, so
    the signature is checked over whatever nonce text arrived (empty if none);
    a request whose signature verified but whose nonce is missing, not an
    unsigned 64-bit integer or not above the key's last one gets
    ``EAPI:Invalid nonce``.
    """
    outcome.api_key = api_key
    verifier = verifiers.get(api_key or "")
    if verifier is None:
        raise KrakenError(INVALID_KEY)
    nonce_text = request.nonce_text or ""
    verified = bool(signature) and verifier.verify(uri_path, nonce_text, body, signature or "")
    outcome.signature_verified = verified
    if not verified:
        raise KrakenError(INVALID_SIGNATURE)
    if not _NONCE_RE.match(nonce_text) or int(nonce_text) > _U64_MAX:
        raise KrakenError(INVALID_NONCE)
    if not nonces.accept(verifier.key.api_key, int(nonce_text), nonce_window(verifier.key)):
        raise KrakenError(INVALID_NONCE)
    return verifier.key
