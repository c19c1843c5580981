"""Progress that reads in a log: a tqdm bar on a terminal, whole timed lines elsewhere (no carriage returns, at
most one line per ``LINE_INTERVAL_S`` however fast the loop), and library bars off when not on a terminal."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tqdm.auto import tqdm

from libra.progress import LINE_INTERVAL_S, LineProgress, on_terminal, progress_bar, quiet_library_bars
from libra.train.dist import World
from libra.train.logger import RunLogger

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_VARIABLES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


class Stream(io.StringIO):
    """A stream that says whether it is a terminal."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(stream: Stream) -> list[str]:
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    return text.splitlines()


def test_terminal_gets_tqdm_and_a_log_gets_lines():
    assert on_terminal(Stream(tty=True)) and not on_terminal(Stream(tty=False))
    bar = progress_bar(total=3, file=Stream(tty=True))
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    assert isinstance(progress_bar(total=3, file=Stream(tty=False), clock=Clock()), LineProgress)


@pytest.mark.parametrize("tty", [True, False])
def test_disabled_shows_nothing_either_way(tty):
    """``progress=False``: tqdm's disabled bar, which takes the same calls and writes nothing."""
    stream = Stream(tty)
    bar = progress_bar(range(3), total=3, desc="quiet", disable=True, file=stream)
    assert isinstance(bar, tqdm) and bar.disable
    assert list(bar) == [0, 1, 2]
    bar.set_postfix(loss=1.0)
    bar.update()
    bar.close()
    assert stream.getvalue() == ""


def test_default_stream_is_stderr_at_call_time(monkeypatch):
    """Looked up when the bar is made, not at import: callers (and pytest) swap ``sys.stderr``."""
    stream = Stream(tty=False)
    monkeypatch.setattr(sys, "stderr", stream)
    progress_bar(total=2, desc="late", clock=Clock()).close()
    assert _lines(stream)[0].startswith("late:")


def test_start_line_then_one_line_per_interval_then_end_line():
    assert LINE_INTERVAL_S == 10
    clock, stream = Clock(), Stream(tty=False)
    bar = progress_bar(total=840, desc="score", unit="row", file=stream, clock=clock)
    assert _lines(stream) == ["score:   0% 0/840 [00:00<?, ?row/s]"]
    for _ in range(840):  # 840 steps of 1/8 s: 105 s, so ten timed lines, not one per step
        clock.now += 0.125
        bar.update()
    lines = _lines(stream)
    assert len(lines) == 11 and lines[1].startswith("score:  10% 80/840 [00:10<01:35,  8.00row/s")
    bar.close()
    bar.close()  # a second close writes nothing
    lines = _lines(stream)
    assert len(lines) == 12 and lines[-1].startswith("score: 100% 840/840 [01:45<00:00")


def test_no_line_before_the_interval_has_passed():
    clock, stream = Clock(), Stream(tty=False)
    bar = progress_bar(total=10, file=stream, clock=clock)
    clock.now += LINE_INTERVAL_S - 0.01
    bar.update(5)
    assert len(_lines(stream)) == 1
    clock.now += 0.01
    bar.update()
    assert len(_lines(stream)) == 2 and "6/10" in _lines(stream)[-1]


def test_end_line_not_repeated_when_the_last_timed_line_showed_the_end():
    clock, stream = Clock(), Stream(tty=False)
    bar = progress_bar(total=2, file=stream, clock=clock)
    clock.now += LINE_INTERVAL_S
    bar.update(2)
    bar.close()
    assert [line.split(" [")[0] for line in _lines(stream)] == ["  0% 0/2", "100% 2/2"]


def test_postfix_in_the_next_line_formatted_as_tqdm_does():
    clock, stream = Clock(), Stream(tty=False)
    bar = progress_bar(total=4, initial=1, desc="grpo", unit="step", file=stream, clock=clock)
    bar.set_postfix({"loss": "0.5"}, refresh=False, reward=0.123456, lr=3e-4)
    assert len(_lines(stream)) == 1  # stats alone write nothing: only the clock does
    clock.now += LINE_INTERVAL_S
    bar.update(2)
    assert bar.n == 3 and "3/4" in _lines(stream)[-1]  # the run logger steps the bar by ``step - bar.n``
    assert _lines(stream)[-1].endswith(", loss=0.5, lr=0.0003, reward=0.123]")


def test_iteration_yields_every_item_and_ends_with_the_end_line():
    clock, stream = Clock(), Stream(tty=False)
    seen = []
    for item in progress_bar(["a", "b", "c"], desc="verify", file=stream, clock=clock):
        seen.append(item)
        clock.now += 1
    assert seen == ["a", "b", "c"]
    lines = _lines(stream)
    assert lines[0].startswith("verify:   0% 0/3") and lines[-1].startswith("verify: 100% 3/3 [00:03<00:00")
    assert len(lines) == 2


def test_iteration_of_an_unsized_iterable_with_a_total():
    clock, stream = Clock(), Stream(tty=False)
    assert list(progress_bar(iter(range(4)), total=4, file=stream, clock=clock)) == [0, 1, 2, 3]
    assert _lines(stream)[-1].startswith("100% 4/4")


def test_a_loop_left_early_still_ends_its_line():
    clock, stream = Clock(), Stream(tty=False)
    with pytest.raises(RuntimeError):
        for item in progress_bar(range(10), desc="teacher", file=stream, clock=clock):
            if item == 3:
                raise RuntimeError("stop")
    assert _lines(stream)[-1].startswith("teacher:  30% 3/10")


@pytest.fixture
def clean_environment(monkeypatch):
    for name in LIBRARY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_environment")
def test_library_bars_off_in_a_log_only(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Stream(tty=True))
    quiet_library_bars()
    assert not any(name in os.environ for name in LIBRARY_VARIABLES)
    monkeypatch.setattr(sys, "stderr", Stream(tty=False))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # the user's choice wins
    quiet_library_bars()
    assert [os.environ[name] for name in LIBRARY_VARIABLES] == ["0", "1", "1"]


def test_the_command_quiets_library_bars_before_importing_them():
    """The variables are read when the libraries are imported: importing ``libra.cli`` must not import them,
    and transformers imported after ``quiet_library_bars`` draws no "Loading weights" bar."""
    code = ("import sys, libra.cli, libra.progress\n"
            "print(sorted(m for m in ('huggingface_hub', 'transformers', 'datasets', 'vllm') if m in sys.modules))\n"
            "libra.progress.quiet_library_bars()\n"
            "from transformers.utils import logging\n"
            "print(logging.is_progress_bar_enabled())\n")
    env = {k: v for k, v in os.environ.items() if k not in LIBRARY_VARIABLES} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "False"]


def test_training_progress_in_a_log(tmp_path, capsys):
    """The run logger's bar off a terminal (pytest's captured stderr): whole lines with the step stats."""
    logger = RunLogger(tmp_path, World(0, 1, 0, torch.device("cpu")), total_steps=3, tensorboard=False, desc="sft")
    for step in (1, 2, 3):
        logger.log(step, {"loss": 1 / step, "lr": 1e-3, "grad_norm": 2.0})
    logger.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("sft:   0% 0/3") and lines[-1].startswith("sft: 100% 3/3")
    assert lines[-1].endswith("loss=0.3333, lr=0.001]")  # the stats that the bar shows, not every metric
