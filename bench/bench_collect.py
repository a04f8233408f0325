"""Pooled collection: tokens saved against separate runs, and throughput against bare vLLM.

Writes docs/bench_collect.md. Run once (it starts one vLLM engine, eager):

    HF_HUB_OFFLINE=1 python bench/bench_collect.py [--queries 16] [--max-n 8]

1. Exact count from the grid: pooled collection draws ``max N`` samples per (query, repeat)
   for the three parallel methods at N in {1, 2, ..., max N}; running each strategy
   separately draws ``3 * sum(N)`` samples. Beam search is run for real either way.
2. A small real run: the same queries and grid, (a) pooled (``sample_pool`` once, every
   strategy derived) and (b) every strategy run separately (``execute_batch`` per strategy);
   generated tokens and wall clock of both.
3. Throughput on the same batch (the queries, n = max N samples each): the bare engine
   (``VLLMGenerator.generate``, no log-probabilities) against the collection's pooled step
   (``sample_pool`` with log-probabilities and scoring, derivation of every strategy,
   grading, and the atomic part write).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def grid_counts(max_n: int, repeats: int) -> dict:
    ns = [2**k for k in range(max_n.bit_length()) if 2**k <= max_n]
    separate = repeats * 3 * sum(ns)
    pooled = repeats * max_n
    return {"ns": ns, "separate": separate, "pooled": pooled, "ratio": separate / pooled}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--max-n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_collect.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from ttcrouter.collection import CollectionStore
    from ttcrouter.collection.rows import pooled_chunk
    from ttcrouter.provenance import hardware_info
    from ttcrouter.datasets import arithmetic
    from ttcrouter.executors import StrategyExecutor, VLLMGenerator
    from ttcrouter.executors.base import GenerationRequest
    from ttcrouter.strategies import BestOfN, MajorityVote, WeightedMajorityVote

    lines = ["# Pooled collection: tokens and throughput", "",
             f"Command: `python bench/bench_collect.py --queries {args.queries} --max-n "
             f"{args.max_n} --max-tokens {args.max_tokens}`  ", f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
             f"Hardware: {hardware_info()['cpu']}, {os.cpu_count()} cores, no GPU. The machine "
             "is shared with other jobs (a long collection ran beside this bench), so wall "
             "clock is noisy; the token counts are exact.", "",
             "## 1. Samples per query from the grid (exact)", "",
             "| grid (3 methods: majority, weighted majority, best-of-N) | repeats | separate runs | pooled | fewer samples |",
             "| --- | --- | --- | --- | --- |"]
    for max_n in (8, 16):
        for repeats in (1, 4):
            c = grid_counts(max_n, repeats)
            lines.append(f"| N in {c['ns']} | {repeats} | {c['separate']} | {c['pooled']} | "
                         f"{c['ratio']:.2f}x |")
    lines += ["", "Separate runs draw 3 * sum(N) samples per repeat; pooled collection draws "
              "max N per repeat and derives every strategy from prefixes of that pool. The "
              "ratio does not depend on the number of repeats. With an expected "
              "length per sample that does not depend on N, generated tokens shrink by the "
              "same factor; beam search configurations are run for real in both cases.", ""]

    queries = arithmetic(args.queries, seed=11)
    texts = queries["query"].tolist()
    gen = VLLMGenerator(seed=0, enforce_eager=True, max_model_len=1024, kv_cache_space_gb=4)
    ex = StrategyExecutor(gen, max_tokens=args.max_tokens)
    ns = grid_counts(args.max_n, 1)["ns"]
    strategies = [cls(n) for cls in (MajorityVote, WeightedMajorityVote, BestOfN) for n in ns]
    try:
        gen.generate([GenerationRequest(texts[0])], n=2, max_tokens=8)  # warm-up
        # 2. pooled vs separate, same grid, one repeat
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = CollectionStore(tmp)
            rows, pooled_tokens = pooled_chunk(ex, queries.to_dict("records"), strategies,
                                                0, args.max_n,
                                                {s.name: {"a": 0.0, "b": 0.0}
                                                 for s in strategies}, set())
            out.write_part(rows)
        t_pooled = time.perf_counter() - t0
        t0 = time.perf_counter()
        separate_tokens = 0
        for s in strategies:
            separate_tokens += sum(r.tokens for r in ex.execute_batch(s, texts))
        t_separate = time.perf_counter() - t0
        lines += ["## 2. A small real run", "",
                  f"{args.queries} arithmetic queries, the grid above with max N = "
                  f"{args.max_n}, one repeat, embedded SmolLM2-135M-Instruct on vLLM (eager), "
                  f"max_tokens={args.max_tokens}.", "",
                  "| | generated tokens | wall clock (s) |", "| --- | --- | --- |",
                  f"| every strategy run separately (`execute_batch` per strategy) | "
                  f"{separate_tokens} | {t_separate:.1f} |",
                  f"| pooled (`sample_pool` once, strategies derived) | {pooled_tokens} | "
                  f"{t_pooled:.1f} |",
                  f"| ratio | {separate_tokens / max(pooled_tokens, 1):.2f}x | "
                  f"{t_separate / max(t_pooled, 1e-9):.2f}x |", ""]
        # 3. throughput on the same batch
        reqs = [GenerationRequest(t) for t in texts]
        t0 = time.perf_counter()
        comps = gen.generate(reqs, n=args.max_n, max_tokens=args.max_tokens)
        t_bare = time.perf_counter() - t0
        bare_tokens = sum(c.tokens for cs in comps for c in cs)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = CollectionStore(tmp)
            rows, coll_tokens = pooled_chunk(ex, queries.to_dict("records"), strategies, 0,
                                              args.max_n,
                                              {s.name: {"a": 0.0, "b": 0.0}
                                               for s in strategies}, set())
            out.write_part(rows)
        t_coll = time.perf_counter() - t0
        lines += ["## 3. Throughput on the same batch", "",
                  f"{args.queries} prompts x n={args.max_n} samples x up to "
                  f"{args.max_tokens} tokens, one call each, same engine, one after the other.",
                  "", "| | generated tokens | wall clock (s) | tokens/s |",
                  "| --- | --- | --- | --- |",
                  f"| bare engine (`VLLMGenerator.generate`) | {bare_tokens} | {t_bare:.1f} | "
                  f"{bare_tokens / t_bare:.0f} |",
                  f"| collection step (sample_pool with log-probs + scoring, derive {len(strategies)} "
                  f"strategies, grade, write part) | {coll_tokens} | {t_coll:.1f} | "
                  f"{coll_tokens / t_coll:.0f} |",
                  f"| collection / bare | | | {(coll_tokens / t_coll) / (bare_tokens / t_bare):.2f} |",
                  "", f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f}.", ""]
    finally:
        gen.close()
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
