"""A vault shared by a fleet: every change made under the fleet's write lease, on the newest copy, then shared.

The vault file is already what Redis may hold (sealed blobs with associated data, clear names and
fingerprints), so the fleet shares it whole with its change count: a change on any instance takes the
lease, adopts a newer copy if another instance made one, commits locally (atomic, as always), pushes the
new image and raises the fleet's version. Followers adopt it (`FleetSync`). Nothing here unseals anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from keyproxy.fleet.store import FleetStore, SharedStateUnavailable

log = logging.getLogger("keyproxy.fleet")


class VaultReplica:
    """The link between one open vault and the fleet's copy of it."""

    def __init__(self, fleet: FleetStore, pushed: Callable[[int], None] = lambda version: None) -> None:
        self.fleet = fleet
        self.pushed = pushed  # told the fleet version of each change this instance made
        self.base = -1  # the fleet's change count this copy was last equal to
        self.version = 0  # the fleet version of this instance's newest change
        self.dirty = False  # a change committed here whose push failed: not the fleet's yet

    def attach(self, vault: Any) -> None:
        """Join: adopt the fleet's copy when newer, share ours when the fleet has none or an older one."""
        with self.fleet.lease():
            self._align(vault)
        vault.replica = self

    def _align(self, vault: Any) -> bool:
        """Under the lease: make the local copy and the fleet's the same; True when the local one changed."""
        theirs = self.fleet.vault_changes()
        ours = vault.changes()
        # another instance pushed since this copy was last the fleet's: theirs wins, even at an equal count
        # (ours then holds a change the fleet never got: equal counts, different content)
        conflict = self.base >= 0 and theirs > self.base and (self.dirty or theirs != ours)
        if theirs > ours or conflict:
            if ours > self.base >= 0 or self.dirty:
                log.error("a vault change made here while the shared state was unreachable is dropped: another "
                          "instance changed the vault meanwhile; make it again")
            got = self.fleet.vault_image()
            if got is None:
                return False
            vault.adopt(got[1])
            self.base, self.dirty = vault.changes(), False
            return True
        if theirs < ours or self.dirty:  # the fleet has no copy, an older one, or missed our last push
            self.version = self.fleet.push_vault(ours, vault.image())
            self.pushed(self.version)
        self.base, self.dirty = ours, False
        return False

    def newer_image(self, changes: int) -> tuple[int, bytes] | None:
        """A follower's fetch (any thread): the fleet's copy when it holds more changes than `changes`."""
        floor = self.base if self.dirty else changes  # dirty: any push since our last sync is newer than ours
        if self.fleet.vault_changes() <= floor:
            return None
        got = self.fleet.vault_image()
        return got if got is not None and got[0] > floor else None

    def adopt(self, vault: Any, got: tuple[int, bytes]) -> bool:
        """A follower's pull (the vault's own thread): adopt the fetched copy if still newer."""
        if got[0] <= (self.base if self.dirty else vault.changes()):
            return False
        if self.dirty:
            log.error("a vault change made here while the shared state was unreachable is dropped: another "
                      "instance changed the vault meanwhile; make it again")
        vault.adopt(got[1])
        self.base, self.dirty = vault.changes(), False
        return True

    @contextlib.contextmanager
    def writing(self, vault: Any) -> Iterator[None]:
        """Around one vault transaction: the lease, the newest copy, and the push once it committed."""
        with self.fleet.lease():
            self._align(vault)
            yield
            changes = vault.changes()
            try:
                self.version = self.fleet.push_vault(changes, vault.image())
            except SharedStateUnavailable as e:
                self.dirty = True
                raise SharedStateUnavailable(f"the change was made on this instance only: {e}") from None
            self.base, self.dirty = changes, False
            self.pushed(self.version)


def join(shared: Any, vault: Any, *, strict: bool = True) -> VaultReplica:
    """Attach `vault` to the fleet `shared` ([shared_state]) names. `strict=False` (the daemon): an unreachable
    Redis does not stop the start; the follower aligns the copies once it is back."""
    replica = VaultReplica(FleetStore(shared, vault.vault_id, vault.fleet_key()))
    try:
        replica.attach(vault)
    except SharedStateUnavailable as e:
        if strict:
            raise
        log.error("starting with the vault as this instance last had it: %s", e)
        vault.replica = replica
    return replica
