"""Reading the reports' markdown tables back as cells, so tests pin content, not column padding."""


def table_rows(markdown: str) -> list[list[str]]:
    """Every table row (header rows included, separator rows not) as its stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        for line in markdown.splitlines()
        if line.startswith("|") and not set(line.strip()) <= set("|-: ")
    ]
