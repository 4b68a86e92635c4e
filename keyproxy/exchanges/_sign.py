"""The exchanges package's only door to `cryptography.hazmat`: the primitives signing needs.

Every verify function returns a bool and compares in constant time; none
raises on a bad signature, so callers cannot forget to catch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

_ALNUM = string.ascii_letters + string.digits


def random_token(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def hmac_sha256_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def hmac_sha512_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha512).digest()).decode()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison of two credentials or signatures."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


def _private_key(pem: bytes) -> object:
    return serialization.load_pem_private_key(pem, password=None)


def sign_ed25519_b64(private_pem: bytes, message: bytes) -> str:
    key = _private_key(private_pem)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return base64.b64encode(key.sign(message)).decode()


def sign_rsa_sha256_b64(private_pem: bytes, message: bytes) -> str:
    key = _private_key(private_pem)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify_b64_signature(public_pem: bytes, signature_b64: str, message: bytes) -> bool:
    """Ed25519 or RSA-PKCS1v15-SHA256 (by the key's type) over `message`."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        key = serialization.load_pem_public_key(public_pem)
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, message)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
        return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False


def new_keypair_pem(key_type: str) -> tuple[bytes, bytes]:
    """(private PKCS#8 PEM, public SPKI PEM) for ed25519, rsa (2048) or ec (P-256)."""
    if key_type == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif key_type == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif key_type == "ec":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"no key pair of type {key_type}")
    return (
        private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
        private.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo),
    )


# --- JWS compact serialization (RFC 7515) for JWT-authenticated exchanges (Coinbase) ------------

_B64URL = frozenset(string.ascii_letters + string.digits + "-_")


def b64url(data: bytes) -> str:
    """base64url without padding, as JWS compact serialization wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict inverse of `b64url`: ValueError on padding, foreign characters or an impossible length."""
    if not set(text) <= _B64URL or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise ValueError("non-canonical base64url")  # stray low bits in the last character
    return raw


def jws_alg_for_private(private_pem: bytes) -> str:
    """The JWS `alg` a private key signs with: ES256 (EC P-256) or EdDSA (Ed25519)."""
    key = _private_key(private_pem)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ValueError("JWS keys are EC P-256 (ES256) or Ed25519 (EdDSA)")


def jws_sign(private_pem: bytes, signing_input: bytes) -> bytes:
    """The raw JWS signature: ES256 as r‖s (32 bytes each, RFC 7518 §3.4, not DER); EdDSA as is."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = _private_key(private_pem)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    raise ValueError("JWS keys are EC P-256 (ES256) or Ed25519 (EdDSA)")


def jws_verify(public_pem: bytes, alg: str, signing_input: bytes, signature: bytes) -> bool:
    """True when `signature` is `alg`'s signature over `signing_input` by this key.

    The algorithm must match the key (no ES256 token accepted for an Ed25519
    key, no `none`, no HMAC), and an ES256 signature must be exactly r‖s.
    """
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    try:
        key = serialization.load_pem_public_key(public_pem)
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            if len(signature) != 64:
                return False
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
            return True
        if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
            return True
        return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False


def new_ec_keypair_sec1_pem() -> tuple[bytes, bytes]:
    """(SEC1 `EC PRIVATE KEY` PEM, SPKI public PEM) on P-256: the form Coinbase's CDP hands out."""
    private = ec.generate_private_key(ec.SECP256R1())
    return (
        private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()),
        private.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo),
    )


def new_ed25519_raw_keypair() -> tuple[bytes, bytes, bytes]:
    """(32-byte seed, 32-byte public key, SPKI public PEM) for keys handed out as raw bytes."""
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key()
    return (
        private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                              serialization.NoEncryption()),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )


def public_pem_of(private_pem: bytes) -> bytes:
    """The SPKI public PEM of a PEM private key (any type)."""
    key = _private_key(private_pem)
    return key.public_key().public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ed25519_private_pem_from_raw(raw: bytes) -> bytes:
    """PKCS#8 PEM of an Ed25519 key given as its 32-byte seed or seed ‖ public key (64 bytes)."""
    if len(raw) not in (32, 64):
        raise ValueError("a raw Ed25519 private key is 32 or 64 bytes")
    private = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and private.public_key().public_bytes(serialization.Encoding.Raw,
                                                            serialization.PublicFormat.Raw) != raw[32:]:
        raise ValueError("the public half does not belong to this Ed25519 seed")
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
