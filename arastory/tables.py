"""Markdown tables for the reports (report.md, compare.md, agreement.md): GitHub-style pipe tables through tabulate,
columns padded so the raw file reads as a table too."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A pipe table; cells are written as given (str() of each, no re-formatting of numbers: format them first)."""
    from tabulate import tabulate

    return tabulate(
        [[_cell(c) for c in row] for row in rows],
        headers=[_cell(h) for h in header],
        tablefmt="github",
        disable_numparse=True,
    )


def _cell(value: object) -> str:
    """A "|" or a line break inside a cell would end it (or the row) early."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
