"""``lienthong catalog check FILE``."""

from pathlib import Path

import pytest

from lienthong.services.cli import main

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "province-h99.yaml"

BROKEN = """\
province: {code: H99, name: "Tỉnh Mẫu"}
agencies:
  - {code: "000.00.00.H99", name: "UBND tỉnh Mẫu", level: province}
  - {code: "000.00.15.H99", name: "UBND xã Hòa Bình", level: hamlet, parent: "000.00.00.H99"}
procedures:
  - code: "1.001193"
    name: "Khai sinh"
    total: {days: 1}
    same_day_cutoff: 15:00
    steps:
      - {agency: "000.02.10.H99", allot: {days: 1}}
"""


def test_the_sample_checks_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "check", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 24 agencies, 8 procedures")


def test_each_problem_is_printed_with_file_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, "utf-8")
    assert main(["catalog", "check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"{path}: agencies[1].level: unknown level 'hamlet'" in lines[0]
    assert lines[1].startswith(f"{path}: procedures[0].same_day_cutoff: ")
    assert lines[2] == f"{path}: procedures[0].steps[0].agency: unknown agency '000.02.10.H99'"
    assert len(lines) == 3


def test_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "check", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_an_unknown_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["catalog", "frobnicate", str(SAMPLE)])
    assert info.value.code == 2
