"""``lienthong up``: its options and its dashboard accounts (the whole run is an integration
test, tests/integration/test_up_demo.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lienthong.services import cli
from lienthong.services.ops.auth import load_users, verify_password
from lienthong.services.up import DEMO_USER, dashboard_accounts, demo_account


def test_a_demo_start_makes_a_one_off_admin_account_readable_by_its_owner_only(
        tmp_path: Path) -> None:
    path, password = dashboard_accounts(None, tmp_path)
    assert password is not None and len(password) >= 12
    users = load_users(path)
    assert list(users) == [DEMO_USER]
    assert verify_password(password, users[DEMO_USER].password_hash)
    assert not verify_password(password + "x", users[DEMO_USER].password_hash)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # a new start, a new password
    again = demo_account(path)
    assert again != password and verify_password(again, load_users(path)[DEMO_USER].password_hash)


def test_a_start_with_an_operators_users_file_makes_no_account(tmp_path: Path) -> None:
    own = tmp_path / "users.yaml"
    own.write_text("users: []\n", encoding="utf-8")
    path, password = dashboard_accounts(own, tmp_path / "data")
    assert (path, password) == (own, None)
    assert own.read_text(encoding="utf-8") == "users: []\n"
    assert not (tmp_path / "data").exists()


def test_up_help_names_speed_start_and_the_demo_account(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["up", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--speed", "--start", "--backlog-days", "--per-hour", "--users"):
        assert option in text
    assert "this morning's office opening" in text and "demo account" in text
