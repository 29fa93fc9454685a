"""Profiled calls: the `profile` decorator and the `profiling` context manager.

vmprof can only profile one thing per process at a time (one signal handler,
one output file), so at most one profiled call is recorded at a time; any
profiled call that starts while one is running (nested, or in another
thread) simply runs unprofiled - it is covered by the outer profile anyway
when it is nested, and sampled as part of the process when it is in another
thread.

Everything that can fail on our side is caught and reported on stderr: the
user's program must behave the same with or without us. Only a bad period is
raised (ValueError), and the user's own exceptions pass through unchanged.
"""

from __future__ import annotations

import functools
import inspect
import os
import shlex
import socket
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Set, Tuple, TypeVar, overload

import vmprof

from . import _settings
from ._agent import AgentConnection, AgentError
from ._urls import run_url

F = TypeVar("F", bound=Callable[..., Any])

_MESSAGE_PREFIX = "vmprof-viewer: "
_MAX_ERROR_TEXT = 1000

_lock = threading.Lock()
_busy = False
_current: Optional["_Run"] = None
_warned: Set[str] = set()
_last: Tuple[Optional[str], Optional[str]] = (None, None)


def last_run_id() -> Optional[str]:
    """Id of the last profile this process handed to the agent or the server.

    None if nothing was profiled yet or the last profile could only be kept
    in the spool directory.
    """
    return _last[0]


def last_run_url() -> Optional[str]:
    """Web UI address of the last run (see last_run_id)."""
    return _last[1]


def _set_last(run_id: Optional[str], url: Optional[str]) -> None:
    global _last
    _last = (run_id, url)


def _say(message: str) -> None:
    try:
        line = " ".join(message.splitlines())
        sys.stderr.write(_MESSAGE_PREFIX + line + "\n")
        sys.stderr.flush()
    except Exception:
        pass  # a closed or broken stderr must not break the user's program


def _warn_once(key: str, message: str) -> None:
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    _say(message)


def _claim(run: "_Run") -> bool:
    global _busy, _current
    with _lock:
        if _busy:
            return False
        try:
            # Someone else's vmprof.enable() (plain vmprof, another wrapper)
            # owns the profiler: leave it alone.
            if vmprof.is_enabled():
                return False
        except Exception:
            pass
        _busy = True
        _current = run
        return True


def _release(run: "_Run") -> None:
    global _busy, _current
    with _lock:
        if _current is run:
            _busy = False
            _current = None


def _after_fork_in_child() -> None:
    # vmprof's own atfork hook already stopped the timer and closed the
    # profile's file descriptor in the child. The profile belongs to the
    # parent: the child must neither write to it nor talk to the agent
    # about it, and is free to start profiles of its own.
    global _lock, _busy, _current
    run = _current
    _lock = threading.Lock()  # another thread may have held it at fork time
    _busy = False
    _current = None
    if run is not None:
        run.detach_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _one_line(exc_type: Optional[type], exc: Optional[BaseException]) -> str:
    try:
        text = repr(exc) if exc is not None else getattr(exc_type, "__name__", "exception")
    except Exception:
        text = getattr(exc_type, "__name__", "exception")
    text = " ".join(text.splitlines())
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 3] + "..."
    return text


def _upload_command(project: str, path: str, function: str) -> str:
    return "vmprof-viewer-upload {} {} --function {}".format(
        shlex.quote(project), shlex.quote(path), shlex.quote(function)
    )


