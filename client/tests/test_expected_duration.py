"""The default period follows the seed's table when the run's expected
duration is known."""
from __future__ import annotations

import pytest

import vmprof_viewer_client
from vmprof_viewer_client import _settings


@pytest.mark.parametrize("seconds, period", [
    (60, 0.1), (3 * 3600, 0.1), (5 * 3600, 0.2), (6 * 3600, 0.2), (10 * 3600, 0.5),
    (12 * 3600, 0.5), (18 * 3600, 0.9), (48 * 3600, 0.9),
])
def test_table(seconds: float, period: float) -> None:
    assert _settings.period_for_duration(seconds) == period


@pytest.mark.parametrize("bad", [0, -5, float("nan"), "3h", True])
def test_bad_expected_duration_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        vmprof_viewer_client.profile(expected_duration=bad)  # type: ignore[arg-type]


def test_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    _settings.reset()
    monkeypatch.delenv("VMPV_PERIOD", raising=False)
    monkeypatch.setenv("VMPV_EXPECTED_DURATION", str(7 * 3600))
    assert _settings.period() == 0.5
    vmprof_viewer_client.configure("P", expected_duration=4 * 3600)
    assert _settings.period() == 0.2
    vmprof_viewer_client.configure("P", period=0.05, expected_duration=4 * 3600)
    assert _settings.period() == 0.05
    assert _settings.period(0.01) == 0.01
    _settings.reset()
