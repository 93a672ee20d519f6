"""Masking of applicants' personal data (Decree 13/2023/NĐ-CP) for operators not allowed it."""

from __future__ import annotations


def mask_name(name: str) -> str:
    """Keep the family name and each other word's initial: "Nguyễn Văn An" -> "Nguyễn V** A**".

    A one-letter word stays as it is ("Nguyễn Văn A" -> "Nguyễn V** A").
    """
    words = name.split()
    if len(words) <= 1:
        return (words[0][0] + "**") if words and len(words[0]) > 1 else name
    return " ".join([words[0], *(w if len(w) == 1 else w[0] + "**" for w in words[1:])])


def mask_id(number: str) -> str:
    """Keep the first four and last two characters: "001099012345" -> "0010******45"."""
    n = number.strip()
    if len(n) <= 6:
        return "*" * len(n)
    return n[:4] + "*" * (len(n) - 6) + n[-2:]
