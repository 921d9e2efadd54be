#!/usr/bin/env python3
"""The C-library anchor of the SQLite figures (`bench`'s README section):
what SQLite itself sustains on this disk, through Python's sqlite3 module
(the C library with a thin binding), with the settings Hydra uses (WAL,
synchronous = NORMAL).

- single-row commits/s: one INSERT per transaction;
- fenced step writes/s: Hydra's step write without Hydra: an
  INSERT ... SELECT ... WHERE EXISTS (run row with the caller's token,
  running, in the namespace) into a table with a unique (run, step) index,
  plus the run's update under the same token, 64 runs per transaction.

Usage: python3 scripts/sqlite_anchor.py [DIR] (default: a temporary directory).
"""
import os
import sqlite3
import sys
import tempfile
import time
import uuid

SECONDS = 3.0


def fresh(path):
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    return c


def single_commits(path):
    c = fresh(path)
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    n, t0 = 0, time.time()
    while time.time() - t0 < SECONDS:
        c.execute("BEGIN")
        c.execute("INSERT INTO t (v) VALUES (?)", (b"x" * 32,))
        c.execute("COMMIT")
        n += 1
    return n / (time.time() - t0)


def fenced_step_writes(path, runs=64):
    c = fresh(path)
    c.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, token INTEGER, status TEXT, ns TEXT, "
              "open_position INTEGER, updated_at INTEGER)")
    c.execute("CREATE TABLE steps (id INTEGER PRIMARY KEY, execution_id TEXT, step_id TEXT, position INTEGER, "
              "status TEXT, output BLOB, token INTEGER, UNIQUE (execution_id, step_id))")
    ids = [str(uuid.uuid4()) for _ in range(runs)]
    c.execute("BEGIN")
    c.executemany("INSERT INTO runs VALUES (?, 1, 'running', 'ns', 0, 0)", [(r,) for r in ids])
    c.execute("COMMIT")
    insert = ("INSERT INTO steps (execution_id, step_id, position, status, output, token) "
              "SELECT ?, ?, ?, 'completed', ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND token = ? "
              "AND status = 'running' AND ns || '' = 'ns')")
    update = "UPDATE runs SET open_position = ?, updated_at = ? WHERE id = ? AND token = ?"
    n, pos, t0 = 0, 0, time.time()
    while time.time() - t0 < SECONDS:
        c.execute("BEGIN IMMEDIATE")
        for r in ids:
            c.execute(insert, (r, "s%d" % pos, pos, b"\x00", 1, r, 1))
            c.execute(update, (pos + 1, pos, r, 1))
        c.execute("COMMIT")
        pos += 1
        n += runs
    return n / (time.time() - t0)


def main():
    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as d:
        path = os.path.join(d, "anchor.db")
        print(f"single-row commits/s: {single_commits(path):,.0f}")
        print(f"fenced step writes/s, 64 per transaction: {fenced_step_writes(path):,.0f}")


if __name__ == "__main__":
    main()
