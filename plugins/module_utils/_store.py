# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# SQLite store, schema-compatible with the SN27 validator's database.db.

from __future__ import annotations

import os
import sqlite3

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
    "created_at TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS wandb_runs (hotkey TEXT PRIMARY KEY, run_id TEXT NOT NULL)",
)

BUSY_TIMEOUT_S = 30.0


def connect(path):
    """Open path (creating it 0600 when missing) with a busy timeout for a concurrent validator."""
    if not os.path.exists(path):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    connection.row_factory = sqlite3.Row
    return connection


def ensure_upstream_schema(connection):
    """Create the validator's tables that are missing; existing ones are left as they are."""
    for statement in UPSTREAM_SCHEMA:
        connection.execute(statement)
