# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# nicompute_container's rules on a real SQLite database: which allocations are ours to act on, what
# is sent, what each answer proves and what is recorded, check mode and diff; the container column
# and its migration; the paused rule of live_allocation and judge_reply. Miners do not run in these
# unit tests: a FakeQuery stands in for MinerQuery (the dendrite) and answers from a script, and
# builds every docker action with _protocol as the real one does. The real wire is covered by the
# localnet integration target tests/integration/targets/nicompute_container.

from __future__ import annotations

import json
import sqlite3
import time
from types import SimpleNamespace

import pytest
from bittensor_wallet import Keypair

from ansible_collections.neuralinternet.compute.plugins.module_utils import _protocol, _store
from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation_info import (
    CHECKED_STATES,
    judge_reply,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._container import (
    ContainerRequest,
    container_action,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    MinerRefused,
    NotFound,
    Unreachable,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._network import MinerReply
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import Allocation, AllocationStore

from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.subnet_builders import (
    CREDENTIALS,
    REGKEY,
    file_state,
    neuron,
)


def address(seed):
    return Keypair.create_from_uri("//%s" % seed).ss58_address


OPERATOR, MINER, CLI_MINER, FREE_MINER = (address(seed) for seed in ("Operator", "Miner", "CliMiner", "FreeMiner"))
KEY = REGKEY + MINER
CLI_KEY = REGKEY + CLI_MINER
USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldkeyoldkeyoldkeyoldkeyoldkeyoldkeyold old@box"
NEW_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAInewkeynewkeynewkeynewkeynewkeynewkeynew new@box"


def reply(output, code=200, message="Success"):
    return MinerReply(hotkey="hk", output=output, status_code=code, message=message, elapsed=0.01)


HELD, NOT_HELD = reply({"status": True, "port": 4444}), reply({"status": False, "port": 4444})
DONE, REFUSED = HELD, NOT_HELD
TIMEOUT = reply(None, 408, "Timedout after 3.0 seconds")
NO_STATUS = reply({"port": 4444})


class FakeQuery:
    """Stands in for MinerQuery (miners cannot run in unit tests): answers from a script, records what was sent."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent = []

    def _answer(self):
        assert self.answers, "a request was sent that the test did not expect"
        return self.answers.pop(0)

    def still_allocated(self, target, public_key, timeout):
        self.sent.append(("status", target.hotkey, _protocol.status_request(public_key), timeout))
        return self._answer()

    def deallocate(self, target, public_key, timeout):
        self.sent.append(("release", target.hotkey, _protocol.deallocate_request(public_key), timeout))
        return self._answer()

    def docker_action(self, target, public_key, action, timeout, ssh_key="", key_type=""):
        # Built as MinerQuery.docker_action builds it, so a wrong field fails here as it would there.
        self.sent.append((action, target.hotkey, _protocol.docker_action_request(public_key, action, ssh_key, key_type),
                          timeout))
        return self._answer()


class Metagraph:
    def neurons(self):
        return [neuron(0, OPERATOR, stake=2e4, validator_permit=True), neuron(1, MINER), neuron(2, CLI_MINER),
                neuron(3, FREE_MINER)]


@pytest.fixture
def db(tmp_path):
    """MINER holds our allocation 'box'; CLI_MINER one the upstream CLI made (upstream row only)."""
    path = str(tmp_path / "database.db")
    with AllocationStore(path, create=True) as store:
        store.claim(name="box", hotkey=MINER, uid=1, ip="127.0.0.11", regkey=KEY, ssh_key=USER_KEY,
                    resource="nvidia l4", timeline=2, owner=Owner.current(), lease_seconds=60)
        store.activate(MINER, KEY, CREDENTIALS)
        store._connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", (CLI_MINER, json.dumps(
            dict(CREDENTIALS, ip="127.0.0.12", resource="nvidia h100", regkey=CLI_KEY, ssh_key=USER_KEY, uuid="u"))))
    return path


def settings_for(path):
    return Settings(db_path=path, wandb_mode="disabled", unconfirmed_grace=3600, miner_sync_period=900)


def run(path, query, check_mode=False, **options):
    """Run the task against the database at path with query standing in for the miners; (result, query)."""
    store = AllocationStore(path, planning=check_mode)
    client = ComputeClient(settings_for(path), store=store, metagraph=Metagraph(), check_mode=check_mode)
    client._keypair = SimpleNamespace(ss58_address=OPERATOR)
    client._query = query
    try:
        return container_action(settings_for(path), ContainerRequest(**options), check_mode, client=client)
    finally:
        store.close()


def record(path, hotkey=MINER):
    with AllocationStore(path) as store:
        return store.get(hotkey=hotkey)


def upstream_details(path, hotkey):
    connection = sqlite3.connect(path)
    try:
        row = connection.execute("SELECT details FROM allocation WHERE hotkey = ?", (hotkey,)).fetchone()
    finally:
        connection.close()
    return json.loads(row[0]) if row else None


def set_container(path, state, hotkey=MINER, regkey=KEY):
    with AllocationStore(path) as store:
        store.set_container_state(hotkey, regkey, state)


# -- status --------------------------------------------------------------------------------------------

def test_status_asks_with_our_key_and_reports_live(db):
    query = FakeQuery(HELD)
    before = file_state(db)
    result = run(db, query, action="status", name="box", timeout=3)
    assert (result["changed"], result["status"], result["status_reason"], result["sent"]) == (
        False, "live", None, ["status"])
    assert query.sent == [("status", MINER, _protocol.status_request(KEY), 3.0)]
    assert result["reply"] == {"status": True, "answered": True, "output": {"status": True, "port": 4444},
                               "status_code": 200, "message": "Success", "elapsed": 0.01}
    assert result["allocation"]["name"] == "box" and result["container"] is None
    assert file_state(db) == before


def test_not_held_is_unconfirmed_unless_the_record_says_paused(db):
    result = run(db, FakeQuery(NOT_HELD), action="status", name="box")
    assert (result["status"], result["status_reason"]) == ("unconfirmed", "the miner answered: not held")
    set_container(db, "paused")
    before = file_state(db)
    result = run(db, FakeQuery(NOT_HELD), action="status", name="box")
    assert result["status"] == "paused" and "paused" in result["status_reason"]
    assert file_state(db) == before and record(db).state == "active"


def test_held_corrects_a_paused_record(db):
    set_container(db, "paused")
    assert run(db, FakeQuery(HELD), check_mode=True, action="status", name="box")["container"] == "paused"
    result = run(db, FakeQuery(HELD), action="status", name="box")
    assert (result["status"], result["container"], record(db).container) == ("live", "running", "running")


@pytest.mark.parametrize("answer, said", [(TIMEOUT, "no answer within 5 s (408 Timedout after 3.0 seconds)"),
                                          (reply(None, 503, "Service unavailable"), "no answer (503 Service unavailable)"),
                                          (NO_STATUS, "it answered without a status ({'port': 4444})")])
def test_a_silent_miner_fails_the_status_naming_what_happened(db, answer, said):
    with pytest.raises(Unreachable) as caught:
        run(db, FakeQuery(answer), action="status", hotkey=MINER, timeout=5)
    assert caught.value.message == "miner %s (uid 1) did not answer the status request: %s" % (MINER, said)
    assert caught.value.details["status"] == "unreachable" and caught.value.details["sent"] == ["status"]


# -- pause, resume, restart ------------------------------------------------------------------------------

def test_pause_sends_the_docker_action_with_our_key_and_timeline_1(db):
    query = FakeQuery(DONE)
    result = run(db, query, action="pause", name="box", timeout=4)
    action, hotkey, fields, timeout = query.sent[0]
    assert (action, hotkey, timeout) == ("pause", MINER, 4.0)
    assert (fields["checking"], fields["timeline"], fields["docker_change"], fields["public_key"]) == (
        False, 1, True, KEY)
    assert fields["docker_action"] == {"action": "pause", "ssh_key": "", "key_type": ""}
    assert (result["changed"], result["sent"], result["container"]) == (True, ["pause"], "paused")
    assert result["diff"] == {"before": {"container": "unknown"}, "after": {"container": "paused"}}
    assert record(db).container == "paused" and record(db).state == "active"


def test_pause_of_a_paused_box_and_resume_of_a_running_one_send_nothing(db):
    set_container(db, "paused")
    before = file_state(db)
    result = run(db, FakeQuery(), action="pause", name="box")
    assert (result["changed"], result["sent"], result["reply"]) == (False, [], None)
    assert result["diff"] == {"before": {"container": "paused"}, "after": {"container": "paused"}}
    assert file_state(db) == before
    set_container(db, "running")
    assert run(db, FakeQuery(), action="resume", name="box")["changed"] is False


def test_resume_is_sent_as_unpause(db):
    set_container(db, "paused")
    query = FakeQuery(DONE)
    result = run(db, query, action="resume", name="box")
    assert query.sent[0][2]["docker_action"]["action"] == "unpause"
    assert (result["changed"], result["sent"], result["container"]) == (True, ["unpause"], "running")
    assert result["diff"] == {"before": {"container": "paused"}, "after": {"container": "running"}}


def test_restart_always_acts(db):
    set_container(db, "running")
    query = FakeQuery(DONE)
    result = run(db, query, action="restart", hotkey=MINER)
    assert (result["changed"], result["sent"], result["container"]) == (True, ["restart"], "running")
    assert "diff" not in result


def test_check_mode_sends_nothing_writes_nothing_and_returns_the_plan(db):
    before = file_state(db)
    result = run(db, FakeQuery(), check_mode=True, action="pause", name="box")
    assert (result["changed"], result["sent"], result["reply"]) == (True, [], None)
    assert result["plan"]["miner"] == {"hotkey": MINER, "uid": 1, "ip": "127.0.0.11", "port": 8091}
    assert result["plan"]["send"] == ["pause"]
    assert result["plan"]["request"]["docker_action"] == {"action": "pause", "ssh_key": "", "key_type": ""}
    assert (result["plan"]["request"]["timeline"], result["plan"]["request"]["docker_change"]) == (1, True)
    assert result["diff"] == {"before": {"container": "unknown"}, "after": {"container": "paused"}}
    assert result["container"] is None and file_state(db) == before
    plan = run(db, FakeQuery(), check_mode=True, action="exchange_key", name="box", key_type="user",
               ssh_key=NEW_KEY)["plan"]
    assert plan["send"] == ["status", "exchange_key"]
    assert plan["request"]["docker_action"] == {"action": "exchange_key", "ssh_key": NEW_KEY, "key_type": "user"}
    assert file_state(db) == before


def test_a_silent_miner_fails_the_action_and_a_pause_may_have_happened(db):
    with pytest.raises(Unreachable) as caught:
        run(db, FakeQuery(TIMEOUT), action="pause", name="box", timeout=3)
    assert caught.value.message.startswith("miner %s (uid 1) did not answer pause: no answer within 3 s" % MINER)
    assert caught.value.message.endswith("whether the action happened is unknown; the box is taken as paused "
                                         "until its miner answers that it holds it (action=status asks)")
    assert caught.value.details["reply"]["status_code"] == 408 and caught.value.details["sent"] == ["pause"]
    # It may be paused: its "not held" is no evidence against the allocation until "held" says it runs.
    assert record(db).container == "paused"
    assert caught.value.details["allocation"]["container"] == "paused"
    set_container(db, "running")
    with pytest.raises(Unreachable) as caught:
        run(db, FakeQuery(NO_STATUS), action="restart", name="box")
    assert caught.value.message.endswith("; whether the action happened is unknown")
    assert record(db).container is None  # unknown: the next pause or resume is sent whatever it was


def test_status_false_to_an_action_fails_with_the_answer(db):
    with pytest.raises(MinerRefused) as caught:
        run(db, FakeQuery(REFUSED), action="pause", name="box")
    assert "answered status false to pause" in caught.value.message
    assert caught.value.details["reply"]["output"] == {"status": False, "port": 4444}
    assert record(db).container is None


def test_a_refused_resume_of_a_box_that_runs_is_not_a_failure(db):
    set_container(db, "paused")
    query = FakeQuery(REFUSED, HELD)
    result = run(db, query, action="resume", name="box")
    assert (result["changed"], result["sent"], result["container"]) == (False, ["unpause", "status"], "running")
    assert "it was already running" in result["warnings"][0]
    set_container(db, "paused")
    with pytest.raises(MinerRefused):
        run(db, FakeQuery(REFUSED, NOT_HELD), action="resume", name="box")
    assert record(db).container == "paused"


# -- exchange_key ---------------------------------------------------------------------------------------------

def test_exchange_key_user_checks_the_box_runs_sends_the_key_and_records_it(db):
    query = FakeQuery(HELD, DONE)
    result = run(db, query, action="exchange_key", name="box", key_type="user", ssh_key=NEW_KEY + "\n")
    assert [item[0] for item in query.sent] == ["status", "exchange_key"]
    assert query.sent[1][2]["docker_action"] == {"action": "exchange_key", "ssh_key": NEW_KEY, "key_type": "user"}
    assert (result["changed"], result["container"]) == (True, "running")
    assert result["diff"] == {"before": {"ssh_key": USER_KEY}, "after": {"ssh_key": NEW_KEY}}
    assert record(db).ssh_key == NEW_KEY and upstream_details(db, MINER)["ssh_key"] == NEW_KEY
    assert upstream_details(db, MINER)["regkey"] == KEY  # the rest of the details as they were


def test_exchange_key_terminal_leaves_the_recorded_user_key(db):
    result = run(db, FakeQuery(HELD, DONE), action="exchange_key", name="box", key_type="terminal", ssh_key=NEW_KEY)
    assert result["diff"] == {"before": {"terminal_ssh_key": None}, "after": {"terminal_ssh_key": NEW_KEY}}
    assert record(db).ssh_key == USER_KEY


def test_exchange_key_is_not_sent_to_a_box_that_does_not_run(db):
    query = FakeQuery(NOT_HELD)
    with pytest.raises(MinerRefused) as caught:
        run(db, query, action="exchange_key", name="box", key_type="user", ssh_key=NEW_KEY)
    assert "the key exchange was not sent" in caught.value.message
    assert [item[0] for item in query.sent] == ["status"] and record(db).ssh_key == USER_KEY
    set_container(db, "paused")
    with pytest.raises(BadInput, match="is paused.*Resume it first"):
        run(db, FakeQuery(), action="exchange_key", name="box", key_type="user", ssh_key=NEW_KEY)


def test_a_key_file_is_read(db, tmp_path):
    key_file = tmp_path / "team.pub"
    key_file.write_text("# the team's key\n%s\n" % NEW_KEY)
    run(db, FakeQuery(HELD, DONE), action="exchange_key", name="box", key_type="user", ssh_key=str(key_file))
    assert record(db).ssh_key == NEW_KEY


# -- only our own allocations ---------------------------------------------------------------------------------

def test_an_allocation_the_upstream_cli_made_is_ours(db):
    query = FakeQuery(DONE, HELD, DONE)
    assert run(db, query, action="pause", hotkey=CLI_MINER)["container"] == "paused"
    assert query.sent[0][2]["public_key"] == CLI_KEY
    kept = record(db, CLI_MINER)
    # A bookkeeping row holds the state; the upstream row is left as it was.
    assert (kept.name, kept.state, kept.container, kept.regkey, kept.in_upstream) == (
        None, "active", "paused", CLI_KEY, True)
    set_container(db, "running", CLI_MINER, CLI_KEY)
    run(db, query, action="exchange_key", hotkey=CLI_MINER, key_type="user", ssh_key=NEW_KEY)
    assert upstream_details(db, CLI_MINER)["ssh_key"] == NEW_KEY and record(db, CLI_MINER).ssh_key == NEW_KEY


def test_a_miner_without_our_record_is_refused_before_anything_is_sent(db):
    before = file_state(db)
    with pytest.raises(BadInput) as caught:
        run(db, FakeQuery(), action="pause", hotkey=FREE_MINER)
    assert caught.value.message.startswith("miner %s: this validator has no allocation recorded for it" % FREE_MINER)
    assert "nothing was sent" in caught.value.message
    with pytest.raises(BadInput, match="allocation 'nobox': this validator has no allocation recorded"):
        run(db, FakeQuery(), action="status", name="nobox")
    assert file_state(db) == before


def test_a_record_without_a_public_key_is_refused(db):
    connection = sqlite3.connect(db)
    connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)",
                       (FREE_MINER, json.dumps(dict(CREDENTIALS, regkey="", ssh_key="", uuid="u"))))
    connection.commit()
    connection.close()
    with pytest.raises(BadInput, match="has no public key recorded, so nothing was sent"):
        run(db, FakeQuery(), action="restart", hotkey=FREE_MINER)


@pytest.mark.parametrize("state", ["pending", "releasing", "expired"])
def test_records_that_are_not_live_are_refused(db, state):
    connection = sqlite3.connect(db)
    connection.execute("UPDATE nicompute_allocation SET state = ?, unpublished_at = ? WHERE hotkey = ?",
                       (state, time.time(), MINER))
    connection.commit()
    connection.close()
    with pytest.raises(BadInput, match=r"allocation 'box': .*\(%s.*so pause is not sent" % state):
        run(db, FakeQuery(), action="pause", name="box")
    if state == "releasing":
        # Asking whether the miner still holds the key is what a release waits for.
        assert run(db, FakeQuery(NOT_HELD), action="status", name="box")["status"] == "unconfirmed"
    else:
        with pytest.raises(BadInput):
            run(db, FakeQuery(), action="status", name="box")


# -- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"action": "reboot", "name": "box"}, "action must be one of status, restart, pause, resume, exchange_key"),
    ({"action": "pause"}, "give exactly one of name or hotkey"),
    ({"action": "pause", "name": "box", "hotkey": MINER}, "give exactly one of name or hotkey (both were given)"),
    ({"action": "pause", "name": "  "}, "name must not be empty"),
    ({"action": "pause", "hotkey": MINER[:-1] + "x"}, "is not a valid ss58 address"),
    ({"action": "exchange_key", "name": "box", "ssh_key": NEW_KEY},
     "action exchange_key needs key_type user or terminal"),
    ({"action": "exchange_key", "name": "box", "key_type": "root", "ssh_key": NEW_KEY}, "needs key_type"),
    ({"action": "exchange_key", "name": "box", "key_type": "user"}, "action exchange_key needs ssh_key"),
    ({"action": "exchange_key", "name": "box", "key_type": "user", "ssh_key": "not a key"},
     "neither an OpenSSH public key nor a readable key file"),
    ({"action": "exchange_key", "name": "box", "key_type": "user", "ssh_key": NEW_KEY + "\n" + USER_KEY},
     "one key on one line"),
    ({"action": "exchange_key", "name": "box", "key_type": "user", "ssh_key": NEW_KEY + "'"}, "without quotes"),
    ({"action": "pause", "name": "box", "ssh_key": NEW_KEY}, "ssh_key is only for action exchange_key, not pause"),
    ({"action": "status", "name": "box", "key_type": "user"}, "key_type is only for action exchange_key"),
    ({"action": "pause", "name": "box", "timeout": float("nan")}, "timeout must be a finite number"),
    ({"action": "pause", "name": "box", "timeout": 0}, "timeout must be greater than 0"),
    ({"action": "pause", "name": "box", "timeout": 3601}, "at most 3600"),
])
def test_bad_input_is_refused_before_anything_is_read_or_sent(db, options, message):
    before = file_state(db)
    with pytest.raises(BadInput) as caught:
        run(db, FakeQuery(), **options)
    assert message in caught.value.message
    assert file_state(db) == before


# -- the store: the container column, the key, the migration --------------------------------------------------

def test_store_changes_match_the_hotkey_and_the_public_key(db):
    with AllocationStore(db) as store:
        with pytest.raises(NotFound):
            store.set_container_state(MINER, KEY + "other", "paused")
        with pytest.raises(NotFound):
            store.set_ssh_key(MINER, KEY + "other", NEW_KEY)
        with pytest.raises(NotFound):
            store.set_container_state(CLI_MINER, KEY, "paused")
        with pytest.raises(BadInput):
            store.set_container_state(MINER, KEY, "stopped")
        assert store.get(hotkey=MINER).container is None and store.get(hotkey=MINER).ssh_key == USER_KEY
        assert store.get(hotkey=CLI_MINER).container is None
        assert store.set_container_state(MINER, KEY, "paused").container == "paused"
        assert store.set_container_state(MINER, KEY, None).container is None
    assert upstream_details(db, MINER)["ssh_key"] == USER_KEY


def test_a_table_of_the_previous_shape_gains_the_container_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "database.db"
    previous = [column for column in _store.OWN_COLUMNS_SQL if column[0] != "container"]
    connection = sqlite3.connect(str(path), isolation_level=None)
    for statement in _store.UPSTREAM_SCHEMA:
        connection.execute(statement)
    connection.execute("CREATE TABLE nicompute_allocation (%s)" % ", ".join("%s %s" % column for column in previous))
    connection.execute("INSERT INTO nicompute_allocation (hotkey, name, state, regkey, ssh_key, timeline, "
                       "unconfirmed_since) VALUES (?, 'kept', 'unconfirmed', ?, ?, 2, 1.5)", (MINER, KEY, USER_KEY))
    connection.execute("INSERT INTO nicompute_allocation (hotkey, name, state, regkey) VALUES (?, 'other', "
                       "'releasing', ?)", (CLI_MINER, CLI_KEY))
    connection.close()
    with AllocationStore(str(path)) as store:
        kept = store.get(name="kept")
        assert (kept.state, kept.regkey, kept.ssh_key, kept.timeline, kept.unconfirmed_since, kept.container) == (
            "unconfirmed", KEY, USER_KEY, 2, 1.5, None)
        assert store.get(name="other").state == "releasing"
        assert store.set_container_state(MINER, KEY, "paused").container == "paused"
    columns = [row[1] for row in sqlite3.connect(str(path)).execute("PRAGMA table_info(nicompute_allocation)")]
    assert columns == [name for name, _kind in _store.OWN_COLUMNS_SQL] and columns[-1] == "container"
    migrated = path.read_bytes()
    with AllocationStore(str(path)) as store:
        store.require_writable()
    assert path.read_bytes() == migrated  # migrated once


# -- a paused allocation stays ours -----------------------------------------------------------------------------

def live_client(path, query):
    client = ComputeClient(settings_for(path), store=AllocationStore(path), metagraph=Metagraph())
    client._keypair = SimpleNamespace(ss58_address=OPERATOR)
    client._query = query
    return client


def test_live_allocation_keeps_a_paused_box_without_counting_not_held(db):
    set_container(db, "paused")
    kept, warning = live_client(db, FakeQuery(NOT_HELD)).live_allocation("box", 3)
    assert (kept.state, kept.unconfirmed_since, kept.container) == ("active", None, "paused")
    assert "is paused" in warning and "action=resume" in warning
    # Not even after the grace period: the answer is no evidence at all.
    client = live_client(db, FakeQuery(NOT_HELD))
    client.settings.unconfirmed_grace = 0
    assert client.live_allocation("box", 3)[0].state == "active" and record(db).state == "active"


def test_live_allocation_learns_that_a_paused_box_runs_again(db):
    set_container(db, "paused")
    kept, warning = live_client(db, FakeQuery(HELD)).live_allocation("box", 3, check_mode=True)
    assert (kept.container, warning, record(db).container) == ("paused", None, "paused")
    kept, warning = live_client(db, FakeQuery(HELD)).live_allocation("box", 3)
    assert (kept.container, warning, record(db).container) == ("running", None, "running")


def test_live_allocation_still_counts_not_held_when_the_box_is_not_paused(db):
    set_container(db, "running")
    kept, warning = live_client(db, FakeQuery(NOT_HELD)).live_allocation("box", 3)
    assert kept.state == "unconfirmed" and "does not hold 'box'" in warning


def test_judge_reply_calls_not_held_of_a_paused_record_paused(tmp_path):
    settings = settings_for(str(tmp_path / "database.db"))
    now = time.time()
    for state in CHECKED_STATES:
        paused = Allocation(hotkey="hk", state=state, name="box", regkey=REGKEY, container="paused",
                            unconfirmed_since=now - 10 * 86400, unpublished_at=now - 10 * 86400)
        status, why = judge_reply(paused, NOT_HELD, now, settings)
        assert status == "paused" and "paused" in why
        assert judge_reply(paused, HELD, now, settings) == ("live", None)
        assert judge_reply(paused, TIMEOUT, now, settings)[0] == "unreachable"
        running = Allocation(hotkey="hk", state=state, name="box", regkey=REGKEY, container="running",
                             unconfirmed_since=now - 10 * 86400, unpublished_at=now - 10 * 86400)
        assert judge_reply(running, NOT_HELD, now, settings)[0] == "released"


# -- releasing a box this collection paused -------------------------------------------------------------

def test_a_paused_box_is_resumed_before_its_release(db):
    # v1.8.3 miners remove the container without force, which Docker refuses while it is paused.
    set_container(db, "paused")
    query = FakeQuery(reply({"status": True}), reply({"status": True}))
    client = live_client(db, query)
    outcome = client.deallocate(record(db), 3)
    assert [item[0] for item in query.sent] == ["unpause", "release"]
    assert outcome["result"] == "released" and record(db) is None


def test_a_paused_box_whose_release_fails_is_never_taken_as_released_from_not_held(db):
    set_container(db, "paused")
    # The resume is refused, the release fails, and a sync period has passed: still kept, nothing asked.
    query = FakeQuery(reply({"status": False}), reply({"status": False}))
    client = live_client(db, query)
    client.settings.miner_sync_period = 0  # any unpublished record is past its sync period
    outcome = client.deallocate(record(db), 3)
    assert [item[0] for item in query.sent] == ["unpause", "release"]
    assert outcome["result"] == "unpublished"
    kept = record(db)
    assert (kept.state, kept.container) == ("releasing", "paused")
