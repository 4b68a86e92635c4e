"""The core's part that says who sent a message and whether it proved it: the bot a credential names (a stranger
learns nothing), its signature, nonce sequence and replay check, and its standing."""

from __future__ import annotations

from keyproxy.exchanges.base import Adapter, AuthFailure, BadRequest, Endpoint, IncomingRequest
from keyproxy.fleet.charges import SharedCharges
from keyproxy.proxy.outcome import Outcome
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.registry import AccountEntry, BotEntry, Snapshot
from keyproxy.proxy.replay import ReplayCache, digest
from keyproxy.secret import Secret
from keyproxy.state import StateStore

TOKEN_HEADER = "x-keyproxy-token"
FLEET_CLOCK_SKEW_MS = 30_000  # a fleet: how far another instance's clock may lag this one's (replay ids outlive it)


class CoreIdentity:
    """`Core`'s identity side (its state is `Core`'s: see there)."""

    _sequences: StateStore | None
    replays: ReplayCache

    def _identify(self, snap: Snapshot, account: AccountEntry, adapter: Adapter, req: IncomingRequest,
                  outcome: Outcome, now_ms: int) -> BotEntry | None:
        """The bot the request names, not yet verified: its answers must not tell a stranger anything
        (which bot a key id belongs to, or whether it is suspended) and it is recorded as a claim only."""
        token = req.headers.get(TOKEN_HEADER)
        if token is not None:
            bot = snap.bots_by_token.get(snap.token_digest(Secret(token)))
            if bot is None or bot.info.mode != "token":
                raise Refused("unknown_bot", "unknown keyproxy token")
        else:
            presented, found = False, None
            for key_id in adapter.presented_keys(req):
                presented, found = True, snap.bots_by_key.get(key_id)
                if found is not None:
                    break
            if not presented:
                return None
            if found is None:
                raise Refused("unknown_bot", "unknown API key")
            bot = found
        # a bot's credential opens its own account only (never another bot's account)
        if bot.info.account != account.info.name:
            raise Refused("unknown_bot", "unknown API key")
        outcome.bot = bot.info.name  # the claim, for the audit record; `authenticated` says if it held
        return bot

    @staticmethod
    def _check_standing(account: AccountEntry, bot: BotEntry, now_ms: int) -> None:
        """An authenticated bot that may not trade now: suspended, revoked, expired, or its key quarantined."""
        if bot.info.status == "suspended":
            raise Refused("bot_suspended", f"bot {bot.info.name!r} is suspended (an anomaly rule or an operator); "
                          "an operator lifts it with `keyproxy bot restore`")
        if bot.info.status != "active":
            raise Refused("unknown_bot", f"bot {bot.info.name!r} is {bot.info.status}")
        if bot.valid_until is not None and now_ms / 1000 >= bot.valid_until:
            raise Refused("expired_credential", f"this credential of bot {bot.info.name!r} has expired "
                          "(TTL or a rotation's grace period); renew or use the new credential")
        if account.info.status != "active":
            raise Refused("key_quarantined", f"account {account.info.name!r}'s key is {account.info.status}: "
                          "no request uses it until an operator restores or rotates it")

    def _authenticate(self, adapter: object, bot: BotEntry, endpoint: Endpoint, req: IncomingRequest,
                      now_ms: int, logged_on: bool = False, shared: SharedCharges | None = None,
                      outcome: Outcome | None = None) -> tuple[IncomingRequest, bool]:
        """The bot's signature, its nonce sequence and the replay check; in a fleet the last two are also
        the fleet's (`shared`), checked with the request's other shared charges. With whether anything proved the
        bot (False: a key-only endpoint's request, its key id alone). The replay ids recorded go on `outcome`
        (`Outcome.replay`: its forward line keeps them for a restart)."""
        if bot.info.mode == "token":
            return strip_or_refuse(adapter, req), True
        if bot.key is None or bot.info.status not in ("active", "suspended"):
            raise Refused("unknown_bot", "unknown API key")  # a revoked credential is no credential
        if logged_on:  # the connection's logon proved the key; the message itself carries none
            return strip_or_refuse(adapter, req), True
        try:
            verified = adapter.verify(req, bot.key, endpoint, now_ms)  # type: ignore[attr-defined]
        except AuthFailure as e:
            raise Refused(e.code, e.message) from None
        except BadRequest as e:
            raise Refused("bad_request", e.message) from None
        if verified.sequence is not None:
            # the bot's own nonce must increase (Kraken's rule), durably: a restart does not reopen old ones
            if self._sequences is None or not self._sequences.advance_bot_sequence(bot.info.name, verified.sequence):
                raise Refused("replayed_request", "nonce is not above this bot's previous one")
            if shared is not None:
                shared.sequence = verified.sequence
        if verified.replay_id and shared is not None:
            # kept past the request's expiry by this instance's clock, by what another instance's may lag behind it
            # (one whose clock is behind still takes the request as fresh: session 25's review)
            ttl = verified.expires_ms - now_ms + FLEET_CLOCK_SKEW_MS
            shared.replays.append((verified.replay_id, ttl, True))
            if verified.also_seen:
                shared.replays.append((verified.also_seen, ttl, False))
        if verified.replay_id:
            first = digest(verified.replay_id)
            seen = self.replays.first_sighting(first, verified.expires_ms, now_ms)
            if seen is None:
                raise Refused("unavailable", "too many signed requests in flight; retry shortly")
            if not seen:
                raise Refused("replayed_request", "this signed request was already received")
            recorded: list[object] = [first]
            if verified.also_seen:  # remembered, not checked (a read's parameters: see Verified.also_seen)
                recorded.append(also := digest(verified.also_seen))
                self.replays.first_sighting(also, verified.expires_ms, now_ms)
            if outcome is not None:
                outcome.replay = [*recorded, verified.expires_ms]
        return verified.request, verified.proven


def strip_or_refuse(adapter: object, req: IncomingRequest) -> IncomingRequest:
    """The request without the bot's credential (a token bot's, a logged-on session's message); unreadable: refused."""
    try:
        return adapter.strip(req)  # type: ignore[attr-defined,no-any-return]
    except BadRequest as e:
        raise Refused("bad_request", e.message) from None
