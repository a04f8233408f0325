"""Early-stopping votes and prompt modes on the real engine: the latency model, and the time of a collection.

Writes docs/bench_adaptive.md. Run once (it starts one vLLM engine, eager):

    HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=2 python bench/bench_adaptive.py [--queries 30]

1. The latency model of derived early-stopping rows. The collection charges a round of
   ``batch`` samples ``L_b(x) = a + b x`` seconds, x the round's longest sample, the line of
   isolated requests of ``batch`` samples (the calibration). Here the line is fitted on
   isolated ``majority_vote@n=<batch>`` executions, then ``AdaptiveVote`` runs live, one query
   at a time, on ``--queries`` queries; each live latency (the sum of its rounds' wall
   clocks) is compared with the model's sum over the same rounds. Reported: the ratio of
   the means (live / modelled) and the median per-query ratio.
2. The pools of a collection chunk: ``sample_pool`` of ``--chunk`` queries, 16 samples each,
   in each prompt mode, timed; with the grid's other counts this gives the time of the
   re-collection in docs/collection.md. Also the mean generated tokens and the one-sample
   accuracy of each mode on those queries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--calibration", type=int, default=12)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_adaptive.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import pandas as pd

    from ttcrouter.collection.latency import fit_latency_model, predict_latency
    from ttcrouter.datasets import arithmetic
    from ttcrouter.executors import StrategyExecutor, VLLMGenerator
    from ttcrouter.grading import is_correct
    from ttcrouter.provenance import hardware_info
    from ttcrouter.samples import derive_runs, samples_from_pool
    from ttcrouter.strategies import AdaptiveVote, MajorityVote

    spec = AdaptiveVote(16, batch=4, threshold=0.75)
    queries = arithmetic(args.queries + args.calibration, seed=11)
    texts = queries["query"].tolist()
    gen = VLLMGenerator(seed=0, enforce_eager=True, kv_cache_space_gb=2, max_model_len=1024)
    ex = StrategyExecutor(gen, max_tokens=args.max_tokens)
    t_start = time.perf_counter()
    ex.execute(MajorityVote(4), texts[0])  # warm-up
    load0 = os.getloadavg()[0]

    # 1. the line of isolated requests of `batch` samples
    xs, ys = [], []
    for q in texts[args.queries:]:
        t0 = time.perf_counter()
        res = ex.execute(MajorityVote(spec.batch), q)
        ys.append(time.perf_counter() - t0)
        xs.append(max(c.tokens for c in res.candidates))
    line = fit_latency_model(xs, ys)

    # live early-stopping votes, one query at a time
    live, modelled, drawn, rows = [], [], [], []
    for k, q in enumerate(texts[:args.queries]):
        res = ex.execute(spec, q)
        live.append(res.latency_s)
        rounds = {}
        for c in res.candidates:
            rounds.setdefault(c.round, []).append(c.tokens)
        modelled.append(sum(predict_latency(line, max(t)) for t in rounds.values()))
        drawn.append(len(res.candidates))
        rows += samples_from_pool(res, query_id=k, gold=None, repeat=0)
    derived = derive_runs(pd.DataFrame(rows), [spec],
                          request_latency=lambda n, x: predict_latency(line, x))
    # the samples table sorts pools by query_id (a string): compare query by query
    derived = derived.assign(k=derived["query_id"].astype(int)).sort_values("k")
    agree = derived["n_samples"].tolist() == drawn
    ratios = [a / b for a, b in zip(live, modelled)]

    # 2. a collection chunk's pools in each mode
    chunk = texts[:args.chunk]
    golds = queries["gold"].tolist()[:args.chunk]
    modes = {}
    for mode in ("cot", "direct"):
        t0 = time.perf_counter()
        pools = ex.sample_pool(chunk, 16, mode=mode)
        wall = time.perf_counter() - t0
        toks = [c.tokens for p in pools for c in p.candidates]
        acc = [int(bool(is_correct(c.answer, g))) for p, g in zip(pools, golds)
               for c in p.candidates]
        modes[mode] = (wall, statistics.mean(toks), statistics.mean(acc))
    gen.close()
    total = time.perf_counter() - t_start

    # the re-collection: 400 queries, 4 repeats, both modes, pools of 16
    chunks = -(-400 // args.chunk)
    pool_s = chunks * 4 * sum(m[0] for m in modes.values())
    # extended-pooled: 26 parallel strategies and 6 early-stopping votes, each timed alone on
    # 3 calibration queries (a vote's isolated time is about its live time here)
    cal_s = 3 * (26 * statistics.mean(ys) + 6 * statistics.mean(live))
    lines = [
        "# Early-stopping votes and prompt modes: latency model and collection time", "",
        f"Command: `python bench/bench_adaptive.py --queries {args.queries} --calibration "
        f"{args.calibration} --chunk {args.chunk} --max-tokens {args.max_tokens}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {total:.0f} s in all  ",
        f"Hardware: {hardware_info()['cpu']}, {os.cpu_count()} cores, no GPU, vLLM eager, "
        f"SmolLM2-135M; 1-minute load average {load0:.1f} at the start (a shared machine: "
        "wall clock is noisy).", "",
        f"## Live `{spec.name}` against its latency model ({args.queries} queries)", "",
        f"Line of isolated `majority_vote@n={spec.batch}` requests on {args.calibration} other "
        f"queries: latency = {line['a']:.3f} + {line['b']:.4f} x s ({line['kind']}), x = "
        "longest sample's tokens.", "",
        f"- samples drawn: mean {statistics.mean(drawn):.1f} of {spec.n} "
        f"({100 * (1 - statistics.mean(drawn) / spec.n):.0f}% saved against "
        f"majority_vote@n={spec.n}); rounds: "
        f"{dict(sorted(pd.Series([d // spec.batch for d in drawn]).value_counts().items()))}",
        f"- derive_runs on the live samples stops after the same samples: {agree}",
        f"- live latency: mean {statistics.mean(live):.2f} s; modelled (sum over the same rounds "
        f"of the line): mean {statistics.mean(modelled):.2f} s",
        f"- ratio of the means live / modelled: **{statistics.mean(live) / statistics.mean(modelled):.2f}**; "
        f"median per-query ratio {statistics.median(ratios):.2f} (quartiles "
        f"{statistics.quantiles(ratios, n=4)[0]:.2f}-{statistics.quantiles(ratios, n=4)[2]:.2f})",
        "",
        f"## Pools of 16 for a chunk of {args.chunk} queries, per prompt mode", "",
        "| mode | wall clock (s) | mean generated tokens per sample | one-sample accuracy |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {m} | {w:.1f} | {t:.1f} | {a:.3f} |" for m, (w, t, a) in modes.items()],
        "",
        f"Estimated pools of the re-collection (400 queries, 4 repeats, both modes, pools of "
        f"16, max_tokens {args.max_tokens}): {chunks} chunks x 4 repeats x "
        f"({' + '.join(f'{m[0]:.0f}' for m in modes.values())} s) = **{pool_s / 3600:.1f} h** "
        f"on this machine under this load, plus the latency calibration of the 32 pooled "
        f"strategies on 3 queries (3 x (26 x {statistics.mean(ys):.1f} s + 6 x "
        f"{statistics.mean(live):.1f} s) = {cal_s / 60:.0f} min): about "
        f"**{(pool_s + cal_s) / 3600:.1f} h** in all. Beam search rows are carried over, not "
        "re-run.", "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
