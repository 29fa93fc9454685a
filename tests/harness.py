"""Shared fixtures: the real daemons on free loopback ports, state in temp dirs.

Nothing here is mocked: each fixture starts the built binaries (from
$VMPV_BUILD, default ./build) and waits for the one line each prints when it
is ready ("<program> listening on <address>").
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("VMPV_BUILD", ROOT / "build")).resolve()
READY_TIMEOUT = 20.0


def binary(name: str) -> Path:
    sub = name.split("-", 1)[1]
    path = BUILD / ("bench" if sub == "loadgen" else sub) / name
    if not path.exists():
        pytest.fail(f"{path} is not built (run the README's test command)")
    return path


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[str]
    address: str
    stderr_path: Path
    _stdout_lines: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def start_daemon(name: str, args: list[str], workdir: Path) -> Daemon:
    """Start a daemon and wait for its ready line; fail with its log if it dies."""
    workdir.mkdir(parents=True, exist_ok=True)
    err_path = workdir / f"{name}.stderr"
    err = open(err_path, "w")
    proc = subprocess.Popen(
        [str(binary(name)), *args],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        cwd=workdir,
    )
    err.close()
    found: list[str] = []

    def read_ready() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if " listening on " in line:
                found.append(line.strip().split(" listening on ", 1)[1])
                break
        # Keep draining so the daemon never blocks on a full pipe.
        for _ in proc.stdout:
            pass

    t = threading.Thread(target=read_ready, daemon=True)
    t.start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not found and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if not found:
        proc.kill()
        proc.wait()
        pytest.fail(f"{name} did not become ready: {err_path.read_text(errors='replace')[-3000:]}")
    return Daemon(name, proc, found[0], err_path)


@dataclass
class Pipeline:
    server: Daemon
    relay: Daemon
    agent: Daemon
    server_url: str
    agent_socket: str
    tmp: Path
    agent_args: list[str] = field(default_factory=list)
    relay_args: list[str] = field(default_factory=list)

    def restart_agent(self, sig: int = signal.SIGKILL) -> None:
        self.agent.stop(sig)
        self.agent = start_daemon("vmpv-agent", self.agent_args, self.tmp / "agent-run")

    def restart_relay(self, sig: int = signal.SIGKILL) -> None:
        self.relay.stop(sig)
        self.relay = start_daemon("vmpv-relay", self.relay_args, self.tmp / "relay-run")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["VMPV_AGENT_SOCKET"] = self.agent_socket
        env["VMPV_URL"] = self.server_url
        env["VMPV_SPOOL_DIR"] = str(self.tmp / "client-spool")
        return env


def start_server(tmp: Path, *extra: str, store: str | None = None) -> Daemon:
    """A vmpv-server on a free port. The store is `store`, else $VMPV_TEST_DB,
    else SQLite in tmp/server; "postgres" gives it a fresh database of the
    session's PostgreSQL."""
    web = ROOT / "web" / "dist"
    store = store or os.environ.get("VMPV_TEST_DB") or "sqlite"
    d = start_daemon(
        "vmpv-server",
        ["--listen", "127.0.0.1:0", "--data", str(tmp / "server"), "--web", str(web),
         *store_args(store), *extra],
        tmp / "server-run",
    )
    if store == "postgres" and "store PostgreSQL" not in d.log():
        d.stop()
        pytest.fail(f"{binary('vmpv-server')} does not store in PostgreSQL: {d.log()[-2000:]}")
    return d


# ---- stores: SQLite in a temp dir, or a database of a real PostgreSQL ----------

STORES = ("sqlite", "postgres")


def server_stores() -> list[str]:
    """The stores the server-facing tests run against: both, unless
    $VMPV_TEST_DB names one."""
    want = os.environ.get("VMPV_TEST_DB")
    if want and want not in STORES:
        raise ValueError(f"VMPV_TEST_DB must be one of {STORES}, not {want!r}")
    return [want] if want else list(STORES)


def store_args(store: str) -> list[str]:
    """vmpv-server flags for a store: none for SQLite (--data decides),
    --db URL of a fresh database for PostgreSQL."""
    if store == "sqlite":
        return []
    if store == "postgres":
        return ["--db", postgres().new_database()]
    raise ValueError(f"unknown store {store!r}")


