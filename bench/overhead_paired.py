"""The client's in-process overhead, measured in adjacent pairs inside one
interpreter: the tighter companion of bench/overhead.py.

    python bench/overhead_paired.py [--rounds N] [--seconds S] [--periods P,P,...]

overhead.py runs each variant in a fresh interpreter, so process-to-process
spread (memory layout, CPU frequency, what else the machine runs) lands in
every comparison, and on a shared 2-core machine it is larger than the
0.5-point target. Here one interpreter per period runs N rounds; each round
calls the same workload (bench/workload.py, ~S CPU-seconds) three times, in
random order:
  none    the workload alone;
  vmprof  raw vmprof around it (enable on a fresh file, workload, disable);
  client  the workload under @vmprof_viewer_client.profile(period=P), with a
          real vmpv-agent and vmpv-relay, so its start/end requests count.
Each call's CPU time (process_time: includes vmprof's signal handler) and wall
time are taken around the whole call, enable/disable and agent requests
included. The three calls of a round are seconds apart, so slow drifts of the
machine cancel in the paired differences: per round, overhead = t/t_none - 1,
and client - vmprof is the difference of the two overheads, in percentage
points. Reported: medians over rounds, with 95 % bootstrap intervals for the
difference, and the verdict against the target (the interval's upper end at
or below +0.5 points: met; its lower end above: not met; else inconclusive).

An interpreter killed by a signal (vmprof's handler can crash CPython 3.11 at
small periods) is reported and the remaining rounds go on in a new one.
Default: 30 rounds of 0.5 s x 3 variants x 3 periods, about 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

VARIANTS = ("none", "vmprof", "client")
TARGET_PP = 0.5


def child(period: float, units: int, rounds: int, seed: int, tmpdir: str) -> None:
    """Runs rounds of the three variants, printing one JSON line per round."""
    sys.path.insert(0, str(c.HERE))
    import vmprof
    import workload
    import vmprof_viewer_client

    inner: list = []  # (wall, cpu) at the workload's entry and exit
    work = workload.clocked(inner)

    vmprof_viewer_client.configure("vmpv-bench overhead-paired")
    profiled = vmprof_viewer_client.profile(period=period)(work)
    rng = random.Random(seed)
    path = os.path.join(tmpdir, f"raw-{os.getpid()}.prof")

    def raw(n: int) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        vmprof.enable(fd, period=period, memory=True, native=False)
        try:
            return work(n)
        finally:
            vmprof.disable()
            os.close(fd)

    calls = {"none": work, "vmprof": raw, "client": profiled}
    for v in VARIANTS:  # warm-up: imports, the agent's first session, caches
        calls[v](max(1, units // 10))
    for _ in range(rounds):
        out = {}
        for v in c.shuffled(VARIANTS, rng):
            inner.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            calls[v](units)
            t1, c1 = time.perf_counter(), time.process_time()
            # Framing: the call minus the workload inside it, i.e. starting
            # and stopping the profiler (and the client's agent requests).
            out[v] = {"wall": t1 - t0, "cpu": c1 - c0,
                      "frame_wall": (t1 - t0) - (inner[1][0] - inner[0][0]),
                      "frame_cpu": (c1 - c0) - (inner[1][1] - inner[0][1])}
        print(json.dumps(out), flush=True)
    if os.path.exists(path):
        os.unlink(path)


def run_period(period: float, units: int, rounds: int, rng: random.Random, tmp: Path, env: dict,
               crashes: list) -> list:
    got: list = []
    while len(got) < rounds:
        proc = subprocess.run([sys.executable, "-X", "faulthandler", __file__, "--child", str(period), str(units),
                               str(rounds - len(got)), str(rng.randrange(1 << 30)), str(tmp)],
                              capture_output=True, text=True, env=env)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        got.extend(lines)
        if proc.returncode != 0:
            crashes.append({"period": period, "returncode": proc.returncode, "after_rounds": len(lines),
                            "stderr": proc.stderr[-2000:]})
            if len(crashes) > 10:
                raise c.BenchError(f"too many crashed interpreters; the last stderr:\n{proc.stderr[-3000:]}")
        print(f"period {period}: {len(got)}/{rounds} rounds", flush=True)
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--rounds", type=int, default=30, help="rounds per period (default 30)")
    ap.add_argument("--seconds", type=float, default=0.5, help="CPU seconds of work per call (default 0.5)")
    ap.add_argument("--periods", default="0.1,0.01,0.001", help="periods in seconds (default 0.1,0.01,0.001)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the call order (default: random)")
    ap.add_argument("--json", metavar="FILE", help="also write every round's figures to FILE")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(float(args.child[0]), int(args.child[1]), int(args.child[2]), int(args.child[3]), args.child[4])
        return 0
    c.warn_if_sanitized()
    periods = [float(p) for p in args.periods.split(",") if p.strip()]
    if args.rounds < 2 or args.seconds <= 0 or not periods:
        ap.error("--rounds must be at least 2, --seconds and --periods positive")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    units = int(subprocess.run([sys.executable, str(c.HERE / "workload.py"), str(args.seconds)],
                               capture_output=True, text=True, check=True).stdout.strip())
    crashes: list = []
    results = {}
    with tempfile.TemporaryDirectory(prefix="vmpv-bench-paired-") as tmpname:
        tmp = Path(tmpname)
        with c.start_stack(tmp=tmp / "stack") as stack:
            env = c.client_env(stack, tmp)
            for period in c.shuffled(periods, rng):
                results[period] = run_period(period, units, args.rounds, rng, tmp, env, crashes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"units": units, "seconds": args.seconds, "seed": seed, "machine": c.machine(),
                       "rounds": {str(p): r for p, r in results.items()}, "crashes": crashes}, f, indent=1)

    print()
    print(f"overhead_paired.py: {units} units (~{args.seconds} s CPU) per call, {args.rounds} rounds per period, "
          f"seed {seed}; {c.machine()}")
    rows = []
    for period in periods:
        rs = results[period]
        row = [f"{period:g}", f"{c.median([r['none']['cpu'] for r in rs]):.3f}"]
        for k in ("cpu", "wall"):
            ov = {v: [100 * (r[v][k] / r["none"][k] - 1) for r in rs] for v in ("vmprof", "client")}
            diff = [cl - vm for cl, vm in zip(ov["client"], ov["vmprof"])]
            lo, hi = c.bootstrap_ci(diff)
            verdict = "met" if hi <= TARGET_PP else "NOT met" if lo > TARGET_PP else "inconclusive"
            row += [f"{c.median(ov['vmprof']):+.2f}%", f"{c.median(ov['client']):+.2f}%",
                    f"{c.median(diff):+.2f} [{lo:+.2f}, {hi:+.2f}]", verdict]
        rows.append(row)
    print(c.table(["period s", "none CPU s", "vmprof CPU ovh", "client CPU ovh", "client - vmprof CPU pp [95% CI]",
                   "CPU verdict", "vmprof wall ovh", "client wall ovh", "client - vmprof wall pp [95% CI]",
                   "wall verdict"], rows))
    print("\nframing (the call minus the workload inside it), ms, median [95% CI] of the paired differences;"
          " pp of a 1 s call = ms / 10:")
    frows = []
    for period in periods:
        rs = results[period]
        row = [f"{period:g}"]
        for k in ("frame_wall", "frame_cpu"):
            vm = [1000 * r["vmprof"][k] for r in rs]
            cl = [1000 * r["client"][k] for r in rs]
            diff = [a - b for a, b in zip(cl, vm)]
            lo, hi = c.bootstrap_ci(diff)
            row += [f"{c.median(vm):.2f}", f"{c.median(cl):.2f}", f"{c.median(diff):+.2f} [{lo:+.2f}, {hi:+.2f}]"]
        frows.append(row)
    print(c.table(["period s", "vmprof wall", "client wall", "client - vmprof wall", "vmprof CPU", "client CPU",
                   "client - vmprof CPU"], frows))
    if crashes:
        print(f"\nnote: {len(crashes)} interpreters were killed by a signal and the rounds went on in a new one:")
        for cr in crashes:
            print(f"  period {cr['period']}: exit {cr['returncode']} after {cr['after_rounds']} rounds")
    return 0


if __name__ == "__main__":
    c.main_guard(main)
