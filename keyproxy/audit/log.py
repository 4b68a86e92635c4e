"""structlog, configured once: JSON lines (console rendering on a TTY), all through the redactor.

Exceptions are rendered without frame locals (structlog's dict tracebacks and
rich console tracebacks include locals by default, so a secret passed as an
argument would appear verbatim). The stdlib loggers (aiohttp.*, asyncio, our
own `keyproxy.*`) go through the same processor chain.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from keyproxy.audit.redact import Redactor
from keyproxy.exchanges.catalog import credential_headers

REDACTOR = Redactor(credential_headers())
_configured = False


def _drop_exception_locals(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return event_dict


def configure_logging(stream: TextIO | None = None, *, json: bool | None = None, level: int = logging.INFO,
                      redactor: Redactor = REDACTOR) -> None:
    """Idempotent: the daemon, the CLI and tests call it; the last stream wins."""
    global _configured
    stream = stream or sys.stderr
    json = (not stream.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        structlog.stdlib.ExtraAdder(),  # stdlib loggers' extra={...} fields, redacted like the rest
        redactor,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if json else
                     structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback))
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's server logger echoes raw request lines on parser errors; our handler
    # answers those itself, so only warnings and above from aiohttp get through (redacted).
    for name in ("aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.client", "aiohttp.internal", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        # drop events below the level before anything else runs (a skipped debug line costs ~5 µs, not ~50)
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