class _Run:
    """One profiled call, from vmprof.enable() to handing the file on."""

    def __init__(self, function: str, period: Optional[float]) -> None:
        self.function = function
        self._period_arg = period
        self._pid = os.getpid()
        self._claimed = False
        self._enabled = False
        self._detached = False
        self._fd = -1
        self._path: Optional[str] = None
        self._run_id = ""
        self._project = ""
        self._conn: Optional[AgentConnection] = None
        self._no_agent_reason = ""

    # -- start ---------------------------------------------------------

    def enter(self) -> None:
        if _busy:  # unlocked peek: the common nested case costs nothing more
            return
        period = _settings.period(self._period_arg)  # ValueError goes to the caller
        project = _settings.project()
        if not project:
            _warn_once(
                "no-project",
                "no project configured: call vmprof_viewer_client.configure(\"NAME\") "
                f"or set {_settings.ENV_PROJECT}; profiled functions run unprofiled",
            )
            return
        if not _claim(self):
            return
        self._claimed = True
        self._project = project
        try:
            self._start(period)
        except Exception as exc:
            self._abandon()
            _warn_once("start-failed", f"could not start profiling {self.function}, running it unprofiled: {exc}")
        except BaseException:
            self._abandon()
            raise

    def _start(self, period: float) -> None:
        self._run_id = os.urandom(16).hex()
        spool = _settings.spool_dir()
        os.makedirs(spool, mode=0o700, exist_ok=True)
        path = os.path.join(spool, self._run_id + ".prof")
        # O_RDWR: vmprof.disable() reads the file back to append symbol names.
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._path = path

        socket_path = _settings.agent_socket()
        try:
            conn = AgentConnection(socket_path)
            try:
                # Not waiting for the reply here: the agent answers once the
                # run is on its disk (a millisecond or two), and the profiled
                # call need not pay for that. _finish() reads it before `end`.
                conn.send({
                    "op": "start",
                    "run": self._run_id,
                    "project": self._project,
                    "function": self.function,
                    "path": path,
                    "period": period,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "tags": _settings.tags(),
                    "start": time.time(),
                    "owned": not _settings.keep_profiles(),
                })
            except AgentError:
                conn.close()
                raise
            self._conn = conn
        except AgentError as exc:
            self._no_agent_reason = str(exc)

        try:
            vmprof.enable(self._fd, period=period, memory=True, native=False)
        except Exception as exc:
            if self._conn is not None and self._started():
                # The agent owns the file now; tell it why it stays empty.
                try:
                    self._conn.request({"op": "end", "status": "error",
                                        "error": f"vmprof-viewer: vmprof did not start: {exc}"})
                    self._path = None
                except AgentError:
                    pass
            raise
        self._enabled = True

    def _started(self) -> bool:
        """Reads the agent's reply to `start`. False (the connection closed,
        the reason kept) if the agent refused the run or went away before
        answering: the profile then takes the no-agent path."""
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.reply("start")
            return True
        except AgentError as exc:
            self._no_agent_reason = str(exc)
            conn.close()
            self._conn = None
            return False

    def _abandon(self) -> None:
        """Undo a start that failed half-way."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass
            self._path = None
        self._claimed = False
        _release(self)

    def detach_in_child(self) -> None:
        self._detached = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # our copy of the socket only; the parent's stays connected
        # Not os.close(self._fd): vmprof closed it, and the number may be reused.
        self._fd = -1

    # -- finish --------------------------------------------------------

    def exit(self, exc_type: Optional[type], exc: Optional[BaseException]) -> None:
        if not self._claimed or self._detached or os.getpid() != self._pid:
            return
        try:
            if self._enabled:
                self._finish(exc_type, exc)
        except Exception as failure:
            _warn_once("finish-failed", f"could not finish the profile of {self.function}: {failure}")
        finally:
            self._claimed = False
            _release(self)

    def _finish(self, exc_type: Optional[type], exc: Optional[BaseException]) -> None:
        self._enabled = False
        disable_error = ""
        try:
            vmprof.disable()
        except Exception as failure:
            disable_error = f"vmprof.disable() failed: {failure}"
        finally:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        if disable_error:
            _warn_once("disable-failed", f"{disable_error}; the profile may be incomplete")

        if exc_type is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            end = {"op": "end", "status": "ok"}
        else:
            end = {"op": "end", "status": "error", "error": _one_line(exc_type, exc)}

        started = self._started()
        reason = self._no_agent_reason
        conn, self._conn = self._conn, None
        if started and conn is not None:
            try:
                conn.request(end)
            except AgentError as failure:
                # The agent answered `start` only once the run was on its disk:
                # a restarted agent resumes the file from its saved state, so
                # sending it ourselves now would make a second copy.
                _warn_once(
                    "agent-lost",
                    f"the agent went away during a profile ({failure}); it will finish "
                    f"sending run {self._run_id} from {self._path} when it restarts",
                )
            finally:
                conn.close()
            self._delivered(self._run_id, run_url(_settings.server_url(), self._run_id))
            return
        self._fallback(reason)

    def _fallback(self, reason: str) -> None:
        path = self._path
        if path is None or not os.path.exists(path):
            return  # the agent took it after all
        server = _settings.upload_url()
        if server:
            # Imported here: urllib, http.client and ssl add thousands of
            # objects that vmprof.disable() walks on every profiled call.
            from ._server import UploadError, upload
            try:
                with open(path, "rb") as body:
                    uploaded = upload(server, self._project, self.function, body, os.fstat(body.fileno()).st_size)
            except (UploadError, OSError) as failure:
                reason = f"{reason}; upload to {server} failed: {failure}"
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
                self._delivered(uploaded.run_id, uploaded.url)
                return
        _set_last(None, None)
        _warn_once(
            "kept",
            f"{reason}; profile kept in {path} (later ones go to the same directory); "
            f"upload it with: {_upload_command(self._project, path, self.function)}",
        )

    @staticmethod
    def _delivered(run_id: str, url: str) -> None:
        _set_last(run_id, url)
        if _settings.verbose():
            _say(f"run {run_id}: {url}")


class profiling:
    """Profile a block: ``with profiling("load data"): ...``.

    `name` is shown as the run's function. The same rules as for
    `profile` apply (nesting, threads, period validation).
    """

    def __init__(self, name: str, period: Optional[float] = None,
                 expected_duration: Optional[float] = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if period is not None:
            _settings.validate_period(period)
        elif expected_duration is not None:
            period = _settings.period_for_duration(expected_duration)
        self.name = name
        self.period = period
        self._runs: List[_Run] = []  # a stack, so one object can be nested or reused

    def __enter__(self) -> "profiling":
        run = _Run(self.name, self.period)
        run.enter()
        self._runs.append(run)
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Any) -> None:
        self._runs.pop().exit(exc_type, exc)


def _function_name(fn: Callable[..., Any]) -> str:
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    if module and module != "__main__":
        return f"{module}.{qualname}"
    return qualname


def _wrap(fn: Any, period: Optional[float]) -> Any:
    if isinstance(fn, (staticmethod, classmethod)):
        # Decorating above @staticmethod/@classmethod: wrap the function inside.
        return type(fn)(_wrap(fn.__func__, period))
    if not callable(fn):
        raise TypeError(
            f"@profile needs a function or method, got {fn!r}; write @profile(period=...) to set a period"
        )
    name = _function_name(fn)

    if inspect.iscoroutinefunction(fn):
        # The profile spans the whole await, so it also samples whatever
        # else the event loop runs meanwhile (vmprof is process-wide).
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            run = _Run(name, period)
            run.enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                run.exit(type(exc), exc)
                raise
            run.exit(None, None)
            return result

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run = _Run(name, period)
        run.enter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            run.exit(type(exc), exc)
            raise
        run.exit(None, None)
        return result

    return wrapper


@overload
def profile(func: F) -> F: ...
@overload
def profile(func: None = None, *, period: Optional[float] = None,
            expected_duration: Optional[float] = None) -> Callable[[F], F]: ...


def profile(func: Any = None, *, period: Optional[float] = None,
            expected_duration: Optional[float] = None) -> Any:
    """Profile every call of a function or method and send the profile on.

    Use bare (``@profile``) or with a period in seconds
    (``@profile(period=0.01)``); 0.001 <= period < 1.0, default 0.1. Or say
    how long a call is expected to run (``expected_duration=`` seconds) and
    let the seed's table pick the period.
    """
    if period is not None:
        _settings.validate_period(period)  # a bad period fails at import, not later
    elif expected_duration is not None:
        period = _settings.period_for_duration(expected_duration)

    def decorate(fn: F) -> F:
        return _wrap(fn, period)  # type: ignore[no-any-return]

    if func is None:
        return decorate
    return decorate(func)
