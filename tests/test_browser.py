"""The web UI in headless Chromium, on runs that went through the pipeline.

The expectations handed to the browser checks come from vmprof's own reader
on the same profile files; the checks assert on what the pages show and save
screenshots (under $VMPV_ARTIFACTS, else the test's temp dir):

- check.mjs: list page (search, dates, sorting), one run's Memory view (hover
  stacks, mean/max, wall clock, wheel zoom), Memory growth, CPU (flame graph,
  search, sandwich, keyboard, fallback to /collapsed) and time ranges;
- check-compare.mjs: two runs compared (differential flame graph, table);
- check-live.mjs: a run watched while it is still being profiled;
- check-perf.mjs: zoom redraw times on a tree of max_nodes nodes.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest

from harness import PYTHON, ROOT, Pipeline, split_name, vmprof_truth, wait_for_run
from test_e2e import WORKLOAD, export_truth, run_workload

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian's chromium is installed by scripts/setup.sh --tests")

# "After" for the comparison: the same file with the same functions on the same
# lines (so that A and B have frames in common), another mix in workload(),
# and one more function.
_BODY_A = """\
    for _ in range(3):
        fib(24)
        crunch()
    data = grow(25)
    del data
    fib(23)
"""
_BODY_B = """\
    for _ in range(3):
        crunch(); crunch()
        validate(150000)
    data = grow(8)
    del data
    fib(21)
"""
assert WORKLOAD.count(_BODY_A) == 1
WORKLOAD_B = WORKLOAD.replace(_BODY_A, _BODY_B).replace(
    "vmprof_viewer_client.configure(",
    "def validate(n):\n    return sorted(str(i * 7919 % 10007) for i in range(n))\n\nvmprof_viewer_client.configure(")

# Long enough to be watched while live: the agent forwards what vmprof wrote every 0.5 s.
LIVE_SECONDS = 14
LIVE_WORKLOAD = textwrap.dedent(f'''
    import time
    import vmprof_viewer_client

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def step(keep):
        keep.append(bytearray(1024 * 1024))
        if len(keep) > 120:
            keep.pop(0)
        fib(21)

    @vmprof_viewer_client.profile(period=0.005)
    def watched():
        keep = []
        t0 = time.time()
        while time.time() - t0 < {LIVE_SECONDS}:
            step(keep)

    vmprof_viewer_client.configure("Live project")
    watched()
    print(vmprof_viewer_client.last_run_id())
''')


def out_dir(pipeline: Pipeline, name: str) -> Path:
    d = Path(os.environ.get("VMPV_ARTIFACTS", pipeline.tmp)) / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def node_check(script: str, *args: str, timeout: float = 240) -> str:
    node = shutil.which("node")
    assert node, "node is installed by scripts/setup.sh"
    res = subprocess.run([node, str(ROOT / "web" / "e2e" / script), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT / "web")
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def read_samples(path: Path) -> list[tuple[list[tuple[str, str, int]], int]]:
    """Each sample's stack (root first, as (name, file, line)) and RSS in KiB, in file order."""
    import vmprof  # the sampler's own reader, not ours

    stats = vmprof.read_profile(str(path))
    out = []
    for trace, _weight, _thread, mem in stats.profiles:
        keys = []
        for a in (int(x) for x in trace if int(x) > 0):
            n = stats.adr_dict.get(a)
            keys.append(split_name(n) if n else (f"<unknown 0x{a:x}>", "", 0))
        out.append((keys, mem))
    return out


def growth_truth(path: Path) -> dict:
    """RSS growth per function as docs/API.md defines it, from vmprof's samples:
    the change between consecutive samples is charged to the later one's stack."""
    samples = read_samples(path)
    grown = released = 0
    fns: dict[tuple[str, str, int], dict[str, int]] = {}
    for (prev, cur) in zip(samples, samples[1:]):
        d = cur[1] - prev[1]
        if d > 0:
            grown += d
        else:
            released -= d
        if not d:
            continue
        for k in set(cur[0]):
            e = fns.setdefault(k, {"total_grown_kb": 0, "self_grown_kb": 0, "total_released_kb": 0})
            e["total_grown_kb" if d > 0 else "total_released_kb"] += abs(d)
        if cur[0] and d > 0:
            fns[cur[0][-1]]["self_grown_kb"] += d
    top = sorted(fns.items(), key=lambda kv: -kv[1]["total_grown_kb"])[:4]
    return {"grown_kb": grown, "released_kb": released,
            "top": [{"name": k[0], "file": k[1], "line": k[2], **v} for k, v in top]}


def compare_truth(ta: dict, tb: dict) -> dict:
    """The functions whose share of samples changed most from A to B."""
    keys = set(ta["total"]) | set(tb["total"])

    def delta(k):
        return tb["total"].get(k, 0) / tb["samples"] - ta["total"].get(k, 0) / ta["samples"]

    top = sorted(keys, key=lambda k: -abs(delta(k)))[:6]
    return {
        "a": {"samples": ta["samples"]},
        "b": {"samples": tb["samples"]},
        "functions": [{"name": k[0], "file": k[1], "line": k[2],
                       "a_total": ta["total"].get(k, 0), "b_total": tb["total"].get(k, 0),
                       "a_self": ta["self"].get(k, 0), "b_self": tb["self"].get(k, 0)} for k in top],
    }


