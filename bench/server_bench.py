#!/usr/bin/env python3
"""vmpv-server benchmark: ingest, first (cold) and repeated (warm) queries of a
big run, and RSS under the query cache's bound. Prints figures; not a test.

  1. ingest: POST /api/v1/upload of a generated 1M-sample profile into a fresh
     server (SQLite; PostgreSQL too if a throwaway cluster can be started,
     as tests/harness.py's PgCluster does), client wall time and the
     server's own "stored in" time (wall and CPU of its worker thread);
     with --compare DIR, the same for the server of another build, the
     rounds interleaved;
  2. queries of a stored 10M-sample run: for each query, the first one after
     a server restart (cold: the run is not in memory), in three states:
       summary  - its summary file DATA/rundata/ID.rd exists and is in the
                  page cache (what a restart normally finds),
       evicted  - the same file dropped from the page cache first
                  (posix_fadvise DONTNEED: as after a reboot),
       store    - no summary file: the run is read from the store (the
                  server before summary files did this on every cold query);
     then the same query repeated (warm), median;
  3. RSS: a server with VMPV_QUERY_CACHE_MB (default 40) and several 1M-sample
     runs, each queried in turn, round-robin; VmRSS after every query, VmHWM.
Everything is repeated --repeat times; medians are printed with the load
average, since the machine is usually shared.

  bench/server_bench.py [--build DIR] [--compare DIR] [--repeat N] [--quick]
                        [--no-pg] [--cache-mb MB] [--rss-runs N]
Generated profiles are cached in $VMPV_BENCH_CACHE (default /tmp/vmpv-bench-cache).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

ROOT = C.ROOT


# ---- a server ----------------------------------------------------------------

class Server:
    def __init__(self, build: Path, data: Path, workdir: Path, db: str = "",
                 env: Optional[Dict[str, str]] = None) -> None:
        self.build, self.data, self.workdir, self.db = build, data, workdir, db
        self.env = dict(os.environ, **(env or {}))
        self.proc: Optional[subprocess.Popen] = None
        self.host, self.port = "", 0
        self.err = workdir / "server.stderr"

    def start(self) -> "Server":
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [str(self.build / "server" / "vmpv-server"), "--listen", "127.0.0.1:0",
                "--data", str(self.data), "--web", str(ROOT / "web" / "dist")]
        if self.db:
            args += ["--db", self.db]
        with open(self.err, "a") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True,
                                         cwd=self.workdir, env=self.env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if " listening on " in line or not line:
                break
        if " listening on " not in line:
            self.stop()
            raise C.BenchError(f"vmpv-server did not start: {self.log()[-2000:]}")
        addr = line.split(" listening on ", 1)[1].strip().split("//")[-1]
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port.strip("/"))
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.err.read_text(errors="replace")
        except OSError:
            return ""

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                timeout: float = 600) -> Tuple[int, bytes, float]:
        """One request on a new connection: status, body, seconds."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            t0 = time.perf_counter()
            conn.request(method, path, body=body)
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t0
        finally:
            conn.close()
        return r.status, data, dt

    def get_json(self, path: str) -> dict:
        status, data, _ = self.request("GET", path)
        if status != 200:
            raise C.BenchError(f"GET {path}: {status} {data[:300]!r}")
        return json.loads(data)

    def upload(self, path: Path, project: str) -> Tuple[str, float]:
        data = path.read_bytes()
        status, body, dt = self.request("POST", f"/api/v1/upload?project={project}", data)
        if status != 201:
            raise C.BenchError(f"upload of {path}: {status} {body[:300]!r}")
        return json.loads(body)["id"], dt

    def wait_log(self, pattern: str, after: int = 0, timeout: float = 300) -> re.Match:
        """The first line matching pattern in the log past offset after."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.log()[after:])
            if m:
                return m
            time.sleep(0.05)
        raise C.BenchError(f"no log line {pattern!r}: {self.log()[-2000:]}")

    def rss_kb(self) -> Dict[str, int]:
        assert self.proc is not None
        return C.proc_status_kb(self.proc.pid, ("VmRSS", "VmHWM"))


STORED = r"upload (\w+): [^\n]*"
STORED_MS = re.compile(r"stored in (\d+) ms \((\d+) ms CPU\)")  # servers from 4b2bc8d on
WARMED = r"run {id}: .* read in"


# ---- PostgreSQL ---------------------------------------------------------------

class Pg:
    """A throwaway cluster (initdb, pg_ctl), durable settings (fsync on)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if os.environ.get("VMPV_PG_BIN"):
            found = [Path(os.environ["VMPV_PG_BIN"]) / "initdb"]
        if not found or not found[-1].exists():
            raise C.BenchError("PostgreSQL is not installed")
        self.bin = found[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="vmpv-bench-pg-"))
        self.as_ = []
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_ = ["runuser", "-u", "postgres", "--"]
        self.port = C.free_port()
        self.n = 0

    def run(self, *cmd: str) -> None:
        r = subprocess.run([*self.as_, *cmd], capture_output=True, text=True, cwd=self.dir,
                           timeout=120)
        if r.returncode:
            raise C.BenchError(f"{cmd[0]}: {r.stdout}{r.stderr}")

    def start(self) -> "Pg":
        self.run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                 "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        opts = (f"-c port={self.port} -c listen_addresses=127.0.0.1"
                f" -c unix_socket_directories={self.dir} -c max_connections=100")
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                 str(self.dir / "log"), "-o", opts, "-w", "-t", "60", "start")
        return self

    def new_db(self) -> str:
        self.n += 1
        name = f"bench_{self.n}"
        r = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p",
                            str(self.port), "-U", "postgres", "-c", f"CREATE DATABASE {name}"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise C.BenchError(f"CREATE DATABASE: {r.stderr}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self.run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                     "-w", "stop")
        except C.BenchError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- profiles -----------------------------------------------------------------

def profile(samples: int, depth: int) -> Path:
    cache = Path(os.environ.get("VMPV_BENCH_CACHE", "/tmp/vmpv-bench-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"synthetic-{samples}-d{depth}.prof"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_profile.py"), str(tmp),
                        "--samples", str(samples), "--depth", str(depth)], check=True)
        tmp.rename(path)
    return path


