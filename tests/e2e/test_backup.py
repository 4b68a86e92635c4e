"""Backup while the daemon serves; restore refuses what it must and brings back every record."""

from __future__ import annotations

import json
import shutil
import threading

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import call, hmac_sign


def test_backup_under_load_and_restore(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dev = DevStack(tmp_path / "stack", extra_config="[governor]\nenabled = false\n")  # load above Binance's budgets
    key = new_real_key()
    try:
        dev.serve_account("main", key)
        bot = dev.add_bot("busy", "main", "read")
        stop, statuses = threading.Event(), []

        def load() -> None:
            import time

            while not stop.is_set():
                q = hmac_sign(bot["secret"], f"timestamp={time.time_ns() // 1000}")
                statuses.append(call(bot["base_url"], "GET", "/api/v3/account", q,
                                     headers={"X-MBX-APIKEY": bot["api_key"]}).status)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            for i in range(3):  # admin writes during the backup too
                dev.add_bot(f"extra{i}", "main", "read")
            backup = tmp_path / "vault-backup.db"
            out = dev.cli("vault", "backup", str(backup))
            assert "backed up" in out.stdout
        finally:
            stop.set()
            worker.join(30)
        assert statuses and set(statuses) == {200}  # the daemon kept serving
        assert backup.stat().st_mode & 0o777 == 0o600
        assert key.credentials["secret"].encode() not in backup.read_bytes()
        refused = dev.cli("vault", "backup", str(backup), check=False)
        assert refused.returncode == 1 and "refusing to overwrite" in refused.stderr
        # a directory that is not there: one line that says what to do, nothing written, daemon serving
        nowhere = dev.cli("vault", "backup", str(tmp_path / "backups" / "v.db"), check=False)
        assert (nowhere.returncode, nowhere.stderr.strip()) == (1, f"keyproxy: cannot write a backup in "
                                                                   f"{tmp_path / 'backups'}: No such file or directory "
                                                                   "(create the directory first, mode 0700)")
        assert not (tmp_path / "backups").exists() and "Traceback" not in dev.daemon_log()

        # restore: refused while the daemon runs
        running = dev.cli("vault", "restore", str(backup), check=False)
        assert running.returncode == 1 and "stop the daemon" in running.stderr
        dev.stop_daemon()
        dev.add_bot("after-backup", "main", "read")  # the live vault is now newer than the backup
        older = dev.cli("vault", "restore", str(backup), check=False)
        assert older.returncode == 1 and "older than the live vault" in older.stderr
        # a file that does not open with the current master key
        other = DevStack(tmp_path / "other")
        (other.root / "passphrase").write_text("another passphrase\n")
        other.init()
        foreign = dev.cli("vault", "restore", str(other.root / "state" / "vault.db"), check=False)
        assert foreign.returncode == 1 and "vault locked: wrong master key" in foreign.stderr
        twin = DevStack(tmp_path / "twin")  # same passphrase, but another vault
        twin.init()
        another = dev.cli("vault", "restore", str(twin.root / "state" / "vault.db"), check=False)
        assert another.returncode == 1 and "copy of another vault" in another.stderr
        forced = dev.cli("vault", "restore", str(backup), "--force")
        assert "restored" in forced.stdout
        bots = {b["name"] for b in json.loads(dev.cli("bot", "list", "--json").stdout)}
        assert bots >= {"busy", "extra0", "extra1", "extra2"} and "after-backup" not in bots
        assert json.loads(dev.cli("vault", "status", "--json").stdout)["integrity_problems"] == []
        assert dev.cli("audit", "verify").returncode == 0
        audit = dev.cli("audit", "tail", "-n", "50").stdout
        assert '"op": "vault.backup"' in audit and '"op": "vault.restore"' in audit
        # and the restored vault serves
        dev.start_daemon()
        q = hmac_sign(bot["secret"], "timestamp=" + str(__import__("time").time_ns() // 1000))
        assert call(dev.proxy_url + "/main", "GET", "/api/v3/account", q,  # type: ignore[operator]
                    headers={"X-MBX-APIKEY": bot["api_key"]}).status == 200
    finally:
        dev.close()
        shutil.rmtree(tmp_path / "other", ignore_errors=True)


def test_an_older_vault_copied_into_place_is_refused_until_restored_on_purpose(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A careless `cp backup vault.db` would bring back a revoked bot: keyproxy notices and refuses."""
    dev = DevStack(tmp_path / "stack")
    key = new_real_key()
    try:
        dev.serve_account("main", key)
        dev.add_bot("leaked", "main", "read")
        backup = tmp_path / "vault-backup.db"
        dev.cli("vault", "backup", str(backup))
        dev.cli("bot", "revoke", "leaked")  # its credential leaked: revoked after the backup
        dev.stop_daemon()
        live = dev.root / "state" / "vault.db"
        shutil.copyfile(backup, live)  # behind keyproxy's back, not `keyproxy vault restore`

        serve = dev.cli("serve", "--port", "0", check=False, timeout=30)
        assert serve.returncode == 1, serve.stderr
        assert "older than the vault keyproxy last used" in serve.stderr
        assert "keyproxy vault restore --force FILE" in serve.stderr and "Traceback" not in serve.stderr
        # direct admin commands refuse too: a few changes must not lift the count over the mark and hide it
        listed = dev.cli("bot", "list", check=False)
        assert listed.returncode == 1 and "older than the vault keyproxy last used" in listed.stderr
        changes = json.loads(dev.cli("vault", "status", "--json").stdout)["changes"]
        added = dev.cli("bot", "add", "another", "--account", "main", "--scope", "read", check=False)
        assert added.returncode == 1 and json.loads(dev.cli("vault", "status", "--json").stdout)["changes"] == changes
        doctor = json.loads(dev.cli("doctor", "--offline", "--json", check=False).stdout)
        rolled = [f for f in doctor if f["level"] == "fail" and "older than" in f["what"]]
        assert rolled and "vault restore --force" in rolled[0]["fix"], doctor

        # going back on purpose is `vault restore --force`: then the older copy is the one keyproxy holds to
        dev.cli("vault", "restore", "--force", str(backup))
        bots = {b["name"]: b["status"] for b in json.loads(dev.cli("bot", "list", "--json").stdout)}
        assert bots["leaked"] == "active"
        dev.start_daemon()
        assert "vault_changes" in dev.cli("audit", "tail", "-n", "5").stdout  # the trail dates each start
    finally:
        dev.close()
