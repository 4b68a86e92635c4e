"""Tell systemd where the daemon is in its life (the unit's Type=notify), with no dependency.

`systemctl start keyproxy` then returns only once the proxy, metrics and admin socket listen, so an
operator's next command (or a backup script) finds the daemon ready instead of racing it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("keyproxy.daemon")


def notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send `state` ("READY=1", "STOPPING=1"...) to $NOTIFY_SOCKET; False when not run by systemd."""
    path = environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # '@': Linux abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(state.encode())
    except OSError as e:
        log.warning("could not notify systemd", extra={"kind": type(e).__name__})
        return False
    return True
