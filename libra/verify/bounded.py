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
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Address-space cap of a worker: sympy needs a few hundred MB; beyond this it is a runaway computation.
_WORKER_MEMORY_BYTES = 4 * 2**30
_ORPHAN_CHECK_SECONDS = 1.0


class BoundExceeded(Exception):
    """The call did not finish within its time bound (its worker was killed), or its worker died."""


def serve(target: str) -> None:
    """Worker main loop: answer JSON-line requests ``[args...]`` with ``target(*args)`` until stdin closes.

    ``target`` is ``"module:function"``. The protocol uses a private copy of stdout, and stdout itself is
    pointed at stderr, so a stray ``print`` in a library cannot corrupt a reply. Exceptions reply ``null``.
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
    for line in sys.stdin:
        try:
            result = function(*json.loads(line))
        except Exception:  # noqa: BLE001 - a failed comparison is an answer (null), not a dead worker
            result = None
        replies.write(json.dumps(result) + "\n")
        replies.flush()


class _Worker:
    """One worker process and the parent's end of its pipes."""

    def __init__(self, target: str):
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from libra.verify.bounded import serve; serve({target!r})"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def request(self, args: list[Any], deadline: float) -> Any:
        """Send one request and wait for its reply until ``deadline`` (``time.monotonic``)."""
        try:
            self.process.stdin.write((json.dumps(args) + "\n").encode("ascii"))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise BoundExceeded("worker died") from error
        fd, reply = self.process.stdout.fileno(), b""
        while not reply.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise BoundExceeded("timed out")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BoundExceeded("worker died")
            reply += chunk
        return json.loads(reply)

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
        """``target(*args)`` in a worker, or ``BoundExceeded`` after ``timeout`` seconds."""
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
                    raise BoundExceeded("no free worker in time")
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
        except OSError:
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
