"""vmpv-agent under failure: killed mid-run, relay away, buffer at its bound."""
from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

from harness import (PYTHON, Pipeline, agent_metrics, assert_run_matches_vmprof, start_daemon,
                     wait_for_run)

LONG_WORKLOAD = textwrap.dedent('''
    import sys, time
    import vmprof_viewer_client

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    @vmprof_viewer_client.profile(period=0.002)
    def work(seconds):
        keep = []
        end = time.process_time() + seconds
        while time.process_time() < end:
            fib(20)
            keep.append(bytearray(64 * 1024))
        return len(keep)

    vmprof_viewer_client.configure("Agent project")
    print("started", flush=True)
    work(float(sys.argv[1]))
    print(vmprof_viewer_client.last_run_id(), flush=True)
''')


def start_workload(p: Pipeline, seconds: float) -> subprocess.Popen[str]:
    path = p.tmp / "long.py"
    path.write_text(LONG_WORKLOAD)
    env = p.env()
    env["VMPV_KEEP_PROFILES"] = "1"
    return subprocess.Popen([PYTHON, str(path), str(seconds)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.strip().splitlines()[-1], err


def arrives_whole(pipeline: Pipeline, run_id: str) -> dict:
    """Waits until run_id is complete at the server and checks it against
    vmprof's own reading of the profile file the client wrote; returns
    that reading."""
    run = wait_for_run(pipeline.server_url, run_id, timeout=60)
    assert run["status"] == "complete", run
    profile = Path(pipeline.env()["VMPV_SPOOL_DIR"]) / f"{run_id}.prof"
    return assert_run_matches_vmprof(pipeline.server_url, run_id, profile)


def test_agent_killed_mid_run_resumes_and_loses_nothing(pipeline: Pipeline) -> None:
    proc = start_workload(pipeline, 4.0)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(1.5)
    pipeline.restart_agent()  # SIGKILL, then the same flags and data directory
    run_id, err = finish(proc)
    assert len(run_id) == 32
    # Complete: the trailer vmprof wrote at disable() was read by the new agent.
    truth = arrives_whole(pipeline, run_id)
    assert truth["samples"] > 100
    m = agent_metrics(pipeline.agent_socket)
    assert m["vmpv_agent_sessions_recovered_total"] == 1


def test_relay_away_then_back_delivers_everything(pipeline: Pipeline) -> None:
    pipeline.relay.stop()
    proc = start_workload(pipeline, 1.5)
    run_id, _ = finish(proc)
    time.sleep(0.5)
    m = agent_metrics(pipeline.agent_socket)
    assert m["vmpv_agent_buffered_bytes"] > 0, "batches wait on the agent's disk"
    pipeline.relay = start_daemon("vmpv-relay", pipeline.relay_args, pipeline.tmp / "relay-run")
    arrives_whole(pipeline, run_id)


def test_relay_killed_mid_run_nothing_acknowledged_is_lost(pipeline: Pipeline) -> None:
    proc = start_workload(pipeline, 3.0)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(1.0)
    pipeline.restart_relay()  # SIGKILL, same port and spool
    run_id, _ = finish(proc)
    arrives_whole(pipeline, run_id)


def test_full_buffer_refuses_new_runs_with_a_clear_error(tmp_path: Path) -> None:
    """No relay at all and a 64 KiB bound: the first runs fill the buffer, the
    next start is refused (counted), and that client keeps its file."""
    sock = str(tmp_path / "agent.sock")
    agent = start_daemon("vmpv-agent", ["--socket", sock, "--relay", "tcp://127.0.0.1:9",
                                        "--data", str(tmp_path / "agent"),
                                        "--max-buffer-bytes", str(64 << 10)], tmp_path / "agent-run")
    try:
        env = dict(os.environ, VMPV_AGENT_SOCKET=sock, VMPV_SPOOL_DIR=str(tmp_path / "spool"),
                   VMPV_URL="")
        script = tmp_path / "big.py"
        script.write_text(textwrap.dedent('''
            import vmprof_viewer_client
            def fib(n):
                return n if n < 2 else fib(n - 1) + fib(n - 2)
            def deep(n):
                return deep(n - 1) if n else fib(20)
            @vmprof_viewer_client.profile(period=0.001)
            def work():
                for _ in range(40):
                    deep(300)
            vmprof_viewer_client.configure("Full project")
            work()
        '''))
        deadline = time.monotonic() + 60
        refused = None
        while time.monotonic() < deadline:
            out = subprocess.run([PYTHON, str(script)], env=env, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            if "vmpv-agent is full" in out.stderr:
                refused = out
                break
        assert refused is not None, "the agent never refused a run"
        assert len([l for l in refused.stderr.splitlines() if "vmprof-viewer" in l]) == 1
        import re
        kept = re.search(r"profile kept in (\S+)", refused.stderr)
        assert kept and Path(kept.group(1)).stat().st_size > 0, refused.stderr
        m = agent_metrics(sock)
        assert m['vmpv_agent_refusals_total{reason="buffer_full"}'] >= 1
        assert m["vmpv_agent_buffered_bytes"] >= 64 << 10
    finally:
        assert agent.stop() == 0, agent.log()[-2000:]


def test_agent_serves_healthz_and_metrics_over_http(tmp_path: Path) -> None:
    from harness import http_json
    agent = start_daemon("vmpv-agent", ["--socket", str(tmp_path / "a.sock"), "--relay", "tcp://127.0.0.1:9",
                                        "--data", str(tmp_path / "agent"), "--metrics-listen", "127.0.0.1:0"],
                         tmp_path / "agent-run")
    try:
        url = next(l.split("metrics on ")[1].strip() for l in agent.log().splitlines() if "metrics on " in l)
        status, text = http_json(url)
        assert status == 200
        for name in ("vmpv_agent_sessions_active", "vmpv_agent_buffered_bytes",
                     'vmpv_agent_refusals_total{reason="buffer_full"}', "vmpv_agent_samples_total"):
            assert f"\n{name} " in "\n" + text, name
        status, body = http_json(url.replace("/metrics", "/healthz"))
        assert status == 200 and body.strip() == "ok"
    finally:
        assert agent.stop() == 0, agent.log()[-2000:]


def test_agent_killed_again_and_again_still_exactly_once(pipeline: Pipeline) -> None:
    """SIGKILL at several moments of one run (some land while a batch and
    the run's state are being written): every sample arrives once."""
    proc = start_workload(pipeline, 5.0)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    for pause in (0.7, 0.9, 1.1, 0.5):
        time.sleep(pause)
        pipeline.restart_agent()
    run_id, _ = finish(proc)
    truth = arrives_whole(pipeline, run_id)
    assert truth["samples"] > 200


def _frame(sock, payload: bytes) -> None:
    import struct
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def _reply(sock) -> dict:
    import json
    import struct
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    n = struct.unpack(">I", head)[0]
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return json.loads(body)


def test_hostile_client_requests_get_clear_errors_and_harm_nobody(pipeline: Pipeline) -> None:
    import json
    import socket
    import struct
    cases = [
        (b"not json at all", "not a JSON object"),
        (json.dumps({"v": 2, "op": "start"}).encode(), "unsupported protocol version"),
        (json.dumps({"v": 1, "op": "explode"}).encode(), "unknown op"),
        (json.dumps({"v": 1, "op": "start", "run": "zz", "path": "/x", "project": "p",
                     "function": "f"}).encode(), "32 hex digits"),
        (json.dumps({"v": 1, "op": "start", "run": "0" * 32, "path": "/x", "project": "p" * 5000,
                     "function": "f"}).encode(), "at most"),
        (json.dumps({"v": 1, "op": "end", "status": "ok"}).encode(), "no run in progress"),
    ]
    for payload, expected in cases:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(pipeline.agent_socket)
            _frame(s, payload)
            reply = _reply(s)
            assert reply["ok"] is False and expected in reply["error"], (payload[:40], reply)
    with socket.socket(socket.AF_UNIX) as s:  # a frame over the 64 KiB bound
        s.settimeout(5)
        s.connect(pipeline.agent_socket)
        s.sendall(struct.pack(">I", 1 << 30))
        reply = _reply(s)
        assert reply["ok"] is False and "64 KiB" in reply["error"]
        assert s.recv(1) == b"", "the agent closes such a connection"
    # Nothing else was harmed: a real run still goes through.
    run_id, _ = finish(start_workload(pipeline, 0.3))
    assert wait_for_run(pipeline.server_url, run_id)["status"] == "complete"
    m = agent_metrics(pipeline.agent_socket)
    assert m['vmpv_agent_refusals_total{reason="bad_request"}'] >= 4


def test_a_run_closes_with_the_clients_end_even_after_the_trailer(pipeline: Pipeline, tmp_path: Path) -> None:
    """vmprof writes its trailer at disable(), before the client sends `end`:
    the agent must wait for `end` so that a raised exception is recorded."""
    import json
    import os
    import socket
    import textwrap as tw
    prof = tmp_path / "done.prof"
    subprocess.run([PYTHON, "-c", tw.dedent(f'''
        import vmprof
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        with open({str(prof)!r}, "w+b") as f:
            vmprof.enable(f.fileno(), period=0.005, memory=True, native=False)
            fib(22)
            vmprof.disable()
    ''')], check=True, timeout=60)
    run_id = os.urandom(16).hex()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(pipeline.agent_socket)
        _frame(s, json.dumps({"v": 1, "op": "start", "run": run_id, "path": str(prof), "project": "P",
                              "function": "boom", "pid": os.getpid(), "owned": False}).encode())
        assert _reply(s)["ok"] is True
        time.sleep(0.6)  # the agent has read the whole file, trailer included
        _frame(s, json.dumps({"v": 1, "op": "end", "status": "error",
                              "error": "ValueError('boom')"}).encode())
        assert _reply(s)["ok"] is True
    run = wait_for_run(pipeline.server_url, run_id)
    assert run["status"] == "failed", run
    assert "ValueError('boom')" in (run["error"] or "")


def _agent_data_dir(p: Pipeline) -> Path:
    return Path(p.agent_args[p.agent_args.index("--data") + 1])


def test_torn_log_entries_are_cut_and_nothing_is_lost(pipeline: Pipeline) -> None:
    """An agent killed while appending to a run log leaves a torn last entry
    (proto/PROTOCOL.md, "Agent run log"): the next agent cuts it off and
    redoes that batch from the profile file. Two kinds: an entry cut short,
    and a whole entry whose bytes do not match its CRC."""
    import signal
    import struct
    proc = start_workload(pipeline, 4.0)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    runs = _agent_data_dir(pipeline) / "runs"
    for torn in ("short", "bad crc"):
        time.sleep(1.0)
        pipeline.agent.stop(signal.SIGKILL)
        logs = sorted(runs.glob("*.log"))
        assert len(logs) == 1, logs
        data = logs[0].read_bytes()
        assert data[:4] == b"VPAQ"
        # The last complete entry, copied and damaged, appended after it.
        off, last = 16, None
        while off + 16 <= len(data):
            blen, slen = struct.unpack_from("<II", data, off + 4)
            last = data[off:off + 16 + blen + slen]
            off += 16 + blen + slen
        assert off == len(data) and last
        if torn == "short":
            bad = last[:len(last) // 2]
        else:
            bad = last[:40] + bytes([last[40] ^ 0xFF]) + last[41:]
        with open(logs[0], "ab") as f:
            f.write(bad)
        pipeline.agent = start_daemon("vmpv-agent", pipeline.agent_args, pipeline.tmp / "agent-run")
        assert logs[0].stat().st_size == len(data), f"the {torn} entry was not cut off"
        assert "torn entry" in pipeline.agent.stderr_path.read_text()
    run_id, _ = finish(proc)
    truth = arrives_whole(pipeline, run_id)
    assert truth["samples"] > 100
    # The relay has the CLOSE: the run's log is gone.
    deadline = time.monotonic() + 10
    while list(runs.glob("*.log")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(runs.glob("*.log"))


def test_batches_queued_by_an_older_agent_stop_the_start_with_a_clear_error(tmp_path: Path) -> None:
    """An older agent queued one file per batch in DATA/queue; this one keeps
    runs in logs. Rather than leave those batches unsent, it refuses to start
    and says what to do."""
    from harness import binary
    queue = tmp_path / "agent" / "queue"
    queue.mkdir(parents=True)
    (queue / f"{'ab' * 16}-{1:020d}.vpb").write_bytes(b"VPVB")
    out = subprocess.run([str(binary("vmpv-agent")), "--socket", str(tmp_path / "a.sock"),
                          "--relay", "tcp://127.0.0.1:9", "--data", str(tmp_path / "agent")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "older vmpv-agent" in out.stderr and str(queue) in out.stderr, out.stderr
    assert (queue / f"{'ab' * 16}-{1:020d}.vpb").exists()
