"""Ready-made client configurations: the exact snippet a bot's library or framework needs to trade through
keyproxy (`keyproxy bot add ... --client NAME`, `keyproxy bot config BOT --client NAME`).

ccxt's URL map is generated from the installed ccxt's own `urls['api']` (every entry, REST and WebSocket,
its scheme and host replaced by the bot's base URL, its path kept), so a URL a new ccxt version adds cannot
be missed. Nothing here holds a secret: the caller passes what the operator may see (the whole credential
once, at `bot add`; placeholders afterwards).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# client -> the exchanges it serves (None: any exchange ccxt has)
CLIENTS: dict[str, tuple[str, ...] | None] = {
    "ccxt": None,
    "freqtrade": ("binance", "okx", "bybit", "kraken", "hyperliquid"),
    "python-binance": ("binance",),
    "krakenex": ("kraken",),
    "python-okx": ("okx",),
    "pybit": ("bybit",),
    "hyperliquid-python-sdk": ("hyperliquid",),
    "binance-sdk-spot": ("binance",),
    "coinbase-advanced-py": ("coinbase",),
}
SECRET_PLACEHOLDER = "<shown once by `keyproxy bot add`; rotate with `keyproxy bot rotate` if lost>"


class ClientConfigError(ValueError):
    """A client keyproxy has no snippet for, or one that does not serve this exchange."""


def rewrite_urls(urls: Any, base_url: str) -> Any:
    """Every URL's scheme and host (placeholders such as `{hostname}` too) replaced by the bot's base URL
    (`ws://` for WebSocket ones), its path kept: the exchange's own path prefixes reach keyproxy as they
    would reach the exchange."""
    base = base_url.rstrip("/")
    ws_base = re.sub(r"^http", "ws", base)

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"^wss?://[^/]+", ws_base, re.sub(r"^https?://[^/]+", base, value))
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        return value
    return rewrite(urls)


def ccxt_urls(exchange: str, base_url: str) -> dict[str, Any]:
    """The installed ccxt's `urls['api']` for `exchange`, pointed at keyproxy."""
    try:
        import ccxt
    except ImportError:
        raise ClientConfigError("the ccxt snippet is generated from the installed ccxt's own URLs: "
                                "`pip install ccxt` here first") from None
    cls = getattr(ccxt, exchange, None)
    if cls is None:
        raise ClientConfigError(f"the installed ccxt {ccxt.__version__} has no exchange {exchange!r}")
    return rewrite_urls(cls().urls["api"], base_url)  # type: ignore[no-any-return]


def _ccxt_credentials(exchange: str, shown: Mapping[str, Any]) -> dict[str, str]:
    if exchange == "hyperliquid":
        return {"walletAddress": shown["wallet_address"], "privateKey": shown["private_key"]}
    out = {"apiKey": shown["api_key"], "secret": shown.get("secret") or shown.get("private_key")}
    if shown.get("passphrase"):
        out["password"] = shown["passphrase"]
    return out


