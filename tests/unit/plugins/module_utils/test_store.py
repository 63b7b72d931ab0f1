# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _store
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    Claimed,
    NotFound,
    StoreError,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner, process_started
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import (
    DETAILS_KEYS,
    Allocation,
    AllocationStore,
)

HOTKEY = "5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX"
OTHER = "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"
REGKEY = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----\n"
CREDENTIALS = {"username": "root", "password": "a1b2c3d4e5", "port": 4444, "version": 183}

# What an upstream validator leaves in database.db besides the tables this store knows.
FOREIGN = (
    "CREATE TABLE challenge_details (uid INTEGER, success BOOLEAN, elapsed_time REAL, difficulty INTEGER, "
    "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE pog_stats (id INTEGER PRIMARY KEY AUTOINCREMENT, hotkey TEXT, gpu_name TEXT, num_gpus INTEGER)",
    "CREATE TABLE tb (id INTEGER PRIMARY KEY, hotkey TEXT, details TEXT)",
    "CREATE INDEX pog_stats_hotkey ON pog_stats (hotkey)",
    "INSERT INTO challenge_details (uid, success, elapsed_time, difficulty) VALUES (1, 1, 2.5, 7), (2, 0, 9.0, 7)",
    "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus) VALUES ('hk1', 'NVIDIA H100 80GB HBM3', 8)",
    "INSERT INTO tb (hotkey, details) VALUES ('hk1', '{}'), ('hk2', '{\"x\": 1}')",
)


def raw(path):
    connection = sqlite3.connect(str(path), isolation_level=None)
    return connection


def upstream_db(path, journal_mode=None):
    """A database as the validator creates it, with data in tables this store does not own."""
    connection = raw(path)
    if journal_mode:
        assert connection.execute("PRAGMA journal_mode = %s" % journal_mode).fetchone()[0] == journal_mode
    for statement in _store.UPSTREAM_SCHEMA + FOREIGN:
        connection.execute(statement)
    connection.execute("INSERT INTO miner (uid, ss58_address) VALUES (3, 'hk3')")
    connection.execute("INSERT INTO miner_details (hotkey, details) VALUES ('hk3', '{\"cpu\": {\"count\": 4}}')")
    connection.execute("INSERT INTO miner_details (hotkey, details) VALUES ('hk4', 'not json')")
    connection.execute("INSERT INTO stats (uid, hotkey, score) VALUES (3, 'hk3', 12.5), (4, 'hk4', NULL)")
    connection.execute("INSERT INTO blacklist (hotkey, details) VALUES ('hk9', NULL)")
    connection.close()


OWN_TABLES = ("nicompute_allocation", "nicompute_state")


