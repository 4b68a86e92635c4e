"""The catalogue (exchanges/catalog.py) is each exchange's identity as the light parts of keyproxy read it (key
types for `key add`, credential header names for the log redactor): the adapters are held to it here."""

from __future__ import annotations

import re

import pytest

from keyproxy.admin.controls import credentials_from_json
from keyproxy.audit.redact import MASK, Redactor
from keyproxy.emulator.devstack import new_real_key
from keyproxy.exchanges import default_adapters
from keyproxy.exchanges.base import IncomingRequest, SignContext
from keyproxy.exchanges.catalog import EXCHANGES, credential_headers
from keyproxy.rotation import real_key

# one private request per exchange, as a bot sends it once its own auth is stripped
PRIVATE = {
    "binance": ("GET", "/api/v3/account", "timestamp=1796385600000", b""),
    "bybit": ("GET", "/v5/account/wallet-balance", "accountType=UNIFIED", b""),
    "coinbase": ("GET", "/api/v3/brokerage/accounts", "", b""),
    "kraken": ("POST", "/0/private/Balance", "", b"nonce=1"),
    "okx": ("GET", "/api/v5/account/balance", "", b""),
}
PLAIN = frozenset({"content-type", "accept", "user-agent"})
# what a key id, signature, passphrase or token looks like in a header (a timestamp, with its colons, does not)
TOKENISH = re.compile(r"(Bearer )?[A-Za-z0-9+/=_.-]{16,}")


def test_every_exchange_has_an_adapter_and_every_adapter_an_entry() -> None:
    assert set(default_adapters()) == set(EXCHANGES)


@pytest.mark.parametrize("exchange", sorted(EXCHANGES))
def test_every_key_type_the_catalogue_accepts_is_one_the_adapter_issues(exchange: str) -> None:
    adapter = default_adapters()[exchange]
    for key_type in EXCHANGES[exchange].key_types:
        issued = adapter.issue_bot_key(key_type)
        assert issued.kept.key_type == key_type


@pytest.mark.parametrize("exchange", sorted(PRIVATE))
def test_every_credential_header_an_adapter_sends_is_masked_by_name_in_logs(exchange: str) -> None:
    """Sign a private request with a real key of every type the exchange takes and log the headers through the
    redactor as configured (no secret registered with it): every header carrying a key id, signature or
    passphrase must be masked by its name, which the catalogue gives it."""
    adapter, redactor = default_adapters()[exchange], Redactor(credential_headers())
    method, path, query, body = PRIVATE[exchange]
    endpoint = adapter.classify(method, path)
    assert endpoint is not None
    for key_type in EXCHANGES[exchange].key_types:
        made = new_real_key(key_type, exchange=exchange)
        key = real_key(key_type, credentials_from_json(made.credentials))
        origin = next(e for e in adapter.environments if e.name == "production").origin_for(path)
        assert origin is not None
        out = adapter.sign(IncomingRequest(method, path, query, {}, body), key, endpoint,
                           SignContext(origin, "production", 1796385600000, nonce=1796385600000000))
        logged = redactor.clean(dict(out.headers))
        api_key = key.api_key.reveal_str()
        for name, value in out.headers.items():
            carries = api_key in value or (name.lower() not in PLAIN and TOKENISH.fullmatch(value) is not None)
            if carries:
                assert logged[name] == MASK, (exchange, key_type, name)
                assert name.lower() in EXCHANGES[exchange].credential_headers or Redactor().clean({name: value})[name] \
                    == MASK, (exchange, name)


def test_the_catalogue_carries_names_the_generic_patterns_miss() -> None:
    """OKX's key id header is masked only because the catalogue names it: the derivation is load-bearing."""
    assert Redactor().clean({"OK-ACCESS-KEY": "a" * 32})["OK-ACCESS-KEY"] != MASK
    assert Redactor(credential_headers()).clean({"OK-ACCESS-KEY": "a" * 32})["OK-ACCESS-KEY"] == MASK
