"""What several GRPO tests build the same way: a tiny judging bench with its template, and a run killed
with SIGKILL once it has saved a given checkpoint."""
import json
import signal
import subprocess
import time
from pathlib import Path


def write_judging_bench(root: Path) -> None:
    """``root/bench.jsonl`` (4 pointwise rows, half labelled correct) and ``root/judge.txt`` (its template)."""
    with open(root / "bench.jsonl", "w") as f:
        for i in range(4):
            f.write(json.dumps({"id": f"b{i}", "subset": "s", "question": f"{i}+{i}?", "response": str(2 * i + i % 2),
                                "label": i % 2 == 0}) + "\n")
    (root / "judge.txt").write_text("Judge: {question}\n{response}\nAnswer [[score=N]].\n")


def kill_after_checkpoint(cmd: list[str], out: Path, step: int, env: dict[str, str], timeout_s: float = 300) -> None:
    """Start ``cmd`` (a training run writing to ``out``), SIGKILL it as soon as checkpoint ``step`` exists,
    and check it had not finished by then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        if (out / "checkpoints" / f"step_{step:08d}").exists():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists(), "the run finished before it could be killed"
