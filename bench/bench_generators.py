"""Throughput of the generator backends on the same work: vLLM vs transformers.

Runs the embedded SmolLM2-135M-Instruct on arithmetic prompts (``--prompts`` prompts, ``n``
samples each, up to ``--max-tokens`` new tokens, temperature 0.7) with each backend, after one
warm-up call, and writes generated tokens per second to ``docs/bench_generators.md``.

    python bench/bench_generators.py [--prompts 8 --n 8 --max-tokens 64 --repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench_generators.md"


def prompts(k):
    from ttcrouter.executors.base import GenerationRequest

    pairs = [(3, 4), (6, 7), (12, 9), (25, 17), (8, 8), (41, 3), (9, 6), (14, 28)]
    out = []
    for i in range(k):
        a, b = pairs[i % len(pairs)]
        out.append(GenerationRequest(f"What is {a + i // len(pairs)} + {b}?"))
    return out


def run(gen, reqs, args):
    gen.generate(reqs[:1], n=2, max_tokens=8)  # warm-up (engine start, caches)
    rows = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = gen.generate(reqs, n=args.n, max_tokens=args.max_tokens, temperature=0.7)
        dt = time.perf_counter() - t0
        tokens = sum(c.tokens for r in res for c in r)
        rows.append((tokens, dt))
    return rows


def load():
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=DOC)
    args = p.parse_args()

    import torch

    from ttcrouter.executors.hf_backend import TransformersGenerator
    from ttcrouter.executors.vllm_backend import VLLMGenerator

    reqs = prompts(args.prompts)
    loads = [load()]
    results = {}
    t0 = time.perf_counter()
    gen = VLLMGenerator(enforce_eager=True, max_model_len=1024, kv_cache_space_gb=2, seed=0)
    gen.llm
    start_vllm = time.perf_counter() - t0
    results["vLLM (eager, prefix caching)"] = run(gen, reqs, args)
    gen.close()
    loads.append(load())
    t0 = time.perf_counter()
    hf = TransformersGenerator(device="cpu", seed=0)
    hf.hf_model
    start_hf = time.perf_counter() - t0
    results[f"transformers generate ({hf.hf_model.dtype}, batch {args.prompts * args.n})"] = run(
        hf, reqs, args
    )
    hf.close()
    loads.append(load())

    rates = {k: max(t / d for t, d in v) for k, v in results.items()}
    names = list(results)
    ratio = rates[names[0]] / rates[names[1]]
    lines = [
        "# Generator throughput: vLLM vs transformers",
        "",
        f"Command: `python bench/bench_generators.py --prompts {args.prompts} --n {args.n} "
        f"--max-tokens {args.max_tokens} --repeats {args.repeats}`",
        "",
        f"Work: {args.prompts} arithmetic prompts x n={args.n} samples x up to "
        f"{args.max_tokens} new tokens, temperature 0.7, top_p 1.0, embedded "
        "SmolLM2-135M-Instruct (bf16 weights), one warm-up call per backend first.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| backend | run | generated tokens | seconds | tokens/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, rows in results.items():
        for i, (tokens, dt) in enumerate(rows):
            lines.append(f"| {name} | {i + 1} | {tokens} | {dt:.1f} | {tokens / dt:.1f} |")
    lines += [
        "",
        f"Best run: vLLM {rates[names[0]]:.1f} tokens/s, transformers {rates[names[1]]:.1f} "
        f"tokens/s: **vLLM / transformers = {ratio:.2f}x** (target >= 2x).",
        f"Start-up: vLLM engine {start_vllm:.0f} s, transformers model {start_hf:.0f} s.",
        "",
        f"1-minute load average at start / after vLLM / after transformers: "
        + " / ".join(f"{x:.1f}" for x in loads)
        + ". The machine has 2 cores; a load above 2 means other work shared the CPU while "
        "this ran, which slows both backends (not necessarily equally): treat the figures as "
        "indicative.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