def snippet(client: str, exchange: str, shown: Mapping[str, Any]) -> str:
    """The configuration text for `client`; `shown` is the bot's credential as `bot add` shows it (secrets
    replaced by placeholders when shown again)."""
    if client not in CLIENTS:
        raise ClientConfigError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")
    served = CLIENTS[client]
    if served is not None and exchange not in served:
        raise ClientConfigError(f"{client} does not trade on {exchange} (it does: {', '.join(served)})")
    if shown.get("mode") == "token" or "token" in shown:
        raise ClientConfigError("a token-mode bot sends X-Keyproxy-Token itself: no SDK snippet (docs/clients.md)")
    base_url = str(shown["base_url"])
    if client == "ccxt":
        import ccxt

        config = {**_ccxt_credentials(exchange, shown), "urls": {"api": ccxt_urls(exchange, base_url)}}
        return (f"# ccxt {ccxt.__version__}: every urls['api'] entry of {exchange} points at keyproxy "
                f"(ccxt.pro: the same config)\nimport ccxt\n\n"
                f"exchange = ccxt.{exchange}({json.dumps(config, indent=4)})\n")
    if client == "freqtrade":
        urls = {"urls": {"api": ccxt_urls(exchange, base_url)}}
        block: dict[str, Any] = {"name": exchange}
        creds = _ccxt_credentials(exchange, shown)
        block.update({"key": creds["apiKey"], "secret": creds["secret"]} if exchange != "hyperliquid" else creds)
        if "password" in creds:
            block["password"] = creds["password"]
        # enable_ws false: freqtrade's own public candle stream would go straight to the exchange
        block.update({"ccxt_config": urls, "ccxt_async_config": urls, "enable_ws": False})
        return json.dumps({"exchange": block}, indent=4) + "\n"
    base = base_url.rstrip("/")
    key, secret = json.dumps(shown.get("api_key")), json.dumps(shown.get("secret") or shown.get("private_key"))
    if client == "krakenex":  # it signs the path /0/private/..., which keyproxy takes under the account
        return f"import krakenex\n\napi = krakenex.API({key}, {secret})\napi.uri = {json.dumps(base)}\n"
    if client == "python-okx":  # flag "0": live (python-okx sends it as x-simulated-trading)
        args = f"{key}, {secret}, {json.dumps(shown.get('passphrase'))}, flag=\"0\", domain={json.dumps(base)}"
        return ("from okx.Account import AccountAPI\nfrom okx.Trade import TradeAPI\n\n"
                f"account = AccountAPI({args})\ntrade = TradeAPI({args})\n")
    if client == "pybit":  # the constructor builds its endpoint from testnet/demo: set it after
        rsa = ", rsa_authentication=True" if "BEGIN" in str(shown.get("private_key", "")) else ""
        return ("from pybit.unified_trading import HTTP\n\n"
                f"session = HTTP(api_key={key}, api_secret={secret}{rsa})\nsession.endpoint = {json.dumps(base)}\n")
    if client == "hyperliquid-python-sdk":  # the virtual agent key signs; account_address is the master
        return ("from eth_account import Account\nfrom hyperliquid.exchange import Exchange\n"
                "from hyperliquid.info import Info\n\n"
                f"exchange = Exchange(Account.from_key({json.dumps(shown.get('private_key'))}), {json.dumps(base)}, "
                f"account_address={json.dumps(shown.get('wallet_address'))})\n"
                f"info = Info({json.dumps(base)}, skip_ws=True)\n")
    if client == "coinbase-advanced-py":  # it builds https://{base_url}: only keyproxy's TLS listener serves it
        if not base.startswith("https://"):
            raise ClientConfigError("coinbase-advanced-py only speaks https: turn on keyproxy's TLS listener "
                                    "(`keyproxy tls init`, docs/clients.md section 9), then ask again")
        return ("# trust keyproxy's local CA: REQUESTS_CA_BUNDLE=<state dir>/tls/ca.pem "
                "(printed by `keyproxy tls init`)\n"
                "from coinbase.rest import RESTClient\n\n"
                f"client = RESTClient(api_key={key}, api_secret={secret}, "
                f"base_url={json.dumps(base.removeprefix('https://'))})\n")
    if client == "binance-sdk-spot":  # REST by base_path, the WebSocket API by stream_url
        pem = "BEGIN" in str(shown.get("private_key", ""))
        cred = f"api_key={key}, " + (f"private_key={secret}" if pem else f"api_secret={secret}")
        ws = re.sub(r"^http", "ws", base) + "/ws-api/v3"
        return ("from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketAPI\n"
                "from binance_sdk_spot.spot import Spot\n\n"
                f"client = Spot(config_rest_api=ConfigurationRestAPI({cred}, base_path={json.dumps(base)}),\n"
                f"              config_ws_api=ConfigurationWebSocketAPI({cred}, stream_url={json.dumps(ws)}))\n")
    # python-binance: its URLs are class attributes, set before the constructor's own ping()
    return (
        "from binance.client import Client\n\n\n"
        "class KeyproxyClient(Client):\n"
        + "".join(f'    {name} = "{base}{path}"\n' for name, path in (
            ("API_URL", "/api"), ("MARGIN_API_URL", "/sapi"), ("FUTURES_URL", "/fapi"),
            ("FUTURES_DATA_URL", "/futures/data"), ("FUTURES_COIN_URL", "/dapi"),
            ("FUTURES_COIN_DATA_URL", "/futures/data"), ("OPTIONS_URL", "/eapi"), ("PAPI_URL", "/papi")))
        + f"\n\nclient = KeyproxyClient({key}, {secret})\n")


def shown_again(where: Mapping[str, Any]) -> dict[str, Any]:
    """A bot's credential as `bot config` may show it (`Controls.bot_where`): its public key id, never its
    secret or passphrase."""
    out: dict[str, Any] = {"bot": where["bot"], "account": where["account"], "base_url": where["base_url"],
                           "mode": where["mode"], "api_key": where["key_id"],
                           "secret": SECRET_PLACEHOLDER, "private_key": SECRET_PLACEHOLDER}
    if where["exchange"] == "okx":
        out["passphrase"] = SECRET_PLACEHOLDER
    if where.get("wallet_address"):
        out["wallet_address"] = where["wallet_address"]
    return out
