"""Coinbase Advanced Trade / App API request authentication (CDP API keys, JWT).

Written from Coinbase's documentation, not from keyproxy's adapters:

* docs.cdp.coinbase.com "JWT Authentication" (get-started/authentication/
  jwt-authentication) and "Coinbase App API Key Authentication": every
  request carries ``Authorization: Bearer <JWT>``; the JWT header has
  ``alg`` (ES256 for ECDSA keys, EdDSA for Ed25519 keys), ``kid`` = key name
  and a random ``nonce``; the claims are ``sub`` = key name, ``iss`` =
  "cdp", ``nbf`` = now, ``exp`` = now + 120 ("Your JWT expires after 2
  minutes") and ``uri`` = "METHOD api.coinbase.com/path" (no query string).
* docs.cdp.coinbase.com "Authentication overview / Product compatibility":
  the Advanced Trade and Coinbase App REST APIs accept both Ed25519 and
  ECDSA keys ("Direct API calls work with both").
* The official SDK coinbase-advanced-py (``coinbase/jwt_generator.py``)
  builds exactly that token with PyJWT.

What ccxt 4.5.90 sends (``coinbase.create_auth_token``) differs in places a
real server evidently tolerates, so they are accepted here too: ES256 tokens
carry ``iss`` "coinbase-cloud", ``aud`` ["retail_rest_api_proxy"] and
``iat``; EdDSA tokens put the uri in a list claim ``uris``.

Where Coinbase does not document a rule, the choice made is written inline.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from keyproxy.emulator.accounts import EmulatedKey

REST_HOST = "api.coinbase.com"
MAX_LIFETIME_S = 120  # "Your JWT expires after 2 minutes"
ISSUERS = ("cdp", "coinbase-cloud")  # SDK / docs, and ccxt's ES256 tokens
ALGORITHMS = {"ec": "ES256", "ed25519": "EdDSA"}


class CoinbaseAuthError(Exception):
    """Authentication failed; ``reason`` is for the journal and tests only.

    Coinbase itself answers every JWT failure the same way (HTTP 401), so the
    reason never reaches the client.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64url(part: str) -> bytes:
    if not part or any(c in part for c in "+/="):
        raise CoinbaseAuthError("JWT segment is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise CoinbaseAuthError("JWT segment is not base64url") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CoinbaseAuthError(f"JWT {what} is not JSON") from None
    if not isinstance(value, dict):
        raise CoinbaseAuthError(f"JWT {what} is not a JSON object")
    return value


@dataclass
class Token:
    """A decoded, not yet verified JWT."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def decode(authorization: str | None) -> Token:
    """Split ``Authorization: Bearer <jwt>`` into its parts (no checks yet)."""
    if not authorization:
        raise CoinbaseAuthError("no Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme != "Bearer" or not token:
        raise CoinbaseAuthError("Authorization is not 'Bearer <JWT>'")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise CoinbaseAuthError("JWT does not have three segments")
    header = _json_object(_b64url(parts[0]), "header")
    claims = _json_object(_b64url(parts[1]), "claims")
    return Token(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), _b64url(parts[2]))


class KeyVerifier:
    """Checks JWT signatures for one CDP key with its stored public key."""

    def __init__(self, key: EmulatedKey) -> None:
        self.key = key
        self.algorithm = ALGORITHMS[key.key_type]
        self.public = load_pem_public_key((key.public_key or "").encode("ascii"))

    def verify(self, token: Token) -> bool:
        try:
            if isinstance(self.public, ec.EllipticCurvePublicKey):
                if len(token.signature) != 64:  # JWS ES256: raw r || s, 32 bytes each
                    return False
                r = int.from_bytes(token.signature[:32], "big")
                s = int.from_bytes(token.signature[32:], "big")
                der = encode_dss_signature(r, s)
                self.public.verify(der, token.signing_input, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.public, ed25519.Ed25519PublicKey):
                self.public.verify(token.signature, token.signing_input)
            else:  # pragma: no cover - create() only admits ec / ed25519 keys
                return False
        except InvalidSignature:
            return False
        return True


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CoinbaseAuthError(f"claim {name!r} missing or not a number")
    return float(value)


def _uris(claims: dict[str, Any]) -> list[str]:
    """The signed request line(s): ``uri`` (docs, SDK) or ``uris`` (ccxt EdDSA)."""
    if "uri" in claims:
        uri = claims["uri"]
        if not isinstance(uri, str):
            raise CoinbaseAuthError("claim 'uri' is not a string")
        return [uri]
    uris = claims.get("uris")
    if isinstance(uris, list) and uris and all(isinstance(u, str) for u in uris):
        return list(uris)
    raise CoinbaseAuthError("no 'uri' claim (a REST JWT must name the request)")


@dataclass
class AuthResult:
    """What authentication learned, filled in as far as it got (for the journal)."""

    key_name: str | None = None
    key: EmulatedKey | None = None
    signature_verified: bool | None = None


def authenticate(
    authorization: str | None,
    *,
    method: str,
    path: str,
    hosts: set[str] | frozenset[str],
    verifiers: dict[str, KeyVerifier],
    now: float,
    result: AuthResult,
) -> EmulatedKey:
    """Verify a REST JWT the way the docs describe it; raise CoinbaseAuthError.

    Order (undocumented, chosen so the journal always gets the signature
    result when a key is named): decode, known ``kid``, algorithm, signature,
    ``sub`` = ``kid``, issuer, nonce, lifetime, time window, uri.
    """
    token = decode(authorization)
    key = _check(token, verifiers, now, result)
    wanted = {f"{method.upper()} {host}{path}" for host in hosts}
    if not wanted.intersection(_uris(token.claims)):
        raise CoinbaseAuthError(
            f"uri claim does not match this request ({method.upper()} <host>{path})"
        )
    return key


def verify_token(jwt: object, *, verifiers: dict[str, KeyVerifier], now: float, result: AuthResult) -> EmulatedKey:
    """A WebSocket subscription's `jwt`: checked as a REST JWT is, but it names no request (no uri claim,
    docs: "WebSocket Authentication")."""
    if not isinstance(jwt, str) or not jwt:
        raise CoinbaseAuthError("no jwt")
    return _check(decode("Bearer " + jwt), verifiers, now, result)


def _check(token: Token, verifiers: dict[str, KeyVerifier], now: float, result: AuthResult) -> EmulatedKey:
    """Known ``kid``, algorithm, signature, ``sub`` = ``kid``, issuer, nonce, lifetime, time window."""
    kid = token.header.get("kid")
    result.key_name = kid if isinstance(kid, str) else None
    verifier = verifiers.get(kid) if isinstance(kid, str) else None
    if verifier is None:
        raise CoinbaseAuthError("kid names no known API key")
    result.key = verifier.key
    if token.header.get("alg") != verifier.algorithm:
        result.signature_verified = False
        raise CoinbaseAuthError(f"alg must be {verifier.algorithm} for this key")
    result.signature_verified = verifier.verify(token)
    if not result.signature_verified:
        raise CoinbaseAuthError("JWT signature does not verify with the key's public key")
    if token.claims.get("sub") != kid:
        raise CoinbaseAuthError("claim 'sub' must be the key name given as 'kid'")
    if token.claims.get("iss") not in ISSUERS:
        raise CoinbaseAuthError(f"claim 'iss' must be one of {ISSUERS}")
    nonce = token.header.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise CoinbaseAuthError("header 'nonce' missing")
    nbf, exp = _number(token.claims, "nbf"), _number(token.claims, "exp")
    if exp - nbf > MAX_LIFETIME_S:
        raise CoinbaseAuthError(f"JWT lifetime exp - nbf exceeds {MAX_LIFETIME_S} s")
    if now < nbf:
        raise CoinbaseAuthError("JWT not valid yet (nbf is in the future)")
    if now >= exp:
        raise CoinbaseAuthError("JWT expired")
    return verifier.key
