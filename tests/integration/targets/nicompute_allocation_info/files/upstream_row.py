"""Insert (or delete) an allocation the way the upstream Registration CLI records one: a row in
`allocation` only. Usage: upstream_row.py DB add|remove HOTKEY"""
import json
import sqlite3
import sys

db, action, hotkey = sys.argv[1:4]
connection = sqlite3.connect(db, timeout=30)
with connection:
    if action == "add":
        details = {"username": "root", "password": "upstream-pw", "port": 4444, "version": 183, "ip": "127.0.0.99",
                   "resource": "nvidia h200", "regkey": "-----BEGIN PUBLIC KEY-----\nupstream\n-----END PUBLIC KEY-----\n",
                   "ssh_key": "", "uuid": "u-1"}
        connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", (hotkey, json.dumps(details)))
    else:
        connection.execute("DELETE FROM allocation WHERE hotkey = ?", (hotkey,))
