"""A model of a cache hit's Flight Recorder commit, to weigh indexes.

One commit = one transaction of the nine events a cache hit records (one
op_received, six gate_passed, one capability_allowed, one op_completed, one
random op id), in a SQLite file in WAL mode with synchronous=FULL, like the
recorder's. The script grows the WAL, then times 1000 commits and prints
the p50. Compare index sets one after another on the same disk:

    python3 docs/perf/hit_commit_model.py DIR ""                # no index
    python3 docs/perf/hit_commit_model.py DIR kind,op,eng,ts    # schema 3
    python3 docs/perf/hit_commit_model.py DIR pkind,op,eng,ts   # schema 4

`kind`, `op`, `eng`, `ts` index that column; `pkind` is the partial kind
index of recorder schema 4 (without gate_passed and capability_allowed).
It models only the events table and its indexes (not the claim row or the
chain head), so it shows differences between index sets, not the
recorder's own figure.
"""

import os
import sqlite3
import statistics
import sys
import time
import uuid

KINDS = ["op_received"] + ["gate_passed"] * 6 + ["capability_allowed", "op_completed"]


def main() -> None:
    directory, indexes = sys.argv[1], sys.argv[2]
    path = os.path.join(directory, "hit-commit-model.sqlite3")
    for leftover in (path, path + "-wal", path + "-shm"):
        if os.path.exists(leftover):
            os.unlink(leftover)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, kind TEXT, op TEXT,"
        " eng TEXT, ts INTEGER, payload TEXT)"
    )
    for name in filter(None, indexes.split(",")):
        if name == "pkind":
            db.execute(
                "CREATE INDEX events_by_pkind ON events(kind)"
                " WHERE kind NOT IN ('gate_passed', 'capability_allowed')"
            )
        else:
            db.execute(f"CREATE INDEX events_by_{name} ON events({name})")

    def commit() -> None:
        op = str(uuid.uuid4())
        db.execute("BEGIN")
        for kind in KINDS:
            db.execute(
                "INSERT INTO events (kind, op, eng, ts, payload) VALUES (?, ?, ?, ?, ?)",
                (kind, op, "engine.bench", time.time_ns(), "x" * 200),
            )
        db.execute("COMMIT")

    # Grow the WAL, copy it all, so that the timed commits rewrite a WAL
    # file that already has its size (as a long-running recorder's does).
    for _ in range(3000):
        commit()
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    times = []
    for _ in range(1000):
        started = time.perf_counter()
        commit()
        times.append((time.perf_counter() - started) * 1e6)
    db.close()
    for leftover in (path, path + "-wal", path + "-shm"):
        if os.path.exists(leftover):
            os.unlink(leftover)
    print(f"indexes {indexes or '(none)'}: commit p50 {statistics.median(times):.0f} us")


if __name__ == "__main__":
    main()
