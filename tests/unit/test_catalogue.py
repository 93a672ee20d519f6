"""The province catalogue: the sample loads, every problem is named by its path, versions."""

import copy
import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from lienthong.services.domain.catalogue import (
    Catalogue,
    CatalogueError,
    RouteError,
    load_catalogue,
    parse_catalogue,
)

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "province-h99.yaml"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
H = timedelta(hours=1)

BASE: dict[str, Any] = {
    "province": {"code": "H99", "name": "Tỉnh Mẫu"},
    "calendar": {"office_hours": [["07:30", "11:30"], ["13:00", "17:00"]]},
    "agencies": [
        {"code": "000.00.00.H99", "name": "UBND tỉnh Mẫu", "level": "province"},
        {"code": "000.00.15.H99", "name": "UBND xã Hòa Bình", "level": "commune",
         "parent": "000.00.00.H99", "endpoint": "http://127.0.0.1:9815/lienthong/inbox"},
        {"code": "000.02.10.H99", "name": "Công an tỉnh Mẫu", "level": "vertical"},
    ],
    "procedures": [
        {"code": "1.001193", "name": "Khai sinh liên thông", "total": {"days": 2},
         "steps": [{"agency": "@receiving", "allot": {"days": 1}},
                   {"agency": "000.02.10.H99", "allot": {"hours": 8}}]},
    ],
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """BASE with the value at ``path`` (dotted, [i] for list items) replaced."""
    data = copy.deepcopy(BASE)
    keys: list[str | int] = []
    for part in path.replace("[", ".").replace("]", "").split("."):
        keys.append(int(part) if part.isdigit() else part)
    target: Any = data
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return data


def problems_of(data: Any) -> dict[str, str]:
    with pytest.raises(CatalogueError) as info:
        parse_catalogue(data)
    return {p.path: p.message for p in info.value.problems}


# -- the sample province -------------------------------------------------------------------------


def test_the_sample_province_loads() -> None:
    cat = load_catalogue(SAMPLE)
    assert (cat.province_code, cat.province_name) == ("H99", "Tỉnh Mẫu")
    assert cat.agency("000.00.01.H99") is not None
    assert cat.agency("000.00.01.H99").name == "Trung tâm Phục vụ hành chính công tỉnh Mẫu"
    assert {"VNPOST", "DVCQG"} <= set(cat.agencies)
    assert cat.due_soon == 4 * H
    assert cat.calendar.day_length == 8 * H


def test_the_sample_holds_the_procedures_design_section_5_asks_for() -> None:
    cat = load_catalogue(SAMPLE)
    now = datetime(2026, 6, 8, 9, tzinfo=TZ)
    birth = cat.procedure("1.001193", now)
    assert birth is not None and birth.total == 40 * H
    permit = cat.procedure("1.009972", now)
    assert permit is not None and permit.total == 15 * 8 * H
    assert permit.on_supplement == "restart"
    copy_ = cat.procedure("2.000815", now)
    assert copy_ is not None and copy_.same_day_cutoff == time(15, 0)
    levels = {a.level for a in cat.agencies.values()}
    assert {"province", "centre", "department", "district", "commune", "vertical",
            "system"} <= levels


def test_the_sample_has_a_three_level_chain() -> None:
    cat = load_catalogue(SAMPLE)
    commune = cat.agency("000.01.20.H99")
    assert commune is not None and commune.parent is not None
    district = cat.agency(commune.parent)
    assert district is not None and district.level == "district"
    assert district.parent == "000.00.00.H99"


def test_every_sample_route_adds_up_to_its_total() -> None:
    for versions in load_catalogue(SAMPLE).procedures.values():
        for p in versions:
            assert sum((s.allot for s in p.steps), timedelta(0)) == p.total, p.code


def test_json_loads_too(tmp_path: Path) -> None:
    path = tmp_path / "h99.json"
    path.write_text(json.dumps(load_catalogue(SAMPLE).to_dict(), ensure_ascii=False), "utf-8")
    cat = load_catalogue(path)
    assert cat.to_dict() == load_catalogue(SAMPLE).to_dict()


def test_json_in_a_yaml_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "h99.yaml"
    path.write_text(json.dumps(BASE, ensure_ascii=False), "utf-8")
    assert load_catalogue(path).agency("000.00.15.H99") is not None


# -- versions and routes -------------------------------------------------------------------------


def versioned() -> Catalogue:
    data = copy.deepcopy(BASE)
    newer = copy.deepcopy(data["procedures"][0])
    newer["effective_from"] = "2026-07-01"
    newer["total"] = {"days": 1.5}
    newer["steps"][0]["allot"] = {"days": 0.5}
    data["procedures"].append(newer)
    return parse_catalogue(data)


def test_a_dossier_keeps_the_version_in_force_at_receipt() -> None:
    cat = versioned()
    old = cat.procedure("1.001193", datetime(2026, 6, 30, 23, 59, tzinfo=TZ))
    new = cat.procedure("1.001193", datetime(2026, 7, 1, 0, 0, tzinfo=TZ))
    assert old is not None and old.total == 16 * H
    assert new is not None and new.total == 12 * H and new.effective_from == date(2026, 7, 1)


def test_the_effective_date_is_the_province_local_date() -> None:
    # 30 June 17:30 UTC is 1 July 00:30 in Hà Nội: the new version.
    at = datetime(2026, 6, 30, 17, 30, tzinfo=ZoneInfo("UTC"))
    new = versioned().procedure("1.001193", at)
    assert new is not None and new.effective_from == date(2026, 7, 1)


def test_before_the_first_dated_version_there_is_none() -> None:
    data = with_change("procedures[0].effective_from", "2026-07-01")
    cat = parse_catalogue(data)
    assert cat.procedure("1.001193", datetime(2026, 6, 1, tzinfo=TZ)) is None
    assert cat.procedure("9.999999", datetime(2026, 8, 1, tzinfo=TZ)) is None


def test_route_resolves_receiving_and_parent() -> None:
    data = with_change("procedures[0].steps[1].agency", "@parent")
    cat = parse_catalogue(data)
    p = cat.procedure("1.001193", date(2026, 6, 1))
    assert p is not None
    assert cat.route(p, "000.00.15.H99") == (("000.00.15.H99", 8 * H), ("000.00.00.H99", 8 * H))
    with pytest.raises(RouteError, match="no parent"):
        cat.route(p, "000.00.00.H99")


def test_a_late_day_off_gives_a_new_catalogue_with_a_new_calendar() -> None:
    cat = parse_catalogue(BASE)
    changed = cat.with_calendar_changes(extra_days_off=[date(2026, 6, 9)])
    assert cat.calendar.is_working_day(date(2026, 6, 9))
    assert not changed.calendar.is_working_day(date(2026, 6, 9))
    assert changed.procedure("1.001193", date(2026, 6, 1)) == cat.procedure(
        "1.001193", date(2026, 6, 1))
    assert changed.to_dict()["calendar"]["extra_days_off"] == ["2026-06-09"]


def test_fractional_days_use_the_calendars_day_length() -> None:
    data = with_change("calendar.office_hours", [["08:00", "12:00"], ["13:00", "16:00"]])
    data["procedures"][0]["total"] = {"days": 0.5}
    p = parse_catalogue(data).procedure("1.001193", date(2026, 6, 1))
    assert p is not None and p.total == 3.5 * H


# -- every problem names its path ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "where", "says"),
    [
        ("procedures[0].steps[1].agency", "000.09.99.H99", "procedures[0].steps[1].agency",
         "unknown agency '000.09.99.H99'"),
        ("procedures[0].steps[0].agency", "@boss", "procedures[0].steps[0].agency",
         "unknown placeholder"),
        ("agencies[1].code", "000.00.15.H99.X", "agencies[1].code", "longer than 13"),
        ("agencies[1].code", "000-00", "agencies[1].code", "letters, digits and dots"),
        ("procedures[0].code", "1001193", "procedures[0].code", "must look like 1.001193"),
        ("procedures[0].code", 1.001193, "procedures[0].code", "quotes"),
        ("agencies[1].parent", "000.00.99.H99", "agencies[1].parent", "unknown agency"),
        ("agencies[1].level", "hamlet", "agencies[1].level", "unknown level 'hamlet'"),
        ("agencies[1].endpoint", "ftp://x", "agencies[1].endpoint", "http"),
        ("procedures[0].total", {"weeks": 1}, "procedures[0].total", "{days: N} or {hours: N}"),
        ("procedures[0].total", {"days": -1}, "procedures[0].total.days", "non-negative"),
        ("procedures[0].total", {"days": 1, "hours": 2}, "procedures[0].total", "{days: N}"),
        ("procedures[0].steps[0].allot", {"hours": "two"}, "procedures[0].steps[0].allot.hours",
         "must be a number"),
        ("procedures[0].same_day_cutoff", "3pm", "procedures[0].same_day_cutoff", "HH:MM"),
        ("procedures[0].same_day_cutoff", 900, "procedures[0].same_day_cutoff", "\"15:00\""),
        ("procedures[0].same_day_cutoff", "25:00", "procedures[0].same_day_cutoff",
         "not a valid time"),
        ("procedures[0].on_supplement", "stop", "procedures[0].on_supplement",
         "pause or restart"),
        ("procedures[0].effective_from", "1 July", "procedures[0].effective_from", "YYYY-MM-DD"),
        ("procedures[0].steps", [], "procedures[0].steps", "at least one step"),
        ("calendar.office_hours", [["13:00", "11:00"]], "calendar.office_hours[0]",
         "closes before it opens"),
        ("calendar.office_hours", [["07:30", "11:30"], ["11:00", "17:00"]],
         "calendar.office_hours[1]", "overlaps"),
        ("calendar.office_hours", [["07:30"]], "calendar.office_hours[0]", "pair"),
        ("calendar.timezone", "Asia/Nowhere", "calendar.timezone", "unknown time zone"),
        ("calendar.due_soon_hours", -2, "calendar.due_soon_hours", "non-negative"),
        ("calendar.extra_days_off", ["2026-02-30"], "calendar.extra_days_off[0]",
         "not a valid date"),
        ("calendar.extra_days_off", ["2026-09-03", "2026-09-03"], "calendar.extra_days_off[1]",
         "listed twice"),
        ("province.code", "H 99", "province.code", "letters or digits"),
        ("agencies[0].name", "", "agencies[0].name", "must not be empty"),
    ],
)
def test_each_problem_names_its_path_and_what_is_wrong(
    path: str, value: Any, where: str, says: str
) -> None:
    problems = problems_of(with_change(path, value))
    assert where in problems, problems
    assert says in problems[where]


