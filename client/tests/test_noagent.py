"""No agent: upload straight to the server, or keep the file and say so once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Dict

import pytest
import vmprof

import vmprof_viewer_client

from clienthelpers import CLIENT_DIR, FakeServer, spool_files

SCRIPT = textwrap.dedent("""
    import sys, time
    import vmprof_viewer_client

    vmprof_viewer_client.configure("Kept project")

    @vmprof_viewer_client.profile(period=0.01)
    def work(n):
        end = time.process_time() + 0.05
        while time.process_time() < end:
            sum(i * i for i in range(1000))
        return n

    assert work(1) == 1
    assert work(2) == 2
    assert vmprof_viewer_client.last_run_id() is None
    print("done")
""")


def test_kept_in_spool_with_one_line_once(env: Dict[str, str], short_dir: str) -> None:
    script = os.path.join(short_dir, "kept.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    environ = dict(os.environ, PYTHONPATH=CLIENT_DIR)
    done = subprocess.run([sys.executable, script], env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    files = spool_files(env["spool"])
    assert len(files) == 2
    assert all(os.path.basename(p)[:-5].isalnum() and p.endswith(".prof") for p in files)
    assert lines[0].startswith("vmprof-viewer: no agent at ")
    assert "vmprof-viewer-upload 'Kept project' " in lines[0]
    assert any(p in lines[0] for p in files)
    for path in files:
        stats = vmprof.read_profile(path)
        assert stats.profile_memory
        assert len(stats.profiles) > 0


def test_uploads_to_configured_url(env: Dict[str, str], server: FakeServer) -> None:
    vmprof_viewer_client.configure("Up project", url=server.url + "/")

    @vmprof_viewer_client.profile
    def work() -> str:
        return "x"

    assert work() == "x"
    [upload] = server.uploads
    assert upload["path"] == "/api/v1/upload"
    assert upload["query"] == {"project": "Up project", "function": f"{__name__}.test_uploads_to_configured_url.<locals>.work"}
    assert upload["content_type"] == "application/octet-stream"
    assert upload["body"][:16] == b"\0" * 8 + b"\x03" + b"\0" * 7
    assert spool_files(env["spool"]) == []  # deleted once the server has it
    assert vmprof_viewer_client.last_run_id() == "ab" * 16
    assert vmprof_viewer_client.last_run_url() == f"{server.url}/runs/{'ab' * 16}"


def test_failed_upload_keeps_the_file(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                      capfd: pytest.CaptureFixture) -> None:
    refusing = FakeServer(status=400)
    try:
        monkeypatch.setenv("VMPV_URL", refusing.url)
        monkeypatch.setenv("VMPV_PROJECT", "Env project")

        @vmprof_viewer_client.profile
        def work() -> int:
            return 3

        assert work() == 3
        assert work() == 3
    finally:
        refusing.close()
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 1
    assert "not a vmprof profile" in err[0] and "'Env project'" in err[0]
    assert len(spool_files(env["spool"])) == 2
