"""Reuse keyed on content, not on a path: a resumed trainer refuses a changed config (or reports the
changes it may make, saying so loudly when they move the learning-rate schedule), and DPO's cached
reference log-probs are used only for the pairs and initial model they were computed for."""
import json
import random

import pytest
import yaml

from libra.cli import main
from libra.models.tiny import save_tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("reuse")
    model = save_tiny(root / "tiny")
    rng = random.Random(0)
    with open(root / "rows.jsonl", "w") as f, open(root / "pairs.jsonl", "w") as p, \
            open(root / "other-pairs.jsonl", "w") as q:
        for i in range(16):
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            f.write(json.dumps({"prompt": f"{a}+{b}?", "response": f"\\boxed{{{a + b}}}"}) + "\n")
            p.write(json.dumps({"prompt": f"{a}+{b}?", "chosen": f"{a + b}", "rejected": f"{a + b + 1}"}) + "\n")
            q.write(json.dumps({"prompt": f"{b}+{a}?", "chosen": f"{a + b}", "rejected": f"{a - b}"}) + "\n")
    return root, model


def _sft(root, model, out, *extra):
    return main(["train", "sft", f"model.path={model}", f"data.train={root / 'rows.jsonl'}", "data.max_seq_len=64",
                 "run.global_batch_size=8", "run.micro_batch_size=8", "run.save_every=1", "run.tensorboard=false",
                 "run.export=false", f"run.out={out}", *extra])


def test_resume_refuses_a_changed_config_and_reports_allowed_changes(setup, tmp_path, capsys):
    root, model = setup
    out = tmp_path / "run"
    assert _sft(root, model, out, "run.max_steps=1") == 0
    saved = (out / "config.yaml").read_text()
    assert _sft(root, model, out, "run.max_steps=2", "optim.lr=0.5") == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and "started with other settings" in err and "run.allow_config_change" in err
    assert (out / "config.yaml").read_text() == saved  # not overwritten
    assert _sft(root, model, out, "run.max_steps=2") == 0  # running longer is a resume, reported
    assert "from step_00000001 (config changed: run.max_steps 1 -> 2)" in capsys.readouterr().out
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["max_steps"] == 2
    assert (out / "config.before-step-00000001.yaml").read_text() == saved
    assert _sft(root, model, out, "run.max_steps=3", "optim.lr=0.5", "run.allow_config_change=true") == 0


def test_a_resume_that_changes_the_lr_schedule_says_so_and_records_it(setup, tmp_path, capsys):
    """16 rows, batch 8: two steps an epoch on the default cosine schedule. Resuming the finished run with
    data.epochs=2 stretches the schedule over 4 steps, so its remaining steps get other learning rates."""
    root, model = setup
    out = tmp_path / "run"
    assert _sft(root, model, out, "data.epochs=1") == 0
    capsys.readouterr()
    assert _sft(root, model, out, "data.epochs=2") == 0
    err = capsys.readouterr().err
    assert "learning-rate schedule was built for 2 optimizer steps and now spans 4 (data.epochs 1 -> 2)" in err
    trainer = out / "checkpoints" / "step_00000004" / "trainer.json"
    state = json.loads(trainer.read_text())
    assert state["total_steps"] == 4 and state["schedule_changes"] == [{"step": 2, "total_steps": [2, 4]}]
    assert _sft(root, model, out, "data.epochs=2") == 0  # the same schedule again: nothing to say
    assert "learning-rate schedule" not in capsys.readouterr().err
    trainer.write_text(json.dumps({k: v for k, v in state.items() if k != "total_steps"}))  # an older checkpoint
    assert _sft(root, model, out, "data.epochs=3") == 0
    assert "does not record the length of its learning-rate schedule" in capsys.readouterr().err


def _dpo(root, model, out, pairs="pairs.jsonl", *extra):
    return main(["train", "dpo", f"model.path={model}", f"data.train={root / pairs}", "data.max_seq_len=64",
                 "run.global_batch_size=8", "run.micro_batch_size=8", "run.tensorboard=false", "run.export=false",
                 "run.save_every=1", f"run.out={out}", *extra])


def test_dpo_reference_cache_is_keyed_on_pairs_and_model(setup, tmp_path, capsys):
    root, model = setup
    assert _dpo(root, model, tmp_path / "clean", "pairs.jsonl", "run.max_steps=1") == 0
    clean = json.loads((tmp_path / "clean" / "reference_logps.json").read_text())
    # A reference file of the right length but for other pairs (a reused run directory): recomputed.
    stale = tmp_path / "stale"
    assert _dpo(root, model, stale, "other-pairs.jsonl", "run.max_steps=1") == 0
    other = json.loads((stale / "reference_logps.json").read_text())
    assert len(other["logps"]) == len(clean["logps"]) and other["key"] != clean["key"]
    (stale / "checkpoints").rename(stale / "old-checkpoints")  # start the directory over, keeping the file
    (stale / "config.yaml").unlink()
    assert _dpo(root, model, stale, "pairs.jsonl", "run.max_steps=1") == 0
    assert "belongs to other pairs or another initial model; recomputing" in capsys.readouterr().out
    assert json.loads((stale / "reference_logps.json").read_text()) == clean
    # Resumed with the pairs it was computed for: reused, and said so.
    assert _dpo(root, model, tmp_path / "clean", "pairs.jsonl", "run.max_steps=2") == 0
    assert "reference log-probs: reused" in capsys.readouterr().out
    # Once trained, a reference for other pairs cannot be recomputed: a clear error, not a silent reuse.
    with pytest.raises(RuntimeError, match="computed for other pairs or another initial model"):
        _dpo(root, model, tmp_path / "clean", "other-pairs.jsonl", "run.max_steps=3", "run.allow_config_change=true")
