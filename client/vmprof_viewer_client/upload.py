"""vmprof-viewer-upload: send a finished vmprof file to vmprof-viewer.

    vmprof-viewer-upload PROJECT FILE [--server URL | --agent SOCKET] [--function NAME]

With --agent the local agent reads the file (protocol A "upload"); with
--server the file is POSTed to the server (protocol D). With neither, the
agent at $VMPV_AGENT_SOCKET (default /tmp/vmpv-agent.sock) is tried first and
the server at $VMPV_URL (default http://localhost:8000) second. On success
prints "run <id>" and the run's URL; on failure one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from typing import IO, List, Optional, Tuple

from . import _settings
from ._agent import AgentConnection, AgentError
from ._server import UploadError, run_url, upload
from ._vmpfile import NotAProfile, ProfileInfo, gunzip, is_gzip, parse_head

PROG = "vmprof-viewer-upload"
AGENT_UPLOAD_TIMEOUT = 600.0  # the agent replies only after reading the whole file


class Failure(Exception):
    """Ends the program with this one line on stderr."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Upload a vmprof profile file to vmprof-viewer.",
    )
    parser.add_argument("project", metavar="PROJECT", help="project name (whitespace ok)")
    parser.add_argument("file", metavar="FILE", help="profile written by vmprof (may be gzip-compressed)")
    route = parser.add_mutually_exclusive_group()
    route.add_argument("--server", metavar="URL",
                       help=f"POST the file to this vmprof-viewer server (else ${_settings.ENV_URL} "
                            f"or {_settings.DEFAULT_SERVER_URL})")
    route.add_argument("--agent", metavar="SOCKET",
                       help=f"hand the file to the agent at this socket (else ${_settings.ENV_AGENT_SOCKET} "
                            f"or {_settings.DEFAULT_AGENT_SOCKET})")
    parser.add_argument("--function", metavar="NAME",
                        help="name shown for the run (default: the file name)")
    return parser


def _open_profile(path: str, spool: List[str]) -> Tuple[IO[bytes], ProfileInfo]:
    """Open the file (gunzipping it into a temporary file if needed) and check it."""
    try:
        source: IO[bytes] = open(path, "rb")
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        head = source.read(4096)
        if is_gzip(head):
            source.seek(0)
            unzipped = _temporary_file()
            spool.append(unzipped.name)
            try:
                gunzip(source, unzipped)
            except NotAProfile as exc:
                raise Failure(f"{path}: {exc}") from None
            except OSError as exc:
                raise Failure(f"cannot decompress {path}: {exc.strerror or exc}") from None
            source.close()
            source = unzipped
            source.seek(0)
            head = source.read(4096)
        try:
            info = parse_head(head)
        except NotAProfile as exc:
            raise Failure(f"{path}: {exc}") from None
        source.seek(0)
        return source, info
    except OSError as exc:
        source.close()
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from None
    except BaseException:
        source.close()
        raise


def _temporary_file() -> IO[bytes]:
    # In the spool directory rather than /tmp: the agent must be able to read
    # it, and the spool directory is where it already reads client profiles.
    directory = _settings.spool_dir()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        directory = tempfile.gettempdir()
    try:
        return tempfile.NamedTemporaryFile("w+b", dir=directory, prefix="upload-", suffix=".prof", delete=False)
    except OSError as exc:
        raise Failure(f"cannot create a temporary file in {directory}: {exc.strerror or exc}") from None


def _via_agent(socket_path: str, project: str, function: str, path: str,
               info: ProfileInfo) -> Tuple[str, int]:
    conn = AgentConnection(socket_path)
    try:
        run = os.urandom(16).hex()
        reply = conn.request({
            "op": "upload",
            "run": run,
            "project": project,
            "function": function,
            "path": os.path.abspath(path),
            "period": info.period,
            "pid": 0,  # the profiled process is unknown for a plain file
            "host": socket.gethostname(),
            "tags": {},
            "start": info.start if info.start is not None else os.stat(path).st_mtime,
            "owned": False,
        }, timeout=AGENT_UPLOAD_TIMEOUT)
    finally:
        conn.close()
    run_id = reply.get("run")
    samples = reply.get("samples")
    return (run_id if isinstance(run_id, str) and run_id else run,
            samples if isinstance(samples, int) else -1)


def _run(argv: Optional[List[str]]) -> int:
    args = _parser().parse_args(argv)
    project: str = args.project
    if not project.strip():
        raise Failure("PROJECT must not be empty")
    function: str = args.function or os.path.basename(args.file) or args.file
    temporary: List[str] = []
    try:
        body, info = _open_profile(args.file, temporary)
        with body:
            path = temporary[0] if temporary else args.file
            size = os.fstat(body.fileno()).st_size

            reasons: List[str] = []
            if args.server is None:
                socket_path = args.agent or _settings.agent_socket()
                try:
                    run_id, _samples = _via_agent(socket_path, project, function, path, info)
                except AgentError as exc:
                    if args.agent is not None:
                        raise Failure(str(exc)) from None
                    reasons.append(str(exc))
                else:
                    print(f"run {run_id}")
                    print(run_url(_settings.server_url(), run_id))
                    return 0

            server = _settings.normalize_url(args.server) if args.server else _settings.server_url()
            try:
                uploaded = upload(server, project, function, body, size)
            except UploadError as exc:
                reasons.append(f"upload to {server} failed: {exc}")
                raise Failure("; ".join(reasons)) from None
            print(f"run {uploaded.run_id}")
            print(uploaded.url)
            return 0
    finally:
        for name in temporary:
            try:
                os.unlink(name)
            except OSError:
                pass


def main(argv: Optional[List[str]] = None) -> int:
    try:
        return _run(argv)
    except Failure as exc:
        print(f"{PROG}: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
