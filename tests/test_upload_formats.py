"""vmprof-viewer-upload takes any plain vmprof file: the current sampler and
the 0.4 series, memory on or off, lines on or off, several threads. Each
arrives equal to what vmprof's own reader says of the same file."""
from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from harness import PYTHON, ROOT, Pipeline, assert_run_matches_vmprof, wait_for_run

OLD_PYTHON = ROOT / ".venv-vmprof04" / "bin" / "python"

RECORD = textwrap.dedent('''
    import sys, threading, vmprof
    out, memory, lines, threads = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4])
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)
    def work():
        keep = [bytearray(1 << 20) for _ in range(20)]
        for _ in range(6):
            fib(21)
        return keep
    with open(out, "w+b") as f:
        vmprof.enable(f.fileno(), period=0.002, memory=memory, lines=lines, native=False)
        others = [threading.Thread(target=work) for _ in range(threads - 1)]
        for t in others:
            t.start()
        work()
        for t in others:
            t.join()
        vmprof.disable()
''')

CASES = {
    "current-memory": (PYTHON, True, False, 1),
    "current-no-memory": (PYTHON, False, False, 1),
    "current-lines-threads": (PYTHON, True, True, 3),
    "vmprof-0.4-memory-threads": (str(OLD_PYTHON), True, False, 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_upload_any_plain_vmprof_file(pipeline: Pipeline, tmp_path: Path, case: str) -> None:
    python, memory, lines, threads = CASES[case]
    if python == str(OLD_PYTHON) and not OLD_PYTHON.exists():
        pytest.skip("vmprof 0.4.18.1 is built by scripts/setup.sh --tests")
    prof = tmp_path / f"{case}.dat"
    subprocess.run([python, "-c", RECORD, str(prof), str(int(memory)), str(int(lines)), str(threads)],
                   check=True, timeout=120)
    upload = shutil.which("vmprof-viewer-upload", path=str(Path(PYTHON).parent))
    assert upload
    out = subprocess.run([upload, "Formats", str(prof), "--server", pipeline.server_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.split()[1]
    run = wait_for_run(pipeline.server_url, run_id)
    assert run["status"] == "complete", run
    truth = assert_run_matches_vmprof(pipeline.server_url, run_id, prof)
    assert truth["samples"] > 0
    if not memory:
        assert run["peak_rss_kb"] == 0
    expected_version = 6 if "0.4" in case else 7
    assert run["version"] == expected_version
