"""Hard time bounds for untrusted computations: a pool of persistent worker processes that are killed on timeout.

Why processes, and why started with ``subprocess`` rather than ``multiprocessing``:

* sympy can spend unbounded time in C (``9^{9^{9^{9^9}}}`` is one big-integer power), where no signal
  handler or thread-side flag ever runs, so the only bound that always holds is killing the process;
* ``signal.alarm``/``setitimer`` only work in the main thread, and the verifier is called from worker
  threads and from inside process pools;
* ``multiprocessing`` refuses to start children from a daemonic process (``multiprocessing.Pool`` workers
  are daemonic), while a plain ``subprocess.Popen`` works from anywhere, so there is no weaker fallback
  mode: threads, ``ProcessPoolExecutor`` workers and ``multiprocessing.Pool`` workers all get the same
  kill-on-timeout bound.

Workers are spawned lazily, reused across calls (importing sympy costs ~0.5 s), and replaced at once when
one is killed. Requests and replies are one JSON line each over the worker's stdin/stdout, so nothing is
unpickled from the worker. Each worker also exits by itself when its parent dies (an orphan watchdog), and
runs under an address-space limit so a runaway big-number computation cannot take the machine's memory.

A call that produces no answer is never an answer: a timeout raises ``TimedOut``, a worker that died or
raised mid-call raises ``WorkerFailed`` (with the tail of its stderr, which is kept rather than discarded),
and a worker that exits before it is ready to serve (a broken install, an import error) raises
``CheckerUnavailable``, so a checker that cannot start at all fails loudly instead of answering "no" forever.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

# Address-space cap of a worker: sympy needs a few hundred MB; beyond this it is a runaway computation.
_WORKER_MEMORY_BYTES = 4 * 2**30
_ORPHAN_CHECK_SECONDS = 1.0
# Lines of a worker's stderr kept for the error message when it dies.
_STDERR_TAIL_LINES = 20
# The first line a worker writes once its target is imported; anything else first is a broken worker.
_READY = "ready"

log = logging.getLogger(__name__)


class BoundExceeded(Exception):
    """The call produced no answer; ``kind`` says why ("timeout" or "worker_error"), for failure counts."""

    kind = "worker_error"


class TimedOut(BoundExceeded):
    """The call did not finish within its time bound (its worker was killed)."""

    kind = "timeout"


class WorkerFailed(BoundExceeded):
    """The worker died during the call, or the target raised (e.g. ``MemoryError`` under the address-space cap)."""


class CheckerUnavailable(RuntimeError):
    """A worker could not start or exited before it was ready: the computation cannot run here at all."""


def serve(target: str) -> None:
    """Worker main loop: answer JSON-line requests ``[args...]`` with ``target(*args)`` until stdin closes.

    ``target`` is ``"module:function"``. The protocol uses a private copy of stdout, and stdout itself is
    pointed at stderr, so a stray ``print`` in a library cannot corrupt a reply. The first line is the
    ready mark (written once ``target`` is imported); each reply is ``{"result": ...}`` or, when the target
    raised, ``{"error": "..."}``: a failed computation must not read as a negative answer.
    """
    import importlib
    import resource
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the parent's business
    resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_BYTES, _WORKER_MEMORY_BYTES))
    parent = os.getppid()

    def exit_when_orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(_ORPHAN_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()
    replies = os.fdopen(os.dup(1), "w", encoding="ascii")
    os.dup2(2, 1)
    module, _, name = target.partition(":")
    function = getattr(importlib.import_module(module), name)
    replies.write(json.dumps(_READY) + "\n")
    replies.flush()
    for line in sys.stdin:
        try:
            reply = {"result": function(*json.loads(line))}
        except Exception as error:  # noqa: BLE001 - reported to the caller, the worker stays usable
            reply = {"error": f"{type(error).__name__}: {error}"[:500]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def _keep_tail(stream, tail: deque) -> None:
    """Drain a worker's stderr into ``tail`` (its last lines), so the pipe never fills and blocks the worker."""
    for line in stream:
        tail.append(line.decode("utf-8", "replace").rstrip())
    stream.close()


