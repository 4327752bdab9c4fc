"""List settings come from the environment as plain separated strings or JSON lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings


@pytest.mark.parametrize(
    ("raw", "expected"), [("gpu", ["gpu"]), ("gpu,a100", ["gpu", "a100"]), ('["gpu", "h100"]', ["gpu", "h100"])]
)
def test_queues_from_env(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    monkeypatch.setenv("GKD_QUEUES", raw)
    assert Settings().queues == expected


def test_allowed_roots_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GKD_ALLOWED_ROOTS", "/data/a:/data/b")
    assert Settings().allowed_roots == [Path("/data/a"), Path("/data/b")]


def test_speed_overrides_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GKD_SPEED", "compile=off, attention=flash")
    assert Settings().speed_overrides == {"compile": False, "attention": "flash"}
    monkeypatch.delenv("GKD_SPEED")
    assert Settings().speed_overrides == {}


def test_a_misspelt_speed_override_stops_the_settings_from_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("GKD_SPEED", "compiled=on")
    with pytest.raises(ValidationError, match="'compiled=on' is not name=value with a name of"):
        Settings()
