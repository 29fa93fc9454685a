"""Protocol D: POST a finished vmprof file straight to the vmprof-viewer server."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import IO, Any, Dict, Union

from ._urls import run_url

UPLOAD_TIMEOUT = 60.0


class UploadError(Exception):
    pass


@dataclass
class Uploaded:
    run_id: str
    url: str
    samples: int
    status: str


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(4096)
        error = json.loads(body.decode("utf-8")).get("error")
        if isinstance(error, str) and error:
            return f"HTTP {exc.code}: {' '.join(error.split())}"
    except Exception:
        pass
    return f"HTTP {exc.code} {exc.reason}"


def upload(server: str, project: str, function: str, body: Union[bytes, IO[bytes]],
           length: int, timeout: float = UPLOAD_TIMEOUT) -> Uploaded:
    """Upload one profile; raise UploadError with a one-line reason on failure.

    `body` may be an open file so that a long profile is streamed rather
    than read into memory; `length` is its size in bytes.
    """
    base = server.rstrip("/")
    query = urllib.parse.urlencode({"project": project, "function": function})
    request = urllib.request.Request(
        f"{base}/api/v1/upload?{query}",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            raw = response.read(1024 * 1024)
    except urllib.error.HTTPError as exc:
        raise UploadError(_reason(exc)) from None
    except urllib.error.URLError as exc:
        raise UploadError(f"cannot reach {base} ({exc.reason})") from None
    except OSError as exc:
        raise UploadError(f"cannot reach {base} ({exc})") from None
    if status not in (200, 201):
        raise UploadError(f"unexpected HTTP {status} from {base}")
    try:
        reply: Dict[str, Any] = json.loads(raw.decode("utf-8"))
        run_id = reply["id"]
        if not isinstance(run_id, str) or not run_id:
            raise ValueError("no id")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UploadError(f"server at {base} sent an unexpected reply") from None
    samples = reply.get("samples")
    return Uploaded(
        run_id=run_id,
        # Built from our base rather than the reply's "/runs/<id>" so that a
        # server mounted under a path prefix still gets a working link.
        url=run_url(base, run_id),
        samples=samples if isinstance(samples, int) else -1,
        status=str(reply.get("status", "")),
    )
