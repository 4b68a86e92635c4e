"""The redactor: no secret leaves through a log line, by field name, by value, or inside text."""

from __future__ import annotations

import io
import json
import logging

import pytest

from keyproxy.audit.log import configure_logging, get_logger
from keyproxy.audit.redact import MASK, Redactor, encodings
from keyproxy.secret import Secret

CANARY = "KPCANARY0123456789abcdefSECRET"


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.register([CANARY])
    return r


@pytest.mark.parametrize("field", ["secret", "api_secret", "passphrase", "private_key", "signature", "token",
                                   "Authorization", "X-MBX-APIKEY", "API-Sign", "OK-ACCESS-SIGN", "X-BAPI-SIGN",
                                   "cookie", "password", "api_key"])
def test_fields_named_like_secrets(redactor: Redactor, field: str) -> None:
    assert redactor.clean({field: "anything"}) == {field: MASK}


@pytest.mark.parametrize("field", ["bot", "account", "endpoint", "fingerprint", "signature_verified", "status"])
def test_ordinary_fields_pass(redactor: Redactor, field: str) -> None:
    assert redactor.clean({field: "value"}) == {field: "value"}


@pytest.mark.parametrize("form", sorted(encodings(CANARY)))
def test_registered_secret_in_any_encoding_inside_text(redactor: Redactor, form: str) -> None:
    assert CANARY not in redactor.scrub(f"error talking to x: {form} failed")
    assert form not in redactor.scrub(f"error talking to x: {form} failed")


@pytest.mark.parametrize("text", [
    "GET /api/v3/account?timestamp=1&signature=deadbeefcafe",
    "POST body apiKey=abcdef123456&x=1",
    "Authorization: Bearer eyJhbGciOi.xyz.abc",
    "token=kpt_abcdefghijklmnop",
])
def test_patterns_that_carry_secrets(redactor: Redactor, text: str) -> None:
    out = redactor.scrub(text)
    assert MASK in out
    assert "deadbeefcafe" not in out and "abcdef123456" not in out and "eyJhbGciOi" not in out
    assert "kpt_abcdefghijklmnop" not in out


def test_nested_values_and_secret_objects(redactor: Redactor) -> None:
    event = {"request": {"headers": {"X-MBX-APIKEY": "k", "Accept": "*/*"}, "args": [Secret("s"), CANARY]},
             "note": b"bytes with " + CANARY.encode()}
    out = json.dumps(redactor.clean(event))
    assert CANARY not in out and '"Accept": "*/*"' in out and out.count(MASK) == 4


def test_exceptions_render_without_locals() -> None:
    """structlog's default dict tracebacks show frame locals; ours must not."""
    buf = io.StringIO()
    configure_logging(buf, json=True)
    log = get_logger("test")

    def connect(secret: str) -> None:
        local_copy = secret  # noqa: F841
        raise ConnectionError("exchange unreachable")

    try:
        connect("UNREGISTERED-SECRET-IN-A-LOCAL")
    except ConnectionError:
        log.exception("upstream failed")
    logging.getLogger("aiohttp.server").error("Error handling request: X-MBX-APIKEY: abc signature=f00dfeed")
    text = buf.getvalue()
    assert "upstream failed" in text and "exchange unreachable" in text
    assert "UNREGISTERED-SECRET-IN-A-LOCAL" not in text
    assert "f00dfeed" not in text
    configure_logging(io.StringIO(), json=True)


def test_stdlib_extra_fields_are_logged_and_redacted() -> None:
    """Modules log with logging.getLogger(...).warning(msg, extra={...}); those fields (the admin call's
    op and peer uid, a malformed request's kind) must reach the line, through the redactor."""
    buf = io.StringIO()
    configure_logging(buf, json=True)
    logging.getLogger("keyproxy.admin").warning("admin call", extra={"op": "bot.revoke", "peer_uid": 0,
                                                                     "secret": "an-unregistered-secret"})
    line = json.loads(buf.getvalue().splitlines()[-1])
    assert (line["op"], line["peer_uid"], line["secret"]) == ("bot.revoke", 0, MASK)
    configure_logging(io.StringIO(), json=True)
