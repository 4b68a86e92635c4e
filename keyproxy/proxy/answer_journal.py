"""The answers journal: an order's answer written to the OS before the bot sees it, its bookkeeping just after.

What `Core.learn` does with an order's answer (the positions book, who placed which order, the open-order
counts: one state.db transaction) costs about 130 µs. Done before the answer was relayed, so that a kill -9 just
after the bot read it could not leave an order the bot knows of and keyproxy does not, it sat on every order's
critical path. Now the answer, with what `learn` reads of its request, is appended to the journal as one line
(`os.write`: on the OS's side once the call returns, so a kill -9 cannot lose it, as an audit line) before the
answer is relayed, and learned right after. The state.db transaction holding what `learn` wrote also records the
line learned (`AnswerJournal`), so at start the lines not recorded are learned again, once each, before the daemon
serves (`Core.replay_journal`). A journal that cannot be written costs nothing but the speed: the answer is then
learned before it is relayed, as before.

A line holds no credential: the outbound request's query and body with the account's real API key (the Binance
WebSocket API carries it in each frame) and the stream token it went with (Kraken's WebSocket v2) blanked, no
headers; a signature is a MAC, which proves nothing without its key. The file is the state directory's, 0600,
emptied at start and whenever every line in it is learned and it is past MAX_JOURNAL_BYTES.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from keyproxy.exchanges.base import OutboundRequest
from keyproxy.policy.model import RequestFacts
from keyproxy.state import StateStore

log = logging.getLogger("keyproxy.journal")

MAX_JOURNAL_BYTES = 4 << 20  # emptied once every line is learned and it is past this (else at each start)
_FIELDS = tuple((f.name, f.default) for f in dataclasses.fields(RequestFacts))
_DECIMALS = frozenset(f.name for f in dataclasses.fields(RequestFacts) if "Decimal" in str(f.type))
_TUPLES = frozenset(f.name for f in dataclasses.fields(RequestFacts) if str(f.type).startswith("tuple"))


def facts_doc(facts: RequestFacts) -> dict[str, Any]:
    """The facts' fields that differ from their defaults, as JSON values (decimals as text, legs nested)."""
    doc: dict[str, Any] = {}
    for name, default in _FIELDS:
        value = getattr(facts, name)
        if value is default or value == default:
            continue
        if name == "orders":
            doc[name] = [facts_doc(o) for o in value]
        elif isinstance(value, Decimal):
            doc[name] = str(value)
        elif isinstance(value, tuple):
            doc[name] = list(value)
        else:
            doc[name] = value
    return doc


