"""``libra eval libra-bench``: pointwise correctness judging on Libra Bench (paper, Sec. 3 and Table 2).

Every bench row becomes one chat prompt (the rendered judge template as the user message); the judge's
answers go to ``OUT/generations.jsonl`` chunk by chunk, so a rerun after a crash or Ctrl-C generates
only what is missing (``libra.eval.generations``). The steps after generation are pure functions,
testable without an engine: ``score_records`` (records -> per-sample predictions), ``summarize``
(predictions -> metrics); ``libra.report.bench_report`` renders the metrics (tables, report.md, plots).

Scoring (also written into results.json under "scoring", so a results file explains itself):

* A sample without a parsable verdict, or with a pointwise score outside 0-4, is an invalid judgment:
  always wrong, and counted apart in the confusion matrix and the invalid rate.
* Pointwise scores are binarised as ``score >= threshold`` (paper: threshold 2); accuracy at
  thresholds 1-4 is reported beside it.
* With ``--n`` > 1, every sample is a judgment of its own: the headline metrics pool all samples of
  all rows, which equals averaging each sample index's metrics since every row has ``n`` samples.
  ``majority`` scores one prediction per row instead: the majority of its valid samples' binary
  predictions, a tie or no valid sample being invalid.
* With ``--n`` > 1 there is also a ``confidence`` section (``libra.eval.calibration``): per row the
  share of its valid samples judging "correct" (also in predictions.jsonl as ``confidence``), its AUROC,
  the expected calibration error with a reliability diagram, accuracy against k (majority vote and mean
  confidence of the first k samples) and a threshold chosen on a seeded calibration half of the rows,
  evaluated on the other half beside the fixed 0.5.
* The 95% interval of the Average is a percentile bootstrap over bench rows (a row's samples are
  resampled together, as they are not independent).
* A row whose prompt does not fit the judge's context (with room for ``max_tokens``) is not generated:
  each of its samples is an invalid judgment (finish reason ``prompt_too_long``), counted in
  ``prompts_too_long`` and ``prompts_too_long_by_subset``, and left out of the mean judgment length.

Each row's generation key holds a digest of its rendered prompt, so an edited bench row or template
file never reuses a stale judgment.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from libra.data.bench import HUB_ID, load_bench
from libra.data.jsonl import DataError, SkipCounter, write_jsonl
from libra.eval.calibration import confidence_report, row_confidence, row_verdict_confidence, verdict_confidence_report
from libra.eval.generations import PROMPT_TOO_LONG, GenerationStore, Request, run_generation
from libra.eval.lazy_engine import LazyEngine
from libra.eval.metrics import bootstrap_ci, subset_report
from libra.eval.options import (
    add_eval_arguments,
    add_too_long_argument,
    add_verdict_mode_argument,
    engine_from_args,
    prepare_sampling,
)
from libra.eval.rundir import ResultsTable, content_key, publish, settings, usage_error
from libra.eval.verdict_confidence import VerdictScoreStore, attach_verdict_confidence, store_path
from libra.judge import (
    DEFAULT_THRESHOLD,
    POINTWISE_KINDS,
    VERDICT_MODES,
    judge_kind,
    kind_of_template,
    render,
    template_fields,
)
from libra.models.checks import check_model_dir, weights_fingerprint
from libra.report.bench_report import (
    PLOTS,
    RELIABILITY_PLOT,
    VERDICT_RELIABILITY_PLOT,
    accuracy_table,
    model_name,
    report_notes,
    write_plots,
)
from libra.rollout.types import Engine, SamplingParams

ROW_FIELDS = ("question", "response")  # what every bench row can fill into a template
OPTIONAL_ROW_FIELDS = ("reference",)  # what some benches' rows have (the official Libra Bench: the gold answer)
THRESHOLDS = (1, 2, 3, 4)
BOOTSTRAP = 1000


def register(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser(
        "libra-bench", help="pointwise correctness judging on Libra Bench (accuracy per subset and Average)",
        description="Judge every bench response with a generative judge, parse its verdicts and score them "
                    "against the labels. Writes generations.jsonl (resumable), predictions.jsonl, results.json, "
                    "report.md and PNG plots to --out.")
    add_bench_arguments(p)
    p.set_defaults(func=run)


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """The engine, sampling and bench options of ``libra eval libra-bench`` (also ``libra eval probes``)."""
    add_eval_arguments(p)
    g = p.add_argument_group("benchmark")
    g.add_argument("--bench", default=HUB_ID,
                   help=f"bench file (.jsonl/.json/.parquet, e.g. from `libra data v2v`) or hub id (default {HUB_ID})")
    g.add_argument("--split", default=None,
                   help="split of a hub dataset (default: its only split, else 'test'; the official Libra Bench has "
                        "one, 'train')")
    g.add_argument("--template", default="pointwise",
                   help="judge prompt: a built-in name or a template file with {question} and {response} (and "
                        "{reference} when the bench rows have one)")
    g.add_argument("--verdict", choices=POINTWISE_KINDS, default=None,
                   help="how to read the verdict: [[score=N]] or [[Correct]]/[[Wrong]] (default: the built-in "
                        "template's own kind, pointwise for a template file)")
    add_verdict_mode_argument(g)
    g.add_argument("--verdict-confidence", action="store_true",
                   help="also score every verdict label in the place of the one written (teacher forcing) and "
                        "report the verdict token's P(correct) as a confidence: AUROC, ECE, reliability plot, "
                        "chosen threshold; works with one greedy judgment per row (libra/eval/verdict_confidence.py)")
    g.add_argument("--threshold", type=int, choices=range(5), default=DEFAULT_THRESHOLD,
                   help=f"pointwise score >= this predicts 'correct' (default {DEFAULT_THRESHOLD}, the paper's)")
    g.add_argument("--skip-bad", action="store_true", help="skip malformed bench records (counted) instead of stopping")
    add_too_long_argument(g)


def run(args: argparse.Namespace, *, engine=None) -> int:
    """The command: options -> ``evaluate``. ``engine``: an already started engine to use instead of the one
    the options describe (not closed here).

    Everything that can be wrong with the input is checked before an engine starts (tens of seconds for
    vLLM), and the engine starts lazily: not at all when every judgment is already in generations.jsonl.
    """
    start = time.perf_counter()
    checked = load_checked(args, "libra-bench")
    if isinstance(checked, int):
        return checked
    rows, fields, skipped = checked
    unfit = {} if args.too_long == "count" else None
    params = prepare_sampling(args, build_requests(rows, args.template, fields), args.bench, unfit=unfit)
    try:
        evaluate(rows, out=args.out, sampling=params, model=args.model, unfit=unfit, skipped_bad_records=skipped,
                 started=start, **evaluate_options(args, engine))
    except KeyboardInterrupt:
        return 130
    return 0


def load_checked(args: argparse.Namespace, command: str, *, unique_ids: bool = False
                 ) -> tuple[list[dict], set[str], int] | int:
    """A bench command's rows (``--bench``, ``--split``, ``--limit``; ``unique_ids`` as ``load_bench``), the
    template fields they fill and the count of skipped bad records, all checked before any engine starts; or
    the exit status (2, message printed) of a bad ``--template``."""
    try:
        template_fields(args.template)
    except ValueError as err:
        return usage_error(command, f"--template: {err}")
    check_model_dir(args.model)
    skipped = SkipCounter() if args.skip_bad else None
    rows = load_bench(args.bench, split=args.split, skip_bad=skipped, unique_ids=unique_ids)[:args.limit]
    if not rows:
        raise DataError(args.bench, None, None, "no bench rows to evaluate")
    try:
        fields = check_template(args.template, rows)
    except ValueError as err:
        return usage_error(command, f"--template: {err}")
    return rows, fields, skipped.skipped if skipped else 0


def evaluate_options(args: argparse.Namespace, engine=None) -> dict:
    """The keywords of ``evaluate`` that a bench command's options set (engine included)."""
    return dict(template=args.template, engine=engine,
                engine_factory=None if engine is not None else (lambda: engine_from_args(args)),
                verdict=args.verdict, threshold=args.threshold, verdict_mode=args.verdict_mode, chunk=args.chunk,
                verdict_confidence=args.verdict_confidence,
                progress=not args.no_progress, settings=settings(args), bench=args.bench, engine_name=args.engine)


