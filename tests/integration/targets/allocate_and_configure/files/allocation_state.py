"""Print what the validator database and localnet say is allocated, as JSON, without secrets.

    allocation_state.py DB_PATH LOCALNET_CTL

nicompute_allocation: the collection's records (name, hotkey, state); allocation: the hotkeys in
the validator's table; digest: a SHA-256 of both tables' full rows, to tell any change;
allocated: the hotkeys of the miners that localnet reports allocated; miners: every miner.
"""

import hashlib
import json
import sqlite3
import subprocess
import sys


def main(db_path, ctl):
    db = sqlite3.connect(db_path)
    try:
        records = db.execute("SELECT * FROM nicompute_allocation ORDER BY hotkey").fetchall()
        columns = [c[0] for c in db.execute("SELECT * FROM nicompute_allocation LIMIT 0").description]
        allocation = db.execute("SELECT hotkey, details FROM allocation ORDER BY hotkey").fetchall()
    finally:
        db.close()
    digest = hashlib.sha256(json.dumps([records, allocation], default=str).encode()).hexdigest()
    status = json.loads(subprocess.run([ctl, "status", "--json"], check=True, capture_output=True,
                                       text=True).stdout)
    rows = [dict(zip(columns, row)) for row in records]
    print(json.dumps({
        "nicompute_allocation": [{"name": r["name"], "hotkey": r["hotkey"], "state": r["state"]} for r in rows],
        "allocation": [row[0] for row in allocation],
        "digest": digest,
        "allocated": sorted(m["hotkey"] for m in status["miners"] if m["allocated"]),
        "miners": [{"uid": m["uid"], "hotkey": m["hotkey"], "ssh_user": m["ssh_user"], "allocated": m["allocated"]}
                   for m in status["miners"]],
    }))


if __name__ == "__main__":
    main(*sys.argv[1:3])
