"""Reporting: progress on stderr, numbers formatted for the tables, Markdown tables."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["fmt", "log", "median_ms", "table"]


def log(message: str) -> None:
    """``message`` on stderr, flushed (progress; the tables go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    """``value`` formatted by ``spec``, then ``suffix``; ``"—"`` for None."""
    return "—" if value is None else f"{value:{spec}}{suffix}"


def median_ms(systems: dict, name: str) -> str:
    """System ``name``'s median time in a row's ``systems`` figures (``" !"`` when noisy), or
    ``"skipped"`` when it did not run."""
    figure = systems.get(name, {})
    if "median_ms" in figure:
        return fmt(figure["median_ms"]) + (" !" if figure["noisy"] else "")
    return "skipped"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ":" + "-" * (w + 1) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