def facts_of(doc: dict[str, Any]) -> RequestFacts:
    """`facts_doc`'s inverse."""
    values: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "orders":
            values[name] = tuple(facts_of(o) for o in value)
        elif name in _DECIMALS and value is not None:
            values[name] = Decimal(value)
        elif name in _TUPLES:
            values[name] = tuple(value)
        else:
            values[name] = value
    return RequestFacts(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One journal line, read back: what `Core.learn` needs to learn the answer again."""

    number: int
    account: str
    transport: str  # "rest", or "ws" (the WebSocket path is `out.path`, its dialect the account adapter's)
    out: OutboundRequest
    status: int
    body: bytes
    request_id: str
    bot: str
    facts: RequestFacts
    roles: str  # which of the outcome's records the facts were: p(laced_by), t(rack), u(nread_by)
    decided_ms: int | None = None  # when the request was decided (`Outcome.decided_ms`; lines before session 33: None)


class AnswerJournal:
    """This worker's journal file, and which of its lines state.db holds learned.

    Lines are learned in the order their answers reach the bots, not always in number order (a slow bot's answer
    is still being relayed while a later one is learned), so each learned line has a row of its own in state.db's
    `usage` (`journal|<worker>|<n>`, in `learn`'s transaction); `journal|<worker>` is a base below which every
    line is learned, raised when the file is emptied (then the rows below it go)."""

    def __init__(self, directory: Path, store: StateStore, worker: int = 0) -> None:
        self.path = directory / (f"answers-{worker}.journal" if worker else "answers.journal")
        self._store = store
        self.key = f"journal|{worker}"
        self._fd: int | None = None
        self._broken = False  # a write failed and could not be undone: no more lines until the next start
        self._pending: set[int] = set()  # written, not yet learned
        self._failed: set[int] = set()  # written, their learning raised: the file is kept for the next start
        self._size = 0
        # numbering goes on past every line the file holds and every number state.db recorded
        base, rows = self._learned()
        self._number = max([base, *rows, *(e.number for e in self._lines())])
        self._base, self._above = base, {n for n in rows if n > base}  # as state.db holds them, once committed
        # (line, the base it raises to, or -1: a row of its own), marked inside the open transaction (answers learned
        # together share one: learn_queue.py), in order
        self._marking: list[tuple[int, int]] = []

    def _learned(self) -> tuple[int, set[int]]:
        """(every line up to this number is learned, the learned lines above it)."""
        items = self._store.usage_items(self.key)
        rows = {int(k.rpartition("|")[2]) for k in items if k.startswith(self.key + "|")}
        return int(items.get(self.key, "0")), rows

    def write(self, account: str, transport: str, out: OutboundRequest, status: int, body: bytes, request_id: str,
              bot: str, facts: RequestFacts, roles: str, blank: tuple[str, ...] = (),
              decided_ms: int | None = None) -> int | None:
        """The answer's line, on the OS's side when this returns: its number; None when it cannot be written
        (the caller then learns the answer before relaying it). `blank`: credentials the request carries in its
        parameters (the real API key, a stream token), removed from the line."""
        if self._broken:
            return None
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.fchmod(self._fd, 0o600)
                self._size = os.fstat(self._fd).st_size
            number = self._number + 1
            query, sent = out.query, out.body.decode("latin-1")
            for secret in blank:
                if secret:
                    query, sent = query.replace(secret, ""), sent.replace(secret, "")
            data = orjson.dumps({"n": number, "a": account, "x": transport, "m": out.method, "p": out.path,
                                 "q": query, "b": sent, "s": status, "r": body.decode("latin-1"),
                                 "i": request_id, "bot": bot, "f": facts_doc(facts), "k": roles,
                                 "t": decided_ms}) + b"\n"
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError("short write")
        except (OSError, TypeError, orjson.JSONEncodeError) as e:
            log.warning("answers journal not writable: the answer is learned before it is relayed",
                        extra={"error": type(e).__name__})
            self._undo()
            return None
        self._number = number
        self._size += len(data)
        self._pending.add(number)
        return number

    def _undo(self) -> None:
        """A failed write's bytes cut off (the next line must not be glued to half a line); if they cannot be,
        no more lines until the next start."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._broken = True
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def mark(self, number: int) -> None:
        """Inside `learn`'s state.db transaction: the line `number` is learned (a restart skips it). The next line
        after the base raises the base (one row rewritten, the usual case); a line learned ahead of an earlier
        one gets a row of its own until the base passes it. The base and rows are as this transaction leaves them
        (the lines marked before in it count)."""
        base = max([self._base, *(b for _, b in self._marking)])
        if number == base + 1:
            above, base = self._above.union(n for n, b in self._marking if b < 0), number
            while base + 1 in above:
                base += 1
            self._store.set_usage(self.key, str(base))
            self._marking.append((number, base))
        else:
            self._store.set_usage(f"{self.key}|{number:012d}", "1")
            self._marking.append((number, -1))

    def done(self, number: int) -> None:
        """After that transaction committed: once every line in the file is learned and it is large, the base is
        raised past them, the file emptied and the rows below the base removed, in that order (a kill -9 between
        two steps leaves every line learned still recorded learned)."""
        for i, (n, base) in enumerate(self._marking):
            if n == number:
                del self._marking[i]
                if base < 0:
                    self._above.add(number)
                elif base > self._base:
                    self._base = base
                    self._above = {n for n in self._above if n > self._base}
                break
        self._pending.discard(number)
        if not self._pending and not self._failed and self._size > MAX_JOURNAL_BYTES and self._fd is not None:
            self._settle()

    def failed(self, number: int) -> None:
        """Its learning raised (rolled back): the line stays for the next start, which learns it again."""
        self._marking = [(n, b) for n, b in self._marking if n != number]
        self._pending.discard(number)
        self._failed.add(number)

    def give_up(self, number: int) -> None:
        """A line the start could not learn again (logged): recorded learned, so it is not tried at every start."""
        self._failed.discard(number)
        self.mark(number)
        self.done(number)

    def unlearned(self) -> Iterator[Entry]:
        """The lines state.db does not hold learned, in order; a torn last line (a kill -9 mid-write) is skipped:
        its answer never reached the bot."""
        base, rows = self._learned()
        return (e for e in self._lines() if e.number > base and e.number not in rows)

    def _lines(self) -> Iterator[Entry]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        for line in raw.split(b"\n"):
            try:
                doc = orjson.loads(line)
                out = OutboundRequest(doc["m"], "", doc["p"], doc["q"], {}, doc["b"].encode("latin-1"))
                entry = Entry(int(doc["n"]), doc["a"], doc["x"], out, int(doc["s"]), doc["r"].encode("latin-1"),
                              doc["i"], doc["bot"], facts_of(doc["f"]), doc["k"],
                              None if doc.get("t") is None else int(doc["t"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError, AttributeError):
                continue
            yield entry

    def emptied(self) -> None:
        """At start, once every line is learned again: the file is emptied, the numbering goes on."""
        self._settle()

    def _settle(self) -> None:
        base = self._number
        self._store.set_usage(self.key, str(base))
        self._base, self._above = base, set()
        try:
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.truncate(self.path, 0)
        except OSError:
            return
        self._size = 0
        self._store.forget_usage(self.key + "|", self.key + "|~")


def orphans(directory: Path, workers: int) -> list[int]:
    """Worker indexes of journals a run with more workers left (`answers-<i>.journal`, i >= workers): worker 0
    learns them at start."""
    found = []
    for path in directory.glob("answers-*.journal"):
        index = path.stem.partition("-")[2]
        if index.isdigit() and int(index) >= max(workers, 1):
            found.append(int(index))
    return sorted(found)
