"""Engine processes die with the process that owns them.

vLLM runs its engine core (and, with tensor parallelism, its workers) in child processes. When the owner
is killed outright (``kill -9``, the OOM killer, a node's job manager) nothing in it runs any more, so no
``finally`` or ``atexit`` can stop them: the orphaned engine keeps its memory (on a GPU: the device
memory a rerun needs). ``Reaper`` starts a small watchdog process (this file run as a script: the
standard library only, no torch) beside the owner. The watchdog notes, about once a second, every
descendant of the owner started after it, and listens on a pipe from the owner. When the owner exits in any
way (the watchdog, its child, is reparented; the pipe closes, unless a forked child holds it open) or says
``kill``, and unless it said ``release`` first (its engine was closed cleanly), the watchdog kills every
process it noted and their descendants, checking each pid's start time so a reused pid is never hit.
Linux only (``/proc``); elsewhere it does nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

POLL_S = 0.5


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid ... starttime is field 22
    return int(fields[1]), int(fields[19])


def _table() -> dict[int, tuple[int, int]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> set[int]:
    """Every process below ``roots`` in ``table`` (pid -> (ppid, start)), roots excluded."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _note(owner: int, me: int, born: int, noted: dict[int, int]) -> None:
    """Add to ``noted`` (pid -> start time) every descendant of ``owner`` started after the watchdog."""
    table = _table()
    for pid in descendants({owner}, table) - {me}:
        if table[pid][1] >= born:
            noted[pid] = table[pid][1]


def _owner_says(sel, stdin, buffer: bytes) -> tuple[str | None, bytes]:
    """Wait up to ``POLL_S`` for the owner's word: "release", "kill", or None (nothing yet). An EOF counts as
    "kill": the owner exited without releasing (unless a forked child holds the pipe open, see ``watch``)."""
    if not sel.select(timeout=POLL_S):
        return None, buffer
    data = os.read(stdin.fileno(), 4096)
    buffer += data
    for word in ("release", "kill"):
        if word.encode() in buffer:
            return word, buffer
    return (None if data else "kill"), buffer


def watch(owner: int, stdin) -> int:
    """The watchdog's loop (runs in its own process); returns how many processes it killed.

    The pipe's EOF alone cannot tell that the owner died: a child the owner forked (vLLM forks its engine
    core unless CUDA is initialised) holds the pipe's write end open. So the watchdog also watches its own
    parent, the owner: the kernel reparents the watchdog the moment the owner exits, however it ends."""
    import selectors

    me = os.getpid()
    born = _stat(me)[1]
    noted: dict[int, int] = {}  # pid -> start time
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ)
    buffer = b""
    while os.getppid() == owner:
        _note(owner, me, born, noted)
        word, buffer = _owner_says(sel, stdin, buffer)
        if word == "release":
            return 0
        if word == "kill":
            break
    table = _table()
    alive = {pid for pid, start in noted.items() if pid in table and table[pid][1] == start}
    victims = alive | {p for p in descendants(alive, table) if p != me}
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(victims)


class Reaper:
    """``Reaper()`` before starting engine processes; ``release()`` after closing them cleanly; ``kill()``
    (or the owner's death) makes the watchdog kill them."""

    def __init__(self):
        self._proc = None
        if not os.path.isdir("/proc"):
            return
        self._proc = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid())],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
                                      close_fds=True)

    def release(self) -> None:
        self._finish(b"release\n")

    def kill(self) -> None:
        self._finish(b"kill\n")  # a word, not just the pipe's EOF, which a forked child would hold off

    def _finish(self, message: bytes) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.write(message)
            proc.stdin.flush()
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the owner must not stop the watchdog
    sys.exit(0 if watch(int(sys.argv[1]), sys.stdin) >= 0 else 1)
