"""Protocol A: JSON frames to the local vmpv-agent over a unix stream socket.

A frame is a u32 big-endian length and that many bytes of UTF-8 JSON holding
one object. Every request carries "v": 1 and gets exactly one reply frame.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Dict, Optional

PROTOCOL_VERSION = 1
MAX_FRAME = 64 * 1024

CONNECT_TIMEOUT = 0.5
REPLY_TIMEOUT = 5.0


class AgentError(Exception):
    """The agent could not be reached, broke the connection, or refused."""


class AgentUnreachable(AgentError):
    """Nothing is listening: the caller may fall back to another route."""


def encode_frame(message: Dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise AgentError(f"request of {len(body)} bytes is over the {MAX_FRAME} byte frame limit")
    return struct.pack(">I", len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            raise AgentError("agent closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> Dict[str, Any]:
    (length,) = struct.unpack(">I", _recv_exact(sock, 4))
    if length > MAX_FRAME:
        raise AgentError(f"agent sent a {length} byte frame, over the {MAX_FRAME} byte limit")
    try:
        obj = json.loads(_recv_exact(sock, length).decode("utf-8"))
    except ValueError as exc:
        raise AgentError(f"agent sent a frame that is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise AgentError("agent sent a frame that is not a JSON object")
    return obj


class AgentConnection:
    """One connection carries one run (protocol A)."""

    def __init__(self, path: str, timeout: float = CONNECT_TIMEOUT) -> None:
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise AgentUnreachable(f"no agent at {path} ({exc.strerror or exc})") from None
        except OSError as exc:
            sock.close()
            raise AgentUnreachable(f"cannot connect to the agent at {path} ({exc})") from None
        self._sock: Optional[socket.socket] = sock

    def request(self, message: Dict[str, Any], timeout: float = REPLY_TIMEOUT) -> Dict[str, Any]:
        """Send one request and return the reply; raise AgentError on ok=false."""
        self.send(message)
        return self.reply(message.get("op"), timeout)

    def send(self, message: Dict[str, Any]) -> None:
        """Send one request without waiting for its reply (see reply())."""
        sock = self._sock
        if sock is None:
            raise AgentError("connection already closed")
        frame = encode_frame(dict(message, v=PROTOCOL_VERSION))
        try:
            sock.settimeout(REPLY_TIMEOUT)
            sock.sendall(frame)
        except socket.timeout:
            raise AgentError(f"agent at {self.path} did not take a request within {REPLY_TIMEOUT:g} s") from None
        except OSError as exc:
            raise AgentError(f"connection to the agent at {self.path} failed ({exc})") from None

    def reply(self, op: Any, timeout: float = REPLY_TIMEOUT) -> Dict[str, Any]:
        """The reply to the oldest request sent and not yet answered; raise
        AgentError on ok=false."""
        sock = self._sock
        if sock is None:
            raise AgentError("connection already closed")
        try:
            sock.settimeout(timeout)
            reply = read_frame(sock)
        except socket.timeout:
            raise AgentError(f"agent at {self.path} did not reply within {timeout:g} s") from None
        except OSError as exc:
            raise AgentError(f"connection to the agent at {self.path} failed ({exc})") from None
        if reply.get("ok") is not True:
            reason = reply.get("error")
            raise AgentError(f"agent refused {op!r}: {reason or 'no reason given'}")
        return reply

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
