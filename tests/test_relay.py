"""vmpv-relay: TLS and tokens at intake, a fleet spread over two relays."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from harness import (Pipeline, assert_run_matches_vmprof, binary, free_port, http_json, start_daemon,
                     start_server, wait_for_run)
from synthetic import loadgen, make_profile, runs_sent
from test_agent import finish, start_workload


def make_cert(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    both = tmp / "relay.pem"
    both.write_text(cert.read_text() + key.read_text())
    return both, cert


def test_tls_intake_with_token_and_a_stranger_refused(tmp_path: Path) -> None:
    both, ca = make_cert(tmp_path)
    server = start_server(tmp_path, "--token", "server-secret")
    relay = start_daemon("vmpv-relay", ["--listen", "tls+tcp://127.0.0.1:0", "--tls-cert-key", str(both),
                                        "--token", "agent-secret", "--server", server.address,
                                        "--server-token", "server-secret", "--data", str(tmp_path / "relay")],
                         tmp_path / "relay-run")
    assert relay.address.startswith("tls+tcp://127.0.0.1:")
    common = ["--relay", relay.address, "--tls-ca", str(ca), "--tls-server-name", "localhost"]
    good = start_daemon("vmpv-agent", ["--socket", str(tmp_path / "good.sock"), "--token", "agent-secret",
                                       "--data", str(tmp_path / "good"), *common], tmp_path / "good-run")
    bad = start_daemon("vmpv-agent", ["--socket", str(tmp_path / "bad.sock"), "--token", "wrong",
                                      "--data", str(tmp_path / "bad"), *common], tmp_path / "bad-run")
    daemons = [bad, good, relay, server]
    try:
        p = Pipeline(server, relay, good, server.address, str(tmp_path / "good.sock"), tmp_path)
        run_id, _ = finish(start_workload(p, 0.5))
        wait_for_run(server.address, run_id)
        assert_run_matches_vmprof(server.address, run_id,
                                  Path(p.env()["VMPV_SPOOL_DIR"]) / f"{run_id}.prof")

        stranger = Pipeline(server, relay, bad, server.address, str(tmp_path / "bad.sock"), tmp_path / "s")
        (tmp_path / "s").mkdir()
        finish(start_workload(stranger, 0.3))
        deadline = time.monotonic() + 20
        while "refused our token" not in bad.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "refused our token" in bad.log()
        assert "wrong or missing token" in relay.log()
    finally:
        for d in daemons:
            assert d.stop() == 0, d.log()[-2000:]


def test_two_relays_an_agent_fails_over(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    relays = []
    for name in ("a", "b"):
        args = ["--listen", f"tcp://127.0.0.1:{free_port()}", "--server", server.address,
                "--data", str(tmp_path / f"relay-{name}")]
        relays.append(start_daemon("vmpv-relay", args, tmp_path / f"relay-{name}-run"))
    sock = str(tmp_path / "agent.sock")
    agent = start_daemon("vmpv-agent", ["--socket", sock, "--relay", ",".join(r.address for r in relays),
                                        "--data", str(tmp_path / "agent")], tmp_path / "agent-run")
    try:
        p = Pipeline(server, relays[0], agent, server.address, sock, tmp_path)
        first, _ = finish(start_workload(p, 0.5))
        wait_for_run(server.address, first)
        relays[0].stop()  # relay a goes away; b takes everything from now on
        proc = start_workload(p, 1.0)
        second, _ = finish(proc)
        for run_id in (first, second):
            run = wait_for_run(server.address, run_id, timeout=60)
            assert run["status"] == "complete"
            assert_run_matches_vmprof(server.address, run_id,
                                      Path(p.env()["VMPV_SPOOL_DIR"]) / f"{run_id}.prof")
    finally:
        for d in (agent, *relays, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_200_agents_at_once_every_sample_arrives(tmp_path: Path) -> None:
    """200 simulated agents (real nng connections, real batches cut from a
    generated profile with a known sample count) send one run each."""
    from harness import http_json
    samples_per_run = 3000
    profile = make_profile(tmp_path / "synthetic.dat", samples_per_run)
    server = start_server(tmp_path)
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", server.address,
                                        "--data", str(tmp_path / "relay"), "--metrics-listen", "127.0.0.1:0"],
                         tmp_path / "relay-run")
    try:
        out = loadgen(relay.address, profile, "--agents", "200", "--runs", "1")
        sent = runs_sent(out)
        assert len(sent) == 200 and set(sent.values()) == {samples_per_run}
        for run_id in sent:
            run = wait_for_run(server.address, run_id, timeout=120)
            assert run["status"] == "complete"
            assert run["samples"] == samples_per_run
        metrics_url = next(l.split("metrics on ")[1].strip() for l in relay.log().splitlines() if "metrics on " in l)
        status, text = http_json(metrics_url)
        assert status == 200
        values = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l and l[0] != "#"}
        assert values["vmpv_relay_samples_total"] == 200 * samples_per_run
        assert values["vmpv_relay_duplicates_total"] == 0
        # The relay's own ack latency: one observation per acknowledgement the
        # agents received, and each no longer than the agent saw it, so the
        # relay's distribution lies at or below the agents' percentiles.
        words = next(l for l in out.splitlines() if l.startswith("agents ")).split()
        summary = dict(zip(words[::2], words[1::2]))
        acks = int(summary["batches"]) + int(summary["refused"])
        assert values["vmpv_relay_ack_seconds_count"] == acks
        buckets = sorted((float(k.split('"')[1]), v) for k, v in values.items()
                         if k.startswith("vmpv_relay_ack_seconds_bucket"))
        assert buckets[-1] == (float("inf"), acks)
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
        assert 0 < values["vmpv_relay_ack_seconds_sum"]
        for pct, key in ((0.5, "ack_p50_ms"), (0.99, "ack_p99_ms")):
            at_agent = float(summary[key]) / 1000
            within = next(n for le, n in buckets if le >= at_agent)
            assert within >= pct * acks, (key, at_agent, buckets)
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def established_to(pid: int, port: int) -> int:
    """TCP connections of process pid established to 127.0.0.1:port, as the
    kernel lists them (/proc/net/tcp, matched to pid's socket inodes)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


def spool_a_backlog(tmp_path: Path, runs: int = 24) -> tuple[list[str], dict[str, int]]:
    """runs runs of 20,000 samples in the spool of a relay that had no
    server, stopped; returns the flags that start it again on that spool,
    and the runs sent (id -> samples)."""
    profile = make_profile(tmp_path / "p.dat", 20000)
    args = ["--listen", "tcp://127.0.0.1:0", "--data", str(tmp_path / "relay")]
    relay = start_daemon("vmpv-relay", [*args, "--server", f"http://127.0.0.1:{free_port()}"],
                         tmp_path / "relay-run")
    try:
        sent = runs_sent(loadgen(relay.address, profile, "--agents", str(runs), "--runs", "1"))
    finally:
        assert relay.stop() == 0, relay.log()[-2000:]
    assert len(sent) == runs
    return args, sent


def test_sighup_reloads_the_token_and_forward_concurrency(tmp_path: Path) -> None:
    """Started from a config file with token "first" and one request at a
    time, the relay re-reads it on SIGHUP: from then on it forwards its
    backlog over several connections, refuses the old token and takes the
    new one; every run still arrives whole. A file it cannot use changes
    nothing."""
    import signal
    args, sent = spool_a_backlog(tmp_path, runs=48)
    server = start_server(tmp_path)
    port = int(server.address.rsplit(":", 1)[1].strip("/"))
    conf = tmp_path / "relay.conf"
    conf.write_text("token = first\nforward-concurrency = 1\n")
    ops = free_port()
    relay = start_daemon("vmpv-relay", ["--config", str(conf), *args, "--server", server.address,
                                        "--metrics-listen", f"127.0.0.1:{ops}"], tmp_path / "relay-run2")
    try:
        conf.write_text("token = second\nforward-concurrency = 4\n")
        relay.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "SIGHUP: reloaded" not in relay.log():
            assert time.monotonic() < deadline, relay.log()[-2000:]
            time.sleep(0.01)
        assert "forward-concurrency (4)" in relay.log()
        most = 0
        pending = set(sent)
        while pending:
            most = max(most, established_to(relay.proc.pid, port))
            for run_id in list(pending):
                status, run = http_json(f"{server.address}/api/runs/{run_id}")
                if status == 200 and run["status"] == "complete":
                    assert run["samples"] == sent[run_id]
                    pending.discard(run_id)
            assert time.monotonic() < deadline + 90, pending
        assert 2 <= most <= 4, most

        small = make_profile(tmp_path / "small.dat", 2000)
        with pytest.raises(subprocess.TimeoutExpired):  # refused again and again
            loadgen(relay.address, small, "--agents", "1", "--token", "first", timeout=3)
        _, text = http_json(f"http://127.0.0.1:{ops}/metrics")
        assert int(next(l.split()[-1] for l in text.splitlines()
                        if l.startswith('vmpv_relay_refusals_total{reason="token"}'))) > 0
        assert len(runs_sent(loadgen(relay.address, small, "--agents", "1", "--token", "second"))) == 1

        # A file that does not make sense is not applied: the token stays.
        conf.write_text("token = third\nforward-concurrency = 99\n")
        relay.proc.send_signal(signal.SIGHUP)
        while "SIGHUP: config not reloaded" not in relay.log():
            assert time.monotonic() < deadline + 90, relay.log()[-2000:]
            time.sleep(0.01)
        assert "forward-concurrency" in relay.log().split("SIGHUP: config not reloaded", 1)[1]
        assert len(runs_sent(loadgen(relay.address, small, "--agents", "1", "--token", "second"))) == 1
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_a_backlog_is_forwarded_several_runs_at_once_each_run_whole(tmp_path: Path) -> None:
    """A relay's spooled backlog of 24 runs goes to the server over
    --forward-concurrency 4 connections at once (counted by the kernel,
    never more than 4), one request per run at a time: every run arrives
    complete with the generator's sample count."""
    args, sent = spool_a_backlog(tmp_path)
    server = start_server(tmp_path)
    port = int(server.address.rsplit(":", 1)[1].strip("/"))
    ops = free_port()
    relay = start_daemon("vmpv-relay", [*args, "--server", server.address, "--forward-concurrency", "4",
                                        "--metrics-listen", f"127.0.0.1:{ops}"], tmp_path / "relay-run2")

    def in_flight() -> int:
        _, text = http_json(f"http://127.0.0.1:{ops}/metrics")
        return int(next(l.split()[-1] for l in text.splitlines()
                        if l.startswith("vmpv_relay_forward_in_flight ")))
    try:
        most = most_in_flight = 0
        pending = set(sent)
        deadline = time.monotonic() + 120
        while pending:
            most = max(most, established_to(relay.proc.pid, port))
            most_in_flight = max(most_in_flight, in_flight())
            for run_id in list(pending):
                status, run = http_json(f"{server.address}/api/runs/{run_id}")
                if status == 200 and run["status"] == "complete":
                    assert run["samples"] == sent[run_id]
                    pending.discard(run_id)
            assert time.monotonic() < deadline, pending
        most = max(most, established_to(relay.proc.pid, port))
        assert 2 <= most <= 4, most
        assert 1 <= most_in_flight <= 4, most_in_flight
        while in_flight() != 0:  # the spool is empty: nothing left to send
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_relay_killed_while_forwarding_a_backlog_stores_nothing_twice(tmp_path: Path) -> None:
    """The forwarder removes what the server confirmed in groups; SIGKILL
    while it forwards a backlog, then a restart: batches confirmed but still
    spooled go again, and the server takes each batch once (every run
    complete with exactly the generator's count)."""
    import signal
    args, sent = spool_a_backlog(tmp_path)
    server = start_server(tmp_path)
    port = free_port()
    relay = start_daemon("vmpv-relay", [*args, "--server", server.address, "--metrics-listen",
                                        f"127.0.0.1:{port}"], tmp_path / "relay-run2")
    try:
        deadline = time.monotonic() + 60
        while True:
            _, text = http_json(f"http://127.0.0.1:{port}/metrics")
            forwarded = int(next(l.split()[-1] for l in text.splitlines()
                                 if l.startswith("vmpv_relay_forwarded_total")))
            if forwarded >= 60:
                break
            assert time.monotonic() < deadline
            time.sleep(0.002)
        relay.stop(signal.SIGKILL)
        relay = start_daemon("vmpv-relay", [*args, "--server", server.address], tmp_path / "relay-run3")
        for run_id, samples in sent.items():
            run = wait_for_run(server.address, run_id, timeout=120)
            assert run["status"] == "complete" and run["samples"] == samples, run
        # The kill landed while confirmed batches were still spooled: they
        # went again, and the server knew them.
        _, text = http_json(f"{server.address}/metrics")
        assert int(next(l.split()[-1] for l in text.splitlines()
                        if l.startswith('vmpv_server_batches_total{result="duplicate"}'))) > 0
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_sigterm_exits_within_drain_ms_even_when_the_server_hangs(tmp_path: Path) -> None:
    """A server that takes connections and never answers holds every
    forwarding request; SIGTERM with --drain-ms 300 still ends the relay
    promptly after those 300 ms, cleanly, with every batch kept in the
    spool."""
    import signal
    import socket
    import sqlite3
    import threading
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    held = []

    def swallow() -> None:
        while True:
            try:
                conn, _ = hole.accept()
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    threading.Thread(target=swallow, daemon=True).start()
    profile = make_profile(tmp_path / "p.dat", 4000)
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--data", str(tmp_path / "relay"),
                                        "--server", f"http://127.0.0.1:{hole.getsockname()[1]}",
                                        "--drain-ms", "300"], tmp_path / "relay-run")
    try:
        out = loadgen(relay.address, profile, "--agents", "6", "--runs", "1")
        deadline = time.monotonic() + 10
        while not held:  # the forwarder is waiting for an answer now
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        code = relay.stop(signal.SIGTERM, timeout=30)
        took = time.monotonic() - started
    finally:
        relay.stop()
        hole.close()
        for c in held:
            c.close()
    assert code == 0, relay.log()[-2000:]
    assert took < 0.3 + 0.5, took  # drain-ms, then a prompt exit
    words = next(l for l in out.splitlines() if l.startswith("agents ")).split()
    batches = int(dict(zip(words[::2], words[1::2]))["batches"])
    db = sqlite3.connect(f"file:{tmp_path / 'relay' / 'spool.sqlite'}?mode=ro", uri=True)
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == batches
    db.close()


