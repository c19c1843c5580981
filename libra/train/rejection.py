"""Rejection sampling (paper section 4.2): sample k judgments per judging prompt from a teacher and keep
those whose parsed verdict agrees with the label; the kept judgments become SFT chat rows.

Generation is resumable (``<out stem>.generations.jsonl``, keyed like ``libra eval``), so a long
teacher run survives crashes; the selection itself is cheap and redone each time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from libra.data.bench import load_bench
from libra.data.jsonl import DataError, SkipCounter, write_json, write_jsonl
from libra.eval.generations import GenerationStore, generate_resumable
from libra.eval.lazy_engine import LazyEngine
from libra.eval.libra_bench import PARSERS, build_requests, check_template, default_verdict, score_records
from libra.eval.options import (
    add_engine_arguments,
    add_sampling_arguments,
    check_prompt_lengths,
    engine_from_args,
    sampling_from_args,
)
from libra.judge import DEFAULT_THRESHOLD
from libra.report.tables import print_results_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rejection-sample", help="teacher judgments that agree with the labels -> SFT rows",
                       description="Sample --n judgments per labelled judging row from a teacher (--model) and keep "
                                   "those whose verdict matches the label (paper section 4.2).")
    add_engine_arguments(p)
    add_sampling_arguments(p, n=8, temperature=0.6, max_tokens=16384)
    p.add_argument("--bench", required=True, help="labelled judging rows (e.g. from `libra data v2v`)")
    p.add_argument("--template", default="pointwise", help="judge prompt: built-in name or template file")
    p.add_argument("--verdict", choices=tuple(PARSERS), default=None, help="default: the template's own kind")
    p.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD)
    p.add_argument("--keep", type=int, default=1, help="at most this many agreeing judgments per row (default 1)")
    p.add_argument("--keep-truncated", action="store_true",
                   help="also keep judgments cut off by --max-tokens (by default they are dropped)")
    p.add_argument("--out", required=True, type=Path, help="SFT rows (.jsonl); stats and generations go beside it")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def select(rows: list[dict], per_row: list[list[dict]], records: list[dict], prompts: list[str], keep: int,
           drop_truncated: bool) -> tuple[list[dict], dict]:
    """SFT rows from the agreeing samples (first ``keep`` per row) and the acceptance statistics."""
    out, accepted_rows = [], 0
    stats = {"rows": len(rows), "samples": 0, "agreeing": 0, "invalid": 0, "truncated": 0}
    for row, preds, record, prompt in zip(rows, per_row, records, prompts, strict=True):
        taken = 0
        for pred, sample in zip(preds, record["samples"], strict=True):
            stats["samples"] += 1
            stats["invalid"] += pred["pred"] is None
            truncated = sample["finish_reason"] == "length"
            stats["truncated"] += truncated
            if pred["pred"] is None or pred["pred"] != row["label"] or (truncated and drop_truncated):
                continue
            stats["agreeing"] += 1
            if taken < keep:
                out.append({"messages": [{"role": "user", "content": prompt},
                                         {"role": "assistant", "content": sample["text"]}],
                            "id": row["id"], "label": row["label"], "subset": row["subset"]})
                taken += 1
        accepted_rows += taken > 0
    stats.update(kept=len(out), rows_with_a_kept_judgment=accepted_rows,
                 acceptance=stats["agreeing"] / max(stats["samples"], 1))
    return out, stats


def run(args: argparse.Namespace) -> int:
    try:
        fields = check_template(args.template)
    except ValueError as err:
        print(f"error: --template: {err}", file=sys.stderr)
        return 2
    from libra.models.checks import check_model_dir

    check_model_dir(args.model)
    kind = args.verdict or default_verdict(args.template)
    rows = load_bench(args.bench, skip_bad=SkipCounter() if args.skip_bad else None)[:args.limit]
    if not rows:
        raise DataError(args.bench, None, None, "no labelled rows")
    requests = build_requests(rows, args.template, fields)
    check_prompt_lengths(args, requests, args.bench)
    stem = args.out.with_suffix("")
    store = GenerationStore(f"{stem}.generations.jsonl")
    engine = LazyEngine(lambda: engine_from_args(args))
    try:
        records = generate_resumable(engine, requests, sampling_from_args(args), store, template=args.template,
                                     model=args.model, chunk=args.chunk, progress=not args.no_progress)
    finally:
        engine.close()
    per_row = score_records(rows, records, kind, args.threshold)
    prompts = [r.prompt[0]["content"] for r in requests]
    sft_rows, stats = select(rows, per_row, records, prompts, args.keep, not args.keep_truncated)
    write_jsonl(args.out, sft_rows)
    write_json(f"{stem}.stats.json", {"teacher": args.model, "template": args.template, **stats})
    print_results_table("Rejection sampling", ["", "value"], [[k, v if isinstance(v, int) else f"{v:.3f}"]
                                                               for k, v in stats.items()])
    print(f"SFT rows: {args.out}")
    return 0
