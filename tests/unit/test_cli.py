from pathlib import Path

import pytest

from lienthong.services.cli import main


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("lienthong ")


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["notify", "citizen-notify", "dashboard"])
def test_services_name_the_catalogue_they_cannot_read_and_exit_2(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"
    assert main([command, "--catalog", str(missing), "--bootstrap", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lienthong {command}: catalogue {missing}: ")


@pytest.mark.parametrize("command", ["notify", "citizen-notify"])
def test_services_without_a_kafka_address_say_how_to_give_one(
        command: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert main([command]) == 2
    assert (f"lienthong {command}: no Kafka address; pass --bootstrap or set "
            "KAFKA_BOOTSTRAP_SERVERS") in capsys.readouterr().err
