#!/usr/bin/env python3
"""vmpv-relay intake benchmark: side by side in one run,
  1. the physical limit: LZ4 decoding + the spool's SQLite insert of the
     same batches on one thread, nothing else (vmpv-loadgen --spool-limit),
  2. sustained intake from 100 simulated agents over nng, durable before each
     acknowledgement (vmpv-loadgen against a real vmpv-relay), with the
     relay free to use both cores and with the relay on one core (taskset:
     relay on CPU 1, load generator on CPU 0),
  3. acknowledgement latency at half load (--rate), sustained ~12 s: at
     1M samples/s (half the 2M target) and at half the measured intake, as
     the agents see it (vmpv-loadgen) and inside the relay (its
     vmpv_relay_ack_seconds histogram: arrival to acknowledgement sent),
  4. the same at 1M samples/s against vmpv-ack-floor --decode, the least a
     relay can do before a durable ack (LZ4-decode, append to a file, one
     fdatasync per group): this machine's floor for the ack latency,
  5. relay RSS with 1,000 idle agent connections.
The 1M samples/s runs of 3 and 4 run twice: at the default priority and at
the niceness ops/vmpv-relay.service gives the relay (--nice, read from the
unit; negative values need root), relay and floor alike: the load generator
stands in for agents that, deployed, run on other hosts, and here it and the
machine's other work share the relay's two cores.
Repeats 1-3 and prints medians and the intake/limit ratio. --compare DIR adds
the relay of another build tree to the 1M samples/s runs, interleaved, with
this tree's load generator: ack p50/p99 and the relay's CPU time for both.

  bench/relay_bench.py [--build DIR] [--repeat N] [--samples N] [--compare DIR] [--nice N]
Use a release build (meson setup build-release --buildtype=release).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import cpu_seconds, free_port, percentile, proc_status_kb

ROOT = Path(__file__).resolve().parent.parent


def start_relay(build: Path, data: Path, *extra: str,
                pin: list[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*(pin or []), str(build / "relay" / "vmpv-relay"), "--listen", "tcp://127.0.0.1:0",
                             "--server", "http://127.0.0.1:9", "--data", str(data), "--log-level", "error", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split(" listening on ")[1].strip()


def unit_nice() -> int:
    """The Nice= of the relay's systemd unit: the priority it is deployed at."""
    m = re.search(r"^Nice=(-?\d+)$", (ROOT / "ops" / "vmpv-relay.service").read_text(), re.M)
    return int(m.group(1)) if m else 0


def pool_figures(us: list[int]) -> str:
    """p99 and p99.9 in ms and the share over 20 ms of pooled latencies in us."""
    return (f"{percentile(us, 99) / 1000:12.1f}  / {percentile(us, 99.9) / 1000:.1f} of {len(us)}, "
            f"{sum(x > 20000 for x in us) / len(us):.2%} over 20 ms")


