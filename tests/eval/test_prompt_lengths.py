"""Prompts that cannot fit the judge's context are refused before any engine starts, with a clear error."""
import json

from libra.cli import main
from libra.models.tiny import TinyConfig, save_tiny


def test_too_long_prompts_are_a_clear_error(tmp_path, capsys):
    model = save_tiny(tmp_path / "short", TinyConfig(max_position_embeddings=2048))
    bench = tmp_path / "bench.jsonl"
    rows = [{"id": "short", "question": "1+1?", "response": "2", "label": True},
            {"id": "long", "question": "What is " + "1+" * 1500 + "1?", "response": "1501", "label": True}]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval", "libra-bench", "--model", str(model), "--engine", "vllm", "--bench", str(bench),
            "--max-tokens", "16", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 of 2 prompts do not fit the context: 2048 tokens minus --max-tokens 16 leaves 2032" in err
    assert "(id long#" in err
    assert not (tmp_path / "out" / "generations.jsonl").exists()  # refused before generating anything
