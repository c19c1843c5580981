"""What the judge parts of ``make gpu-check`` measured, read back from the runs' own files: a digest per part
(copied into ``OUT/summary.json``) and ``OUT/judge/report.md`` / ``report.json`` built from those digests
after every part, so a check cut short still leaves a report of what it did.

Every number comes from a file a command wrote: held-out accuracy, its bootstrap interval and the invalid
rate from ``results.json`` of ``libra eval libra-bench``, generated tokens from its ``predictions.jsonl``,
steps, losses, rewards, tokens/s and seconds per stage from the trainers' ``metrics.jsonl``, the data counts
from ``prepare.json``; wall seconds and status from the part runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

STAGES = (("data", "judge-data"), ("untrained", "judge-eval-base"), ("SFT", "judge-sft"),
          ("after SFT", "judge-eval-sft"), ("GRPO sync", "judge-grpo-sync"),
          ("after GRPO sync", "judge-eval-grpo-sync"), ("GRPO async", "judge-grpo-async"),
          ("after GRPO async", "judge-eval-grpo-async"))
CURVES = ("loss", "reward", "accuracy", "response_length", "logprob_mismatch")  # first and last step
RATES = ("tokens_per_s", "generate_tokens_per_s")  # mean over steps


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prepare_digest(path: Path) -> dict:
    """The data part's counts (``prepare.json`` without the file list)."""
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "response_files"}


def eval_digest(path: Path) -> dict:
    """Held-out accuracy (the Average over subsets and over all rows), its 95% interval, the invalid rate, and
    generation speed: tokens of every judgment in predictions.jsonl over the generation seconds (engine load
    included)."""
    results = json.loads(path.read_text())
    m, t = results["metrics"], results["timings"]
    tokens = sum(p["num_tokens"] for p in _rows(path.parent / "predictions.jsonl"))
    return {"rows": m["rows"], "accuracy": m["accuracy"], "average": m["average"],
            "average_ci95": m["average_ci95"], "invalid_rate": m["invalid_rate"], "macro_f1": m["macro_f1"],
            "generated_tokens": tokens, "generate_s": t["generate_s"], "total_s": t["total_s"],
            "tokens_per_s": tokens / t["generate_s"] if t["generate_s"] > 0 else None}


def train_digest(path: Path) -> dict:
    """A trainer run (``path``: its exported model under ``final/``): steps, the first and last step's loss or
    reward, mean tokens/s, and mean seconds per step in each stage (``time_*``)."""
    steps = [r for r in _rows(path.parents[1] / "metrics.jsonl") if r.get("step", 0) >= 1]
    if not steps:
        return {"steps": 0}
    times = sorted(k for k in steps[0] if k.startswith("time_"))
    return {"steps": len(steps),
            "first": {k: steps[0][k] for k in CURVES if k in steps[0]},
            "last": {k: steps[-1][k] for k in CURVES if k in steps[-1]},
            **{k: float(np.mean([r[k] for r in steps])) for k in RATES if k in steps[0]},
            "seconds_per_step": {k.removeprefix("time_"): float(np.mean([r[k] for r in steps])) for k in times}}


