"""The optional TLS listener (issue 16 item 5): `keyproxy tls init` makes a local CA and a loopback
certificate, `[listen] tls_cert`/`tls_key` turn the listener to https:// and wss://, and python-okx's
WebSocket client, which cannot reach a `ws://` URL, logs in and subscribes through it, trusting the CA by
`SSL_CERT_FILE` only.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyproxy.config import ConfigError, parse_settings
from keyproxy.emulator.devstack import DevStack, new_real_key

TLS_CONFIG = '[listen]\ntls_cert = "state/tls/cert.pem"\ntls_key = "state/tls/key.pem"\n'


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("tls"), extra_config=TLS_CONFIG)
    key = new_real_key(exchange="okx")
    coinbase = new_real_key("ec", exchange="coinbase")
    try:
        stack.start_emulator([key, coinbase])
        stack.init()
        made = stack.cli("tls", "init")
        assert "SSL_CERT_FILE=" in made.stdout
        stack.add_account("okx", key)
        stack.add_account("cb", coinbase)
        stack.start_daemon()
        yield stack
    finally:
        stack.close()


def ca(dev: DevStack) -> Path:
    return dev.root / "state" / "tls" / "ca.pem"


def test_tls_init_writes_a_private_key_only_its_owner_reads_and_keeps_it(dev: DevStack) -> None:
    key = dev.root / "state" / "tls" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    again = dev.cli("tls", "init", check=False)
    assert again.returncode != 0 and "--force" in again.stderr and key.read_bytes() == before


def test_rest_over_https_with_the_local_ca(dev: DevStack) -> None:
    assert dev.proxy_url and dev.proxy_url.startswith("https://")
    context = ssl.create_default_context(cafile=str(ca(dev)))
    with urllib.request.urlopen(f"{dev.proxy_url}/okx/api/v5/public/time", context=context, timeout=10) as r:
        assert json.loads(r.read())["code"] == "0"
    with pytest.raises(urllib.error.URLError):  # without the CA, nothing trusts it
        urllib.request.urlopen(f"{dev.proxy_url}/okx/api/v5/public/time", context=ssl.create_default_context(),
                               timeout=10)


async def test_python_okx_websocket_through_the_tls_listener(dev: DevStack, monkeypatch: pytest.MonkeyPatch) -> None:
    from okx.websocket.WsPrivateAsync import WsPrivateAsync

    monkeypatch.setenv("SSL_CERT_FILE", str(ca(dev)))  # python-okx's default context loads it
    creds = dev.add_bot("okxsdk", "okx", "read")
    assert creds["base_url"].startswith("https://")
    got: list[dict[str, Any]] = []
    ws = WsPrivateAsync(apiKey=creds["api_key"], passphrase=creds["passphrase"], secretKey=creds["secret"],
                        url=creds["base_url"].replace("https://", "wss://") + "/ws/v5/private")
    consumer = await ws.start()
    try:
        await ws.subscribe([{"channel": "orders", "instType": "ANY"}], lambda m: got.append(json.loads(m)))
        for _ in range(50):
            if any(m.get("event") == "subscribe" for m in got):
                break
            await asyncio.sleep(0.1)
    finally:
        await ws.stop()
        consumer.cancel()
    assert any(m.get("event") == "login" and m.get("code") == "0" for m in got), got
    assert any(m.get("event") == "subscribe" for m in got), got


def test_tls_cert_and_key_go_together() -> None:
    with pytest.raises(ConfigError, match="go together"):
        parse_settings({"listen": {"tls_cert": "/x/cert.pem"}}, None, {})


def test_the_coinbase_advanced_py_snippet_works_over_the_tls_listener(dev: DevStack,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """coinbase-advanced-py builds https:// URLs only: `bot add --client coinbase-advanced-py` (which needs the
    TLS listener) prints its RESTClient; with keyproxy's CA trusted it reads accounts through keyproxy."""
    pytest.importorskip("coinbase.rest")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca(dev)))
    code = dev.cli("bot", "add", "cb-sdk", "--account", "cb", "--scope", "read", "--client",
                   "coinbase-advanced-py").stdout
    scope: dict[str, Any] = {}
    exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102 - what the operator would paste
    start = len(dev.journal())
    accounts = scope["client"].get_accounts()
    assert accounts["accounts"] is not None
    assert any(e.get("signature_verified") for e in dev.journal()[start:])
