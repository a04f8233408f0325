"""Peak memory of the test suite: run pytest and sample its process tree.

Usage: ``python bench/suite_memory.py [pytest args...]`` from the repository root.
Every 3 s it sums the resident set size of the pytest process and all its descendants
(vLLM engine processes, test servers, collection subprocesses). Shared pages are counted
once per process, so the figure is an upper bound on what the suite needs.
"""

import subprocess
import sys
import time

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main(argv):
    cmd = [sys.executable, "-m", "pytest", *argv]
    child = subprocess.Popen(cmd)
    proc = psutil.Process(child.pid)
    peak, peak_at, start = 0, 0.0, time.time()
    while child.poll() is None:
        try:
            rss = tree_rss(proc)
        except psutil.Error:
            break
        if rss > peak:
            peak, peak_at = rss, time.time() - start
        time.sleep(3)
    print(f"pytest exit {child.returncode}; wall {time.time() - start:.0f} s; peak RSS of the "
          f"process tree {peak / 2**30:.2f} GiB, {peak_at:.0f} s in")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
