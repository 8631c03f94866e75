"""The one markdown table helper behind report.md, compare.md and agreement.md."""

from arastory.tables import markdown_table
from tests.markdown import table_rows


def test_cells_are_kept_as_written_and_cannot_break_the_table():
    text = markdown_table(["system", "score", "n"], [["a|b", "0.100", 7], ["two\nlines", "3.20 [2.90, 3.50]", "–"]])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1, "one row per line, columns padded alike"
    assert table_rows(text) == [
        ["system", "score", "n"],
        ["a\\|b", "0.100", "7"],
        ["two lines", "3.20 [2.90, 3.50]", "–"],
    ], "0.100 is not re-formatted to 0.1"