def evaluate(rows: Sequence[dict], *, out: str | Path, sampling: SamplingParams, model: str,
             engine: Engine | None = None, engine_factory: Callable[[], Engine] | None = None,
             template: str = "pointwise", fingerprint: str | None = None, verdict: str | None = None,
             threshold: int = DEFAULT_THRESHOLD, verdict_mode: str = "lenient", chunk: int = 64,
             progress: bool = True, plots: bool = True, quiet: bool = False, name: str | None = None,
             settings: dict | None = None, bench: str = "", engine_name: str = "",
             skipped_bad_records: int = 0, started: float | None = None, unfit: dict[str, int] | None = None,
             verdict_confidence: bool = False) -> dict:
    """Libra Bench on ``rows`` (``load_bench``'s normalised rows): judge each with ``template``, parse,
    score, and write generations.jsonl (resumable), predictions.jsonl, results.json, report.md and (with
    ``plots``) the PNGs into ``out``; returns the results (what results.json holds).

    The judge is ``engine`` (used as it is, not closed: e.g. a trainer's rollout engine holding weights
    that exist nowhere on disk) or one that ``engine_factory`` starts on the first missing judgment and
    that is closed before this returns. ``model`` names the judge in the report; ``fingerprint`` keys the
    reuse of judgments (default: the content hash of ``model``'s weights; pass your own when the engine's
    weights are not those of ``model``). ``verdict``: "pointwise" or "verification" (default: the
    template's own kind); ``verdict_mode``: "lenient" or "strict" (``libra.judge.verdicts``).
    ``unfit``: the prompts that do not fit the judge's context (request id -> prompt tokens, as
    ``libra.eval.options.prepare_sampling`` finds them): not generated, scored as invalid and counted.
    ``verdict_confidence``: also score each verdict's alternatives with the same engine
    (``libra.eval.verdict_confidence``, kept in verdict_scores.jsonl) and report that confidence.
    Raises ValueError for a template the rows cannot fill; KeyboardInterrupt propagates (finished
    chunks are saved)."""
    start = time.perf_counter() if started is None else started
    out = Path(out)
    kind = verdict or kind_of_template(template)
    if kind not in POINTWISE_KINDS or verdict_mode not in VERDICT_MODES:
        raise ValueError(f"verdict must be one of {POINTWISE_KINDS} and verdict_mode one of {VERDICT_MODES}")
    fields = check_template(template, rows)
    requests = build_requests(rows, template, fields)
    fingerprint = fingerprint or weights_fingerprint(model)
    store = GenerationStore(out / "generations.jsonl")
    timings = {"load_s": time.perf_counter() - start}
    tick = time.perf_counter()
    # Verdict scores need the engine after generation: keep one this function starts until both are done.
    lazy = LazyEngine(engine_factory) if verdict_confidence and engine is None else None
    try:
        gen = run_generation(requests, sampling, store, template=template, model_id=fingerprint,
                             engine=lazy or engine, engine_factory=None if lazy or engine else engine_factory,
                             chunk=chunk, progress=progress, verbose=not quiet, unfit=unfit)
        timings["generate_s"] = time.perf_counter() - tick  # includes the engine start, when one was needed
        tick = time.perf_counter()
        per_row = score_records(rows, gen.records, kind, threshold, strict=verdict_mode == "strict")
        parse_s = time.perf_counter() - tick
        if verdict_confidence:
            tick = time.perf_counter()
            attach_verdict_confidence(per_row, requests, gen.records, lazy or engine, kind=kind, threshold=threshold,
                                      strict=verdict_mode == "strict", store=VerdictScoreStore(store_path(out)),
                                      model_id=fingerprint, progress=progress)
            timings["verdict_scores_s"] = time.perf_counter() - tick
    finally:
        if lazy is not None:
            lazy.close()
    tick = time.perf_counter()
    metrics = summarize(per_row, kind)
    timings["score_s"] = parse_s + time.perf_counter() - tick
    timings.update(prompts=len(requests), generated_now=gen.generated, reused=gen.reused, prompts_too_long=gen.unfit)
    resolved = {"verdict": kind, "verdict_mode": verdict_mode, "threshold": threshold, "template": template,
                "bench": bench, "engine": engine_name, "model": model, "model_fingerprint": fingerprint,
                "sampling": sampling.to_dict(), "rows": len(rows), "skipped_bad_records": skipped_bad_records}
    files = {"generations": store.path, "predictions": out / "predictions.jsonl"}
    if plots:
        files.update({key: out / file for key, file in PLOTS.items()})
        if "confidence" in metrics:
            files["reliability"] = out / RELIABILITY_PLOT
        if "verdict_confidence" in metrics:
            files["reliability_verdict"] = out / VERDICT_RELIABILITY_PLOT
    if verdict_confidence:
        files["verdict_scores"] = store_path(out)
    write_jsonl(files["predictions"], [{**p, **row_confidences(row, several=sampling.n > 1, verdict=verdict_confidence)}
                                       for row in per_row for p in row])
    name = name or model_name(model)
    if plots:
        write_plots(out, metrics, name)
    results = {"benchmark": "libra-bench", "settings": settings if settings is not None else {}, "resolved": resolved,
               "scoring": scoring_notes(kind, sampling.n, verdict_mode), "metrics": metrics,
               "unfit_prompts": {r["id"]: r["prompt_tokens"] for r in gen.records if "prompt_tokens" in r},
               "timings": {**timings, "total_s": time.perf_counter() - start}}
    table = ResultsTable(f"Libra Bench accuracy (%): {name}, {len(rows)} rows", *accuracy_table(name, metrics))
    return publish(out, results, table, report_notes(resolved, metrics, plots=plots), files, quiet=quiet)


