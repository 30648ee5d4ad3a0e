"""The guard's two settings: defaults, and one-line errors for values that cannot work."""

from __future__ import annotations

import pytest

from service.settings import ConfigError, load_settings


def test_the_guard_waits_30_seconds_for_cal_com_and_5_for_the_truth_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARD_CALCOM_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("GUARD_TRUTH_SECONDS", raising=False)
    settings = load_settings(_env_file=None)
    assert (settings.guard_calcom_timeout_seconds, settings.guard_truth_seconds) == (30.0, 5.0)


@pytest.mark.parametrize(
    "name, value",
    [
        ("GUARD_CALCOM_TIMEOUT_SECONDS", "0"),
        ("GUARD_CALCOM_TIMEOUT_SECONDS", "301"),
        ("GUARD_TRUTH_SECONDS", "-1"),
        ("GUARD_TRUTH_SECONDS", "soon"),
    ],
)
def test_an_unusable_guard_setting_is_a_one_line_error_naming_it(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value).startswith(f"configuration error: {name}:") and "\n" not in str(caught.value)
