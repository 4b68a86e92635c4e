"""The fleet's shared state in Redis: one key prefix per vault, written only through this class.

Keys (under `<prefix>:<vault id>:`):
  vault      hash: changes (the vault's change count), image (the vault file: sealed blobs, clear metadata), mac
  lease      the fleet's write lease: one vault change at a time across every instance (token, expiry)
  version    a counter raised by every change; an instance that has applied it has seen every change
  changes    a Redis Stream of change notices (kind, version): not pub/sub, which drops them on a reconnect
  control    the halts and throttles in force, one JSON document with a sequence number, and its mac
  instances  hash instance id -> {version applied, seen, listen, pid}

A change is written, the version raised and the notice appended in one MULTI transaction, so a follower
that reads the version has everything it names. Every Redis failure is `SharedStateUnavailable`, whose
message names the server (never its password).

The vault image and the control document carry an HMAC under a key derived from the vault's data key
(`Vault.fleet_key`), checked before anything is adopted: write access to Redis without the master key
cannot un-revoke a bot, lift a halt or change an account's upstream (`FleetTampered`); an older control
document than one already seen is refused too (a replayed one would bring a lifted halt back, or drop one).
Counters (rate buckets, replay ids, caps) are not MACed: Redis is trusted to count, as Envoy's and Kong's
global limits trust theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio

from keyproxy.config import SharedStateSettings
from keyproxy.errors import KeyproxyError

LEASE_MS = 15_000  # a dead instance's write lease lapses after this
LEASE_WAIT_S = 10.0  # how long a change waits for another instance's
STREAM_MAXLEN = 1000  # change notices kept (a follower that missed more resyncs from the version anyway)
INSTANCE_TTL_S = 10.0  # an instance not heard from for this long is not counted as live
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_LAST_SEEN = """
for i = 1, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) > tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return redis.call('HGETALL', KEYS[1])
"""


class SharedStateUnavailable(KeyproxyError):
    """Redis could not be reached, refused our credentials, or answered out of shape."""


class FleetTampered(SharedStateUnavailable):
    """What Redis holds fails its MAC, or is older than what this instance has already seen."""


def display_url(url: str) -> str:
    """The server's address as it may be shown: no password (a username may stay)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + (f"[{host}]" if ":" in host else host) \
        + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class FleetStore:
    """The fleet's state for one vault, through a synchronous client (changes are rare: admin commands,
    anomaly actions) and an asynchronous one for the follower."""

    def __init__(self, settings: SharedStateSettings, vault_id: str, mac_key: bytes | None = None) -> None:
        self.settings = settings
        self.where = display_url(settings.url)
        try:
            self._password = settings.password()
        except OSError as e:
            raise SharedStateUnavailable(f"cannot read [shared_state] password_file {settings.password_file}: "
                                         f"{e.strerror or type(e).__name__}") from None
        self.last_version = 0  # the fleet version of the newest change made through this store
        self._mac_key = mac_key  # None: a reader that neither adopts nor writes what is MACed (doctor, status)
        self._control_seq = 0  # the newest control document seen: an older one is a replay (persisted by sync)
        self._prefix = f"{settings.prefix}:{vault_id}:"
        self._held: str | None = None  # the write lease's token while `held_lease` holds it
        # rediss://: the certificate is verified (redis-py's default), against tls_ca_file when one is named
        self._tls = {"ssl_ca_certs": str(settings.tls_ca_file)} if settings.tls_ca_file is not None else {}
        self._redis = redis.Redis.from_url(settings.url, password=self._password, socket_timeout=settings.timeout,
                                           socket_connect_timeout=settings.timeout, retry_on_timeout=False, **self._tls)

    def key(self, name: str) -> str:
        return self._prefix + name

    def aio(self, timed_reads: bool = True) -> redis.asyncio.Redis:
        """An asyncio client to the same server (the follower's blocking stream reads). `timed_reads=False`:
        no timer per socket write and read; the caller bounds each whole call itself (the gate)."""
        s = self.settings
        return redis.asyncio.Redis.from_url(s.url, password=self._password,
                                            socket_timeout=s.timeout + 5 if timed_reads else None,
                                            socket_connect_timeout=s.timeout, **self._tls)

    @contextlib.contextmanager
    def _calls(self) -> Iterator[redis.Redis]:
        try:
            yield self._redis
        except redis.AuthenticationError:
            raise SharedStateUnavailable(f"shared state at {self.where} refused keyproxy's credentials "
                                         "([shared_state] password_file)") from None
        except redis.RedisError as e:
            raise SharedStateUnavailable(f"shared state at {self.where} is unavailable: "
                                         f"{_reason(e)}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._redis.close()

    def ping(self) -> None:
        with self._calls() as r:
            r.ping()

    def aof_enabled(self) -> bool:
        """Whether Redis writes its append-only file (a restart of Redis then keeps the fleet's state)."""
        with self._calls() as r:
            return str(r.info("persistence").get("aof_enabled", 0)) == "1"

    def eviction_policy(self) -> str:
        """Redis's `maxmemory-policy` when it may evict (a `maxmemory` set): anything but `noeviction` may drop
        keyproxy's counters, replay ids and reservations under memory pressure (every one carries a TTL, so
        `volatile-*` takes them first). Without a `maxmemory` Redis never evicts: "noeviction"."""
        with self._calls() as r:
            memory = r.info("memory")
        if not int(memory.get("maxmemory", 0) or 0):
            return "noeviction"
        return str(memory.get("maxmemory_policy", "noeviction"))

    def report(self, this: str | None = None, applied: int | None = None) -> dict[str, Any]:
        """`keyproxy status`: the fleet's version and its instances, with how far behind each is; unreachable:
        the problem, in the same shape."""
        try:
            version = self.version()
            instances = self.instances(live_only=False)
        except SharedStateUnavailable as e:
            return {"where": self.where, "reachable": False, "problem": str(e), "applied": applied, "instances": []}
        rows, now = [], time.time()
        for name, rec in sorted(instances.items()):
            seen = now - float(rec.get("seen", 0))
            at = applied if name == this and applied is not None else int(rec.get("version", 0))
            rows.append({"instance": name, "listen": rec.get("listen", ""), "applied": at, "lag": max(0, version - at),
                         "seen_s_ago": round(seen, 1), "live": seen < INSTANCE_TTL_S, "this": name == this})
        return {"where": self.where, "reachable": True, "version": version, "instances": rows}

    # --- the write lease: one vault change at a time across the fleet --------------------------------

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """One vault change at a time across the fleet. Blocking: inside the daemon, a change is made under
        `held_lease` (taken without blocking the event loop), and this then uses it."""
        if self._held is not None:
            yield
            return
        token = secrets.token_hex(16)
        deadline = time.monotonic() + LEASE_WAIT_S
        with self._calls() as r:
            while not r.set(self.key("lease"), token, nx=True, px=LEASE_MS):
                if time.monotonic() > deadline:
                    raise self._lease_busy()
                time.sleep(0.02)
        try:
            yield
        finally:
            with contextlib.suppress(SharedStateUnavailable), self._calls() as r:
                r.eval(_RELEASE, 1, self.key("lease"), token)

    @contextlib.asynccontextmanager
    async def held_lease(self) -> AsyncIterator[None]:
        """The write lease taken on the asyncio client, so that waiting for another instance's (up to
        LEASE_WAIT_S, a killed one's lapses after LEASE_MS) never stalls the daemon's requests. Vault writes made
        inside (synchronous, on this thread, with no await between) find it held and use it."""
        token, client = secrets.token_hex(16), self.aio()
        try:
            deadline = time.monotonic() + LEASE_WAIT_S
            with self._calls():  # the same errors as the blocking lease's
                while not await client.set(self.key("lease"), token, nx=True, px=LEASE_MS):
                    if time.monotonic() > deadline:
                        raise self._lease_busy()
                    await asyncio.sleep(0.02)
            self._held = token
            try:
                yield
            finally:
                self._held = None
                with contextlib.suppress(redis.RedisError, OSError):
                    await client.eval(_RELEASE, 1, self.key("lease"), token)  # type: ignore[misc]
        finally:
            await client.aclose()

    def _lease_busy(self) -> SharedStateUnavailable:
        return SharedStateUnavailable(f"another keyproxy has held the fleet's write lease at {self.where} for over "
                                      f"{LEASE_WAIT_S:.0f} s; try again")

    # --- the vault ---------------------------------------------------------------------------------

    def vault_changes(self) -> int:
        with self._calls() as r:
            value = r.hget(self.key("vault"), "changes")
        return int(value) if value is not None else -1

    def _mac(self, what: bytes) -> str:
        if self._mac_key is None:
            raise KeyproxyError("this fleet store was opened without the vault's fleet key")
        return hmac.new(self._mac_key, what, hashlib.sha256).hexdigest()

    def vault_image(self) -> tuple[int, bytes] | None:
        """The fleet's vault copy, its MAC checked (`FleetTampered` when it fails)."""
        with self._calls() as r:
            changes, image, mac = r.hmget(self.key("vault"), ["changes", "image", "mac"])
        if changes is None or image is None:
            return None
        expected = self._mac(b"vault|%d|" % int(changes) + hashlib.sha256(bytes(image)).digest())
        if mac is None or not hmac.compare_digest(expected, bytes(mac).decode("ascii", "replace")):
            raise FleetTampered(f"the vault copy at {self.where} fails its MAC: it was not written by an instance "
                                "holding this vault's key (Redis tampered with?); refused")
        return int(changes), bytes(image)

    def push_vault(self, changes: int, image: bytes) -> int:
        """The vault after a change (call under `lease`): stored, the version raised, the notice appended."""
        mac = self._mac(b"vault|%d|" % changes + hashlib.sha256(image).digest())
        return self._change("vault", lambda p: p.hset(self.key("vault"), mapping={"changes": changes, "image": image,
                                                                                   "mac": mac}))

    # --- halts and throttles -----------------------------------------------------------------------

    @property
    def control_seq(self) -> int:
        return self._control_seq

    def never_before(self, seq: int) -> None:
        """The newest control document this instance had seen before it restarted: an older one is refused."""
        self._control_seq = max(self._control_seq, seq)

    def control(self) -> dict[str, Any]:
        """The halts and throttles in force: {"seq", "halts": [[scope, target, reason, since]], "throttles":
        {bot: [until, rate]}}, its MAC checked and not older than one seen before (`FleetTampered`)."""
        with self._calls() as r:
            raw = r.get(self.key("control"))
        if raw is None:
            if self._control_seq:
                raise FleetTampered(f"the halts at {self.where} are gone (a newer set was seen before); refused")
            return {"seq": 0, "halts": [], "throttles": {}}
        try:
            doc = json.loads(raw)
            body, mac = doc["body"], doc["mac"]
        except (ValueError, KeyError, TypeError):
            raise FleetTampered(f"the halts at {self.where} are not keyproxy's; refused") from None
        if not isinstance(body, str) or not hmac.compare_digest(self._mac(b"control|" + body.encode()), str(mac)):
            raise FleetTampered(f"the halts at {self.where} fail their MAC: not written by an instance holding this "
                                "vault's key (Redis tampered with?); refused")
        control: dict[str, Any] = json.loads(body)
        if int(control["seq"]) < self._control_seq:
            raise FleetTampered(f"the halts at {self.where} are older than ones already seen (replayed?); refused")
        self._control_seq = int(control["seq"])
        return control

    def halts_and_throttles(self) -> tuple[list[tuple[str, str, str, float]], dict[str, tuple[float, float]]]:
        """The halts (scope, target, reason, since; oldest first) and throttles (bot -> until, rate) in force,
        from one verified read of the control document."""
        control = self.control()
        halts = sorted(((str(h[0]), str(h[1]), str(h[2]), float(h[3])) for h in control["halts"]), key=lambda h: h[3])
        return halts, {bot: (float(v[0]), float(v[1])) for bot, v in control["throttles"].items()}

    def set_halt(self, scope: str, target: str, reason: str, since: float) -> int:
        def edit(c: dict[str, Any]) -> None:
            c["halts"] = [h for h in c["halts"] if (h[0], h[1]) != (scope, target)] + [[scope, target, reason, since]]
        return self._edit_control(edit)

    def clear_halt(self, scope: str, target: str) -> int:
        def edit(c: dict[str, Any]) -> None:
            c["halts"] = [h for h in c["halts"] if (h[0], h[1]) != (scope, target)]
        return self._edit_control(edit)

    def latches(self) -> dict[str, str]:
        """The daily loss limits an instance found crossed (`bot:NAME`/`account:NAME` -> the UTC day), from the
        verified control document: each holds on every instance for the rest of that day."""
        latches = self.control().get("latches", {})
        return {str(k): str(v) for k, v in latches.items()} if isinstance(latches, dict) else {}

    def set_latch(self, subject: str, day: str) -> int:
        def edit(c: dict[str, Any]) -> None:
            kept = {s: d for s, d in c.get("latches", {}).items() if str(d) >= day}  # older days' are over
            c["latches"] = {**kept, subject: max(day, str(kept.get(subject, day)))}
        return self._edit_control(edit)

    def set_throttle(self, bot: str, until: float, rate: float) -> int:
        def edit(c: dict[str, Any]) -> None:
            c["throttles"] = {b: v for b, v in c["throttles"].items() if float(v[0]) > time.time()}
            c["throttles"][bot] = [until, rate]
        return self._edit_control(edit)

    def _edit_control(self, edit: Any, notify: bool = True) -> int:
        """Read, change and write the control document as one optimistic transaction (WATCH): two instances
        halting at once both take effect; the version is raised and the notice appended with it."""
        key = self.key("control")
        with self._calls() as r:
            for _ in range(50):
                with r.pipeline(transaction=True) as p:
                    try:
                        p.watch(key)
                        control = self.control()
                        edit(control)
                        control["seq"] = int(control["seq"]) + 1
                        body = json.dumps(control, sort_keys=True)
                        p.multi()
                        p.set(key, json.dumps({"body": body, "mac": self._mac(b"control|" + body.encode())}))
                        p.incr(self.key("version"))
                        version = int(p.execute()[-1])
                    except redis.WatchError:
                        continue
                self._control_seq = int(control["seq"])
                self.last_version = max(self.last_version, version)
                if notify:  # False only in the test of a lost notice
                    r.xadd(self.key("changes"), {"kind": "control", "version": version}, maxlen=STREAM_MAXLEN,
                           approximate=True)
                return version
        raise SharedStateUnavailable(f"the halts at {self.where} kept changing under this change; try again")

    # --- versions, notices, instances ---------------------------------------------------------------

    def _change(self, kind: str, write: Any) -> int:
        with self._calls() as r:
            pipe = r.pipeline(transaction=True)
            write(pipe)
            pipe.incr(self.key("version"))
            results = pipe.execute()
            version = int(results[-1])
            self.last_version = max(self.last_version, version)
            r.xadd(self.key("changes"), {"kind": kind, "version": version}, maxlen=STREAM_MAXLEN, approximate=True)
        return version

    def version(self) -> int:
        with self._calls() as r:
            value = r.get(self.key("version"))
        return int(value or 0)

    def heartbeat(self, instance: str, applied: int, listen: str, audit_seq: int = 0) -> None:
        """An instance is alive, serves `applied`, and its audit trail reached `audit_seq` (a trail found
        shorter later was cut: `keyproxy audit verify` says so)."""
        record = {"version": applied, "seen": time.time(), "listen": listen, "pid": os.getpid(),
                  "audit_seq": audit_seq, "host": socket.gethostname()}
        with self._calls() as r:
            r.hset(self.key("instances"), instance, json.dumps(record))

    def share_last_seen(self, seen: dict[str, float]) -> dict[str, float]:
        """A bot's newest authenticated request on any instance (bot heartbeats): ours raised in, the
        fleet's returned, so a bot talking to another instance is never taken for silent here."""
        with self._calls() as r:
            args = [x for bot, ts in seen.items() for x in (bot, repr(ts))]
            rows = r.eval(_LAST_SEEN, 1, self.key("last_seen"), *args)
        out = {}
        for i in range(0, len(rows) - 1, 2):
            try:
                out[rows[i].decode(errors="replace")] = float(rows[i + 1])
            except ValueError:
                continue
        return out

    def leave(self, instance: str) -> None:
        """A clean stop: no longer counted among the instances a change waits for."""
        with self._calls() as r:
            r.hdel(self.key("instances"), instance)

    def instances(self, live_only: bool = True) -> dict[str, dict[str, Any]]:
        with self._calls() as r:
            rows = r.hgetall(self.key("instances"))
        now, out = time.time(), {}
        for k, v in rows.items():
            try:  # a row that is not an instance's heartbeat is skipped, never fatal
                rec = json.loads(v)
                float(rec.get("seen", 0)), int(rec.get("version", 0))
            except (ValueError, TypeError, AttributeError):
                continue
            out[k.decode(errors="replace")] = rec
        return {k: v for k, v in out.items() if not live_only or now - float(v.get("seen", 0)) < INSTANCE_TTL_S}

    def wait_applied(self, version: int, timeout: float = 1.0) -> list[str]:
        """Wait until every live instance has applied `version`; the ones that have not, after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            lagging = sorted(k for k, v in self.instances().items() if int(v.get("version", 0)) < version)
            if not lagging or time.monotonic() > deadline:
                return lagging
            time.sleep(0.01)


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]
