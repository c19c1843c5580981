"""The resumable generation store with a real (tiny) transformers engine: crash tolerance, keys, resume, seeds."""

import json

import pytest

from libra.data.jsonl import DataError
from libra.eval.generations import GenerationStore, Request, generate_resumable, generation_key
from libra.models.tiny import save_tiny
from libra.rollout import HFEngine, SamplingParams

PARAMS = SamplingParams(n=2, temperature=1.0, max_tokens=4, seed=11)


class RecordingEngine(HFEngine):
    """The real engine, noting each call's prompts and seed."""

    def __init__(self, model):
        super().__init__(str(model))
        self.calls = []

    def generate(self, prompts, params, **kwargs):
        self.calls.append(([p[0]["content"] for p in prompts], params.seed))
        return super().generate(prompts, params, **kwargs)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return RecordingEngine(save_tiny(tmp_path_factory.mktemp("tiny")))


def _requests(n):
    return [Request(f"q{i}", [{"role": "user", "content": f"What is {i} + {i}?"}]) for i in range(n)]


def _run(engine, store, requests, params=PARAMS, template="t", model="m", chunk=2):
    engine.calls.clear()
    return generate_resumable(engine, requests, params, store, template=template, model=model, chunk=chunk,
                              progress=False)


def test_records_have_samples_and_are_appended_per_chunk(engine, tmp_path):
    store = GenerationStore(tmp_path / "g.jsonl")
    records = _run(engine, store, _requests(5))
    assert [r["id"] for r in records] == [f"q{i}" for i in range(5)]
    assert all(len(r["samples"]) == 2 for r in records)
    sample = records[0]["samples"][0]
    assert set(sample) == {"text", "finish_reason", "num_tokens"} and 1 <= sample["num_tokens"] <= 4
    assert [len(prompts) for prompts, _ in engine.calls] == [2, 2, 1]
    lines = (tmp_path / "g.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"q{i}" for i in range(5)]
    assert GenerationStore(tmp_path / "g.jsonl").records == json.loads(json.dumps(store.records))


def test_resume_generates_only_missing_items_with_their_own_seeds(engine, tmp_path):
    requests = _requests(7)
    store = GenerationStore(tmp_path / "g.jsonl")
    _run(engine, store, [requests[i] for i in (0, 1, 4)])
    full = _run(engine, GenerationStore(tmp_path / "full.jsonl"), requests)  # chunks 0-1, 2-3, 4-5, 6

    resumed = _run(engine, GenerationStore(tmp_path / "g.jsonl"), requests)
    # 2, 3 | 5, 6: contiguous runs of the missing indices, each seeded with seed + its first index * n (n=2)
    assert engine.calls == [(["What is 2 + 2?", "What is 3 + 3?"], 15), (["What is 5 + 5?", "What is 6 + 6?"], 21)]
    assert [r["key"] for r in resumed] == [r["key"] for r in full]
    # a chunk identical to one of the uninterrupted run (same prompts, same seed) gets the same samples
    assert [resumed[i]["samples"] for i in (2, 3)] == [full[i]["samples"] for i in (2, 3)]
    assert _run(engine, GenerationStore(tmp_path / "g.jsonl"), requests) == json.loads(json.dumps(resumed))
    assert engine.calls == []


@pytest.mark.parametrize("change", [
    {"template": "other"}, {"model": "other"}, {"params": SamplingParams(n=2, temperature=1.0, max_tokens=5, seed=11)},
    {"params": SamplingParams(n=2, temperature=1.0, max_tokens=4, seed=12)},
])
def test_changing_template_params_or_model_regenerates(engine, tmp_path, change):
    store = GenerationStore(tmp_path / "g.jsonl")
    _run(engine, store, _requests(2))
    assert engine.calls
    _run(engine, store, _requests(2))
    assert engine.calls == []
    _run(engine, store, _requests(2), **change)
    assert sum(len(prompts) for prompts, _ in engine.calls) == 2
    assert len(store.records) == 4


def test_generation_key_depends_on_each_part():
    base = generation_key("q1", "t", PARAMS, "m")
    assert base == generation_key("q1", "t", PARAMS, "m")
    others = {generation_key("q2", "t", PARAMS, "m"), generation_key("q1", "u", PARAMS, "m"),
              generation_key("q1", "t", SamplingParams(n=1), "m"), generation_key("q1", "t", PARAMS, "n")}
    assert base not in others and len(others) == 4


def test_partial_last_line_is_cut_off_and_regenerated(engine, tmp_path):
    path = tmp_path / "g.jsonl"
    _run(engine, GenerationStore(path), _requests(3))
    whole = path.read_bytes()
    path.write_bytes(whole[:-25])  # a crash in the middle of the last record
    store = GenerationStore(path)
    assert len(store.records) == 2
    assert path.read_bytes() == whole[:whole.rstrip(b"\n").rfind(b"\n") + 1]
    _run(engine, store, _requests(3))
    assert [prompts for prompts, _ in engine.calls] == [["What is 2 + 2?"]]
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["q0", "q1", "q2"]


def test_corrupt_middle_line_is_a_located_error(engine, tmp_path):
    path = tmp_path / "g.jsonl"
    _run(engine, GenerationStore(path), _requests(3))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + lines[2])
    with pytest.raises(DataError, match=r"g\.jsonl:2: not JSON"):
        GenerationStore(path)
    path.write_text(lines[0] + '{"id": "x"}\n')
    with pytest.raises(DataError, match=r"g\.jsonl:2: key: not a record of this store"):
        GenerationStore(path)