def row_confidences(row: Sequence[dict], *, several: bool, verdict: bool) -> dict:
    """The per-row confidences a prediction line of predictions.jsonl carries."""
    return {**({"confidence": row_confidence(row)} if several else {}),
            **({"verdict_confidence": row_verdict_confidence(row)} if verdict else {})}


def check_template(template: str, rows: Sequence[dict] = ()) -> set[str]:
    """The template's fields; ValueError when it is unknown, malformed or needs a field the bench rows do
    not have (e.g. the verification prompt's reference answer, which only some benches carry)."""
    fields = template_fields(template)
    available = set(ROW_FIELDS) | {f for f in OPTIONAL_ROW_FIELDS if rows and all(row.get(f) for row in rows)}
    extra = sorted(fields - available)
    if extra:
        raise ValueError(f"template {template!r} needs {extra}, which these bench rows do not have "
                         f"(a template may use {', '.join(sorted(available))})")
    return fields


def build_requests(rows: Sequence[dict], template: str, fields: set[str]) -> list[Request]:
    """One single-turn chat prompt per row; the id carries a digest of the prompt (see the module docstring)."""
    requests = []
    for row in rows:
        text = render(template, **{name: row[name] for name in fields})
        requests.append(Request(f"{row['id']}#{content_key(text)[:12]}", [{"role": "user", "content": text}]))
    return requests


