"""Coinbase policy holes a hostile review found (issue 14), through the official coinbase-advanced-py SDK (only
its base URL changed) and the real daemon to the emulator; each failed before its fix."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key

rest = pytest.importorskip("coinbase.rest")
jwt_generator = pytest.importorskip("coinbase.jwt_generator")
requests_adapters = pytest.importorskip("requests.adapters")


KEY = new_real_key("ec", exchange="coinbase")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("holes-coinbase"))
    try:
        stack.serve_account("cb", KEY)
        yield stack
    finally:
        stack.close()


class PlainHttp(requests_adapters.HTTPAdapter):  # type: ignore[misc,name-defined]
    """coinbase-advanced-py always builds https:// URLs; keyproxy listens on plain loopback HTTP."""

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        request.url = "http://" + request.url.removeprefix("https://")
        return super().send(request, **kwargs)


def client(dev: DevStack, name: str, *settings: str) -> Any:
    creds = dev.add_bot(name, "cb", "read,trade", *(a for s in settings for a in ("--set", s)))
    c = rest.RESTClient(api_key=creds["api_key"], api_secret=creds["secret"],
                        base_url=creds["base_url"].removeprefix("http://"))
    c.session.mount("https://", PlainHttp())
    return c


def orders_sent(dev: DevStack, start: int) -> int:
    return len([e for e in dev.journal()[start:] if e["path"] == "/api/v3/brokerage/orders"])


def refused(call: Any) -> str:
    with pytest.raises(Exception) as err:  # the SDK raises requests.HTTPError with keyproxy's body
        call()
    return str(err.value) + str(getattr(getattr(err.value, "response", None), "text", ""))


def refused_unsent(dev: DevStack, call: Any) -> str:
    """The refusal `call` met, once it is certain no order reached the exchange."""
    start = len(dev.journal())
    text = refused(call)
    assert orders_sent(dev, start) == 0, text
    return text


def test_a_decoy_limit_price_or_two_sizes_do_not_value_an_order(dev: DevStack) -> None:
    """market_market_ioc with a decoy limit_price, limit_limit_gtc with base_size and quote_size (item 1)."""
    c = client(dev, "cbdecoy", "max_order_notional=1000")
    start = len(dev.journal())
    for config in ({"market_market_ioc": {"base_size": "2", "limit_price": "0.1"}},
                   {"limit_limit_gtc": {"base_size": "1", "quote_size": "10", "limit_price": "50000"}}):
        text = refused(lambda: c.create_order(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", side="BUY",
                                              order_configuration=config))
        assert "notional_unknown" in text, text
    assert orders_sent(dev, start) == 0
    ok = c.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.001",
                               limit_price="50000")
    assert ok.success and orders_sent(dev, start) == 1


def test_a_refused_order_and_a_failed_cancel_count_nothing(dev: DevStack) -> None:
    """success false (HTTP 200) opened a slot; only confirmed cancels free one; an OPEN listing sets it."""
    c = client(dev, "cbcount", "max_open_orders=1")
    bad = c.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.001",
                                limit_price="50000.001")  # finer than the price increment: success false
    assert not bad.success
    placed = c.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.001",
                                   limit_price="50000")
    assert placed.success, placed  # the refused one did not take the only slot
    assert not c.cancel_orders(order_ids=["no-such-order"]).results[0].success
    start = len(dev.journal())
    text = refused(lambda: c.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD",
                                                 base_size="0.001", limit_price="50000"))
    assert "open_orders_exceeded" in text and orders_sent(dev, start) == 0
    assert c.cancel_orders(order_ids=[placed.success_response["order_id"]]).results[0].success
    again = c.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.001",
                                  limit_price="50000")
    assert again.success


def test_a_bot_cancels_only_its_own_orders(dev: DevStack) -> None:
    """`batch_cancel` naming another bot's order (alone or beside the bot's own) is refused, nothing sent; the
    bot's own orders it cancels (coinbase-advanced-py's cancel_orders)."""
    victim, attacker = client(dev, "cbcxvictim"), client(dev, "cbcxattacker")
    theirs = victim.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.001",
                                        limit_price="50000")
    mine = attacker.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.001",
                                        limit_price="50000")
    theirs_id, mine_id = theirs.success_response["order_id"], mine.success_response["order_id"]
    start = len(dev.journal())
    for ids in ([theirs_id], [mine_id, theirs_id]):
        text = refused(lambda ids=ids: attacker.cancel_orders(order_ids=ids))
        assert "policy_denied" in text and "another bot" in text, text
    assert [e for e in dev.journal()[start:] if e["path"].endswith("/batch_cancel")] == []
    assert attacker.cancel_orders(order_ids=[mine_id]).results[0].success
    assert victim.cancel_orders(order_ids=[theirs_id]).results[0].success


