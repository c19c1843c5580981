"""A trained judge as the reward of policy RL on unlabelled problems, in miniature (``libra quickstart
--judge-rl``): the paper's promise of RL without gold answers, and what verl's generative reward model does.

    the downstream policy (policy-sft) and the problems the downstream DPO study labels (no stage trains on
    them), GRPO from the same policy with the same seeds, two rewards:
      gold   the rule reward: verify_answer against the gold answer (the upper bound)
      judge  ``reward.judge``: the Mini's RL judge (``JUDGE``) on its own engine, the Mini pointwise prompt
             (question and solution only; the gold answer is never read for the reward), greedy, strict
             verdicts; the rule check is still computed, for the log only (``accuracy``, ``judge_agreement``)
    -> pass@1 of both and of the untrained policy on the downstream test problems (``policy_samples`` per
       problem, the seeds of the DPO study's pass@1), paired bootstrap over problems

The judge is fixed in advance (the paper's recipe, SFT then RL), not picked by any accuracy. Results go to
``judge_rl.json`` in the stage folder, each run's per-step log (reward, true accuracy, judge agreement
with the rule, invalid verdicts) to ``<arm>/run/metrics.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from libra.data.jsonl import write_json
from libra.eval.metrics import paired_difference_ci
from libra.mini import MINI_TEMPLATE
from libra.mini.downstream import SOLUTION_TOKENS, UNTRAINED, pass_at_1_on_test
from libra.mini.runs import grpo, read_rows

JUDGE = "sft-rl"
ARMS = ("gold", "judge")
LOG_KEYS = ("reward", "accuracy", "judge_correct", "judge_agreement", "judge_invalid", "judge_too_long")


def _grpo(cfg, policy: Path, rows: Path, out: Path, engines, judge: Path | None) -> None:
    """GRPO of the policy on reasoning prompts (clip 0.2 / 0.28, k3 KL 1e-3, the Mini's sizes), rewarded by
    the rule or, with ``judge``, by that judge alone (``reward.judge_weight=1``)."""
    reward = {} if judge is None else dict(
        judge=str(judge), judge_engine=cfg.engine, judge_template=MINI_TEMPLATE,
        judge_max_tokens=cfg.max_judgment_tokens, judge_temperature=0.0, judge_weight=1.0)
    grpo(cfg, policy, rows, out, engines, task="reasoning", max_tokens=SOLUTION_TOKENS,
         l_exp=SOLUTION_TOKENS * 2 // 3, kl=1e-3, lr=cfg.judge_rl_lr, steps=cfg.judge_rl_steps, reward=reward)


def _log(run: Path) -> list[dict]:
    """The rollout steps of a GRPO run's metrics.jsonl, the keys of ``LOG_KEYS`` it has."""
    steps = [r for r in read_rows(run / "metrics.jsonl") if "reward" in r]
    return [{"step": r["step"], **{k: r[k] for k in LOG_KEYS if k in r}} for r in steps]


def judge_rl(cfg, policy: Path, judge: Path, data: Path, folder: Path, engines) -> None:
    """Both GRPO runs, then pass@1 of every policy on the test problems; ``judge_rl.json``."""
    rows = data / "downstream-dpo.jsonl"
    finals = {UNTRAINED: policy}
    for arm in ARMS:
        run = folder / arm / "run"
        _grpo(cfg, policy, rows, run, engines, judge if arm == "judge" else None)
        finals[arm] = run / "final"
    test, scores = pass_at_1_on_test(cfg, finals, data, folder, engines)
    results = {"judge": JUDGE, "judge_model": str(judge), "train_problems": len(read_rows(rows)),
               "test_problems": len(test), "policy_samples": cfg.policy_samples, "steps": cfg.judge_rl_steps,
               "pass_at_1": {name: float(np.mean(list(s.values()))) for name, s in scores.items()},
               "vs_untrained_ci95": {arm: list(paired_difference_ci(scores[arm], scores[UNTRAINED])) for arm in ARMS},
               "judge_vs_gold_ci95": list(paired_difference_ci(scores["judge"], scores["gold"])),
               "logs": {arm: _log(folder / arm / "run") for arm in ARMS}}
    judged = results["logs"]["judge"]
    results["judge_reward"] = {k: float(np.mean([r[k] for r in judged])) for k in LOG_KEYS[2:] if judged and
                               all(k in r for r in judged)}
    write_json(folder / "judge_rl.json", results)
