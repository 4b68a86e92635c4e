"""Answers learned together: the bookkeeping of the answers relayed in one event-loop turn, in one state.db transaction.

An answer that is relayed before it is learned (an order's, once it is in the answers journal; anything that is not
an order) had its own state.db transaction right after it was sent: BEGIN IMMEDIATE, its WAL pages (about nine page
writes), its lock calls and COMMIT, a good share of a request's CPU under load. Queued instead for the end of the
loop turn, the answers that arrived together share one transaction, each inside a savepoint, so one whose
bookkeeping raises is undone alone and handled as a lone one would be (`Core.learn`: its journal line kept for the
next start, its order counted as unanswered). The queue is emptied before any request read after those answers
were sent is handled (the turn's callbacks run before the next turn's reads), and at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from keyproxy.errors import where
from keyproxy.state import StateStore

log = logging.getLogger("keyproxy.proxy")

Learning = tuple[Any, ...]  # the arguments of Core._learn_private, in order


class LearnQueue:
    """The answers waiting for their bookkeeping, learned together at the end of the loop turn."""

    def __init__(self, store: StateStore, learn: Callable[..., None], failed: Callable[[Learning], None],
                 learned: Callable[[Learning], None]) -> None:
        self._store = store
        self._learn = learn  # one answer's bookkeeping (inside the shared transaction)
        self._failed = failed  # one answer's bookkeeping was rolled back
        self._learned = learned  # one answer's bookkeeping is committed
        self._waiting: list[Learning] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, learning: Learning) -> None:
        """Queued; the first of a turn schedules the flush (a running event loop is required)."""
        self._waiting.append(learning)
        if len(self._waiting) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Every queued answer learned, one transaction; an answer that raises is rolled back alone and logged, a
        commit that fails counts every one as rolled back. Never raises: the answers were sent already."""
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        undone: set[int] = set()  # rolled back alone (reported already)
        try:
            with self._store.batch():
                for i, learning in enumerate(waiting):
                    try:
                        with self._store.savepoint():
                            self._learn(*learning)
                    except Exception as e:
                        undone.add(i)
                        self._report(self._failed, learning)
                        _logged(e, 1)
        except Exception as e:  # no transaction, or it could not be committed: none of it is in state.db
            for i, learning in enumerate(waiting):
                if i not in undone:
                    self._report(self._failed, learning)
            _logged(e, len(waiting) - len(undone))
            return
        for i, learning in enumerate(waiting):
            if i not in undone:
                self._report(self._learned, learning)

    @staticmethod
    def _report(hear: Callable[[Learning], None], learning: Learning) -> None:
        """One answer's outcome told (its in-flight place, its journal line): what raises there is logged, and the
        other answers are still told theirs (a flush runs inside some bot's decision, which it must not fail)."""
        try:
            hear(learning)
        except Exception as e:
            _logged(e, 1)


def _logged(e: Exception, answers: int) -> None:
    log.error("an answer's bookkeeping failed: its order stays counted as on its way till it lapses; a journalled "
              "answer is learned again at the next start", extra={"kind": type(e).__name__, "where": where(e),
                                                                  "answers": answers})
