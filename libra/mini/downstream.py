"""The paper's section 6 in miniature: does a better judge train a better policy on unlabelled data?

    a weak reasoning policy samples solutions to problems no stage has seen (no gold answer read)
      -> each judge labels every solution with its own prompt (greedy)
      -> ``libra.data.pairs.build_pairs``: per problem, one solution judged correct with one judged wrong,
         as many pairs as the smaller count
      -> DPO from the same policy on each judge's pairs (beta 0.01, the paper's, plus the chosen responses'
         NLL: ``MiniConfig.dpo_nll``), and on gold-labelled pairs (the upper bound: a perfect judge)
      -> pass@1 of every resulting policy, and of the untrained one, on a second held-out problem set:
         ``policy_samples`` sampled solutions per problem, each checked with ``verify_answer``
    -> best-of-n without training: each judge labels the untrained policy's n test samples and picks one it
       judged correct (``best_of_n``), the other way a reward model is used, at inference time

All policies are sampled with the same seeds (common random numbers), so the paired bootstrap over
problems compares them on the same draws. Results go to ``downstream.json`` in the stage folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from libra.data.jsonl import write_json, write_jsonl
from libra.data.pairs import build_pairs, judged_rows
from libra.eval.metrics import paired_difference_ci
from libra.mini.runs import judge_bench, read_rows, reasoning_prompt, sft, template_of, train_in_process
from libra.rollout.types import SamplingParams

GOLD = "gold"
UNTRAINED = "untrained"
SOLUTION_TOKENS = 96  # a worked two-digit sum is ~40 tokens


def train_policy(cfg, model: Path, data: Path, out: Path) -> None:
    """The downstream policy: the untrained tiny model after ``policy_epochs`` of SFT on the solutions of
    an often-wrong source model (``policy.jsonl``: its slips included), so it reasons the domain's way and
    has room to improve (the paper starts from R1-distilled models at 55% / 39%). Imitating a solver of known
    skill fixes where it starts; stopping a clean SFT early made that start swing with the seed (77% / 19%)."""
    sft(model, data / "policy.jsonl", out, cfg.policy_epochs, 160, 5e-3)


def sample_solutions(engine, problems: list[dict], n: int, temperature: float, seed: int) -> list[dict]:
    """``n`` sampled solutions per problem as judging rows; ``label`` is the gold check,
    kept for scoring the judges and for the gold upper bound, never shown to a judge."""
    from libra.verify import verify_many

    params = SamplingParams(n=n, temperature=temperature, max_tokens=SOLUTION_TOKENS, seed=seed)
    gens = engine.generate([[{"role": "user", "content": reasoning_prompt(p["question"])}] for p in problems], params)
    rows = [{"id": f"{p['id']}#{k}", "problem_id": p["id"], "question": p["question"], "response": s.text,
             "answer": p["answer"], "subset": "policy", "source_model": "policy"}
            for p, g in zip(problems, gens) for k, s in enumerate(g.samples)]
    labels = verify_many([(r["response"], r["answer"]) for r in rows], progress=False)
    return [{**r, "label": bool(ok)} for r, ok in zip(rows, labels)]


def pass_at_1(rows: list[dict]) -> dict[str, float]:
    """Per problem, the share of its samples that are correct (the unbiased pass@1 estimate)."""
    by_problem: dict[str, list[bool]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r["label"])
    return {pid: float(np.mean(v)) for pid, v in sorted(by_problem.items())}


def pass_at_1_on_test(cfg, policies: dict[str, Path], data: Path, folder: Path, engines
                   ) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Each policy's pass@1 per problem on the downstream test set, all sampled with the same seeds
    (common random numbers); the solutions go to ``folder/pass1/<name>.jsonl``. Returns the test problems too."""
    test = read_rows(data / "downstream-test.jsonl")
    scores = {}
    for name, path in policies.items():
        rows = sample_solutions(engines.use(path), test, cfg.policy_samples, cfg.policy_temperature, cfg.seed + 1)
        write_jsonl(folder / "pass1" / f"{name}.jsonl", rows)
        scores[name] = pass_at_1(rows)
    return test, scores


def best_of_n(samples: list[dict], predictions: Path) -> dict[str, float]:
    """Per problem, the expected correctness of the sample a judge picks from its n: one drawn uniformly
    from those it judged correct, or from all n when it judged none correct (an invalid verdict counts as
    not correct). The expectation over that draw is computed exactly (the mean label of the candidates),
    so the score has no tie-breaking noise; a judge that says "correct" to everything scores the policy's
    own pass@1, a perfect one the share of problems with any right sample."""
    judged = {p["id"]: bool(p["pred"]) for p in read_rows(predictions) if p["valid"]}
    by_problem: dict[str, list[dict]] = {}
    for r in samples:
        by_problem.setdefault(r["problem_id"], []).append(r)
    scores = {}
    for pid, rows in sorted(by_problem.items()):
        picked = [r for r in rows if judged.get(r["id"], False)] or rows
        scores[pid] = float(np.mean([r["label"] for r in picked]))
    return scores


