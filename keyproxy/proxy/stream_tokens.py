"""Stream tokens a bot holds, each bound to the bot and the credential it asked with.

A Binance listenKey, or the virtual stand-in for Kraken's WebSocket token (a bot never sees the real one), opens
a private stream or signs a frame without the bot's own signature: it must die with the credential that obtained
it (rotated out, revoked, expired), as a request signed with that credential would. Memory only: after a restart
a bot asks again, through keyproxy.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from keyproxy.exchanges.base import Adapter
from keyproxy.proxy.registry import BotEntry, Snapshot

MAX_LISTEN_KEYS = 10_000  # stream tokens remembered (one per account and market type in normal use)


class StreamTokens:
    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        # (account, stream token) -> (the bot it was given to, the credential that bot asked with)
        self.bound: dict[tuple[str, str], tuple[str, str]] = {}
        # (account, its key's version) -> (the exchange's own stream token, when fetched in ms): Kraken's WebSocket
        # token, which a bot never sees (it holds a virtual one, in `bound`). Per key version: a token the
        # rotated-out key obtained is never sent again
        self.real: dict[tuple[str, int], tuple[str, int]] = {}

    def relayed(self, adapter: Adapter, account: tuple[str, int], path: str, status: int, body: bytes,
                holder: tuple[str, str] | None) -> bytes:
        """A private answer as the bot may see it: a token that trades on the exchange's own WebSocket (Kraken's)
        swapped for a virtual one bound to `holder` (bot, credential: the authenticated sender, or None), a token
        the exchange hands out (a Binance listenKey) remembered as the holder's. `account`: (name, key version)."""
        if adapter.grants_stream_token(path):
            return self._virtual(adapter, account, body, holder)
        if 200 <= status < 300 and holder is not None and body:
            for token in adapter.listen_keys(path, body):
                self.remember(account[0], token, *holder)
        return body

    def bot(self, snap: Snapshot, account: str, token: str) -> BotEntry | None:
        """The bot a stream token was handed to, while the credential it asked with is still that bot's."""
        held = self.bound.get((account, token))
        bot = snap.bot_by_credential(held[1]) if held is not None else None
        return bot if bot is not None and held is not None and bot.info.name == held[0] else None

    def remember(self, account: str, token: str, bot: str, credential: str) -> None:
        self.bound.pop((account, token), None)  # re-inserted last: the oldest are dropped first
        self.bound[(account, token)] = (bot, credential)
        if len(self.bound) > MAX_LISTEN_KEYS:
            del self.bound[next(iter(self.bound))]

    def _virtual(self, adapter: Adapter, key: tuple[str, int], body: bytes, holder: tuple[str, str] | None) -> bytes:
        """Keep the real token (fresh: it renews the account's cached one) and answer a virtual one, known only
        here and bound to the holder; with no authenticated bot, no token at all."""
        def mint(real: str) -> str:
            self.real[key] = (real, self._clock_ms())
            if holder is None:
                return ""
            virtual = "kpv-" + secrets.token_urlsafe(32)
            self.remember(key[0], virtual, *holder)
            return virtual
        return adapter.swap_stream_token(body, mint)
