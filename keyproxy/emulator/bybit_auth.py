"""Bybit v5 request authentication, written from Bybit's own documentation.

Sources (bybit-exchange/docs, ``docs/v5/guide.mdx`` "Authentication",
``docs/v5/error.mdx``):

* Headers ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP`` (UTC ms), ``X-BAPI-SIGN``
  and optional ``X-BAPI-RECV-WINDOW`` (ms, "default value is 5,000").
* String to sign: ``timestamp + api_key + recv_window + queryString`` for GET,
  ``timestamp + api_key + recv_window + jsonBodyString`` for POST; HMAC keys
  ("System-generated") sign with HMAC_SHA256 as lowercase hex, RSA keys
  ("Self-generated", the user uploads the public key) with RSA_SHA256 as
  base64. The exchange knows each key's type, so ``X-BAPI-SIGN-TYPE`` (pybit
  always sends "2", ccxt never) is not needed to verify and is ignored.
* Timestamp rule: ``server_time - recv_window <= timestamp < server_time + 1000``.
* Error codes: 10002 (time window), 10003 (API key invalid), 10004 (error
  sign), 10005 (permission denied), 10010 (unmatched IP).
* HTTP codes: 401 "Need to use the correct key to access; need to put
  authentication params in the request header", so an unknown or missing
  key is 401. Every other refusal is HTTP 200 with a non-zero ``retCode``:
  pybit retries 10002 only after ``_check_status_code`` passed (status 200),
  and client reports show 10004 bodies as ordinary responses
  (sieblyio/bybit-api#448).

The string signed is the raw query string / body exactly as received.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from keyproxy.emulator.accounts import EmulatedKey

DEFAULT_RECV_WINDOW = 5000
FUTURE_TOLERANCE_MS = 1000
_DIGITS = re.compile(r"^[0-9]{1,19}$")


class BybitError(Exception):
    """A refusal in Bybit's shape: ``{"retCode", "retMsg", "result", "retExtInfo", "time"}``."""

    def __init__(self, code: int, msg: str, http_status: int = 200) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


INVALID_KEY = (10003, "API key is invalid.", 401)
PERMISSION_DENIED = (10005, "Permission denied, please check your API key permissions.")
UNMATCHED_IP = (10010, "Unmatched IP, please check your API key's bound IP addresses.")


def string_to_sign(timestamp: str, api_key: str, recv_window: str, payload: str) -> str:
    """The documented concatenation (guide.mdx "Create A Request", step 1)."""
    return timestamp + api_key + recv_window + payload


class Verifier:
    """Checks X-BAPI-SIGN for one key, by the key's type (HMAC or RSA)."""

    def __init__(self, key: EmulatedKey) -> None:
        self.key = key
        self._secret = (key.secret or "").encode("utf-8")
        self._public = None
        if key.key_type == "rsa":
            self._public = load_pem_public_key((key.public_key or "").encode("ascii"))

    def verify(self, text: bytes, signature: str) -> bool:
        if self.key.key_type == "hmac":
            expected = hmac.new(self._secret, text, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        if not isinstance(self._public, rsa.RSAPublicKey):  # pragma: no cover - create() checks
            return False
        try:
            self._public.verify(raw, text, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


@dataclass
class AuthOutcome:
    """What authentication learned, filled in as far as it got (for the journal)."""

    api_key: str | None = None
    signature_verified: bool | None = None


def _time_error(timestamp: str, now_ms: int, window: str) -> BybitError:
    return BybitError(
        10002,
        "invalid request, please check your server timestamp or recv_window param. "
        f"req_timestamp[{timestamp}],server_timestamp[{now_ms}],recv_window[{window}]",
    )


def authenticate(
    headers: Mapping[str, str],
    *,
    payload: bytes,
    verifiers: dict[str, Verifier],
    now_ms: int,
    outcome: AuthOutcome,
) -> EmulatedKey:
    """Authenticate one private request; raise BybitError as Bybit answers.

    Check order (undocumented): key (10003), timestamp / recv_window format
    and window (10002), signature (10004). The signature is verified as soon
    as the key is known, so the journal records the cryptographic result
    even when the time check decides the answer.
    """
    api_key = headers.get("X-BAPI-API-KEY")
    outcome.api_key = api_key
    verifier = verifiers.get(api_key or "")
    if verifier is None:
        raise BybitError(*INVALID_KEY)
    timestamp = headers.get("X-BAPI-TIMESTAMP", "")
    window = headers.get("X-BAPI-RECV-WINDOW", str(DEFAULT_RECV_WINDOW))
    signature = headers.get("X-BAPI-SIGN", "")
    prefix = string_to_sign(timestamp, api_key or "", window, "").encode("utf-8")
    if signature:
        outcome.signature_verified = verifier.verify(prefix + payload, signature)
    if not _DIGITS.match(timestamp) or not _DIGITS.match(window):
        raise _time_error(timestamp, now_ms, window)
    ts, recv = int(timestamp), int(window)
    if not now_ms - recv <= ts < now_ms + FUTURE_TOLERANCE_MS:
        raise _time_error(timestamp, now_ms, window)
    if not outcome.signature_verified:
        origin = (prefix + payload).decode("utf-8", "replace")
        raise BybitError(10004, f"error sign! origin_string[{origin}]")
    return verifier.key
