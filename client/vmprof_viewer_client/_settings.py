"""Configuration: what configure() was given, the environment, and defaults.

Precedence everywhere: an explicit argument, then the environment variable,
then the default. The environment is read at each profiled call rather than
at import so that a program (or a test) can change it after importing us.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional

ENV_PROJECT = "VMPV_PROJECT"
ENV_AGENT_SOCKET = "VMPV_AGENT_SOCKET"
ENV_PERIOD = "VMPV_PERIOD"
ENV_URL = "VMPV_URL"
ENV_SPOOL_DIR = "VMPV_SPOOL_DIR"
ENV_VERBOSE = "VMPV_VERBOSE"

DEFAULT_AGENT_SOCKET = "/tmp/vmpv-agent.sock"
DEFAULT_SERVER_URL = "http://localhost:8000"
DEFAULT_PERIOD = 0.1

# vmprof itself accepts 1e-6 <= period < 1.0, but with its default CPU-time
# timer the kernel only checks the timer at the scheduler tick (250 Hz on a
# typical CONFIG_HZ=250 kernel), so anything below 1 ms buys nothing but a
# header that lies about the rate.
MIN_PERIOD = 0.001
MAX_PERIOD = 1.0  # exclusive, vmprof's own limit

MAX_TAGS_BYTES = 16 * 1024  # keeps the start frame far below the 64 KiB cap


def validate_period(value: object, source: str = "period", from_text: bool = False) -> float:
    """Return `value` as a float, or raise ValueError saying what is allowed.

    Strings are accepted only `from_text` (environment variables).
    """
    allowed = (
        f"{source} must be a number of seconds with "
        f"{MIN_PERIOD} <= {source} < {MAX_PERIOD} (e.g. 0.1 = 10 Hz, 0.01 = 100 Hz)"
    )
    if isinstance(value, bool):
        raise ValueError(f"{allowed}; got {value!r}")
    if isinstance(value, str) and from_text:
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{allowed}; got {value!r}") from None
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise ValueError(f"{allowed}; got {value!r}")
    if math.isnan(number) or not (MIN_PERIOD <= number < MAX_PERIOD):
        raise ValueError(f"{allowed}; got {value!r}")
    return number


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url  # "localhost:8000" is what people type
    return url


def validate_tags(tags: Optional[Mapping[str, str]]) -> Dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise TypeError(f"tags must be a dict of str to str, got {type(tags).__name__}")
    out: Dict[str, str] = {}
    size = 0
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"tags must be a dict of str to str; bad item {key!r}: {value!r}")
        out[key] = value
        size += len(key.encode("utf-8", "replace")) + len(value.encode("utf-8", "replace"))
    if size > MAX_TAGS_BYTES:
        raise ValueError(f"tags are too large ({size} bytes, at most {MAX_TAGS_BYTES})")
    return out


@dataclass
class _Configured:
    project: Optional[str] = None
    url: Optional[str] = None
    period: Optional[float] = None
    tags: Dict[str, str] = field(default_factory=dict)


_lock = threading.Lock()
_configured = _Configured()


def configure(
    project_name: str,
    url: Optional[str] = None,
    period: Optional[float] = None,
    *,
    tags: Optional[Mapping[str, str]] = None,
    expected_duration: Optional[float] = None,
) -> None:
    """Set the project (and optionally server URL, default period, tags).

    `expected_duration` (seconds) picks the default period from the seed's
    table when no period is given: <= 3 h 0.1, 6 h 0.2, 12 h 0.5, longer 0.9.

    Call it once before any profiled code runs. `url` is the vmprof-viewer
    server, used for direct uploads when no local agent is running and for
    printing run URLs. Raises ValueError/TypeError on bad arguments.
    """
    global _configured
    if not isinstance(project_name, str) or not project_name.strip():
        raise ValueError(f"project_name must be a non-empty string, got {project_name!r}")
    if url is not None and (not isinstance(url, str) or not url.strip()):
        raise ValueError(f"url must be a non-empty string or None, got {url!r}")
    checked_period = None if period is None else validate_period(period)
    if checked_period is None and expected_duration is not None:
        checked_period = period_for_duration(expected_duration)
    if checked_period is None and os.environ.get(ENV_PERIOD):
        # Fail here, at setup, rather than at the first profiled call.
        validate_period(os.environ[ENV_PERIOD], ENV_PERIOD, from_text=True)
    checked_tags = validate_tags(tags)
    with _lock:
        _configured = _Configured(
            project=project_name,
            url=normalize_url(url) if url else None,
            period=checked_period,
            tags=checked_tags,
        )


def reset() -> None:
    """Forget configure() (for tests)."""
    global _configured
    with _lock:
        _configured = _Configured()


def project() -> Optional[str]:
    with _lock:
        if _configured.project:
            return _configured.project
    return os.environ.get(ENV_PROJECT) or None


def tags() -> Dict[str, str]:
    with _lock:
        return dict(_configured.tags)


def period(explicit: Optional[float] = None) -> float:
    """The period for one profile: decorator, then configure(), then env."""
    if explicit is not None:
        return validate_period(explicit)
    with _lock:
        configured = _configured.period
    if configured is not None:
        return configured
    env = os.environ.get(ENV_PERIOD)
    if env:
        return validate_period(env, ENV_PERIOD, from_text=True)
    expected = env_expected_duration()
    if expected is not None:
        return period_for_duration(expected)
    return DEFAULT_PERIOD


def upload_url() -> Optional[str]:
    """The server for direct uploads, only if one was configured."""
    with _lock:
        if _configured.url:
            return _configured.url
    env = os.environ.get(ENV_URL, "").strip()
    return normalize_url(env) if env else None


def server_url() -> str:
    """The server to name in run URLs (falls back to the default)."""
    return upload_url() or DEFAULT_SERVER_URL


def agent_socket() -> str:
    return os.environ.get(ENV_AGENT_SOCKET) or DEFAULT_AGENT_SOCKET


def spool_dir() -> str:
    env = os.environ.get(ENV_SPOOL_DIR)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.abspath(os.path.join(cache, "vmprof-viewer", "spool"))


def verbose() -> bool:
    return os.environ.get(ENV_VERBOSE, "") not in ("", "0")


ENV_KEEP = "VMPV_KEEP_PROFILES"


def keep_profiles() -> bool:
    """Whether profile files stay on disk after the agent has sent them
    (for inspection, and for tests that compare them with vmprof's reader)."""
    return os.environ.get(ENV_KEEP, "") not in ("", "0")


ENV_EXPECTED_DURATION = "VMPV_EXPECTED_DURATION"

# The seed's table: the longest period it recommends for each duration, so
# that a long job sends a profile of a manageable size (seconds -> period).
_PERIOD_BY_DURATION = ((3 * 3600, 0.1), (6 * 3600, 0.2), (12 * 3600, 0.5))
_PERIOD_LONG = 0.9  # >= 24 h: about 1 Hz, the minimum the seed recommends


def period_for_duration(seconds: float) -> float:
    """The default period for a run expected to take `seconds`."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"expected_duration must be a positive number of seconds, got {seconds!r}")
    for limit, p in _PERIOD_BY_DURATION:
        if seconds <= limit:
            return p
    return _PERIOD_LONG


def env_expected_duration() -> Optional[float]:
    text = os.environ.get(ENV_EXPECTED_DURATION, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{ENV_EXPECTED_DURATION} must be seconds, got {text!r}") from None
    period_for_duration(value)
    return value
