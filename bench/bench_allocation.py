"""Time of ttcrouter.allocate on one core; writes docs/bench_allocation.md.

    python bench/bench_allocation.py [--n 100000] [--k 20] [--repeats 5] [--out docs/bench_allocation.md]

What it measures: the allocation alone (predicted matrices given; no embedding, no probe),
on SYNTHETIC predicted matrices shaped like a router's output: k strategies with mean
tokens on a geometric grid from 50 to 5,000, per-query noise on the costs, and accuracies
rising with cost along a per-query difficulty (a logistic curve plus noise). Goal: one
token budget, 100,000 queries x 20 strategies, under 1 s on one core. Also timed: two
budgets (tokens and sequential latency), a job latency budget with 8 concurrent requests,
and small batches. Quality: predicted accuracy against the certified upper bound.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # one core: allocation is elementwise numpy, but be sure

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ttcrouter import allocate  # noqa: E402


def instance(n, k, seed=0):
    rng = np.random.default_rng(seed)
    base = np.geomspace(50, 5000, k)
    T = base * rng.lognormal(0, 0.3, (n, k))
    hard = rng.random((n, 1)) * 3
    A = 1 / (1 + np.exp(-(np.log(base) - 1.2 * np.log(50) - 2 * hard)))
    A = np.clip(A + rng.normal(0, 0.03, (n, k)), 0, 1)
    L = T / 500 * rng.lognormal(0, 0.2, (n, k))
    return A, T, L


def timed(fn, repeats):
    """Best wall and process (CPU) time of ``fn()`` over ``repeats``, and its result."""
    wall, cpu, out = np.inf, np.inf, None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - w)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu, out


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="docs/bench_allocation.md")
    args = ap.parse_args(argv)
    n, k = args.n, args.k
    load_before = os.getloadavg()
    A, T, L = instance(n, k)
    B_T = 0.3 * T.mean() * n  # 30% of the mean strategy's tokens
    B_L = 0.2 * L.mean() * n
    rows = []

    def row(name, fn, repeats, budget_note):
        wall, cpu, res = timed(fn, repeats)
        gap = res.upper_bound - res.accuracy
        rows.append((name, n_of(res), wall, cpu, res, gap, budget_note))
        print(f"{name}: wall {wall:.3f}s cpu {cpu:.3f}s", file=sys.stderr)

    n_of = lambda res: res.n_queries  # noqa: E731
    row("one budget: tokens", lambda: allocate(A, T, max_total_tokens=B_T), args.repeats,
        f"tokens {B_T:.4g}")
    row("two budgets: tokens + sequential latency",
        lambda: allocate(A, T, L, max_total_tokens=B_T, max_total_latency=B_L), 1,
        f"tokens {B_T:.4g}, latency {B_L:.4g}s")
    Bk = 0.2 * L.mean() * n / 8
    row("job latency, concurrency=8", lambda: allocate(A, None, L, max_total_latency=Bk,
                                                      concurrency=8), 1,
        f"makespan {Bk:.4g}s")
    for m in (12, 5000):
        a, t, _ = instance(m, k, seed=1)
        b = 0.3 * t.mean() * m
        row(f"one budget: tokens, batch {m}", lambda a=a, t=t, b=b: allocate(
            a, t, max_total_tokens=b), args.repeats, f"tokens {b:.4g}")
    load_after = os.getloadavg()

    one = rows[0]
    lines = [
        "# Allocation time (bench/bench_allocation.py)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu_name()} "
        f"({os.cpu_count()} cores visible, machine shared with other jobs), Python "
        f"{platform.python_version()}, numpy {np.__version__}, one thread "
        f"(`OMP_NUM_THREADS=1`). Load average (1 min) {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after: above 1 per core, wall time counts waits for a core, "
        f"so the process (CPU) time is the figure to read.",
        f"Command: `python bench/bench_allocation.py --n {n} --k {k} --repeats "
        f"{args.repeats}`.",
        "",
        f"Data: SYNTHETIC predicted matrices, {n:,} queries x {k} strategies (see the "
        f"script's docstring); the allocation alone is timed (no embedding, no probe). "
        f"Best of {args.repeats} runs for the one-budget rows, one run for the others.",
        "",
        "| case | queries | budget | wall s | CPU s | predicted accuracy | upper bound - "
        "accuracy | tokens / budget |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m, wall, cpu, res, gap, note in rows:
        tb = "" if res.budget["tokens"] is None else f"{res.tokens / res.budget['tokens']:.6f}"
        lines.append(f"| {name} | {m:,} | {note} | {wall:.3f} | {cpu:.3f} | "
                     f"{res.mean_accuracy:.4f} (mean) | {gap:.4g} | {tb} |")
    two, conc = rows[1][4], rows[2][4]
    verdict = "meets" if one[3] < 1.0 else "misses"
    lines += [
        "",
        f"- Goal, one token budget, {n:,} x {k}, under 1 s on one core: **{verdict}** it "
        f"({one[3]:.2f} s CPU, {one[2]:.2f} s wall).",
        f"- The LP-rounded greedy is {one[5]:.3g} accuracy units (summed over the batch) "
        f"below the certified LP bound; the guarantee is one query's largest gain.",
        f"- Two budgets: latency {two.latency / two.budget['latency']:.6f} of its budget, "
        f"tokens {two.tokens / two.budget['tokens']:.6f}; the Lagrangian bisection runs the "
        f"one-budget solver some 15-30 times, hence the time.",
        f"- Concurrency 8: predicted list-scheduling makespan {conc.makespan:.4g}s against a "
        f"budget of {conc.budget['latency']:.4g}s (guaranteed by Graham's bound, 8 caps "
        f"tried, so about 8 solves).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
