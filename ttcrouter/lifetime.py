"""Child processes die with their parent: the processes ttcrouter starts never outlive it.

The mechanism is a **watchdog process** per ttcrouter process that starts an engine. It
*adopts* the processes started inside :func:`reap_children_on_exit` and ends them when their
parent ends, however it ends (SIGKILL, SIGTERM, an exception, a normal exit):

* While a block is open the watchdog adopts each new child of its parent (pid and start time,
  a look every :data:`SCAN_S` s); when it closes, the parent sends the exact list. Children
  are matched by *parent pid*: vLLM renames ``VLLM::EngineCore`` and ``VLLM::Worker`` with
  ``setproctitle``, which also blanks ``/proc/PID/environ``. The variable :data:`MARKER_ENV`
  marks the block's children as well, for one started and orphaned between two looks.
* The watchdog waits on a ``pidfd`` of its parent (Linux; a 0.5 s poll elsewhere), then sends
  SIGTERM to the adopted processes still alive (same pid *and* start time) and all their
  descendants, and SIGKILL to what is left after :data:`GRACE_S` s.
* :func:`exit_cleanly_on_sigterm` turns SIGTERM into ``SystemExit(143)`` so that ``finally``
  blocks shut the engine down first.

Why (details and measurements in docs/reliability.md): ``prctl(PR_SET_PDEATHSIG)`` must run
inside each child, where ttcrouter has no code (vLLM spawns its engine, the engine its
workers), fires when the starting *thread* ends, and covers one generation; a process group
needs a survivor to signal it after a SIGKILL (a watchdog anyway) and breaks when a child
moves to a group of its own. The watchdog runs in its own session, so the Ctrl-C or SIGHUP
that ends the parent does not end it first; it idles in ``poll`` between engine starts.
Without ``psutil`` or POSIX signals the functions do nothing.

:func:`record_engine_pids` keeps the owner and its adopted processes in a file beside a
collection's lock; :func:`live_engine_pids` later names those still alive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = [
    "MARKER_ENV",
    "ENGINE_PIDS_FILE",
    "ensure_children_die_with_parent",
    "reap_children_on_exit",
    "exit_cleanly_on_sigterm",
    "record_engine_pids",
    "live_engine_pids",
]

logger = logging.getLogger("ttcrouter.lifetime")

#: Environment variable carrying the tokens (``pid-starttime``) of the ttcrouter processes
#: that own a process, comma-separated.
MARKER_ENV = "TTCROUTER_OWNER"

#: Seconds between the watchdog's SIGTERM and its SIGKILL to a leftover process.
GRACE_S = 2.0

#: Seconds between two looks at the parent's children while a block is open.
SCAN_S = 0.5

#: Seconds between a SIGTERM of the parent and its hard exit, when the clean shutdown hangs.
SIGTERM_DEADLINE_S = 5.0

#: File beside a collection's lock naming the processes of the run that holds it.
ENGINE_PIDS_FILE = "engine-pids.json"

_lock = threading.RLock()
_watchdog: dict[int, subprocess.Popen] = {}  # pid of the watched process -> its watchdog
_adopted: dict[int, str] = {}  # pid -> start time of the processes this process adopted
_records: list[Path] = []  # directories where record_engine_pids keeps a record


def _forget_after_fork() -> None:
    """A forked child owns none of its parent's processes, records or locks."""
    global _lock
    _lock = threading.RLock()
    _adopted.clear()
    _records.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------

def ensure_children_die_with_parent(mark: bool = False) -> bool:
    """Start this process's watchdog (once; later calls cost a dict look-up).

    Parameters
    ----------
    mark : bool, default=False
        Adopt every child started from now on, not only those started inside
        :func:`reap_children_on_exit` (for a command-line entry point). The watchdog then
        looks at this process's children every :data:`SCAN_S` seconds for its whole life.

    Returns
    -------
    bool
        True when a watchdog runs for this process; False where the platform cannot have one
        (no ``psutil``, no POSIX signals).
    """
    if not _start_watchdog():
        return False
    if mark:
        with _lock:
            _add_marker(_token(os.getpid()))
            _tell("all")
    return True


