"""Generated profiles and simulated agents, for tests that need known counts
or more load than real processes give quickly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import ROOT, binary


def make_profile(path: Path, samples: int, period_us: int = 10000) -> Path:
    """A valid vmprof file (format 7, memory on) with exactly `samples` samples."""
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_profile.py"), str(path),
                    "--samples", str(samples), "--period-us", str(period_us)], check=True)
    return path


def loadgen_cmd(relay: str, profile: Path, *args: str) -> list[str]:
    return [str(binary("vmpv-loadgen")), "--relay", relay, "--profile", str(profile), *args]


def loadgen(relay: str, profile: Path, *args: str, timeout: float = 300) -> str:
    """Runs vmpv-loadgen to completion; returns what it printed (a `run ID
    SAMPLES` line per run it sent)."""
    out = subprocess.run(loadgen_cmd(relay, profile, *args), capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def runs_sent(stdout: str) -> dict[str, int]:
    return {l.split()[1]: int(l.split()[2]) for l in stdout.splitlines() if l.startswith("run ")}
