"""``libra eval libra-bench``: pointwise correctness judging on Libra Bench (paper, Sec. 3 and Table 2).

Every bench row becomes one chat prompt (the rendered judge template as the user message); the judge's
answers go to ``OUT/generations.jsonl`` chunk by chunk, so a rerun after a crash or Ctrl-C generates
only what is missing (``libra.eval.generations``). The steps after generation are pure functions,
testable without an engine: ``score_records`` (records -> per-sample predictions), ``summarize``
(predictions -> metrics), ``accuracy_table`` and ``report_notes`` (metrics -> tables, report.md).

Scoring (also written into results.json under "scoring", so a results file explains itself):

* A sample without a parsable verdict, or with a pointwise score outside 0-4, is an invalid judgment:
  always wrong, and counted apart in the confusion matrix and the invalid rate.
* Pointwise scores are binarised as ``score >= threshold`` (paper: threshold 2); accuracy at
  thresholds 1-4 is reported beside it.
* With ``--n`` > 1, every sample is a judgment of its own: the headline metrics pool all samples of
  all rows, which equals averaging each sample index's metrics since every row has ``n`` samples.
  ``majority`` scores one prediction per row instead: the majority of its valid samples' binary
  predictions, a tie or no valid sample being invalid.
* The 95% interval of the Average is a percentile bootstrap over bench rows (a row's samples are
  resampled together, as they are not independent).

Each row's generation key holds a digest of its rendered prompt, so an edited bench row or template
file never reuses a stale judgment.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from libra.data.bench import HUB_ID, load_bench
from libra.data.jsonl import DataError, SkipCounter, write_jsonl
from libra.eval.generations import GenerationStore, Request, generate_resumable
from libra.eval.lazy_engine import LazyEngine
from libra.eval.metrics import bootstrap_ci, subset_report
from libra.eval.options import (
    add_engine_arguments,
    add_output_arguments,
    add_sampling_arguments,
    check_prompt_lengths,
    engine_from_args,
    sampling_from_args,
)
from libra.eval.rundir import ResultsTable, content_key, publish, settings, usage_error
from libra.judge import DEFAULT_THRESHOLD, parse_pointwise, parse_verification, render, score_to_label, template_fields
from libra.report.markdown import markdown_table, percent
from libra.models.checks import check_model_dir

PARSERS = {"pointwise": parse_pointwise, "verification": parse_verification}
VALUE_KEY = {"pointwise": "score", "verification": "verdict"}  # the parsed verdict's field in predictions.jsonl
ROW_FIELDS = ("question", "response")  # what a bench row can fill into a template
THRESHOLDS = (1, 2, 3, 4)
BOOTSTRAP = 1000
PLOTS = {"confusion": "confusion.png", "subsets": "accuracy_by_subset.png", "source_models": "accuracy_by_model.png"}


def register(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser(
        "libra-bench", help="pointwise correctness judging on Libra Bench (accuracy per subset and Average)",
        description="Judge every bench response with a generative judge, parse its verdicts and score them "
                    "against the labels. Writes generations.jsonl (resumable), predictions.jsonl, results.json, "
                    "report.md and PNG plots to --out.")
    add_engine_arguments(p)
    add_sampling_arguments(p)
    add_output_arguments(p)
    g = p.add_argument_group("benchmark")
    g.add_argument("--bench", default=HUB_ID,
                   help=f"bench file (.jsonl/.json/.parquet, e.g. from `libra data v2v`) or hub id (default {HUB_ID})")
    g.add_argument("--split", default="test", help="split of a hub dataset (default test)")
    g.add_argument("--template", default="pointwise",
                   help="judge prompt: a built-in name or a template file with {question} and {response}")
    g.add_argument("--verdict", choices=tuple(PARSERS), default=None,
                   help="how to read the verdict: [[score=N]] or [[Correct]]/[[Wrong]] (default: the built-in "
                        "template's own kind, pointwise for a template file)")
    g.add_argument("--threshold", type=int, choices=range(5), default=DEFAULT_THRESHOLD,
                   help=f"pointwise score >= this predicts 'correct' (default {DEFAULT_THRESHOLD}, the paper's)")
    g.add_argument("--skip-bad", action="store_true", help="skip malformed bench records (counted) instead of stopping")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, *, engine=None) -> int:
    """``engine``: an already started engine to use instead of the one the options describe (not closed here).

    Everything that can be wrong with the input is checked before an engine starts (tens of seconds for
    vLLM), and the engine starts lazily: not at all when every judgment is already in generations.jsonl.
    """
    start = time.perf_counter()
    try:
        fields = check_template(args.template)
    except ValueError as err:
        return usage_error("libra-bench", f"--template: {err}")
    check_model_dir(args.model)
    kind = args.verdict or default_verdict(args.template)
    skipped = SkipCounter() if args.skip_bad else None
    rows = load_bench(args.bench, split=args.split, skip_bad=skipped)[:args.limit]
    if not rows:
        raise DataError(args.bench, None, None, "no bench rows to evaluate")
    out = Path(args.out)
    requests = build_requests(rows, args.template, fields)
    check_prompt_lengths(args, requests, args.bench)
    params = sampling_from_args(args)
    store = GenerationStore(out / "generations.jsonl")
    timings = {"load_s": time.perf_counter() - start}
    own = engine is None
    engine = LazyEngine(lambda: engine_from_args(args)) if own else engine
    generated: list[int] = []
    tick = time.perf_counter()
    try:
        records = generate_resumable(engine, requests, params, store, template=args.template, model=args.model,
                                     chunk=args.chunk, progress=not args.no_progress, on_chunk=generated.append)
    except KeyboardInterrupt:
        print(f"interrupted: {sum(generated)} new judgments are saved in {store.path}; rerun the same command to "
              "resume", file=sys.stderr)
        return 130
    finally:
        if own:
            engine.close()
    timings["generate_s"] = time.perf_counter() - tick  # includes the engine start, when one was needed
    tick = time.perf_counter()
    per_row = score_records(rows, records, kind, args.threshold)
    metrics = summarize(per_row, kind)
    timings["score_s"] = time.perf_counter() - tick
    timings.update(prompts=len(requests), generated_now=sum(generated), reused=len(requests) - sum(generated))
    resolved = {"verdict": kind, "sampling": params.to_dict(), "rows": len(rows),
                "skipped_bad_records": skipped.skipped if skipped else 0}
    files = {"generations": store.path, "predictions": out / "predictions.jsonl",
             **{key: out / name for key, name in PLOTS.items()}}
    write_jsonl(files["predictions"], [p for row in per_row for p in row])
    name = model_name(args.model)
    write_plots(out, metrics, name)
    results = {"benchmark": "libra-bench", "settings": settings(args), "resolved": resolved,
               "scoring": scoring_notes(kind, params.n), "metrics": metrics,
               "timings": {**timings, "total_s": time.perf_counter() - start}}
    table = ResultsTable(f"Libra Bench accuracy (%): {name}, {len(rows)} rows", *accuracy_table(name, metrics))
    publish(out, results, table, report_notes(args, resolved, metrics), files)
    return 0


def check_template(template: str) -> set[str]:
    """The template's fields; ValueError when it is unknown, malformed or needs a field bench rows do not
    have (e.g. the verification prompt's reference answer)."""
    fields = template_fields(template)
    extra = sorted(fields - set(ROW_FIELDS))
    if extra:
        raise ValueError(f"template {template!r} needs {extra}, which Libra Bench rows do not have "
                         f"(a template may use {', '.join(ROW_FIELDS)})")
    return fields


def default_verdict(template: str) -> str:
    return template if template in PARSERS else "pointwise"


def build_requests(rows: Sequence[dict], template: str, fields: set[str]) -> list[Request]:
    """One single-turn chat prompt per row; the id carries a digest of the prompt (see the module docstring)."""
    requests = []
    for row in rows:
        text = render(template, **{name: row[name] for name in fields})
        requests.append(Request(f"{row['id']}#{content_key(text)[:12]}", [{"role": "user", "content": text}]))
    return requests


def score_records(rows: Sequence[dict], records: Sequence[dict], kind: str, threshold: int) -> list[list[dict]]:
    """Per row, one prediction per sample: the row's identity and label, the parsed verdict (``score``
    or ``verdict``, None when invalid), ``valid``, the binary ``pred`` (None when invalid), tokens, finish."""
    parse = PARSERS[kind]
    per_row = []
    for row, record in zip(rows, records, strict=True):
        samples = []
        for index, sample in enumerate(record["samples"]):
            verdict = parse(sample["text"])
            samples.append({
                "id": row["id"], "subset": row["subset"], "source_model": row["source_model"], "label": row["label"],
                "sample": index, VALUE_KEY[kind]: verdict.value, "valid": verdict.valid,
                "pred": binary(verdict.value, kind, threshold), "num_tokens": sample["num_tokens"],
                "finish_reason": sample["finish_reason"],
            })
        per_row.append(samples)
    return per_row


def binary(value, kind: str, threshold: int) -> bool | None:
    """The correctness prediction of a parsed verdict value (None stays None: invalid)."""
    if value is None or kind == "verification":
        return value
    return score_to_label(value, threshold)


def majority_vote(samples: Sequence[dict]) -> dict:
    """One prediction for a row from its samples: the majority of the valid ones; a tie or none valid is invalid."""
    votes = Counter(s["pred"] for s in samples if s["pred"] is not None)
    pred = None if votes[True] == votes[False] else votes[True] > votes[False]
    return {**{k: samples[0][k] for k in ("id", "subset", "source_model", "label")}, "pred": pred}


def summarize(per_row: Sequence[Sequence[dict]], kind: str, *, bootstrap: int = BOOTSTRAP) -> dict:
    """All metrics of results.json from ``score_records``'s output (see the module docstring for the rules)."""
    judgments = [p for row in per_row for p in row]
    metrics = {"rows": len(per_row), **subset_report(judgments)}
    metrics["average_ci95"] = list(bootstrap_ci(per_row, _pooled_average, n=bootstrap))
    metrics["mean_judgment_tokens"] = float(np.mean([p["num_tokens"] for p in judgments]))
    metrics["finish_reasons"] = dict(sorted(Counter(p["finish_reason"] for p in judgments).items()))
    if kind == "pointwise":
        metrics["by_threshold"] = {}
        for t in THRESHOLDS:
            report = subset_report([{**p, "pred": binary(p["score"], kind, t)} for p in judgments])
            metrics["by_threshold"][str(t)] = {k: report[k] for k in ("accuracy", "average", "macro_f1")}
    if any(len(row) > 1 for row in per_row):
        majority = [majority_vote(row) for row in per_row]
        metrics["majority"] = {**subset_report(majority),
                               "average_ci95": list(bootstrap_ci(majority, "average", n=bootstrap))}
    return metrics


def _pooled_average(rows: Sequence[Sequence[dict]]) -> float:
    return subset_report([p for row in rows for p in row])["average"]


def scoring_notes(kind: str, n: int) -> dict:
    """How the numbers in results.json were computed, in words."""
    notes = {
        "judgment": "each sample is one judgment; one without a parsable verdict is invalid and counts as wrong",
        "average": "unweighted mean of the per-subset accuracies (the paper's Average); accuracy pools all rows",
        "average_ci95": f"percentile bootstrap over bench rows ({BOOTSTRAP} resamples, seed 0)",
    }
    if kind == "pointwise":
        notes["threshold"] = "a pointwise score >= threshold is a 'correct' prediction; by_threshold varies it"
    if n > 1:
        notes["samples"] = (f"{n} samples per row: headline metrics pool all samples (= the mean over sample "
                            "indices); 'majority' takes per row the majority of its valid samples' predictions, "
                            "a tie or no valid sample being invalid")
    return notes


def model_name(model: str) -> str:
    """A short name for tables: a local directory's name, or the hub id."""
    path = Path(model)
    return path.name if path.is_dir() else model


def accuracy_table(name: str, metrics: dict) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 2 layout: one row per judge, a column per subset, then Average (in %)."""
    subsets = list(metrics["subsets"])
    rows = [[name, *[percent(metrics["subsets"][s]["accuracy"]) for s in subsets], percent(metrics["average"])]]
    if "majority" in metrics:
        vote = metrics["majority"]
        rows.append([f"{name} (majority vote)", *[percent(vote["subsets"][s]["accuracy"]) for s in subsets],
                     percent(vote["average"])])
    return ["Model", *subsets, "Average"], rows


def report_notes(args: argparse.Namespace, resolved: dict, metrics: dict) -> list[str]:
    """report.md below the accuracy table: the settings, then the diagnostics behind the numbers, then the plots."""
    s = resolved["sampling"]
    ci = metrics["average_ci95"]
    c = metrics["confusion"]
    threshold = f", threshold {args.threshold}" if resolved["verdict"] == "pointwise" else ""
    notes = [
        f"Bench `{args.bench}` ({resolved['rows']} rows), template `{args.template}` ({resolved['verdict']} "
        f"verdicts{threshold}), engine {args.engine}, n={s['n']}, temperature {s['temperature']}, "
        f"max {s['max_tokens']} new tokens. Average 95% CI (bootstrap over rows): {percent(ci[0])} to "
        f"{percent(ci[1])}; accuracy over all {metrics['n']} judgments: {percent(metrics['accuracy'])}.",
        "## Confusion matrix (correct is the positive class)",
        markdown_table(["true label", "predicted correct", "predicted incorrect", "invalid"],
                       [["correct", c["tp"], c["fn"], c["invalid_pos"]],
                        ["incorrect", c["fp"], c["tn"], c["invalid_neg"]]]).rstrip(),
        markdown_table(["metric", "value"],
                       [["macro-F1 (%)", percent(metrics["macro_f1"])],
                        ["invalid rate (%)", percent(metrics["invalid_rate"])],
                        ["mean judgment length (tokens)", f"{metrics['mean_judgment_tokens']:.1f}"],
                        ["finish reasons", ", ".join(f"{k} {v}" for k, v in metrics["finish_reasons"].items())]]
                       ).rstrip(),
    ]
    if "by_threshold" in metrics:
        notes += ["## Accuracy by threshold (score >= t predicts 'correct', %)",
                  markdown_table(["threshold", "accuracy", "Average", "macro-F1"],
                                 [[t, percent(m["accuracy"]), percent(m["average"]), percent(m["macro_f1"])]
                                  for t, m in metrics["by_threshold"].items()]).rstrip()]
    notes += ["## Accuracy by source model (%)",
              markdown_table(["source model", "n", "accuracy"],
                             [[m, g["n"], percent(g["accuracy"])] for m, g in metrics["source_models"].items()]
                             ).rstrip(),
              "## Plots",
              "\n".join(f"![{key}]({file})" for key, file in PLOTS.items())]
    return notes


def write_plots(out: Path, metrics: dict, name: str) -> None:
    """The PNGs of a run, named as ``PLOTS`` (report.md links them)."""
    from libra.report.plots import accuracy_bars, confusion_heatmap  # matplotlib: imported only when plotting

    confusion_heatmap(metrics["confusion"], out / PLOTS["confusion"], f"{name}: confusion matrix")
    accuracy_bars(metrics["subsets"], out / PLOTS["subsets"], f"{name}: accuracy by subset",
                  average=metrics["average"])
    accuracy_bars(metrics["source_models"], out / PLOTS["source_models"], f"{name}: accuracy by source model")