def score_records(rows: Sequence[dict], records: Sequence[dict], kind: str, threshold: int, *,
                  strict: bool = False) -> list[list[dict]]:
    """Per row, one prediction per sample: the row's identity and label, the parsed verdict (``score``
    or ``verdict``, None when invalid), ``valid``, the binary ``pred`` (None when invalid), tokens, finish."""
    judge = judge_kind(kind)
    per_row = []
    for row, record in zip(rows, records, strict=True):
        samples = []
        for index, sample in enumerate(record["samples"]):
            verdict = judge.parse(sample["text"], strict=strict)
            samples.append({
                "id": row["id"], "subset": row["subset"], "source_model": row["source_model"], "label": row["label"],
                "sample": index, judge.value_key: verdict.value, "valid": verdict.valid,
                "pred": binary(verdict.value, kind, threshold), "num_tokens": sample["num_tokens"],
                "finish_reason": sample["finish_reason"],
            })
        per_row.append(samples)
    return per_row


def binary(value, kind: str, threshold: int) -> bool | None:
    """The correctness prediction of a parsed verdict value (None stays None: invalid)."""
    return judge_kind(kind).outcome(value, threshold)


def right_per_row(predictions: str | Path) -> dict[str, float]:
    """Per row of a predictions.jsonl, the share of its judgments that are right (an invalid verdict is
    wrong): the unit a paired bootstrap resamples, so judges sampled a different number of times compare
    on the same rows."""
    by_row: dict[str, list[bool]] = {}
    with open(predictions) as f:
        for line in f:
            r = json.loads(line)
            by_row.setdefault(r["id"], []).append(r["pred"] is not None and r["pred"] == r["label"])
    return {row: float(np.mean(v)) for row, v in by_row.items()}


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
    unfit = [row[0] for row in per_row if row[0]["finish_reason"] == PROMPT_TOO_LONG]
    metrics["prompts_too_long"] = len(unfit)
    metrics["prompts_too_long_by_subset"] = {name: sum(p["subset"] == name for p in unfit)
                                             for name in metrics["subsets"]}
    generated = [p["num_tokens"] for p in judgments if p["finish_reason"] != PROMPT_TOO_LONG]
    metrics["mean_judgment_tokens"] = float(np.mean(generated)) if generated else 0.0
    metrics["finish_reasons"] = dict(sorted(Counter(p["finish_reason"] for p in judgments).items()))
    if judge_kind(kind).uses_threshold:
        metrics["by_threshold"] = {}
        for t in THRESHOLDS:
            report = subset_report([{**p, "pred": binary(p["score"], kind, t)} for p in judgments])
            metrics["by_threshold"][str(t)] = {k: report[k] for k in ("accuracy", "average", "macro_f1")}
    if any(len(row) > 1 for row in per_row):
        majority = [majority_vote(row) for row in per_row]
        metrics["majority"] = {**subset_report(majority),
                               "average_ci95": list(bootstrap_ci(majority, "average", n=bootstrap))}
        metrics["confidence"] = confidence_report(per_row)
    if any("p_correct" in p for p in judgments):
        metrics["verdict_confidence"] = verdict_confidence_report(per_row)
    return metrics


