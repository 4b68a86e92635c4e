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
