# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. SQLite store, schema-compatible with the SN27 validator's database.db: the
# reads of _store_read (which holds the schema's columns and the allocation record), and the writes.
#
# Concurrency: the validator may write the same file. Every connection has a busy
# timeout, runs in autocommit mode, and writes in short BEGIN IMMEDIATE transactions
# that are retried on "database is locked". The journal mode is never touched, neither
# for a file the validator made (it may be WAL) nor for one this store creates.
#
# Many runs share the file. A run claims a miner with one INSERT of a pending record that
# names its owner (host, pid, process start time) and a lease; every later change matches
# the allocation's own key (hotkey and public key), never the hotkey alone, and another
# run takes a record over only once its owner is gone or its lease expired.

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid as uuid_module

from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    Claimed,
    NotFound,
    StoreError,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._store_read import (
    _OWN_COLUMNS,
    BUSY_TIMEOUT_S,
    CONTAINER_STATES,
    OWN_COLUMNS_SQL,
    OWN_TABLE,
    StoreReader,
    _from_own,
    _Guard,
    _loads,
    _table_names,
    connect_reader,
)
# Part of the store's API for the client and the tests, as before the reads moved to _store_read.
from ansible_collections.neuralinternet.compute.plugins.module_utils._store_read import (  # noqa: F401 pylint: disable=unused-import
    PUBLISHED_STATES, Allocation)

# The validator's own tables, exactly as upstream creates them. Created when missing,
# never altered or dropped.
UPSTREAM_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS miner (uid INTEGER PRIMARY KEY, ss58_address TEXT UNIQUE)",
    "CREATE TABLE IF NOT EXISTS miner_details (id INTEGER PRIMARY KEY, hotkey TEXT UNIQUE, details TEXT, "
    "no_specs_count INTEGER DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS allocation (id INTEGER PRIMARY KEY, hotkey TEXT UNIQUE, details TEXT)",
    "CREATE TABLE IF NOT EXISTS blacklist (id INTEGER PRIMARY KEY, hotkey TEXT UNIQUE, details TEXT)",
    "CREATE TABLE IF NOT EXISTS stats (uid INTEGER PRIMARY KEY, hotkey TEXT NOT NULL, gpu_specs TEXT, "
    "score REAL, allocated BOOLEAN, own_score BOOLEAN, reliability_score REAL, "
    "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS wandb_runs (hotkey TEXT PRIMARY KEY, run_id TEXT NOT NULL)",
)

OWN_TABLE_SQL = "CREATE TABLE %s (%s)" % (OWN_TABLE, ", ".join("%s %s" % column for column in OWN_COLUMNS_SQL))
# What the collection last published (and whether it worked), so any later task republishes.
STATE_TABLE_SQL = "CREATE TABLE nicompute_state (key TEXT PRIMARY KEY, value TEXT)"
OWN_SCHEMA = (OWN_TABLE_SQL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1),
              STATE_TABLE_SQL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
DETAILS_KEYS = ("username", "password", "port", "version", "ip", "resource", "regkey", "ssh_key", "uuid")
# Miners before v1.8.0 send no version; it is recorded as null.
CREDENTIAL_KEYS = ("username", "password", "port")

LOCK_RETRIES = 3
DAY_S = 86400.0

_QUOTED_NAME = re.compile(r'^CREATE TABLE\s+"%s"\s*' % OWN_TABLE)


def connect(path, create=False):
    """Open path with a busy timeout for a concurrent validator; create it (0600) only when asked."""
    if not os.path.exists(path):
        if not create:
            raise NotFound("database %s does not exist; point db_path at the validator's database.db, or set "
                           "db_create=true to start a new one" % path, path=path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    connection.row_factory = sqlite3.Row
    return connection


def ensure_upstream_schema(connection):
    """Create the validator's tables that are missing; existing ones are left as they are."""
    _ensure(connection, UPSTREAM_SCHEMA)


def _outdated_own_table(connection):
    """True when the bookkeeping table exists in an older shape (columns or states)."""
    row = connection.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (OWN_TABLE,)).fetchone()
    # A table renamed by ALTER TABLE is stored with its name quoted: the same shape.
    return row is not None and _QUOTED_NAME.sub("CREATE TABLE %s " % OWN_TABLE, row[0], count=1) != OWN_TABLE_SQL


