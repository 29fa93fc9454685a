"""End-to-end agent throughput: a running vmpv-agent reads a big vmprof file
given by the `upload` op (proto/PROTOCOL.md section A), with a vmpv-relay behind it.

    python bench/agent_upload.py [--samples N] [--file F] [--repeat R] [--with-server] [--no-paused]

The agent answers `upload` once it has read the whole file, cut it into
DATA batches, LZ4-compressed them and written each to its queue directory
(with the run's state file), i.e. once the CLOSE batch is queued. Timed
per repetition: send -> reply (the agent's ingest), and send -> the relay
having the CLOSE batch in its spool (polled in DATA/spool.sqlite every 5 ms;
the relay has no server behind it unless --with-server, so the batches stay
there). Also the CPU the agent and the relay used (from /proc/PID/stat, all
threads). Two variants, alternated in each repetition: "relay running"
(the whole pipeline shares the 2 cores), and "relay paused" (the relay is
stopped with SIGSTOP from the request until the reply, so the agent's ingest
runs alone; its batches wait in its queue and go once the relay continues).
Prints each repetition and the medians.

The file is made like bench/replicate_profile.py does (real vmprof records,
replicated) unless --file is given.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import tempfile
import time
from pathlib import Path

import _common as c

CLOSE_TIMEOUT = float(os.environ.get("VMPV_BENCH_TIMEOUT", "120"))


def relay_has_close(db: Path, run_id: str) -> bool:
    if not db.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT 1 FROM batches WHERE run_id=? AND kind=3",
                              (bytes.fromhex(run_id),)).fetchone()
        finally:
            con.close()
        return row is not None
    except sqlite3.Error:
        return False


def wait_close(db: Path, run_id: str, timeout: float, poll: float = 0.005) -> float:
    deadline = time.monotonic() + timeout
    while not relay_has_close(db, run_id):
        if time.monotonic() > deadline:
            raise c.BenchError(f"the relay did not get the CLOSE of run {run_id} within {timeout}s")
        time.sleep(poll)
    return time.monotonic()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--samples", type=int, default=2_000_000, help="samples in the generated file (default 2000000)")
    ap.add_argument("--file", help="use this vmprof file instead of generating one")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    ap.add_argument("--with-server", action="store_true", help="also run vmpv-server behind the relay")
    ap.add_argument("--baseline", metavar="BUILD_DIR",
                    help="also run the agent (and relay) of another build, e.g. of an older commit, "
                         "alternating with this one in each repetition, and print the ratio")
    ap.add_argument("--no-paused", action="store_true",
                    help="skip the variant with the relay stopped (SIGSTOP) until the reply")
    args = ap.parse_args()
    c.warn_if_sanitized()
    if args.repeat < 1 or args.samples < 1:
        ap.error("--repeat and --samples must be positive")

    with tempfile.TemporaryDirectory(prefix="vmpv-bench-upload-") as tmpname:
        tmp = Path(tmpname)
        path = args.file and os.path.abspath(args.file)
        if not path:
            path = str(tmp / "big.prof")
            _, prof = c.real_profile()
            c.SyntheticWriter(prof).write(path, args.samples)
        size = os.path.getsize(path)
        stacks = {"": c.start_stack(with_server=args.with_server, tmp=tmp / "stack")}
        if args.baseline:
            this_build, c.BUILD = c.BUILD, Path(args.baseline).resolve()
            try:
                stacks["baseline "] = c.start_stack(with_server=args.with_server, tmp=tmp / "baseline")
            finally:
                c.BUILD = this_build
        rows = []
        modes = ["relay running"] + ([] if args.no_paused else ["relay paused"])
        variants = [prefix + mode for mode in modes for prefix in stacks]
        try:
            for rep in range(args.repeat):
                order = variants if rep % 2 == 0 else variants[::-1]
                for variant in order:
                    prefix = "baseline " if variant.startswith("baseline ") else ""
                    rows.append(one_upload(stacks[prefix], path, variant, args.with_server))
                    r = rows[-1]
                    print(f"rep {rep + 1} {variant:13s}: {r['samples']} samples, reply {r['reply_s']:.3f} s "
                          f"({r['samples'] / r['reply_s']:,.0f} samples/s), CLOSE at the relay "
                          f"{r['relay_s']:.3f} s, agent CPU {r['agent_cpu_reply']:.2f} s until the reply, "
                          f"{r['agent_cpu']:.2f} s in all, relay CPU {r['relay_cpu']:.2f} s", flush=True)
        finally:
            codes = {}
            for prefix, stack in stacks.items():
                codes.update({prefix + k: v for k, v in stack.stop().items()})
        if any(codes.values()):
            raise c.BenchError(f"a daemon did not stop cleanly: {codes}")

    samples = rows[0]["samples"]
    print()
    print(f"file {path}: {size} bytes, {samples} samples, {size / samples:.1f} bytes/sample; "
          f"median of {args.repeat} per variant; {c.machine()}")
    out = []
    for variant in variants:
        rs = [r for r in rows if r["variant"] == variant]
        med = lambda k: c.median([r[k] for r in rs])
        per_cpu = lambda k: f"{samples / med(k):,.0f}" if med(k) else "-"
        out.append([variant, "upload reply", f"{med('reply_s'):.3f}", f"{samples / med('reply_s'):,.0f}",
                    f"{size / med('reply_s') / 1e6:.1f}", f"{med('agent_cpu_reply'):.2f}", per_cpu("agent_cpu_reply"),
                    "", ""])
        if not args.with_server:
            out.append([variant, "CLOSE at the relay", f"{med('relay_s'):.3f}", f"{samples / med('relay_s'):,.0f}",
                        f"{size / med('relay_s') / 1e6:.1f}", f"{med('agent_cpu'):.2f}", per_cpu("agent_cpu"),
                        f"{med('relay_cpu'):.2f}", per_cpu("relay_cpu")])
    print(c.table(["variant", "until", "wall s", "samples/s", "MB/s", "agent CPU s", "samples/agent-CPU-s",
                   "relay CPU s", "samples/relay-CPU-s"], out))
    if args.baseline:
        print(f"\nbaseline: {args.baseline}; agent CPU until the reply, this build / baseline, "
              f"median of the {args.repeat} paired ratios:")
        for mode in modes:
            mine = [r["agent_cpu_reply"] for r in rows if r["variant"] == mode]
            base = [r["agent_cpu_reply"] for r in rows if r["variant"] == "baseline " + mode]
            ratios = [m / b for m, b in zip(mine, base) if b]
            print(f"  {mode}: {c.median(ratios):.2f}" if ratios else f"  {mode}: -")
    return 0


def one_upload(stack: c.Stack, path: str, variant: str, with_server: bool) -> dict:
    """One `upload` of path; with the relay stopped (SIGSTOP) until the reply
    for "relay paused", so that the agent has both cores to itself."""
    run = c.new_run_id()
    paused = variant.endswith("relay paused")
    conn = c.AgentConn(stack.agent_socket, timeout=600)
    a0, r0 = c.cpu_seconds(stack.agent.pid), c.cpu_seconds(stack.relay.pid)
    if paused:
        os.kill(stack.relay.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        reply = conn.request(dict(c.start_fields(run, path, pid=0), op="upload"))
        t1 = time.monotonic()
    finally:
        if paused:
            os.kill(stack.relay.pid, signal.SIGCONT)
    a1 = c.cpu_seconds(stack.agent.pid)
    conn.close()
    if with_server:
        t2 = t1  # the relay forwards and deletes: no spool to watch
    else:
        t2 = wait_close(stack.spool_db, run, timeout=CLOSE_TIMEOUT)
    a2, r2 = c.cpu_seconds(stack.agent.pid), c.cpu_seconds(stack.relay.pid)
    return {"variant": variant, "samples": int(reply["samples"]), "reply_s": t1 - t0, "relay_s": t2 - t0,
            "agent_cpu_reply": a1 - a0, "agent_cpu": a2 - a0, "relay_cpu": r2 - r0}


if __name__ == "__main__":
    c.main_guard(main)
