"""A value that must never be printed: masked in repr/str/format, refuses pickling.

`reveal()` is the one greppable accessor, so every place a secret leaves its
wrapper can be found with `grep -n reveal`.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

_MASK = "<redacted>"


class Secret:
    """Secret bytes. Equality is constant time; hashing is refused."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | bytearray | str) -> None:
        if isinstance(value, str):
            value = value.encode("utf-8")
        self._value = bytearray(value)

    def reveal(self) -> bytes:
        """The plaintext bytes. Call only at the point of use."""
        return bytes(self._value)

    def reveal_str(self) -> str:
        """The plaintext as text (UTF-8). Call only at the point of use."""
        return self._value.decode("utf-8")

    def wipe(self) -> None:
        """Best effort: zero our own buffer (copies made elsewhere remain)."""
        for i in range(len(self._value)):
            self._value[i] = 0

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(bytes(self._value), bytes(other._value))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Secret({_MASK})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values cannot be pickled")

    def __copy__(self) -> Secret:
        return Secret(self._value)

    def __deepcopy__(self, memo: object) -> Secret:
        return Secret(self._value)
