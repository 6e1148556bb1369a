"""Numbers as text and tables as Markdown: how every table dermsynth writes shows a number, in one place."""

from __future__ import annotations


def number(value: float | int | None, digits: int = 3, scale: float = 1.0, *, signed: bool = False,
           missing: str = "") -> str:
    """``value * scale`` with ``digits`` decimals (a sign always with ``signed``); ``missing`` for None."""
    if value is None:
        return missing
    return f"{value * scale:{'+' if signed else ''}.{digits}f}"


def percent(value: float | None, digits: int = 1, *, signed: bool = False, missing: str = "") -> str:
    """A share in [0, 1] as a percentage number (no % sign)."""
    return number(value, digits, 100, signed=signed, missing=missing)


def markdown_table(headers: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """The lines of a Markdown table; ``align`` "right" right-aligns every column but the first."""
    rule = "|---" + ("|---:" if align == "right" else "|---") * (len(headers) - 1) + "|"
    return ["| " + " | ".join(headers) + " |", rule, *["| " + " | ".join(map(str, row)) + " |" for row in rows]]
