"""The sealing layer: round trip, binding to associated data, hostile KDF parameters."""

from __future__ import annotations

import time

import pytest

from keyproxy.vault import _crypto
from keyproxy.vault._crypto import KdfParams, check_kdf_params


def test_seal_round_trip_and_fresh_nonces() -> None:
    key = _crypto.new_key()
    blobs = {_crypto.seal(key, b"secret", b"aad") for _ in range(1000)}
    assert len(blobs) == 1000  # a fresh random nonce every time
    for blob in list(blobs)[:10]:
        assert _crypto.unseal(key, blob, b"aad") == b"secret"
        assert b"secret" not in blob


@pytest.mark.parametrize("mutate", [
    lambda key, blob, aad: (key, blob, aad + b"x"),                      # other place
    lambda key, blob, aad: (_crypto.new_key(), blob, aad),               # other key
    lambda key, blob, aad: (key, blob[:-1] + bytes([blob[-1] ^ 1]), aad),  # flipped tag bit
    lambda key, blob, aad: (key, blob[:20], aad),                        # truncated
    lambda key, blob, aad: (key, b"\x02" + blob[1:], aad),               # unknown version
])
def test_unseal_refuses_anything_altered(mutate) -> None:  # type: ignore[no-untyped-def]
    key = _crypto.new_key()
    blob = _crypto.seal(key, b"secret", b"vault|account|1|1|secret")
    with pytest.raises(_crypto.SealError):
        _crypto.unseal(*mutate(key, blob, b"vault|account|1|1|secret"))


def test_every_byte_flip_is_rejected() -> None:
    key = _crypto.new_key()
    blob = _crypto.seal(key, b"s" * 40, b"aad")
    for i in range(len(blob)):
        flipped = blob[:i] + bytes([blob[i] ^ 0x80]) + blob[i + 1:]
        with pytest.raises(_crypto.SealError):
            _crypto.unseal(key, flipped, b"aad")


def test_subkeys_are_domain_separated() -> None:
    root = _crypto.new_key()
    assert _crypto.subkey(root, "vault-enc") != _crypto.subkey(root, "fingerprint")
    assert _crypto.subkey(root, "vault-enc") == _crypto.subkey(root, "vault-enc")


@pytest.mark.parametrize("params, creating, expected", [
    (KdfParams(), True, None),
    (_crypto.KDF_FLOOR, True, None),
    (KdfParams(memory_kib=8192, iterations=2, lanes=1), True, "below the OWASP floor"),
    (KdfParams(memory_kib=19456, iterations=1, lanes=1), True, "below the OWASP floor"),
    (KdfParams(memory_kib=8192, iterations=1, lanes=1), False, None),  # old vaults still open
    (KdfParams(memory_kib=4 * 1024 * 1024, iterations=3, lanes=4), False, "above the cap"),
    (KdfParams(memory_kib=262144, iterations=10**6, lanes=4), False, "above the cap"),
    (KdfParams(memory_kib=262144, iterations=3, lanes=2**24), False, "above the cap"),
    (KdfParams(memory_kib=-1, iterations=3, lanes=4), False, "positive integer"),
    (KdfParams(memory_kib=True, iterations=3, lanes=4), False, "positive integer"),  # type: ignore[arg-type]
    (KdfParams(memory_kib="64", iterations=3, lanes=4), False, "positive integer"),  # type: ignore[arg-type]
])
def test_kdf_parameter_checks(params: KdfParams, creating: bool, expected: str | None) -> None:
    problem = check_kdf_params(params, creating=creating)
    assert (problem is None) if expected is None else (expected in (problem or ""))


def test_default_kdf_cost_is_meaningful() -> None:
    """The production default (256 MiB, t=3, p=4) costs tenths of a second here, not milliseconds."""
    start = time.perf_counter()
    _crypto.derive_from_passphrase(b"pw", b"s" * 16, KdfParams())
    assert time.perf_counter() - start > 0.05