class _Worker:
    """One worker process and the parent's end of its pipes."""

    def __init__(self, target: str):
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", f"from libra.verify.bounded import serve; serve({target!r})"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as error:
            raise CheckerUnavailable(f"cannot start a worker for {target}: {error}") from error
        self.target, self.ready, self.pending = target, False, b""
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        threading.Thread(target=_keep_tail, args=(self.process.stderr, self.stderr_tail), daemon=True).start()

    def request(self, args: list[Any], deadline: float) -> Any:
        """Send one request and wait for its reply until ``deadline`` (``time.monotonic``).

        The worker's ready mark is awaited first (within the same deadline), so a worker that dies while
        starting is told apart from one that dies on this request.
        """
        try:
            self.process.stdin.write((json.dumps(args) + "\n").encode("ascii"))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise self._died() from error
        if not self.ready:
            if self._read_line(deadline) != _READY:
                raise CheckerUnavailable(f"worker for {self.target} did not start properly{self._stderr_note()}")
            self.ready = True
        reply = self._read_line(deadline)
        if "error" in reply:
            raise WorkerFailed(f"worker for {self.target} raised {reply['error']}")
        return reply["result"]

    def _read_line(self, deadline: float) -> Any:
        """The next JSON line from the worker, or ``TimedOut`` at ``deadline``."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimedOut("timed out")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._died()
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def _died(self) -> Exception:
        """The error for a worker whose pipes closed: it could not start at all, or it died on a request."""
        self.process.wait()
        note = f" (exit code {self.process.returncode}){self._stderr_note()}"
        if not self.ready:
            return CheckerUnavailable(f"worker for {self.target} exited before it was ready{note}")
        log.warning("answer-check worker died%s", note)
        return WorkerFailed(f"worker died{note}")

    def _stderr_note(self) -> str:
        time.sleep(0.05)  # let the drain thread read what the worker wrote just before it exited
        return (":\n" + "\n".join(self.stderr_tail)) if self.stderr_tail else ""

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:  # unflushed bytes of a request the dead worker never read
                pass

    def close(self) -> None:
        """Ask the worker to exit (end of its input); kill it if it does not promptly."""
        try:
            self.process.stdin.close()
            self.process.wait(timeout=1.0)
            self.process.stdout.close()
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class BoundedPool:
    """Up to ``size`` worker processes running ``target``; ``call`` is thread-safe and never exceeds its bound.

    The bound covers everything: waiting for a free worker, a worker's start-up, and the computation.
    """

    def __init__(self, target: str, size: int):
        self.target, self.size = target, max(1, size)
        self._idle: list[_Worker] = []
        self._live = 0
        self._closed = False
        self._cond = threading.Condition()

    def call(self, args: list[Any], timeout: float) -> Any:
        """``target(*args)`` in a worker; ``TimedOut`` after ``timeout`` seconds, ``WorkerFailed`` when the worker
        died or the target raised, ``CheckerUnavailable`` when no worker can start."""
        deadline = time.monotonic() + timeout
        worker = self._acquire(deadline)
        try:
            result = worker.request(args, deadline)
        except BaseException:
            self._replace(worker)  # its state is unknown (busy, dead or half-read): never reuse it
            raise
        self._release(worker)
        return result

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(worker)
                self._cond.notify()
                return
            self._live -= 1
        worker.close()

    def _acquire(self, deadline: float) -> _Worker:
        with self._cond:
            while not self._closed and not self._idle and self._live >= self.size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimedOut("no free worker in time")
                self._cond.wait(remaining)
            if self._closed:
                raise RuntimeError("pool is closed")
            if self._idle:
                return self._idle.pop()
            self._live += 1
        try:
            return _Worker(self.target)
        except BaseException:
            self._forget_one()
            raise

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and start its successor right away, so its start-up overlaps the caller's wait."""
        worker.kill()
        if self._closed:
            self._forget_one()
            return
        try:
            successor = _Worker(self.target)
        except CheckerUnavailable:
            self._forget_one()
            return
        self._release(successor)

    def _forget_one(self) -> None:
        with self._cond:
            self._live -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._live -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.close()

    def __enter__(self) -> BoundedPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
