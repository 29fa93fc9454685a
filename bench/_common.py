"""Shared helpers for the capture-side benchmarks (not a benchmark itself).

- start the built daemons (build/{agent,relay,server}/vmpv-*) and wait for
  their "<name> listening on <addr>" line, as tests/harness.py does;
- speak protocol A (proto/PROTOCOL.md) to vmpv-agent;
- read CPU time and memory of a process from /proc;
- record a real vmprof profile, split it into records, and write synthetic
  but valid vmprof files by replicating its real STACKTRACE records;
- medians, percentiles and a plain-text table.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _default_build() -> Path:
    """$VMPV_BUILD, else build-release/ (a release tree, as bench/README.md
    says to make) if it is built, else build/."""
    if os.environ.get("VMPV_BUILD"):
        return Path(os.environ["VMPV_BUILD"]).resolve()
    release = ROOT / "build-release"
    if (release / "agent" / "vmpv-agent").exists():
        return release
    return ROOT / "build"


BUILD = _default_build()
READY_TIMEOUT = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """Something went wrong: the benchmark exits non-zero with this message."""


# ---- daemons -----------------------------------------------------------------

def binary(name: str) -> Path:
    path = BUILD / name.split("-", 1)[1] / name
    if not path.exists():
        raise BenchError(f"{path} is not built: run `ninja -C {BUILD}` first (or set VMPV_BUILD)")
    return path


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen
    address: str
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""


def start_daemon(name: str, args: List[str], workdir: Path) -> Daemon:
    workdir.mkdir(parents=True, exist_ok=True)
    err_path = workdir / f"{name}.stderr"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([str(binary(name)), *args], stdout=subprocess.PIPE,
                                stderr=err, text=True, cwd=workdir)
    found: List[str] = []

    def read_ready() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if " listening on " in line:
                found.append(line.strip().split(" listening on ", 1)[1])
                break
        for _ in proc.stdout:  # keep draining: never block the daemon on a full pipe
            pass

    threading.Thread(target=read_ready, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not found and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if not found:
        proc.kill()
        proc.wait()
        raise BenchError(f"{name} did not become ready:\n{err_path.read_text(errors='replace')[-3000:]}")
    return Daemon(name, proc, found[0], err_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    """agent + relay (+ server), in one temporary directory."""
    tmp: Path
    relay: Daemon
    agent: Daemon
    agent_socket: str
    server: Optional[Daemon] = None
    _owned_tmp: Optional[tempfile.TemporaryDirectory] = None

    @property
    def spool_db(self) -> Path:
        return self.tmp / "relay" / "spool.sqlite"

    def check_alive(self) -> None:
        """BenchError with the exit status and log of a daemon that died."""
        for d in (self.agent, self.relay, self.server):
            if d is not None and d.proc.poll() is not None:
                raise BenchError(f"{d.name} exited with status {d.proc.returncode} during the benchmark; "
                                 f"its log ends with:\n{d.log()[-2000:]}")

    def stop(self) -> Dict[str, int]:
        codes = {}
        for d in (self.agent, self.relay, self.server):
            if d is not None:
                codes[d.name] = d.stop()
        if self._owned_tmp is not None:
            self._owned_tmp.cleanup()
        return codes

    # `with start_stack(...) as stack:` stops the daemons on the way out and,
    # unless the block is already failing, raises if one did not stop cleanly.
    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        codes = self.stop()
        if kind is None:
            stopped_cleanly(codes)


def stopped_cleanly(codes: Dict[str, int]) -> None:
    """BenchError if a daemon's exit status (Stack.stop) was not 0."""
    if any(codes.values()):
        raise BenchError(f"a daemon did not stop cleanly: {codes}")


def start_stack(with_server: bool = False, agent_args: Sequence[str] = (),
                relay_args: Sequence[str] = (), tmp: Optional[Path] = None) -> Stack:
    """vmpv-relay (with no server behind it unless with_server: the batches
    then stay in its spool) and vmpv-agent sending to it."""
    owned = None
    if tmp is None:
        owned = tempfile.TemporaryDirectory(prefix="vmpv-bench-")
        tmp = Path(owned.name)
    server = None
    if with_server:
        server = start_daemon("vmpv-server", ["--listen", "127.0.0.1:0", "--data", str(tmp / "server")],
                              tmp / "server-run")
        server_url = server.address
        if "://" not in server_url:
            server_url = "http://" + server_url
    else:
        server_url = f"http://127.0.0.1:{free_port()}"  # nobody there: batches stay spooled
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", server_url,
                                        "--data", str(tmp / "relay"), "--log-level", os.environ.get("VMPV_BENCH_RELAY_LOG", "warn"),
                                        *relay_args], tmp / "relay-run")
    sock = str(tmp / "agent.sock")
    agent = start_daemon("vmpv-agent", ["--socket", sock, "--relay", relay.address,
                                        "--data", str(tmp / "agent"), "--log-level", "warn",
                                        *agent_args], tmp / "agent-run")
    return Stack(tmp, relay, agent, sock, server, owned)


