"""Test peers: a tiny protocol-A listener and a tiny protocol-D HTTP server.

They stand in for the agent and the server so the client can be tested on
its own, with real vmprof and no network beyond the loopback interface.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

CLIENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if CLIENT_DIR not in sys.path:
    sys.path.insert(0, CLIENT_DIR)

import vmprof_viewer_client  # noqa: E402
from vmprof_viewer_client import _profile, _settings  # noqa: E402

Reply = Callable[[Dict[str, Any]], Dict[str, Any]]


def burn_cpu(seconds: float = 0.05) -> int:
    """Spend CPU time so that vmprof records a few samples."""
    end = time.process_time() + seconds
    total = 0
    while time.process_time() < end:
        total += sum(i * i for i in range(1000))
    return total


class FakeAgent:
    """Accepts protocol-A connections and records every frame per connection."""

    def __init__(self, path: str, reply: Optional[Reply] = None) -> None:
        self.path = path
        self.reply: Reply = reply or (lambda message: {"ok": True})
        self.connections: List[List[Dict[str, Any]]] = []
        self.errors: List[str] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(16)
        self._server.settimeout(0.1)
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            frames: List[Dict[str, Any]] = []
            with self._lock:
                self.connections.append(frames)
            threading.Thread(target=self._serve, args=(conn, frames), daemon=True).start()

    @staticmethod
    def _recv(conn: socket.socket, n: int) -> Optional[bytes]:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self, conn: socket.socket, frames: List[Dict[str, Any]]) -> None:
        with conn:
            while True:
                head = self._recv(conn, 4)
                if head is None:
                    return
                (length,) = struct.unpack(">I", head)
                if length > 64 * 1024:
                    self.errors.append(f"frame too long: {length}")
                    return
                body = self._recv(conn, length)
                if body is None:
                    self.errors.append("connection closed inside a frame")
                    return
                message = json.loads(body.decode("utf-8"))
                frames.append(message)
                answer = json.dumps(self.reply(message)).encode("utf-8")
                conn.sendall(struct.pack(">I", len(answer)) + answer)

    def messages(self) -> List[List[Dict[str, Any]]]:
        with self._lock:
            return [list(frames) for frames in self.connections]

    def close(self) -> None:
        self._stop = True
        self._server.close()
        self._thread.join(2)


class FakeServer:
    """Answers POST /api/v1/upload like the vmprof-viewer server (protocol D)."""

    def __init__(self, status: int = 201) -> None:
        self.uploads: List[Dict[str, Any]] = []
        self.status = status
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                owner.uploads.append({"path": parsed.path, "query": query, "body": body,
                                      "content_type": self.headers.get("Content-Type")})
                if owner.status == 201:
                    run = "ab" * 16
                    reply = {"id": run, "url": f"/runs/{run}", "samples": 3, "status": "complete"}
                else:
                    reply = {"error": "not a vmprof profile"}
                data = json.dumps(reply).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def short_dir() -> Iterator[str]:
    # Unix socket paths must stay under ~108 bytes; pytest's tmp_path may not.
    path = tempfile.mkdtemp(prefix="vmpv-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, short_dir: str) -> Iterator[Dict[str, str]]:
    """A clean client: no configure(), nothing warned yet, private spool and socket."""
    spool = os.path.join(short_dir, "spool")
    sock = os.path.join(short_dir, "agent.sock")
    for name in (_settings.ENV_PROJECT, _settings.ENV_PERIOD, _settings.ENV_URL, _settings.ENV_VERBOSE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(_settings.ENV_SPOOL_DIR, spool)
    monkeypatch.setenv(_settings.ENV_AGENT_SOCKET, sock)
    _settings.reset()
    _profile._warned.clear()
    _profile._set_last(None, None)
    yield {"spool": spool, "socket": sock, "dir": short_dir}
    _settings.reset()
    _profile._warned.clear()


@pytest.fixture
def agent(env: Dict[str, str]) -> Iterator[FakeAgent]:
    fake = FakeAgent(env["socket"])
    yield fake
    fake.close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def spool_files(spool: str) -> List[str]:
    if not os.path.isdir(spool):
        return []
    return sorted(os.path.join(spool, name) for name in os.listdir(spool))


__all__ = ["FakeAgent", "FakeServer", "burn_cpu", "spool_files", "vmprof_viewer_client"]