def pg_bin_dir() -> Path | None:
    env = os.environ.get("VMPV_PG_BIN")
    if env:
        return Path(env)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


class PgCluster:
    """A throwaway PostgreSQL cluster for one test session: initdb into a
    temp dir, pg_ctl start on a free loopback port with its socket in that
    dir, one fresh database per server (CREATE DATABASE test_<n>), and
    pg_ctl stop at the end. initdb refuses to run as root, so as root the
    cluster belongs to the `postgres` system user (runuser)."""

    def __init__(self, bindir: Path) -> None:
        import tempfile
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="vmpv-pg-"))
        self.data = self.dir / "data"
        self.port = 0
        self.started = False
        self._n = 0
        self._lock = threading.Lock()
        self._as = []
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd: str, timeout: float = 60) -> str:
        r = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=timeout,
                           cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stdout}{r.stderr}"
                               f"{self.log()[-3000:]}")
        return r.stdout

    def log(self) -> str:
        try:
            return (self.dir / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        # Tests need no durability: fsync off makes CREATE DATABASE and
        # commits fast. The port can be taken between free_port() and the
        # bind: try a few.
        for attempt in range(5):
            self.port = free_port()
            opts = (f"-c port={self.port} -c listen_addresses=127.0.0.1"
                    f" -c unix_socket_directories={self.dir} -c max_connections=300"
                    " -c fsync=off -c full_page_writes=off -c synchronous_commit=off")
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.dir / "postgres.log"), "-o", opts, "-w", "-t", "60", "start")
                self.started = True
                return
            except RuntimeError:
                if attempt == 4:
                    raise

    def psql(self, sql: str, db: str = "postgres") -> str:
        r = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                            "-c", sql], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {r.stderr}")
        return r.stdout

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        with self._lock:
            self._n += 1
            name = f"test_{self._n}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def restart(self) -> None:
        """pg_ctl restart (fast shutdown): every connection is dropped."""
        # -l: else the new postmaster inherits (and holds open) our pipes.
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.dir / "postgres.log"), "-m", "fast", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        import shutil
        if self.started:
            self.started = False
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"stopping the test PostgreSQL: {e}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)


_pg: PgCluster | None = None
_pg_lock = threading.Lock()


def postgres() -> PgCluster:
    """The session's PostgreSQL, started on first use (stop_postgres ends it;
    conftest.py calls that when the session ends)."""
    global _pg
    with _pg_lock:
        if _pg is None:
            bindir = pg_bin_dir()
            if bindir is None or not (bindir / "initdb").exists():
                msg = "PostgreSQL is not installed (apt-get install postgresql, or set VMPV_PG_BIN)"
                if os.environ.get("VMPV_TEST_DB") == "postgres":
                    pytest.fail(msg)
                pytest.skip(msg)
            cluster = PgCluster(bindir)
            try:
                cluster.start()
            except BaseException:
                cluster.stop()
                raise
            _pg = cluster
            import atexit
            atexit.register(stop_postgres)  # if the session hook never runs
        return _pg


def stop_postgres() -> None:
    global _pg
    with _pg_lock:
        if _pg is not None:
            _pg.stop()
            _pg = None


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """The session's real PostgreSQL (see PgCluster)."""
    yield postgres()


@pytest.fixture(scope="session", autouse=True)
def _stop_postgres_at_exit() -> Iterator[None]:
    yield
    stop_postgres()


