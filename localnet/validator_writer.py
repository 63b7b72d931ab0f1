"""A stand-in for the validator process writing its database while clients use it.

The SN27 validator (neuralinternet/compute-subnet v1.8.x) keeps one `sqlite3.connect("database.db")`
for its life: Python's default isolation level (the module opens a deferred transaction
implicitly before the first INSERT/UPDATE/DELETE), the default 5 s busy timeout, no journal
mode change. Two of its periodic jobs rewrite the tables a client reads to choose a miner:

- the hardware query stores each miner's specs: for every hotkey it reads the current row,
  then `INSERT INTO miner_details (id, hotkey, details, no_specs_count) VALUES (?, ?, ?, 0)
  ON CONFLICT(hotkey) DO UPDATE SET details = excluded.details, no_specs_count = 0`; one
  commit after all miners, a rollback (logged, not raised) on any error;
- the scoring round stores proof-of-GPU results: for every uid `INSERT INTO stats (...)
  ON CONFLICT(uid) DO UPDATE SET ... created_at = CURRENT_TIMESTAMP`; one commit after all
  uids, a rollback on any error.

This writer does the same on the same kind of connection, in a loop, with the values already
in the database (read once at start), so which miners match a requirement and how they rank
never changes; only the validator's write locks come and go. It counts the write transactions
it committed and those that failed (upstream would have logged and dropped them) and reports
them as JSON: rewritten after every transaction (so a killed writer still leaves its figures)
and printed when it stops (SIGTERM, SIGINT or --duration).
"""

import json
import os
import signal
import sqlite3
import sys
import threading
import time

from localnet.layout import write_json

# What the upstream validator's jobs write per round, in this order.
JOBS = ("miner_details", "stats")
MAX_ERRORS_KEPT = 20


class Snapshot:
    """The validator's rows as they are now; the writer rewrites exactly these values."""

    def __init__(self, miner_details, stats):
        self.miner_details = miner_details  # [(id, hotkey, details)]
        self.stats = stats  # [(uid, hotkey, gpu_specs, score, allocated, own_score, reliability_score)]

    @classmethod
    def read(cls, connection):
        miner_details = connection.execute("SELECT id, hotkey, details FROM miner_details ORDER BY id").fetchall()
        stats = connection.execute("SELECT uid, hotkey, gpu_specs, score, allocated, own_score, reliability_score "
                                   "FROM stats ORDER BY uid").fetchall()
        return cls(miner_details, stats)


def write_miner_details(connection, snapshot):
    """The hardware query's update: every miner's specs, one transaction, one commit."""
    cursor = connection.cursor()
    try:
        for row_id, hotkey, details in snapshot.miner_details:
            # Upstream reads the current row before each upsert (for its debug output).
            cursor.execute("SELECT * FROM miner_details WHERE hotkey = ?", (hotkey,)).fetchone()
            cursor.execute("INSERT INTO miner_details (id, hotkey, details, no_specs_count) VALUES (?, ?, ?, 0) "
                           "ON CONFLICT(hotkey) DO UPDATE SET details = excluded.details, no_specs_count = 0",
                           (row_id, hotkey, details))
        connection.commit()
    finally:
        cursor.close()


def write_stats(connection, snapshot):
    """The scoring round's update: every uid's stats row, one transaction, one commit."""
    cursor = connection.cursor()
    try:
        for row in snapshot.stats:
            cursor.execute("INSERT INTO stats (uid, hotkey, gpu_specs, score, allocated, own_score, reliability_score) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(uid) DO UPDATE SET hotkey = excluded.hotkey, "
                           "gpu_specs = excluded.gpu_specs, score = excluded.score, allocated = excluded.allocated, "
                           "own_score = excluded.own_score, reliability_score = excluded.reliability_score, "
                           "created_at = CURRENT_TIMESTAMP", tuple(row))
        connection.commit()
    finally:
        cursor.close()


WRITERS = {"miner_details": write_miner_details, "stats": write_stats}


class Report:
    def __init__(self, db_path, interval, path=None):
        self.path = path
        self.document = {
            "db_path": db_path,
            "interval_s": interval,
            "pid": os.getpid(),
            "started_at": time.time(),
            "stopped_at": None,
            "running": True,
            "rounds": 0,
            "committed": 0,
            "failed": 0,
            "by_table": dict((job, {"committed": 0, "failed": 0}) for job in JOBS),
            "max_transaction_s": 0.0,
            "rows": {},
            "errors": [],
        }

    def transaction(self, job, elapsed, error=None):
        key = "failed" if error is not None else "committed"
        self.document[key] += 1
        self.document["by_table"][job][key] += 1
        self.document["max_transaction_s"] = round(max(self.document["max_transaction_s"], elapsed), 4)
        if error is not None and len(self.document["errors"]) < MAX_ERRORS_KEPT:
            self.document["errors"].append({"table": job, "at": time.time(), "error": "%s: %s" % (
                type(error).__name__, error)})
        self.save()

    def save(self):
        if self.path:
            write_json(self.path, self.document)

    def summary(self):
        d = self.document
        return ("validator writer: %d write transactions committed, %d failed in %d rounds over %.1fs "
                "(longest %.3fs)%s" % (d["committed"], d["failed"], d["rounds"],
                                       (d["stopped_at"] or time.time()) - d["started_at"], d["max_transaction_s"],
                                       "; first error: %s" % d["errors"][0]["error"] if d["errors"] else ""))


def run(db_path, interval=0.5, duration=None, report_path=None, stop=None):
    """Rewrite miner_details and stats every `interval` s until `stop` is set or `duration` ran out.

    Returns the report document. The connection is opened like the validator's: default
    isolation level and busy timeout.
    """
    if not os.path.isfile(db_path):
        raise FileNotFoundError("no validator database at %s" % db_path)
    stop = stop or threading.Event()
    report = Report(db_path, interval, report_path)
    connection = sqlite3.connect(db_path, check_same_thread=False)
    try:
        snapshot = Snapshot.read(connection)
        report.document["rows"] = {"miner_details": len(snapshot.miner_details), "stats": len(snapshot.stats)}
        report.save()
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            for job in JOBS:
                started = time.monotonic()
                try:
                    WRITERS[job](connection, snapshot)
                except sqlite3.Error as error:
                    # Upstream rolls back, logs and carries on with its loop.
                    connection.rollback()
                    report.transaction(job, time.monotonic() - started, error)
                else:
                    report.transaction(job, time.monotonic() - started)
            report.document["rounds"] += 1
            wait = interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
            stop.wait(wait)
    finally:
        connection.close()
        report.document.update(running=False, stopped_at=time.time())
        report.save()
    return report.document


def main(db_path, interval=0.5, duration=None, report_path=None):
    """Run until SIGTERM/SIGINT or the duration; print the summary. Exit status 1 when a write failed."""
    stop = threading.Event()

    def request_stop(_signum, _frame):
        stop.set()

    previous = dict((sig, signal.signal(sig, request_stop)) for sig in (signal.SIGTERM, signal.SIGINT))
    try:
        print("validator writer: rewriting miner_details and stats in %s every %gs%s" % (
            db_path, interval, "" if duration is None else " for %gs" % duration), flush=True)
        document = run(db_path, interval, duration, report_path, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    report = Report(db_path, interval)
    report.document = document
    print(report.summary(), flush=True)
    print(json.dumps(dict((key, document[key]) for key in ("committed", "failed", "rounds", "by_table",
                                                           "max_transaction_s"))), flush=True)
    sys.stdout.flush()
    return 1 if document["failed"] else 0
