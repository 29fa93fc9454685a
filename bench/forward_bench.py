#!/usr/bin/env python3
"""vmpv-relay -> vmpv-server forwarding throughput: how fast a relay empties
a spooled backlog into a real server (SQLite), and whether that keeps up
with the intake.

Each round: a relay with no server behind it takes --agents x --runs runs
from vmpv-loadgen (a generated profile of --samples samples, known counts)
into its spool; it is stopped, a fresh vmpv-server is started, and the
relay is started again against it. The clock runs from that start until
the relay's vmpv_relay_forwarded_total reaches the number of batches sent;
the server's run list must then show every run complete with its samples.
Prints batches/s and samples/s forwarded and the CPU of relay and server,
for each --forward-concurrency in --concurrency (interleaved round by round).

  bench/forward_bench.py [--repeat N] [--concurrency 1,4,8] [--agents N] [--runs N] [--samples N]
Uses $VMPV_BUILD or build-release/ (bench/README.md).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _common as c


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def one_round(tmp: Path, prof: Path, a: argparse.Namespace, concurrency: int) -> dict:
    nobody = f"http://127.0.0.1:{c.free_port()}"
    relay_args = ["--listen", "tcp://127.0.0.1:0", "--data", str(tmp / "relay"), "--log-level", "warn"]
    relay = c.start_daemon("vmpv-relay", [*relay_args, "--server", nobody], tmp / "relay-run")
    try:
        out = subprocess.run([str(c.BUILD / "bench" / "vmpv-loadgen"), "--relay", relay.address, "--profile", str(prof),
                              "--agents", str(a.agents), "--runs", str(a.runs)],
                             capture_output=True, text=True, check=True).stdout
    finally:
        c.stopped_cleanly({"relay": relay.stop()})
    words = next(l for l in out.splitlines() if l.startswith("agents ")).split()
    sent = dict(zip(words[::2], words[1::2]))
    batches, samples = int(sent["batches"]), int(sent["samples"])
    runs = {l.split()[1]: int(l.split()[2]) for l in out.splitlines() if l.startswith("run ")}
    server = c.start_daemon("vmpv-server", ["--listen", "127.0.0.1:0", "--data", str(tmp / "server")],
                            tmp / "server-run")
    server_url = server.address if "://" in server.address else "http://" + server.address
    port = c.free_port()
    t0 = time.monotonic()
    relay = c.start_daemon("vmpv-relay", [*relay_args, "--server", server_url, "--metrics-listen",
                                          f"127.0.0.1:{port}", "--forward-concurrency", str(concurrency)],
                            tmp / "relay-run2")
    try:
        metrics = f"http://127.0.0.1:{port}/metrics"
        while metric(metrics, "vmpv_relay_forwarded_total") < batches:
            if time.monotonic() - t0 > 600:
                raise c.BenchError("the backlog was not forwarded within 10 minutes")
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        relay_cpu, server_cpu = c.cpu_seconds(relay.pid), c.cpu_seconds(server.pid)
        listed = json.load(urllib.request.urlopen(f"{server_url}/api/runs?limit=1000", timeout=30))
        got = {r["id"]: r for r in listed["runs"]}
        bad = [rid for rid, n in runs.items() if rid not in got or got[rid]["samples"] != n
               or got[rid]["status"] != "complete"]
        if bad:
            raise c.BenchError(f"{len(bad)} of {len(runs)} runs did not arrive whole, e.g. {bad[0]}")
    finally:
        codes = {"relay": relay.stop(), "server": server.stop()}
    c.stopped_cleanly(codes)
    return {"seconds": seconds, "batches": batches, "samples": samples, "relay_cpu": relay_cpu,
            "server_cpu": server_cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=20000, help="samples per generated run")
    ap.add_argument("--concurrency", default="1,4", help="--forward-concurrency values, comma-separated")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmpv-forward-bench-") as d:
        tmp = Path(d)
        prof = tmp / "p.dat"
        subprocess.run([sys.executable, str(c.HERE / "make_profile.py"), str(prof), "--samples", str(a.samples)],
                       check=True, stdout=subprocess.DEVNULL)
        levels = [int(x) for x in a.concurrency.split(",")]
        rounds: dict[int, list[dict]] = {k: [] for k in levels}
        for i in range(a.repeat):
            for k in levels:
                r = one_round(tmp / f"round{i}-{k}", prof, a, k)
                rounds[k].append(r)
                print(f"round {i}, concurrency {k}: {r['batches']} batches, {r['samples']} samples in "
                      f"{r['seconds']:.2f} s; relay CPU {r['relay_cpu']:.2f} s, server CPU {r['server_cpu']:.2f} s",
                      flush=True)
        med = c.median
        for k in levels:
            rs = rounds[k]
            print(f"concurrency {k:2}: {med([r['samples'] / r['seconds'] for r in rs]):10.0f} samples/s "
                  f"({med([r['batches'] / r['seconds'] for r in rs]):.0f} batches/s) "
                  f"{[round(r['samples'] / r['seconds']) for r in rs]}; CPU per 1M samples: relay "
                  f"{med([r['relay_cpu'] / r['samples'] * 1e6 for r in rs]):.2f} s, server "
                  f"{med([r['server_cpu'] / r['samples'] * 1e6 for r in rs]):.2f} s")
        print(c.machine())


if __name__ == "__main__":
    c.main_guard(main)
