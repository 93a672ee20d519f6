import pytest

from lienthong.services.domain.identifiers import (
    agency_code_problem,
    dossier_code_problem,
    procedure_code_problem,
)


@pytest.mark.parametrize("code", ["000.00.15.H99", "G09.20", "VNPOST", "DVCQG", "000.00.00.H99"])
def test_agency_codes_of_decision_20_are_accepted(code: str) -> None:
    assert agency_code_problem(code) is None


@pytest.mark.parametrize("code", ["", "000.00.15.H99X", ".G09", "G09 20", "G09-20", 7, "Hòa"])
def test_malformed_agency_codes_are_refused(code: object) -> None:
    assert agency_code_problem(code) is not None


@pytest.mark.parametrize(
    "code", ["000.00.15.H99-261125-0007", "G09.20-20260609-0092637"]
)
def test_both_dossier_code_forms_are_accepted(code: str) -> None:
    assert dossier_code_problem(code) is None


@pytest.mark.parametrize(
    "code",
    ["000.00.15.H99-261125-007", "G09.20-20261309-0092637", "G09.20-2026060-0092637", "x", None],
)
def test_malformed_dossier_codes_are_refused(code: object) -> None:
    problem = dossier_code_problem(code)
    assert problem is not None


def test_procedure_codes() -> None:
    assert procedure_code_problem("1.001193") is None
    assert "1.001193x" in (procedure_code_problem("1.001193x") or "")
    assert procedure_code_problem("1001193") is not None