@contextlib.contextmanager
def reap_children_on_exit():
    """Adopt the processes started inside the block: they end when this process ends.

    Starts the watchdog if needed. The processes (and their descendants) live on after the
    block, as long as this process does. Blocks may nest and run in several threads; a
    process started by another thread while a block is open is adopted too.

    Examples
    --------
    >>> with reap_children_on_exit():              # doctest: +SKIP
    ...     llm = vllm.LLM(model)                  # EngineCore and its workers are adopted
    """
    if not _start_watchdog():
        yield
        return
    with _lock:
        before_env = os.environ.get(MARKER_ENV)
        _add_marker(_token(os.getpid()))
        before = _children()
        _tell("open")
    try:
        yield
    finally:
        with _lock:
            new = {pid: t for pid, t in _children().items() if before.get(pid) != t}
            _adopted.update(new)
            _tell("close " + " ".join(f"{pid}:{t}" for pid, t in new.items()))
            if before_env is None:
                os.environ.pop(MARKER_ENV, None)
            else:
                os.environ[MARKER_ENV] = before_env
            for directory in _records:
                with contextlib.suppress(OSError):
                    _write_record(directory)


@contextlib.contextmanager
def exit_cleanly_on_sigterm(deadline_s: float = SIGTERM_DEADLINE_S):
    """Inside the block, SIGTERM raises ``SystemExit(143)`` in the main thread.

    ``finally`` blocks and context managers then close the engine, and the process exits with
    143 (128 + SIGTERM), as with the default action but cleanly. If the shutdown has not
    finished ``deadline_s`` seconds after the signal, or a second SIGTERM arrives, the process
    exits at once (``os._exit(143)``) and the watchdog ends what is left. The previous handler
    is restored when the block ends. Outside the main thread the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal,
                                                                                "SIGTERM"):
        yield
        return
    fired = threading.Event()

    def handler(signum, frame):
        if fired.is_set():
            os._exit(128 + signum)
        fired.set()
        timer = threading.Timer(deadline_s, os._exit, (128 + signum,))
        timer.daemon = True
        timer.start()
        logger.warning("terminated (SIGTERM): shutting down")
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def record_engine_pids(directory) -> Path | None:
    """Keep ``directory/ENGINE_PIDS_FILE`` naming this process and the processes it adopted.

    Call it once the lock of ``directory`` is held. The file is rewritten each time this
    process adopts processes later (an engine started after the call is recorded when its
    :func:`reap_children_on_exit` block ends). Returns the file, or None where process
    information is unavailable.
    """
    if _token(os.getpid()) is None:
        return None
    path = Path(directory)
    with _lock:
        if path not in _records:
            _records.append(path)
        return _write_record(path)


def live_engine_pids(directory) -> list[int]:
    """Pids of the processes of an earlier run, recorded in ``directory``, still alive.

    The recorded owner and adopted processes count when alive with the recorded start time
    (a reused pid is not mistaken for them); so do their live descendants and any process
    whose environment carries the owner's token. Empty when the record is this process's
    own, when nothing was recorded, the record comes from another host, or it cannot be
    read.
    """
    try:
        record = json.loads((Path(directory) / ENGINE_PIDS_FILE).read_text())
        owner = record["owner"]
        recorded = [(int(owner["pid"]), str(owner["started"]))]
        recorded += [(int(p["pid"]), str(p["started"])) for p in record.get("processes", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if record.get("host") != socket.gethostname():
        return []
    try:
        import psutil
    except ImportError:
        return []
    me = psutil.Process()
    if recorded[0] == (me.pid, _start_time(me)):
        return []  # our own record
    token = f"{recorded[0][0]}-{recorded[0][1]}"
    found = set(_descendants(_alive_matching(recorded)))
    found.update(_env_marked(token))
    found.discard(me.pid)
    return sorted(found)


# ---------------------------------------------------------------------------------------
# process helpers (psutil is imported lazily: the CLI imports this module)
# ---------------------------------------------------------------------------------------

def _start_time(p) -> str:
    return f"{p.create_time():.2f}"


def _token(pid: int) -> str | None:
    """``"pid-starttime"`` of a live process, or None (no psutil, no such process)."""
    try:
        import psutil

        return f"{pid}-{_start_time(psutil.Process(pid))}"
    except Exception:  # noqa: BLE001 - psutil missing or the process gone
        return None


def _add_marker(token: str | None) -> None:
    current = [t for t in os.environ.get(MARKER_ENV, "").split(",") if t]
    if token is not None and token not in current:
        os.environ[MARKER_ENV] = ",".join(current + [token])


def _children(pid: int | None = None) -> dict[int, str]:
    """Live direct children of ``pid`` (default: this process), pid -> start time."""
    import psutil

    out = {}
    skip = {w.pid for w in _watchdog.values()}
    try:
        kids = psutil.Process(pid).children()
    except psutil.Error:
        return out
    for c in kids:
        with contextlib.suppress(psutil.Error):
            if c.pid not in skip:
                out[c.pid] = _start_time(c)
    return out


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _alive_matching(recorded) -> list:
    """The live processes among ``(pid, start time)`` pairs."""
    import psutil

    out = []
    for pid, started in recorded:
        with contextlib.suppress(psutil.Error, ValueError):
            p = psutil.Process(pid)
            if _start_time(p) == started and _alive(p):
                out.append(p)
    return out


def _descendants(roots) -> list[int]:
    """Pids of ``roots`` and of all their live descendants (one pass over the table)."""
    import psutil

    kids: dict[int, list[int]] = {}
    for p in psutil.process_iter(["ppid", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE:
            kids.setdefault(p.info["ppid"], []).append(p.pid)
    out, todo = [], [p.pid for p in roots]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.append(pid)
            todo.extend(kids.get(pid, ()))
    return out


def _env_marked(token: str) -> list[int]:
    """Pids of live processes whose environment carries ``token``."""
    import psutil

    out = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if token in p.environ().get(MARKER_ENV, "").split(",") and _alive(p):
                out.append(p.pid)
    return out


def _write_record(directory: Path) -> Path:
    import psutil

    me = psutil.Process()
    procs = []
    for pid in _descendants(_alive_matching(list(_adopted.items()))):
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            procs.append({"pid": pid, "started": _start_time(p), "name": p.name()})
    record = {"owner": {"pid": me.pid, "started": _start_time(me)},
              "host": socket.gethostname(), "processes": procs, "recorded": time.time()}
    path = directory / ENGINE_PIDS_FILE
    tmp = path.with_name(f"{path.name}.{me.pid}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------
# the watchdog
# ---------------------------------------------------------------------------------------

def _start_watchdog() -> bool:
    pid = os.getpid()
    if pid in _watchdog:
        return True
    with _lock:
        if pid in _watchdog:
            return True
        token = _token(pid)
        if token is None or not hasattr(signal, "SIGKILL"):
            logger.debug("no watchdog: psutil or POSIX signals unavailable")
            return False
        env = dict(os.environ)
        env.pop(MARKER_ENV, None)  # the watchdog is not one of the processes it ends
        try:
            _watchdog[pid] = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), token],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True,
                start_new_session=True,  # a Ctrl-C or SIGHUP of our group must not end it
            )
        except OSError as exc:
            logger.debug("no watchdog: %s", exc)
            return False
        return True


def _tell(line: str) -> None:
    w = _watchdog.get(os.getpid())
    if w is None:
        return
    try:
        w.stdin.write(line + "\n")
        w.stdin.flush()
    except (OSError, ValueError):  # the watchdog is gone: nothing more to do
        logger.debug("the watchdog is gone")


class _Watch:
    """The watchdog's state: the parent, the adopted processes, the open blocks."""

    def __init__(self, token: str):
        self.token = token
        self.parent = int(token.split("-", 1)[0])
        self.adopted: dict[int, str] = {}
        self.opened = 0
        self.all = False
        self.known: dict[int, str] = {}  # the parent's children when the first block opened
        self.pending = b""  # an incomplete line from the parent

    def handle(self, line: str) -> None:
        word, _, rest = line.strip().partition(" ")
        if word == "open":
            if not self.opened:
                self.known = _children(self.parent)
            self.opened += 1
        elif word == "close":
            self.opened = max(0, self.opened - 1)
            for item in rest.split():
                pid, _, started = item.partition(":")
                self.adopted[int(pid)] = started
        elif word == "all":
            self.all = True

    def scan(self) -> None:
        if not (self.opened or self.all):
            return
        for pid, started in _children(self.parent).items():
            if pid != os.getpid() and (self.all or self.known.get(pid) != started):
                self.adopted.setdefault(pid, started)

    def wait(self) -> None:
        """Follow the parent's messages and children until it ends."""
        import select

        stdin = sys.stdin.fileno()
        if os.getppid() != self.parent:
            return self.drain(stdin)  # it ended before we looked (we were reparented)
        fd = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(self.parent)
        # getppid() after pidfd_open: the fd names our parent, not a reused pid
        if os.getppid() != self.parent:
            return self.drain(stdin)
        poller = select.poll()
        if fd is not None:
            poller.register(fd, select.POLLIN)
        poller.register(stdin, select.POLLIN)
        while True:
            busy = self.opened or self.all or fd is None
            for efd, _ in poller.poll(int(SCAN_S * 1000) if busy else None):
                if efd == fd:
                    return self.drain(stdin)
                if not self.read(stdin):  # EOF: the parent (and every heir of the pipe) ended
                    poller.unregister(stdin)
            self.scan()
            if fd is None and os.getppid() != self.parent:
                return self.drain(stdin)

    def read(self, stdin: int) -> bool:
        """Handle the complete lines available on ``stdin``; False at end of file."""
        data = os.read(stdin, 65536)
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            self.handle(line.decode())
        return bool(data)

    def drain(self, stdin: int) -> None:
        """Handle what the parent wrote before it ended (heirs of the pipe may keep it open)."""
        os.set_blocking(stdin, False)
        with contextlib.suppress(BlockingIOError, OSError):
            while self.read(stdin):
                pass

    def reap(self, grace_s: float = GRACE_S) -> tuple[list[int], list[int]]:
        """SIGTERM the adopted processes and their descendants, SIGKILL what is left."""
        import psutil

        def targets():
            pids = _descendants(_alive_matching(list(self.adopted.items())))
            pids += [p for p in _env_marked(self.token) if p not in pids]
            procs = []
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    if pid != os.getpid():
                        procs.append(psutil.Process(pid))
            return procs

        # psutil checks the start time before each signal: a reused pid is never signalled
        termed = targets()
        for p in termed:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        deadline = time.monotonic() + grace_s
        left = termed
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [p for p in targets() if _alive(p)]
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        return [p.pid for p in termed], [p.pid for p in left]


def _watch(token: str) -> int:
    for sig in ("SIGINT", "SIGHUP"):
        # a Ctrl-C or a closed terminal ends the parent; this process must outlive it
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), signal.SIG_IGN)
    watch = _Watch(token)
    watch.wait()
    t0 = time.monotonic()
    termed, killed = watch.reap()
    if termed or killed:
        print(f"ttcrouter: process {watch.parent} ended; ended the "
              f"{len(set(termed + killed))} process(es) it had started in "
              f"{time.monotonic() - t0:.1f} s (SIGTERM: {' '.join(map(str, termed)) or '-'}; "
              f"SIGKILL: {' '.join(map(str, killed)) or '-'})", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":  # the watchdog: python lifetime.py TOKEN
    sys.exit(_watch(sys.argv[1]))