def test_a_batch_that_never_comes_is_recorded_as_a_gap(tmp_path: Path) -> None:
    """The agent side loses DATA batch 2 (vmpv-loadgen --skip-seq 2): after
    --gap-wait-ms the relay tells the server, which records the gap and
    keeps every other sample."""
    profile = make_profile(tmp_path / "p.dat", 20000)
    server = start_server(tmp_path)
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", server.address,
                                        "--data", str(tmp_path / "relay"), "--gap-wait-ms", "300"],
                         tmp_path / "relay-run")
    try:
        out = loadgen(relay.address, profile, "--agents", "1", "--skip-seq", "2")
        skipped = next(l.split() for l in out.splitlines() if l.startswith("skipped "))
        run_id, lost = skipped[1], int(skipped[3])
        run = wait_for_run(server.address, run_id, timeout=60)
        assert run["status"] == "complete"
        assert run["samples"] == 20000 - lost
        assert "gap: batches 2..2" in (run["error"] or "")
        assert "never arrived" in relay.log()
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_second_sink_feeds_an_old_style_server(tmp_path: Path) -> None:
    """--legacy-sink: each whole run also goes out in the seed's original
    protocol (POST /submit/, msgpack v2). The receiver here is a second
    vmpv-server, which speaks that protocol too; what it stores must equal
    vmprof's own reading of the profile, as the primary's copy does."""
    from harness import http_json
    primary = start_server(tmp_path / "a")
    old_style = start_server(tmp_path / "b")
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", primary.address,
                                        "--legacy-sink", old_style.address, "--data", str(tmp_path / "relay")],
                         tmp_path / "relay-run")
    sock = str(tmp_path / "agent.sock")
    agent = start_daemon("vmpv-agent", ["--socket", sock, "--relay", relay.address, "--data", str(tmp_path / "agent")],
                         tmp_path / "agent-run")
    try:
        p = Pipeline(primary, relay, agent, primary.address, sock, tmp_path)
        run_id, _ = finish(start_workload(p, 0.8))
        wait_for_run(primary.address, run_id)
        profile = Path(p.env()["VMPV_SPOOL_DIR"]) / f"{run_id}.prof"
        assert_run_matches_vmprof(primary.address, run_id, profile)
        deadline = time.monotonic() + 30
        runs: list = []
        while not runs and time.monotonic() < deadline:
            _, body = http_json(f"{old_style.address}/api/runs")
            runs = body["runs"]
            time.sleep(0.2)
        assert len(runs) == 1, "the old-style server got the run once"
        copy = runs[0]
        assert copy["project"] == "Agent project"
        assert copy["function"] == "work"
        assert_run_matches_vmprof(old_style.address, copy["id"], profile)
    finally:
        for d in (agent, relay, primary, old_style):
            assert d.stop() == 0, d.log()[-2000:]


