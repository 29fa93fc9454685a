"""vmpv-agent's memory with many concurrent sessions (target: RSS < 32 MiB
with 100).

    python bench/agent_sessions.py [--sessions N] [--seconds S] [--rate HZ] [--with-server] [--backlog BYTES]

Starts vmpv-agent and vmpv-relay (and vmpv-server with --with-server;
without it the batches stay in the relay's spool), then opens N client
sessions: N profile files, each started with a real `start` request on its
own connection (proto/PROTOCOL.md section A), which a writer process keeps
appending real vmprof records to (bench/replicate_profile.py's records: one
real profile of bench/workload.py replicated) at HZ samples per second per
file (default 100, i.e. a profile at period 0.01), every 100 ms, for S
seconds. With --backlog BYTES each file already holds that many bytes of
records when its session starts, so all sessions have a backlog to catch up
on at once (an agent restarted with runs in progress, a burst). Then the writer appends each file's names and TRAILER, every
session gets its `end`, and the benchmark waits until the agent has closed
every run.

The agent's VmRSS and VmHWM (peak RSS, kept by the kernel) and VmSize are
read from /proc/PID/status every 50 ms throughout; /proc/PID/smaps is
summed by kind of mapping (heap, anonymous, files) at each new RSS maximum
(at most twice a second), in the steady state and at the end of the
writing, to show what the resident memory is. Prints the phases and the peak.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common as c

TARGET_KB = 32 * 1024

WRITER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
import _common as c
_, prof = c.real_profile()
w = c.SyntheticWriter(prof)
paths = sys.argv[4:]
rate = float(sys.argv[2])
tick = 0.1
per_tick = rate * tick
files = [open(p, "ab", buffering=0) for p in paths]
gens = [w.samples(10**12) for _ in paths]
owed = [0.0] * len(paths)
stop = False
def on_term(*_):
    global stop
    stop = True
import signal
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
t_next = time.monotonic()
written = 0
while not stop:
    for i, f in enumerate(files):
        owed[i] += per_tick
        n = int(owed[i])
        owed[i] -= n
        if n:
            f.write(b"".join(next(gens[i]) for _ in range(n)))
            written += n
    t_next += tick
    d = t_next - time.monotonic()
    if d > 0:
        time.sleep(d)
tail = w.tail()
for f in files:
    f.write(tail)
    f.close()
print("done", written, flush=True)
"""


def smaps_by_kind(pid: int) -> dict:
    """Resident KiB of the process by kind of mapping."""
    kinds: dict = {}
    name = "?"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                    path = parts[5] if len(parts) > 5 else ""
                    if path == "[heap]":
                        name = "heap (brk)"
                    elif path.startswith("[stack"):
                        name = "main stack"
                    elif path.startswith("["):
                        name = "other " + path
                    elif path:
                        name = "files (binary, libraries)"
                    else:
                        name = "anonymous mmap (malloc arenas, big blocks, thread stacks)"
                elif parts[0] == "Rss:":
                    kinds[name] = kinds.get(name, 0) + int(parts[1])
    except OSError:
        pass
    return kinds


