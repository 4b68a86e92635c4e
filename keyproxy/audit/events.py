"""The catalogue of audit events: every line in the trail has one of these `event` names.

Request events carry: request_id, bot, account, source_ip, method, path (no
query: it carries signatures), endpoint, endpoint_class, decision, code,
status, upstream_status, proxy_ms, upstream_ms, transport (rest | ws). Admin events carry: op,
peer_uid, and what changed (names, scopes), never a secret.
"""

EVENTS: dict[str, str] = {
    "request.forward": "a request passed every check and is about to go upstream (written first: fail closed)",
    "request.done": "a forwarded request's outcome: upstream status and latencies",
    "request.deny": "a request refused by keyproxy, with its deny code (auth failures included)",
    "admin": "an administrative change through the CLI or the admin socket",
    "daemon.start": "the daemon started serving",
    "daemon.stop": "the daemon stopped",
    "trail.recovered": "an incomplete last line from a crash was removed on start",
    "journal.replayed": "order answers relayed to a bot but not yet learned when the last run was killed were "
                        "learned on start, before serving (answers: how many)",
    "trail.resumed": "writing resumed after the trail was unavailable",
    "trail.cut": "the trail on disk ended before the line keyproxy last wrote (found_seq, recorded_seq): lines "
                 "were cut from its end or its newest file went away; the chain goes on from the recorded line, "
                 "so `audit verify` names the gap for good",
    "anomaly": "an anomaly rule fired: rule, subject, actions taken, incident id, evidence request ids",
    "key.revoke": "the revoke_key action's call to the exchange and its result",
    "config.reload": "the config file was re-read (result ok or refused with the reason)",
    "orders.cancel_all": "keyproxy's own cancelling of a scope's resting orders began (attempt) or ended (done, "
                         "with counts cancelled, failed, left and the accounts whose listing failed)",
    "deadman.arm": "an account's cancel-on-silence timer at the exchange became armed, or stopped being armed "
                   "(result failed: what the exchange said); logged on each change, not on each re-arm",
    "risk.reconcile": "keyproxy's own read of an account's orders found fills it had not seen (fills_learned): "
                      "positions moved by them (docs/risk.md)",
    "order.cancel": "one order keyproxy cancelled with its own signed call (result cancelled or failed: why), "
                    "or an account whose open orders could not be listed",
}

AUTH_FAILURE_CODES = frozenset({"unknown_bot", "bad_signature", "stale_request", "replayed_request"})
