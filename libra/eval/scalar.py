"""``libra eval scalar``: a discriminative (scalar) reward model on a Libra-Bench-style set.

Each (question, response) is scored once, as a user turn and an assistant turn of the model's chat
template (plain concatenation when it has none). Scores are cached in ``OUT/scores.jsonl``, so a rerun
scores only missing rows. A scalar RM gives no correct/incorrect verdict of its own; the paper (Table 2)
picks the threshold that maximises the average accuracy over subsets *on the benchmark itself*, an
upper bound on what the RM achieves with a threshold fixed in advance (``--threshold``).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Sequence

import numpy as np

from libra.data.bench import load_bench
from libra.data.jsonl import DataError, write_jsonl
from libra.eval.generations import KeyedStore
from libra.eval.metrics import best_threshold, subset_report
from libra.eval.options import add_output_arguments
from libra.eval.rundir import ResultsTable, content_key, publish, settings, usage_error
from libra.models.checks import check_model_dir, weights_fingerprint
from libra.progress import progress_bar
from libra.report.markdown import percent


class ScoreStore(KeyedStore):
    """``scores.jsonl``: ``{key, id, model, score}``, keyed by row id, row text, model and logit."""

    required = {"score": (int, float)}


class RewardScorer:
    """An ``AutoModelForSequenceClassification`` reward model: one float per (question, response).

    Batches are right-padded; transformers reads the logit at the last token that is not the pad id.
    A sequence whose own last token is the pad id would be read one token early, so such sequences are
    scored alone, unpadded, with the model's pad id hidden (the logit then comes from the last position).
    """

    def __init__(self, model: str, *, dtype: str = "float32", logit_index: int = 0, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, use_safetensors=True,
        ).to(self.device).eval()
        self.logit_index = logit_index
        config = self.model.config.get_text_config()
        if config.pad_token_id is None:  # batching needs one; transformers refuses batches without it
            config.pad_token_id = next(t for t in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0)
                                       if t is not None)
        self.pad_id = config.pad_token_id

    def encode(self, question: str, response: str) -> list[int]:
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": question}, {"role": "assistant", "content": response}], tokenize=False)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(f"{question}\n\n{response}")["input_ids"])

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        ids = [self.encode(q, r) for q, r in pairs]
        scores: list[float | None] = [None] * len(ids)
        padded = [i for i, seq in enumerate(ids) if seq[-1] != self.pad_id]
        with torch.inference_mode():
            if padded:
                width = max(len(ids[i]) for i in padded)
                input_ids = torch.full((len(padded), width), self.pad_id, dtype=torch.long)
                attention = torch.zeros_like(input_ids)
                for row, i in enumerate(padded):
                    input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
                    attention[row, :len(ids[i])] = 1
                logits = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=attention.to(self.device)).logits
                for row, i in enumerate(padded):
                    scores[i] = float(logits[row, self.logit_index])
            for i in sorted(set(range(len(ids))) - set(padded)):
                with self._pad_id_hidden():
                    logits = self.model(input_ids=torch.tensor([ids[i]], device=self.device)).logits
                scores[i] = float(logits[0, self.logit_index])
        return scores

    @contextlib.contextmanager
    def _pad_id_hidden(self):
        config = self.model.config.get_text_config()
        config.pad_token_id = None
        try:
            yield
        finally:
            config.pad_token_id = self.pad_id


def score_key(row: dict, model: str, logit_index: int) -> str:
    return content_key(row["id"], model, logit_index, row["question"], row["response"])


def score_rows(rows: Sequence[dict], scorer_factory, store: ScoreStore, *, model: str, logit_index: int,
               batch_size: int, progress: bool) -> list[float]:
    """Scores of ``rows`` (in order): cached ones reused, the rest scored ``batch_size`` at a time (longest
    first, so batches pad little) and appended to ``store`` after each batch."""
    keys = [score_key(r, model, logit_index) for r in rows]
    todo = sorted((i for i, k in enumerate(keys) if k not in store),
                  key=lambda i: -len(rows[i]["question"]) - len(rows[i]["response"]))
    bar = progress_bar(total=len(rows), initial=len(rows) - len(todo), desc="score", unit="row", disable=not progress)
    scorer = scorer_factory() if todo else None
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        scores = scorer.score([(rows[i]["question"], rows[i]["response"]) for i in idx])
        store.append([{"key": keys[i], "id": rows[i]["id"], "model": model, "score": s} for i, s in zip(idx, scores)])
        bar.update(len(idx))
    bar.close()
    return [store.get(k)["score"] for k in keys]


def average_accuracy(scores: Sequence[float], labels: Sequence[bool], subsets: Sequence[str],
                     thresholds: Sequence[float]) -> np.ndarray:
    """Average-over-subsets accuracy of ``score >= t`` for every t in ``thresholds`` (for the curve)."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    names, group = np.unique(np.asarray(subsets, dtype=str), return_inverse=True)
    weight = 1.0 / (np.bincount(group)[group] * len(names))
    right = (s[None, :] >= np.asarray(thresholds, dtype=float)[:, None]) == y[None, :]
    return right.astype(float) @ weight


def head_size(model: str, trust_remote_code: bool) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code).num_labels


