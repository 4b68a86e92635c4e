"""The WebSocket edge's limits and constants (split from websocket.py): what a socket may do and how long keyproxy
waits for it, and the origin a host-table entry gives a socket."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CLOSE_POLICY = 1008  # RFC 6455 policy violation: SDKs log the reason
CLOSE_GOING_AWAY = 1001
PRIVATE_NAME = ("a market data stream names no user data stream (a listenKey opens one only as "
                "/private/ws?listenKey= or /ws/<listenKey>, obtained through keyproxy)")
# how long the answers to a gone bot's frames are still read and learned (`_Connection._drain`): an exchange answers
# in well under a second; one that has not by then is left to InFlight's count (IN_FLIGHT_S)
DRAIN_S = 10.0
# a socket on a signed path no bot has authenticated on for this long may be closed to make room for a handshake when
# keyproxy holds max_sockets (`WebSocketEdge._evict_anonymous`): a bot logs in at once, so only a socket opened and
# left idle is closed (session 34's review: sockets that never logged in filled max_sockets and refused every bot)
ANONYMOUS_GRACE_S = 5.0
# a frame to a bot not written within this (its socket's buffers full: the bot stopped reading) ends the bot's socket:
# the exchange's socket must go on being read, or the answers to the bot's orders are never learned
BOT_SEND_S = 10.0


@dataclass(frozen=True, slots=True)
class SocketLimits:
    max_frame_bytes: int = 64 << 10
    heartbeat: float = 20.0  # ping the bot this often; a bot that does not answer is closed
    upstream_timeout: float = 10.0  # opening the exchange's socket
    watch_interval: float = 1.0  # how soon a revoked bot's socket closes without a frame
    max_pending: int = 256  # request frames awaiting the exchange's answer, per socket
    max_sockets: int = 512  # open bot sockets in all (each holds an upstream socket)
    max_per_bot: int = 16  # sockets one bot may use at once (Binance: 300 new connections per 5 min per IP)
    # Kraken: a WebSocket token must be first used within 15 minutes; keyproxy sends one on new connections
    # for at most this long, and for the life of a connection that subscribed to a private channel with it
    stream_token_reuse_ms: int = 600_000


PUBLIC = "(public)"  # the reservation of a market data socket's handshake (never a bot's name)


def ws_origin(http_origin: str) -> str:
    """The WebSocket origin for a host-table entry: wss:// stays, https:// -> wss://, http:// (loopback) -> ws://."""
    if http_origin.startswith(("ws://", "wss://")):
        return http_origin
    if http_origin.startswith("https://"):
        return "wss://" + http_origin[len("https://"):]
    return "ws://" + http_origin[len("http://"):]


class FrameMeter:
    """At most `count` messages in any `window` seconds on one socket (a market data relay's, as the exchange
    counts them: `AdapterHooks.relay_frames`)."""

    __slots__ = ("count", "window", "sent")

    def __init__(self, count: int, window: float) -> None:
        self.count, self.window = count, window
        self.sent: deque[float] = deque()

    def admit(self) -> bool:
        """Count one message; False (not counted) when it is one too many."""
        now, sent = time.monotonic(), self.sent
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        if len(sent) >= self.count:
            return False
        sent.append(now)
        return True

    @property
    def refusal(self) -> str:
        return (f"keyproxy: more than {self.count} messages in {self.window:g} s on a market data socket (the "
                "exchange drops such a socket and may ban the IP for every bot)")


def evictable(connections: Iterable[Any], public: int, max_sockets: int) -> Any:
    """The socket to close for a handshake when keyproxy holds max_sockets: of the sockets on a signed path no bot
    authenticated on within ANONYMOUS_GRACE_S and waiting for no answer, the oldest that never sent a frame; else,
    while such sockets and the `public` market data relays hold over half of max_sockets (the public half), the
    oldest of them (a public request or subscription on a signed path, which a bot may use without signing, is
    such a socket's only use). None: nothing may be closed."""
    cutoff = int(time.time() * 1000) - ANONYMOUS_GRACE_S * 1000
    anonymous = [c for c in connections if c.dialect is not None and not c.bots and not c.pending
                 and not c.private_stream and c.closing is None and c.connected_since < cutoff]
    idle = [c for c in anonymous if not c.spoke]
    if not idle and public + len(anonymous) > max_sockets // 2:
        idle = anonymous
    return min(idle, key=lambda c: c.connected_since) if idle else None
