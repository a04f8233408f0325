"""Figures and tables of the shipped embedded runs table, written into docs/collection.md.

    python docs/collection_figures.py [--runs ttcrouter/data/arithmetic_smollm2_runs.parquet]

Replaces the text between the GENERATED markers of docs/collection.md and writes
docs/collection_accuracy.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


def text_hist(values, bins=10, width=40) -> list[str]:
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    top = max(counts.max(), 1)
    lines = []
    for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
        bracket = "]" if hi == 1.0 else ")"
        lines.append(f"[{lo:.1f}, {hi:.1f}{bracket} {'#' * int(round(width * c / top)):<{width}} {c}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default=str(ROOT / "ttcrouter/data/arithmetic_smollm2_runs.parquet"))
    parser.add_argument("--doc", default=str(ROOT / "docs/collection.md"))
    parser.add_argument("--png", default=str(ROOT / "docs/collection_accuracy.png"))
    args = parser.parse_args(argv)

    from ttcrouter.runs import aggregate_runs, read_runs

    df = read_runs(args.runs)
    prov = df.attrs.get("provenance", {})
    config = prov.get("config", {})
    planned_q = config.get("dataset", {}).get("n_queries")
    # the configuration's order, then strategies carried over from another table (beam search)
    strategies = list(config.get("strategies") or [])
    strategies += sorted(set(df["strategy"].unique()) - set(strategies))
    summary = aggregate_runs(df, missing="drop")
    parallel_names = [s for s in strategies if not s.startswith("beam_search")]
    par = aggregate_runs(df, strategies=parallel_names, missing="drop")
    ok = df[df["error"].isna()]
    repeats_done = ok.groupby(["query_id", "strategy"]).size()
    planned_repeats = 4
    planned_rows = (planned_q or df["query_id"].nunique()) * len(strategies) * planned_repeats

    Y = par.Y  # parallel strategies: every query with a pool
    single = Y.get("majority_vote@n=1")
    oracle = summary.Y.max(axis=1)
    pool_size = prov.get("pool_size") or 16
    pass_rate = None
    if "pool_correct" in df.columns:
        pooled = ok[ok["strategy"] == "majority_vote@n=1"].dropna(subset=["pool_correct"])
        pass_rate = (pooled.groupby(["query_id", "repeat"])["pool_correct"].first()
                     .groupby("query_id").mean() / pool_size)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = [s for s in ("majority_vote@n=1", "majority_vote@n=16", "best_of_n@n=16")
            if s in Y.columns]
    panels = (["one-sample accuracy from the pool"] if pass_rate is not None else []) + show \
        + ["oracle (best strategy per query)"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), sharey=False)
    for ax, name in zip(axes, panels):
        values = (oracle if name.startswith("oracle") else pass_rate
                  if name.startswith("one-sample") else Y[name])
        if name.startswith("oracle"):
            name = f"oracle, all {len(strategies)} strategies ({len(oracle)} q.)"
        elif name.startswith("one-sample"):
            name = f"one-sample acc. from pools ({len(pass_rate)} q.)"
        ax.hist(values, bins=np.linspace(0, 1, 11), color="#4472c4", edgecolor="white")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("per-query accuracy")
    axes[0].set_ylabel("queries")
    fig.suptitle(f"Embedded runs table: per-query accuracy over {len(Y)} queries "
                 f"(parallel strategies), SmolLM2-135M-Instruct", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)

    cell = ok.groupby(["strategy", "query_id"]).agg(
        Y=("correct", "mean"), T=("tokens", "mean"), L=("latency_s", "mean"),
        n=("correct", "size"))
    by_strategy = cell.groupby("strategy").agg(
        accuracy=("Y", "mean"), tokens=("T", "mean"), latency_s=("L", "mean"),
        queries=("Y", "size"), repeats=("n", "mean"))
    by_strategy = by_strategy.reindex([s for s in strategies if s in by_strategy.index])
    level = df.drop_duplicates("query_id").set_index("query_id")["level"]
    per_q = cell["Y"].unstack("strategy")
    lvl = per_q.groupby(level.reindex(per_q.index)).mean()
    lvl_cols = [s for s in ("majority_vote@n=1", "majority_vote@n=16",
                            "majority_vote@n=1,mode=direct", "majority_vote@n=16,mode=direct",
                            "adaptive_vote@n=16,b=4,t=0.75",
                            "weighted_majority_vote@n=16", "best_of_n@n=16",
                            "beam_search@n=4,w=2", "beam_search@n=8,w=4") if s in per_q.columns]
    lvl = lvl[lvl_cols]
    lvl["queries (parallel)"] = level.reindex(Y.index).value_counts().reindex(lvl.index)

    hw = prov.get("hardware", {})
    cal = prov.get("latency_calibration", {})
    sessions = prov.get("sessions", [])
    lines = [BEGIN, "",
             f"Table: `ttcrouter/data/arithmetic_smollm2_runs.parquet` ({len(df)} rows; "
             f"{len(df) / planned_rows:.0%} of the planned {planned_rows} = "
             f"{planned_q} queries x {len(strategies)} strategies x {planned_repeats} repeats). "
             f"{len(Y)} queries have runs of all {len(parallel_names)} pooled strategies and "
             f"{len(summary)} of all {len(strategies)} (beam search included); "
             f"repeats per (query, strategy) cell: min {repeats_done.min()}, "
             f"max {repeats_done.max()}. Rows with an error: {int(df['error'].notna().sum())}.", "",
             "### Provenance", "",
             f"- model: {prov.get('model')} ({prov.get('backend')}, {prov.get('vllm')}), "
             f"scorer {prov.get('scorer')}",
             f"- sampling: {prov.get('sampling')}",
             *([f"- carried over: {prov['carried_over']['rows']} rows of "
                f"{', '.join(prov['carried_over']['strategies'])} from "
                f"{prov['carried_over']['from']}; their sampling: "
                f"{prov['carried_over'].get('sampling')}"] if prov.get("carried_over") else []),
             f"- seed {prov.get('seed')}, pool size {prov.get('pool_size')}, dataset "
             f"{prov.get('dataset')}",
             f"- hardware: {hw.get('cpu')}, {hw.get('cpu_count')} cores, {hw.get('memory_gb')} GB, "
             f"GPU: {hw.get('gpu')}; shared with other jobs while collecting",
             f"- collected {prov.get('created')} in {len(sessions)} session(s) (resumed runs); "
             f"ttcrouter {prov.get('ttcrouter')}",
             f"- latency: {cal.get('method')}; calibration run {cal.get('calibration', 0)} of "
             f"{cal.get('date')} on {len(cal.get('queries', []))} queries, mean 1-minute load "
             f"average {cal.get('mean_loadavg_1m', float('nan')):.1f} on 2 cores"
             + ("".join(f"; replaces the run of {e.get('date')} (load "
                        f"{e.get('mean_loadavg_1m', float('nan')):.1f})"
                        for e in cal.get("earlier", []))), "",
             "### Per strategy (means over its queries of the per-query means)", "",
             by_strategy.to_markdown(floatfmt=".3f"), "",
             "### Accuracy per difficulty level", "", lvl.to_markdown(floatfmt=".2f"), "",
             "### Per-query accuracy", "",
             f"![per-query accuracy]({Path(args.png).name})", ""]
    if pass_rate is not None:
        lines += [f"One-sample accuracy estimated from the pools ({len(pass_rate)} queries: the "
                  f"fraction of the {pool_size} samples of each pool that are correct, averaged "
                  "over repeats; `pool_correct` column):", "", "```",
                  *text_hist(pass_rate.to_numpy()), "```", ""]
    if single is not None:
        lines += ["majority_vote@n=1 (one sample per repeat):", "", "```",
                  *text_hist(single.to_numpy()), "```", ""]
    lines += ["Oracle (best strategy per query):", "", "```", *text_hist(oracle.to_numpy()),
              "```", "",
              f"Of the {len(summary)} queries with all {len(strategies)} strategies: no strategy "
              f"ever solves "
              f"{(oracle == 0).mean():.0%}; every strategy solves in every repeat "
              f"{(summary.Y.min(axis=1) == 1).mean():.0%}; the best strategy beats one sample "
              f"by >= 0.5 on "
              f"{((oracle - summary.Y.get('majority_vote@n=1', 0)) >= 0.5).mean():.0%}.", "",
              END]
    doc = Path(args.doc)
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(head + "\n".join(lines) + tail)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