def client_env(stack: "Stack", tmp: Path) -> Dict[str, str]:
    """The environment of a profiled child using stack's agent: no VMPV_*
    of ours leaks in, and a fixed hash seed, so the workload's dicts of str
    keys do the same work in every child (randomized hashing is one source
    of run-to-run spread that has nothing to do with profiling)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPV_")}
    env.update(VMPV_AGENT_SOCKET=stack.agent_socket, VMPV_SPOOL_DIR=str(tmp / "client-spool"),
               PYTHONHASHSEED="0")
    return env


# ---- protocol A ----------------------------------------------------------------

class AgentConn:
    """One connection to vmpv-agent (one run per connection)."""

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def send(self, msg: dict) -> None:
        body = json.dumps(dict(msg, v=1)).encode()
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def recv(self) -> dict:
        n = struct.unpack(">I", self._exact(4))[0]
        return json.loads(self._exact(n))

    def request(self, msg: dict) -> dict:
        self.send(msg)
        reply = self.recv()
        if reply.get("ok") is not True:
            raise BenchError(f"agent refused {msg.get('op')}: {reply.get('error')}")
        return reply

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise BenchError("agent closed the connection")
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def start_fields(run_id: str, path: str, function: str = "bench", period: float = 0.01,
                 pid: Optional[int] = None, owned: bool = False) -> dict:
    return {"run": run_id, "project": "vmpv-bench", "function": function, "path": path,
            "period": period, "pid": os.getpid() if pid is None else pid,
            "host": socket.gethostname(), "tags": {}, "start": time.time(), "owned": owned}


def agent_metrics(sock_path: str) -> Dict[str, float]:
    c = AgentConn(sock_path, timeout=10)
    try:
        reply = c.request({"op": "metrics"})
    finally:
        c.close()
    out = {}
    for line in reply["metrics"].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_agent_idle(sock_path: str, timeout: float = 60.0) -> Dict[str, float]:
    """Wait until the agent reads no run any more; return its metrics."""
    deadline = time.monotonic() + timeout
    while True:
        m = agent_metrics(sock_path)
        if m.get("vmpv_agent_sessions_active", 0) == 0:
            return m
        if time.monotonic() > deadline:
            raise BenchError(f"agent still has active sessions after {timeout}s: {m}")
        time.sleep(0.01)


def new_run_id() -> str:
    return os.urandom(16).hex()


# ---- /proc ---------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK  # fields 14 and 15


def proc_status_kb(pid: int, keys: Iterable[str] = ("VmRSS", "VmHWM", "VmSize")) -> Dict[str, int]:
    out = {}
    wanted = set(keys)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in wanted:
                out[k] = int(v.split()[0])
    return out


def build_kind(name: str = "vmpv-agent") -> str:
    """'release' or 'SANITIZED (...)': a sanitizer build makes every figure
    meaningless, so benchmarks print this with their results."""
    try:
        out = subprocess.run(["ldd", str(binary(name))], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError, BenchError):
        return "unknown build"
    san = [s for s in ("asan", "ubsan", "tsan", "msan") if f"lib{s}." in out]
    return f"SANITIZED BUILD ({', '.join(san)}): figures not representative" if san else "no sanitizers"


def warn_if_sanitized() -> None:
    kind = build_kind()
    if kind.startswith("SANITIZED"):
        print(f"warning: {BUILD} is a {kind}; build a release tree and set VMPV_BUILD "
              f"(see bench/README.md)", file=sys.stderr, flush=True)


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({model}), Linux {os.uname().release}, Python {sys.version.split()[0]}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; binaries {BUILD} ({build_kind()})")


# ---- vmprof files ------------------------------------------------------------

STATIC_HEADER = 40


@dataclass
class Profile:
    """A vmprof file split into its parts."""
    head: bytes                       # static header .. the records before the first sample
    stacks: List[bytes]               # every STACKTRACE record, in file order
    names: List[bytes]                # every VIRTUAL_IP / NATIVE_SYMBOLS record
    trailer: bytes                    # the TRAILER record (b"" if none)
    version: int
    mode: int
    period_us: int
    time_off: List[int] = field(default_factory=list)  # offset of the s64 time in each stack (v7), -1 if none


def parse_profile(data: bytes, allow_empty: bool = False) -> Profile:
    """Split a 64-bit little-endian vmprof file into records (for replicating)."""
    if len(data) < STATIC_HEADER or data[8:16] != b"\x03" + b"\x00" * 7:
        raise BenchError("not a 64-bit little-endian vmprof file")
    period_us = struct.unpack_from("<q", data, 24)[0]
    pos = STATIC_HEADER
    if data[pos] != 0x05:
        raise BenchError("no HEADER record after the static header")
    version = struct.unpack_from(">H", data, pos + 1)[0]
    mode = data[pos + 3]
    pos += 5 + data[pos + 4]
    head_end = None
    stacks: List[bytes] = []
    time_off: List[int] = []
    names: List[bytes] = []
    trailer = b""
    memory = 8 if mode & 0x01 else 0
    timew = 8 if version >= 7 else 0
    while pos < len(data):
        m = data[pos]
        if m == 0x01:
            if head_end is None:
                head_end = pos
            depth = struct.unpack_from("<q", data, pos + 9)[0]
            size = 17 + 8 * depth + 8 + memory + timew
            if pos + size > len(data):
                break
            stacks.append(data[pos:pos + size])
            time_off.append(17 + 8 * depth + 8 + memory if timew else -1)
        elif m in (0x02, 0x08):
            n = struct.unpack_from("<q", data, pos + 9)[0]
            size = 17 + n
            if head_end is not None:
                names.append(data[pos:pos + size])
        elif m in (0x03, 0x06):
            size = 25 if version >= 5 or m == 0x06 else 1
            if m == 0x03:
                trailer = data[pos:pos + size]
                break
        elif m == 0x07:
            k = struct.unpack_from("<q", data, pos + 1)[0]
            v = struct.unpack_from("<q", data, pos + 9 + k)[0]
            size = 17 + k + v
        else:
            raise BenchError(f"unknown record marker 0x{m:02x} at offset {pos}")
        pos += size
    if head_end is None:
        if not allow_empty:
            raise BenchError("the profile has no samples")
        head_end = pos
    return Profile(data[:head_end], stacks, names, trailer, version, mode, period_us, time_off)


class SyntheticWriter:
    """Writes a valid vmprof file of `samples` STACKTRACE records, replicating
    the real records of `src` in their order. Each copy of the sequence shifts
    the s64 sample time (v7) by the span of the original, so time still grows;
    every other byte (stacks, thread id, RSS) is as vmprof wrote it. The
    real file's name records and a TRAILER follow the samples."""

    def __init__(self, src: Profile) -> None:
        self.src = src
        t = [struct.unpack_from("<q", r, o)[0] for r, o in zip(src.stacks, src.time_off) if o >= 0]
        self.span = (t[-1] - t[0] + src.period_us * 1000) if len(t) > 1 else 0

    def samples(self, count: int) -> Iterable[bytes]:
        src = self.src
        n = len(src.stacks)
        for i in range(count):
            rec = src.stacks[i % n]
            off = src.time_off[i % n]
            copy = i // n
            if off >= 0 and copy:
                t = struct.unpack_from("<q", rec, off)[0] + copy * self.span
                rec = rec[:off] + struct.pack("<q", t) + rec[off + 8:]
            yield rec

    def tail(self) -> bytes:
        trailer = self.src.trailer or (b"\x03" + struct.pack("<qq", int(time.time()), 0) + b"\x00" * 8)
        return b"".join(self.src.names) + trailer

    def write(self, path: str, count: int) -> int:
        """The whole file at once; returns its size."""
        with open(path, "wb") as f:
            f.write(self.src.head)
            buf = []
            size = 0
            for rec in self.samples(count):
                buf.append(rec)
                size += len(rec)
                if size > 1 << 20:
                    f.write(b"".join(buf))
                    buf, size = [], 0
            f.write(b"".join(buf))
            f.write(self.tail())
            return f.tell()


