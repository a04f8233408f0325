"""Benchmark ProbeClassifier: fit time and accuracy vs training queries, grid throughput.

SYNTHETIC data (no model is run): 384-d unit "embeddings" around 8 query kinds, the 17
strategies of ``default_strategy_space()``, latent accuracies from a logistic rule (kind
difficulty + a per-kind gain per doubling of n + a within-kind direction of the embedding),
soft labels = mean of 4 Bernoulli draws per (query, strategy), as in a real runs table.

Writes a Markdown table to docs/bench_probe.md (or --out).

    python bench/bench_probe.py [--sizes 50 100 200 400] [--out docs/bench_probe.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

from ttcrouter.probe import ProbeClassifier, soft_to_weighted
from ttcrouter.strategies import METHODS, default_strategy_space, encode_strategies

D = 384
N_KINDS = 8


def make_problem(n_queries, seed, d=D, repeats=4):
    """Embeddings E (n, d), strategy encodings S (17, k), latent P (n, 17), soft labels Y."""
    world = np.random.default_rng(12345)  # the same "world" for train and test
    centers = world.normal(size=(N_KINDS, d))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    base = world.uniform(-2.5, 1.5, N_KINDS)
    gain = world.uniform(0.0, 0.6, size=(N_KINDS, len(METHODS)))
    u = world.normal(size=d)
    u /= np.linalg.norm(u)
    S = encode_strategies(default_strategy_space())
    method = S[:, : len(METHODS)].argmax(axis=1)
    log2n = S[:, len(METHODS)]

    rng = np.random.default_rng(seed)
    kinds = rng.integers(N_KINDS, size=n_queries)
    noise = rng.normal(size=(n_queries, d)) / np.sqrt(d)
    E = centers[kinds] + 0.8 * noise
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    z = (noise @ u) * np.sqrt(d)  # ~N(0, 1), visible in the embedding
    logit = base[kinds, None] + gain[kinds][:, method] * log2n[None, :] + 0.7 * z[:, None]
    P = 1 / (1 + np.exp(-logit))
    Y = rng.binomial(repeats, P) / repeats
    return E.astype(np.float32), S, P, Y


def cross_rows(E, S):
    return np.hstack([np.repeat(E, len(S), axis=0), np.tile(S, (len(E), 1))])


def fit_probe(E, S, Y, **params):
    X = cross_rows(E, S)
    groups = np.repeat(np.arange(len(E)), len(S))
    X2, y2, w2, g2 = soft_to_weighted(X, Y.reshape(-1), groups)
    probe = ProbeClassifier(random_state=0, **params)
    t0, c0 = time.perf_counter(), time.process_time()
    probe.fit(X2, y2, sample_weight=w2, groups=g2)
    return probe, time.perf_counter() - t0, time.process_time() - c0, len(X2)


def grid_throughput(probe, S, n_queries=4000, repeats=3):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        E = make_problem(n_queries, seed=99)[0]
        probe.predict_proba_grid(E[:100], S)  # warm-up
        best, best_cpu = np.inf, np.inf
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            probe.predict_proba_grid(E, S)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        return n_queries / best, n_queries / best_cpu
    finally:
        torch.set_num_threads(old)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--out", default=os.path.join("docs", "bench_probe.md"))
    args = ap.parse_args(argv)

    E_te, S, P_te, _ = make_problem(1000, seed=1)
    E_w, _, _, Y_w = make_problem(20, seed=2)
    fit_probe(E_w, S, Y_w, max_epochs=1)  # warm-up: first torch/skorch calls are slow
    rows = []
    probe = None
    for n in args.sizes:
        E, S, P, Y = make_problem(n, seed=0)
        probe, secs, cpu, n_rows = fit_probe(E, S, Y)
        mae = np.abs(probe.predict_proba_grid(E_te, S) - P_te).mean()
        static = np.abs(Y.mean(axis=0)[None, :] - P_te).mean()
        rows.append((n, n_rows, secs, cpu, mae, static))
        print(f"n={n}: {n_rows} rows, fit {secs:.1f}s ({cpu:.1f}s CPU), MAE {mae:.3f} (static {static:.3f})",
              flush=True)
    qps, qps_cpu = grid_throughput(probe, S)
    print(f"predict_proba_grid: {qps:,.0f} queries/s wall, {qps_cpu:,.0f} per CPU second",
          flush=True)

    p = ProbeClassifier()
    lines = [
        "# ProbeClassifier benchmark",
        "",
        f"Command: `python bench/bench_probe.py --sizes {' '.join(map(str, args.sizes))}`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(shared with other jobs; figures are noisy; load average at the end "
        f"{os.getloadavg()[0]:.1f}), Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}  ",
        f"Probe: defaults (hidden_units={p.hidden_units}, max_epochs={p.max_epochs}, "
        f"lr={p.lr}, batch_size={p.batch_size}, cv={p.cv}, n_threads={p.n_threads}), "
        "random_state=0.",
        "",
        "SYNTHETIC data (see the module docstring): 384-d embeddings, 17 strategies, soft "
        "labels from 4 draws; MAE = mean |predicted - latent accuracy| on 1000 held-out "
        "queries; *static* = per-strategy training mean (no query features).",
        "",
        "Fit time is wall clock; CPU time (one torch thread) is what the fit costs on an "
        "idle core.",
        "",
        "| training queries | probe rows (after soft-label doubling) | fit wall (s) | "
        "fit CPU (s) | MAE probe | MAE static |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, n_rows, secs, cpu, mae, static in rows:
        lines.append(
            f"| {n} | {n_rows} | {secs:.1f} | {cpu:.1f} | {mae:.3f} | {static:.3f} |"
        )
    lines += [
        "",
        f"`predict_proba_grid` (probe fitted on {args.sizes[-1]} queries, 4000 queries x 17 "
        f"strategies, `torch.set_num_threads(1)`, best of 3): **{qps:,.0f} queries/s** wall "
        f"clock, **{qps_cpu:,.0f} queries per CPU second** (one core's rate when idle).",
        "",
    ]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
