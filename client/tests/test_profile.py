"""Profiled calls against a fake agent that records the protocol-A frames."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from typing import Any, Dict, List

import pytest
import vmprof

import vmprof_viewer_client
from vmprof_viewer_client import _profile

from clienthelpers import FakeAgent, burn_cpu, spool_files

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def test_start_and_end_messages(env: Dict[str, str], agent: FakeAgent) -> None:
    vmprof_viewer_client.configure("My project", tags={"branch": "main"})

    @vmprof_viewer_client.profile(period=0.01)
    def work(x: int) -> int:
        burn_cpu()
        return x * 2

    before = time.time()
    assert work(21) == 42
    [[start, end]] = agent.messages()

    assert set(start) == {"op", "v", "run", "project", "function", "path", "period", "pid",
                          "host", "tags", "start", "owned"}
    assert start["op"] == "start" and start["v"] == 1
    assert HEX32.match(start["run"])
    assert start["project"] == "My project"
    assert start["function"] == f"{__name__}.test_start_and_end_messages.<locals>.work"
    assert start["path"] == os.path.join(env["spool"], start["run"] + ".prof")
    assert os.path.isabs(start["path"])
    assert start["period"] == 0.01
    assert start["pid"] == os.getpid()
    assert start["host"] == socket.gethostname()
    assert start["tags"] == {"branch": "main"}
    assert before - 1 <= start["start"] <= time.time()
    assert start["owned"] is True
    assert end == {"op": "end", "v": 1, "status": "ok"}

    assert vmprof_viewer_client.last_run_id() == start["run"]
    assert vmprof_viewer_client.last_run_url() == f"http://localhost:8000/runs/{start['run']}"
    # The agent owns the file; the fake one leaves it, so it can be checked.
    stats = vmprof.read_profile(start["path"])
    assert stats.profile_memory
    assert len(stats.profiles) > 0
    assert all(sample[3] > 0 for sample in stats.profiles)  # RSS in KiB


def test_exception_propagates_and_end_says_error(env: Dict[str, str], agent: FakeAgent) -> None:
    vmprof_viewer_client.configure("p")
    boom = KeyError("missing\nkey")

    @vmprof_viewer_client.profile
    def fails() -> None:
        raise boom

    with pytest.raises(KeyError) as info:
        fails()
    assert info.value is boom
    [[start, end]] = agent.messages()
    assert end["status"] == "error"
    assert end["error"] == repr(boom)
    assert "\n" not in end["error"]
    assert not vmprof.is_enabled()


def test_nested_calls_make_one_profile(env: Dict[str, str], agent: FakeAgent) -> None:
    vmprof_viewer_client.configure("p")
    calls: List[str] = []

    @vmprof_viewer_client.profile
    def inner() -> int:
        calls.append("inner")
        return 1

    @vmprof_viewer_client.profile(period=0.01)
    def outer() -> int:
        calls.append("outer")
        return inner() + inner()

    assert outer() == 2
    assert calls == ["outer", "inner", "inner"]
    conversations = agent.messages()
    assert len(conversations) == 1
    assert conversations[0][0]["function"].endswith("outer")
    assert len(spool_files(env["spool"])) == 1


def test_two_threads_at_once_one_profile(env: Dict[str, str], agent: FakeAgent) -> None:
    vmprof_viewer_client.configure("p")
    barrier = threading.Barrier(2)
    results: List[Any] = []

    @vmprof_viewer_client.profile(period=0.01)
    def work(n: int) -> int:
        barrier.wait(5)  # both threads are inside a profiled call now
        burn_cpu(0.02)
        return n

    def target(n: int) -> None:
        try:
            results.append(work(n))
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            results.append(exc)

    threads = [threading.Thread(target=target, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [1, 2]
    conversations = agent.messages()
    assert len(conversations) == 1
    assert [m["op"] for m in conversations[0]] == ["start", "end"]


def test_methods_and_context_manager(env: Dict[str, str], agent: FakeAgent) -> None:
    vmprof_viewer_client.configure("p")

    class Shop:
        @vmprof_viewer_client.profile
        def method(self, x: int) -> int:
            return x + 1

        @vmprof_viewer_client.profile
        @classmethod
        def klass(cls) -> str:
            return cls.__name__

        @vmprof_viewer_client.profile(period=0.05)
        @staticmethod
        def static() -> str:
            return "s"

    shop = Shop()
    assert shop.method(1) == 2
    assert Shop.klass() == "Shop"
    assert shop.static() == "s"
    with vmprof_viewer_client.profiling("load data") as block:
        assert isinstance(block, vmprof_viewer_client.profiling)
    names = [c[0]["function"] for c in agent.messages()]
    prefix = f"{__name__}.test_methods_and_context_manager.<locals>.Shop."
    assert names == [prefix + "method", prefix + "klass", prefix + "static", "load data"]
    assert agent.messages()[2][0]["period"] == 0.05
    assert Shop.method.__name__ == "method"  # functools.wraps kept


def test_system_exit_zero_is_ok(env: Dict[str, str], agent: FakeAgent) -> None:
    vmprof_viewer_client.configure("p")
    with pytest.raises(SystemExit):
        with vmprof_viewer_client.profiling("script"):
            raise SystemExit(0)
    with pytest.raises(SystemExit):
        with vmprof_viewer_client.profiling("script"):
            raise SystemExit(3)
    ends = [c[1] for c in agent.messages()]
    assert ends[0]["status"] == "ok"
    assert ends[1]["status"] == "error" and "3" in ends[1]["error"]


def test_agent_refusing_start_falls_back_to_spool(env: Dict[str, str], capfd: pytest.CaptureFixture) -> None:
    fake = FakeAgent(env["socket"], reply=lambda m: {"ok": False, "error": "version 1 unknown"})
    try:
        vmprof_viewer_client.configure("p")

        @vmprof_viewer_client.profile
        def work() -> int:
            return 5

        assert work() == 5
    finally:
        fake.close()
    err = capfd.readouterr().err
    assert "version 1 unknown" in err and "vmprof-viewer-upload" in err
    assert len(spool_files(env["spool"])) == 1
    assert vmprof_viewer_client.last_run_id() is None


def test_unconfigured_runs_unprofiled_with_one_warning(env: Dict[str, str], agent: FakeAgent,
                                                       capfd: pytest.CaptureFixture) -> None:
    @vmprof_viewer_client.profile
    def work() -> int:
        return 7

    assert work() == 7 and work() == 7
    assert agent.messages() == []
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 1 and "configure" in err[0]


def test_fork_inside_profiled_call(env: Dict[str, str], agent: FakeAgent) -> None:
    vmprof_viewer_client.configure("p")

    @vmprof_viewer_client.profile(period=0.01)
    def work() -> int:
        burn_cpu(0.03)
        pid = os.fork()
        burn_cpu(0.03)
        return pid

    pid = work()
    if pid == 0:
        # The child returned through the wrapper: it must have sent nothing,
        # and it may profile on its own (a new run) without error.
        code = 0 if _profile._current is None and not vmprof.is_enabled() else 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    time.sleep(0.1)  # let the fake agent see anything the child might have sent
    conversations = agent.messages()
    assert len(conversations) == 1
    assert [m["op"] for m in conversations[0]] == ["start", "end"]
    assert not agent.errors
    stats = vmprof.read_profile(conversations[0][0]["path"])
    assert len(stats.profiles) > 0


def test_someone_elses_vmprof_is_left_alone(env: Dict[str, str], agent: FakeAgent, short_dir: str) -> None:
    vmprof_viewer_client.configure("p")

    @vmprof_viewer_client.profile
    def work() -> int:
        return 1

    with open(os.path.join(short_dir, "theirs.prof"), "w+b") as theirs:
        vmprof.enable(theirs.fileno(), period=0.01, memory=False, native=False)
        try:
            assert work() == 1
        finally:
            vmprof.disable()
    assert agent.messages() == []
