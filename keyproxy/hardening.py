"""In-process hardening at daemon start: no core dumps, no ptrace by same-uid processes, tight umask,
and no secret left in the environment.

Linux only for prctl; elsewhere each step that cannot apply is skipped and said so in the log.
"""

from __future__ import annotations

import ctypes
import os
import resource
from collections.abc import MutableMapping

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
SECRET_ENV = ("KEYPROXY_PASSPHRASE",)  # a passphrase given in the environment (a file is better)


def harden_process() -> list[str]:
    """Apply what the platform allows; return what could not be applied."""
    skipped = []
    os.umask(0o077)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as e:  # e.g. a seccomp filter; the unit's LimitCORE=0 covers it
        skipped.append(f"setrlimit(RLIMIT_CORE) failed: {e}")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            skipped.append(f"prctl(PR_SET_DUMPABLE) failed: errno {ctypes.get_errno()}")
    except (OSError, AttributeError):
        skipped.append("prctl is not available on this platform")
    return skipped


def dumpable() -> int | None:
    """The kernel's answer for this process (0: no core dump, no same-uid ptrace), None if unknown."""
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
    except (OSError, AttributeError):
        return None


def take_secret_from_env(env: MutableMapping[str, str], name: str = "KEYPROXY_PASSPHRASE") -> str | None:
    """Remove a secret from the environment at once and return it.

    Children would inherit it, and /proc/PID/environ shows the process's original environment
    block: the value is overwritten there in place (best effort, Linux), then unset.
    """
    value = env.get(name)
    if value is not None and env is os.environ:
        _scrub_initial_environ(name)
    return env.pop(name, None) if value is not None else None


def _scrub_initial_environ(name: str) -> None:
    """Zero the value bytes of NAME=... in libc's environ strings (the block /proc/PID/environ reads)."""
    try:
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
    except (OSError, ValueError, AttributeError):
        return
    prefix = name.encode() + b"="
    i = 0
    while environ[i] is not None:
        entry = environ[i]
        if entry.startswith(prefix):
            address = ctypes.cast(environ, ctypes.POINTER(ctypes.c_void_p))[i]
            ctypes.memset(address + len(prefix), 0, len(entry) - len(prefix))
        i += 1