def test_missing_fields_are_named() -> None:
    data = copy.deepcopy(BASE)
    del data["agencies"][1]["level"]
    del data["procedures"][0]["total"]
    del data["province"]
    problems = problems_of(data)
    assert problems["agencies[1].level"] == "missing"
    assert problems["procedures[0].total"] == "missing"
    assert problems["province"] == "missing"


def test_unknown_fields_are_named() -> None:
    problems = problems_of(with_change("procedures[0].steps[0].allotment", {"days": 1}))
    assert "procedures[0].steps[0].allotment" in problems
    assert "unknown field" in problems["procedures[0].steps[0].allotment"]


def test_duplicate_agencies_and_procedure_versions_are_named() -> None:
    data = copy.deepcopy(BASE)
    data["agencies"].append(copy.deepcopy(data["agencies"][2]))
    data["procedures"].append(copy.deepcopy(data["procedures"][0]))
    problems = problems_of(data)
    assert "first at agencies[2]" in problems["agencies[3].code"]
    assert "first at procedures[0]" in problems["procedures[1].code"]


def test_a_cycle_of_parents_is_named() -> None:
    data = with_change("agencies[0].parent", "000.00.15.H99")
    problems = problems_of(data)
    assert "cycle" in problems["agencies[0].parent"]
    assert "000.00.00.H99 -> 000.00.15.H99 -> 000.00.00.H99" in problems["agencies[0].parent"]


