"""``libra eval pairwise``: a generative judge on JudgeBench-style pairs, each pair judged in both orders.

Why both orders: judges favour a position, so a single order mixes skill with position bias. The pair
is judged as given (A, B) and swapped (B, A); the swapped verdict is mapped back before scoring, and the
report gives the accuracy over all verdicts, the share of pairs right in both orders and the share
judged consistently (the same side preferred both times).

Input rows (.jsonl/.json/.parquet): ``question``, ``response_A``, ``response_B``, ``label`` (a pairwise
label such as "A>B"; the better side counts, not the strength), optional ``pair_id``/``id`` and
``source``. Results are broken down by source and by JudgeBench's four categories. With ``--n`` above 1,
sample j of one order is paired with sample j of the other, and every such pair counts as one judgment.
A prompt (one order of a pair) that does not fit the judge's context is not generated: its verdicts are
invalid (wrong), and the prompts are counted overall, per category and per source.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from libra.data.jsonl import DataError, read_records, write_jsonl
from libra.eval.generations import PROMPT_TOO_LONG, GenerationStore, Request, run_generation
from libra.eval.metrics import pairwise_report
from libra.eval.options import (
    add_eval_arguments,
    add_too_long_argument,
    add_verdict_mode_argument,
    engine_from_args,
    prepare_sampling,
)
from libra.eval.rundir import ResultsTable, content_key, publish, settings, usage_error
from libra.judge import PAIRWISE_LABELS, judge_kind, preferred_side, render, template_fields
from libra.models.checks import check_model_dir, weights_fingerprint
from libra.report.markdown import percent
from libra.rollout.types import Engine, SamplingParams

ORDERS = ("ab", "ba")
# JudgeBench reports four categories; its sources name them (mmlu-pro-<subject> is "knowledge").
_CATEGORIES = {"livebench-reasoning": "reasoning", "livebench-math": "math", "livecodebench": "coding"}
_SLOTS = {"response_a", "response_b"}


@dataclass(frozen=True)
class Pair:
    id: str
    source: str
    question: str
    response_a: str
    response_b: str
    label: str
    better: str  # "A", "B" or "tie": the side the label prefers


def category(source: str) -> str:
    """JudgeBench's category of a source (knowledge, reasoning, math, coding); other sources stand alone."""
    return "knowledge" if source.startswith("mmlu-pro") else _CATEGORIES.get(source, source)


def load_pairs(paths: Sequence[Path]) -> list[Pair]:
    """Pairs of all files, in order; a bad or duplicate row is a DataError naming file, line and field."""
    pairs: list[Pair] = []
    seen: dict[str, str] = {}
    for path in paths:
        for rec in read_records(path):
            pid = next((str(rec.data[k]) for k in ("pair_id", "id") if rec.data.get(k) is not None),
                       f"{Path(path).stem}:{rec.line}")
            if pid in seen:
                raise rec.error("pair_id", f"duplicate id {pid!r} (first at {seen[pid]})")
            seen[pid] = f"{rec.path}:{rec.line}"
            raw = rec.get("label", str)
            label = "".join(raw.split()).upper()
            if label not in PAIRWISE_LABELS:
                raise rec.error("label", f"expected one of {', '.join(PAIRWISE_LABELS)}, got {raw!r}")
            pairs.append(Pair(pid, rec.get("source", str, required=False, default="all"), rec.get("question"),
                              rec.get("response_A"), rec.get("response_B"), label, preferred_side(label)))
    return pairs


def judge_requests(pair: Pair, template: str, fields: set[str]) -> list[Request]:
    """The pair as given (``<id>:ab``) and swapped (``<id>:ba``), as user messages."""
    sides = {"ab": (pair.response_a, pair.response_b), "ba": (pair.response_b, pair.response_a)}
    out = []
    for order in ORDERS:
        values = {"question": pair.question, "response_a": sides[order][0], "response_b": sides[order][1]}
        prompt = render(template, **{name: values[name] for name in fields})
        out.append(Request(f"{pair.id}:{order}", [{"role": "user", "content": prompt}]))
    return out


