from pathlib import Path

import pytest

from lienthong.services.settings import SAMPLE_CATALOGUE, Settings


def test_options_win_over_the_environment_and_none_means_not_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_PARTITIONS", "12")
    monkeypatch.setenv("LIENTHONG_APP_ID", "from-env")
    settings = Settings.from_env(app_id=None, data_dir="/srv/lienthong", worker_port="7000")
    assert settings.partitions == 12
    assert settings.app_id == "from-env"
    assert settings.data_dir == Path("/srv/lienthong")
    assert settings.worker_port == 7000


def test_a_bad_number_names_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_PARTITIONS", "eight")
    with pytest.raises(ValueError, match="LIENTHONG_PARTITIONS='eight'"):
        Settings.from_env()
    monkeypatch.delenv("LIENTHONG_PARTITIONS")
    with pytest.raises(ValueError, match="--worker-port='x'"):
        Settings.from_env(worker_port="x")


def test_the_sample_catalogue_is_the_default_from_any_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LIENTHONG_CATALOG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env().catalog_path == SAMPLE_CATALOGUE
    assert SAMPLE_CATALOGUE.is_file()
