# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. Reading the validator's database.db, and nothing else: what the listings
# need. _store adds the writes (schema, claims, state changes, penalties) on top. Apart because
# Ansible compiles every module_utils a task imports at every run (twice, from the AnsiballZ zip),
# and a listing needs a third of the store.

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
from dataclasses import dataclass, field

from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    NotFound,
    StoreError,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner

# This collection's bookkeeping; upstream readers never look at it.
# pending: claimed, the request is out (never published). active: granted and published.
# unconfirmed: the miner answered "not held" (which proves little: a paused container or a
# docker error reads so too); still published until the grace period ends. releasing:
# unpublished, kept with its key until the miner confirms or one of its W&B sync periods has
# passed. expired: past its timeline, unpublished; kept for listings until its name is reused.
# container: what the miner's docker last said of the box through nicompute_container -
# 'running' or 'paused'; NULL while unknown. A paused container answers "not held".
OWN_TABLE = "nicompute_allocation"
CONTAINER_STATES = ("running", "paused")
STATES = ("pending", "active", "unconfirmed", "releasing", "expired")
PUBLISHED_STATES = ("active", "unconfirmed")
OWN_COLUMNS_SQL = (
    ("hotkey", "TEXT PRIMARY KEY"), ("name", "TEXT UNIQUE"),
    ("state", "TEXT NOT NULL CHECK(state IN (%s))" % ",".join("'%s'" % state for state in STATES)),
    ("uid", "INTEGER"), ("ip", "TEXT"), ("regkey", "TEXT"), ("ssh_key", "TEXT"), ("resource", "TEXT"),
    ("timeline", "INTEGER"), ("created_at", "REAL"), ("expires_at", "REAL"), ("error", "TEXT"), ("uuid", "TEXT"),
    ("owner_host", "TEXT"), ("owner_pid", "INTEGER"), ("owner_started", "REAL"), ("lease_until", "REAL"),
    ("request", "TEXT"), ("unconfirmed_since", "REAL"), ("unpublished_at", "REAL"),
    ("container", "TEXT CHECK(container IN (%s))" % ",".join("'%s'" % state for state in CONTAINER_STATES)),
)

BUSY_TIMEOUT_S = 30.0

_OWN_COLUMNS = tuple(name for name, _kind in OWN_COLUMNS_SQL)
_RECORD_COLUMNS = _OWN_COLUMNS[:13] + ("unconfirmed_since", "unpublished_at", "container")


def connect_reader(path):
    """Open an existing database read-only (nothing is created or written), with the busy timeout."""
    if not os.path.exists(path):
        raise NotFound("database %s does not exist; point db_path at the validator's database.db" % path, path=path)
    uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro"
    connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    connection.row_factory = sqlite3.Row
    return connection


