"""The part runner of ``make gpu-check``: each part is one command in a process group of its own, under a
time limit of its own, recorded in ``OUT/summary.json`` as it ends, and a part that fails, hangs or cannot
start never stops the parts after it.

Time is shared forward: part ``i`` may use everything up to the check's deadline except what the later
parts' limits (and kill graces) reserve, so a part that ends early hands its unused time on. A part names
the files earlier parts must have written (``inputs``: a trained model, a data set); when one is missing it
is recorded as "skipped" with the reason instead of failing on a missing path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
KILL_GRACE_S = 3  # after a part's limit: SIGTERM to its process group, then SIGKILL after this long
MIN_PART_S = 10  # a part that would get less than this (an overrun before it) is not started
TAIL_LINES = 40


@dataclass(frozen=True)
class Part:
    """One step of a check: ``argv(out, timeout_s, ctx)`` is the command, ``output`` the file (under OUT)
    it must write to count as passed, ``needs`` the modules it cannot run without, ``digest(output path)``
    the headline numbers copied into the summary. ``inputs``: files under OUT that earlier parts write and
    this one reads; ``clears``: what it writes under OUT besides ``output`` (removed before a check, so an
    earlier check's run folder is never resumed or passed off as this one's). ``dry_timeout_s``: its limit
    in a CPU dry run (default ``timeout_s``)."""

    name: str
    timeout_s: int
    what: str
    output: str
    argv: Callable[[Path, float, dict[str, Any]], list[str]]
    needs: tuple[str, ...] = ()
    digest: Callable[[Path], Any] | None = None
    inputs: tuple[str, ...] = ()
    clears: tuple[str, ...] = ()
    dry_timeout_s: int | None = None


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):  # the group is already gone
        pass


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the part's process group (it was started in a session of its own), SIGKILL after the grace."""
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()


def run_command(name: str, argv: list[str], timeout_s: float, logs: Path, env: dict[str, str] | None = None,
                cwd: Path = REPO_ROOT) -> dict[str, Any]:
    """Run one part; never raises for the part's own failure. Returns status ("ok", "failed", "timeout"),
    return code, seconds and the tail of its stderr."""
    logs.mkdir(parents=True, exist_ok=True)
    out_log, err_log = logs / f"{name}.out", logs / f"{name}.err"
    begin = time.monotonic()
    with open(out_log, "w") as out_f, open(err_log, "w") as err_f:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdout=out_f, stderr=err_f, env=env, start_new_session=True,
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            return {"status": "failed", "returncode": None, "seconds": 0.0, "stderr_tail": f"could not start: {exc}"}
        try:
            returncode = proc.wait(timeout=timeout_s)
            status = "ok" if returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            returncode, status = proc.returncode, "timeout"
        # Whatever the part left behind in its group (an engine process, a test worker) must not hold the GPU
        # or the time of the next part.
        _kill_group(proc.pid, signal.SIGKILL)
    seconds = time.monotonic() - begin
    stderr_tail = tail(err_log) or tail(out_log)
    if status == "timeout":
        stderr_tail = f"[killed after its {timeout_s:.0f} s limit]\n" + stderr_tail
    return {"status": status, "returncode": returncode, "seconds": round(seconds, 1), "stderr_tail": stderr_tail,
            "logs": {"stdout": str(out_log), "stderr": str(err_log)}}


def junit_counts(path: Path) -> dict[str, Any] | None:
    """Test counts and the failing test ids from a pytest junit XML, None when it cannot be read."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["time_s"] = round(sum(float(s.get("time", 0)) for s in suites), 1)
    failing = [f"{case.get('classname')}::{case.get('name')}" for s in suites for case in s.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    counts["failing"] = failing[:50]
    return counts


def part_timeout(index: int, parts: list[Part], deadline: float, now: float) -> float:
    """Part ``index`` may use everything up to the deadline except what the later parts (and its own kill
    grace) have reserved: its own limit, plus whatever earlier parts left unused."""
    reserved = sum(p.timeout_s + KILL_GRACE_S for p in parts[index + 1:]) + KILL_GRACE_S
    return deadline - now - reserved


def _not_runnable(part: Part, out: Path, timeout_s: float) -> dict[str, Any] | None:
    """Why ``part`` cannot start (its record), or None when it can."""
    missing = [m for m in part.needs if not importlib.util.find_spec(m)]
    if missing:
        return {"status": "failed", "stderr_tail": f"not run: {', '.join(missing)} not importable by {sys.executable}"}
    absent = [f for f in part.inputs if not (out / f).exists()]
    if absent:
        return {"status": "skipped", "stderr_tail": f"not run: needs {', '.join(absent)}, which no earlier part wrote"}
    if timeout_s < MIN_PART_S:
        return {"status": "timeout", "stderr_tail": f"not run: only {timeout_s:.0f} s left before the deadline"}
    return None


def run_parts(parts: list[Part], out: Path, ctx: dict[str, Any], deadline: float, summary: dict[str, Any],
              env: dict[str, str] | None = None,
              after_each: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every part in order, each recorded in ``summary["parts"]`` (and ``OUT/summary.json``) as it ends;
    ``after_each(summary)`` runs before each write (a report built from the outputs so far)."""
    records = summary.setdefault("parts", [])
    for i, part in enumerate(parts):
        timeout_s = part_timeout(i, parts, deadline, time.monotonic())
        record: dict[str, Any] = {"name": part.name, "what": part.what, "timeout_s": part.timeout_s,
                                  "allowed_s": round(timeout_s, 1), "output": str(out / part.output)}
        refused = _not_runnable(part, out, timeout_s)
        if refused:
            record.update(returncode=None, seconds=0.0, **refused)
        else:
            argv = part.argv(out, timeout_s, ctx)
            print(f"gpu-check: {part.name} (limit {timeout_s:.0f} s): {' '.join(argv[1:])}", file=sys.stderr,
                  flush=True)
            record["command"] = argv
            record.update(run_command(part.name, argv, timeout_s, out / "logs", env=env))
            if record["status"] == "ok" and not (out / part.output).exists():
                record.update(status="failed", stderr_tail=f"exited 0 but wrote no {part.output}\n"
                              + record["stderr_tail"])
        if part.output.endswith(".xml"):
            record["tests"] = junit_counts(out / part.output)
        if part.digest is not None and (out / part.output).exists():  # a partial JSON after a timeout too
            try:
                record["results"] = part.digest(out / part.output)
            except Exception as exc:  # a digest is a convenience: the JSON itself is the result
                record["results"] = f"could not digest {part.output}: {type(exc).__name__}: {exc}"
        records.append(record)
        print(f"gpu-check: {part.name}: {record['status']} in {record['seconds']:.0f} s", file=sys.stderr,
              flush=True)
        if after_each is not None:
            after_each(summary)
        write_summary(out, summary)
    return records


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    parts = summary.get("parts", [])
    summary["status"] = "ok" if parts and all(p["status"] == "ok" for p in parts) else "failed"
    summary["failed_parts"] = [p["name"] for p in parts if p["status"] != "ok"]
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(out / "summary.json")