def _message(record: dict) -> str:
    """The line that says why a part did not pass: its last ``error`` line, else the last line it wrote."""
    lines = [line.strip() for line in record.get("stderr_tail", "").splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error") or "Error:" in line]
    return (errors or lines or [""])[-1][:300]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _rate(value: float | None) -> str:
    """Tokens/s as read: whole numbers from 10 up, two decimals below (a dry run's CPU rates)."""
    return "-" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


def _accuracy(digest: dict) -> str:
    low, high = digest["average_ci95"]
    return f"{_pct(digest['average'])} [{_pct(low)}, {_pct(high)}]"


def stage_rows(summary: dict) -> list[dict]:
    """One row per judge stage that this check ran: its part's status, seconds and digest."""
    records = {p["name"]: p for p in summary.get("parts", [])}
    rows = []
    for stage, name in STAGES:
        record = records.get(name)
        if record is None:
            continue
        digest = record.get("results") if isinstance(record.get("results"), dict) else {}
        rows.append({"stage": stage, "part": name, "status": record["status"], "seconds": record["seconds"],
                     "message": None if record["status"] == "ok" else _message(record), **digest})
    return rows


def _cells(row: dict) -> list[str]:
    status = row["status"] if row["message"] is None else f"{row['status']}: {row['message']}".replace("|", "\\|")
    steps = str(row["steps"]) if "steps" in row else "-"
    rate = _rate(row.get("tokens_per_s"))
    accuracy = _accuracy(row) if "average_ci95" in row else "-"
    curve = "-"
    for key in ("loss", "reward"):
        if key in row.get("first", {}):
            curve = f"{key} {row['first'][key]:.3f} -> {row['last'][key]:.3f}"
            break
    return [row["stage"], f"`{row['part']}`", status, f"{row['seconds']:.0f}", steps, rate, accuracy,
            _pct(row.get("invalid_rate")), curve]


def render_report(report: dict) -> str:
    """``report.md``: the data, a table of stages, accuracy before and after, and seconds per step."""
    lines = [f"# Judge training on {report['device']}: SmolLM2-135M-Instruct", ""]
    if report["dry_run"]:
        lines += ["Dry run (`--dry-run`): every command at the smallest size, on CPU; the numbers prove the "
                  "paths work and say nothing about the method.", ""]
    data = next((r for r in report["stages"] if r["stage"] == "data" and "v2v_rows" in r), None)
    if data is not None:
        split = data["split"]
        count = {side: (sum(s["rows"] for s in split[side].values()), sum(s["problems"] for s in split[side].values()))
                 for side in ("train", "bench")}
        lines += [f"Data: {data['v2v_rows']} V2V rows from the SkyThought outputs (MATH-500 level {data['level']}"
                  f"{' and AIME 2024' if 'aime2024' in split['train'] else ''}), {data['fitting_rows']} with a judging "
                  f"prompt of at most {data['max_prompt_tokens']} tokens; split by problem: {count['train'][0]} "
                  f"training rows ({count['train'][1]} problems), held-out bench {count['bench'][0]} rows "
                  f"({count['bench'][1]} problems); problems on both sides: {split['shared_problems']}.", ""]
    lines += ["| stage | part | status | wall s | steps | tokens/s | held-out accuracy % [95% CI] | invalid % | "
              "first -> last step |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in report["stages"] if r["stage"] != "data"]
    evals = [r for r in report["stages"] if "average_ci95" in r]
    if evals:
        lines += ["", "Held-out accuracy (Average over subsets, %; 95% bootstrap interval over rows): "
                  + ", ".join(f"{r['stage']} {_accuracy(r)}" for r in evals) + "."]
    trained = [r for r in report["stages"] if r.get("seconds_per_step")]
    if trained:
        keys = sorted({k for r in trained for k in r["seconds_per_step"]})
        lines += ["", "Seconds per step, by stage (means over the run's steps):", "",
                  "| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        lines += [f"| {r['stage']} | " + " | ".join(f"{r['seconds_per_step'][k]:.3f}" if k in r["seconds_per_step"]
                                                      else "-" for k in keys) + " |" for r in trained]
    return "\n".join(lines) + "\n"


def write_report(summary: dict[str, Any], out: Path) -> None:
    """``OUT/judge/report.{md,json}`` from the summary's judge parts, also put into ``summary["judge"]``."""
    stages = stage_rows(summary)
    if not stages:
        return
    report = {"device": summary.get("device", {}).get("name", "unknown device"),
              "dry_run": summary.get("dry_run", False), "stages": stages}
    summary["judge"] = report
    folder = out / "judge"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(render_report(report))
