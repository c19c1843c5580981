"""Resumable stages keyed on what they were built from.

A stage's key is a digest of its own settings and of the keys of the stages it reads, so rerunning into
the same folder with another configuration (``--fast`` then the full run, another seed, another engine)
rebuilds exactly the stages whose inputs changed and reuses the rest. Every key also covers the code that
builds the stages (``code_digest``): after an upgrade or an edit, nothing built by other code is reused.
The key and the time a stage took are written into its ``done`` marker; a marker with another key (or
from before keys existed) means the stage is stale: its folder is emptied and it runs again. Every
decision is printed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable


def stage_key(settings: dict, inputs: list[str], code: str = "") -> str:
    """The digest of a stage's settings (JSON-able values), of its input stages' keys and of the code."""
    blob = json.dumps({"settings": settings, "inputs": inputs, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_digest(*packages: Path) -> str:
    """A digest of every source file (.py, .txt templates) under the ``packages`` directories, by relative
    path and content: the code a stage is built with, so an edited trainer or template rebuilds."""
    h = hashlib.sha256()
    for root in packages:
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".txt") and "__pycache__" not in p.parts):
            h.update(f"{root.name}/{path.relative_to(root)}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


class Stages:
    """Runs named stages in order, each at most once per key, and prints where the run is."""

    def __init__(self, out: Path, total: int, code: str = ""):
        self.out, self.total, self.index, self.start = out, total, 0, time.perf_counter()
        self.code = code
        self.keys: dict[str, str] = {}
        self.reused: list[str] = []
        self.built: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[Path], None], settings: dict, inputs: tuple[str, ...] = ()) -> Path:
        """``fn(folder)`` unless ``folder/done`` holds this key; ``inputs`` name earlier stages."""
        self.index += 1
        key = stage_key(settings, [self.keys[i] for i in inputs], self.code)
        self.keys[name] = key
        folder = self.out / name
        marker = folder / "done"
        head = f"[{self.index}/{self.total}] {name}"
        previous = _marker_key(marker)
        if previous == key:
            print(f"{head}: done earlier with the same inputs (key {key}), reused", flush=True)
            self.reused.append(name)
            return folder
        if folder.exists():
            why = "inputs changed" if previous else "unfinished"
            print(f"{head}: {why}, rebuilding", flush=True)
            shutil.rmtree(folder)
        print(f"{head} ...", flush=True)
        tick = time.perf_counter()
        folder.mkdir(parents=True)
        fn(folder)
        took = time.perf_counter() - tick
        marker.write_text(json.dumps({"key": key, "seconds": round(took, 1)}) + "\n")
        self.built[name] = took
        print(f"{head}: {took:.1f} s (total {time.perf_counter() - self.start:.0f} s)", flush=True)
        return folder


def _marker_key(marker: Path) -> str | None:
    """The key a finished stage was built with; None when unfinished or written before keys existed."""
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text()).get("key")
    except (json.JSONDecodeError, AttributeError):
        return None
