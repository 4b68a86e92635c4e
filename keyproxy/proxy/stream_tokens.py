"""Stream tokens a bot holds: virtual ones, each bound to the bot and the credential it asked with.

An exchange's stream token (a Binance listenKey or margin listenToken, Kraken's WebSocket token) is a bearer
credential: whoever holds it reads the account's private stream, or signs a frame, with no signature of its own.
A bot never sees one. The answer that hands one out is re-written with a virtual token of keyproxy's making, one
per bot, credential and real token, and keyproxy puts the real one back where the virtual one is presented (the
stream's URL, a frame, a keepalive). So the token dies with the credential that obtained it (rotated out, revoked,
expired), as a request signed with that credential would, and a bot that has lost its access cannot take the real
token to the exchange itself (session 26's review: Binance hands every bot of an account the same listenKey, so a
revoked bot that kept it read the account's orders and balances again as soon as another bot renewed it). Memory
only: after a restart a bot asks again, through keyproxy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from keyproxy.exchanges.base import Adapter
from keyproxy.proxy.registry import BotEntry, Snapshot

MAX_LISTEN_KEYS = 10_000  # stream tokens remembered (one per account and market type in normal use)


class Held(NamedTuple):
    """A virtual stream token's holder, the exchange's token it stands for and the endpoint that handed it out."""

    bot: BotEntry
    real: str
    issued_by: str


class StreamTokens:
    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        # (account, virtual token) -> (the bot it was given to, the credential that bot asked with, the exchange's
        # token it stands for, the endpoint that handed it out: which stream it opens)
        self.bound: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        # (account, bot, credential, the exchange's token) -> the virtual token that holder was given for it: a
        # keepalive answering the same real token answers the same virtual one
        self._minted: dict[tuple[str, str, str, str], str] = {}
        # (account, its key's version) -> (the exchange's own stream token, when fetched in ms): Kraken's WebSocket
        # token, which keyproxy fetches itself for frames (`stream_token_request`). Per key version: a token the
        # rotated-out key obtained is never sent again
        self.real: dict[tuple[str, int], tuple[str, int]] = {}

    def relayed(self, adapter: Adapter, account: tuple[str, int], path: str, status: int, body: bytes,
                holder: tuple[str, str] | None) -> bytes:
        """A private answer as the bot may see it: a stream token the exchange hands out swapped for a virtual one
        bound to `holder` (bot, credential: the authenticated sender; None: no token at all). `account`: (name, key
        version)."""
        if not adapter.grants_stream_token(path):
            return body

        def mint(real: str) -> str:
            if adapter.stream_token_request is not None:  # the account's own, for the frames keyproxy signs (Kraken)
                self.real[account] = (real, self._clock_ms())
            return self.mint(adapter, account[0], real, holder, path) if holder is not None else ""
        return adapter.swap_stream_token(body, mint)

    def mint(self, adapter: Adapter, account: str, real: str, holder: tuple[str, str], issued_by: str = "") -> str:
        """The holder's virtual token for the exchange's `real` one: the same each time it is handed out anew."""
        bot, credential = holder
        virtual = self._minted.get((account, bot, credential, real))
        if virtual is None or (account, virtual) not in self.bound:
            virtual = adapter.virtual_stream_token()
            self._minted[(account, bot, credential, real)] = virtual
        self.bound.pop((account, virtual), None)  # re-inserted last: the oldest are dropped first
        self.bound[(account, virtual)] = (bot, credential, real, issued_by)
        while len(self.bound) > MAX_LISTEN_KEYS:
            (gone_account, gone_virtual), (gone_bot, gone_credential, gone_real, _) = next(iter(self.bound.items()))
            del self.bound[(gone_account, gone_virtual)]
            self._minted.pop((gone_account, gone_bot, gone_credential, gone_real), None)
        return virtual

    def held(self, snap: Snapshot, account: str, token: str) -> Held | None:
        """Who holds a virtual stream token and what it stands for, while the credential its bot asked with is
        still that bot's (None: not one keyproxy handed out, or its bot has lost that credential)."""
        bound = self.bound.get((account, token))
        if bound is None:
            return None
        bot = snap.bot_by_credential(bound[1])
        return Held(bot, bound[2], bound[3]) if bot is not None and bot.info.name == bound[0] else None

    def release(self, snap: Snapshot, account: str, bot: str, issued_by: str, virtual: str | None) -> bool:
        """A bot closes a stream token: its hold on it (the virtual one it names; naming none, as Binance futures'
        close does, every one it holds from `issued_by`), under any of its credentials (a rotated-out one's too), is
        dropped. True when another bot that may still use it holds the real token, which must then stay open at the
        exchange (Binance hands every bot of an account the same one)."""
        mine = [(k, v) for k, v in self.bound.items() if k[0] == account and v[0] == bot
                and (k[1] == virtual if virtual is not None else v[3] == issued_by)]
        reals = {v[2] for _, v in mine}
        if virtual is not None:  # every virtual token this bot holds for the same real one goes with it
            mine = [(k, v) for k, v in self.bound.items() if k[0] == account and v[0] == bot and v[2] in reals]
        for key, (_, credential, real, _) in mine:
            self.bound.pop(key, None)
            self._minted.pop((account, bot, credential, real), None)
        # naming nothing of its own, the close would end the stream of whoever holds a token from that endpoint
        return any(k[0] == account and v[0] != bot and (v[2] in reals if mine else v[3] == issued_by)
                   and self.held(snap, account, k[1]) is not None for k, v in self.bound.items())