def test_a_date_both_off_and_working_is_named() -> None:
    data = with_change("calendar.extra_days_off", ["2026-06-06"])
    data["calendar"]["extra_working_days"] = ["2026-06-06"]
    assert "2026-06-06" in problems_of(data)["calendar.extra_working_days"]


def test_all_problems_are_collected_at_once() -> None:
    data = with_change("procedures[0].steps[1].agency", "000.09.99.H99")
    data["agencies"][1]["level"] = "hamlet"
    data["calendar"]["office_hours"] = [["17:00", "07:30"]]
    assert len(problems_of(data)) == 3


def test_a_step_to_an_agency_with_its_own_problem_is_not_also_unknown() -> None:
    data = with_change("agencies[2].level", "hamlet")
    assert set(problems_of(data)) == {"agencies[2].level"}


def test_a_catalogue_that_is_not_a_mapping_is_refused() -> None:
    assert "must be a mapping" in problems_of(["a", "list"])["(top level)"]


# -- files ---------------------------------------------------------------------------------------


def test_unquoted_yaml_times_are_explained(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, allow_unicode=True).replace("'13:00'", "13:00")
    path = tmp_path / "c.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    [problem] = info.value.problems
    assert problem.path == "calendar.office_hours[1][0]"
    assert "number 780" in problem.message


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("province: {code: H99\nagencies: []\n", "utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert info.value.problems[0].path.startswith("line ")


def test_a_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("province: {code: H99, name: A}\nprovince: {code: H98, name: B}\n", "utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert "duplicate key 'province'" in info.value.problems[0].message
    assert info.value.problems[0].path == "line 2, column 1"


def test_a_duplicate_json_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"province": {"code": "H99", "code": "H98"}}', "utf-8")
    with pytest.raises(CatalogueError, match="duplicate key 'code'"):
        load_catalogue(path)


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_catalogue(tmp_path / "absent.yaml")


def test_the_error_names_its_source_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("province: [\n", "utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    assert info.value.source == str(path)


def test_a_naive_receipt_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        parse_catalogue(BASE).procedure("1.001193", datetime(2026, 6, 8, 9))