def snapshot(path, skip=("allocation", "blacklist") + OWN_TABLES):
    connection = raw(path)
    schema = sorted(tuple(row) for row in connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    rows = {}
    for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        if name not in skip and not name.startswith("sqlite_"):
            rows[name] = sorted(connection.execute("SELECT * FROM %s" % name).fetchall(), key=repr)
    connection.close()
    return schema, rows


def pending(store, hotkey=HOTKEY, name="box1", timeline=2, regkey=REGKEY, owner=None, lease_seconds=60.0):
    return store.claim(name=name, hotkey=hotkey, uid=7, ip="127.0.0.7", regkey=regkey,
                       ssh_key="ssh-ed25519 AAAA user@host", resource="nvidia h100 80gb hbm3",
                       timeline=timeline, owner=owner or Owner.current(), lease_seconds=lease_seconds)


@pytest.fixture
def store(tmp_path):
    with AllocationStore(str(tmp_path / "database.db"), create=True) as opened:
        yield opened


# -- opening ----------------------------------------------------------------------

def test_new_file_is_0600_and_has_every_table(tmp_path):
    path = tmp_path / "sub" / "database.db"
    AllocationStore(str(path), create=True).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    connection = raw(path)
    tables = set(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    assert tables == {"miner", "miner_details", "allocation", "blacklist", "stats", "wandb_runs",
                      "nicompute_allocation", "nicompute_state"}
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_upstream_database_is_left_untouched(tmp_path):
    path = tmp_path / "database.db"
    upstream_db(path)
    schema_before, rows_before = snapshot(path)
    with AllocationStore(str(path), create=True) as store:
        pending(store)
        store.activate(HOTKEY, REGKEY, CREDENTIALS)
        store.set_penalties(add={OTHER: {"reason": "test"}})
        store.set_penalties(remove=[OTHER])
        store.set_wandb_run_id("hk3", "abc123")
        store.remove(HOTKEY, REGKEY)
        assert store.allocations() == []
    schema_after, rows_after = snapshot(path)
    own = [entry for entry in schema_after if entry[2] in OWN_TABLES]
    assert own and all(entry not in schema_before for entry in own)
    assert [entry for entry in schema_after if entry[2] not in OWN_TABLES] == schema_before
    rows_after["wandb_runs"] = [row for row in rows_after["wandb_runs"] if row != ("hk3", "abc123")]
    assert rows_after == rows_before
    assert rows_before["tb"] and rows_before["challenge_details"] and rows_before["pog_stats"]


def test_missing_upstream_tables_are_created_and_odd_existing_ones_kept(tmp_path):
    path = tmp_path / "database.db"
    connection = raw(path)
    # An older validator's allocation table, without the id column.
    connection.execute("CREATE TABLE allocation (hotkey TEXT UNIQUE, details TEXT)")
    connection.close()
    before = path.read_bytes()
    with AllocationStore(str(path), create=True) as store:
        # Opening and reading create nothing: a task that changes nothing leaves the file as it was.
        assert store.allocations() == [] and store.penalized() == set()
        assert path.read_bytes() == before
        # The first write makes what is missing.
        store.set_wandb_run_id("hk3", "run1")
    connection = raw(path)
    sql = dict(connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    assert sql["allocation"] == "CREATE TABLE allocation (hotkey TEXT UNIQUE, details TEXT)"
    assert "blacklist" in sql and "stats" in sql and "miner_details" in sql and "nicompute_allocation" in sql


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_journal_mode_of_a_foreign_database_is_unchanged(tmp_path, mode):
    path = tmp_path / "database.db"
    upstream_db(path, journal_mode=mode)
    with AllocationStore(str(path), create=True) as store:
        pending(store)
        store.activate(HOTKEY, REGKEY, CREDENTIALS)
    connection = raw(path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == mode
    connection.close()


def test_a_file_that_is_not_sqlite_gives_a_clear_error(tmp_path):
    path = tmp_path / "database.db"
    path.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(StoreError) as caught:
        AllocationStore(str(path), create=True)
    assert "not an SQLite database" in caught.value.message
    assert str(path) in caught.value.message
    assert caught.value.details["path"] == str(path)


def test_a_directory_gives_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        AllocationStore(str(tmp_path), create=True)


def test_sqlite_errors_become_store_errors_with_the_path(store, tmp_path):
    store._connection.execute("DROP TABLE nicompute_allocation")
    with pytest.raises(StoreError) as caught:
        pending(store)
    assert str(tmp_path / "database.db") in caught.value.message
    assert "nicompute_allocation" in caught.value.message


def test_read_only_database_can_still_be_listed(tmp_path, monkeypatch):
    path = tmp_path / "database.db"
    upstream_db(path)
    connection = raw(path)
    connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", (OTHER, json.dumps({"ip": "1.2.3.4"})))
    connection.close()
    # root ignores file modes, so open read-only the way SQLite would for a 0400 file.
    monkeypatch.setattr(_store, "connect", _read_only_connect)
    with AllocationStore(str(path), create=True) as store:
        assert [item.hotkey for item in store.allocations()] == [OTHER]
        assert store.get(name="anything") is None
        with pytest.raises(StoreError, match="read-only"):
            store.require_writable()
        with pytest.raises(StoreError, match="read-only"):
            store.set_penalties(add={HOTKEY: {}})


def _read_only_connect(path, create=False):
    connection = sqlite3.connect("file:%s?mode=ro" % path, uri=True, isolation_level=None)
    connection.row_factory = sqlite3.Row
    return connection


# -- allocations ------------------------------------------------------------------

def test_pending_active_releasing_removed(store):
    record = pending(store)
    assert isinstance(record, Allocation)
    assert (record.state, record.name, record.uid, record.ip, record.regkey) == ("pending", "box1", 7, "127.0.0.7", REGKEY)
    assert record.details is None and not record.in_upstream
    assert record.expires_at == pytest.approx(record.created_at + 2 * 86400)
    assert record.uuid
    assert store.allocated_hotkeys() == []  # upstream readers see nothing while pending
    assert [item.hotkey for item in store.pending()] == [HOTKEY]

    active = store.activate(HOTKEY, REGKEY, CREDENTIALS)
    assert active.state == "active" and active.in_upstream
    assert active.details["password"] == "a1b2c3d4e5"
    assert store.allocated_hotkeys() == [HOTKEY]
    assert store.pending() == []

    releasing = store.mark_releasing(HOTKEY, REGKEY, "miner did not answer")
    assert (releasing.state, releasing.error) == ("releasing", "miner did not answer")
    assert [item.hotkey for item in store.allocations(state="releasing")] == [HOTKEY]
    # Unpublished at once: miners release what no validator lists, even when they never answer us.
    assert store.allocated_hotkeys() == []
    assert releasing.unpublished_at is not None and releasing.regkey == REGKEY

    assert store.remove(HOTKEY, REGKEY) is True
    assert store.get(hotkey=HOTKEY) is None
    assert store.allocations() == []
    assert store.remove(HOTKEY, REGKEY) is False


def test_activate_writes_exactly_the_nine_upstream_keys(store, tmp_path):
    pending(store)
    store.activate(HOTKEY, REGKEY, dict(CREDENTIALS, extra="not stored"))
    connection = raw(tmp_path / "database.db")
    (text,) = connection.execute("SELECT details FROM allocation WHERE hotkey = ?", (HOTKEY,)).fetchone()
    details = json.loads(text)
    assert sorted(details) == sorted(DETAILS_KEYS)
    assert len(details) == 9
    assert details["regkey"] == REGKEY  # byte for byte: the only proof of ownership
    assert details["ip"] == "127.0.0.7"
    assert details["resource"] == "nvidia h100 80gb hbm3"
    assert details["ssh_key"] == "ssh-ed25519 AAAA user@host"
    assert details["username"] == "root" and details["port"] == 4444 and details["version"] == 183
    assert details["uuid"] == store.get(hotkey=HOTKEY).uuid


def test_activate_is_one_transaction(store, tmp_path):
    pending(store)
    # A broken bookkeeping update must not leave the upstream row behind.
    store._connection.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE ON nicompute_allocation BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(StoreError, match="refused"):
        store.activate(HOTKEY, REGKEY, CREDENTIALS)
    assert store.allocated_hotkeys() == []
    assert store.get(hotkey=HOTKEY).state == "pending"


def test_activate_needs_a_pending_record_and_full_credentials(store):
    with pytest.raises(NotFound):
        store.activate(HOTKEY, REGKEY, CREDENTIALS)
    pending(store)
    with pytest.raises(BadInput, match="password"):
        store.activate(HOTKEY, REGKEY, {"username": "root", "port": 4444, "version": 183})
    assert store.get(hotkey=HOTKEY).state == "pending"


def test_duplicate_hotkey_or_name_is_refused(store):
    pending(store)
    with pytest.raises(Claimed, match="held by allocation 'box1' \\(pending\\)"):
        pending(store, name="box2", regkey=REGKEY + "2")
    with pytest.raises(BadInput, match="named box1"):
        pending(store, hotkey=OTHER)
    assert len(store.allocations()) == 1


def test_hotkey_allocated_by_the_upstream_cli_is_refused(store):
    store._connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, '{}')", (HOTKEY,))
    with pytest.raises(Claimed, match="made outside this collection"):
        pending(store)


@pytest.mark.parametrize("timeline", [0, -1, True, 1.5, "2"])
def test_bad_timeline_is_refused(store, timeline):
    with pytest.raises(BadInput, match="timeline"):
        pending(store, timeline=timeline)
    assert store.allocations() == []


def test_get_by_name_and_argument_check(store):
    pending(store)
    assert store.get(name="box1").hotkey == HOTKEY
    assert store.get(name="nope") is None
    with pytest.raises(BadInput):
        store.get()
    with pytest.raises(BadInput):
        store.get(hotkey=HOTKEY, name="box1")
    with pytest.raises(BadInput):
        store.allocations(state="gone")


def test_upstream_cli_allocations_are_listed(store, tmp_path):
    upstream_details = {"username": "root", "password": "p", "port": 4444, "version": 183, "ip": "10.0.0.9",
                        "resource": "nvidia l40s", "regkey": REGKEY, "ssh_key": "", "uuid": "u-1"}
    connection = raw(tmp_path / "database.db")
    connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", (OTHER, json.dumps(upstream_details)))
    connection.execute("INSERT INTO allocation (hotkey, details) VALUES ('5Broken', 'not json')")
    connection.close()
    pending(store)
    listed = store.allocations()
    assert [item.hotkey for item in listed] == sorted([HOTKEY, OTHER, "5Broken"])
    cli = store.get(hotkey=OTHER)
    assert (cli.state, cli.name, cli.ip, cli.regkey, cli.uuid) == ("active", None, "10.0.0.9", REGKEY, "u-1")
    assert cli.details == upstream_details
    assert store.get(hotkey="5Broken").details is None
    assert [item.hotkey for item in store.allocations(state="active")] == sorted([OTHER, "5Broken"])
    # Releasing one keeps its regkey in the bookkeeping for a retry.
    releasing = store.mark_releasing(OTHER, REGKEY, "no answer")
    assert (releasing.state, releasing.regkey, releasing.name) == ("releasing", REGKEY, None)
    assert store.remove(OTHER, REGKEY)
    assert store.allocated_hotkeys() == ["5Broken"]


def test_mark_releasing_unknown_hotkey(store):
    with pytest.raises(NotFound):
        store.mark_releasing(HOTKEY, REGKEY, "x")


# -- validator data -------------------------------------------------------------

def test_specs_scores_and_blacklist(tmp_path):
    path = tmp_path / "database.db"
    upstream_db(path)
    with AllocationStore(str(path), create=True) as store:
        assert store.miner_specs() == {"hk3": '{"cpu": {"count": 4}}', "hk4": "not json"}
        assert store.scores() == {"hk3": 12.5}
        assert store.penalized() == {"hk9"}
        assert store.set_penalties(add={HOTKEY: {"reason": "bad"}}) == {"hk9", HOTKEY}
        assert store.penalties()[HOTKEY] == {"reason": "bad"}
        # Blacklisting again replaces the details; removing and adding happen in one transaction.
        assert store.set_penalties(add={HOTKEY: {"reason": "worse"}}) == {"hk9", HOTKEY}
        assert store.penalties()[HOTKEY] == {"reason": "worse"}
        assert store.set_penalties(add={OTHER: {}}, remove=[HOTKEY, "absent"]) == {"hk9", OTHER}
        assert store.penalized() == {"hk9", OTHER}


def test_reader_creates_nothing_and_reads_missing_tables_as_empty(tmp_path):
    path = tmp_path / "database.db"
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE miner_details (id INTEGER PRIMARY KEY, hotkey TEXT UNIQUE, details TEXT, "
                       "no_specs_count INTEGER DEFAULT 0)")
    connection.execute("INSERT INTO miner_details (hotkey, details) VALUES ('hk1', '{}')")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    with AllocationStore(str(path), reader=True) as store:
        assert store.miner_specs() == {"hk1": "{}"}
        assert store.allocations() == [] and store.penalized() == set() and store.scores() == {}
        with pytest.raises(StoreError, match="read-only"):
            store.set_penalties(add={HOTKEY: {}})
    assert path.read_bytes() == before
    with pytest.raises(NotFound, match="does not exist"):
        AllocationStore(str(tmp_path / "missing.db"), reader=True)
    (tmp_path / "text.db").write_text("not a database at all, just text" * 100)
    with pytest.raises(StoreError, match="not an SQLite database"):
        AllocationStore(str(tmp_path / "text.db"), reader=True)


def test_penalize_details_are_json_text(store, tmp_path):
    store.set_penalties(add={HOTKEY: {"reason": "bad"}})
    connection = raw(tmp_path / "database.db")
    assert json.loads(connection.execute("SELECT details FROM blacklist").fetchone()[0]) == {"reason": "bad"}


def test_wandb_run_id(store):
    assert store.wandb_run_id(HOTKEY) is None
    store.set_wandb_run_id(HOTKEY, "run1")
    store.set_wandb_run_id(HOTKEY, "run2")
    assert store.wandb_run_id(HOTKEY) == "run2"


def test_allocated_hotkeys_are_sorted(store):
    for hotkey in ("5C", "5A", "5B"):
        store._connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, '{}')", (hotkey,))
    assert store.allocated_hotkeys() == ["5A", "5B", "5C"]


# -- concurrency ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_validator_holding_the_write_lock_delays_but_does_not_fail_writes(tmp_path, mode):
    path = tmp_path / "database.db"
    upstream_db(path, journal_mode=mode)
    locked = threading.Event()
    released = threading.Event()

    def validator():
        connection = raw(path)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO miner_details (hotkey, details) VALUES ('hk5', '{}')")
        locked.set()
        threading.Event().wait(0.3)  # the validator's short transaction
        released.set()
        connection.execute("COMMIT")
        connection.close()

    with AllocationStore(str(path), create=True) as store:
        thread = threading.Thread(target=validator)
        thread.start()
        assert locked.wait(5)
        pending(store)
        store.activate(HOTKEY, REGKEY, CREDENTIALS)
        assert released.is_set()  # the write waited for the lock instead of failing
        thread.join(5)
        assert store.allocated_hotkeys() == [HOTKEY]
        assert "hk5" in store.miner_specs()


def test_locked_errors_are_retried(store, monkeypatch):
    monkeypatch.setattr(_store.time, "sleep", lambda _seconds: None)
    calls = []

    def flaky(connection):
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert store._write(flaky) == "done"
    assert len(calls) == 3
    assert not store._connection.in_transaction


def test_locked_for_good_becomes_a_store_error(store, monkeypatch):
    monkeypatch.setattr(_store.time, "sleep", lambda _seconds: None)

    def locked(connection):
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(StoreError, match="database is locked"):
        store._write(locked)
    assert not store._connection.in_transaction


def test_connect_and_ensure_upstream_schema_for_localnet(tmp_path):
    path = str(tmp_path / "validator.db")
    with pytest.raises(NotFound, match="does not exist.*db_create=true"):
        _store.connect(path)
    assert not os.path.exists(path)
    connection = _store.connect(path, create=True)
    _store.ensure_upstream_schema(connection)
    tables = set(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    connection.close()
    assert "nicompute_allocation" not in tables
    assert {"miner", "miner_details", "allocation", "blacklist", "stats", "wandb_runs"} <= tables
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


# -- claims: owner, lease, the allocation's own key ----------------------------------------

OTHER_HOST = Owner("another-controller", 4242, 1700000000.0)


def test_a_claim_records_its_owner_and_lease(store):
    before = time.time()
    record = pending(store, lease_seconds=90)
    assert record.owner == Owner.current()
    assert before + 90 <= record.lease_until <= time.time() + 90
    assert record.abandoned(time.time()) is None
    assert record.abandoned(record.lease_until + 1) == "its lease expired"


def test_a_claim_of_a_process_that_exited_is_abandoned(store):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    owner = Owner(Owner.current().host, child.pid, process_started(child.pid))
    record = pending(store, owner=owner)
    assert record.abandoned(time.time()) is None
    child.kill()
    child.wait()
    assert store.get(hotkey=HOTKEY).abandoned(time.time()) == "its run (pid %d on %s) is gone" % (child.pid, owner.host)


def test_a_reused_pid_is_not_the_owner(store):
    me = Owner.current()
    impostor = Owner(me.host, me.pid, me.started - 100.0)
    assert pending(store, owner=impostor).abandoned(time.time()).startswith("its run (pid")


def test_another_hosts_claim_counts_until_its_lease_expires(store):
    record = pending(store, owner=OTHER_HOST, lease_seconds=30)
    assert OTHER_HOST.alive() is None
    assert record.abandoned(time.time()) is None
    assert record.abandoned(time.time() + 31) == "its lease expired"


def test_take_over_is_granted_once_and_only_when_abandoned(store, tmp_path):
    live = pending(store)
    assert store.take_over(live, OTHER_HOST, 60) is None
    dead = pending(store, hotkey=OTHER, name="box2", regkey=REGKEY + "2", lease_seconds=-1)
    with AllocationStore(str(tmp_path / "database.db")) as second_run:
        taken = store.take_over(dead, Owner.current(), 60)
        assert taken.owner == Owner.current() and taken.lease_until > time.time()
        # The second run saw the same abandoned record, but the first took it.
        assert second_run.take_over(dead, OTHER_HOST, 60) is None
    assert store.get(hotkey=OTHER).owner == Owner.current()


def test_every_change_matches_the_allocations_own_key(store):
    pending(store)
    other_key = REGKEY.replace("MIIB", "XXXX")
    with pytest.raises(NotFound):
        store.activate(HOTKEY, other_key, CREDENTIALS)
    with pytest.raises(NotFound):
        store.mark_releasing(HOTKEY, other_key, "x")
    assert store.remove(HOTKEY, other_key) is False
    assert store.get(hotkey=HOTKEY).state == "pending"
    store.activate(HOTKEY, REGKEY, CREDENTIALS)
    assert store.remove(HOTKEY, other_key) is False
    assert store.allocated_hotkeys() == [HOTKEY]


def test_an_upstream_row_of_another_allocation_is_not_removed(store, tmp_path):
    connection = raw(tmp_path / "database.db")
    connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", (OTHER, json.dumps({"regkey": "theirs"})))
    connection.close()
    assert store.remove(OTHER, REGKEY) is False
    assert store.allocated_hotkeys() == [OTHER]
    assert store.remove(OTHER, "theirs") is True


def _claim_in_process(path, regkey, start, results):
    with AllocationStore(path) as own:
        start.wait()
        try:
            own.claim(name=None, hotkey=HOTKEY, uid=7, ip="127.0.0.7", regkey=regkey, ssh_key="", resource="x",
                      timeline=1, owner=Owner.current(), lease_seconds=60)
            results.put("claimed")
        except Claimed:
            results.put("refused")
        except StoreError as error:
            results.put(error.message)


def test_sixteen_processes_claiming_one_miner_get_exactly_one_claim(store):
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_claim_in_process, args=(store.path, "key-%d" % i, start, results))
               for i in range(16)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = sorted(results.get(timeout=60) for _worker in workers)
    for worker in workers:
        worker.join(10)
    assert outcomes == ["claimed"] + ["refused"] * 15
    assert len(store.allocations()) == 1


def test_a_table_from_an_older_version_gains_the_owner_columns(tmp_path):
    path = tmp_path / "database.db"
    connection = raw(path)
    connection.execute(
        "CREATE TABLE nicompute_allocation (hotkey TEXT PRIMARY KEY, name TEXT UNIQUE, state TEXT NOT NULL "
        "CHECK(state IN ('pending','active','releasing')), uid INTEGER, ip TEXT, regkey TEXT, ssh_key TEXT, "
        "resource TEXT, timeline INTEGER, created_at REAL, expires_at REAL, error TEXT, uuid TEXT)")
    connection.execute("INSERT INTO nicompute_allocation (hotkey, name, state, regkey) VALUES (?, 'old', 'pending', ?)",
                       (HOTKEY, REGKEY))
    connection.close()
    with AllocationStore(str(path)) as store:
        record = store.get(name="old")
        assert (record.owner, record.lease_until, record.request) == (None, None, None)
        # An older version's pending record has no owner to wait for.
        assert record.abandoned(time.time()) == "it has no lease"
    columns = [row[1] for row in raw(path).execute("PRAGMA table_info(nicompute_allocation)")]
    assert columns == [name for name, _kind in _store.OWN_COLUMNS_SQL]
    sql = raw(path).execute("SELECT sql FROM sqlite_master WHERE name = 'nicompute_allocation'").fetchone()[0]
    assert "'unconfirmed'" in sql and "'expired'" in sql  # the new states are allowed
    # Migrated once: later opens (and a writability check) leave the file byte for byte as it is.
    migrated = path.read_bytes()
    for _round in range(2):
        with AllocationStore(str(path)) as store:
            store.require_writable()
    assert path.read_bytes() == migrated


def test_a_table_renamed_by_an_earlier_migration_is_not_rebuilt_again(tmp_path):
    path = tmp_path / "database.db"
    AllocationStore(str(path), create=True).close()
    connection = raw(path)
    # What an earlier version's migration left: the current shape, its name quoted by ALTER TABLE.
    connection.execute("ALTER TABLE nicompute_allocation RENAME TO moved")
    connection.execute("ALTER TABLE moved RENAME TO nicompute_allocation")
    assert raw(path).execute("SELECT sql FROM sqlite_master WHERE name = 'nicompute_allocation'").fetchone()[0] \
        .startswith('CREATE TABLE "nicompute_allocation"')
    connection.close()
    before = path.read_bytes()
    with AllocationStore(str(path)) as store:
        store.require_writable()
    assert path.read_bytes() == before


# -- opening for writing ----------------------------------------------------------------------

def test_a_missing_file_is_created_only_when_asked(tmp_path):
    path = tmp_path / "typo" / "database.db"
    with pytest.raises(NotFound, match="database %s does not exist.*db_create=true" % path):
        AllocationStore(str(path))
    assert not path.parent.exists()
    with AllocationStore(str(path), in_memory=True, create=True) as dry_run:
        assert dry_run.allocations() == [] and dry_run.miner_specs() == {}
    assert not path.parent.exists()


def test_a_read_only_file_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "database.db"
    upstream_db(path)
    AllocationStore(str(path)).close()
    before = path.read_bytes()
    subprocess.run(["chattr", "+i", str(path)], check=True)  # read-only even for root
    try:
        with AllocationStore(str(path)) as store:
            assert store.miner_specs()  # still readable
            with pytest.raises(StoreError, match="database %s is read-only; nothing was changed" % path):
                store.require_writable()
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert path.read_bytes() == before


def test_a_damaged_file_is_refused_for_writing(tmp_path):
    path = tmp_path / "database.db"
    upstream_db(path)
    connection = raw(path)
    connection.execute("CREATE TABLE filler (x TEXT)")
    connection.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    connection.close()
    data = bytearray(path.read_bytes())
    size = raw(path).execute("PRAGMA page_size").fetchone()[0]
    leaves = [number for number in range(1, len(data) // size) if data[number * size] == 0x0D]  # table leaves
    page = leaves[-1] * size
    data[page + 8:page + 16] = b"\xff\xf0" * 4  # cell pointers past the end of the page
    path.write_bytes(bytes(data))
    with AllocationStore(str(path)) as store:
        with pytest.raises(StoreError) as caught:
            store.require_writable()
    assert caught.value.message.startswith("database %s is damaged (PRAGMA quick_check: " % path)
    assert caught.value.message.endswith("refusing to write to it. Restore it from a backup")


def test_a_healthy_writable_file_passes_and_is_checked_once(store, monkeypatch):
    store.require_writable()
    calls = []
    monkeypatch.setattr(store, "_rollback", lambda: calls.append(1))
    store.require_writable()
    assert calls == []


def test_a_zombie_owner_is_gone(store):
    # A child that exited but was never reaped stays in /proc as a zombie until its parent waits.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    started = process_started(child.pid)
    assert started is not None
    deadline = time.time() + 10
    while time.time() < deadline:
        with open("/proc/%d/stat" % child.pid) as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    else:
        raise AssertionError("the child did not become a zombie")
    owner = Owner(Owner.current().host, child.pid, started)
    assert pending(store, owner=owner).abandoned(time.time()).startswith("its run (pid")
    child.wait()


# -- lifetimes: unconfirmed, expired, what was published -------------------------------------

def test_unconfirmed_stays_published_and_keeps_its_first_time(store):
    pending(store)
    store.activate(HOTKEY, REGKEY, CREDENTIALS)
    first = store.mark_unconfirmed(HOTKEY, REGKEY, "not held")
    again = store.mark_unconfirmed(HOTKEY, REGKEY, "not held")
    assert (first.state, again.unconfirmed_since) == ("unconfirmed", first.unconfirmed_since)
    assert store.allocated_hotkeys() == [HOTKEY]
    back = store.confirm(HOTKEY, REGKEY)
    assert (back.state, back.unconfirmed_since, back.error) == ("active", None, None)


def test_expired_allocations_are_unpublished_and_give_way(store):
    pending(store, timeline=1)
    store.activate(HOTKEY, REGKEY, CREDENTIALS)
    assert store.expire(time.time()) == []
    expired = store.expire(time.time() + 86400 + 1)
    assert [(item.hotkey, item.state) for item in expired] == [(HOTKEY, "expired")]
    assert store.allocated_hotkeys() == []
    # The miner and the name are free again.
    assert pending(store, regkey=REGKEY + "new").state == "pending"
    assert [item.regkey for item in store.allocations()] == [REGKEY + "new"]


def test_a_pending_record_released_counts_as_unpublished_since_its_claim(store):
    claimed = pending(store)
    releasing = store.mark_releasing(HOTKEY, REGKEY, "no answer")
    assert releasing.unpublished_at == claimed.created_at


def test_the_last_publication_is_kept(store):
    assert store.last_publication() is None
    store.record_publication({"ok": False, "allocated_hotkeys": [HOTKEY], "error": "down"})
    assert store.last_publication() == {"ok": False, "allocated_hotkeys": [HOTKEY], "error": "down"}
