"""One opaque failure type for the whole pipeline, rendered once as JSON.

Every refusal has a stable `error` code (documented in docs/clients.md, "Error answers") and
an HTTP status; the message is for humans and never carries a secret.
"""

from __future__ import annotations

STATUS: dict[str, int] = {
    "bad_request": 400,
    "unknown_endpoint": 400,
    "unknown_bot": 401,
    "bad_signature": 401,
    "stale_request": 401,
    "replayed_request": 401,
    "expired_credential": 401,
    "scope_denied": 403,
    "symbol_denied": 403,
    "notional_exceeded": 403,
    "notional_unknown": 403,
    "open_orders_exceeded": 403,
    "daily_notional_exceeded": 403,
    "leverage_exceeded": 403,
    "reduce_only": 403,
    "halted": 403,
    "address_denied": 403,
    "withdrawal_limit": 403,
    "outside_hours": 403,
    "price_out_of_band": 403,
    "reference_unavailable": 403,
    "duplicate_order": 403,
    "position_exceeded": 403,
    "loss_limit": 403,
    "self_cross": 403,
    "policy_denied": 403,
    "rate_limited": 429,
    "budget_exhausted": 429,  # the exchange's own budget, shared by every bot, is spent (or it banned us)
    "bot_suspended": 403,
    "key_quarantined": 403,
    "ip_denied": 403,
    "host_denied": 403,
    "browser_denied": 403,
    "unknown_account": 404,
    "body_too_large": 413,
    "request_timeout": 408,
    "internal_error": 500,
    "upstream_error": 502,
    "upstream_timeout": 504,
    "unavailable": 503,
    "audit_unavailable": 503,
    "shared_state_unavailable": 503,  # a fleet's Redis cannot be reached: only reads, cancels, reduce-only pass
}


class Refused(Exception):
    """Raised anywhere in the pipeline; the server turns it into the JSON error answer."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        assert code in STATUS, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return STATUS[self.code]


def exchange_code(code: str) -> str:
    """The code whose exchange-shaped fields a refusal carries: the exchange's own budget being spent is
    answered as the exchange's rate-limit error, so each SDK backs off as it knows how; a fleet's shared state
    out of reach as the audit trail being out of reach (refused before anything was sent, retry later)."""
    return {"budget_exhausted": "rate_limited",
            # transient, nothing was sent: each exchange's shape for "unavailable, retry", as for the audit trail
            "shared_state_unavailable": "audit_unavailable"}.get(code, code)
