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


def cpu_seconds():
    """CPU time (user + system) of this process and all its children (the vLLM engine)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:  # pragma: no cover - a child exited meanwhile
            pass
    return total


def run(gen, reqs, args):
    gen.generate(reqs[:1], n=2, max_tokens=8)  # warm-up (engine start, caches)
    rows = []
    for _ in range(args.repeats):
        c0, t0 = cpu_seconds(), time.perf_counter()
        res = gen.generate(reqs, n=args.n, max_tokens=args.max_tokens, temperature=0.7)
        dt, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        tokens = sum(c.tokens for r in res for c in r)
        rows.append((tokens, dt, cpu))
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
    p.add_argument(
        "--hf-threads", type=int, default=1,
        help="torch threads for transformers (1 matches the vLLM CPU worker, which binds one "
        "OpenMP thread per core it does not reserve: one on a 2-core machine)",
    )
    p.add_argument(
        "--binds", default="auto",
        help="comma-separated VLLM_CPU_OMP_THREADS_BIND values to compare (CPU only), e.g. "
        "'auto,nobind': 'auto' binds the engine's OpenMP threads to all cores but one, "
        "which it reserves for the scheduler; 'nobind' leaves threads to the OS",
    )
    args = p.parse_args()

    import torch

    from ttcrouter.executors.hf_backend import TransformersGenerator
    from ttcrouter.executors.vllm_backend import VLLMGenerator

    reqs = prompts(args.prompts)
    loads = [load()]
    results = {}
    start_vllm = {}
    for bind in args.binds.split(","):
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
        t0 = time.perf_counter()
        gen = VLLMGenerator(enforce_eager=True, max_model_len=1024, kv_cache_space_gb=2, seed=0)
        gen.llm
        start_vllm[bind] = time.perf_counter() - t0
        results[f"vLLM (eager, prefix caching, threads bind {bind})"] = run(gen, reqs, args)
        gen.close()
        loads.append(load())
    torch.set_num_threads(args.hf_threads)
    t0 = time.perf_counter()
    hf = TransformersGenerator(device="cpu", seed=0)
    hf.hf_model
    start_hf = time.perf_counter() - t0
    results[f"transformers generate ({hf.hf_model.dtype}, batch {args.prompts * args.n})"] = run(
        hf, reqs, args
    )
    hf.close()
    loads.append(load())

    rates = {k: max(t / d for t, d, _ in v) for k, v in results.items()}
    cpu_rates = {k: max(t / c for t, _, c in v) for k, v in results.items()}
    names = list(results)
    best_vllm = max(names[:-1], key=rates.get)
    ratio = rates[best_vllm] / rates[names[-1]]
    cpu_ratio = cpu_rates[best_vllm] / cpu_rates[names[-1]]
    lines = [
        "# Generator throughput: vLLM vs transformers",
        "",
        f"Command: `python bench/bench_generators.py --prompts {args.prompts} --n {args.n} "
        f"--max-tokens {args.max_tokens} --repeats {args.repeats} --hf-threads {args.hf_threads} "
        f"--binds {args.binds}`",
        "",
        f"Work: {args.prompts} arithmetic prompts x n={args.n} samples x up to "
        f"{args.max_tokens} new tokens, temperature 0.7, top_p 1.0, embedded "
        "SmolLM2-135M-Instruct (bf16 weights), one warm-up call per backend first.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({args.hf_threads} thread(s) for transformers), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| backend | run | generated tokens | wall s | tokens/s (wall) | CPU s | tokens per CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rows in results.items():
        for i, (tokens, dt, cpu) in enumerate(rows):
            lines.append(
                f"| {name} | {i + 1} | {tokens} | {dt:.1f} | {tokens / dt:.1f} | {cpu:.1f} "
                f"| {tokens / cpu:.1f} |"
            )
    lines += [
        "",
        f"Best run: {best_vllm} {rates[best_vllm]:.1f} tokens/s, transformers "
        f"{rates[names[-1]]:.1f} tokens/s: **vLLM / transformers = {ratio:.2f}x** "
        "(target >= 2x). Per CPU-second (all processes of the backend, so less sensitive to "
        f"other work on the machine): **{cpu_ratio:.2f}x** ({cpu_rates[best_vllm]:.1f} vs "
        f"{cpu_rates[names[-1]]:.1f} tokens per CPU s).",
        "Start-up: vLLM engine "
        + ", ".join(f"{v:.0f} s ({k})" for k, v in start_vllm.items())
        + f"; transformers model {start_hf:.0f} s.",
        "",
        "1-minute load average at start / after each vLLM engine / after transformers: "
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
