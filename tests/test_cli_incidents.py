"""`keyproxy incidents list` a page at a time, and incident text shown, never sent raw to the terminal."""

from __future__ import annotations

import json

from keyproxy.state import StateStore
from tests.conftest import Home

ESC = "\x1b"


def ready(home: Home, incidents: int) -> StateStore:
    assert home.run("init").returncode == 0
    store = StateStore(home.root / "data" / "keyproxy" / "state.db")
    for n in range(incidents):
        store.add_incident(1_800_000_000.0 + n, "auth_failures", f"ip:10.0.{n % 250}.0/24", ["alert"], "10 failed",
                           [f"req{n}"], ["review the evidence requests in the audit trail"])
    return store


def test_incidents_list_is_a_page_the_newest_first_chosen(home: Home) -> None:
    ready(home, 250)
    listed = json.loads(home.run("incidents", "list", "--json").stdout)
    assert [i["id"] for i in listed] == list(range(51, 251))  # the newest 200, oldest first, as before
    page = json.loads(home.run("incidents", "list", "--json", "--limit", "10", "--before", "51").stdout)
    assert [i["id"] for i in page] == list(range(41, 51))
    page = json.loads(home.run("incidents", "list", "--json", "--limit", "3", "--since", "247").stdout)
    assert [i["id"] for i in page] == [248, 249, 250]
    text = home.run("incidents", "list", "--limit", "5").stdout.splitlines()
    assert [ln.split()[0] for ln in text[1:6]] == ["246", "247", "248", "249", "250"]
    assert text[-1] == "(a page of 5; older ones: --before 246)"
    bad = home.run("incidents", "list", "--limit", "0")
    assert bad.returncode == 2 and "limit must be a whole number of at least 1" in bad.stderr
    bad = home.run("incidents", "list", "--before", "5", "--since", "1")
    assert bad.returncode == 2 and "not allowed with argument" in bad.stderr


def test_incident_text_shows_control_characters_as_escapes(home: Home) -> None:
    """A reason can carry what a bot sent (a withdrawal address): `incidents show` prints it, escapes shown."""
    store = ready(home, 0)
    store.add_incident(1_800_000_000.0, "new_withdrawal_address", "bot:b1", ["alert"],
                       f"first withdrawal to USDT:BSC:0xa{ESC}[1A{ESC}[2K{ESC}[32mall clear\x9b0m",
                       [f"req{ESC}]0;title\x07"], ["review"])
    shown = home.run("incidents", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert ESC not in shown.stdout and "\x9b" not in shown.stdout and "\x07" not in shown.stdout
    assert "0xa\\x1b[1A\\x1b[2K\\x1b[32mall clear\\x9b0m" in shown.stdout and "req\\x1b]0;title\\x07" in shown.stdout
    listed = home.run("incidents", "list").stdout
    assert ESC not in listed and "new_withdrawal_address" in listed
