"""In-process overhead of the vmprof-viewer client on a CPU-bound workload.

    python bench/overhead.py [--quick] [--repeat N] [--seconds S] [--periods P,P,...]

Three variants of the same workload (bench/workload.py, a fixed number of
work units worth about S seconds of CPU), each in a fresh Python process:
  none    the workload alone;
  vmprof  raw vmprof around it: vmprof.enable(fd, period, memory=True,
          native=False) on a temporary file, the workload, vmprof.disable();
  client  the workload decorated with @vmprof_viewer_client.profile(period=P),
          with a real vmpv-agent and vmpv-relay running (no server behind the
          relay: batches stay in its spool), so the start and end exchange
          with the agent are included.
Each child times its profiled region only (wall: perf_counter; CPU:
process_time, which includes vmprof's signal handler and its /proc reads)
and the workload inside it; the difference is the "framing" (starting and
stopping the profiler, and for the client its agent requests). Every
repetition runs, for each period (in random order), the three variants in
random order: the variants are interleaved, never run in blocks. Overheads
are medians over repetitions of the paired ratios variant/none within one
repetition and period; "client - vmprof" is the median of the paired
differences of those overheads, in percentage points, with a 95% bootstrap
interval. A child killed by a signal (vmprof's handler can crash CPython
3.11) is reported with its faulthandler stack and run again.

Also reported: samples per run (vmprof's file; the agent's sample counter for
the client), the client's time in its two agent requests, and the CPU the
agent and the relay used per client run (/proc/PID/stat, all threads,
10 ms ticks: coarse, take the median).

Default: 10 repetitions x 3 periods (0.1, 0.01, 0.001) x 3 variants of
~1.5 s, about 3-4 minutes. --quick: 3 repetitions of ~1 s, about 1 minute.
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


# ---- the child: one timed run ---------------------------------------------------

def child(variant: str, period: float, units: int, tmpdir: str) -> None:
    sys.path.insert(0, str(c.HERE))
    import workload
    out = {"variant": variant, "period": period}
    inner: list = []  # (wall, cpu) at the workload's entry and exit
    work = workload.clocked(inner)

    if variant == "none":
        t0, c0 = time.perf_counter(), time.process_time()
        work(units)
        t1, c1 = time.perf_counter(), time.process_time()
    elif variant == "vmprof":
        import vmprof
        path = os.path.join(tmpdir, f"raw-{os.getpid()}.prof")
        t0, c0 = time.perf_counter(), time.process_time()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        vmprof.enable(fd, period=period, memory=True, native=False)
        work(units)
        vmprof.disable()
        os.close(fd)
        t1, c1 = time.perf_counter(), time.process_time()
        with open(path, "rb") as f:
            out["samples"] = len(c.parse_profile(f.read(), allow_empty=True).stacks)
        os.unlink(path)
    elif variant == "client":
        import vmprof_viewer_client
        from vmprof_viewer_client import _agent
        # Time the client's agent requests (start, end) without changing
        # them: each is a send and, later, the wait for its reply (the client
        # sends `start` and reads its reply only before `end`).
        spent = []
        real_send, real_reply = _agent.AgentConnection.send, _agent.AgentConnection.reply

        def timed_send(self, message, *args, **kwargs):
            r0 = time.perf_counter()
            try:
                return real_send(self, message, *args, **kwargs)
            finally:
                spent.append((message.get("op"), time.perf_counter() - r0))

        def timed_reply(self, op, *args, **kwargs):
            r0 = time.perf_counter()
            try:
                return real_reply(self, op, *args, **kwargs)
            finally:
                spent.append((op, time.perf_counter() - r0))

        _agent.AgentConnection.send = timed_send
        _agent.AgentConnection.reply = timed_reply
        vmprof_viewer_client.configure("vmpv-bench overhead")
        profiled = vmprof_viewer_client.profile(period=period)(work)
        t0, c0 = time.perf_counter(), time.process_time()
        profiled(units)
        t1, c1 = time.perf_counter(), time.process_time()
        out["run"] = vmprof_viewer_client.last_run_id()
        out["requests"] = spent
    else:
        raise SystemExit(f"unknown variant {variant}")
    out["wall"] = t1 - t0
    out["cpu"] = c1 - c0
    # Framing: the timed region minus the workload itself, i.e. starting and
    # stopping the profiler (and, for the client, talking to the agent).
    out["frame_wall"] = out["wall"] - (inner[1][0] - inner[0][0])
    out["frame_cpu"] = out["cpu"] - (inner[1][1] - inner[0][1])
    print(json.dumps(out), flush=True)


# ---- the parent -----------------------------------------------------------------

CRASHES: list = []  # (variant, period, signal, the Python stack faulthandler printed)
MAX_CRASHES = 10


def run_child(variant: str, period: float, units: int, tmpdir: str, env: dict) -> dict:
    """One timed run in a fresh interpreter. A child killed by a signal (vmprof's
    SIGPROF handler can crash CPython 3.11, see vmprof-format.md section 7) is
    recorded and run again."""
    proc = subprocess.run([sys.executable, "-X", "faulthandler", __file__, "--child", variant, str(period),
                           str(units), tmpdir], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode < 0:
        CRASHES.append((variant, period, -proc.returncode, proc.stderr.strip()))
        print(f"  {variant} at period {period} was killed by signal {-proc.returncode}; running it again",
              flush=True)
        if len(CRASHES) >= MAX_CRASHES:
            raise c.BenchError(f"{len(CRASHES)} children crashed; the last one's stderr:\n{proc.stderr[-3000:]}")
        return None
    if proc.returncode != 0:
        raise c.BenchError(f"{variant} at period {period} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise c.BenchError(f"{variant}: no result from the child:\n{proc.stdout}\n{proc.stderr}")
    res = json.loads(lines[-1])
    # The client's own warnings (it never fails the program): counted and shown.
    res["warnings"] = [l for l in proc.stderr.splitlines() if l.startswith("vmprof-viewer:")]
    return res


def one(variant: str, period: float, units: int, tmpdir: str, env: dict, stack: c.Stack) -> dict:
    while True:
        res = one_attempt(variant, period, units, tmpdir, env, stack)
        if res is not None:
            return res


def one_attempt(variant: str, period: float, units: int, tmpdir: str, env: dict, stack: c.Stack):
    if variant != "client":
        return run_child(variant, period, units, tmpdir, env)
    m0 = c.agent_metrics(stack.agent_socket)
    a0, r0 = c.cpu_seconds(stack.agent.pid), c.cpu_seconds(stack.relay.pid)
    res = run_child(variant, period, units, tmpdir, env)
    if res is None:
        c.wait_agent_idle(stack.agent_socket)  # the agent closes the crashed run as incomplete
        return None
    if not res.get("run"):
        raise c.BenchError("the client did not hand the profile to the agent")
    m1 = c.wait_agent_idle(stack.agent_socket)
    res["agent_cpu"] = c.cpu_seconds(stack.agent.pid) - a0
    res["relay_cpu"] = c.cpu_seconds(stack.relay.pid) - r0
    res["samples"] = int(m1["vmpv_agent_samples_total"] - m0["vmpv_agent_samples_total"])
    return res


def judge(diffs: list) -> str:
    lo, hi = c.bootstrap_ci(diffs)
    if hi <= TARGET_PP:
        return "met"
    if lo > TARGET_PP:
        return "NOT met"
    return "inconclusive"


def pct(x: float) -> str:
    return f"{x:+.2f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--quick", action="store_true", help="3 repetitions of ~1 s (about 1 minute)")
    ap.add_argument("--repeat", type=int, help="repetitions (default 10, --quick 3)")
    ap.add_argument("--seconds", type=float, help="CPU seconds of work per run (default 1.5, --quick 1.0)")
    ap.add_argument("--periods", default="0.1,0.01,0.001", help="sampling periods in seconds (default 0.1,0.01,0.001)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the run order (default: random)")
    ap.add_argument("--json", metavar="FILE", help="also write every run's figures to FILE")
    ap.add_argument("--child", nargs=4, metavar=("VARIANT", "PERIOD", "UNITS", "TMPDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], float(args.child[1]), int(args.child[2]), args.child[3])
        return 0
    c.warn_if_sanitized()
    repeat = args.repeat or (3 if args.quick else 10)
    seconds = args.seconds or (1.0 if args.quick else 1.5)
    try:
        periods = [float(p) for p in args.periods.split(",") if p.strip()]
    except ValueError:
        ap.error("--periods must be comma-separated numbers")
    if repeat < 1 or seconds <= 0 or not periods:
        ap.error("--repeat, --seconds and --periods must be positive")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    units = int(subprocess.run([sys.executable, str(c.HERE / "workload.py"), str(seconds)],
                               capture_output=True, text=True, check=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="vmpv-bench-overhead-") as tmpname:
        tmp = Path(tmpname)
        results = []
        t_start = time.monotonic()
        with c.start_stack(tmp=tmp / "stack") as stack:
            env = c.client_env(stack, tmp)
            print(f"{units} work units per run (~{seconds} s), {repeat} repetitions, periods {periods}, "
                  f"seed {seed}", flush=True)
            for v in VARIANTS:  # warm-up (page cache, the agent's first session); not counted
                one(v, periods[0], max(1, units // 10), str(tmp), env, stack)
            for rep in range(repeat):
                for period in c.shuffled(periods, rng):
                    for v in c.shuffled(VARIANTS, rng):
                        r = one(v, period, units, str(tmp), env, stack)
                        r["rep"] = rep
                        results.append(r)
                done = time.monotonic() - t_start
                print(f"repetition {rep + 1}/{repeat} done ({done:.0f} s)", flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"units": units, "seconds": seconds, "seed": seed, "machine": c.machine(),
                       "runs": results, "crashes": CRASHES}, f, indent=1)
    print()
    print(f"overhead.py: {units} units (~{seconds} s CPU) per run, {repeat} repetitions, seed {seed}; {c.machine()}")
    rows = []
    verdict = []
    for period in periods:
        by = {(r["rep"], r["variant"]): r for r in results if r["period"] == period}
        reps = sorted({r["rep"] for r in results if r["period"] == period})
        ov = {v: {"wall": [], "cpu": []} for v in VARIANTS}
        diff = {"wall": [], "cpu": []}
        for rep in reps:
            base = by[(rep, "none")]
            for v in VARIANTS:
                for k in ("wall", "cpu"):
                    ov[v][k].append(100.0 * (by[(rep, v)][k] / base[k] - 1.0))
            for k in ("wall", "cpu"):
                diff[k].append(ov["client"][k][-1] - ov["vmprof"][k][-1])
        for v in VARIANTS:
            rs = [by[(rep, v)] for rep in reps]
            samples = [r["samples"] for r in rs if "samples" in r]
            rows.append([
                period, v, len(rs),
                f"{c.median([r['wall'] for r in rs]):.4f}", f"{c.median([r['cpu'] for r in rs]):.4f}",
                "" if v == "none" else pct(c.median(ov[v]["wall"])),
                "" if v == "none" else pct(c.median(ov[v]["cpu"])),
                f"{c.median(samples):.0f}" if samples else "",
                f"{c.median(diff['wall']):+.2f}" if v == "client" else "",
                f"{c.median(diff['cpu']):+.2f}" if v == "client" else "",
            ])
        client = [by[(rep, "client")] for rep in reps]
        req = {"start": [], "end": []}
        for r in client:
            per_op: dict = {}
            for op, dt in r.get("requests", []):
                per_op[op] = per_op.get(op, 0.0) + dt
            for op in req:
                if op in per_op:
                    req[op].append(per_op[op] * 1000)
        verdict.append([
            period,
            f"{c.median(diff['wall']):+.2f} [{c.bootstrap_ci(diff['wall'])[0]:+.2f}, {c.bootstrap_ci(diff['wall'])[1]:+.2f}]",
            f"{c.median(diff['cpu']):+.2f} [{c.bootstrap_ci(diff['cpu'])[0]:+.2f}, {c.bootstrap_ci(diff['cpu'])[1]:+.2f}]",
            judge(diff["wall"]), judge(diff["cpu"]),
            f"{c.median([by[(rep, 'vmprof')]['frame_wall'] * 1000 for rep in reps]):.2f} / "
            f"{c.median([by[(rep, 'vmprof')]['frame_cpu'] * 1000 for rep in reps]):.2f}",
            f"{c.median([by[(rep, 'client')]['frame_wall'] * 1000 for rep in reps]):.2f} / "
            f"{c.median([by[(rep, 'client')]['frame_cpu'] * 1000 for rep in reps]):.2f}",
            f"{c.median([(by[(rep, 'client')]['frame_wall'] - by[(rep, 'vmprof')]['frame_wall']) / by[(rep, 'none')]['wall'] * 100 for rep in reps]):+.3f}",
            f"{c.median(req['start']):.2f}", f"{c.median(req['end']):.2f}",
            f"{c.median([r['agent_cpu'] * 1000 for r in client]):.0f}",
            f"{c.median([r['relay_cpu'] * 1000 for r in client]):.0f}",
        ])
    if CRASHES:
        print(f"note: {len(CRASHES)} children were killed by a signal and run again:")
        for variant, period, sig, err in CRASHES:
            where = [l.strip() for l in err.splitlines() if l.strip().startswith("File ")][:3]
            print(f"  {variant} at {period}: signal {sig}; innermost frames: {' / '.join(where) or '-'}")
    warned = [r for r in results if r.get("warnings")]
    if warned:
        print(f"note: {len(warned)} of {len(results)} runs printed client warnings, e.g.: {warned[0]['warnings'][0]}")
    print(c.table(["period s", "variant", "n", "wall s", "CPU s", "wall ovh", "CPU ovh", "samples",
                   "client-vmprof pp (wall)", "client-vmprof pp (CPU)"], rows))
    print()
    print(f"client minus vmprof, percentage points: median of the paired differences [95% bootstrap CI]; "
          f"target <= {TARGET_PP} pp: 'met' if the whole CI is below, 'NOT met' if the whole CI is above, "
          f"else 'inconclusive' (more repetitions or a quieter machine)")
    print("framing = the timed region minus the workload inside it: enable/disable, and for the client also "
          "its start/end with the agent (ms, wall / CPU); framing pp = (client - vmprof framing) / the run")
    print(c.table(["period s", "wall pp", "CPU pp", "met (wall)", "met (CPU)", "vmprof framing ms",
                   "client framing ms", "framing pp (wall)", "start req ms", "end req ms",
                   "agent CPU ms/run", "relay CPU ms/run"], verdict))
    return 0


if __name__ == "__main__":
    c.main_guard(main)
