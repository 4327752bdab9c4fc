"""Dataset URIs follow the one allowed-roots rule of service.uris: the data dir counts only when embedded."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.datasets import UriRejected, resolve_dataset_uri
from service.settings import Settings

SECRET = "a-production-secret-that-is-long-enough-0123456789"


def test_data_dir_is_allowed_in_embedded_mode_only(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "bench"
    folder.mkdir(parents=True)
    embedded = Settings(mode="embedded", data_dir=tmp_path / "home")
    assert resolve_dataset_uri(folder.as_uri(), embedded) == folder.resolve()
    production = Settings(mode="production", data_dir=tmp_path / "home", secret_key=SECRET)
    with pytest.raises(UriRejected, match="allowed"):
        resolve_dataset_uri(folder.as_uri(), production)
