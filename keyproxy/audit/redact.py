"""The redaction processor: no secret leaves through a log line, whatever shape it takes.

Three fences, applied to every value of every event (nested dicts and lists
included) before rendering:
1. fields named like secrets (secret, passphrase, signature, token, auth and
   exchange auth headers...) are replaced whole;
2. `Secret` objects are replaced whole;
3. strings are scrubbed of every registered secret (raw, hex, base64,
   URL-encoded) and of `name=value` / `Bearer x` patterns that carry one.
Pure and stdlib-only, so it can be tested exhaustively.
"""

from __future__ import annotations

import base64
import functools
import re
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import quote, quote_plus

from keyproxy.secret import Secret

MASK = "<redacted>"

# names of no particular exchange; each exchange's own credential headers come from its catalogue entry
# (exchanges/catalog.py), given to the Redactor by audit/log.py
SECRET_FIELD = re.compile(
    r"(secret|passphrase|password|private[_-]?key|signature|(^|[_-])sign$|token|authorization|cookie"
    r"|api[_-]?key$|apikey|credential)",
    re.IGNORECASE,
)
# Field names that look like secrets but are safe metadata.
SAFE_FIELDS = frozenset({"key_id_prefix", "fingerprint", "token_mode", "signature_verified", "secrets_found"})
_PAIR = re.compile(
    r"(?i)\b(signature|secret|passphrase|token|api[_-]?key|apikey|sign|password|nonce_sig)=([^&\s\"']+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_MIN_NEEDLE = 6


def encodings(value: str) -> set[str]:
    """The forms in which a secret could appear in text."""
    raw = value.encode()
    forms = {value, raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode().rstrip("="),
             base64.urlsafe_b64encode(raw).decode().rstrip("="), quote(value, safe=""), quote_plus(value),
             repr(value)[1:-1], value.replace("\n", "\\n")}
    return {f for f in forms if len(f) >= _MIN_NEEDLE}


class Redactor:
    """A structlog processor plus a registry of known secret values to scrub from any string."""

    def __init__(self, field_names: Iterable[str] = ()) -> None:
        """`field_names`: more names (any case) whose values are masked whole, as SECRET_FIELD's are."""
        self._fields = frozenset(name.lower() for name in field_names)
        self._needles: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._cached = functools.lru_cache(maxsize=4096)(self._scrub)  # log lines repeat the same strings

    def register(self, values: Iterable[str]) -> None:
        """Remember secrets (real and virtual) so that any string containing one is scrubbed."""
        new = set(self._needles)
        for v in values:
            if v:
                new |= encodings(v)
                for line in v.splitlines():  # PEM bodies: each base64 line on its own
                    if len(line) >= 16 and "-----" not in line:
                        new.add(line)
        with self._lock:
            self._needles = tuple(sorted(new, key=len, reverse=True))
            self._cached = functools.lru_cache(maxsize=4096)(self._scrub)  # forget results made without them

    def scrub(self, text: str) -> str:
        return text if len(text) < _MIN_NEEDLE else self._cached(text)  # nothing shorter can hold a secret

    def _scrub(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, MASK)
        text = _PAIR.sub(lambda m: f"{m.group(1)}={MASK}", text)
        return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)

    def clean(self, value: Any, depth: int = 0) -> Any:
        if depth > 8:
            return MASK
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        if isinstance(value, Secret):
            return MASK
        if isinstance(value, (bytes, bytearray)):
            return self.scrub(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, dict):
            return {k: (MASK if self._secret_field(k) and value[k] not in (None, "", True, False) else
                        self.clean(v, depth + 1)) for k, v in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [self.clean(v, depth + 1) for v in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.scrub(str(value))

    def _secret_field(self, name: Any) -> bool:
        return isinstance(name, str) and (_secret_name(name) or (name.lower() in self._fields
                                                                  and name not in SAFE_FIELDS))

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        cleaned = self.clean(dict(event_dict))
        event_dict.clear()
        event_dict.update(cleaned)
        return event_dict


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    return name not in SAFE_FIELDS and bool(SECRET_FIELD.search(name))
