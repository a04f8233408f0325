"""Early-stopping votes against majority@16, direct against step-by-step prompts: docs/tradeoffs.md.

Run: python docs/tradeoffs.py [RUNS] [--out docs/tradeoffs.md] [--before OLD_RUNS]

RUNS is a runs table or a collection directory (default: the shipped table). Everything is
read from the table; nothing is generated. Intervals are 90% percentile intervals of a
paired bootstrap over queries (2000 resamples, seed 0): each resample draws queries with
replacement and recomputes both strategies' means on the same queries.

1. Each early-stopping vote against ``majority_vote@n=16`` of the same prompt mode: accuracy
   and its difference, samples drawn, mean tokens and mean latency (and their ratios).
2. ``direct`` against ``cot`` per difficulty level, at one sample and at 16.
3. Whether tokens and latency rank the strategies in the same order (Kendall's tau between
   the strategies' mean tokens and mean latency), the limit of the table before this one.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
N_BOOT = 2000


def per_query(runs):
    """Per (query, strategy) means of correct, tokens, latency_s and n_samples."""
    cols = ["correct", "tokens", "latency_s"] + (["n_samples"] if "n_samples" in runs else [])
    return runs.groupby(["strategy", "query_id"])[cols].mean()


def paired(means, a, b, col, stat="diff", rng_seed=0):
    """Mean of ``a`` and ``b`` on ``col`` over shared queries, and a bootstrap interval.

    ``stat="diff"``: a - b; ``"ratio"``: mean(a) / mean(b).
    """
    x, y = means.loc[a][col], means.loc[b][col]
    q = x.index.intersection(y.index)
    x, y = x.loc[q].to_numpy(float), y.loc[q].to_numpy(float)
    rng = np.random.default_rng(rng_seed)
    idx = rng.integers(0, len(q), size=(N_BOOT, len(q)))
    if stat == "diff":
        point, boot = x.mean() - y.mean(), x[idx].mean(1) - y[idx].mean(1)
    else:
        point, boot = x.mean() / y.mean(), x[idx].mean(1) / y[idx].mean(1)
    lo, hi = np.percentile(boot, [5, 95])
    return point, lo, hi


def md_table(rows, cols):
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def early_stopping(runs, means):
    from ttcrouter.strategies import AdaptiveVote, as_strategy

    rows = []
    names = sorted({s for s in runs["strategy"].unique()
                    if isinstance(as_strategy(s), AdaptiveVote)},
                   key=lambda s: (as_strategy(s).mode, s))
    for s in names:
        spec = as_strategy(s)
        ref = "majority_vote@n=16" + ("" if spec.mode == "cot" else f",mode={spec.mode}")
        if ref not in means.index.get_level_values(0):
            continue
        acc_d = paired(means, s, ref, "correct")
        tok_r = paired(means, s, ref, "tokens", "ratio")
        lat_r = paired(means, s, ref, "latency_s", "ratio")
        drawn = means.loc[s]["n_samples"].mean() if "n_samples" in means else np.nan
        rows.append({
            "strategy": f"`{s}`",
            "accuracy": f"{means.loc[s]['correct'].mean():.3f}",
            "majority@16": f"{means.loc[ref]['correct'].mean():.3f}",
            "difference [90%]": f"{acc_d[0]:+.3f} [{acc_d[1]:+.3f}, {acc_d[2]:+.3f}]",
            "samples": f"{drawn:.1f}",
            "samples saved": f"{1 - drawn / spec.n:.0%}",
            "tokens": f"{means.loc[s]['tokens'].mean():.0f}",
            "tokens / maj@16 [90%]": f"{tok_r[0]:.2f} [{tok_r[1]:.2f}, {tok_r[2]:.2f}]",
            "latency (s)": f"{means.loc[s]['latency_s'].mean():.2f}",
            "latency / maj@16 [90%]": f"{lat_r[0]:.2f} [{lat_r[1]:.2f}, {lat_r[2]:.2f}]",
        })
    return rows


def direct_vs_cot(runs, means):
    if "level" not in runs or not runs["strategy"].str.contains("mode=direct").any():
        return []
    level = runs.drop_duplicates("query_id").set_index("query_id")["level"]
    rows = []
    for n in (1, 16):
        cot, direct = f"majority_vote@n={n}", f"majority_vote@n={n},mode=direct"
        for lv in [*sorted(level.unique()), "all"]:
            q = level.index if lv == "all" else level.index[level == lv]
            sub = means.loc[(slice(None), list(q)), :]
            d = paired(sub, direct, cot, "correct")
            rows.append({
                "n": n, "level": lv, "queries": len(q),
                "cot": f"{sub.loc[cot]['correct'].mean():.3f}",
                "direct": f"{sub.loc[direct]['correct'].mean():.3f}",
                "direct - cot [90%]": f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]",
                "cot tokens": f"{sub.loc[cot]['tokens'].mean():.0f}",
                "direct tokens": f"{sub.loc[direct]['tokens'].mean():.0f}",
                "cot latency (s)": f"{sub.loc[cot]['latency_s'].mean():.2f}",
                "direct latency (s)": f"{sub.loc[direct]['latency_s'].mean():.2f}",
            })
    return rows


def rank_agreement(runs):
    from scipy.stats import kendalltau

    m = runs.groupby("strategy")[["tokens", "latency_s"]].mean()
    tau = kendalltau(m["tokens"], m["latency_s"]).statistic
    t, lat = m["tokens"].to_numpy(), m["latency_s"].to_numpy()
    upper = np.triu_indices(len(m), k=1)
    # strictly opposite: one strategy dearer in tokens and cheaper in latency (ties excluded)
    swapped = int((((t[:, None] - t[None, :]) * (lat[:, None] - lat[None, :]))[upper] < 0).sum())
    return tau, swapped, len(upper[0]), m


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?",
                        default=str(ROOT / "ttcrouter" / "data" / "arithmetic_smollm2_runs.parquet"))
    parser.add_argument("--out", default=str(DOCS / "tradeoffs.md"))
    parser.add_argument("--before", default=None,
                        help="an earlier runs table whose rank agreement is shown beside")
    args = parser.parse_args(argv)

    from ttcrouter.collection import load_runs

    runs = load_runs(args.runs)
    runs = runs[runs["error"].isna()]
    means = per_query(runs)
    es = early_stopping(runs, means)
    dc = direct_vs_cot(runs, means)
    tau, swapped, pairs, m = rank_agreement(runs)
    shown = os.path.relpath(args.runs, ROOT)
    before = ""
    if args.before:
        old = load_runs(args.before)
        b_tau, b_swapped, b_pairs, b_m = rank_agreement(old[old["error"].isna()])
        before = (f" The table before this one (`{os.path.relpath(args.before, ROOT)}`, "
                  f"{len(b_m)} strategies): tau {b_tau:.2f}, {b_swapped} of {b_pairs} pairs "
                  "in opposite orders.")
    lines = [
        "# Strategies that trade latency against tokens: what the table shows", "",
        f"Command: `python docs/tradeoffs.py {shown}`  ",
        f"Date: {time.strftime('%Y-%m-%d', time.gmtime())}. Table: {runs['query_id'].nunique()} "
        f"queries, {runs['strategy'].nunique()} strategies, {len(runs)} rows. Means over "
        "queries of each query's mean over its repeats; intervals are 90% paired bootstrap "
        f"intervals over queries ({N_BOOT} resamples).", "",
        "## Early-stopping votes against majority vote at n = 16", "",
        "Each configuration against `majority_vote@n=16` of the same prompt mode, derived "
        "from the same pools (the vote's samples are the first ones of the pool that "
        "majority@16 votes over). `samples saved` is 1 - samples drawn / 16. Latency is the "
        "sum of the rounds' modelled request times (one request of `b` samples per round) "
        "against one request of 16.", "",
        md_table(es, list(es[0]) if es else ["strategy"]) if es else "No early-stopping "
        "strategies in this table.", "",
        "## `direct` against `cot` per difficulty level", "",
        md_table(dc, list(dc[0])) if dc else "No `direct` strategies in this table.", "",
        "## Do tokens and latency rank the strategies the same way?", "",
        f"Kendall's tau between the {len(m)} strategies' mean tokens and mean latency: "
        f"**{tau:.2f}**; {swapped} of {pairs} pairs of strategies are in opposite orders "
        "on the two axes (a pair in opposite orders is one where a router that prices "
        "tokens and one that prices latency can disagree)." + before, "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
