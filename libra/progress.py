"""Progress of long loops that reads well on a terminal and in a log.

On a terminal (stderr is a TTY) a loop gets a normal tqdm bar. Anywhere else (nohup, CI,
``make quickstart > log 2>&1``) a bar's carriage-return redraws pile up into megabytes of one line, of which
``tail`` shows half a bar. There a loop writes whole lines instead, as pip or Lightning do off a terminal: one
when it starts, at most one every ``LINE_INTERVAL_S`` seconds with what the bar would show (step/total,
elapsed<remaining, rate, the postfix stats such as loss or reward), and one at the end.
"""

from __future__ import annotations

import os
import sys
import time
from numbers import Number
from typing import Callable, Iterable, TextIO

from tqdm.auto import tqdm

LINE_INTERVAL_S = 10.0  # off a terminal, one loop writes at most one progress line per this many seconds


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where progress goes) is a terminal that can redraw a bar in place."""
    return (sys.stderr if stream is None else stream).isatty()


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, initial: float = 0, desc: str = "",
                 unit: str = "it", disable: bool = False, file: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
    """A tqdm bar on a terminal, a ``LineProgress`` elsewhere. ``disable=True`` (a caller's ``progress=False``)
    shows nothing either way: it returns tqdm's disabled bar, which accepts the same calls."""
    file = sys.stderr if file is None else file  # looked up now: pytest and callers swap sys.stderr
    if disable or on_terminal(file):
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, disable=disable, file=file,
                    dynamic_ncols=True)
    return LineProgress(iterable, total=total, initial=initial, desc=desc, unit=unit, file=file, clock=clock)


def quiet_library_bars() -> None:
    """Off a terminal, no bars from the libraries: they would be carriage-return redraws in the log. The Hugging
    Face variables cover huggingface_hub, transformers (loading weights, writing shards) and datasets; they are
    read when those are imported, which the ``libra`` command does only after this runs. ``TQDM_DISABLE`` is
    for the bars no setting reaches, such as vLLM's CUDA graph capture: tqdm reads it when first imported, so
    it acts in the fresh interpreters that inherit this environment (vLLM's engine, torchrun ranks), and it
    only changes tqdm's default, so ``progress_bar``, which passes ``disable``, is unaffected. A value the user
    set wins."""
    if not on_terminal():
        for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
            os.environ.setdefault(name, "1")


class LineProgress:
    """tqdm's statistics as whole lines, never a carriage return. Lines come by the clock, not by the step, so a
    log grows with wall time however fast the loop runs. It offers the part of tqdm the project's loops use:
    iteration, ``update``, ``set_postfix``, ``n`` and ``close``."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, initial: float = 0,
                 desc: str = "", unit: str = "it", file: TextIO, clock: Callable[[], float]):
        self.iterable, self.desc, self.unit, self.file, self.clock = iterable, desc, unit, file, clock
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.n = self.initial = initial
        self.postfix, self.closed = "", False
        self.start = clock()
        self._write_line(self.start)

    def __iter__(self):
        """Like tqdm: the items of ``iterable``, one step each, and the end line when they run out."""
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last_line >= LINE_INTERVAL_S:
            self._write_line(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        """tqdm's signature and formatting; the stats appear in the next line (``refresh`` is accepted and
        ignored: only the clock writes lines)."""
        stats = {**(ordered_dict or {}), **dict(sorted(kwargs.items()))}
        self.postfix = ", ".join(f"{key}={_stat(value)}" for key, value in stats.items())

    def close(self) -> None:
        """The end line, unless the last timed line already showed the final count and stats."""
        if not self.closed:
            self.closed = True
            if self.shown != (self.n, self.postfix):
                self._write_line(self.clock())

    def _write_line(self, now: float) -> None:
        """tqdm's own statistics without the bar graphic (``ncols=0``): ``desc:  40% 4/10 [00:20<00:30, ...]``."""
        self.last_line, self.shown = now, (self.n, self.postfix)
        self.file.write(tqdm.format_meter(self.n, self.total, now - self.start, ncols=0, prefix=self.desc,
                                          unit=self.unit, postfix=self.postfix, initial=self.initial) + "\n")
        self.file.flush()


def _stat(value) -> str:
    """A postfix value as tqdm writes it: numbers shortened (``tqdm.format_num``), anything else as text."""
    return tqdm.format_num(value) if isinstance(value, Number) else str(value).strip()