def top_mappings(pid: int, n: int = 8) -> list:
    """The n mappings with the most resident memory: (rss KiB, size KiB, name)."""
    maps = []
    cur = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                parts = line.split()
                if parts and "-" in parts[0] and not parts[0].endswith(":"):
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    cur = [0, (hi - lo) // 1024, parts[5] if len(parts) > 5 else "(anonymous)"]
                    maps.append(cur)
                elif parts and parts[0] == "Rss:" and cur is not None:
                    cur[0] = int(parts[1])
    except OSError:
        pass
    return sorted(maps, reverse=True)[:n]


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples = []  # (t, rss, hwm, size)
        self.phase = "baseline"
        self.by_phase: dict = {}
        self._halt = threading.Event()
        self.peak_rss, self.peak_t = 0, 0.0
        self.peak_kinds: dict = {}
        self.peak_top: list = []

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                s = c.proc_status_kb(self.pid)
            except OSError:
                return
            if "VmRSS" not in s:
                return  # exited (a zombie has no memory lines)
            now = time.monotonic()
            self.samples.append((now, s["VmRSS"], s["VmHWM"], s["VmSize"]))
            # What the memory is at (near) the peak: smaps on each new maximum,
            # at most twice a second.
            if s["VmRSS"] > self.peak_rss + 512 and now - self.peak_t > 0.5:
                self.peak_rss, self.peak_t = s["VmRSS"], now
                self.peak_kinds = smaps_by_kind(self.pid)
                self.peak_top = top_mappings(self.pid)
            ph = self.by_phase.setdefault(self.phase, {"rss": 0, "size": 0, "n": 0})
            ph["rss"] = max(ph["rss"], s["VmRSS"])
            ph["size"] = max(ph["size"], s["VmSize"])
            ph["n"] += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--sessions", type=int, default=100, help="concurrent sessions (default 100)")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the files grow (default 20)")
    ap.add_argument("--rate", type=float, default=100.0, help="samples per second per file (default 100)")
    ap.add_argument("--with-server", action="store_true", help="run vmpv-server behind the relay")
    ap.add_argument("--backlog", type=int, default=0, metavar="BYTES",
                    help="records already in each file at `start` (default 0): sessions that start "
                         "behind, as after an agent restart or a burst; all of them catch up at once")
    args = ap.parse_args()
    c.warn_if_sanitized()
    if not (1 <= args.sessions <= 1000) or args.seconds <= 0 or args.rate <= 0:
        ap.error("--sessions in 1..1000, --seconds and --rate positive")

    _, prof = c.real_profile()
    with tempfile.TemporaryDirectory(prefix="vmpv-bench-sessions-") as tmpname:
        tmp = Path(tmpname)
        stack = c.start_stack(with_server=args.with_server, tmp=tmp / "stack")
        sampler = Sampler(stack.agent.pid)
        sampler.start()
        writer = None
        conns = []
        phases = []
        smaps = {}
        try:
            time.sleep(0.5)
            phases.append(("agent idle, before any session", c.proc_status_kb(stack.agent.pid)))
            profiles = tmp / "profiles"
            profiles.mkdir()
            paths = [str(profiles / f"{i:04d}.prof") for i in range(args.sessions)]
            backlog = b""
            backlog_samples = 0
            if args.backlog:
                recs = []
                size = 0
                for rec in c.SyntheticWriter(prof).samples(10**9):
                    if size >= args.backlog:
                        break
                    recs.append(rec)
                    size += len(rec)
                backlog = b"".join(recs)
                backlog_samples = len(recs)
            for p in paths:
                with open(p, "wb") as f:
                    f.write(prof.head + backlog)
            sampler.phase = "starting"
            t0 = time.monotonic()
            for p in paths:
                conn = c.AgentConn(stack.agent_socket, timeout=60)
                conn.request(dict(c.start_fields(c.new_run_id(), p), op="start"))
                conns.append(conn)
            t_started = time.monotonic() - t0
            phases.append((f"{args.sessions} sessions started ({t_started:.2f} s)", c.proc_status_kb(stack.agent.pid)))
            sampler.phase = "running"
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(c.HERE), str(args.rate), "0", *paths],
                                      stdout=subprocess.PIPE, text=True)
            if writer.stdout.readline().strip() != "ready":
                raise c.BenchError("the writer process did not start")
            time.sleep(args.seconds / 2)
            smaps["steady state"] = smaps_by_kind(stack.agent.pid)
            time.sleep(args.seconds / 2)
            smaps["end of writing"] = smaps_by_kind(stack.agent.pid)
            phases.append((f"after {args.seconds:g} s of writing", c.proc_status_kb(stack.agent.pid)))
            writer.send_signal(signal.SIGTERM)
            out, _ = writer.communicate(timeout=60)
            written = int(out.split()[-1])
            sampler.phase = "ending"
            ended_early = 0
            for conn in conns:
                try:
                    conn.request({"op": "end", "status": "ok"})
                except (OSError, c.BenchError):
                    # The agent closed the run (and the connection) when it read
                    # the TRAILER, before `end` came: see BENCHMARKS.md.
                    stack.check_alive()
                    ended_early += 1
            m = c.wait_agent_idle(stack.agent_socket, timeout=120)
            phases.append(("every run closed", c.proc_status_kb(stack.agent.pid)))
            sampler.phase = "idle after"
            time.sleep(1.0)
            phases.append(("1 s later", c.proc_status_kb(stack.agent.pid)))
        except (OSError, c.BenchError):
            stack.check_alive()
            raise
        finally:
            if writer is not None and writer.poll() is None:
                writer.kill()
                writer.wait()
            for conn in conns:
                conn.close()
            codes = stack.stop()
            sampler.stop()
        c.stopped_cleanly(codes)

    samples_read = int(m["vmpv_agent_samples_total"])
    print()
    print(f"agent_sessions.py: {args.sessions} sessions, {args.rate:g} samples/s each for {args.seconds:g} s, "
          f"backlog {args.backlog} bytes per file at start; "
          f"{written} samples written live (+{args.sessions * backlog_samples} in backlogs), {samples_read} read by the agent "
          f"({int(m['vmpv_agent_sessions_total'])} sessions); {c.machine()}")
    if ended_early:
        print(f"note: {ended_early} sessions were closed by the agent on reading the TRAILER, before their `end` "
              f"(their `end` failed with a closed connection; the agent bug described in BENCHMARKS.md)")
    expected = written + args.sessions * backlog_samples
    if samples_read != expected:
        print(f"note: the agent read {samples_read} samples, the files hold {expected}")
    print(c.table(["moment", "VmRSS KiB", "VmHWM KiB", "VmSize KiB"],
                  [[name, s["VmRSS"], s["VmHWM"], s["VmSize"]] for name, s in phases]))
    print()
    print(c.table(["phase", "polls", "max VmRSS KiB", "max VmSize KiB"],
                  [[ph, v["n"], v["rss"], v["size"]] for ph, v in sampler.by_phase.items()]))
    print()
    smaps = {f"at the peak ({sampler.peak_rss} KiB)": sampler.peak_kinds, **smaps}
    kinds = sorted({k for s in smaps.values() for k in s})
    print(c.table(["resident KiB by mapping (smaps)", *smaps.keys()],
                  [[k, *[s.get(k, 0) for s in smaps.values()]] for k in kinds]))
    print()
    print(c.table(["largest resident mappings at the peak: RSS KiB", "size KiB", "mapping"], sampler.peak_top))
    peak = max(max((s[2] for s in sampler.samples), default=0), max(s["VmHWM"] for _, s in phases))
    base = phases[0][1]["VmRSS"]
    print()
    print(c.table(["peak RSS (VmHWM) KiB", "MiB", "target MiB", "met", "idle RSS KiB", "per session KiB"],
                  [[peak, f"{peak / 1024:.1f}", TARGET_KB // 1024, "yes" if peak < TARGET_KB else
                    f"NO (+{(peak - TARGET_KB) / 1024:.1f} MiB)", base, f"{(peak - base) / args.sessions:.0f}"]]))
    return 0


if __name__ == "__main__":
    c.main_guard(main)
