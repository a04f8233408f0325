"""How long the vLLM engine outlives a killed ``ttcrouter route`` (docs/reliability.md).

Starts ``ttcrouter route --router R "What is 2 + 2?"`` in a subprocess, waits until a
``VLLM::EngineCore`` process exists among its descendants, waits ``--after`` seconds more,
sends the parent ``--signal`` and polls its former descendants until none is alive (at most
``--poll`` seconds; the survivors are then killed by this script). Prints one JSON line.

    python bench/bench_lifetime.py --router router.joblib [--signal KILL] [--after 10]

Needs ``VLLM_CPU_KVCACHE_SPACE`` (2 is enough) and the embedded model converted once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import psutil


def engine_descendants(proc: psutil.Process) -> list[psutil.Process]:
    """Descendants of ``proc`` (empty when it is gone)."""
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def is_engine(p: psutil.Process) -> bool:
    try:
        return "VLLM::" in " ".join(p.cmdline()) or p.name().startswith("VLLM")
    except psutil.Error:
        return False


def wait_for_engine(proc: psutil.Process, timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = engine_descendants(proc)
        if any(is_engine(p) for p in kids):
            return kids
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            raise RuntimeError("ttcrouter exited before its engine started")
        time.sleep(0.2)
    raise TimeoutError(f"no VLLM::EngineCore after {timeout} s")


def measure(argv: list[str], sig: int, after: float, poll: float, log_path: str,
            ready: bool = False) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    with open(log_path, "w") as log:
        popen = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    parent = psutil.Process(popen.pid)
    t_start = time.monotonic()
    try:
        wait_for_engine(parent, 300)
        while ready and "init engine" not in open(log_path).read():
            time.sleep(0.2)
        t_engine = time.monotonic()
        time.sleep(after)
        tree = engine_descendants(parent)  # the snapshot we hold the parent responsible for
        names = sorted({_label(p) for p in tree})
        labels = {p.pid: _long_label(p) for p in tree}
        t_kill = time.monotonic()
        os.kill(popen.pid, sig)
        rc = popen.wait(timeout=120)
        t_parent_gone = time.monotonic()
        deadline = t_kill + poll
        alive = tree
        gone_at = {}
        while alive and time.monotonic() < deadline:
            for p in alive:
                if not _alive(p):
                    gone_at[f"{p.pid}:{labels[p.pid]}"] = round(time.monotonic() - t_kill, 2)
            alive = [p for p in alive if _alive(p)]
            if alive:
                time.sleep(0.1)
        t_end = time.monotonic()
        survivors = [p.pid for p in alive]
        for p in alive:  # what outlived the poll window: ours to kill
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        return {
            "signal": signal.Signals(sig).name,
            "engine_started_after_s": round(t_engine - t_start, 1),
            "killed_after_engine_s": after, "after_ready": ready,
            "descendants": names,
            "parent_rc": rc,
            "parent_exit_s": round(t_parent_gone - t_kill, 2),
            "last_descendant_gone_s": None if survivors else round(t_end - t_kill, 2),
            "survivors_after_poll": survivors,
            "gone_at": gone_at,
            "poll_s": poll,
        }
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _label(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return "?"


def _long_label(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    for key in ("lifetime", "resource_tracker", "VLLM::"):
        if key in cmd:
            return key + ("" if key != "VLLM::" else cmd.split("VLLM::")[1][:12])
    return cmd[:40]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", required=True)
    ap.add_argument("--signal", default="KILL", choices=("KILL", "TERM", "INT"))
    ap.add_argument("--after", type=float, default=10.0,
                    help="seconds between the engine's appearance and the signal")
    ap.add_argument("--poll", type=float, default=60.0)
    ap.add_argument("--log", default="bench_lifetime.log")
    ap.add_argument("--ready", action="store_true",
                    help="count --after from the engine's 'init engine' log line")
    ap.add_argument("--questions", type=int, default=1,
                    help="route this many questions (enough keep the engine busy)")
    ap.add_argument("--collect", metavar="OUT", default=None,
                    help="kill `ttcrouter collect` into OUT instead of `ttcrouter route`")
    args = ap.parse_args()
    if args.collect:
        argv = [sys.executable, "-m", "ttcrouter.cli", "collect", "--dataset", "arithmetic:4",
                "--strategies", "majority_vote@n=2", "--max-tokens", "8", "--out", args.collect]
    else:
        argv = [sys.executable, "-m", "ttcrouter.cli", "route", "--router", args.router,
                "What is 2 + 2?"]
        if args.questions > 1:
            qfile = os.path.abspath(args.log + ".questions.txt")
            with open(qfile, "w") as fh:
                fh.writelines(f"What is {i} + {i}?\n" for i in range(args.questions))
            argv[-1:] = ["--file", qfile, "--max-tokens", "64"]
    sig = getattr(signal, "SIG" + args.signal)
    print(json.dumps(measure(argv, sig, args.after, args.poll, args.log, args.ready)))


if __name__ == "__main__":
    main()
