"""vmprof-viewer-upload: refusals, agent route, server route, fallback."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest
import vmprof

from vmprof_viewer_client import upload as cli

from clienthelpers import CLIENT_DIR, FakeAgent, FakeServer, burn_cpu


@pytest.fixture
def profile_file(short_dir: str) -> str:
    path = os.path.join(short_dir, "plain.dat")
    with open(path, "w+b") as f:
        vmprof.enable(f.fileno(), period=0.01, memory=True, native=False)
        try:
            burn_cpu(0.05)
        finally:
            vmprof.disable()
    return path


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_file(env: Dict[str, str], capsys: pytest.CaptureFixture, short_dir: str) -> None:
    code, out, err = run_cli(capsys, "P", os.path.join(short_dir, "nope.dat"))
    assert code != 0 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("vmprof-viewer-upload: cannot read ") and "No such file" in err


@pytest.mark.parametrize("content", [b"", b"hello world, not a profile at all" * 4,
                                     b"\0" * 8 + b"\x03" + b"\0" * 7])  # header cut short
def test_not_a_vmprof_file(env: Dict[str, str], capsys: pytest.CaptureFixture, short_dir: str,
                           content: bytes) -> None:
    path = os.path.join(short_dir, "junk.dat")
    with open(path, "wb") as f:
        f.write(content)
    code, out, err = run_cli(capsys, "P", path, "--server", "http://127.0.0.1:9")
    assert code != 0 and out == ""
    assert len(err.splitlines()) == 1
    assert "not a vmprof profile" in err


def test_damaged_gzip(env: Dict[str, str], capsys: pytest.CaptureFixture, short_dir: str) -> None:
    path = os.path.join(short_dir, "bad.dat.gz")
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b" + b"garbage" * 10)
    code, out, err = run_cli(capsys, "P", path)
    assert code != 0 and len(err.splitlines()) == 1 and "gzip" in err


def test_agent_route(env: Dict[str, str], agent: FakeAgent, capsys: pytest.CaptureFixture,
                     profile_file: str) -> None:
    code, out, err = run_cli(capsys, "Plain project", profile_file, "--agent", env["socket"])
    assert code == 0, err
    [[message]] = agent.messages()
    assert message["op"] == "upload" and message["v"] == 1
    assert message["owned"] is False
    assert message["path"] == os.path.abspath(profile_file)
    assert message["project"] == "Plain project"
    assert message["function"] == "plain.dat"
    assert message["period"] == 0.01
    assert message["start"] > 1e9
    assert out == f"run {message['run']}\nhttp://localhost:8000/runs/{message['run']}\n"


def test_gzip_is_unpacked_for_the_agent(env: Dict[str, str], capsys: pytest.CaptureFixture,
                                        profile_file: str) -> None:
    seen: List[bytes] = []

    def reply(message: Dict[str, Any]) -> Dict[str, Any]:
        with open(message["path"], "rb") as f:  # the agent reads it before replying
            seen.append(f.read())
        return {"ok": True, "run": "cd" * 16, "samples": 2}

    fake = FakeAgent(env["socket"], reply=reply)
    try:
        gz = profile_file + ".gz"
        with open(profile_file, "rb") as src, gzip.open(gz, "wb") as dst:
            dst.write(src.read())
        code, out, err = run_cli(capsys, "P", gz, "--function", "main")
    finally:
        fake.close()
    assert code == 0, err
    with open(profile_file, "rb") as f:
        assert seen == [f.read()]
    [[message]] = fake.messages()
    assert message["function"] == "main"
    assert not os.path.exists(message["path"])  # our temporary copy is gone
    assert out.splitlines()[0] == f"run {'cd' * 16}"


def test_server_route(env: Dict[str, str], server: FakeServer, capsys: pytest.CaptureFixture,
                      profile_file: str) -> None:
    code, out, err = run_cli(capsys, "P", profile_file, "--server", server.url)
    assert code == 0, err
    [upload] = server.uploads
    assert upload["query"] == {"project": "P", "function": "plain.dat"}
    with open(profile_file, "rb") as f:
        assert upload["body"] == f.read()
    assert out == f"run {'ab' * 16}\n{server.url}/runs/{'ab' * 16}\n"


def test_falls_back_to_server_without_agent(env: Dict[str, str], server: FakeServer,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture, profile_file: str) -> None:
    monkeypatch.setenv("VMPV_URL", server.url)
    code, out, err = run_cli(capsys, "P", profile_file)
    assert code == 0, err
    assert len(server.uploads) == 1


def test_nothing_takes_it(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture, profile_file: str) -> None:
    monkeypatch.setenv("VMPV_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    code, out, err = run_cli(capsys, "P", profile_file)
    assert code != 0 and out == ""
    assert len(err.splitlines()) == 1
    assert "no agent at" in err and "upload to http://127.0.0.1:9 failed" in err


def test_agent_refusal_is_reported(env: Dict[str, str], capsys: pytest.CaptureFixture,
                                   profile_file: str) -> None:
    fake = FakeAgent(env["socket"], reply=lambda m: {"ok": False, "error": "disk full"})
    try:
        code, out, err = run_cli(capsys, "P", profile_file, "--agent", env["socket"])
    finally:
        fake.close()
    assert code != 0 and len(err.splitlines()) == 1 and "disk full" in err


def test_runs_as_a_program(env: Dict[str, str], short_dir: str) -> None:
    done = subprocess.run([sys.executable, "-m", "vmprof_viewer_client.upload", "P",
                           os.path.join(short_dir, "nope.dat")],
                          env=dict(os.environ, PYTHONPATH=CLIENT_DIR), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
