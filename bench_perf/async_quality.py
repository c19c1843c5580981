"""Does asynchronous GRPO learn what the synchronous loop learns? One finished GRPO run with held-out
evaluations (e.g. Libra-Mini's sft-rl judge) is rerun from its own config with ``rollout.max_staleness=K``,
and the held-out accuracy of both is compared at every evaluated step, paired over the bench rows.

    python -m bench_perf.async_quality --run runs/quickstart/sft-rl/run [--staleness 2] [--out PATH]

The rerun changes nothing else (same seed, data, engine, steps); ``--cpu-split`` also places engine and
trainer on their own cores. Per evaluated step: both accuracies (a row's share of right judgments, an
invalid verdict wrong), the difference async - sync with its paired bootstrap 95% interval over rows, and
whether async is within it ("reached": the interval's upper end >= 0, i.e. not shown worse); then each
run's wall time (sum of ``time_step``) and mean staleness. JSON in ``bench_perf/results/``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from bench_perf.common import RESULTS_DIR, git_commit, print_table, write_json


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def rerun(run: Path, out: Path, staleness: int, cpu_split: bool) -> None:
    """``run``'s own config.yaml with the staleness (and core placement) changed and ``out`` as its folder."""
    from libra.config import load_config
    from libra.train.grpo import GRPOConfig, train_grpo

    cfg = load_config(GRPOConfig, run / "config.yaml", [f"rollout.max_staleness={staleness}",
                                                        f"rollout.cpu_split={str(cpu_split).lower()}",
                                                        f"run.out={out}"])
    train_grpo(cfg)


def compare(sync: Path, other: Path) -> list[dict]:
    """Per step evaluated in both runs: accuracies and the paired difference with its interval."""
    from libra.eval.libra_bench import right_per_row
    from libra.eval.metrics import paired_difference_ci

    rows = []
    def evaluated(run: Path) -> set[str]:
        return {p.name for p in (run / "evals").glob("step_*")}

    steps = sorted(evaluated(sync) & evaluated(other))
    for name in steps:
        a = right_per_row(other / "evals" / name / "predictions.jsonl")
        b = right_per_row(sync / "evals" / name / "predictions.jsonl")
        low, high = paired_difference_ci(a, b)
        acc_a, acc_b = sum(a.values()) / len(a), sum(b.values()) / len(b)
        rows.append({"step": int(name.split("_")[1]), "rows": len(a), "sync_accuracy": acc_b, "async_accuracy": acc_a,
                     "difference": acc_a - acc_b, "difference_ci95": [low, high], "reached": high >= 0})
    return rows


def _run_summary(run: Path) -> dict:
    steps = [m for m in _metrics(run) if "reward" in m]
    return {"steps": len(steps), "wall_s": sum(m["time_step"] for m in steps if "time_step" in m),
            "mean_staleness": sum(m.get("staleness", 0) for m in steps) / max(len(steps), 1),
            "trainer_idle_s": sum(m.get("trainer_idle", 0.0) for m in steps),
            "engine_idle_s": sum(m.get("engine_idle", 0.0) for m in steps)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished GRPO run folder with evals/")
    parser.add_argument("--staleness", type=int, default=2)
    parser.add_argument("--cpu-split", action="store_true", help="rollout.cpu_split=true in the rerun")
    parser.add_argument("--rerun-out", type=Path, help="where the rerun goes (default: RUN/../async-K)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "async-quality-cpu.json")
    args = parser.parse_args(argv)
    if not (args.run / "evals").is_dir():
        parser.error(f"{args.run} has no evals/: the comparison needs a run with held-out evaluations")
    other = args.rerun_out or args.run.parent / f"async-{args.staleness}"
    rerun(args.run, other, args.staleness, args.cpu_split)
    rows = compare(args.run, other)
    runs = {"sync": _run_summary(args.run), f"async-{args.staleness}": _run_summary(other)}
    print_table(f"held-out accuracy, sync vs rollout.max_staleness={args.staleness} ({args.run})",
                ["step", "rows", "sync", "async", "async - sync", "95% CI", "reached"],
                [[r["step"], r["rows"], r["sync_accuracy"], r["async_accuracy"], r["difference"],
                  "{:+.3f}..{:+.3f}".format(*r["difference_ci95"]), r["reached"]] for r in rows])
    print_table("runs", ["run", "steps", "wall s", "mean staleness", "trainer idle s", "engine idle s"],
                [[k, v["steps"], v["wall_s"], v["mean_staleness"], v["trainer_idle_s"], v["engine_idle_s"]]
                 for k, v in runs.items()])
    write_json(args.out, {"suite": "async_quality", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                          "git_commit": git_commit(), "run": str(args.run), "staleness": args.staleness,
                          "cpu_split": args.cpu_split, "steps": rows, "runs": runs})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
