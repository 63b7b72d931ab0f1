# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The allocation listing (list_a / list_ah): how a miner's answer is judged by the rules the
# allocate and deallocate tasks apply, and the listing end to end on a real database file and
# metagraph snapshot, read-only. Miners cannot be reached here: where check_status asks them,
# ask_miners (or the dendrite behind it) is replaced, as each test says.

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _allocation_info
from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation_info import (
    CHECKED_STATES,
    allocation_info,
    allocation_row,
    ask_miners,
    judge_reply,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput
from ansible_collections.neuralinternet.compute.plugins.module_utils._network import MinerReply
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner
from ansible_collections.neuralinternet.compute.plugins.module_utils._protocol import status_request
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import Allocation, AllocationStore

from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.subnet_builders import (
    CREDENTIALS,
    REGKEY,
    file_state,
    neuron,
    snapshot_file,
    table_names,
    upstream_database,
)

NOW = 1_764_000_000.0
DAY = 86400


def utc(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def reply(output, code=200, message="Success"):
    return MinerReply(hotkey="hk", output=output, status_code=code, message=message, elapsed=0.01)


HELD, NOT_HELD = reply({"status": True, "port": 4444}), reply({"status": False, "port": 4444})


@pytest.fixture
def settings(tmp_path):
    return Settings(db_path=str(tmp_path / "database.db"), wandb_mode="disabled", miner_sync_period=900,
                    unconfirmed_grace=3600)


def record(state="active", **values):
    return Allocation(hotkey="hk", state=state, name="box", regkey=REGKEY, created_at=NOW - DAY, **values)


# -- judging one answer ----------------------------------------------------------------------------

def test_held_is_live(settings):
    for state in CHECKED_STATES:
        assert judge_reply(record(state), HELD, NOW, settings) == ("live", None)


def test_no_answer_is_unreachable(settings):
    assert judge_reply(record(), reply(None, 503, "Service unavailable"), NOW, settings) == (
        "unreachable", "no answer (503 Service unavailable)")
    assert judge_reply(record(), reply({"port": 4444}), NOW, settings) == ("unreachable", "answered without status")
    assert judge_reply(record(), reply({"status": "yes"}), NOW, settings) == ("unreachable", "answered without status")


def test_a_miner_not_in_the_metagraph_is_unreachable(settings):
    assert judge_reply(record(), None, NOW, settings) == ("unreachable", "the miner is not in the metagraph")


def test_not_held_on_an_active_record_is_unconfirmed(settings):
    assert judge_reply(record("active"), NOT_HELD, NOW, settings) == ("unconfirmed", "the miner answered: not held")


def test_not_held_within_the_grace_is_unconfirmed_with_its_start(settings):
    since = NOW - 3599
    assert judge_reply(record("unconfirmed", unconfirmed_since=since), NOT_HELD, NOW, settings) == (
        "unconfirmed", "the miner answered: not held (since %s)" % utc(since))


def test_not_held_for_the_whole_grace_is_released(settings):
    for since in (NOW - 3600, NOW - 10 * DAY):
        assert judge_reply(record("unconfirmed", unconfirmed_since=since), NOT_HELD, NOW, settings) == (
            "released", "not held since %s (longer than unconfirmed_grace)" % utc(since))
    settings.unconfirmed_grace = 0
    assert judge_reply(record("unconfirmed", unconfirmed_since=NOW), NOT_HELD, NOW, settings)[0] == "released"


def test_releasing_and_not_held_waits_for_a_sync_period(settings):
    recent = record("releasing", unpublished_at=NOW - 899)
    assert judge_reply(recent, NOT_HELD, NOW, settings) == (
        "unconfirmed", "not held; unpublished since %s, less than a W&B sync period" % utc(NOW - 899))
    old = record("releasing", unpublished_at=NOW - 900)
    assert judge_reply(old, NOT_HELD, NOW, settings) == (
        "released", "not held, and unpublished since %s" % utc(NOW - 900))
    # The grace of published records does not apply to an unpublished one.
    assert judge_reply(record("releasing", unpublished_at=NOW - 899, unconfirmed_since=NOW - 10 * DAY),
                       NOT_HELD, NOW, settings)[0] == "unconfirmed"


def test_releasing_without_an_unpublished_time_counts_from_its_creation(settings):
    assert judge_reply(record("releasing"), NOT_HELD, NOW, settings)[0] == "released"
    fresh = Allocation(hotkey="hk", state="releasing", regkey=REGKEY)
    assert judge_reply(fresh, NOT_HELD, NOW, settings)[0] == "unconfirmed"


# -- one row ------------------------------------------------------------------------------------

def test_a_row_without_a_metagraph(settings):
    item = Allocation(hotkey="hk", state="active", name="box", uid=None, ip="10.0.0.1", created_at=NOW - 10,
                      timeline=1, expires_at=NOW + 100.7, details=dict(CREDENTIALS, ip="10.0.0.1"))
    row = allocation_row(item, None, NOW)
    assert (row["time_left"], row["expires_at"], row["in_metagraph"], row["serving"], row["status"]) == (
        100, NOW + 100.7, None, None, None)
    assert row["ssh_command"] == "ssh -p 4444 root@10.0.0.1" and row["made_here"] is True
    assert "password" not in row
    assert allocation_row(item, None, NOW, show_credentials=True)["password"] == "a1b2c3d4e5"
    assert allocation_row(item, None, NOW + 1000)["time_left"] == 0


def test_a_row_takes_the_uid_from_the_metagraph_when_the_record_has_none():
    item = Allocation(hotkey="hk", state="active")
    row = allocation_row(item, {"hk": neuron(7, "hk", serving=False)}, NOW)
    assert (row["uid"], row["in_metagraph"], row["serving"], row["made_here"], row["time_left"]) == (
        7, True, False, False, None)
    assert (allocation_row(item, {}, NOW)["in_metagraph"], allocation_row(item, {}, NOW)["serving"]) == (False, False)


# -- the listing end to end -------------------------------------------------------------------------

@pytest.fixture
def world(tmp_path):
    """m1 box1 active, m2 box2 pending, m3 made by the upstream CLI, m4 old expired, m5 gone releasing."""
    db = str(tmp_path / "database.db")
    with AllocationStore(db, create=True) as store:
        for hotkey, name, uid in (("m1", "box1", 1), ("m2", "box2", 2), ("m4", "old", 4), ("m5", "gone", 5)):
            store.claim(name=name, hotkey=hotkey, uid=uid, ip="127.0.0.1%d" % uid, regkey=REGKEY + hotkey,
                        ssh_key="ssh-ed25519 AAAA x", resource="nvidia l4", timeline=2, owner=Owner.current(),
                        lease_seconds=60)
            if hotkey != "m2":
                store.activate(hotkey, REGKEY + hotkey, dict(CREDENTIALS, password="pw-%s" % hotkey))
        store._connection.execute("UPDATE nicompute_allocation SET expires_at = 1 WHERE hotkey = 'm4'")
        store.expire()
        store.mark_releasing("m5", REGKEY + "m5", "deallocation requested")
        store._connection.execute("INSERT INTO allocation (hotkey, details) VALUES ('m3', ?)", (json.dumps(
            dict(CREDENTIALS, password="pw-m3", ip="127.0.0.13", resource="nvidia h100", regkey=REGKEY + "m3",
                 ssh_key="", uuid="u3")),))
    neurons = [neuron(1, "m1"), neuron(2, "m2", serving=False), neuron(3, "m3"), neuron(5, "m5")]
    snapshot = snapshot_file(tmp_path / "metagraph.json", neurons)
    settings = Settings(db_path=db, metagraph_file=snapshot, wandb_mode="disabled", wallet_path=str(tmp_path / "w"))
    return {"db": db, "settings": settings}


def test_the_listing_end_to_end(world):
    before, tables = file_state(world["db"]), table_names(world["db"])
    started = time.time()
    result = allocation_info(world["settings"])
    assert set(result) == {"changed", "allocations", "absent"}
    assert result["changed"] is False and result["absent"] == []
    rows = result["allocations"]
    assert [(row["hotkey"], row["name"], row["state"]) for row in rows] == [
        ("m1", "box1", "active"), ("m2", "box2", "pending"), ("m3", None, "active"), ("m4", "old", "expired"),
        ("m5", "gone", "releasing")]
    by_hotkey = dict((row["hotkey"], row) for row in rows)
    assert 2 * DAY - 60 < by_hotkey["m1"]["time_left"] <= 2 * DAY
    assert by_hotkey["m1"]["expires_at"] >= started + 2 * DAY - 60
    assert by_hotkey["m4"]["time_left"] == 0
    assert by_hotkey["m3"]["time_left"] is None and by_hotkey["m3"]["made_here"] is False
    assert by_hotkey["m3"]["ssh_command"] == "ssh -p 4444 root@127.0.0.13"
    assert by_hotkey["m1"]["uid"] == 1 and by_hotkey["m3"]["uid"] is None
    assert by_hotkey["m5"]["error"] == "deallocation requested"
    for row in rows:
        assert "password" not in row
        assert (row["in_metagraph"], row["serving"], row["status"]) == (None, None, None)
    assert "pw-" not in json.dumps(result)
    assert file_state(world["db"]) == before and table_names(world["db"]) == tables


def test_credentials_only_when_asked(world):
    rows = allocation_info(world["settings"], show_credentials=True)["allocations"]
    assert dict((row["hotkey"], row["password"]) for row in rows) == {
        "m1": "pw-m1", "m2": None, "m3": "pw-m3", "m4": None, "m5": None}


def test_names_select_and_absent_names_are_reported(world):
    result = allocation_info(world["settings"], names=[" box2", "box1", "nope", "m3"])
    assert [row["name"] for row in result["allocations"]] == ["box1", "box2"]
    assert result["absent"] == ["m3", "nope"]


@pytest.mark.parametrize("names", [[""], ["box1", "  "], [None], [3]])
def test_an_empty_name_is_refused(world, names):
    with pytest.raises(BadInput) as caught:
        allocation_info(world["settings"], names=names)
    assert caught.value.details == {"option": "names"}


@pytest.mark.parametrize("option, value", [("in_metagraph", "yes"), ("check_status", 1), ("show_credentials", None),
                                           ("timeout", float("nan")), ("timeout", 0), ("timeout", -5)])
def test_bad_options_are_refused_naming_them(world, option, value):
    with pytest.raises(BadInput) as caught:
        allocation_info(world["settings"], **{option: value})
    assert caught.value.details["option"] == option


def test_in_metagraph_keeps_serving_miners_only(world):
    rows = allocation_info(world["settings"], in_metagraph=True)["allocations"]
    assert [(row["hotkey"], row["in_metagraph"], row["serving"]) for row in rows] == [
        ("m1", True, True), ("m3", True, True), ("m5", True, True)]
    assert [row["uid"] for row in rows] == [1, 3, 5]


def test_a_database_the_validator_made_is_listed_and_left_untouched(tmp_path):
    db = upstream_database(tmp_path / "database.db", allocations=[
        ("m3", dict(CREDENTIALS, ip="127.0.0.13", resource="nvidia h100", regkey=REGKEY, ssh_key="", uuid="u"))])
    before, tables = file_state(db), table_names(db)
    result = allocation_info(Settings(db_path=db, wandb_mode="disabled"), show_credentials=True)
    assert [(row["hotkey"], row["name"], row["state"], row["password"]) for row in result["allocations"]] == [
        ("m3", None, "active", "a1b2c3d4e5")]
    assert file_state(db) == before and table_names(db) == tables


def test_a_database_without_allocations_lists_nothing(tmp_path):
    db = str(tmp_path / "empty.db")
    sqlite3.connect(db).close()
    assert allocation_info(Settings(db_path=db), names=["box"]) == {"changed": False, "allocations": [],
                                                                    "absent": ["box"]}


def test_check_status_judges_the_published_and_releasing_records(world, monkeypatch):
    asked = []

    def answers(_client, records, timeout):  # stands in for the dendrite: miners cannot run here
        asked.append(([item.hotkey for item in records], timeout))
        return {"m1": HELD, "m3": None, "m5": NOT_HELD}

    monkeypatch.setattr(_allocation_info, "ask_miners", answers)
    before = file_state(world["db"])
    rows = allocation_info(world["settings"], check_status=True, timeout=2)["allocations"]
    # Pending and expired records are not asked.
    assert asked == [(["m1", "m3", "m5"], 2.0)]
    by_hotkey = dict((row["hotkey"], row) for row in rows)
    assert (by_hotkey["m1"]["status"], by_hotkey["m1"]["status_reason"]) == ("live", None)
    assert (by_hotkey["m3"]["status"], by_hotkey["m3"]["status_reason"]) == (
        "unreachable", "the miner is not in the metagraph")
    assert by_hotkey["m5"]["status"] == "unconfirmed"
    assert by_hotkey["m5"]["status_reason"].startswith("not held; unpublished since")
    assert by_hotkey["m2"]["status"] is None and by_hotkey["m4"]["status"] is None
    assert by_hotkey["m2"]["status_reason"] is None and by_hotkey["m4"]["status_reason"] is None
    assert by_hotkey["m1"]["in_metagraph"] is True and by_hotkey["m2"]["serving"] is False
    # Judged, not written: the records keep their states.
    assert file_state(world["db"]) == before


def test_ask_miners_sends_a_status_request_per_record_in_the_metagraph():
    sent = []

    class Query:  # stands in for MinerQuery: bittensor's dendrite cannot reach miners here
        def send(self, requests, timeout):
            sent.append(([(item.hotkey, fields) for item, fields in requests], timeout))
            return [HELD for _request in requests]

    class Client:
        query = Query()

        def neurons(self):
            return {"m1": neuron(1, "m1"), "m2": neuron(2, "m2")}

    records = [Allocation(hotkey="m1", state="active", regkey=REGKEY), Allocation(hotkey="m2", state="active"),
               Allocation(hotkey="m9", state="active", regkey=REGKEY)]
    answers = ask_miners(Client(), records, 3.0)
    assert answers == {"m1": HELD, "m2": None, "m9": None}
    assert sent == [([("m1", status_request(REGKEY))], 3.0)]


def test_an_upstream_row_without_a_public_key_is_not_asked_and_says_so(tmp_path, monkeypatch):
    db = upstream_database(tmp_path / "database.db", allocations=[
        ("m3", dict(CREDENTIALS, ip="127.0.0.13", resource="nvidia h100", regkey="", ssh_key="", uuid="u"))])

    def answers(_client, records, _timeout):  # stands in for the dendrite: miners cannot run here
        return dict((record.hotkey, HELD) for record in records)

    monkeypatch.setattr(_allocation_info, "ask_miners", answers)
    monkeypatch.setattr(ComputeClient, "neurons", lambda _self: {})
    row = allocation_info(Settings(db_path=db, wandb_mode="disabled"), check_status=True)["allocations"][0]
    assert (row["status"], row["status_reason"]) == (None, "no public key recorded: the miner cannot be asked")
