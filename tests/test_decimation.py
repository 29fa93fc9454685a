"""Decimation at the relay, end to end: a generated long, high-rate profile
goes through relay and server; the stored run keeps every function's shares
within 0.5 percentage points of vmprof's own reading of the original file,
and its peak RSS."""
from __future__ import annotations

import subprocess
from pathlib import Path

from harness import http_json, start_daemon, start_server, vmprof_truth, wait_for_run
from synthetic import loadgen, loadgen_cmd, make_profile, runs_sent


def shares(counts: dict, total: int) -> dict:
    return {k: 100.0 * v / total for k, v in counts.items()}


def test_long_profile_is_thinned_to_the_table_rate_and_stays_true(tmp_path: Path) -> None:
    # 25 min of a 200 Hz sample clock: twice the table's 100 Hz. Enough
    # samples are kept (150k) that sampling noise stays far below 0.5 points
    # even for a function in half the stacks (3 sigma = 0.39 points).
    n = 300_000
    profile = make_profile(tmp_path / "long.dat", n, period_us=5000)
    truth = vmprof_truth(profile)
    server = start_server(tmp_path)
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", server.address,
                                        "--data", str(tmp_path / "relay"), "--decimate-after", "0"],
                         tmp_path / "relay-run")
    try:
        run_id = next(iter(runs_sent(loadgen(relay.address, profile, "--agents", "1"))))
        run = wait_for_run(server.address, run_id, timeout=120)
        stored = run["samples"]
        assert n // 2 <= stored <= n // 2 + 200, f"{stored} samples kept of {n}"
        assert run["peak_rss_kb"] == truth["peak_rss_kb"], "the highest RSS survives thinning"
        status, body = http_json(f"{server.address}/api/runs/{run_id}/functions")
        assert status == 200
        got_self = {(f["name"], f["file"], f["line"]): f["self"] for f in body["functions"]}
        got_total = {(f["name"], f["file"], f["line"]): f["total"] for f in body["functions"]}
        want_self, want_total = shares(truth["self"], n), shares(truth["total"], n)
        for key, share in want_total.items():
            assert abs(100.0 * got_total.get(key, 0) / stored - share) < 0.5, key
        for key, share in want_self.items():
            assert abs(100.0 * got_self.get(key, 0) / stored - share) < 0.5, key
        status, mem = http_json(f"{server.address}/api/runs/{run_id}/memory?buckets=100")
        assert max(p["max"] for p in mem["points"]) == truth["peak_rss_kb"]
        # The run says it was thinned, against what the generator wrote: n
        # samples every 5000 us; the relay halved the 200 Hz clock to the
        # table's 100 Hz, so every 10000 us.
        dec = run["decimation"]
        assert dec == {"original_period_s": 0.005, "period_s": 0.01,
                       "samples_before": n, "samples_after": stored}, dec
        status, runs = http_json(f"{server.address}/api/runs")
        assert status == 200
        assert [r["decimation"] for r in runs["runs"] if r["id"] == run_id] == [dec]
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_young_profiles_keep_their_full_rate(tmp_path: Path) -> None:
    """The default grace: a 300 s profile at 1 kHz is stored whole."""
    n = 30_000
    profile = make_profile(tmp_path / "short.dat", n, period_us=1000)
    server = start_server(tmp_path)
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", server.address,
                                        "--data", str(tmp_path / "relay")], tmp_path / "relay-run")
    try:
        run_id = next(iter(runs_sent(loadgen(relay.address, profile, "--agents", "1"))))
        run = wait_for_run(server.address, run_id, timeout=120)
        assert run["samples"] == n
        assert run["decimation"] is None, "a run stored whole says it was not thinned"
    finally:
        for d in (relay, server):
            assert d.stop() == 0, d.log()[-2000:]


def test_full_spool_thins_before_it_refuses(tmp_path: Path) -> None:
    """The server is away and the spool's bound is small: the relay makes room
    by thinning the spooled profile (counted), and once the server is back
    the whole run arrives, thinned, with its peak intact."""
    import time
    from harness import free_port
    n = 200_000
    profile = make_profile(tmp_path / "long.dat", n, period_us=5000)
    truth = vmprof_truth(profile)
    port = free_port()
    relay = start_daemon("vmpv-relay", ["--listen", "tcp://127.0.0.1:0", "--server", f"http://127.0.0.1:{port}",
                                        "--data", str(tmp_path / "relay"), "--max-spool-bytes", str(1 << 20),
                                        "--metrics-listen", "127.0.0.1:0"], tmp_path / "relay-run")
    metrics_url = next(l.split("metrics on ")[1].strip() for l in relay.log().splitlines() if "metrics on " in l)

    def metric(name: str) -> float:
        _, text = http_json(metrics_url)
        return next(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + " "))

    sender = subprocess.Popen(loadgen_cmd(relay.address, profile, "--agents", "1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        deadline = time.monotonic() + 120
        while metric("vmpv_relay_decimated_samples_total") == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metric("vmpv_relay_decimated_samples_total") > 0, "the relay thinned nothing"
        server = start_daemon("vmpv-server", ["--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "server")],
                              tmp_path / "server-run")
        out, err = sender.communicate(timeout=300)
        assert sender.returncode == 0, err
        run_id = next(iter(runs_sent(out)))
        run = wait_for_run(server.address, run_id, timeout=120)
        assert run["status"] == "complete"
        assert 0 < run["samples"] < n
        assert run["peak_rss_kb"] == truth["peak_rss_kb"]
        # Halved for room, perhaps more than once: the samples add up to
        # what was written, and the period is at least twice the original.
        dec = run["decimation"]
        assert dec["samples_before"] == n and dec["samples_after"] == run["samples"], dec
        assert dec["original_period_s"] == 0.005 and dec["period_s"] >= 0.01, dec
    finally:
        if sender.poll() is None:
            sender.kill()
        for d in (relay, server):
            if d is not None:
                assert d.stop() == 0, d.log()[-2000:]
