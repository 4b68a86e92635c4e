"""OKX v5 REST authentication, written from OKX's documentation.

Sources:

* OKX API v5 docs, "REST Authentication" (www.okx.com/docs-v5/en/, mirrored in
  OKX's web3 docs "REST API authentication"): headers ``OK-ACCESS-KEY``,
  ``OK-ACCESS-SIGN``, ``OK-ACCESS-TIMESTAMP`` (UTC, ISO format with
  milliseconds, e.g. ``2020-12-08T09:08:57.715Z``) and ``OK-ACCESS-PASSPHRASE``
  (the passphrase chosen when the key was created). ``OK-ACCESS-SIGN`` =
  Base64(HMAC-SHA256(SecretKey, timestamp + method + requestPath + body));
  method upper case; "GET request parameters are counted as requestPath, not
  body" (example prehash ``timestamp + 'GET' + '/api/v5/account/balance?ccy=BTC'``);
  the body may be omitted when there is none. Request bodies are
  ``application/json``.
* Demo trading: requests carry ``x-simulated-trading: 1`` and need a key
  created in demo trading; a key used in the other environment gets
  ``50101 APIKey does not match current environment.`` (HTTP 401).
* Error codes (docs "Error Code" table, HTTP 401 for 50101-50114): 50102
  Timestamp request expired, 50103/50104/50106/50107 header can not be empty,
  50105 passphrase incorrect, 50111 Invalid OK-ACCESS-KEY, 50112 Invalid
  OK-ACCESS-TIMESTAMP, 50113 Invalid Sign; 50120 key lacks the permission.
  Observed 401 bodies carry only ``msg`` and ``code`` (e.g.
  ``{"msg":"Invalid OK-ACCESS-KEY","code":"50111"}``), so auth errors are
  answered that way; other errors add ``"data": []``.
* Timestamp window: a request is refused when its timestamp is more than 30
  seconds away from server time (OKX's documented window, both directions).

Check order (not documented; chosen here): empty headers, timestamp format,
timestamp window, key, environment, passphrase, signature. The signature is
verified whenever the key is known, so the journal records the cryptographic
result even when an earlier check decides the answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from multidict import CIMultiDictProxy

from keyproxy.emulator.accounts import EmulatedKey

WINDOW_MS = 30_000
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class OkxError(Exception):
    """An error answer in OKX's shape: HTTP status + ``{"code", "msg", "data"}``."""

    def __init__(self, status: int, code: str, msg: str, with_data: bool = True) -> None:
        super().__init__(f"{code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg
        self.with_data = with_data

    def body(self) -> dict[str, Any]:
        if not self.with_data:
            return {"msg": self.msg, "code": self.code}
        return {"code": self.code, "msg": self.msg, "data": []}


def _auth_error(code: str, msg: str) -> OkxError:
    return OkxError(401, code, msg, with_data=False)


def empty_header(name: str, code: str) -> OkxError:
    return _auth_error(code, f'Request header "{name}" can not be empty.')


TIMESTAMP_EXPIRED = ("50102", "Timestamp request expired")
WRONG_ENVIRONMENT = ("50101", "APIKey does not match current environment.")
BAD_PASSPHRASE = ("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.')
INVALID_KEY = ("50111", "Invalid OK-ACCESS-KEY")
INVALID_TIMESTAMP = ("50112", "Invalid OK-ACCESS-TIMESTAMP")
INVALID_SIGN = ("50113", "Invalid Sign")
NO_PERMISSION = ("50120", "API key doesn't have permission to use this function")


def permission_denied() -> OkxError:
    return _auth_error(*NO_PERMISSION)


def parse_timestamp_ms(text: str) -> int | None:
    """Milliseconds since the epoch for ``2020-12-08T09:08:57.715Z``, None if malformed."""
    if not _TS_RE.match(text):
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp() * 1000 + 0.5)


def iso_ms(ms: int) -> str:
    """Inverse of :func:`parse_timestamp_ms` (OKX's own timestamp format)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def ok_access_sign(secret: str, timestamp: str, method: str, request_path: str, body: bytes) -> str:
    """The documented OK-ACCESS-SIGN: Base64(HMAC-SHA256(secret, ts + METHOD + path + body))."""
    prehash = (timestamp + method.upper() + request_path).encode("utf-8") + body
    mac = hmac.new(secret.encode("utf-8"), prehash, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class Verifier:
    """Checks OK-ACCESS-SIGN for one key (OKX REST keys are HMAC only)."""

    def __init__(self, key: EmulatedKey) -> None:
        self.key = key
        self._secret = (key.secret or "").encode("utf-8")

    def verify(self, prehash: bytes, signature: str) -> bool:
        try:
            provided = base64.b64decode(signature.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        expected = hmac.new(self._secret, prehash, hashlib.sha256).digest()
        return hmac.compare_digest(expected, provided)


def is_demo_key(key: EmulatedKey) -> bool:
    return bool(key.permissions.get("demo"))


@dataclass
class AuthOutcome:
    """What authentication learned, filled in as far as it got (for the journal)."""

    api_key: str | None = None
    signature_verified: bool | None = None


def authenticate(
    *,
    headers: CIMultiDictProxy[str],
    method: str,
    request_path: str,
    body: bytes,
    verifiers: dict[str, Verifier],
    now_ms: int,
    outcome: AuthOutcome,
) -> EmulatedKey:
    """Authenticate one private request; ``request_path`` includes ``?query`` as sent."""
    api_key = headers.get("OK-ACCESS-KEY", "")
    sign = headers.get("OK-ACCESS-SIGN", "")
    stamp = headers.get("OK-ACCESS-TIMESTAMP", "")
    passphrase = headers.get("OK-ACCESS-PASSPHRASE", "")
    outcome.api_key = api_key or None
    verifier = verifiers.get(api_key)
    if verifier is not None and sign:
        prehash = (stamp + method.upper() + request_path).encode("utf-8") + body
        outcome.signature_verified = verifier.verify(prehash, sign)
    for value, name, code in (
        (api_key, "OK-ACCESS-KEY", "50103"),
        (sign, "OK-ACCESS-SIGN", "50106"),
        (stamp, "OK-ACCESS-TIMESTAMP", "50107"),
        (passphrase, "OK-ACCESS-PASSPHRASE", "50104"),
    ):
        if not value:
            raise empty_header(name, code)
    stamp_ms = parse_timestamp_ms(stamp)
    if stamp_ms is None:
        raise _auth_error(*INVALID_TIMESTAMP)
    if abs(now_ms - stamp_ms) > WINDOW_MS:
        raise _auth_error(*TIMESTAMP_EXPIRED)
    if verifier is None:
        raise _auth_error(*INVALID_KEY)
    demo_request = headers.get("x-simulated-trading", "0").strip() == "1"
    if demo_request != is_demo_key(verifier.key):
        raise _auth_error(*WRONG_ENVIRONMENT)
    if not hmac.compare_digest(passphrase.encode(), (verifier.key.passphrase or "").encode()):
        raise _auth_error(*BAD_PASSPHRASE)
    if not outcome.signature_verified:
        raise _auth_error(*INVALID_SIGN)
    return verifier.key