def evict(path: Path) -> None:
    """Drops one file's pages from the page cache (as after a reboot)."""
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def ms(x: float) -> str:
    return f"{x * 1000:.1f}" if x == x else "-"


def med_ms(xs: List[float]) -> str:
    return ms(C.median(xs)) if xs else "-"


# ---- 1. ingest ----------------------------------------------------------------

def bench_ingest(builds: List[Tuple[str, Path]], prof: Path, repeat: int, pg: Optional[Pg],
                 tmp: Path) -> None:
    stores = ["sqlite"] + (["postgresql"] if pg else [])
    res: Dict[Tuple[str, str], Dict[str, List[float]]] = {}
    for r in range(repeat):
        for store in stores:
            for name, build in builds:
                work = tmp / f"ingest-{name}-{store}-{r}"
                db = pg.new_db() if store == "postgresql" and pg else ""
                s = Server(build, work / "data", work, db=db).start()
                try:
                    before = len(s.log())
                    rid, wall = s.upload(prof, "ingest")
                    m = s.wait_log(STORED, before, timeout=60)
                    # Let the cache warm-up after the upload finish before
                    # the next round, so rounds do not overlap.
                    s.wait_log(WARMED.format(id=rid), before, timeout=600)
                finally:
                    s.stop()
                shutil.rmtree(work, ignore_errors=True)
                d = res.setdefault((name, store), {"wall": [], "srv": [], "cpu": []})
                d["wall"].append(wall)
                t = STORED_MS.search(m.group(0))
                if t:
                    d["srv"].append(int(t.group(1)) / 1000)
                    d["cpu"].append(int(t.group(2)) / 1000)
                print(f"  ingest {name} {store} round {r + 1}: client {ms(wall)} ms, server "
                      f"{t.group(1) + ' ms (' + t.group(2) + ' ms CPU)' if t else '(not logged)'},"
                      f" load {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for (name, store), d in res.items():
        rows.append([name, store, med_ms(d["wall"]), med_ms(d["srv"]), med_ms(d["cpu"]),
                     " ".join(ms(x) for x in d["wall"])])
    print(f"\nIngest of a {prof.name} (POST /api/v1/upload), medians in ms:")
    print(C.table(["build", "store", "client wall", "server wall", "server CPU", "client runs"],
                  rows))
    if len(builds) == 2:
        for store in stores:
            a, b = res.get((builds[0][0], store)), res.get((builds[1][0], store))
            if a and b:
                print(f"  {store}: client wall {builds[0][0]} / {builds[1][0]} = "
                      f"{C.median(a['wall']) / C.median(b['wall']):.2f}")


# ---- 2. queries ---------------------------------------------------------------

def count(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def bench_queries(build: Path, big: Path, small: Path, repeat: int, warm_n: int,
                  tmp: Path, store_reps: int, big_n: int, small_n: int) -> None:
    work = tmp / "queries"
    s = Server(build, work / "data", work).start()
    try:
        print(f"uploading the {count(big_n)}-sample run ...", flush=True)
        before = len(s.log())
        rid, wall = s.upload(big, "big")
        m = s.wait_log(STORED, before, timeout=60)
        s.wait_log(WARMED.format(id=rid), before, timeout=900)
        print(f"  {count(big_n)} ingest: client {wall:.1f} s; {m.group(0)}")
        before = len(s.log())
        rid2, _ = s.upload(small, "small")
        s.wait_log(WARMED.format(id=rid2), before, timeout=600)
        run = s.get_json(f"/api/runs/{rid}")
        t_end = run["t_end_s"]
        w0, w1 = 0.45 * t_end, 0.55 * t_end  # a window of 10% of the samples
        n0, n1 = 0.5 * t_end, 0.5 * t_end + 10.0  # a narrow one: 10 s
        base = f"/api/runs/{rid}"
        queries = [
            ("/memory whole (800 buckets)", f"{base}/memory"),
            ("/memory 10% window", f"{base}/memory?from={w0:.3f}&to={w1:.3f}"),
            ("/memory 10 s window", f"{base}/memory?from={n0:.3f}&to={n1:.3f}"),
            ("/memory 5000 buckets", f"{base}/memory?buckets=5000"),
            ("/tree whole", f"{base}/tree"),
            ("/tree 10% window", f"{base}/tree?from={w0:.3f}&to={w1:.3f}"),
            ("/functions whole", f"{base}/functions"),
            ("/growth whole", f"{base}/growth"),
            (f"/api/diff {count(big_n)} vs {count(small_n)}", f"/api/diff?a={rid}&b={rid2}"),
        ]
        summaries = [work / "data" / "rundata" / f"{x}.rd" for x in (rid, rid2)]
        for f in summaries:
            if not f.exists():
                raise C.BenchError(f"no summary file {f}: is this a server with summary files?")
        keep = [f.with_suffix(".keep") for f in summaries]
        for f, k in zip(summaries, keep):
            shutil.copyfile(f, k)
        cold: Dict[Tuple[str, str], List[float]] = {}
        warm: Dict[str, List[float]] = {}
        loads: List[float] = []
        for r in range(repeat):
            for state in ("summary", "evicted", "store"):
                if state == "store" and r >= store_reps:
                    continue
                for label, path in queries:
                    for f, k in zip(summaries, keep):
                        if state == "store":
                            f.unlink(missing_ok=True)
                        elif not f.exists():
                            shutil.copyfile(k, f)
                    s.stop()
                    if state == "evicted":
                        for f in summaries:
                            evict(f)
                    s.start()
                    status, body, dt = s.request("GET", path)
                    if status != 200:
                        raise C.BenchError(f"GET {path}: {status} {body[:200]!r}")
                    cold.setdefault((label, state), []).append(dt)
                    if state == "summary":
                        for _ in range(warm_n):
                            warm.setdefault(label, []).append(s.request("GET", path)[2])
            loads.append(os.getloadavg()[0])
            print(f"  queries round {r + 1} done, load {loads[-1]:.2f}", flush=True)
        # After "store" rounds the server wrote the files again: leave them.
        rows = []
        for label, _ in queries:
            c = cold.get((label, "summary"), [])
            e = cold.get((label, "evicted"), [])
            st = cold.get((label, "store"), [])
            w = warm.get(label, [])
            ratio = (f"{C.median(st) / C.median(c):.0f}x" if st and c and C.median(c) > 0
                     else "-")
            rows.append([label, med_ms(c), med_ms(e), med_ms(st), ratio, med_ms(w)])
        print(f"\nQueries of a {count(big_n)}-sample run, medians in ms (client wall, new connection each);"
              f" load average during: {min(loads):.2f}-{max(loads):.2f}:")
        print(C.table(["query", "cold: summary", "cold: evicted", "cold: store",
                       "store/summary", "warm"], rows))
        sizes = sum(k.stat().st_size for k in keep[:1])
        print(f"  summary file of the {count(big_n)} run: {sizes / 1e6:.0f} MB; store "
              f"{sum(p.stat().st_size for p in (work / 'data').glob('vmpv.sqlite*')) / 1e6:.0f} MB")
        for k in keep:
            k.unlink(missing_ok=True)
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)


# ---- 3. RSS -------------------------------------------------------------------

def bench_rss(build: Path, small: Path, nruns: int, cache_mb: int, rounds: int,
              tmp: Path, small_n: int) -> None:
    work = tmp / "rss"
    s = Server(build, work / "data", work, env={"VMPV_QUERY_CACHE_MB": str(cache_mb)}).start()
    try:
        ids = []
        for i in range(nruns):
            before = len(s.log())
            rid, _ = s.upload(small, f"rss{i}")
            s.wait_log(WARMED.format(id=rid), before, timeout=600)
            ids.append(rid)
        idle = s.rss_kb()["VmRSS"]
        rss: List[int] = []
        for _ in range(rounds):
            for rid in ids:
                for q in ("tree", "memory", "growth"):
                    s.get_json(f"/api/runs/{rid}/{q}")
                rss.append(s.rss_kb()["VmRSS"])
        hwm = s.rss_kb()["VmHWM"]
        print(f"\nRSS with VMPV_QUERY_CACHE_MB={cache_mb}, {nruns} runs of {count(small_n)} samples "
              f"(~{16 * small_n / 1e6:.0f} MB of derived data each) queried round-robin ({rounds} rounds, "
              f"/tree + /memory + /growth each): idle after uploads {idle / 1024:.0f} MiB, "
              f"after each run's queries median {C.median(rss) / 1024:.0f} MiB, "
              f"max {max(rss) / 1024:.0f} MiB; VmHWM {hwm / 1024:.0f} MiB (includes the uploads)")
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(C.BUILD), help="tree with server/vmpv-server")
    ap.add_argument("--compare", help="another build tree: its server is measured side by side"
                                      " for ingest")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warm", type=int, default=5, help="warm repetitions per cold query")
    ap.add_argument("--store-reps", type=int, default=3,
                    help="rounds of the slow 'no summary file' cold queries")
    ap.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    ap.add_argument("--cache-mb", type=int, default=40)
    ap.add_argument("--rss-runs", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="100k/1M samples, 2 rounds")
    ap.add_argument("--only", choices=["ingest", "queries", "rss"], action="append")
    a = ap.parse_args()
    build = Path(a.build).resolve()
    only = set(a.only or ["ingest", "queries", "rss"])
    small_n, big_n, repeat = (100_000, 1_000_000, 2) if a.quick else (1_000_000, 10_000_000,
                                                                       a.repeat)
    print(C.machine().replace(str(C.BUILD), str(build)))
    linked = subprocess.run(["ldd", str(build / "server" / "vmpv-server")], capture_output=True,
                            text=True).stdout
    if "libasan." in linked or "libubsan." in linked:
        print("warning: the server links a sanitizer; figures are meaningless", file=sys.stderr)
    small = profile(small_n, 12)
    big = profile(big_n, 8)
    print(f"profiles: {small} ({small.stat().st_size / 1e6:.0f} MB), "
          f"{big} ({big.stat().st_size / 1e6:.0f} MB)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="vmpv-server-bench-"))
    pg = None
    try:
        if "ingest" in only:
            if not a.no_pg:
                try:
                    pg = Pg().start()
                except (C.BenchError, OSError, KeyError) as e:
                    print(f"PostgreSQL skipped: {e}")
                    pg = None
            builds = [("this", build)]
            if a.compare:
                builds.append(("compare", Path(a.compare).resolve()))
            bench_ingest(builds, small, repeat, pg, tmp)
        if "queries" in only:
            bench_queries(build, big, small, repeat, a.warm, tmp, a.store_reps, big_n, small_n)
        if "rss" in only:
            bench_rss(build, small, a.rss_runs, a.cache_mb, 2, tmp, small_n)
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    C.main_guard(main)