def _table_names(connection):
    return set(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def _loads(text):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Allocation:
    """One allocation, merged from upstream `allocation` and this collection's bookkeeping.

    details is the parsed upstream details dict (None while pending, or when the row is
    not valid JSON); name is None for an allocation made by the upstream CLI.
    """

    hotkey: str
    state: str
    name: str | None = None
    uid: int | None = None
    ip: str | None = None
    regkey: str | None = None
    ssh_key: str | None = None
    resource: str | None = None
    timeline: int | None = None
    created_at: float | None = None
    expires_at: float | None = None
    error: str | None = None
    uuid: str | None = None
    unconfirmed_since: float | None = None
    unpublished_at: float | None = None
    container: str | None = None
    owner: Owner | None = None
    lease_until: float | None = None
    request: dict | None = None
    details: dict | None = field(default=None, repr=False)
    in_upstream: bool = False

    def abandoned(self, now):
        """Why another run may settle this pending or releasing record, or None while its run owns it."""
        if self.state not in ("pending", "releasing"):
            return None
        if self.lease_until is None or self.lease_until <= now:
            return "its lease expired" if self.lease_until is not None else "it has no lease"
        if self.owner is None:
            return "it has no owner"
        if self.owner.alive() is False:
            return "its run (%s) is gone" % self.owner.describe()
        return None


class StoreReader:
    """Allocations, specs, scores and the blacklist of a validator database, opened read-only: nothing
    is created or written, and a missing table reads as empty."""

    read_only = True

    def __init__(self, path):
        """Open the database at path; NotFound when it is missing, StoreError when it is no database."""
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise StoreError("database %s is a directory" % self.path, path=self.path)
        try:
            self._connection = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError("cannot open database %s: %s" % (self.path, exc), path=self.path)
        # The tables are made before the first write (at once for a new file): a task that changes
        # nothing leaves the file as it was, and until then a missing table reads as empty.
        self._schema_ready = False
        with self._guard():
            # Fails here, with the file's name, when it is not a database.
            self._connection.execute("SELECT count(*) FROM sqlite_master").fetchone()

    # -- plumbing ---------------------------------------------------------------

    def _open(self):
        return connect_reader(self.path)

    def close(self):
        self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _guard(self):
        return _Guard(self.path)

    def _query(self, sql, parameters=()):
        with self._guard():
            try:
                return self._connection.execute(sql, parameters).fetchall()
            except sqlite3.OperationalError as exc:
                # Tables are made at the first write: one not made yet holds nothing.
                if not self._schema_ready and "no such table" in str(exc):
                    return []
                raise

    def _has_own_table(self):
        return OWN_TABLE in self._tables()

    def _tables(self):
        with self._guard():
            return _table_names(self._connection)

    # -- allocations ------------------------------------------------------------

    def _own_row(self, connection, hotkey=None, name=None):
        column, value = ("hotkey", hotkey) if hotkey is not None else ("name", name)
        return connection.execute(
            "SELECT %s FROM nicompute_allocation WHERE %s = ?" % (", ".join(_OWN_COLUMNS), column), (value,)
        ).fetchone()

    def get(self, hotkey=None, name=None):
        """The allocation by hotkey or by name, or None."""
        if (hotkey is None) == (name is None):
            raise BadInput("give exactly one of hotkey or name")
        own = None
        if self._has_own_table():
            with self._guard():
                own = self._own_row(self._connection, hotkey=hotkey, name=name)
        if own is not None:
            hotkey = own["hotkey"]
        elif name is not None:
            return None
        rows = self._query("SELECT hotkey, details FROM allocation WHERE hotkey = ?", (hotkey,))
        upstream = rows[0] if rows else None
        if own is None and upstream is None:
            return None
        return _merge(own, upstream)

    def allocations(self, state=None):
        """Every allocation sorted by hotkey, including those made by the upstream CLI (active)."""
        if state is not None and state not in STATES:
            raise BadInput("state must be one of %s, got %r" % (", ".join(STATES), state))
        own = {}
        if self._has_own_table():
            for row in self._query("SELECT %s FROM nicompute_allocation" % ", ".join(_OWN_COLUMNS)):
                own[row["hotkey"]] = row
        upstream = dict((row["hotkey"], row) for row in self._query("SELECT hotkey, details FROM allocation"))
        result = [_merge(own.get(hotkey), upstream.get(hotkey)) for hotkey in sorted(set(own) | set(upstream))]
        return [item for item in result if state is None or item.state == state]

    def pending(self):
        return self.allocations(state="pending")

    def allocated_hotkeys(self):
        """Sorted hotkeys in upstream `allocation` (what the validator publishes to W&B)."""
        return sorted(row[0] for row in self._query("SELECT hotkey FROM allocation"))

    # -- what was published -------------------------------------------------------

    def last_publication(self):
        """The last publication this collection attempted, as recorded, or None."""
        rows = self._query("SELECT value FROM nicompute_state WHERE key = 'publication'") \
            if "nicompute_state" in self._tables() else []
        return _loads(rows[0][0]) if rows else None

    # -- validator data ---------------------------------------------------------

    def wandb_run_id(self, hotkey):
        """The W&B run id recorded for hotkey in upstream `wandb_runs`, or None."""
        rows = self._query("SELECT run_id FROM wandb_runs WHERE hotkey = ?", (hotkey,))
        return rows[0][0] if rows else None

    def miner_specs(self):
        """{hotkey: raw miner_details.details text} (parse with _specs.parse_specs)."""
        return dict((row["hotkey"], row["details"]) for row in self._query("SELECT hotkey, details FROM miner_details"))

    def scores(self):
        """{hotkey: proof-of-GPU score} from stats; NULL scores are skipped."""
        rows = self._query("SELECT hotkey, score FROM stats WHERE score IS NOT NULL ORDER BY uid")
        return dict((row["hotkey"], float(row["score"])) for row in rows)

    def penalized(self):
        return set(row[0] for row in self._query("SELECT hotkey FROM blacklist"))

    def penalties(self):
        """{hotkey: parsed details dict, or {} when the row has none or not JSON} of the blacklist."""
        return dict((row["hotkey"], _loads(row["details"]) or {})
                    for row in self._query("SELECT hotkey, details FROM blacklist ORDER BY hotkey"))


def _from_own(own, details=None, in_upstream=False):
    values = dict((column, own[column]) for column in _RECORD_COLUMNS)
    owner = Owner(own["owner_host"], own["owner_pid"], own["owner_started"]) if own["owner_pid"] is not None else None
    return Allocation(owner=owner, lease_until=own["lease_until"], request=_loads(own["request"]), details=details,
                      in_upstream=in_upstream, **values)


def _merge(own, upstream):
    details = _loads(upstream["details"]) if upstream is not None else None
    if own is None:
        details_or_empty = details or {}
        return Allocation(hotkey=upstream["hotkey"], state="active", ip=details_or_empty.get("ip"),
                          regkey=details_or_empty.get("regkey"), ssh_key=details_or_empty.get("ssh_key"),
                          resource=details_or_empty.get("resource"), uuid=details_or_empty.get("uuid"),
                          details=details, in_upstream=True)
    return _from_own(own, details, upstream is not None)


class _Guard:
    """Turns sqlite3 errors into StoreError naming the file."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc is not None and isinstance(exc, sqlite3.Error):
            raise self.error(exc) from exc
        return False

    def error(self, exc):
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
            return StoreError("%s is not an SQLite database" % self.path, path=self.path)
        if "unable to open" in text:
            return StoreError("cannot open database %s: %s" % (self.path, text), path=self.path)
        return StoreError("database %s: %s" % (self.path, text), path=self.path)