def relay_ack_quantile(metrics_url: str, q: float) -> float:
    """The q-quantile of the relay's own vmpv_relay_ack_seconds histogram, in
    ms, interpolated inside its bucket as Prometheus' histogram_quantile does."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    buckets = [(float("inf") if le == "+Inf" else float(le), int(n)) for le, n in
               re.findall(r'^vmpv_relay_ack_seconds_bucket\{le="([^"]+)"\} (\d+)$', text, re.M)]
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return lower * 1000
            return (lower + (le - lower) * (rank - below) / max(n - below, 1)) * 1000
        lower, below = le, n
    return lower * 1000


def field(out: str, name: str) -> float:
    return float(re.search(rf"{name} ([\d.]+)", out).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build-release"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20000, help="samples per generated run")
    ap.add_argument("--compare", default=None, help="another build tree whose relay runs the 1M samples/s load too")
    ap.add_argument("--nice", type=int, default=unit_nice(),
                    help="niceness of the second set of 1M samples/s runs (default: ops/vmpv-relay.service's Nice=)")
    a = ap.parse_args()
    build = Path(a.build)
    if a.nice < 0 and os.geteuid() != 0:
        print(f"warning: nice {a.nice} needs root; the runs at the unit's priority are left out", file=sys.stderr)
        a.nice = 0
    nice = ["nice", "-n", str(a.nice)] if a.nice else []
    loadgen = str(build / "bench" / "vmpv-loadgen")
    tmp = Path(tempfile.mkdtemp(prefix="vmpv-relay-bench-"))
    try:
        prof = tmp / "p.dat"
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_profile.py"), str(prof),
                        "--samples", str(a.samples)], check=True)
        limits, intakes, one_core, p50s, p99s, target_p99s, half_p99s = [], [], [], [], [], [], []

        cpus = sorted(os.sched_getaffinity(0))

        relay_cpu: dict[str, list[float]] = {"this": [], "compare": []}
        compare_p50s, compare_p99s, target_p50s = [], [], []
        floor_p50s, floor_p99s = [], []
        # Every acknowledgement of the 1M samples/s runs, in microseconds:
        # the p99 of them all, beside the median of the per-run p99s.
        pooled: dict[str, list[int]] = {"this": [], "floor": [], "this@nice": [], "floor@nice": []}
        # Where each repeat's acknowledgements end in pooled[name].
        ends: dict[str, list[int]] = {name: [] for name in pooled}
        nice_p99s: dict[str, list[float]] = {"this": [], "floor": []}
        # With the relay served first, the load generator must still send the
        # rate asked for, or the runs at nice would be at a lighter load.
        nice_rates: list[float] = []

        def read_latencies(path: Path) -> list[int]:
            values = [int(line) for line in path.read_text().split()]
            path.unlink()
            return values

        def floor_run(i: int, prefix: list[str], pool: list[int]) -> str:
            d = tmp / f"floor{i}"
            d.mkdir()
            proc = subprocess.Popen([*prefix, str(build / "bench" / "vmpv-ack-floor"), "--file", str(d / "batches"),
                                     "--decode"], stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            url = proc.stdout.readline().split(" listening on ")[1].strip()
            try:
                out = subprocess.run([loadgen, "--relay", url, "--profile", str(prof), "--agents", "100",
                                      "--runs", "5", "--rate", "1000000", "--latencies", str(tmp / "lat")],
                                     capture_output=True, text=True, check=True).stdout
                pool += read_latencies(tmp / "lat")
                return out
            finally:
                proc.terminate()
                proc.wait()
                shutil.rmtree(d, ignore_errors=True)
        relay_p99s: dict[str, list[float]] = {"target": [], "half": [], "nice": []}

        def intake(i: int, name: str, pin: bool, *rate: str, runs: str = "2", tree: Path = build,
                   cpu: list[float] | None = None, relay_p99: list[float] | None = None,
                   latencies: list[int] | None = None, prefix: list[str] | None = None) -> str:
            pin = pin and len(cpus) >= 2  # on one CPU, "one core" is all there is
            port = free_port()
            # An older tree's relay may have no histogram: only this tree's is read.
            ops = ["--metrics-listen", f"127.0.0.1:{port}"] if relay_p99 is not None else []
            relay, url = start_relay(tree, tmp / f"{name}{i}", *ops,
                                     pin=["taskset", "-c", str(cpus[1])] if pin else prefix)
            try:
                before = cpu_seconds(relay.pid)
                out = subprocess.run([*(["taskset", "-c", str(cpus[0])] if pin else []), loadgen, "--relay", url,
                                      "--profile", str(prof), "--agents", "100", "--runs", runs, *rate,
                                      *(["--latencies", str(tmp / "lat")] if latencies is not None else [])],
                                     capture_output=True, text=True, check=True).stdout
                if latencies is not None:
                    latencies += read_latencies(tmp / "lat")
                if cpu is not None:
                    cpu.append(cpu_seconds(relay.pid) - before)
                if relay_p99 is not None:
                    relay_p99.append(round(relay_ack_quantile(f"http://127.0.0.1:{port}/metrics", 0.99), 1))
                return out
            finally:
                relay.terminate()
                relay.wait()
                shutil.rmtree(tmp / f"{name}{i}", ignore_errors=True)

        for i in range(a.repeat):
            out = subprocess.run([loadgen, "--spool-limit", str(tmp), "--profile", str(prof), "--runs", "200"],
                                 capture_output=True, text=True, check=True).stdout
            limits.append(field(out, "samples_per_s"))
            out = intake(i, "r", False)
            intakes.append(field(out, "samples_per_s"))
            p50s.append(field(out, "ack_p50_ms"))
            p99s.append(field(out, "ack_p99_ms"))
            one_core.append(field(intake(i, "c", True), "samples_per_s"))
            # Five runs per agent (~10-20 s): a sustained half load, so that
            # the p99 is not just the first second's connection burst.
            out = intake(i, "t", False, "--rate", "1000000", runs="5", cpu=relay_cpu["this"],
                         relay_p99=relay_p99s["target"], latencies=pooled["this"])
            target_p50s.append(field(out, "ack_p50_ms"))
            target_p99s.append(field(out, "ack_p99_ms"))
            if a.compare:
                out = intake(i, "o", False, "--rate", "1000000", runs="5", tree=Path(a.compare),
                             cpu=relay_cpu["compare"])
                compare_p50s.append(field(out, "ack_p50_ms"))
                compare_p99s.append(field(out, "ack_p99_ms"))
            out = floor_run(i, [], pooled["floor"])
            floor_p50s.append(field(out, "ack_p50_ms"))
            floor_p99s.append(field(out, "ack_p99_ms"))
            if nice:
                out = intake(i, "n", False, "--rate", "1000000", runs="5", latencies=pooled["this@nice"],
                             prefix=nice, relay_p99=relay_p99s["nice"])
                nice_p99s["this"].append(field(out, "ack_p99_ms"))
                nice_rates.append(field(out, "samples_per_s"))
                nice_p99s["floor"].append(field(floor_run(i, nice, pooled["floor@nice"]), "ack_p99_ms"))
            out = intake(i, "h", False, "--rate", str(int(intakes[-1] / 2)), runs="5",
                         relay_p99=relay_p99s["half"])
            half_p99s.append(field(out, "ack_p99_ms"))
            for name, v in pooled.items():
                ends[name].append(len(v))
        relay, url = start_relay(build, tmp / "idle")
        before = proc_status_kb(relay.pid, ("VmRSS", "VmHWM"))
        idle = subprocess.Popen([loadgen, "--relay", url, "--profile", str(prof), "--agents", "1000", "--idle", "5"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(4)
        during = proc_status_kb(relay.pid, ("VmRSS", "VmHWM"))
        idle.wait()
        relay.terminate()
        relay.wait()
        med = statistics.median
        print(f"{'measure':44} {'median':>12}  runs")
        print(f"{'physical limit (LZ4 + SQLite), samples/s':44} {med(limits):12.0f}  {[round(x) for x in limits]}")
        print(f"{'relay intake, 100 agents, samples/s':44} {med(intakes):12.0f}  {[round(x) for x in intakes]}")
        print(f"{'relay intake on one core, samples/s':44} {med(one_core):12.0f}  {[round(x) for x in one_core]}")
        print(f"{'intake / limit (one core / limit)':44} {med(intakes) / med(limits):12.2f}  "
              f"({med(one_core) / med(limits):.2f})")
        print(f"{'ack latency p50 at full load, ms':44} {med(p50s):12.1f}")
        print(f"{'ack latency p99 at full load, ms':44} {med(p99s):12.1f}")
        print(f"{'ack latency p99 at 1M samples/s, ms':44} {med(target_p99s):12.1f}  {target_p99s}")
        print(f"{'  the same inside the relay, ms':44} {med(relay_p99s['target']):12.1f}  {relay_p99s['target']}")
        print(f"{'  the floor (vmpv-ack-floor --decode), ms':44} {med(floor_p99s):12.1f}  {floor_p99s} "
              f"(p50 {med(floor_p50s):.2f}, this relay's {med(target_p50s):.2f})")
        if nice:
            print(f"{'ack latency p99 at 1M samples/s, nice ' + str(a.nice) + ', ms':44} "
                  f"{med(nice_p99s['this']):12.1f}  {nice_p99s['this']} "
                  f"(load sent: {min(nice_rates) / 1e6:.3f}-{max(nice_rates) / 1e6:.3f}M samples/s)")
            print(f"{'  the same inside the relay, ms':44} {med(relay_p99s['nice']):12.1f}  {relay_p99s['nice']}")
            print(f"{'  the floor at nice ' + str(a.nice) + ', ms':44} {med(nice_p99s['floor']):12.1f}  "
                  f"{nice_p99s['floor']}")
        for name, label in (("this", "this relay"), ("floor", "the floor"),
                            ("this@nice", f"this relay at nice {a.nice}"), ("floor@nice", f"the floor at nice {a.nice}")):
            v = pooled[name]
            if not v:
                continue
            print(f"{'  all acks pooled, ' + label + ': p99 / p99.9, ms':44} {pool_figures(v)}")
        # A host stall that the floor itself cannot meet 20 ms through says
        # nothing about the relay: the relay's acks again, from the repeats
        # whose floor run (just before or after, at the same priority) did.
        for name, floor_p99 in (("this", floor_p99s), ("this@nice", nice_p99s["floor"])):
            if not pooled[name]:
                continue
            starts = [0] + ends[name][:-1]
            kept = [i for i, p in enumerate(floor_p99) if p < 20.0]
            v = [x for i in kept for x in pooled[name][starts[i]:ends[name][i]]]
            label = "this relay" + ("" if name == "this" else f" at nice {a.nice}")
            if not v:
                print(f"  {label}: no repeat whose floor met 20 ms")
                continue
            print(f"{'  ' + label + ', repeats whose floor met 20 ms: p99 / p99.9, ms':44} {pool_figures(v)} "
                  f"({len(kept)} of {len(floor_p99)} repeats)")
        print(f"{'ack latency p99 at half the intake, ms':44} {med(half_p99s):12.1f}  {half_p99s}")
        print(f"{'  the same inside the relay, ms':44} {med(relay_p99s['half']):12.1f}  {relay_p99s['half']}")
        print(f"{'relay CPU at 1M samples/s (5 runs x 100 agents), s':44} {med(relay_cpu['this']):12.2f}  "
              f"{[round(x, 2) for x in relay_cpu['this']]}")
        if a.compare:
            print(f"{'--compare relay: ack p50 / p99 at 1M samples/s':44} {med(compare_p50s):5.2f} / "
                  f"{med(compare_p99s):.1f}  {compare_p99s} (this: p50 {med(target_p50s):.2f})")
            print(f"{'--compare relay: CPU at 1M samples/s, s':44} {med(relay_cpu['compare']):12.2f}  "
                  f"{[round(x, 2) for x in relay_cpu['compare']]}")
        print(f"{'relay RSS idle / with 1000 idle agents, KiB':44} {before['VmRSS']:>6} / {during['VmRSS']}  (peak {during['VmHWM']})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
