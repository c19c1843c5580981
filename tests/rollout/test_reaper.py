"""Engine processes die with their owner: kill -9 the owner, and nothing it started is left running."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from libra.rollout.reaper import _stat

DRIVER = """
import os, subprocess, sys, time
sys.path.insert(0, {root!r})
from libra.rollout.reaper import Reaper
reaper = Reaper()
if {fork}:  # vLLM's default on a GPU where CUDA is not yet initialised: the child holds the owner's pipe
    child = os.fork()
    if child == 0:
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])
        time.sleep(300)
        os._exit(0)
else:
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
                              "time.sleep(300)"]).pid
time.sleep(1.5)  # the watchdog has noted both
print(child, flush=True)
sys.stdin.readline()  # the test has seen the processes
if {finish!r}:
    getattr(reaper, {finish!r})()
    print("finished", flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    st = _stat(pid)
    if st is None:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead


def _tree(pid: int) -> set[int]:
    from libra.rollout.reaper import _table, descendants

    return {pid} | descendants({pid}, _table())


def _wait_dead(pids, seconds=10.0) -> set[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return {p for p in pids if _alive(p)}


def _start_owner(fork: bool, finish: str) -> tuple[subprocess.Popen, set[int]]:
    """An owner process that started a child and a grandchild under a Reaper, then called ``finish`` on it
    ("release", "kill", or "" for nothing); returns the owner and the pids it started."""
    root = str(Path(__file__).resolve().parents[2])
    owner = subprocess.Popen([sys.executable, "-c", DRIVER.format(root=root, fork=fork, finish=finish)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = int(owner.stdout.readline())
    time.sleep(0.5)
    started = _tree(child)
    assert len(started) == 2  # the child and its own child
    owner.stdin.write("go\n")
    owner.stdin.flush()
    if finish:
        assert owner.stdout.readline().strip() == "finished"
    return owner, started


def _kill_left(left: set[int]) -> None:
    for pid in left:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux /proc")
@pytest.mark.parametrize("fork", [False, True], ids=["spawned", "forked"])
@pytest.mark.parametrize("release", [False, True])
def test_processes_started_by_a_killed_owner_are_killed(release, fork):
    """Forked children inherit the pipe's write end, so its EOF never comes: the watchdog must notice the
    owner's death itself."""
    owner, started = _start_owner(fork, "release" if release else "")
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    left = _wait_dead(started, seconds=3.0 if release else 5.0)
    try:
        assert left == (started if release else set())  # released: the owner closed its engine; nothing killed
    finally:
        _kill_left(left)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux /proc")
@pytest.mark.parametrize("fork", [False, True], ids=["spawned", "forked"])
def test_kill_stops_the_engine_while_the_owner_lives(fork):
    """``Reaper.kill()`` after a failed engine start, with a forked child still holding the pipe open."""
    owner, started = _start_owner(fork, "kill")
    try:
        left = _wait_dead(started, seconds=5.0)
        assert not left
    finally:
        owner.kill()
        owner.wait()
        _kill_left(_wait_dead(started, seconds=0))


@pytest.mark.vllm
@pytest.mark.slow
def test_kill_9_of_a_vllm_evaluation_leaves_no_engine(tmp_path):
    """The user's case: `libra eval libra-bench --engine vllm` killed with -9 mid-generation; a few
    seconds later no process of its engine is left (before: VLLM::EngineCore lived on as an orphan)."""
    from libra.models.tiny import TinyConfig, save_tiny

    model = save_tiny(tmp_path / "judge", TinyConfig(max_position_embeddings=4096))
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": str(i), "question": f"{i}+{i}?", "response": str(2 * i),
                                         "label": True}) + "\n" for i in range(400)))
    template = tmp_path / "t.txt"
    template.write_text("Judge: {question} {response} [[score=N]]\n")
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    driver = subprocess.Popen([sys.executable, "-m", "libra", "eval", "libra-bench", "--model", str(model),
                               "--engine", "vllm", "--bench", str(bench), "--template", str(template),
                               "--max-tokens", "512", "--chunk", "8", "--temperature", "1", "--out", str(out),
                               "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    gens = out / "generations.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None and not (gens.exists() and gens.stat().st_size):
        time.sleep(0.2)
    assert driver.poll() is None, "the evaluation ended before it could be killed"
    engine = _tree(driver.pid) - {driver.pid}
    engine = {p for p in engine if b"reaper" not in Path(f"/proc/{p}/cmdline").read_bytes()}
    assert engine, "no engine process found under the driver"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    left = _wait_dead(engine, seconds=10.0)
    _kill_left(left)
    assert not left, f"engine processes outlived their owner: {sorted(left)}"
