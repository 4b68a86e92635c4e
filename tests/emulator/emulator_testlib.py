"""Test-local helpers for the emulator tests: a settable clock and a tiny
Binance signer written from Binance's docs (shared with neither keyproxy's
adapters nor the emulator, so a mistake in one cannot hide in the other)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key


class FakeClock:
    """Settable clock so timestamp windows can be tested to the millisecond."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now * 1000)


def sign(key_type: str, secret: str, payload: str) -> str:
    """Signature for ``payload`` as Binance's docs describe it (not yet percent-encoded)."""
    if key_type == "hmac":
        return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    private = load_pem_private_key(secret.encode(), None)
    if isinstance(private, rsa.RSAPrivateKey):
        raw = private.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = private.sign(payload.encode())  # type: ignore[call-arg]
    return base64.b64encode(raw).decode()


def signed_query(key_type: str, secret: str, params: dict[str, Any]) -> str:
    """``params`` url-encoded plus ``&signature=`` (percent-encoded), ready for a URL or body."""
    payload = urlencode(params)
    return payload + "&" + urlencode({"signature": sign(key_type, secret, payload)})
