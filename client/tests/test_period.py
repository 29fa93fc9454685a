from __future__ import annotations

import math
import os

import pytest

import vmprof_viewer_client
from vmprof_viewer_client import _settings

from clienthelpers import spool_files

BAD = [0, 0.0, -0.1, 0.0005, 1e-6, 1.0, 1, 5, math.nan, math.inf, "abc", "0.01", True, [0.1]]


@pytest.mark.parametrize("period", BAD)
def test_decorator_rejects_bad_period(period: object) -> None:
    with pytest.raises(ValueError, match=r"0\.001 <= period < 1\.0"):
        vmprof_viewer_client.profile(period=period)  # type: ignore[call-overload]


@pytest.mark.parametrize("period", [0.001, 0.01, 0.1, 0.9, 0.999])
def test_good_periods(period: float) -> None:
    assert _settings.validate_period(period) == period


def test_configure_rejects_bad_period(env: dict) -> None:
    with pytest.raises(ValueError, match="period"):
        vmprof_viewer_client.configure("p", period=2.0)


def test_context_manager_rejects_bad_period(env: dict) -> None:
    with pytest.raises(ValueError):
        vmprof_viewer_client.profiling("block", period=0)


def test_bad_env_period_raises_before_anything_starts(env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_settings.ENV_PERIOD, "fast")
    monkeypatch.setenv(_settings.ENV_PROJECT, "p")
    called = []

    @vmprof_viewer_client.profile
    def f() -> None:
        called.append(1)

    with pytest.raises(ValueError, match="VMPV_PERIOD"):
        f()
    assert called == []
    assert spool_files(env["spool"]) == []
    with pytest.raises(ValueError, match="VMPV_PERIOD"):
        vmprof_viewer_client.configure("p")


def test_positional_period_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="period="):
        vmprof_viewer_client.profile(0.01)  # type: ignore[call-overload]


def test_default_period_is_a_tenth_of_a_second(env: dict) -> None:
    assert _settings.period() == 0.1
    assert os.environ.get(_settings.ENV_PERIOD) is None
