"""Markdown for ``report.md`` files: GitHub-flavoured tables that diff well."""

from __future__ import annotations


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A pipe table; the first column is left-aligned, the others (numbers) right-aligned. Pipes in
    cells are escaped so a model name or subset cannot break the layout."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def percent(value: float | None, digits: int = 1) -> str:
    """``0.8123`` -> ``81.2``; None (nothing to score) -> ``n/a``."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}"