def predictions(pairs: Sequence[Pair], records: Sequence[dict], *, strict: bool = False) -> list[dict]:
    """One row per (pair, sample): both verdicts (None when unparsable) and the truth, as ``pairwise_report``
    reads them. ``records`` are the generation records in ``judge_requests`` order (ab, ba per pair)."""
    judge = judge_kind("pairwise")
    rows = []
    for i, pair in enumerate(pairs):
        ab, ba = records[2 * i]["samples"], records[2 * i + 1]["samples"]
        for j, (s_ab, s_ba) in enumerate(zip(ab, ba)):
            rows.append({"id": pair.id, "sample": j, "source": pair.source, "category": category(pair.source),
                         "label": pair.label, "better": pair.better,
                         "verdict_ab": judge.parse(s_ab["text"], strict=strict).value,
                         "verdict_ba": judge.parse(s_ba["text"], strict=strict).value,
                         "finish_ab": s_ab["finish_reason"], "finish_ba": s_ba["finish_reason"]})
    return rows


def grouped_reports(rows: Sequence[dict], key: str, report: Callable = pairwise_report) -> dict[str, dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    return {name: report(groups[name]) for name in sorted(groups)}


def prompts_too_long(rows: Sequence[dict]) -> int:
    """How many prompts (pair orders) of ``rows`` did not fit the context: not generated, their verdicts invalid."""
    return sum(r[f"finish_{o}"] == PROMPT_TOO_LONG for r in rows if r["sample"] == 0 for o in ORDERS)


def register(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser("pairwise", help="a generative judge on JudgeBench-style pairs, both orders",
                         description="Judge every pair as given and swapped; accuracy, accuracy in both orders "
                                     "and consistency, overall, per category and per source.")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="pair files (.jsonl/.json/.parquet): question, response_A, response_B, label, pair_id, "
                        "source")
    p.add_argument("--template", default="pairwise",
                   help="judge prompt: a built-in name or a file with {question}, {response_a}, {response_b}")
    add_verdict_mode_argument(p)
    add_too_long_argument(p)
    add_eval_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, *, engine=None) -> int:
    """The command: options -> ``evaluate``. ``engine``: an already started engine to use instead of the one
    the options describe (not closed here)."""
    try:
        fields = template_fields(args.template)
    except ValueError as err:
        return usage_error("pairwise", f"--template: {err}")
    if not _SLOTS <= fields:
        return usage_error("pairwise", f"--template {args.template!r} must have the placeholders "
                                       f"{{response_a}} and {{response_b}}; it has {sorted(fields)}")
    check_model_dir(args.model)
    pairs = load_pairs(args.data)[:args.limit]
    if not pairs:
        raise DataError(args.data[0], None, None, "no pairs to judge")
    requests = [r for pair in pairs for r in judge_requests(pair, args.template, fields)]
    unfit = {} if args.too_long == "count" else None
    params = prepare_sampling(args, requests, str(args.data[0]), unfit=unfit)
    try:
        evaluate(pairs, template=args.template, out=args.out, sampling=params, model=args.model, engine=engine,
                 engine_factory=None if engine is not None else (lambda: engine_from_args(args)), chunk=args.chunk,
                 progress=not args.no_progress, verdict_mode=args.verdict_mode, settings=settings(args), unfit=unfit)
    except KeyboardInterrupt:
        return 130
    return 0