def _rebuild_own_table(connection):
    """Bring an older version's bookkeeping table to the current shape, keeping its rows.

    SQLite cannot change a CHECK constraint in place: copy the shared columns into a new table.
    """
    present = set(row[1] for row in connection.execute("PRAGMA table_info(%s)" % OWN_TABLE))
    kept = ", ".join(name for name in _OWN_COLUMNS if name in present)
    # The old table is renamed, not the new one: the new one keeps the exact SQL that later opens compare.
    connection.execute("ALTER TABLE %s RENAME TO %s_old" % (OWN_TABLE, OWN_TABLE))
    connection.execute(OWN_TABLE_SQL)
    connection.execute("INSERT INTO %s (%s) SELECT %s FROM %s_old" % (OWN_TABLE, kept, kept, OWN_TABLE))
    connection.execute("DROP TABLE %s_old" % OWN_TABLE)


def _ensure(connection, statements):
    existing = _table_names(connection)
    # Only write when something is missing: a complete, read-only file stays readable.
    missing = [sql for sql in statements if sql.split()[5] not in existing]
    rebuild = OWN_SCHEMA[0] in statements
    if not missing and not (rebuild and _outdated_own_table(connection)):
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: a concurrent run may have just done it.
        existing = _table_names(connection)
        for statement in statements:
            if statement.split()[5] not in existing:
                connection.execute(statement)
        if rebuild and _outdated_own_table(connection):
            _rebuild_own_table(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _is_locked(exc):
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class AllocationStore(StoreReader):
    """Allocations, specs, scores and the blacklist in a validator-compatible SQLite file: StoreReader's
    reads, and the writes."""

    def __init__(self, path, create=False, in_memory=False, reader=False, planning=False):
        """Open the database at path; NotFound when it is missing and create is false.

        in_memory: an empty database that stands for path (a dry run that would create it).
        reader: open read-only and create nothing, as StoreReader does; a missing table reads as empty.
        planning: a dry run - opened for writing, so require_writable() tells what the real run would
        meet, but nothing is created or written; a missing table reads as empty.
        """
        self.read_only = reader
        self._create, self._in_memory, self._planning = create, in_memory, planning
        self._checked_writable = False
        created = not in_memory and not reader and not os.path.exists(os.fspath(path))
        super().__init__(path)
        # An older version's bookkeeping table cannot be read with today's columns: migrate it now.
        if created or in_memory or (not reader and not planning and _outdated_own_table(self._connection)):
            self._ensure_schema()

    def _open(self):
        if self._in_memory:
            connection = sqlite3.connect(":memory:", isolation_level=None)
            connection.row_factory = sqlite3.Row
            return connection
        if self.read_only:
            return connect_reader(self.path)
        return connect(self.path, self._create)

    def _ensure_schema(self):
        with self._guard():
            try:
                _ensure(self._connection, UPSTREAM_SCHEMA + OWN_SCHEMA)
            except sqlite3.OperationalError as exc:
                if "readonly" not in str(exc).replace(" ", "").lower():
                    raise
                raise StoreError("database %s is read-only; nothing was changed" % self.path, path=self.path)
        self._schema_ready = True

    def require_writable(self):
        """StoreError unless the file can be written and passes PRAGMA quick_check; changes nothing.

        Called before any miner is contacted, so a grant never meets a database that cannot record it.
        """
        if self._checked_writable:
            return
        if self.read_only:
            raise StoreError("database %s is read-only; nothing was changed" % self.path, path=self.path)
        connection = self._connection
        tables = self._tables()
        probe = next((table for table in (OWN_TABLE, "allocation", "blacklist") if table in tables), None)
        with self._guard():
            try:
                connection.execute("BEGIN IMMEDIATE")
                # Writes no page (or only inside the transaction rolled back below), but SQLite
                # refuses it on a file it cannot write.
                connection.execute("DELETE FROM %s WHERE 0" % probe if probe else "CREATE TABLE nicompute_probe (x)")
            except sqlite3.OperationalError as exc:
                if "readonly" in str(exc).replace(" ", "").lower():
                    raise StoreError("database %s is read-only; nothing was changed" % self.path, path=self.path)
                raise
            finally:
                self._rollback()
        try:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            raise StoreError("database %s is damaged (PRAGMA quick_check: %s); refusing to write to it. Restore "
                             "it from a backup" % (self.path, "; ".join(problems)), path=self.path,
                             quick_check=problems)
        self._checked_writable = True

    def _write(self, work):
        """Run work(connection) in one short BEGIN IMMEDIATE transaction, retried when locked."""
        if self.read_only:
            raise StoreError("database %s is read-only" % self.path, path=self.path)
        if self._planning:
            raise StoreError("a dry run writes nothing to %s" % self.path, path=self.path)  # a bug if reached
        if not self._schema_ready:
            self._ensure_schema()
        connection = self._connection
        for attempt in range(LOCK_RETRIES):
            try:
                connection.execute("BEGIN IMMEDIATE")
                result = work(connection)
                connection.execute("COMMIT")
                return result
            except sqlite3.OperationalError as exc:
                self._rollback()
                if _is_locked(exc) and attempt + 1 < LOCK_RETRIES:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._store_error(exc)
            except sqlite3.Error as exc:
                self._rollback()
                raise self._store_error(exc)
            except BaseException:
                self._rollback()
                raise
        raise StoreError("database %s stayed locked" % self.path, path=self.path)  # pragma: no cover

    def _rollback(self):
        try:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _store_error(self, exc):
        return _Guard(self.path).error(exc)

    # -- allocations ------------------------------------------------------------

    def _own_row_for(self, connection, hotkey, regkey):
        """This allocation's bookkeeping row: the hotkey and the public key must both match."""
        row = self._own_row(connection, hotkey=hotkey)
        return row if row is not None and row["regkey"] == regkey else None

    @staticmethod
    def _upstream_row(connection, hotkey):
        return connection.execute("SELECT hotkey, details FROM allocation WHERE hotkey = ?", (hotkey,)).fetchone()

    def _upstream_row_for(self, connection, hotkey, regkey):
        row = self._upstream_row(connection, hotkey)
        if row is None or (_loads(row["details"]) or {}).get("regkey") != regkey:
            return None
        return row

    def claim(self, name, hotkey, uid, ip, regkey, ssh_key, resource, timeline, owner, lease_seconds,
              request=None, uuid=None):
        """Record the allocation about to be requested, owned by owner for lease_seconds, atomically.

        Claimed when another allocation holds the miner (the caller tries the next one);
        BadInput when the name is taken.
        """
        if not isinstance(hotkey, str) or not hotkey:
            raise BadInput("hotkey must be a non-empty string")
        if name is not None and (not isinstance(name, str) or not name):
            raise BadInput("allocation name must be a non-empty string")
        if not isinstance(regkey, str) or not regkey:
            raise BadInput("an allocation needs its public key")
        if isinstance(timeline, bool) or not isinstance(timeline, int) or timeline <= 0:
            raise BadInput("timeline must be a positive number of days, got %r" % (timeline,))
        now = time.time()
        uuid = uuid or str(uuid_module.uuid4())

        def work(connection):
            # An expired allocation no longer holds its miner or its name.
            connection.execute("DELETE FROM nicompute_allocation WHERE state = 'expired' AND (hotkey = ? OR name = ?)",
                               (hotkey, name))
            held = self._own_row(connection, hotkey=hotkey)
            if held is not None or self._upstream_row(connection, hotkey):
                holder = "allocation %r (%s)" % (held["name"], held["state"]) if held is not None else \
                    "an allocation made outside this collection"
                raise Claimed("miner %s is held by %s" % (hotkey, holder), hotkey=hotkey)
            if name is not None:
                named = self._own_row(connection, name=name)
                if named is not None:
                    raise BadInput("an allocation named %s already exists (%s on miner %s)"
                                   % (name, named["state"], named["hotkey"]), name=name)
            connection.execute(
                "INSERT INTO nicompute_allocation (hotkey, name, state, uid, ip, regkey, ssh_key, resource, "
                "timeline, created_at, expires_at, error, uuid, owner_host, owner_pid, owner_started, lease_until, "
                "request) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                (hotkey, name, uid, ip, regkey, ssh_key, resource, timeline, now, now + timeline * DAY_S, uuid,
                 owner.host, owner.pid, owner.started, now + lease_seconds,
                 None if request is None else json.dumps(request, sort_keys=True)),
            )

        self._write(work)
        return self.get(hotkey=hotkey)

    def activate(self, hotkey, regkey, credentials):
        """Write upstream allocation(hotkey, details) with the nine keys and mark active, atomically.

        NotFound when this allocation's pending record is gone (another run settled it).
        """
        if not isinstance(credentials, dict):
            raise BadInput("credentials must be a dict")
        missing = [key for key in CREDENTIAL_KEYS if key not in credentials]
        if missing:
            raise BadInput("credentials lack: %s" % ", ".join(missing), missing=missing)

        def work(connection):
            row = self._own_row_for(connection, hotkey, regkey)
            if row is None or row["state"] != "pending":
                raise NotFound("the pending record of this allocation on miner %s is gone" % hotkey, hotkey=hotkey)
            upstream = self._upstream_row(connection, hotkey)
            if upstream is not None and (_loads(upstream["details"]) or {}).get("regkey") != regkey:
                raise NotFound("miner %s was recorded for another allocation meanwhile" % hotkey, hotkey=hotkey)
            details = dict((key, credentials[key]) for key in CREDENTIAL_KEYS)
            details["version"] = credentials.get("version")
            details.update(ip=row["ip"], resource=row["resource"], regkey=row["regkey"],
                           ssh_key=row["ssh_key"], uuid=row["uuid"])
            details = dict((key, details[key]) for key in DETAILS_KEYS)
            connection.execute(
                "INSERT INTO allocation (hotkey, details) VALUES (?, ?) "
                "ON CONFLICT(hotkey) DO UPDATE SET details = excluded.details",
                (hotkey, json.dumps(details)),
            )
            now = time.time()
            connection.execute(
                "UPDATE nicompute_allocation SET state = 'active', error = NULL, expires_at = ?, lease_until = NULL "
                "WHERE hotkey = ? AND regkey = ?",
                (now + (row["timeline"] or 0) * DAY_S, hotkey, regkey),
            )

        self._write(work)
        return self.get(hotkey=hotkey)

    def mark_releasing(self, hotkey, regkey, error=None):
        """Unpublish this allocation and keep it, with its key, as releasing for a retry by any run.

        Its row leaves upstream `allocation` (what the validator and this collection publish), so the
        miner releases the box at its next W&B check even if it never answers a direct release.
        """

        def work(connection):
            now = time.time()
            own = self._own_row_for(connection, hotkey, regkey)
            upstream = self._upstream_row_for(connection, hotkey, regkey)
            if own is None and self._own_row(connection, hotkey=hotkey) is not None:
                raise NotFound("miner %s is held by another allocation" % hotkey, hotkey=hotkey)
            if own is None and upstream is None:
                raise NotFound("no allocation for miner %s with this key" % hotkey, hotkey=hotkey)
            if upstream is not None:
                connection.execute("DELETE FROM allocation WHERE hotkey = ?", (hotkey,))
            if own is not None:
                # Its lease ends now: the next run may retry the release at once.
                connection.execute(
                    "UPDATE nicompute_allocation SET state = 'releasing', error = ?, lease_until = ?, "
                    # A pending record was never published: unpublished since it was claimed.
                    "unpublished_at = COALESCE(unpublished_at, CASE WHEN state = 'pending' THEN created_at ELSE ? END) "
                    "WHERE hotkey = ? AND regkey = ?",
                    (error, now, now, hotkey, regkey))
                return
            # Made by the upstream CLI: take over its details so the regkey survives.
            details = _loads(upstream["details"]) or {}
            connection.execute(
                "INSERT INTO nicompute_allocation (hotkey, name, state, ip, regkey, ssh_key, resource, "
                "created_at, error, uuid, lease_until, unpublished_at) "
                "VALUES (?, NULL, 'releasing', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (hotkey, details.get("ip"), details.get("regkey"), details.get("ssh_key"),
                 details.get("resource"), now, error, details.get("uuid"), now, now),
            )

        self._write(work)
        return self.get(hotkey=hotkey)

    def mark_unconfirmed(self, hotkey, regkey, why):
        """The miner answered "not held": keep the allocation (still published), note since when."""
        now = time.time()
        self._write(lambda connection: connection.execute(
            "UPDATE nicompute_allocation SET state = 'unconfirmed', error = ?, "
            "unconfirmed_since = COALESCE(unconfirmed_since, ?) "
            "WHERE hotkey = ? AND regkey = ? AND state IN ('active', 'unconfirmed')", (why, now, hotkey, regkey)))
        return self.get(hotkey=hotkey)

    def confirm(self, hotkey, regkey):
        """The miner holds the key again: back to active."""
        self._write(lambda connection: connection.execute(
            "UPDATE nicompute_allocation SET state = 'active', error = NULL, unconfirmed_since = NULL "
            "WHERE hotkey = ? AND regkey = ? AND state = 'unconfirmed'", (hotkey, regkey)))
        return self.get(hotkey=hotkey)

    def set_container_state(self, hotkey, regkey, state):
        """Record what the miner's docker says of this allocation's container ('running', 'paused' or
        None for unknown), in one transaction matching hotkey and public key.

        An allocation the upstream CLI made (a row only in upstream `allocation`) gets a bookkeeping
        row (no name, active) to hold it. NotFound when no allocation has this key.
        """
        if state is not None and state not in CONTAINER_STATES:
            raise BadInput("container state must be one of %s or None, got %r" % (", ".join(CONTAINER_STATES), state))

        def work(connection):
            if self._own_row_for(connection, hotkey, regkey) is not None:
                connection.execute("UPDATE nicompute_allocation SET container = ? WHERE hotkey = ? AND regkey = ?",
                                   (state, hotkey, regkey))
                return
            upstream = self._upstream_row_for(connection, hotkey, regkey)
            if upstream is None or self._own_row(connection, hotkey=hotkey) is not None:
                raise NotFound("no allocation for miner %s with this key" % hotkey, hotkey=hotkey)
            details = _loads(upstream["details"]) or {}
            connection.execute(
                "INSERT INTO nicompute_allocation (hotkey, name, state, ip, regkey, ssh_key, resource, uuid, "
                "container) VALUES (?, NULL, 'active', ?, ?, ?, ?, ?, ?)",
                (hotkey, details.get("ip"), regkey, details.get("ssh_key"), details.get("resource"),
                 details.get("uuid"), state))

        self._write(work)
        return self.get(hotkey=hotkey)

    def set_ssh_key(self, hotkey, regkey, ssh_key):
        """Record the user key that now logs in to this allocation's box, in the bookkeeping row and in
        upstream `allocation` details, in one transaction matching hotkey and public key.

        NotFound when no allocation has this key.
        """
        if not isinstance(ssh_key, str):
            raise BadInput("ssh_key must be a string")

        def work(connection):
            own = connection.execute("UPDATE nicompute_allocation SET ssh_key = ? WHERE hotkey = ? AND regkey = ?",
                                     (ssh_key, hotkey, regkey)).rowcount
            upstream = self._upstream_row_for(connection, hotkey, regkey)
            if upstream is not None:
                details = _loads(upstream["details"])
                if details is not None:
                    details["ssh_key"] = ssh_key
                    connection.execute("UPDATE allocation SET details = ? WHERE hotkey = ?",
                                       (json.dumps(details), hotkey))
            if not own and upstream is None:
                raise NotFound("no allocation for miner %s with this key" % hotkey, hotkey=hotkey)

        self._write(work)
        return self.get(hotkey=hotkey)

    def expire(self, now=None):
        """Unpublish every allocation past its timeline and mark it expired; returns those records."""
        now = time.time() if now is None else now

        def work(connection):
            rows = connection.execute(
                "SELECT hotkey, regkey FROM nicompute_allocation WHERE state IN ('active', 'unconfirmed') "
                "AND expires_at IS NOT NULL AND expires_at <= ?", (now,)).fetchall()
            for row in rows:
                if self._upstream_row_for(connection, row["hotkey"], row["regkey"]) is not None:
                    connection.execute("DELETE FROM allocation WHERE hotkey = ?", (row["hotkey"],))
                connection.execute(
                    "UPDATE nicompute_allocation SET state = 'expired', unpublished_at = ?, lease_until = NULL "
                    "WHERE hotkey = ? AND regkey = ?", (now, row["hotkey"], row["regkey"]))
            return [row["hotkey"] for row in rows]

        return [self.get(hotkey=hotkey) for hotkey in self._write(work)]

    def take_over(self, record, owner, lease_seconds):
        """Make owner the owner of an abandoned pending or releasing record; None when it is not abandoned.

        Decided and written in one transaction, so two runs never settle the same record.
        """

        def work(connection):
            row = self._own_row_for(connection, record.hotkey, record.regkey)
            if row is None or row["state"] != record.state:
                return False
            now = time.time()
            if _from_own(row).abandoned(now) is None:
                return False
            connection.execute(
                "UPDATE nicompute_allocation SET owner_host = ?, owner_pid = ?, owner_started = ?, lease_until = ? "
                "WHERE hotkey = ? AND regkey = ?",
                (owner.host, owner.pid, owner.started, now + lease_seconds, record.hotkey, record.regkey))
            return True

        return self.get(hotkey=record.hotkey) if self._write(work) else None

    def remove(self, hotkey, regkey):
        """Delete this allocation from both tables in one transaction; False when it was not there.

        Rows of another allocation of the same miner are left alone.
        """

        def work(connection):
            own = connection.execute("DELETE FROM nicompute_allocation WHERE hotkey = ? AND regkey IS ?",
                                     (hotkey, regkey)).rowcount
            upstream = 0
            if self._upstream_row_for(connection, hotkey, regkey) is not None:
                upstream = connection.execute("DELETE FROM allocation WHERE hotkey = ?", (hotkey,)).rowcount
            return bool(own or upstream)

        return self._write(work)

    def record_publication(self, publication):
        self._write(lambda connection: connection.execute(
            "INSERT INTO nicompute_state (key, value) VALUES ('publication', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (json.dumps(publication, sort_keys=True),)))

    # -- validator data ---------------------------------------------------------

    def set_wandb_run_id(self, hotkey, run_id):
        self._write(lambda connection: connection.execute(
            "INSERT INTO wandb_runs (hotkey, run_id) VALUES (?, ?) "
            "ON CONFLICT(hotkey) DO UPDATE SET run_id = excluded.run_id", (hotkey, run_id)))

    def set_penalties(self, add=None, remove=()):
        """In one transaction: blacklist each hotkey of add ({hotkey: details dict}), replacing its details,
        and remove the hotkeys of remove. Returns the blacklisted hotkeys afterwards."""

        def work(connection):
            for hotkey, details in (add or {}).items():
                connection.execute("INSERT INTO blacklist (hotkey, details) VALUES (?, ?) "
                                   "ON CONFLICT(hotkey) DO UPDATE SET details = excluded.details",
                                   (hotkey, json.dumps(details, sort_keys=True)))
            for hotkey in remove:
                connection.execute("DELETE FROM blacklist WHERE hotkey = ?", (hotkey,))
            return set(row[0] for row in connection.execute("SELECT hotkey FROM blacklist"))

        return self._write(work)
