"""A bot's close of a stream token (`StreamTokens.release`): its own holds go, under any of its credentials; the
exchange's token stays open while another bot that may still use it holds it."""

from __future__ import annotations

from types import SimpleNamespace

from keyproxy.exchanges.binance import Binance
from keyproxy.proxy.stream_tokens import StreamTokens

FUTURES, MARGIN = "/fapi/v1/listenKey", "/sapi/v1/userDataStream"


class _Snap:
    """Credential -> bot name, as the registry's snapshot answers it."""

    def __init__(self, credentials: dict[str, str]) -> None:
        self.credentials = credentials

    def bot_by_credential(self, credential: str) -> object:
        name = self.credentials.get(credential)
        return SimpleNamespace(info=SimpleNamespace(name=name)) if name else None


def test_a_bot_alone_under_two_credentials_closes_at_the_exchange() -> None:
    """Session 27's diff review: during a rotation's grace both credentials are the bot's; its close must not be
    kept open for 'another holder' that is itself."""
    tokens, snap = StreamTokens(lambda: 0), _Snap({"old": "a", "new": "a"})
    tokens.mint(Binance(), "acct", "REAL", ("a", "old"), FUTURES)
    tokens.mint(Binance(), "acct", "REAL", ("a", "new"), FUTURES)
    assert tokens.release(snap, "acct", "a", FUTURES, None) is False  # nobody else: sent to the exchange
    assert tokens.bound == {}
    named = tokens.mint(Binance(), "acct", "REAL2", ("a", "old"), MARGIN)
    assert tokens.release(snap, "acct", "a", MARGIN, named) is False and tokens.bound == {}


def test_another_live_bots_hold_keeps_the_token_open() -> None:
    tokens = StreamTokens(lambda: 0)
    mine = tokens.mint(Binance(), "acct", "REAL", ("a", "ca"), FUTURES)
    theirs = tokens.mint(Binance(), "acct", "REAL", ("b", "cb"), FUTURES)
    assert tokens.release(_Snap({"ca": "a", "cb": "b"}), "acct", "a", FUTURES, None) is True
    assert ("acct", mine) not in tokens.bound and ("acct", theirs) in tokens.bound
    # a revoked bot's hold keeps nothing open; a bot holding nothing still may not close the others' token
    assert tokens.release(_Snap({"ca": "a"}), "acct", "a", FUTURES, None) is False
    assert tokens.release(_Snap({"ca": "a", "cb": "b"}), "acct", "a", FUTURES, None) is True