def evaluate(pairs: Sequence[Pair], *, out: str | Path, sampling: SamplingParams, model: str,
             engine: Engine | None = None, engine_factory: Callable[[], Engine] | None = None,
             template: str = "pairwise", fingerprint: str | None = None, verdict_mode: str = "lenient",
             chunk: int = 64, progress: bool = True, plots: bool = True, quiet: bool = False,
             settings: dict | None = None, unfit: dict[str, int] | None = None) -> dict:
    """Pairwise judging of ``pairs`` (``load_pairs``), each as given and swapped; writes generations.jsonl
    (resumable), predictions.jsonl, results.json, report.md and (with ``plots``) pairwise.png into ``out``
    and returns the results. ``engine`` / ``engine_factory`` / ``fingerprint`` / ``unfit``: as in
    ``libra.eval.libra_bench.evaluate``."""
    fields = template_fields(template)
    if not _SLOTS <= fields:
        raise ValueError(f"template {template!r} must have the placeholders {{response_a}} and {{response_b}}")
    out = Path(out)
    # The key of the template is its text, so editing a template file never reuses the old verdicts.
    template_key = f"{template}@{content_key(render(template, **{f: '{' + f + '}' for f in fields}))}"
    requests = [r for pair in pairs for r in judge_requests(pair, template, fields)]
    fingerprint = fingerprint or weights_fingerprint(model)
    store = GenerationStore(out / "generations.jsonl")
    gen = run_generation(requests, sampling, store, template=template_key, model_id=fingerprint, engine=engine,
                         engine_factory=engine_factory, chunk=chunk, progress=progress, verbose=not quiet,
                         unfit=unfit)
    rows = predictions(pairs, gen.records, strict=verdict_mode == "strict")
    files = {"generations": store.path, "predictions": out / "predictions.jsonl"}
    if plots:
        files["plot"] = out / "pairwise.png"
    write_jsonl(files["predictions"], rows)
    overall = pairwise_report(rows)
    by_category, by_source = grouped_reports(rows, "category"), grouped_reports(rows, "source")
    unfit = {"overall": prompts_too_long(rows), "by_category": grouped_reports(rows, "category", prompts_too_long),
             "by_source": grouped_reports(rows, "source", prompts_too_long)}
    truncated = sum(r[f"finish_{o}"] == "length" for r in rows for o in ORDERS) / (2 * len(rows))
    if plots:
        from libra.report.curves import pairwise_bars

        pairwise_bars({"overall": overall, **by_category, **{f"  {k}": v for k, v in by_source.items()}},
                      files["plot"], f"pairwise judging: {Path(model).name}")
    results = {"benchmark": "pairwise", "settings": settings if settings is not None else {}, "template": template_key,
               "model": model, "model_fingerprint": fingerprint, "sampling": sampling.to_dict(),
               "verdict_mode": verdict_mode, "pairs": len(pairs), "generated_now": gen.generated,
               "reused": gen.reused, "overall": overall, "by_category": by_category, "by_source": by_source,
               "truncated_rate": truncated, "prompts_too_long": unfit,
               "unfit_prompts": {r["id"]: r["prompt_tokens"] for r in gen.records if "prompt_tokens" in r}}
    table = ResultsTable(f"Pairwise judging ({len(pairs)} pairs x 2 orders x {sampling.n} samples)",
                         ["group", "n", "accuracy", "both orders", "consistency", "invalid", "did not fit"],
                         [_table_row("overall", overall, unfit["overall"]),
                          *[_table_row(k, v, unfit["by_category"][k]) for k, v in by_category.items()],
                          *[_table_row(f"  {k}", v, unfit["by_source"][k]) for k, v in by_source.items()]])
    notes = ["accuracy: share of right verdicts over both orders; both orders: pairs right in both; consistency: "
             "pairs whose two verdicts prefer the same side once the swap is undone; invalid: verdicts with no "
             "parsable [[label]]. A verdict is right when the side it prefers is the labelled better side. "
             "did not fit: prompts (pair orders) longer than the context with room for --max-tokens; not "
             "generated, their verdicts are invalid.",
             f"Judgments cut at --max-tokens: {percent(truncated)}%."]
    if plots:
        notes.append("![accuracy and consistency](pairwise.png)")
    return publish(out, results, table, notes, files, quiet=quiet)


def _table_row(name: str, report: dict, unfit: int) -> list:
    return [name, report["n"], percent(report["accuracy"]), percent(report["accuracy_both"]),
            percent(report["consistency"]), percent(report["invalid_rate"]), unfit]
