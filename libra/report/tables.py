"""Results tables for the terminal and for logs (rich)."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

LOG_WIDTH = 160  # columns of a table written off a terminal: wide enough that model names and CIs do not wrap


def stdout_console() -> Console:
    """A console for stdout: a terminal's own width there; off one (a log, CI) a fixed ``LOG_WIDTH``, since rich
    would otherwise wrap at 80 columns. Off a terminal rich also writes no colours or other escape codes."""
    return Console(width=None if sys.stdout.isatty() else LOG_WIDTH)


def print_v2v_summary(summary: dict, files: dict[str, Path], console: Console | None = None) -> None:
    """The V2V statistics in the shape of the paper's Table 1, then the label agreement and the files."""
    console = console or stdout_console()
    t1 = summary["table1"]
    table = Table(title="V2V judging set (paper Table 1 layout)")
    table.add_column("")
    for subset in t1:
        table.add_column(f"{subset} correct", justify="right")
        table.add_column(f"{subset} incorrect", justify="right")
    table.add_row("Number of problems", *[str(t1[s]["problems"]) for s in t1 for _ in (0, 1)])
    table.add_row("Number of samples", *[str(t1[s][k]) for s in t1 for k in ("correct", "incorrect")])
    models = sorted({m for s in t1 for m in t1[s]["models"]})
    for model in models:
        cells = [str(t1[s]["models"].get(model, {}).get(k, 0)) for s in t1 for k in ("correct", "incorrect")]
        table.add_row(f"  {model}", *cells)
    console.print(table)
    agree = summary["agreement_with_source_labels"]
    share = "n/a" if agree["agreement"] is None else f"{100 * agree['agreement']:.2f}%"
    console.print(
        f"responses {summary['responses']}: unmatched {summary['unmatched']}, other level {summary['other_level']}, "
        f"truncated thought {summary['truncated_thought']}, labelled {summary['labelled']} "
        f"({summary['labelled_correct']} correct, {summary['labelled_incorrect']} incorrect; "
        f"{summary['labels_computed_now']} computed now), rows written {summary['rows']}; "
        f"bad records skipped {summary['skipped_bad_records']}")
    if summary["check_failed"]:
        console.print(f"[bold red]answer checks that failed (no label, not cached, left out): "
                      f"{summary['check_failed']} {summary['check_failures']}[/bold red]")
    console.print(f"agreement with the source's own labels: {share} of {agree['compared']} "
                  f"(source correct / ours wrong: {agree['source_true_ours_false']}, "
                  f"source wrong / ours correct: {agree['source_false_ours_true']})")
    for name, path in files.items():
        console.print(f"  {name}: {path}")


def print_results_table(title: str, headers: list[str], rows: list[list], console: Console | None = None) -> None:
    """The table every evaluation prints at its end; numbers are formatted by the caller."""
    console = console or stdout_console()
    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    console.print(table)