def test_damaged_batches_are_refused_and_nothing_else_is_affected(tmp_path: Path) -> None:
    """Three DATA batches arrive with a flipped payload byte (vmpv-loadgen
    --corrupt 3): the relay refuses exactly those as malformed (the LZ4
    checksum catches them), the sender resends good copies, and every run of
    every agent arrives whole."""
    from harness import http_json
    profile = make_profile(tmp_path / "p.dat", 8000)
    server = start_server(tmp_path)
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", server.address,
                                        "--data", str(tmp_path / "relay"), "--metrics-listen", "127.0.0.1:0"],
                         tmp_path / "relay-run")
    try:
        out = loadgen(relay.address, profile, "--agents", "5", "--corrupt", "3")
        assert " refused 3 " in out, out.splitlines()[-1]
        for run_id, samples in runs_sent(out).items():
            run = wait_for_run(server.address, run_id)
            assert run["status"] == "complete" and run["samples"] == samples
        url = next(l.split("metrics on ")[1].strip() for l in relay.log().splitlines() if "metrics on " in l)
        _, text = http_json(url)
        assert 'vmpv_relay_refusals_total{reason="malformed"} 3' in text
        assert relay.log().count("refused a malformed batch") == 3
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_spool_wal_is_checkpointed_off_the_commit_path(tmp_path: Path) -> None:
    """The intake's commits never checkpoint (that stalled acknowledgements);
    a background checkpointer does. Shown by the WAL staying a fraction of
    what went through it, with no server to drain the spool."""
    import sqlite3
    profile = make_profile(tmp_path / "synthetic.dat", 20000)
    nobody = f"http://127.0.0.1:{free_port()}"
    import math
    import time
    from harness import http_json
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", nobody,
                                        "--data", str(tmp_path / "relay"),
                                        "--metrics-listen", "127.0.0.1:0"], tmp_path / "relay-run")
    try:
        started = time.monotonic()
        out = loadgen(relay.address, profile, "--agents", "40", "--runs", "2")
        sent = runs_sent(out)
        assert len(sent) == 80
        spool = tmp_path / "relay" / "spool.sqlite"
        db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
        stored = db.execute("SELECT coalesce(sum(length(body)), 0), count(*) FROM bodies").fetchone()
        # The running total the relay keeps (triggers) is the bodies' sum,
        # and every body belongs to one batch that knows its length.
        assert db.execute("SELECT bytes FROM totals").fetchone()[0] == stored[0]
        assert db.execute("SELECT coalesce(sum(b.len), 0), count(*) FROM batches b"
                          " JOIN bodies d ON d.id = b.body_id AND length(d.body) = b.len").fetchone() == stored
        db.close()
        # The server is away: the forwarder backs off (100 ms doubling to
        # 10 s, each wait at least half of that) however many commits kick
        # it; it used to retry after every one of the ~1,000 commits.
        url = next(l.split("metrics on ")[1].strip() for l in relay.log().splitlines()
                   if "metrics on " in l)
        _, text = http_json(url)
        retries = int(next(l.split()[-1] for l in text.splitlines()
                           if l.startswith("vmpv_relay_forward_retries_total")))
        ms = (time.monotonic() - started) * 1000
        assert 1 <= retries <= 2 + math.log2(ms / 50 + 1) + ms / 5000, (retries, ms)
        wal = spool.with_name(spool.name + "-wal").stat().st_size
        # Enough to need many checkpoints and at least one restart of the
        # WAL (common/vp_limits.h: VP_SPOOL_WAL_RESTART_BYTES, 32 MiB).
        assert stored[0] > 64 * 1024 * 1024, stored
        assert wal < 48 * 1024 * 1024, (wal, stored)
        # Checkpoints moved the batches into the database file (the last
        # few may still be in the WAL).
        assert spool.stat().st_size + wal > stored[0] and spool.stat().st_size > stored[0] / 2
    finally:
        assert relay.stop() == 0, relay.log()[-2000:]


