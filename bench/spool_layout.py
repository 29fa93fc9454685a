#!/usr/bin/env python3
"""The relay spool's SQLite layout alone, side by side: format 1 (the body
inside the (run_id, seq) WITHOUT ROWID row) against format 2 (the body in an
append-only table of its own), then format 2 at several page sizes. Batches
of --body bytes (incompressible, like an LZ4 payload) from 100 interleaved
runs, WAL, synchronous=FULL, a 16 MiB cache and the statement journal in
memory as the relay has them, a passive checkpoint every 100 commits.
Prints per batch: process CPU, wall, bytes and calls read and written
(/proc/self/io), medians of --repeat rounds.

  bench/spool_layout.py [--body BYTES] [--group N] [--repeat N] [--dir DIR]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

RUNS = 100
PRAGMAS = ("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-16384;"
           " PRAGMA temp_store=MEMORY;")
FORMAT_1 = """
    CREATE TABLE batches(run_id BLOB NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
      body BLOB NOT NULL, received INTEGER NOT NULL DEFAULT (unixepoch()),
      PRIMARY KEY(run_id, seq)) WITHOUT ROWID;
    CREATE INDEX batches_run_received ON batches(run_id, received);
    CREATE TABLE totals(id INTEGER PRIMARY KEY, bytes INTEGER NOT NULL);
    INSERT INTO totals VALUES(0, 0);
    CREATE TRIGGER batches_added AFTER INSERT ON batches
      BEGIN UPDATE totals SET bytes = bytes + length(NEW.body); END;
"""
FORMAT_2 = """
    CREATE TABLE bodies(id INTEGER PRIMARY KEY, body BLOB NOT NULL);
    CREATE TABLE batches(run_id BLOB NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
      received INTEGER NOT NULL DEFAULT (unixepoch()), len INTEGER NOT NULL,
      body_id INTEGER NOT NULL, PRIMARY KEY(run_id, seq)) WITHOUT ROWID;
    CREATE TABLE totals(id INTEGER PRIMARY KEY, bytes INTEGER NOT NULL);
    INSERT INTO totals VALUES(0, 0);
    CREATE TRIGGER batches_added AFTER INSERT ON batches
      BEGIN UPDATE totals SET bytes = bytes + NEW.len; END;
"""


def io() -> tuple[int, int, int, int]:
    d = dict(l.split(": ") for l in Path("/proc/self/io").read_text().splitlines() if l)
    return int(d["rchar"]), int(d["wchar"]), int(d["syscr"]), int(d["syscw"])


def one(path: Path, fmt: int, page: int, body_len: int, per_run: int, group: int) -> dict[str, float]:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"PRAGMA page_size={page};" + PRAGMAS + (FORMAT_1 if fmt == 1 else FORMAT_2))
    ids = [os.urandom(16) for _ in range(RUNS)]
    body = os.urandom(body_len)
    order = [(ids[r], s) for s in range(per_run) for r in range(RUNS)]
    i0, c0, w0 = io(), time.process_time(), time.perf_counter()
    for g in range(0, len(order), group):
        db.execute("BEGIN IMMEDIATE")
        for run_id, seq in order[g:g + group]:
            if fmt == 1:
                db.execute("INSERT OR IGNORE INTO batches(run_id, seq, kind, body) VALUES(?,?,2,?)",
                           (run_id, seq, body))
            else:
                body_id = db.execute("INSERT INTO bodies(body) VALUES(?)", (body,)).lastrowid
                db.execute("INSERT INTO batches(run_id, seq, kind, len, body_id) VALUES(?,?,2,?,?)",
                           (run_id, seq, body_len, body_id))
        db.execute("COMMIT")
        if (g // group) % 100 == 99:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    c1, w1, i1 = time.process_time(), time.perf_counter(), io()
    db.close()
    n = len(order)
    return {"cpu_ms": 1e3 * (c1 - c0) / n, "wall_ms": 1e3 * (w1 - w0) / n,
            "read_kib": (i1[0] - i0[0]) / n / 1024, "reads": (i1[2] - i0[2]) / n,
            "write_kib": (i1[1] - i0[1]) / n / 1024, "writes": (i1[3] - i0[3]) / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--body", type=int, default=80000, help="bytes per batch body (the relay's: ~80 KB)")
    ap.add_argument("--group", type=int, default=1, help="batches per commit (the relay at half load: ~1)")
    ap.add_argument("--per-run", type=int, default=20, help="batches per run (100 runs interleaved)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the files go (default: a temporary directory)")
    a = ap.parse_args()
    variants = [(1, 32768), (2, 32768), (2, 4096), (2, 8192), (2, 16384), (2, 65536)]
    results: dict[tuple[int, int], list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="vmpv-spool-layout-", dir=a.dir) as tmp:
        for _ in range(a.repeat):
            for fmt, page in variants:
                results[(fmt, page)].append(one(Path(tmp) / "spool.sqlite", fmt, page, a.body,
                                                a.per_run, a.group))
    print(f"{RUNS} runs x {a.per_run} batches of {a.body} bytes, {a.group} per commit, median of {a.repeat}")
    print(f"{'layout':22} {'CPU ms':>7} {'wall ms':>8} {'read KiB':>9} {'reads':>6} {'write KiB':>10} {'writes':>7}")
    for (fmt, page), rs in results.items():
        m = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"{f'format {fmt}, {page // 1024} KiB pages':22} {m['cpu_ms']:7.3f} {m['wall_ms']:8.3f} "
              f"{m['read_kib']:9.0f} {m['reads']:6.1f} {m['write_kib']:10.0f} {m['writes']:7.1f}")


if __name__ == "__main__":
    main()