@needs_chromium
def test_list_memory_cpu_and_compare_views_show_the_runs(pipeline: Pipeline) -> None:
    run_a, prof_a = run_workload(pipeline, WORKLOAD)
    assert wait_for_run(pipeline.server_url, run_a)["status"] == "complete"
    truth_a = vmprof_truth(prof_a)
    export_truth(pipeline, run_a, truth_a)
    expect = json.loads((pipeline.tmp / "expect.json").read_text())
    expect["growth"] = growth_truth(prof_a)
    (pipeline.tmp / "expect.json").write_text(json.dumps(expect))
    # The second run (after A: "after" in the comparison) also makes the list longer than one page of ?limit=1.
    run_b, prof_b = run_workload(pipeline, WORKLOAD_B)
    assert wait_for_run(pipeline.server_url, run_b)["status"] == "complete"
    truth_b = vmprof_truth(prof_b)

    shots = out_dir(pipeline, "screenshots")
    node_check("check.mjs", "--base", pipeline.server_url, "--run", run_a,
               "--expect", str(pipeline.tmp / "expect.json"), "--out", str(shots))
    for shot in ("list.png", "memory.png", "growth.png", "cpu.png", "cpu-sandwich.png", "cpu-range.png"):
        assert (shots / shot).stat().st_size > 1000, shot

    (pipeline.tmp / "compare.json").write_text(json.dumps(compare_truth(truth_a, truth_b)))
    cshots = out_dir(pipeline, "screenshots-compare")
    node_check("check-compare.mjs", "--base", pipeline.server_url, "--a", run_a, "--b", run_b,
               "--expect", str(pipeline.tmp / "compare.json"), "--out", str(cshots))
    assert (cshots / "compare.png").stat().st_size > 1000


@needs_chromium
def test_live_run_updates_in_the_browser(pipeline: Pipeline) -> None:
    node = shutil.which("node")
    assert node
    shots = out_dir(pipeline, "screenshots-live")
    expect = pipeline.tmp / "live-expect.json"
    # The browser first, waiting for the run to show up as live.
    check = subprocess.Popen(
        [node, str(ROOT / "web" / "e2e" / "check-live.mjs"), "--base", pipeline.server_url,
         "--project", "Live project", "--expect", str(expect), "--out", str(shots), "--wait", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "web")
    try:
        run_id, profile = run_workload(pipeline, LIVE_WORKLOAD)
        assert wait_for_run(pipeline.server_url, run_id)["status"] == "complete"
        truth = vmprof_truth(profile)
        tmp = expect.with_suffix(".tmp")
        tmp.write_text(json.dumps({"samples": truth["samples"], "peak_rss_kb": truth["peak_rss_kb"]}))
        tmp.rename(expect)
        out, err = check.communicate(timeout=180)
    finally:
        if check.poll() is None:
            check.kill()
            check.wait()
    print(out)
    assert check.returncode == 0, out + err
    assert run_id in out
    assert (shots / "live-memory.png").stat().st_size > 1000


def write_big_profile(path: Path, samples: int, seed: int = 7) -> None:
    """A valid vmprof profile (format 7, memory on) whose call tree is much
    bigger than the server's max_nodes: random paths through 60 functions,
    12 to 30 frames deep."""
    rnd = random.Random(seed)
    nfun = 60
    base = 0x7F0000000000
    addrs = [base + 0x100 * (i + 1) for i in range(nfun)]
    period_us = 1000
    with open(path, "wb") as f:
        w = f.write
        w(struct.pack("<5q", 0, 3, 0, period_us, 0))
        w(b"\x05" + struct.pack(">h", 7) + bytes([1, 7]) + b"cpython")
        w(b"\x06" + struct.pack("<qq", 1700000000, 0) + bytes(8))
        for k, v in ((b"os", b"linux"), (b"bits", b"64")):
            w(b"\x07" + struct.pack("<q", len(k)) + k + struct.pack("<q", len(v)) + v)
        for i in range(samples):
            depth = rnd.randint(12, 30)
            # Skewed choices: a few hot paths and a long tail of rare ones.
            frames = [addrs[0]] + [addrs[1 + int(rnd.random() ** 3 * (nfun - 1))] for _ in range(depth - 1)]
            rss = 50_000 + (i % 5000) * 8
            w(struct.pack("<Bqq%dqqqq" % depth, 1, 1, depth, *reversed(frames), 0x7F00DEAD0000, rss,
                          i * period_us * 1000))
        for i, a in enumerate(addrs):
            name = f"py:func{i}:{i + 1}:/bench/big.py".encode()
            w(b"\x02" + struct.pack("<qq", a, len(name)) + name)
        w(b"\x03" + struct.pack("<qq", 1700000000 + samples * period_us // 1_000_000, 0) + bytes(8))


@needs_chromium
def test_flame_graph_zooms_fast_on_a_big_tree(pipeline: Pipeline, tmp_path: Path) -> None:
    prof = tmp_path / "big.prof"
    # Far more call paths than the 20000 nodes the UI asks for, well under
    # the server's VP_MAX_QUERY_NODES (4M): 100k samples of ~21 frames.
    write_big_profile(prof, 100_000)
    upload = shutil.which("vmprof-viewer-upload", path=str(Path(PYTHON).parent))
    assert upload, "the console script is installed with the client"
    out = subprocess.run([upload, "Perf project", str(prof), "--server", pipeline.server_url],
                         env=pipeline.env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.split()[1]
    assert wait_for_run(pipeline.server_url, run_id, timeout=120)["status"] == "complete"
    shots = out_dir(pipeline, "screenshots-perf")
    node_check("check-perf.mjs", "--base", pipeline.server_url, "--run", run_id, "--out", str(shots),
               "--min-nodes", "15000")