def test_spool_from_before_running_totals_is_counted_once(tmp_path: Path) -> None:
    """A spool written before the relay kept its bodies' total in a table
    gets the total from one sum when opened, and keeps it from then on: here
    the forwarder drops the four unreadable batches, and what is left is
    the one kept copy (a total that missed the old rows would go below 0)."""
    import sqlite3
    data = tmp_path / "relay"
    data.mkdir()
    db = sqlite3.connect(str(data / "spool.sqlite"))
    db.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE batches(run_id BLOB NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
          body BLOB NOT NULL, received INTEGER NOT NULL DEFAULT (unixepoch()),
          PRIMARY KEY(run_id, seq)) WITHOUT ROWID;
        CREATE TABLE copies(run_id BLOB NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
          body BLOB NOT NULL, PRIMARY KEY(run_id, seq)) WITHOUT ROWID;
    """)
    # Not batches a server would take (the forwarder will retry them):
    # only their sizes matter here.
    sizes = [1000, 250000, 7, 40000]
    for i, n in enumerate(sizes):
        db.execute("INSERT INTO batches(run_id, seq, kind, body) VALUES(?,?,?,?)",
                   (bytes(16), i, 2, bytes(n)))
    db.execute("INSERT INTO copies VALUES(?,?,?,?)", (bytes(16), 9, 2, bytes(123)))
    db.commit()
    db.close()
    nobody = f"http://127.0.0.1:{free_port()}"
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", nobody,
                                        "--data", str(data)], tmp_path / "relay-run")
    try:
        deadline = time.monotonic() + 20
        while relay.log().count("is unreadable") < len(sizes):
            assert time.monotonic() < deadline, relay.log()[-2000:]
            time.sleep(0.05)
        # The forwarder logs each drop before the transaction that makes it.
        db = sqlite3.connect(f"file:{data / 'spool.sqlite'}?mode=ro", uri=True)
        while db.execute("SELECT count(*) FROM batches").fetchone()[0] != 0:
            assert time.monotonic() < deadline, relay.log()[-2000:]
            time.sleep(0.05)
        assert db.execute("SELECT bytes FROM totals").fetchone()[0] == 123
        db.close()
    finally:
        assert relay.stop() == 0, relay.log()[-2000:]


# The spool's layout before format 2, as relays up to 5201195 created it.
SPOOL_FORMAT_1 = """
    PRAGMA page_size=32768;
    PRAGMA journal_mode=WAL;
    CREATE TABLE batches(run_id BLOB NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
      body BLOB NOT NULL, received INTEGER NOT NULL DEFAULT (unixepoch()),
      PRIMARY KEY(run_id, seq)) WITHOUT ROWID;
    CREATE INDEX batches_run_received ON batches(run_id, received);
    CREATE TABLE forwarded(run_id BLOB PRIMARY KEY, next_seq INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE copies(run_id BLOB NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
      body BLOB NOT NULL, PRIMARY KEY(run_id, seq)) WITHOUT ROWID;
    CREATE TABLE run_info(run_id BLOB PRIMARY KEY, version INTEGER, mode INTEGER,
      period_us INTEGER, first_t_ns INTEGER, seen INTEGER NOT NULL DEFAULT (unixepoch())) WITHOUT ROWID;
    CREATE TABLE totals(id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
    INSERT INTO totals VALUES(0, 0);
    CREATE TRIGGER batches_added AFTER INSERT ON batches
      BEGIN UPDATE totals SET bytes = bytes + length(NEW.body); END;
    CREATE TRIGGER batches_removed AFTER DELETE ON batches
      BEGIN UPDATE totals SET bytes = bytes - length(OLD.body); END;
    CREATE TRIGGER batches_rewritten AFTER UPDATE OF body ON batches
      BEGIN UPDATE totals SET bytes = bytes - length(OLD.body) + length(NEW.body); END;
    CREATE TRIGGER copies_added AFTER INSERT ON copies
      BEGIN UPDATE totals SET bytes = bytes + length(NEW.body); END;
    CREATE TRIGGER copies_removed AFTER DELETE ON copies
      BEGIN UPDATE totals SET bytes = bytes - length(OLD.body); END;
"""


def test_spool_of_format_1_is_upgraded_and_forwarded_whole(tmp_path: Path) -> None:
    """A spool left by a relay of the old layout (bodies inside the batch
    rows) is moved to format 2 when a new relay opens it, and every batch in
    it reaches the server: each run complete with the generator's count."""
    import sqlite3
    samples_per_run = 4000
    profile = make_profile(tmp_path / "synthetic.dat", samples_per_run)
    nobody = f"http://127.0.0.1:{free_port()}"
    first = tmp_path / "first"
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", nobody,
                                        "--data", str(first), "--drain-ms", "100"], tmp_path / "relay-run")
    try:
        sent = runs_sent(loadgen(relay.address, profile, "--agents", "6", "--runs", "1"))
        assert len(sent) == 6 and set(sent.values()) == {samples_per_run}
    finally:
        assert relay.stop() == 0, relay.log()[-2000:]
    # The same batches, written the old way into a new file.
    data = tmp_path / "relay"
    data.mkdir()
    old = sqlite3.connect(str(data / "spool.sqlite"), isolation_level=None)
    old.executescript(SPOOL_FORMAT_1)
    old.execute("ATTACH ? AS new", (str(first / "spool.sqlite"),))
    old.execute("BEGIN")
    n = old.execute("INSERT INTO batches(run_id, seq, kind, body, received)"
                    " SELECT b.run_id, b.seq, b.kind, d.body, b.received FROM new.batches b"
                    " JOIN new.bodies d ON d.id = b.body_id").rowcount
    old.execute("INSERT INTO run_info SELECT * FROM new.run_info")
    # A row no relay wrote (a 3-byte run id): dropped with a warning, the
    # rest moved.
    old.execute("INSERT INTO batches(run_id, seq, kind, body) VALUES(x'010203', 1, 2, x'00')")
    old.execute("COMMIT")
    old.execute("DETACH new")
    assert n >= 6 * 3, n  # OPEN, DATA..., CLOSE for each run
    total = old.execute("SELECT bytes FROM totals").fetchone()[0]
    assert total == old.execute("SELECT sum(length(body)) FROM batches").fetchone()[0]
    old.close()

    server = start_server(tmp_path)
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", server.address,
                                        "--data", str(data)], tmp_path / "relay-run2")
    try:
        for run_id in sent:
            run = wait_for_run(server.address, run_id, timeout=60)
            assert run["status"] == "complete", run
            assert run["samples"] == samples_per_run, run
        assert "moved to format 2" in relay.log()
        assert "dropping batch 1, its run id has 3 bytes" in relay.log()
        db = sqlite3.connect(f"file:{data / 'spool.sqlite'}?mode=ro", uri=True)
        deadline = time.monotonic() + 20
        while db.execute("SELECT count(*) FROM batches").fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert db.execute("SELECT count(*), (SELECT bytes FROM totals) FROM bodies").fetchone() == (0, 0)
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        db.close()
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_spool_from_a_newer_relay_is_refused_with_a_reason(tmp_path: Path) -> None:
    import sqlite3
    data = tmp_path / "relay"
    data.mkdir()
    db = sqlite3.connect(str(data / "spool.sqlite"))
    db.execute("PRAGMA user_version=3")
    db.close()
    out = subprocess.run([str(binary("vmpv-relay")), "--listen", "tcp://127.0.0.1:0",
                          "--server", "http://127.0.0.1:9", "--data", str(data)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "format 3, newer than this relay's 2" in out.stderr, out.stderr


def test_a_move_to_format_2_cut_short_by_sigkill_goes_on_at_the_next_start(tmp_path: Path) -> None:
    """A 200 MB format 1 spool moves in 32 MiB transactions; SIGKILL after
    the first leaves rows in both layouts, and the next start finishes the
    move: every batch once, its body byte for byte, the total right."""
    import hashlib
    import signal
    import sqlite3
    import struct
    data = tmp_path / "relay"
    data.mkdir()
    old = sqlite3.connect(str(data / "spool.sqlite"), isolation_level=None)
    old.executescript(SPOOL_FORMAT_1)
    truth = {}
    old.execute("BEGIN")
    for i in range(200):
        # Real batch messages (uncompressed DATA, proto/PROTOCOL.md §B), so
        # that the forwarder keeps them while the server is away.
        run_id, seq, payload = hashlib.md5(b"%d" % (i % 7)).digest(), i, os.urandom(1_000_000 + i)
        body = (b"VPVB" + struct.pack("<HBB", 1, 2, 0) + run_id
                + struct.pack("<QIIIHH", seq, len(payload), len(payload), 0, 0, 0) + payload)
        old.execute("INSERT INTO batches(run_id, seq, kind, body) VALUES(?,?,2,?)", (run_id, seq, body))
        truth[(run_id, seq)] = hashlib.sha256(body).hexdigest()
    old.execute("COMMIT")
    old.close()
    args = [str(binary("vmpv-relay")), "--listen", "tcp://127.0.0.1:0", "--server", "http://127.0.0.1:9",
            "--data", str(data)]
    err = tmp_path / "first.stderr"
    with open(err, "w") as f:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.monotonic() + 60
        while "batches moved" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(f"file:{data / 'spool.sqlite'}?mode=ro", uri=True)
    left = db.execute("SELECT count(*) FROM batches_v1").fetchone()[0]
    moved = db.execute("SELECT count(*) FROM batches").fetchone()[0]
    db.close()
    assert 0 < left < 200 and left + moved == 200, (left, moved)

    relay = start_daemon("vmpv-relay", args[1:], tmp_path / "relay-run")
    assert relay.stop() == 0, relay.log()[-2000:]
    assert "moved to format 2" in relay.log()
    db = sqlite3.connect(f"file:{data / 'spool.sqlite'}?mode=ro", uri=True)
    got = {(bytes(r), s): hashlib.sha256(b).hexdigest() for r, s, b in db.execute(
        "SELECT b.run_id, b.seq, d.body FROM batches b JOIN bodies d ON d.id = b.body_id")}
    assert got == truth
    assert db.execute("SELECT count(*) FROM bodies").fetchone()[0] == 200
    assert db.execute("SELECT bytes FROM totals").fetchone()[0] == sum(48 + 1_000_000 + i for i in range(200))
    assert db.execute("SELECT count(*) FROM sqlite_schema WHERE name='batches_v1'").fetchone()[0] == 0
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()