def register(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser("scalar", help="a scalar (discriminative) reward model on a Libra-Bench-style set",
                         description="Score every response, then find the threshold with the best average "
                                     "accuracy over subsets (the paper's protocol for scalar RMs).")
    p.add_argument("--model", required=True, help="AutoModelForSequenceClassification directory or hub id")
    p.add_argument("--bench", required=True,
                   help="judging rows (.jsonl/.json/.parquet) or a hub id (meituan/Libra-Bench)")
    p.add_argument("--threshold", type=float,
                   help="also report accuracy at this fixed threshold (score >= t is correct)")
    p.add_argument("--logit-index", type=int, help="which logit is the reward, for heads with several (default: "
                                                   "required unless the head has exactly one)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (off)")
    add_output_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, *, scorer=None) -> int:
    """``scorer``: a ready ``RewardScorer`` to use instead of loading ``--model`` (only loaded if rows are missing)."""
    import torch

    check_model_dir(args.model)
    logits = head_size(args.model, args.trust_remote_code)
    index = args.logit_index if args.logit_index is not None else 0
    if (args.logit_index is None and logits != 1) or not 0 <= index < logits:
        return usage_error("scalar", f"the model's head has {logits} logit(s); pass --logit-index 0..{logits - 1} "
                                     "to say which one is the reward")
    rows = load_bench(args.bench)[:args.limit]
    if not rows:
        raise DataError(args.bench, None, None, "no rows to score")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = args.dtype or ("bfloat16" if torch.cuda.is_available() else "float32")
    factory = (lambda: scorer) if scorer is not None else \
        (lambda: RewardScorer(args.model, dtype=dtype, logit_index=index, trust_remote_code=args.trust_remote_code))
    # keyed by the weights, not the path: a reward model retrained into the same folder is scored again
    scores = score_rows(rows, factory, ScoreStore(out / "scores.jsonl"), model=weights_fingerprint(args.model),
                        logit_index=index, batch_size=args.batch_size, progress=not args.no_progress)
    labels, subsets = [r["label"] for r in rows], [r["subset"] for r in rows]
    best, best_report = best_threshold(scores, labels, subsets, [r["source_model"] for r in rows])
    fixed = None if args.threshold is None else _report_at(rows, scores, args.threshold)
    files = {"scores": out / "scores.jsonl", "predictions": out / "predictions.jsonl",
             "histogram": out / "scores.png", "threshold_curve": out / "threshold.png"}
    write_jsonl(files["predictions"], [
        {"id": r["id"], "subset": r["subset"], "source_model": r["source_model"], "label": r["label"], "score": s,
         "pred_best": s >= best, **({} if fixed is None else {"pred_fixed": s >= args.threshold})}
        for r, s in zip(rows, scores)])
    grid = np.unique(np.concatenate([np.quantile(scores, np.linspace(0, 1, 201)), [best]]))
    curve = average_accuracy(scores, labels, subsets, grid)
    from libra.report.curves import score_histogram, threshold_curve

    marks = {"best threshold": best, **({} if fixed is None else {"--threshold": args.threshold})}
    name = Path(args.model).name
    score_histogram(scores, labels, marks, files["histogram"], f"{name}: scores by label")
    threshold_curve(grid, curve, best, files["threshold_curve"], f"{name}: average accuracy vs threshold")
    results = {"benchmark": "scalar", "settings": settings(args), "rows": len(rows), "logit_index": index,
               "head_logits": logits, "best_threshold": {"threshold": best, **best_report},
               "fixed_threshold": None if fixed is None else {"threshold": args.threshold, **fixed},
               "scores": {"mean": float(np.mean(scores)), "std": float(np.std(scores)),
                          "min": float(np.min(scores)), "max": float(np.max(scores))}}
    reports = {f"best ({best:.4g})": best_report}
    if fixed is not None:
        reports[f"--threshold {args.threshold:g}"] = fixed
    table = ResultsTable(f"Scalar RM {name} on {len(rows)} rows", ["threshold", *best_report["subsets"], "Average",
                                                                   "accuracy", "macro-F1"],
                         [[k, *[percent(v["accuracy"]) for v in rep["subsets"].values()], percent(rep["average"]),
                           percent(rep["accuracy"]), percent(rep["macro_f1"])] for k, rep in reports.items()])
    c = best_report["confusion"]
    notes = ["**The best threshold is chosen on this same data** (the paper's protocol for scalar reward models, "
             "Table 2): it maximises the average of the per-subset accuracies, so it is an optimistic estimate; "
             "a threshold fixed in advance (`--threshold`) gives an honest one.",
             f"Reward: logit {index} of a {logits}-logit head. Prediction: correct when score >= threshold.",
             f"Confusion at the best threshold (positive = correct): TP {c['tp']}, FN {c['fn']}, FP {c['fp']}, "
             f"TN {c['tn']}.",
             "![scores by label](scores.png)", "![average accuracy vs threshold](threshold.png)"]
    publish(out, results, table, notes, files)
    return 0


def _report_at(rows: Sequence[dict], scores: Sequence[float], threshold: float) -> dict:
    return subset_report([{"subset": r["subset"], "source_model": r["source_model"], "label": r["label"],
                           "pred": s >= threshold} for r, s in zip(rows, scores)])