def _pooled_average(rows: Sequence[Sequence[dict]]) -> float:
    return subset_report([p for row in rows for p in row])["average"]


def scoring_notes(kind: str, n: int, verdict_mode: str = "lenient") -> dict:
    """How the numbers in results.json were computed, in words."""
    notes = {
        "judgment": "each sample is one judgment; one without a parsable verdict is invalid and counts as wrong",
        "verdict_mode": "strict: a thinking judge's verdict counts only after </think>" if verdict_mode == "strict"
        else "lenient: a thinking judge's verdict is read after </think>, else anywhere in its text",
        "average": "unweighted mean of the per-subset accuracies (the paper's Average); accuracy pools all rows",
        "average_ci95": f"percentile bootstrap over bench rows ({BOOTSTRAP} resamples, seed 0)",
        "prompts_too_long": "a row whose prompt does not fit the context with room for max_tokens is not generated: "
                            "its judgments are invalid (wrong), counted per subset, and left out of the mean "
                            "judgment length",
    }
    if judge_kind(kind).uses_threshold:
        notes["threshold"] = "a pointwise score >= threshold is a 'correct' prediction; by_threshold varies it"
    if n > 1:
        notes["samples"] = (f"{n} samples per row: headline metrics pool all samples (= the mean over sample "
                            "indices); 'majority' takes per row the majority of its valid samples' predictions, "
                            "a tie or no valid sample being invalid")
    return notes