def _pairs_for(name: str, solutions: list[dict], samples: Path, predictions: Path | None, folder: Path
               ) -> tuple[Path, int]:
    """The judge's DPO pairs (gold: pairs from the labels), with the prompt the policy was trained on;
    the file written and how many pairs it holds."""
    judged = ([{"question": r["question"], "response": r["response"], "judged_correct": r["label"]}
               for r in solutions] if predictions is None else judged_rows(samples, predictions))
    pairs = [{**p, "prompt": reasoning_prompt(p["prompt"])} for p in build_pairs(judged)]
    path = folder / "pairs" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, pairs)
    return path, len(pairs)


def _dpo(cfg, policy: Path, pairs: Path, count: int, out: Path) -> Path:
    batch = min(16, count)  # a judge that finds few pairs still trains, on smaller batches
    from libra.train.dpo import DPOConfig

    base = DPOConfig()
    train_in_process("dpo", replace(
        base, model=replace(base.model, path=str(policy)),
        data=replace(base.data, train=str(pairs), epochs=cfg.dpo_epochs, max_seq_len=256), beta=0.01,
        nll_coef=cfg.dpo_nll, optim=replace(base.optim, lr=cfg.dpo_lr, min_lr=cfg.dpo_lr / 10),
        run=replace(base.run, global_batch_size=batch, micro_batch_size=batch, seed=cfg.seed, out=str(out),
                    tensorboard=False)))
    return out / "final"


def _gold_predictions(rows: list[dict], folder: Path) -> Path:
    """The gold labels written as a judge's predictions (the perfect judge of best-of-n)."""
    path = folder / "predictions.jsonl"
    write_jsonl(path, [{"id": r["id"], "valid": True, "pred": r["label"], "label": r["label"]} for r in rows])
    return path


def downstream(cfg, judges: dict[str, Path], policy: Path, data: Path, folder: Path, engines) -> None:
    """Sample, label with every judge, DPO per judge, pass@1 per policy; ``downstream.json``."""
    samples = folder / "samples.jsonl"
    solutions = sample_solutions(engines.use(policy), read_rows(data / "downstream-dpo.jsonl"), cfg.policy_samples,
                                 cfg.policy_temperature, cfg.seed)
    write_jsonl(samples, solutions)
    labelled: dict[str, dict] = {}
    pair_files: dict[str, Path] = {}
    for name, path in judges.items():
        out = folder / "judges" / name
        metrics = judge_bench(engines.use(path), path, samples, template_of(name), cfg.max_judgment_tokens, out)
        pair_files[name], count = _pairs_for(name, solutions, samples, out / "predictions.jsonl", folder)
        labelled[name] = {"accuracy_on_policy_samples": metrics["accuracy"], "invalid_rate": metrics["invalid_rate"],
                          "pairs": count}
    pair_files[GOLD], count = _pairs_for(GOLD, solutions, samples, None, folder)
    labelled[GOLD] = {"accuracy_on_policy_samples": 1.0, "invalid_rate": 0.0, "pairs": count}
    policies = {UNTRAINED: policy}
    for name, info in labelled.items():
        if info["pairs"]:
            policies[name] = _dpo(cfg, policy, pair_files[name], info["pairs"], folder / "dpo" / name)
    test, scores = pass_at_1_on_test(cfg, policies, data, folder, engines)
    test_samples = folder / "pass1" / f"{UNTRAINED}.jsonl"
    untrained_rows = read_rows(test_samples)
    picks = {}
    for name, path in judges.items():
        out = folder / "best_of_n" / name
        judge_bench(engines.use(path), path, test_samples, template_of(name), cfg.max_judgment_tokens, out)
        picks[name] = best_of_n(untrained_rows, out / "predictions.jsonl")
    picks[GOLD] = best_of_n(untrained_rows, _gold_predictions(untrained_rows, folder / "best_of_n" / GOLD))
    results = {"policy_samples": cfg.policy_samples, "labelled_solutions": len(solutions),
               "labelled_accuracy_of_policy": float(np.mean([r["label"] for r in solutions])),
               "test_problems": len(test), "judges": {}}
    for name, info in labelled.items():
        entry = dict(info)
        if name in scores:
            low, high = paired_difference_ci(scores[name], scores[UNTRAINED])
            entry.update(pass_at_1=float(np.mean(list(scores[name].values()))), vs_untrained_ci95=[low, high])
        low, high = paired_difference_ci(picks[name], scores[UNTRAINED])
        entry.update(best_of_n=float(np.mean(list(picks[name].values()))), best_of_n_vs_untrained_ci95=[low, high])
        results["judges"][name] = entry
    results["untrained_pass_at_1"] = float(np.mean(list(scores[UNTRAINED].values())))
    # Per-problem scores, so that runs with other seeds can be pooled (``libra reproduce``).
    results["per_problem"] = {"pass_at_1": scores, "best_of_n": picks}
    write_json(folder / "downstream.json", results)
