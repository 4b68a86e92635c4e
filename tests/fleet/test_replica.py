"""The fleet's vault: changes made on any copy, on the newest copy, never lost; adopting one is atomic."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyproxy.config import SharedStateSettings
from keyproxy.errors import VaultError
from keyproxy.fleet.replica import join
from keyproxy.fleet.store import FleetStore, SharedStateUnavailable
from keyproxy.vault import Vault
from tests.redis_server import RedisServer
from tests.vault.helpers import hmac_account, passphrase_source

KILLS = int(os.environ.get("KEYPROXY_CRASH_KILLS", "20")) // 2


def two_copies(tmp_path: Path) -> tuple[Vault, Vault]:
    a = tmp_path / "a" / "vault.db"
    Vault.create(a, passphrase_source("fleet")).close()
    (tmp_path / "b").mkdir(mode=0o700)
    shutil.copy2(a, tmp_path / "b" / "vault.db")
    return (Vault.open(a, lambda kind: passphrase_source("fleet")),
            Vault.open(tmp_path / "b" / "vault.db", lambda kind: passphrase_source("fleet")))


def names(vault: Vault) -> set[str]:
    return {a.name for a in vault.list_accounts()}


def test_a_change_on_either_copy_is_made_on_the_newest_and_lost_by_neither(tmp_path: Path,
                                                                            shared: SharedStateSettings) -> None:
    a, b = two_copies(tmp_path)
    with a, b:
        ra, rb = join(shared, a), join(shared, b)
        a.add_account(hmac_account("first"))
        b.add_account(hmac_account("second"))  # B never followed: its write adopts A's change first
        assert names(b) == {"first", "second"}
        assert b.credentials("first").secret.reveal() == b"SK-first"  # the adopted copy opens with B's key
        got = ra.newer_image(a.changes())
        assert got is not None and ra.adopt(a, got)
        assert names(a) == {"first", "second"} and a.changes() == b.changes()
        assert ra.newer_image(a.changes()) is None and rb.newer_image(b.changes()) is None


def test_a_joining_copy_adopts_the_fleets_newer_one_and_shares_a_newer_one_of_its_own(
        tmp_path: Path, shared: SharedStateSettings) -> None:
    a, b = two_copies(tmp_path)
    with a, b:
        a.add_account(hmac_account("offline"))  # made before any fleet existed
        join(shared, a)  # the fleet had nothing: A's copy is the fleet's
        join(shared, b)
        assert names(b) == {"offline"}


def test_another_vault_is_refused(tmp_path: Path, shared: SharedStateSettings) -> None:
    a, b = two_copies(tmp_path)
    b.close()
    other = Vault.create(tmp_path / "c" / "vault.db", passphrase_source("fleet"))
    with a, other:
        a.add_account(hmac_account("x"))
        with pytest.raises(VaultError, match="another vault"):
            other.adopt(a.image())
        with pytest.raises(VaultError, match="not a SQLite file"):
            other.adopt(b"garbage" * 20)


def test_an_unreachable_redis_refuses_the_change_and_changes_nothing(tmp_path: Path,
                                                                       shared: SharedStateSettings) -> None:
    a, b = two_copies(tmp_path)
    b.close()
    with a:
        join(shared, a)
        dead = SharedStateSettings(url="redis://127.0.0.1:1/0", timeout=0.2)
        a.replica.fleet = FleetStore(dead, a.vault_id, a.fleet_key())
        before = a.changes()
        with pytest.raises(SharedStateUnavailable, match=r"redis://127.0.0.1:1/0 is unavailable"):
            a.add_account(hmac_account("nowhere"))
        assert a.changes() == before and names(a) == set()


def test_a_wrong_password_is_one_line_naming_the_file_not_the_password(tmp_path: Path,
                                                                        redis_server: RedisServer) -> None:
    (tmp_path / "pw").write_text("not-the-password\n")
    settings = SharedStateSettings(url=redis_server.url, password_file=tmp_path / "pw", timeout=1.0)
    with pytest.raises(SharedStateUnavailable) as e:
        FleetStore(settings, "v").ping()
    assert "password_file" in str(e.value) and "not-the-password" not in str(e.value)


def test_kill_9_while_adopting_leaves_one_whole_copy(tmp_path: Path) -> None:
    a, b = two_copies(tmp_path)
    with a:
        a.add_account(hmac_account("one"))
        first = a.image()
        for i in range(20):
            a.add_account(hmac_account(f"many{i}"))
        second = a.image()
        (tmp_path / "first").write_bytes(first)
        (tmp_path / "second").write_bytes(second)
        expected = [{"one"}, names(a)]
    b.close()
    path = tmp_path / "b" / "vault.db"
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-m", "tests.fleet.adopt_writer", str(path),
                                 str(tmp_path / "first"), str(tmp_path / "second")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None and proc.stdout.readline() == "open\n"
        time.sleep(rng.uniform(0.01, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        with Vault.open(path, lambda kind: passphrase_source("fleet")) as vault:
            assert vault.check_integrity() == []
            assert names(vault) in expected


def test_a_vault_copy_or_halts_written_to_redis_without_the_vaults_key_are_refused(
        tmp_path: Path, shared: SharedStateSettings, redis_server: RedisServer) -> None:
    """Write access to Redis is not the master key: a forged or replayed copy is never adopted."""
    import json as _json

    from keyproxy.fleet.store import FleetTampered

    a, b = two_copies(tmp_path)
    with a, b:
        join(shared, a)
        rb = join(shared, b)
        old_image = a.image()
        a.add_account(hmac_account("revoked-later"))
        a.set_account_status("revoked-later", "revoked")
        r, prefix = redis_server.client(), f"keyproxy:{a.vault_id}:"
        # an older image (the account still active) dressed up as newer: its MAC does not match
        r.hset(prefix + "vault", mapping={"changes": a.changes() + 5, "image": old_image})
        with pytest.raises(FleetTampered, match="fails its MAC"):
            rb.newer_image(b.changes())
        # halts: forged, then a replay of an older (MACed) document after a newer one was seen
        fleet = rb.fleet
        fleet.set_halt("all", "", "drill", 1.0)
        saved = r.get(prefix + "control")
        fleet.clear_halt("all", "")
        assert fleet.halts_and_throttles()[0] == []
        r.set(prefix + "control", saved)  # the halt comes back? (a replay)
        with pytest.raises(FleetTampered, match="older"):
            fleet.halts_and_throttles()
        r.set(prefix + "control", _json.dumps({"body": _json.dumps({"seq": 99, "halts": [], "throttles": {}}),
                                               "mac": "0" * 64}))
        with pytest.raises(FleetTampered, match="fail their MAC"):
            fleet.halts_and_throttles()


def test_a_fleet_over_tls_verifies_redis_against_the_named_ca(tmp_path: Path) -> None:
    """rediss:// with [shared_state] tls_ca_file: the vault is shared over TLS; without the CA (the system's
    store does not know it) the certificate is refused in one line."""
    server = RedisServer(tmp_path / "redis", tls=True).start()
    try:
        settings = SharedStateSettings(url=server.url, password_file=server.root / "password", timeout=2.0,
                                       tls_ca_file=server.root / "tls" / "ca.pem")
        a, b = two_copies(tmp_path)
        with a, b:
            join(settings, a)
            a.add_account(hmac_account("over-tls"))
            join(settings, b)
            assert names(b) == {"over-tls"}
        untrusted = SharedStateSettings(url=server.url, password_file=server.root / "password", timeout=2.0)
        with pytest.raises(SharedStateUnavailable, match="rediss://127.0.0.1") as e:
            FleetStore(untrusted, "v").ping()
        assert "certificate" in str(e.value).lower() and "\n" not in str(e.value)
    finally:
        server.stop()


def test_the_shared_image_carries_no_master_key_header_and_each_copy_keeps_its_own(
        tmp_path: Path, shared: SharedStateSettings, redis_server: RedisServer) -> None:
    a, b = two_copies(tmp_path)
    with a, b:
        join(shared, a)
        rb = join(shared, b)
        a.add_account(hmac_account("headerless"))
        wrapped = a._meta["wrapped_data_key"]
        dump = b"".join(v for v in redis_server.client().hgetall(f"keyproxy:{a.vault_id}:vault").values())
        assert wrapped.encode() not in dump and a._meta["master_params"].encode() not in dump
        got = rb.newer_image(b.changes())
        assert got is not None and rb.adopt(b, got)
        assert b._meta["wrapped_data_key"] == wrapped  # its own (a copy of A's here), never the image's blank
    with Vault.open(tmp_path / "b" / "vault.db", lambda kind: passphrase_source("fleet")) as again:
        assert names(again) == {"headerless"}  # still opens with its master key after adopting


def test_a_change_whose_push_failed_never_hides_another_instances_change(tmp_path: Path,
                                                                           shared: SharedStateSettings) -> None:
    """A commits but cannot push; B then makes its own change at the same count: A adopts B's (A's unshared
    change is dropped and logged), so B's change (a revocation, say) is never lost fleet-wide."""
    a, b = two_copies(tmp_path)
    with a, b:
        ra, rb = join(shared, a), join(shared, b)

        def push_fails(changes: int, image: bytes) -> int:  # Redis went away between the lease and the push
            raise SharedStateUnavailable("down")

        real_push, ra.fleet.push_vault = ra.fleet.push_vault, push_fails  # type: ignore[method-assign]
        with pytest.raises(SharedStateUnavailable, match="made on this instance only"):
            a.add_account(hmac_account("a-local"))
        ra.fleet.push_vault = real_push  # type: ignore[method-assign]
        assert ra.dirty and a.changes() == b.changes() + 1
        b.add_account(hmac_account("b-revocation"))  # the same change count as A's unshared one
        got = ra.newer_image(a.changes())
        assert got is not None and ra.adopt(a, got)
        assert names(a) == {"b-revocation"} and not ra.dirty
        a.add_account(hmac_account("a-next"))
        got = rb.newer_image(b.changes())
        assert got is not None and rb.adopt(b, got)
        assert names(b) == {"b-revocation", "a-next"}
