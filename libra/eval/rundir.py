"""What every ``libra eval`` command leaves in its ``--out`` directory and prints at its end.

One function writes ``results.json``, ``report.md`` and the terminal table from the same rows, so the
three can never disagree; the helpers around it give the settings and cache keys every command records.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from libra.data.jsonl import write_json
from libra.report.markdown import markdown_table
from libra.report.tables import print_results_table


@dataclass
class ResultsTable:
    """The headline numbers: printed in the terminal and written at the top of report.md."""

    title: str
    headers: list[str]
    rows: list[list]


def settings(args: argparse.Namespace) -> dict:
    """The command line as JSON (paths as strings), recorded in results.json so a number says how it was made."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)

    return {name: plain(value) for name, value in sorted(vars(args).items()) if not callable(value)}


def content_key(*parts) -> str:
    """A short fingerprint of JSON-able ``parts``: cache keys change whenever anything they depend on does."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def publish(out: Path, results: dict, table: ResultsTable, notes: list[str], files: dict[str, Path], *,
            quiet: bool = False) -> dict:
    """Write results.json and report.md into ``out``, print the table and the files (unless ``quiet``) and
    return the results as written."""
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "files": {name: str(path) for name, path in files.items()}}
    write_json(out / "results.json", results)
    body = "\n\n".join([f"# {table.title}", markdown_table(table.headers, table.rows).rstrip(), *notes])
    listing = "\n".join(f"- {name}: `{Path(path).name}`" for name, path in files.items())
    (out / "report.md").write_text(f"{body}\n\n## Files\n\n{listing}\n", encoding="utf-8")
    if not quiet:
        print_results_table(table.title, table.headers, table.rows)
        for name, path in {"results": out / "results.json", "report": out / "report.md", **files}.items():
            print(f"  {name}: {path}")
    return results


def usage_error(command: str, message: str) -> int:
    """Report a bad combination of options the way argparse does (exit status 2, no traceback)."""
    print(f"libra eval {command}: error: {message}", file=sys.stderr)
    return 2
