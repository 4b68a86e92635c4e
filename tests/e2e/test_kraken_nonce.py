"""Kraken: three bots share one real key from three processes, across a daemon restart, with zero nonce errors.

keyproxy owns the real key's nonce (strictly increasing, persisted before use), so bots whose own
nonces are unrelated to each other never produce EAPI:Invalid nonce at the exchange.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key

BOT = """
import json, sys, krakenex
creds = json.loads(sys.argv[1])
api = krakenex.API(creds["api_key"], creds["secret"])
api.uri = creds["base_url"]
errors = []
for i in range(int(sys.argv[2])):
    answer = api.query_private("Balance" if i % 2 else "OpenOrders")
    errors += answer["error"]
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def kraken_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    from keyproxy.exchanges import default_adapters

    if "kraken" not in default_adapters():
        pytest.skip("no kraken adapter")
    pytest.importorskip("krakenex")
    # a load far above Kraken's call counter, which this emulator does not enforce: keyproxy's budget for it is
    # lifted here (test_governor_venues.py tests it)
    dev = DevStack(tmp_path_factory.mktemp("kraken"),
                   extra_config='[governor.limits]\n"kraken.CALL_COUNTER" = 1000000\n')
    key = new_real_key(exchange="kraken")
    try:
        dev.serve_account("shared", key)
        yield dev
    finally:
        dev.close()


def round_of(dev: DevStack, bots: list[dict], calls: int) -> list[str]:  # type: ignore[type-arg]
    procs = [subprocess.Popen([sys.executable, "-c", BOT, json.dumps(b), str(calls)], stdout=subprocess.PIPE,
                              text=True, env=dev.env) for b in bots]
    errors: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        errors += json.loads(out)
    return errors


def test_three_bots_share_one_key_across_a_restart(kraken_stack: DevStack) -> None:
    dev = kraken_stack
    bots = [dev.add_bot(f"k{i}", "shared", "read") for i in range(3)]
    start = len(dev.journal())
    assert round_of(dev, bots, 20) == []
    dev.stop_daemon()
    port = int(dev.proxy_url.rsplit(":", 1)[1])  # type: ignore[union-attr]
    dev.start_daemon(port)  # same port: the bots' base URLs stay valid
    assert round_of(dev, bots, 20) == []
    arrived = [e for e in dev.journal()[start:] if e.get("api_key")]
    assert len(arrived) == 120 and all(e["signature_verified"] for e in arrived)
    assert not [e for e in arrived if e.get("error_code")], "the exchange refused some requests"


def test_eight_bots_at_once_never_overtake_each_others_nonces(kraken_stack: DevStack) -> None:
    """Requests carrying keyproxy's nonces for one key reach the exchange in nonce order, however many
    bots send at once (one that overtook the request issued before it would be EAPI:Invalid nonce)."""
    import threading

    import krakenex

    dev = kraken_stack
    bots = [dev.add_bot(f"many{i}", "shared", "read") for i in range(8)]
    start = len(dev.journal())
    errors: list[str] = []

    def trade(creds: dict) -> None:  # type: ignore[type-arg]
        api = krakenex.API(creds["api_key"], creds["secret"])
        api.uri = creds["base_url"]
        for i in range(25):
            errors.extend(api.query_private("Balance" if i % 2 else "OpenOrders")["error"])

    threads = [threading.Thread(target=trade, args=(b,)) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    arrived = [e for e in dev.journal()[start:] if e.get("api_key")]
    assert len(arrived) == 200 and not [e for e in arrived if e.get("error_code")]
