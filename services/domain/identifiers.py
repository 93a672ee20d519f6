"""Shapes of the identifiers the hub sees (DESIGN section 3), checked with clear messages.

- agency code (mã định danh, Decision 20/2020/QĐ-TTg): at most 13 letters, digits and dots,
  e.g. ``000.00.15.H99`` or ``G09.20``; special systems such as ``VNPOST`` and ``DVCQG`` too;
- dossier code (mã hồ sơ): ``{receiving agency}-{yymmdd}-{4 digits}`` (Circular 01/2018) or
  ``{receiving agency}-{yyyymmdd}-{7 digits}`` (the national portal's current form);
- procedure code (mã TTHC): e.g. ``1.001193`` or ``2.000986``;
- an applicant's telephone number and e-mail address (for notifications, contract version 3).
"""

from __future__ import annotations

import re
from datetime import date

AGENCY_CODE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.]{0,11}[A-Za-z0-9])?$")
DOSSIER_CODE = re.compile(
    r"^(?P<agency>[A-Za-z0-9][A-Za-z0-9.]{0,12})-(?:(?P<short>\d{6})-\d{4}|(?P<long>\d{8})-\d{7})$"
)
PROCEDURE_CODE = re.compile(r"^\d\.\d{6}$")


def agency_code_problem(value: object) -> str | None:
    """Why ``value`` is not an agency code, or None if it is one."""
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > 13:
        return f"agency code {value!r} is longer than 13 characters"
    if not AGENCY_CODE.match(value):
        return f"agency code {value!r} may hold only letters, digits and dots"
    return None


def dossier_code_problem(value: object) -> str | None:
    """Why ``value`` is not a dossier code, or None if it is one."""
    if not isinstance(value, str):
        return "must be a string"
    m = DOSSIER_CODE.match(value)
    if not m:
        return (f"dossier code {value!r} must look like AGENCY-yymmdd-NNNN "
                "or AGENCY-yyyymmdd-NNNNNNN")
    problem = agency_code_problem(m.group("agency"))
    if problem:
        return problem
    digits = m.group("long") or ("20" + m.group("short"))
    try:
        date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return f"dossier code {value!r} holds an impossible date"
    return None


def procedure_code_problem(value: object) -> str | None:
    """Why ``value`` is not a national procedure code, or None if it is one."""
    if not isinstance(value, str):
        return "must be a string"
    if not PROCEDURE_CODE.match(value):
        return f"procedure code {value!r} must look like 1.001193"
    return None


PHONE = re.compile(r"^\+?[0-9][0-9 .-]{5,18}[0-9]$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def phone_problem(value: object) -> str | None:
    """Why ``value`` is not a telephone number (số điện thoại), or None if it is one."""
    if not isinstance(value, str):
        return "must be a string"
    if not PHONE.match(value):
        return (f"telephone number {value[:40]!r} must hold digits (spaces, dots, dashes and "
                "a leading + allowed), e.g. 0912345678 or +84912345678")
    return None


def email_problem(value: object) -> str | None:
    """Why ``value`` is not an e-mail address, or None if it is one."""
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > 254 or not EMAIL.match(value):
        return f"e-mail address {value[:40]!r} must look like name@example.vn"
    return None
