"""Rejection sampling (paper section 4.2): sample k judgments per judging prompt from a teacher and keep
those whose parsed verdict agrees with the label; the kept judgments become SFT chat rows. Verdicts are
read strictly by default, as the RL rewards read them (``libra.judge.verdicts.TRAINING_STRICT``).

``rejection_sample`` is the library function; ``libra train rejection-sample`` wraps it. Generation is
resumable (``<out stem>.generations.jsonl``, keyed like ``libra eval``: by the teacher's weights, not its
path), so a long teacher run survives crashes; the selection itself is cheap and redone each time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from libra.data.bench import load_bench
from libra.data.jsonl import DataError, SkipCounter, write_json, write_jsonl
from libra.eval.generations import GenerationStore, run_generation
from libra.eval.libra_bench import build_requests, check_template, score_records
from libra.eval.options import (
    add_engine_arguments,
    add_sampling_arguments,
    add_verdict_mode_argument,
    engine_from_args,
    prepare_sampling,
)
from libra.judge import DEFAULT_THRESHOLD, POINTWISE_KINDS, kind_of_template, template_fields
from libra.judge.verdicts import TRAINING_STRICT
from libra.models.checks import check_model_dir, weights_fingerprint
from libra.report.tables import print_results_table
from libra.rollout.types import Engine, SamplingParams


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rejection-sample", help="teacher judgments that agree with the labels -> SFT rows",
                       description="Sample --n judgments per labelled judging row from a teacher (--model) and keep "
                                   "those whose verdict matches the label (paper section 4.2).")
    add_engine_arguments(p)
    add_sampling_arguments(p, n=8, temperature=0.6, max_tokens=16384)
    p.add_argument("--bench", required=True, help="labelled judging rows (e.g. from `libra data v2v`)")
    p.add_argument("--template", default="pointwise", help="judge prompt: built-in name or template file")
    p.add_argument("--verdict", choices=POINTWISE_KINDS, default=None, help="default: the template's own kind")
    p.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD)
    add_verdict_mode_argument(p, default=_mode(TRAINING_STRICT))
    p.add_argument("--keep", type=int, default=1, help="at most this many agreeing judgments per row (default 1)")
    p.add_argument("--keep-truncated", action="store_true",
                   help="also keep judgments cut off by --max-tokens (by default they are dropped)")
    p.add_argument("--out", required=True, type=Path, help="SFT rows (.jsonl); stats and generations go beside it")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _mode(strict: bool) -> str:
    return "strict" if strict else "lenient"


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


def rejection_sample(rows: Sequence[dict], *, out: str | Path, sampling: SamplingParams, model: str,
                     engine: Engine | None = None, engine_factory: Callable[[], Engine] | None = None,
                     template: str = "pointwise", fingerprint: str | None = None, verdict: str | None = None,
                     threshold: int = DEFAULT_THRESHOLD, keep: int = 1, keep_truncated: bool = False,
                     strict: bool = TRAINING_STRICT, chunk: int = 64, progress: bool = True) -> tuple[list[dict], dict]:
    """SFT rows from the teacher judgments of ``rows`` that agree with their labels, and the acceptance
    statistics; writes ``out`` (.jsonl), ``<stem>.stats.json`` and ``<stem>.generations.jsonl`` (resumable).
    Verdicts are read as the RL rewards read them (``strict``, default ``TRAINING_STRICT``): a judgment whose
    only verdict sits inside its thinking would earn no reward, so it is no target either.

    The teacher is ``engine`` (not closed) or one ``engine_factory`` starts when a judgment is missing;
    ``fingerprint`` keys the reuse of judgments (default: the content hash of ``model``'s weights)."""
    out = Path(out)
    fields = check_template(template, rows)
    kind = verdict or kind_of_template(template)
    requests = build_requests(rows, template, fields)
    stem = out.with_suffix("")
    fingerprint = fingerprint or weights_fingerprint(model)
    gen = run_generation(requests, sampling, GenerationStore(f"{stem}.generations.jsonl"), template=template,
                         model_id=fingerprint, engine=engine, engine_factory=engine_factory, chunk=chunk,
                         progress=progress)
    per_row = score_records(rows, gen.records, kind, threshold, strict=strict)
    prompts = [r.prompt[0]["content"] for r in requests]
    sft_rows, stats = select(list(rows), per_row, gen.records, prompts, keep, not keep_truncated)
    write_jsonl(out, sft_rows)
    stats = {**stats, "generated_now": gen.generated, "reused": gen.reused}
    write_json(f"{stem}.stats.json", {"teacher": model, "teacher_fingerprint": fingerprint, "template": template,
                                      "verdict_mode": _mode(strict), "sampling": sampling.to_dict(), **stats})
    return sft_rows, stats


def run(args: argparse.Namespace) -> int:
    try:
        template_fields(args.template)  # unknown or malformed: before anything is loaded
    except ValueError as err:
        print(f"error: --template: {err}", file=sys.stderr)
        return 2
    check_model_dir(args.model)
    rows = load_bench(args.bench, skip_bad=SkipCounter() if args.skip_bad else None)[:args.limit]
    if not rows:
        raise DataError(args.bench, None, None, "no labelled rows")
    try:
        fields = check_template(args.template, rows)
    except ValueError as err:
        print(f"error: --template: {err}", file=sys.stderr)
        return 2
    params = prepare_sampling(args, build_requests(rows, args.template, fields), args.bench)
    try:
        _, stats = rejection_sample(rows, out=args.out, sampling=params, model=args.model,
                                    engine_factory=lambda: engine_from_args(args), template=args.template,
                                    verdict=args.verdict, threshold=args.threshold, keep=args.keep,
                                    keep_truncated=args.keep_truncated, strict=args.verdict_mode == "strict",
                                    chunk=args.chunk, progress=not args.no_progress)
    except KeyboardInterrupt:
        return 130
    print_results_table("Rejection sampling", ["", "value"], [[k, v if isinstance(v, int) else f"{v:.3f}"]
                                                               for k, v in stats.items()])
    print(f"SFT rows: {args.out}")
    return 0
