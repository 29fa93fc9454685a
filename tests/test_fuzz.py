"""A short libFuzzer run of the decoders that read untrusted bytes (the
vmprof reader, the batch codec, the server's msgpack reader); the long runs
are documented in BENCHMARKS.md. Fails on any crash, sanitizer report or broken invariant."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from harness import ROOT


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is installed by scripts/setup.sh --tests")
def test_fuzz_decoders_briefly(tmp_path) -> None:
    seconds = os.environ.get("VMPV_FUZZ_SECONDS", "15")
    env = dict(os.environ, FUZZ_OUT=str(tmp_path), PYTHON=sys.executable)
    res = subprocess.run([str(ROOT / "tests" / "fuzz" / "run.sh"), seconds, "vmprof", "batch", "mpack"],
                         env=env, capture_output=True, text=True, timeout=600)
    print(res.stdout[-2000:])
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "number_of_executed_units" in res.stdout
