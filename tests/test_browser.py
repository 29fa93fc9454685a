"""The web UI in headless Chromium, on a run that went through the pipeline.

The expectations handed to the browser check come from vmprof's own reader
on the same profile file; the check asserts on what the pages show and saves
screenshots (under $VMPV_ARTIFACTS, else the test's temp dir).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import ROOT, Pipeline, vmprof_truth, wait_for_run
from test_e2e import WORKLOAD, export_truth, run_workload

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by scripts/setup.sh --tests")
def test_list_memory_and_cpu_views_show_the_run(pipeline: Pipeline) -> None:
    run_id, profile = run_workload(pipeline, WORKLOAD)
    run = wait_for_run(pipeline.server_url, run_id)
    assert run["status"] == "complete"
    export_truth(pipeline, run_id, vmprof_truth(profile))
    out_dir = Path(os.environ.get("VMPV_ARTIFACTS", pipeline.tmp)) / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    node = shutil.which("node")
    assert node
    res = subprocess.run(
        [node, str(ROOT / "web" / "e2e" / "check.mjs"), "--base", pipeline.server_url, "--run", run_id,
         "--expect", str(pipeline.tmp / "expect.json"), "--out", str(out_dir)],
        capture_output=True, text=True, timeout=180, cwd=ROOT / "web",
    )
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    for shot in ("list.png", "memory.png", "cpu.png"):
        assert (out_dir / shot).stat().st_size > 1000