RECORD_SCRIPT = r"""
import os, sys, vmprof
sys.path.insert(0, sys.argv[3])
import workload
units = workload.calibrate(float(sys.argv[2]))
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
vmprof.enable(fd, period=float(sys.argv[4]), memory=True, native=False)
workload.run(units)
vmprof.disable()
os.close(fd)
"""


def record_real_profile(path: str, cpu_seconds_: float = 8.0, period: float = 0.001) -> Profile:
    """Profile bench/workload.py with vmprof (memory=True, native=False, as
    the client does) for about cpu_seconds_ of CPU; return the parsed file."""
    subprocess.run([sys.executable, "-c", RECORD_SCRIPT, path, str(cpu_seconds_), str(HERE), str(period)],
                   check=True)
    with open(path, "rb") as f:
        return parse_profile(f.read())


def real_profile(cache_dir: Optional[str] = None, cpu_seconds_: float = 8.0) -> Tuple[str, Profile]:
    """A real profile of the workload, recorded once and cached (in
    $VMPV_BENCH_CACHE or the temp directory) so that every benchmark replicates
    the same records."""
    cache_dir = cache_dir or os.environ.get("VMPV_BENCH_CACHE") or os.path.join(tempfile.gettempdir(), "vmpv-bench-cache")
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, "real-workload.prof")
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                return path, parse_profile(f.read())
        except BenchError:
            pass
    prof = record_real_profile(path + ".tmp", cpu_seconds_)
    os.replace(path + ".tmp", path)
    return path, prof


# ---- statistics and output -----------------------------------------------------

def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def bootstrap_ci(xs: Sequence[float], level: float = 0.95, n: int = 2000, seed: int = 1) -> Tuple[float, float]:
    """Percentile bootstrap confidence interval of the median."""
    if not xs:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(n))
    lo = meds[int((1 - level) / 2 * n)]
    hi = meds[min(n - 1, int((1 + level) / 2 * n))]
    return lo, hi


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if j and i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def shuffled(xs: Sequence, rng: random.Random) -> list:
    out = list(xs)
    rng.shuffle(out)
    return out


def main_guard(fn) -> None:
    """Run a benchmark's main: BenchError -> message and exit 1."""
    try:
        code = fn()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)
