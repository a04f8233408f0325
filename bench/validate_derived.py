"""Derived rows against live executions of the same strategies on the same queries.

Writes docs/validate_derived.md (and the live rows beside it). Run after a collection, on a
machine as quiet as the one that calibrated it:

    HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=4 python bench/validate_derived.py \
        collections/arith400_samples --queries 32

Every row of a pooled or early-stopping strategy in a collection is *derived* from kept
samples (:func:`ttcrouter.samples.derive_runs`): its tokens and answer are those of the first
samples of a pool, its latency is modelled (the calibrated request lines; the sum over the
rounds for an early-stopping vote). Here each strategy runs *live*, alone, one query at a
time (``StrategyExecutor.execute``, an early-stopping vote drawing its rounds as real
requests), on ``--queries`` queries drawn at random from the collection, on an engine set up
as the collection's (model, seed, sampling, prompts, KV cache).

The test: per strategy, the per-query differences live - derived (the derived value being
the mean over the query's repeats) are resampled over queries (2000 bootstrap resamples,
seed 0). Accuracy agrees when the 90% interval of the mean difference contains 0; tokens,
samples drawn and latency agree when the 90% interval of the ratio of the means (live /
derived) contains 1.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("majority_vote@n=4", "majority_vote@n=16", "adaptive_vote@n=16,b=4,t=0.75",
              "majority_vote@n=16,mode=direct", "adaptive_vote@n=16,b=4,t=0.75,mode=direct")
N_BOOT = 2000


def interval(live, derived, stat):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(live), size=(N_BOOT, len(live)))
    if stat == "diff":
        point, boot = live.mean() - derived.mean(), live[idx].mean(1) - derived[idx].mean(1)
    else:
        point, boot = live.mean() / derived.mean(), live[idx].mean(1) / derived[idx].mean(1)
    lo, hi = np.percentile(boot, [5, 95])
    agrees = lo <= (0.0 if stat == "diff" else 1.0) <= hi
    return point, lo, hi, agrees


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection", nargs="?", default=str(ROOT / "collections" /
                                                            "arith400_samples"))
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--out", default=str(ROOT / "docs" / "validate_derived.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import json

    import pandas as pd
    from tqdm import tqdm

    from ttcrouter.collection import load_collection
    from ttcrouter.executors.base import PromptMode
    from ttcrouter.executors.factory import make_executor
    from ttcrouter.grading import is_correct
    from ttcrouter.provenance import hardware_info
    from ttcrouter.strategies import as_strategy

    specs = [as_strategy(s) for s in args.strategies]
    names = [s.name for s in specs]
    runs = load_collection(args.collection)
    cfg = json.loads((Path(args.collection) / "_config.json").read_text())
    qids = np.sort(runs["query_id"].unique())
    rng = np.random.default_rng(0)
    chosen = sorted(rng.choice(qids, size=min(args.queries, len(qids)), replace=False))
    queries = runs.drop_duplicates("query_id").set_index("query_id").loc[chosen]

    samp = cfg["sampling"]
    ex = make_executor("vllm", None, seed=cfg.get("seed", 0), max_tokens=samp["max_tokens"],
                       temperature=samp["temperature"], kv_cache_space_gb=4)
    for mode, p in cfg.get("prompts", {}).items():
        ex.prompts = {**(ex.prompts or {}), mode: PromptMode(
            system=p["system"], prefix=p["prefix"], max_tokens=p["max_tokens"],
            stop=tuple(p["stop"]))}
    ex.execute(specs[0], queries["query"].iloc[0])  # warm-up
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    live = []
    for spec in specs:
        for qid, q in tqdm(list(queries.iterrows()), desc=spec.name, unit="query"):
            res = ex.execute(spec, q["query"])
            live.append({"query_id": qid, "strategy": spec.name, "latency_s": res.latency_s,
                         "tokens": res.tokens, "n_samples": len(res.candidates),
                         "correct": int(bool(is_correct(res.answer, q["gold"])))})
    ex.generator.close()
    wall = time.perf_counter() - t_start
    load1 = os.getloadavg()[0]
    live = pd.DataFrame(live)
    live.to_csv(Path(args.out).with_suffix(".live.csv"), index=False)

    derived = (runs[runs["query_id"].isin(chosen) & runs["strategy"].isin(names)]
               .groupby(["strategy", "query_id"])[["correct", "tokens", "latency_s",
                                                  "n_samples"]].mean())
    rows = []
    for spec in specs:
        lv = live[live["strategy"] == spec.name].set_index("query_id").loc[chosen]
        dv = derived.loc[spec.name].loc[chosen]
        row = {"strategy": f"`{spec.name}`"}
        for col, stat in (("correct", "diff"), ("n_samples", "ratio"), ("tokens", "ratio"),
                          ("latency_s", "ratio")):
            p, lo, hi, ok = interval(lv[col].to_numpy(float), dv[col].to_numpy(float), stat)
            label = {"correct": "accuracy live - derived", "n_samples": "samples live / derived",
                     "tokens": "tokens live / derived", "latency_s": "latency live / derived"}[col]
            fmt = "+.3f" if stat == "diff" else ".2f"
            row[label] = f"{p:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]" + ("" if ok else " **differs**")
        row["live latency (s)"] = f"{lv['latency_s'].mean():.2f}"
        row["derived latency (s)"] = f"{dv['latency_s'].mean():.2f}"
        rows.append(row)
    cols = list(rows[0])
    n_differ = sum(v.endswith("**differs**") for r in rows for v in r.values())
    n_tests = 4 * len(rows)
    lines = [
        "# Derived rows against live executions", "",
        f"Command: `python bench/validate_derived.py {os.path.relpath(args.collection, ROOT)} "
        f"--queries {len(chosen)}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; live runs {wall:.0f} s  ",
        f"Hardware: {hardware_info()['cpu']}, {os.cpu_count()} cores, no GPU, vLLM compiled, "
        f"SmolLM2-135M; 1-minute load average {load0:.1f} at the start, {load1:.1f} at the end.",
        "",
        f"{len(chosen)} queries drawn at random (seed 0) from the collection. Live: each "
        "strategy run alone, one query at a time, once per query. Derived: the collection's "
        "rows of the same queries, each query's mean over its repeats. Each cell: the "
        "point estimate and the 90% paired bootstrap interval over queries; **differs** "
        "marks an interval that excludes no difference (0 for accuracy, 1 for ratios).", "",
        "| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |",
        *["| " + " | ".join(r[c] for c in cols) + " |" for r in rows], "",
        f"{n_differ} of {n_tests} intervals exclude no difference; at 90% about "
        f"{n_tests / 10:.0f} would by chance alone if every derived row matched its live "
        "execution.", "",
        f"Live rows: `{Path(args.out).with_suffix('.live.csv').name}`.", "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
