"""Latency of the strategy executors against the bare vLLM engine, one prompt at a time.

Measures, for one prompt and up to 64 new tokens per candidate:

- the bare engine: ``vllm.LLM.generate`` with the same ``SamplingParams`` the executor uses
  (n samples, temperature 0.7, token log-probabilities on), prompt pre-tokenised;
- best-of-N through :class:`ttcrouter.executors.StrategyExecutor` (generation, answer
  extraction, log-prob scoring, selection);
- majority voting through the executor (no log-probabilities, no scoring);
- PRM-style beam search through the executor (step-wise, ``"\\n"`` steps of at most 16
  tokens, at most 8 steps, 64 tokens per beam);

at n = 1, 4, 16, and writes the medians, the ratios to n = 1 and the executor's overhead over
the bare engine into ``docs/bench_latency.md``.

Every cell is warmed up at every n before timing (a first call with new sampling parameters
pays one-time costs), the cells run in a fresh seeded random order at every (rep, n) (so no
cell always runs right after the same neighbour), and the overhead is the median over reps of
the ratio executor / bare engine measured in the same rep, not a ratio of two medians. The
time each executor call spends outside the engine call is reported in milliseconds, a figure
the machine's load barely moves. The load average is recorded at the start and the end.

Run: ``python bench/bench_latency.py`` (starts one engine; about 10 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: A prompt the embedded model answers at length, so nearly every sample runs the full token
#: budget and the executor and the bare engine decode the same number of tokens.
PROMPT = ("Explain step by step how to compute 37 times 48, writing every intermediate result "
          "on its own line.")
BEAMS = {1: (1, 1), 4: (4, 2), 16: (16, 4)}


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--step-max-tokens", type=int, default=16)
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--compiled", action="store_true", help="compile the engine (slower start)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="KV-cache block size of the engine (CPU default 128; prefix caching "
                             "reuses whole blocks only)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs"
                                              / "bench_latency.md"))
    args = parser.parse_args(argv)

    from vllm import SamplingParams

    from ttcrouter.executors.base import GenerationRequest
    from ttcrouter.executors import StrategyExecutor
    from ttcrouter.executors.vllm_backend import VLLMGenerator
    from ttcrouter.strategies import BeamSearch, BestOfN, MajorityVote

    extra = {} if args.block_size is None else {"block_size": args.block_size}
    gen = VLLMGenerator(enforce_eager=not args.compiled, max_model_len=1024,
                        kv_cache_space_gb=2, **extra)
    t0 = time.perf_counter()
    llm = gen.llm
    start_s = time.perf_counter() - t0
    ids = gen.prompt_token_ids([GenerationRequest(PROMPT)])[0]

    # Instrumentation: time spent inside the engine call and inside the backend's generate(),
    # so the executor's own overhead is measured directly, not only as a noisy difference.
    clock = {"engine": 0.0, "backend": 0.0}

    def timed(fn, key):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                clock[key] += time.perf_counter() - t
        return wrapper

    engine_generate = llm.generate
    llm.generate = timed(engine_generate, "engine")
    gen.generate = timed(gen.generate, "backend")
    ex = StrategyExecutor(gen, max_tokens=args.max_tokens, step_max_tokens=args.step_max_tokens,
                          temperature=0.7)

    def bare(n, logprobs=True):
        params = SamplingParams(n=n, temperature=0.7, top_p=1.0, max_tokens=args.max_tokens,
                                logprobs=0 if logprobs else None)
        t = time.perf_counter()
        out = engine_generate([{"prompt_token_ids": ids}], params, use_tqdm=False)
        dt = time.perf_counter() - t
        return dt, sum(len(o.token_ids) for o in out[0].outputs), 1, dt, dt

    def run(strategy):
        clock.update(engine=0.0, backend=0.0)
        t = time.perf_counter()
        r = ex.execute(strategy, PROMPT)
        dt = time.perf_counter() - t
        assert r.error is None, r.error
        return dt, r.tokens, r.steps, clock["engine"], clock["backend"]

    cells = {
        "bare engine, logprobs": bare,
        "best-of-N (executor)": lambda n: run(BestOfN(n)),
        "bare engine, no logprobs": lambda n: bare(n, logprobs=False),
        "majority vote (executor)": lambda n: run(MajorityVote(n)),
        "beam search (executor)": lambda n: run(BeamSearch(*BEAMS[n], max_steps=8)),
    }
    load_start = os.getloadavg()
    # Warm-up: every cell at every n, so no timed run pays a first call's one-time costs.
    for n in args.ns:
        for fn in cells.values():
            fn(n)
    # Reps are interleaved across cells, so load from other jobs spreads over all of them; the
    # order is shuffled at every (rep, n): a fixed or rotated order keeps each cell right after
    # the same neighbour, and a neighbour's after-effects would then bias one cell.
    names = list(cells)
    raw = {(name, n): [] for name in cells for n in args.ns}
    rng = random.Random(0)
    for rep in range(args.reps):
        for n in args.ns:
            for name in rng.sample(names, len(names)):
                got = cells[name](n)
                raw[name, n].append(got)
                print(f"rep {rep} {name:26s} n={n:2d} {got[0]:.2f}s tokens {got[1]}", flush=True)
    load_end = os.getloadavg()
    results = {}
    for key, runs in raw.items():
        times = [r[0] for r in runs]
        results[key] = dict(lat=_median(times), tok=_median([r[1] for r in runs]),
                            steps=_median([r[2] for r in runs]),
                            engine=sum(r[3] for r in runs), backend=sum(r[4] for r in runs),
                            total=sum(times), spread=(min(times), max(times)),
                            times=times, outside_ms=_median([1000 * (r[0] - r[3]) for r in runs]))
    gen.close()
    write_report(args, results, start_s, (load_start, load_end))


def write_report(args, results, start_s, load):
    ns = args.ns
    lines = [
        "# Executor latency vs the bare vLLM engine",
        "",
        "Generated by `python bench/bench_latency.py` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; vLLM CPU engine "
        f"({'compiled' if args.compiled else 'eager'}, KV block size "
        f"{args.block_size or 'default (128 on CPU)'}, started in {start_s:.0f} s), embedded "
        "SmolLM2-135M-Instruct. Machine shared with other jobs: load average (1, 5, 15 min) "
        f"{' / '.join(f'{x:.2f}' for x in load[0])} at the start, "
        f"{' / '.join(f'{x:.2f}' for x in load[1])} at the end.",
        "",
        f"One prompt ({PROMPT!r}), at most {args.max_tokens} new tokens per candidate, "
        f"temperature 0.7, median of {args.reps} timed runs after a warm-up of every cell at "
        "every n, the cells in a seeded random order at every (rep, n). Beam search: "
        f"`\\n`-delimited steps of at most {args.step_max_tokens} tokens, at most 8 steps, "
        f"{args.max_tokens} tokens per beam, "
        + ", ".join(f"n={n}: BeamSearch({a}, {b})" for n, (a, b) in BEAMS.items() if n in ns)
        + ". Best-of-N scores with the log-prob scorer, so it asks the engine for token "
        "log-probabilities and is compared with the bare engine asking for them too; majority "
        "voting asks for none and is compared with the bare engine without them. The prompt "
        "makes the model write at length, so samples run the full budget (see the token counts) "
        "and both sides decode the same amount.",
        "",
        "## Latency (seconds, median) and generated tokens",
        "",
        "| method | " + " | ".join(f"n={n}" for n in ns) + " |",
        "| --- | " + " | ".join("---" for _ in ns) + " |",
    ]
    names = list(dict.fromkeys(k[0] for k in results))
    for name in names:
        cells = []
        for n in ns:
            r = results[name, n]
            extra = f", {r['steps']:.0f} steps" if name.startswith("beam") else ""
            cells.append(f"{r['lat']:.2f} s ({r['tok']:.0f} tok{extra})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Ratio to n=1 (same method)", "",
              "| method | " + " | ".join(f"n={n}" for n in ns) + " |",
              "| --- | " + " | ".join("---" for _ in ns) + " |"]
    for name in names:
        base = results[name, ns[0]]["lat"]
        lines.append(f"| {name} | " + " | ".join(
            f"{results[name, n]['lat'] / base:.2f}" for n in ns) + " |")
    lines += ["", "## Executor overhead over the bare engine (same n)", "",
              "Median over reps of (executor latency / matching bare-engine latency in the same "
              "rep) at the same n, then the executor's ratio n=max / n=1 beside the bare "
              "engine's, both from medians (target: within 10%).",
              "",
              "| method | " + " | ".join(f"n={n}" for n in ns) + " | ratio(n=max) vs bare | "
              "outside the engine, ms per call (median, " + ", ".join(f"n={n}" for n in ns) + ") |",
              "| --- | " + " | ".join("---" for _ in ns) + " | --- | --- |"]
    pairs = {"best-of-N (executor)": "bare engine, logprobs",
             "majority vote (executor)": "bare engine, no logprobs"}
    for name, ref in pairs.items():
        bare = {n: results[ref, n]["lat"] for n in ns}
        over = [_median([a / b for a, b in zip(results[name, n]["times"],
                                               results[ref, n]["times"])]) for n in ns]
        ratio_ex = results[name, ns[-1]]["lat"] / results[name, ns[0]]["lat"]
        ratio_bare = bare[ns[-1]] / bare[ns[0]]
        lines.append(f"| {name} | " + " | ".join(f"{o:.2f}x" for o in over)
                     + f" | {ratio_ex:.2f} vs {ratio_bare:.2f} "
                       f"({100 * (ratio_ex / ratio_bare - 1):+.0f}%) | "
                     + " / ".join(f"{results[name, n]['outside_ms']:.1f}" for n in ns) + " |")
    lines += ["", "## Where the time goes (all timed runs summed)", "",
              "Engine: inside `vllm.LLM.generate`. Backend: `VLLMGenerator.generate` around it "
              "(chat template, tokenisation, output conversion). Executor: `StrategyExecutor` "
              "around the backend (step splitting, answer extraction, scoring, selection, beam "
              "bookkeeping). This split does not depend on the machine's load the way the "
              "ratios above do.", "",
              "| method | n | total s | engine | backend overhead | executor overhead |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name in names:
        if name.startswith("bare"):
            continue
        for n in ns:
            r = results[name, n]
            lines.append(
                f"| {name} | {n} | {r['total']:.2f} | {100 * r['engine'] / r['total']:.1f}% | "
                f"{100 * (r['backend'] - r['engine']) / r['total']:.1f}% | "
                f"{100 * (r['total'] - r['backend']) / r['total']:.1f}% |")
    outside = max(
        (results[name, n]["total"] - results[name, n]["engine"]) / results[name, n]["total"]
        for name in names if not name.startswith("bare") for n in ns
    )
    lines += [
        "",
        "Reading: the executor and the backend together spend at most "
        f"{100 * outside:.1f}% of any cell's time outside the engine call; the rest is the "
        "engine decoding. Differences between an executor row and its bare-engine row in the "
        "ratio tables are therefore the engine's own run-to-run variation (other jobs share "
        "these 2 cores), not executor overhead. Parallel samples share one request, so "
        "best-of-N and majority voting cost what the engine costs for n samples. Beam search "
        "pays one engine round trip per step (every step waits for all beams, and each beam "
        "re-sends its prefix), so its latency follows the number of steps and grows faster "
        "with n than the parallel methods'.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