def test_reusing_another_bots_client_order_id_does_not_take_its_order(dev: DevStack) -> None:
    """Session 20's review: Coinbase answers a create that reuses a `client_order_id` with the order already
    holding it, and keyproxy recorded that order as the second bot's, so halting that (compromised) bot with
    `--cancel-orders` cancelled the victim's order. An answer naming an order another bot placed now places
    nothing: the order stays its placer's."""
    victim, attacker = client(dev, "cbcidvictim"), client(dev, "cbcidattacker")
    cid = str(uuid.uuid4())
    placed = victim.limit_order_gtc_buy(client_order_id=cid, product_id="BTC-USD", base_size="0.001",
                                        limit_price="50000")
    order_id = placed.success_response["order_id"]
    # refused at the decision now (session 33: the client id is on record as the victim's), never sent
    text = refused_unsent(dev, lambda: attacker.limit_order_gtc_buy(client_order_id=cid, product_id="BTC-USD",
                                                                   base_size="5", limit_price="1"))
    assert "policy_denied" in text and "cbcidvictim" in text, text
    out = dev.cli("halt", "--bot", "cbcidattacker", "--cancel-orders", "--reason", "compromised").stdout
    dev.cli("resume", "--bot", "cbcidattacker")
    assert "cancelled 0," in out, out  # the attacker's halt cancelled nothing of the victim's
    assert victim.cancel_orders(order_ids=[order_id]).results[0].success  # still resting, still the victim's


def outside_order(dev: DevStack, client_order_id: str, config: dict[str, Any], side: str = "BUY") -> str:
    """The operator's own order with the real key, not through keyproxy (the Coinbase site, another tool, or from
    before keyproxy): its id."""
    path = "/api/v3/brokerage/orders"
    token = jwt_generator.build_rest_jwt("POST api.coinbase.com" + path, KEY.credentials["api_key"],
                                         KEY.credentials["private_key"])
    body = json.dumps({"client_order_id": client_order_id, "product_id": "BTC-USD", "side": side,
                       "order_configuration": config}).encode()
    assert dev.emulator_url
    req = urllib.request.Request(dev.emulator_url + path, data=body, method="POST",
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    assert answer["success"], answer
    return str(answer["success_response"]["order_id"])


def test_a_client_id_of_an_order_placed_outside_keyproxy_is_no_bots(dev: DevStack) -> None:
    """Session 32's review: a bot (max_position=0.05) "placed" a sell under the client id of the operator's 0.5 BTC
    buy made outside keyproxy; Coinbase answered with the operator's order, keyproxy booked it as the bot's, and once
    its fill was read the bot sold 0.5 BTC it never bought as "reducing". Session 33's: a rule on when the order was
    made left seconds in which a bot that had just listed the order took it. A client id keyproxy sees reported for
    an order of no bot's (a listing, an order read, the `user` channel) is recorded as placed outside keyproxy before
    the bot reads it, and no bot places under it: refused, never sent."""
    bought, resting = str(uuid.uuid4()), str(uuid.uuid4())
    bought_id = outside_order(dev, bought, {"market_market_ioc": {"base_size": "0.5"}})
    resting_id = outside_order(dev, resting, {"limit_limit_gtc": {"base_size": "0.5", "limit_price": "1000"}})
    c = client(dev, "cbcidoutside", "max_position=0.05", "allow_self_cross=true")  # other tests' bots rest orders
    listed = {o["order_id"]: o["client_order_id"] for o in c.list_orders(product_ids=["BTC-USD"]).to_dict()["orders"]}
    assert listed[bought_id] == bought  # the bot sees the operator's client ids through keyproxy, at once
    assert c.get_order(order_id=resting_id).order["client_order_id"] == resting
    for cid in (bought, resting):
        text = refused_unsent(dev, lambda cid=cid: c.limit_order_gtc_sell(
            client_order_id=cid, product_id="BTC-USD", base_size="0.001", limit_price="70000"))
        assert "policy_denied" in text and "outside keyproxy" in text, text
    # the bot's own client ids stay its own: Coinbase answers its retry with its order, which is still its own
    mine = str(uuid.uuid4())
    first = c.limit_order_gtc_buy(client_order_id=mine, product_id="BTC-USD", base_size="0.01", limit_price="1000")
    c.list_orders(product_ids=["BTC-USD"])
    again = c.limit_order_gtc_buy(client_order_id=mine, product_id="BTC-USD", base_size="0.01", limit_price="1000")
    assert again.success_response["order_id"] == first.success_response["order_id"]
    assert c.cancel_orders(order_ids=[first.success_response["order_id"]]).results[0].success


async def test_a_client_id_the_user_channel_shows_first_is_no_bots(dev: DevStack) -> None:
    """The same where the bot learns the operator's client id from the `user` channel: recorded before the event
    reaches the bot."""
    creds = dev.add_bot("cbcidstream", "cb", "read,trade")
    c = client(dev, "cbcidstream2")
    token = jwt_generator.build_ws_jwt(creds["api_key"], creds["secret"])
    ws_url = creds["base_url"].replace("http://", "ws://") + "/user"
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "channel": "user", "product_ids": ["BTC-USD"],
                                      "jwt": token}))
        cid = str(uuid.uuid4())
        order_id = await asyncio.to_thread(outside_order, dev, cid, {"limit_limit_gtc": {
            "base_size": "0.3", "limit_price": "900"}})
        seen = ""
        while not seen:
            frame = json.loads((await ws.receive(timeout=10)).data)
            for event in frame.get("events", []) if frame.get("channel") == "user" else []:
                seen = next((o["client_order_id"] for o in event.get("orders", []) if o["order_id"] == order_id), "")
    assert seen == cid
    text = await asyncio.to_thread(refused_unsent, dev, lambda: c.limit_order_gtc_buy(
        client_order_id=cid, product_id="BTC-USD", base_size="0.001", limit_price="900"))
    assert "policy_denied" in text and "outside keyproxy" in text, text


