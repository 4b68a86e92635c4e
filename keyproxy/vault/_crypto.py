"""The vault's only door to `cryptography.hazmat`: AEAD sealing, Argon2id, HKDF (and the TLS listener's
local CA, `loopback_certificates`: keyproxy's one other use of key material outside the exchange signers).

Sealed blob layout: ``b"\\x01" || nonce(12) || AES-256-GCM(ciphertext || tag)``.
The version byte lets a later format coexist; the caller always passes the
associated data that binds a blob to its place in the vault.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
_BLOB_VERSION = b"\x01"


class SealError(Exception):
    """A blob did not authenticate (wrong key, wrong place, or altered)."""


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return _BLOB_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != _BLOB_VERSION:
        raise SealError("malformed sealed blob")
    nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise SealError("sealed blob failed authentication") from None


def subkey(root: bytes, purpose: str) -> bytes:
    """Domain-separated key for one purpose (RFC 5869 HKDF-SHA256)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=f"keyproxy/v1/{purpose}".encode()
    ).derive(root)


def mac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost. memory in KiB, as RFC 9106 and `cryptography` count it."""

    memory_kib: int = 262_144
    iterations: int = 3
    lanes: int = 4


# OWASP Password Storage Cheat Sheet floor (m=19 MiB, t=2, p=1): nothing weaker is created.
KDF_FLOOR = KdfParams(memory_kib=19_456, iterations=2, lanes=1)
# Caps applied to parameters read back from a vault header, so a tampered
# header cannot make an unlock allocate gigabytes or run for an hour.
KDF_CAP = KdfParams(memory_kib=2 * 1024 * 1024, iterations=10, lanes=16)
SALT_BYTES = 16


def check_kdf_params(p: KdfParams, *, creating: bool) -> str | None:
    """Return why `p` is unacceptable, or None. Cheap: runs before any allocation."""
    for name in ("memory_kib", "iterations", "lanes"):
        value = getattr(p, name)
        if type(value) is not int or value < 1:
            return f"{name} must be a positive integer"
        if value > getattr(KDF_CAP, name):
            return f"{name}={value} is above the cap {getattr(KDF_CAP, name)}"
    if p.memory_kib < 8 * p.lanes:
        return "memory_kib must be at least 8 x lanes"
    if creating and (p.memory_kib < KDF_FLOOR.memory_kib or p.iterations < KDF_FLOOR.iterations):
        return (
            f"below the OWASP floor (memory_kib >= {KDF_FLOOR.memory_kib}, "
            f"iterations >= {KDF_FLOOR.iterations})"
        )
    return None


def derive_from_passphrase(passphrase: bytes, salt: bytes, p: KdfParams) -> bytes:
    return Argon2id(
        salt=salt, length=KEY_BYTES, iterations=p.iterations, lanes=p.lanes, memory_cost=p.memory_kib
    ).derive(passphrase)


_KEY_TYPES = {
    "ed25519": (ed25519.Ed25519PrivateKey,),
    "rsa": (rsa.RSAPrivateKey,),
    "ec": (ec.EllipticCurvePrivateKey,),
}


def _raw_ed25519_problem(text: bytes) -> str | None:
    """Coinbase CDP hands out Ed25519 keys as base64(seed || public key), 64 bytes, not PEM."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "private_key is not an unencrypted PEM private key (or a base64 Ed25519 key)"
    if len(raw) != 64:
        return "a base64 Ed25519 private_key must hold 64 bytes (seed and public key)"
    public = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32]).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if public != raw[32:]:
        return "the base64 Ed25519 private_key's public half does not match its seed"
    return None


def private_key_problem(pem: bytes, key_type: str, raw_ed25519: bool = False) -> str | None:
    """Why `pem` is not an unencrypted private key of `key_type`, or None (`raw_ed25519`: Coinbase's base64 form)."""
    if raw_ed25519 and key_type == "ed25519" and b"-----BEGIN" not in pem:
        return _raw_ed25519_problem(pem)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "private_key is not an unencrypted PEM private key"
    if not isinstance(key, _KEY_TYPES[key_type]):
        return f"private_key is not a {key_type} key"
    return None


def loopback_certificates(names: tuple[str, ...], addresses: tuple[str, ...], days: int) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key) as PEM, for a TLS listener on loopback. The CA's
    private key is dropped here: nothing else can ever be issued under it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyproxy local CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyproxy")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
