"""Evaluate the trained verifier against LogprobScorer on held-out queries; write docs/verifier_eval.md.

Everything is cross-fitted over query folds (5 by default): each sample is scored by a
verifier whose head was fitted on the other folds' queries only; the generator's features
of every sample are extracted once.

1. AUROC of the verifier and of ``LogprobScorer`` on complete solutions (per prompt mode)
   and on prefixes at each step index. LogprobScorer's complete-solution score is the
   table's ``score_logprob`` (the sampled tokens' log-probabilities); its prefix score, which
   the table does not hold, is ``exp(mean log-probability of the prefix's last step)`` (its
   step reward, aggregation "last") from the verifier's own forward pass.
2. best-of-N and weighted majority vote at n = 4 and 16 with each scorer, derived from the
   same pools (:func:`ttcrouter.derive_runs`, the collection's calibrated request latency),
   beside majority vote: accuracy, generated tokens, reward tokens, latency (the verifier's
   forward passes and time charged to the rows that read its score).
3. With ``--beam Q``: live ``beam_search@n=4,w=2`` on Q held-out queries with each scorer
   (``StrategyExecutor.execute_batch`` on a vLLM engine; the verifier for a query is the one
   fitted on the other folds). Start it under the engine lock.

    python bench/verifier_eval.py /work/main/collections/arith400_samples [--max-queries 64]
    flock /work/plan/engine.lock python bench/verifier_eval.py DIR --beam 100

The cost estimate for the full table (51,200 samples) comes from the measured extraction rate.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from datetime import datetime, timezone

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.base import clone  # noqa: E402

from ttcrouter.grading import is_correct  # noqa: E402
from ttcrouter.samples import derive_runs, validate_samples  # noqa: E402
from ttcrouter.verifier import TrainedVerifier  # noqa: E402
from ttcrouter.verifier_samples import (cross_fit_scores, sample_features,  # noqa: E402
                                       verifier_data)
from ttcrouter.verifier_commands import (collection_request_latency,  # noqa: E402
                                         held_out_auroc, read_samples_arg)

FULL_TABLE = 51_200
NS = (4, 16)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", help="collection directory (or samples file)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--modes", nargs="+", default=None, choices=("cot", "direct"),
                    help="prompt modes to evaluate (default: all in the table)")
    ap.add_argument("--max-queries", type=int, default=None,
                    help="use N random queries (development on a partial table)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--C", type=float, default=0.005)
    ap.add_argument("--layer", type=int, default=-1)
    ap.add_argument("--beam", type=int, default=0, metavar="Q",
                    help="also run live beam search on Q held-out queries per scorer")
    ap.add_argument("--beam-max-tokens", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features-cache", default=None, metavar="DIR",
                    help="keep the extracted features here, chunk by chunk (resumable; "
                         "the extraction is the long part): ttcrouter.sample_features")
    ap.add_argument("--out", default=os.path.join("docs", "verifier_eval.md"))
    return ap.parse_args(argv)


def load(args):
    samples = read_samples_arg(args.samples)
    if args.max_queries:
        ids = pd.Series(pd.unique(samples["query_id"]))
        keep = ids.sample(n=min(args.max_queries, len(ids)), random_state=args.seed)
        samples = samples[samples["query_id"].isin(set(keep))]
    if args.modes:
        samples = samples[samples["mode"].isin(args.modes)]
    return validate_samples(samples), samples.attrs


def within_pool_auroc(part, column):
    """Mean AUROC inside the pools (query, repeat, mode) holding both outcomes: the ranking
    best-of-N uses (a pooled AUROC also rewards telling easy queries from hard ones)."""
    values = [held_out_auroc(p["correct"], p[column])
              for _, p in part.groupby(["query_id", "repeat", "mode"])
              if p["correct"].nunique() == 2]
    return float(np.mean(values)) if values else float("nan"), len(values)


def auroc_tables(held, step_proba, features):
    """Complete-solution AUROC per mode (pooled and within pools), and prefix AUROC per
    step index."""
    rows = []
    for mode, part in [("all", held), *held.groupby("mode")]:
        v_in, n_pools = within_pool_auroc(part, "score_verifier")
        rows.append({"mode": mode, "samples": len(part),
                     "share correct": round(float(part["correct"].mean()), 3),
                     "verifier": held_out_auroc(part["correct"], part["score_verifier"]),
                     "LogprobScorer": held_out_auroc(part["correct"], part["score_logprob"]),
                     "pools with both": n_pools, "verifier within pools": v_in,
                     "LogprobScorer within pools":
                         within_pool_auroc(part, "score_logprob")[0]})
    complete = pd.DataFrame(rows)
    bounds = features.bounds()
    logprob_step = np.exp(np.minimum(features.stats[:, 2], 0.0))
    prefix_rows = []
    n_steps = np.diff(bounds)
    y = held["correct"].to_numpy()
    modes = held["mode"].to_numpy()
    for mode in ("cot", "direct"):
        for k in range(int(n_steps.max())):
            idx = np.flatnonzero((n_steps > k) & (modes == mode))
            if len(idx) < 20:
                break
            v = np.array([step_proba[i][k] for i in idx])
            lp = logprob_step[bounds[idx] + k]
            prefix_rows.append({"mode": mode, "step": k + 1, "prefixes": len(idx),
                                "complete here": int((n_steps[idx] == k + 1).sum()),
                                "verifier": held_out_auroc(y[idx], v),
                                "LogprobScorer": held_out_auroc(y[idx], lp)})
    return complete, pd.DataFrame(prefix_rows)


def derived_table(held, request_latency):
    names = []
    for mode in sorted(held["mode"].unique()):
        suffix = "" if mode == "cot" else f",mode={mode}"
        names += [f"{m}@n={n}{suffix}" for n in NS
                  for m in ("majority_vote", "best_of_n", "weighted_majority_vote")]
    out = []
    for scorer in ("logprob", "verifier"):
        runs = derive_runs(held, names, score=scorer, request_latency=request_latency)
        for name, part in runs.groupby("strategy", sort=False):
            if name.startswith("majority_vote") and scorer == "verifier":
                continue  # reads no score: the same rows
            out.append({"strategy": name,
                        "scorer": scorer if not name.startswith("majority") else "-",
                        "accuracy": part["correct"].mean(), "tokens": part["tokens"].mean(),
                        "reward tokens": part["reward_tokens"].mean(),
                        "tokens incl. reward": (part["tokens"] + part["reward_tokens"]).mean(),
                        "latency s": part["latency_s"].mean()})
    table = pd.DataFrame(out)
    order = {n: i for i, n in enumerate(names)}
    return table.sort_values("strategy", key=lambda s: s.map(order), kind="stable")


def fold_verifiers(held, X, y, groups, features, template):
    """One verifier per fold, fitted on the other folds (as the cross-fitted scores)."""
    fold = held["fold_verifier"].to_numpy()
    out = {}
    for k in np.unique(fold):
        other = np.flatnonzero(fold != k)
        out[k] = clone(template).fit(X.iloc[other], y[other], groups[other],
                                     features=features.subset(other))
    return out


def live_beam(held, X, y, groups, features, template, args):
    from ttcrouter.executors import StrategyExecutor, VerifierScorer, VLLMGenerator
    from ttcrouter.executors.scoring import LogprobScorer

    cot = held[held["mode"] == "cot"].drop_duplicates("query_id")
    chosen = cot.head(args.beam)
    verifiers = fold_verifiers(held, X, y, groups, features, template)
    gen = VLLMGenerator(enforce_eager=True, seed=args.seed, block_size=32)
    rows = []
    try:
        gen.generate(["Hi"], n=1, max_tokens=1)  # engine start, not timed in any row
        for scorer_name in ("logprob", "verifier"):
            results = []
            for k, part in chosen.groupby("fold_verifier"):
                scorer = (LogprobScorer() if scorer_name == "logprob"
                          else VerifierScorer(verifiers[k]))
                ex = StrategyExecutor(gen, scorer=scorer, max_tokens=args.beam_max_tokens)
                got = ex.execute_batch("beam_search@n=4,w=2", part["query"].tolist())
                for res, gold in zip(got, part["gold"]):
                    results.append({"correct": int(res.error is None
                                                   and is_correct(res.answer, gold)),
                                    "tokens": res.tokens, "reward_tokens": res.reward_tokens,
                                    "batch_latency_s": res.latency_s, "n": len(part),
                                    "error": res.error})
            r = pd.DataFrame(results)
            rows.append({"strategy": "beam_search@n=4,w=2", "scorer": scorer_name,
                         "queries": len(r), "accuracy": r["correct"].mean(),
                         "tokens": r["tokens"].mean(), "reward tokens": r["reward_tokens"].mean(),
                         "wall clock per query s": (r["batch_latency_s"] / r["n"]).mean(),
                         "errors": int(r["error"].notna().sum())})
    finally:
        gen.close()
    return pd.DataFrame(rows)


def main(argv=None):
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="[verifier_eval] %(message)s")
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    held_in, attrs = load(args)
    held_in.attrs = attrs
    X, y, groups = verifier_data(held_in)
    template = TrainedVerifier(layer=args.layer, C=args.C, n_threads=args.threads,
                               batch_size=args.batch_size, show_progress=True)
    t0 = time.perf_counter()
    features = sample_features(held_in, template, cache_dir=args.features_cache,
                               progress=True)
    # with a cache, the time the samples were charged (their shares of the batches that
    # read them; a text read once is charged to each of its samples)
    extract_s = features.seconds.sum() if args.features_cache else time.perf_counter() - t0
    t0 = time.perf_counter()
    held, step_proba = cross_fit_scores(held_in, template, n_folds=args.folds,
                                        random_state=args.seed, features=features,
                                        return_step_proba=True)
    heads_s = time.perf_counter() - t0
    complete, prefixes = auroc_tables(held, step_proba, features)
    derived = derived_table(held, collection_request_latency(held_in))
    beam = None
    if args.beam:
        beam = live_beam(held, X, y, groups, features, template, args)
    write(args, held, features, extract_s, heads_s, complete, prefixes, derived, beam,
          load_before, time.perf_counter() - t_start)


def _md(df, floats="{:.3f}"):
    return df.to_markdown(index=False, floatfmt=".3f") if len(df) else "(none)"


def write(args, held, features, extract_s, heads_s, complete, prefixes, derived, beam,
          load_before, total_s):
    tokens = int(features.tokens_read.sum())
    per_mode = held.assign(t=features.tokens_read).groupby("mode")["t"].mean()
    rate = tokens / extract_s
    full_tokens = FULL_TABLE / 2 * per_mode.sum() if len(per_mode) == 2 else \
        FULL_TABLE * per_mode.mean()
    lines = [
        "# The trained verifier against LogprobScorer, on held-out queries",
        "",
        f"`python bench/verifier_eval.py {args.samples} --folds {args.folds}"
        + (f" --max-queries {args.max_queries}" if args.max_queries else "")
        + (f" --modes {' '.join(args.modes)}" if args.modes else "")
        + (f" --beam {args.beam}" if args.beam else "")
        + f"` on {datetime.now(timezone.utc).date()} ({platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load_before[0]:.2f} at start; "
        f"{total_s / 60:.1f} min in all).",
        "",
        f"{len(held)} samples of {held['query_id'].nunique()} queries "
        f"({', '.join(f'{m}: {n}' for m, n in held['mode'].value_counts().items())}); "
        f"{args.folds} query folds: every score below comes from a verifier whose head never "
        f"saw the sample's query. Verifier: `TrainedVerifier(layer={args.layer}, "
        f"C={args.C})` on the embedded SmolLM2-135M-Instruct.",
        "",
        *([f"**A subset**: {args.max_queries} random queries of the table (seed "
           f"{args.seed}), about {args.max_queries // args.folds} held out per fold, so a "
           "number here moves by a few points from one subset to another; the whole table "
           "(about 1.4 h of extraction on this CPU) narrows that.", ""]
          if args.max_queries else []),
        f"`C={args.C}` was chosen on 24 random queries of this table (seed 0; "
        "docs/verifier.md), which may be among these: the heads' one hyperparameter saw "
        "some of these queries' labels through that choice, nothing else did.", "",
        "## AUROC on complete solutions",
        "",
        "Pooled over all samples, and the mean within the pools that hold both right and "
        "wrong samples (the ranking best-of-N and weighted votes use).",
        "",
        _md(complete),
        "",
        "## AUROC on prefixes, by step index",
        "",
        "A prefix ends at step k (steps split at \"\\n\"); its label is the final outcome of the "
        "whole sample. LogprobScorer's prefix score is exp(mean log-probability of step k) "
        "(its step reward), from the verifier's forward pass.",
        "",
        _md(prefixes),
        "",
        "## Best-of-N and weighted majority vote from the same pools",
        "",
        "Derived with `derive_runs(..., score=scorer)` and the collection's calibrated request "
        "latency. Verifier rows pay its reward tokens (prompt and solution of every sample "
        "used) and its forward-pass time on this CPU (each sample's share of the batched "
        "extraction); LogprobScorer reads what generation returned and pays nothing.",
        "",
        _md(derived),
        "",
    ]
    if beam is not None:
        lines += ["## Live beam search on held-out queries", "",
                  "`StrategyExecutor.execute_batch(\"beam_search@n=4,w=2\", ...)` per fold on a "
                  "vLLM engine (eager, block size 32); wall clock per query is each fold "
                  "batch's wall time divided by its queries.", "", _md(beam), ""]
    lines += [
        "## Cost",
        "",
        f"Feature extraction: {len(held)} samples, {tokens} tokens in {extract_s:.0f} s "
        + ("(charged: each sample's share of the batch that read its text) "
           if args.features_cache else "")
        +
        f"({rate:.0f} tokens/s, {len(held) / extract_s:.1f} samples/s, torch threads "
        f"{args.threads}); the {args.folds} heads: {heads_s:.0f} s. Mean tokens read per "
        f"sample: {', '.join(f'{m} {v:.0f}' for m, v in per_mode.items())}.",
        "",
    ]
    if len(held) < FULL_TABLE:
        lines += [
            f"Estimate for the full table ({FULL_TABLE:,} samples, half cot, half direct): "
            f"{full_tokens / 1e6:.2f} M tokens, about {full_tokens / rate / 3600:.1f} h of "
            f"extraction at this rate, plus the heads (they grow about linearly: "
            f"~{heads_s * FULL_TABLE / len(held) / 60:.0f} min).", ""]
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