def free_port() -> int:
    """A loopback port that was free a moment ago (for daemons that restart
    and must keep their address)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    server = start_server(tmp_path)
    relay_args = ["--listen", f"tcp://127.0.0.1:{free_port()}", "--server", server.address,
                  "--data", str(tmp_path / "relay")]
    relay = start_daemon("vmpv-relay", relay_args, tmp_path / "relay-run")
    sock = str(tmp_path / "agent.sock")
    agent_args = ["--socket", sock, "--relay", relay.address, "--data", str(tmp_path / "agent")]
    agent = start_daemon("vmpv-agent", agent_args, tmp_path / "agent-run")
    p = Pipeline(server, relay, agent, server.address, sock, tmp_path, agent_args, relay_args)
    yield p
    for d in (p.agent, p.relay, p.server):
        code = d.stop()
        assert code == 0, f"{d.name} exited with {code} on SIGTERM:\n{d.log()[-3000:]}"


def agent_metrics(socket_path: str) -> dict[str, float]:
    """The agent's counters, through protocol A's `metrics` request."""
    import socket
    import struct
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(socket_path)
        body = json.dumps({"v": 1, "op": "metrics"}).encode()
        s.sendall(struct.pack(">I", len(body)) + body)
        n = struct.unpack(">I", s.recv(4))[0]
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
    reply = json.loads(data)
    out: dict[str, float] = {}
    for line in reply["metrics"].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def http_json(url: str, data: bytes | None = None, method: str | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body = e.read()
        status = e.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def wait_for_run(server_url: str, run_id: str, timeout: float = 30.0,
                 final: tuple[str, ...] = ("complete", "failed", "incomplete")) -> dict[str, Any]:
    """Poll the API until the run reaches a final status."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, last = http_json(f"{server_url}/api/runs/{run_id}")
        if status == 200 and last.get("status") in final:
            return last
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s; last answer: {last}")


# ---- the independent truth: vmprof's own reader --------------------------------

def split_name(name: str) -> tuple[str, str, int]:
    """vmprof's 'py:func:line:file' -> (func, file, line), as the API reports them."""
    parts = name.split(":", 3)
    if len(parts) == 4:
        try:
            return parts[1], parts[3], int(parts[2])
        except ValueError:
            pass
    return (parts[1] if len(parts) > 1 else name), "", 0


def vmprof_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Samples, peak RSS and per-function self/total counts per vmprof.read_profile."""
    import vmprof  # the sampler's own reader, not ours

    stats = vmprof.read_profile(str(path))
    names = stats.adr_dict
    self_count: dict[tuple[str, str, int], int] = {}
    total_count: dict[tuple[str, str, int], int] = {}
    for trace, _weight, _thread, _mem in stats.profiles:
        # Line mode interleaves negated line numbers; they are not frames.
        addrs = [int(a) for a in trace if int(a) > 0]
        keys = []
        for a in addrs:
            n = names.get(a)
            keys.append(split_name(n) if n else (f"<unknown 0x{a:x}>", "", 0))
        if not keys:
            continue
        self_count[keys[-1]] = self_count.get(keys[-1], 0) + 1
        for k in set(keys):
            total_count[k] = total_count.get(k, 0) + 1
    return {
        "samples": len(stats.profiles),
        "peak_rss_kb": max((p[3] for p in stats.profiles), default=0),
        "self": self_count,
        "total": total_count,
    }


def api_functions(server_url: str, run_id: str) -> tuple[dict, dict]:
    status, body = http_json(f"{server_url}/api/runs/{run_id}/functions")
    assert status == 200, body
    self_c = {(f["name"], f["file"], f["line"]): f["self"] for f in body["functions"] if f["self"]}
    total_c = {(f["name"], f["file"], f["line"]): f["total"] for f in body["functions"]}
    return self_c, total_c


def collapsed_counts(text: str) -> tuple[int, dict[str, int]]:
    """Total samples and per-leaf-label counts from flamegraph.pl collapsed text."""
    total = 0
    leaves: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        leaves[leaf] = leaves.get(leaf, 0) + n
    return total, leaves


def assert_run_matches_vmprof(server_url: str, run_id: str, profile: str | os.PathLike[str]) -> dict:
    truth = vmprof_truth(profile)
    status, run = http_json(f"{server_url}/api/runs/{run_id}")
    assert status == 200, run
    assert run["samples"] == truth["samples"]
    assert run["peak_rss_kb"] == truth["peak_rss_kb"]
    self_c, total_c = api_functions(server_url, run_id)
    assert self_c == truth["self"]
    assert total_c == truth["total"]
    status, text = http_json(f"{server_url}/api/runs/{run_id}/collapsed")
    assert status == 200
    total, leaves = collapsed_counts(text if isinstance(text, str) else json.dumps(text))
    assert total == truth["samples"]
    want_leaves = {f"{k[0]} ({k[1]}:{k[2]})": v for k, v in truth["self"].items()}
    assert leaves == want_leaves
    return truth


PYTHON = sys.executable
