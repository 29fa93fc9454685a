"""python -m vmprof_viewer_client script.py: a whole script as one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Dict

from clienthelpers import CLIENT_DIR, FakeAgent


def test_profiles_a_script(env: Dict[str, str], agent: FakeAgent, short_dir: str) -> None:
    script = os.path.join(short_dir, "job.py")
    out = os.path.join(short_dir, "argv.json")
    with open(script, "w") as f:
        f.write(textwrap.dedent(f"""
            import json, sys
            import helper  # found next to the script, as with `python job.py`
            json.dump([sys.argv, __name__], open({out!r}, "w"))
        """))
    with open(os.path.join(short_dir, "helper.py"), "w") as f:
        f.write("")
    done = subprocess.run(
        [sys.executable, "-m", "vmprof_viewer_client", "--project", "Script project", "--period", "0.02",
         script, "a", "--b"],
        env=dict(os.environ, PYTHONPATH=CLIENT_DIR), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with open(out) as f:
        assert json.load(f) == [[script, "a", "--b"], "__main__"]
    [[start, end]] = agent.messages()
    assert start["project"] == "Script project"
    assert start["function"] == script
    assert start["period"] == 0.02
    assert end["status"] == "ok"


def test_script_failure_is_reported_and_kept(env: Dict[str, str], agent: FakeAgent, short_dir: str) -> None:
    script = os.path.join(short_dir, "bad.py")
    with open(script, "w") as f:
        f.write("raise RuntimeError('nope')\n")
    done = subprocess.run([sys.executable, "-m", "vmprof_viewer_client", script],
                          env=dict(os.environ, PYTHONPATH=CLIENT_DIR), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert "RuntimeError: nope" in done.stderr
    [[start, end]] = agent.messages()
    assert start["project"] == "bad"
    assert end == {"op": "end", "v": 1, "status": "error", "error": "RuntimeError('nope')"}