def test_btc_usd_and_btc_usdc_are_one_order_book(dev: DevStack) -> None:
    """Coinbase trades BTC-USDC on BTC-USD's book (the product list names it an `alias` of BTC-USD). keyproxy kept
    the two apart, so a bot held its position cap twice over, one half on each, and crossed another bot's resting
    order through the other product unseen (session 31). One book, one position, one crossing check."""
    capped = client(dev, "cbalias", "max_position=0.01")
    first = capped.limit_order_gtc_buy(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.01",
                                       limit_price="50000")  # rests: 0.01 BTC bid, the whole cap
    assert first.success, first
    assert "position" in refused_unsent(dev, lambda: capped.limit_order_gtc_buy(
        client_order_id=str(uuid.uuid4()), product_id="BTC-USDC", base_size="0.01", limit_price="50000"))
    assert capped.cancel_orders(order_ids=[first.success_response["order_id"]]).results[0].success

    maker, taker = client(dev, "cbaliasmaker"), client(dev, "cbaliastaker")
    ask = maker.limit_order_gtc_sell(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", base_size="0.001",
                                     limit_price="70000")
    assert ask.success, ask
    assert "self_cross" in refused_unsent(dev, lambda: taker.limit_order_gtc_buy(
        client_order_id=str(uuid.uuid4()), product_id="BTC-USDC", base_size="0.001", limit_price="71000"))
    assert maker.cancel_orders(order_ids=[ask.success_response["order_id"]]).results[0].success


def test_a_ladder_or_a_twap_and_the_futures_margin_setting_are_refused_where_they_matter(dev: DevStack) -> None:
    """Session 32's review: a `scaled_limit_gtc` order (a ladder of limit orders between two prices) counted as one
    order, sized at the last price: a 10-order ladder passed `max_open_orders=2`, and its lowest level bought more
    than a position cap let the bot hold. Coinbase places the ladder's orders (and a TWAP's slices) as its own:
    refused to a bot whose open orders or position keyproxy counts. The futures intraday margin setting (more leverage
    on every bot's futures positions) passed `max_leverage`: refused, nothing sent."""
    ladder = {"scaled_limit_gtc": {"quote_size": "1000", "num_orders": "10", "min_price": "100",
                                   "max_price": "50000", "size_distribution": "FLAT"}}
    for settings, code in ((("max_open_orders=2",), "open_orders_exceeded"), (("max_position=0.05",),
                                                                              "position_exceeded")):
        c = client(dev, f"cbladder-{code[:4]}", *settings)
        text = refused_unsent(dev, lambda: c.create_order(client_order_id=str(uuid.uuid4()), product_id="BTC-USD",
                                                          side="BUY", order_configuration=ladder))
        assert code in text, text
    capped = client(dev, "cbmargin", "max_leverage=1")
    start = len(dev.journal())
    text = refused(lambda: capped.post("/api/v3/brokerage/cfm/intraday/margin_setting",
                                       data={"setting": "INTRADAY_MARGIN_SETTING_INTRADAY"}))
    assert "leverage_exceeded" in text, text
    assert [e for e in dev.journal()[start:] if "margin_setting" in e["path"]] == []
