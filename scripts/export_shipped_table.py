"""Export a finished collection as the shipped runs and samples tables, beam search carried over.

    python scripts/export_shipped_table.py [collections/arith400_samples] \
        [--beam-from collections/arith400_smollm2] [--repeats 4]

The runs table (``ttcrouter/data/arithmetic_smollm2_runs.parquet``) is the collection's rows
(every pooled strategy derived from the kept samples) plus the beam search rows of the
earlier collection, which are valid here only if both collections ran the same queries
(dataset hash), the same ``cot`` prompt and the same sampling: checked below, and recorded in
the provenance (``carried_over``). The samples table
(``ttcrouter/data/arithmetic_smollm2_samples.parquet``) is the collection's samples.

With the collection's cross-fitted verifier scores (``--verifier-scores``, default
``COLLECTION/_verifier_scores.parquet`` when it exists, written by
``scripts/verifier_scores.py``), the samples table gets the ``score_verifier``,
``reward_tokens_verifier``, ``score_latency_s_verifier`` and ``fold_verifier`` columns, and
the runs table a ``scorer=verifier`` copy of every best-of-N and weighted-vote strategy of
``--verifier-modes``, derived from the same pools with the collection's calibrated request
latency plus the verifier's measured time; no query's rows read a verifier fitted on it.

Before writing, the table is checked against the collection contract: every query has every
strategy, ``--repeats`` repeats per cell, no duplicate key, no error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "ttcrouter" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection", nargs="?", default=str(ROOT / "collections" /
                                                            "arith400_samples"))
    parser.add_argument("--beam-from", default=str(ROOT / "collections" / "arith400_smollm2"))
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--runs-out", default=str(DATA / "arithmetic_smollm2_runs.parquet"))
    parser.add_argument("--samples-out",
                        default=str(DATA / "arithmetic_smollm2_samples.parquet"))
    parser.add_argument("--verifier-scores", default=None, metavar="PARQUET")
    parser.add_argument("--verifier-modes", nargs="+", default=["cot", "direct"],
                        choices=("cot", "direct"))
    args = parser.parse_args(argv)

    import dataclasses
    import json

    import pandas as pd

    from ttcrouter.strategies import as_strategy
    from ttcrouter.verifier_commands import collection_request_latency

    from ttcrouter.collection import load_collection, load_samples
    from ttcrouter.runs import write_runs
    from ttcrouter.samples import derive_runs, write_samples

    new = load_collection(args.collection)
    old = load_collection(args.beam_from)
    cfg = new.attrs["provenance"]["config"]
    old_cfg = old.attrs["provenance"]["config"]
    problems = []
    if cfg["dataset"] != old_cfg["dataset"]:
        problems.append(f"datasets differ: {cfg['dataset']} vs {old_cfg['dataset']}")
    # what every strategy shares; the step settings (step_max_tokens, step_delimiter,
    # aggregation) are beam search's own and travel with its rows in the provenance
    for key in ("temperature", "top_p", "max_tokens", "system_prompt"):
        if cfg["sampling"].get(key) != old_cfg["sampling"].get(key):
            problems.append(f"sampling.{key} differs: {cfg['sampling'].get(key)!r} vs "
                            f"{old_cfg['sampling'].get(key)!r}")
    if cfg.get("prompts", {}).get("cot", {}).get("system") is not None:
        problems.append("the new collection's cot prompt is not the generator's default")
    if (cfg["model"], cfg["seed"]) != (old_cfg["model"], old_cfg["seed"]):
        problems.append("model or seed differ")
    if problems:
        print("cannot carry beam search over:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    beam = old[old["strategy"].str.startswith("beam_search")]
    samples = load_samples(args.collection)
    s_prov = samples.attrs.get("provenance", {})
    parts, verifier_prov = [new, beam], None
    scores_path = Path(args.verifier_scores or Path(args.collection) / "_verifier_scores.parquet")
    if scores_path.exists():
        key = ["query_id", "repeat", "mode", "sample"]
        scores = pd.read_parquet(scores_path)
        merged = samples.merge(scores, on=key, how="left", validate="one_to_one")
        if len(merged) != len(samples) or merged["score_verifier"].isna().any():
            print(f"{scores_path} does not score every sample of {args.collection}",
                  file=sys.stderr)
            return 2
        merged.attrs = {}
        samples = merged
        names = [dataclasses.replace(spec, scorer="verifier").name
                 for spec in map(as_strategy, pd.unique(new["strategy"]))
                 if spec.derivable and spec.needs_reward_model
                 and spec.mode in args.verifier_modes]
        derived = derive_runs(samples, names, score="logprob",
                              request_latency=collection_request_latency(
                                  load_samples(args.collection)))
        derived["level"] = derived["level"].astype("string")
        cols = [*new.columns, *(["score_latency_s"] if "score_latency_s" not in new else [])]
        parts.append(derived[[c for c in cols if c in derived.columns]])
        meta_path = scores_path.with_suffix(".json")
        verifier_prov = {
            "strategies": names, "rows": int(len(derived)),
            "scores": f"{scores_path.name}: cross-fitted over query folds (no query is "
                      "scored by a verifier fitted on it), scripts/verifier_scores.py",
            "settings": json.loads(meta_path.read_text()) if meta_path.exists() else None}
    table = pd.concat(parts, ignore_index=True)
    if "score_latency_s" in table:  # rows that read no verifier spent no time on it
        table["score_latency_s"] = pd.to_numeric(table["score_latency_s"]).fillna(0.0)
    table.attrs = {}

    # the collection contract
    n_q = table["query_id"].nunique()
    cells = table.groupby(["query_id", "strategy"]).size()
    strategies = sorted(table["strategy"].unique())
    errors = int(table["error"].notna().sum())
    full = len(cells) == n_q * len(strategies)
    if (n_q < cfg["dataset"]["n_queries"] or not full or cells.min() != args.repeats
            or cells.max() != args.repeats or errors):
        print(f"not a complete table: {n_q} queries, {len(strategies)} strategies, "
              f"{len(cells)} of {n_q * len(strategies)} cells, repeats per cell "
              f"{cells.min()}-{cells.max()}, {errors} errors", file=sys.stderr)
        return 2
    prov = dict(new.attrs["provenance"], carried_over={
        "strategies": sorted(beam["strategy"].unique()), "rows": int(len(beam)),
        "from": f"{Path(args.beam_from).relative_to(ROOT)} (same queries, cot prompt, model, "
                "seed and sampling; checked by scripts/export_shipped_table.py)",
        "collected": old.attrs["provenance"].get("created"),
        "sampling": old_cfg["sampling"], "scorer": old_cfg.get("scorer")})
    if verifier_prov:
        prov["verifier"] = verifier_prov
        s_prov = dict(s_prov, verifier=verifier_prov)
    write_runs(table, args.runs_out, provenance=prov)
    samples.attrs = {}
    write_samples(samples, args.samples_out, provenance=s_prov)
    print(f"{args.runs_out}: {len(table)} rows, {n_q} queries, {len(strategies)} strategies, "
          f"{args.repeats} repeats per cell; {args.samples_out}: {len(samples)} samples "
          f"({Path(args.samples_out).stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
