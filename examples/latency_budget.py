"""Fit a router to a mean-latency budget with UtilityRouterCV, then check it on held-out queries.

``UtilityRouterCV`` fits the probe once per cross-validation fold, sweeps a grid of
``(lambda_tokens, lambda_latency)`` on each fold's held-out queries, and keeps the most
accurate pair whose cross-validated mean latency stays within ``max_mean_latency``; then it
refits the router on all training queries with that pair. The budget is a mean over queries:
single queries may take longer.

Run: python examples/latency_budget.py [--budget SECONDS]
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_runs():
    from ttcrouter.cli import shipped_runs_path
    from ttcrouter.runs import read_runs
    from ttcrouter.synthetic import make_synthetic_runs

    path = shipped_runs_path()
    if path is not None:
        return read_runs(path)
    print("NOTE: shipped runs table not found; using SYNTHETIC runs (no model was run).")
    return make_synthetic_runs(120, random_state=0)


def main(argv=None):
    import numpy as np

    from ttcrouter import EmbeddingTransformer, UtilityRouterCV, aggregate_runs, split_queries
    from ttcrouter.metrics import routed_accuracy, routed_mean_latency, static_strategy_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=None,
                        help="mean latency budget in seconds (default: halfway between the "
                             "fastest and the slowest strategy)")
    args = parser.parse_args(argv)

    s = aggregate_runs(load_runs())
    train, test = split_queries(s.queries.index, test_size=0.25, random_state=0)
    pos = {q: i for i, q in enumerate(s.queries.index)}
    tr, te = [pos[q] for q in train], [pos[q] for q in test]
    E = EmbeddingTransformer().fit_transform(s.texts)

    static = static_strategy_table(s.Y.iloc[te], s.T.iloc[te], s.L.iloc[te])
    lo, hi = s.L.iloc[tr].mean().min(), s.L.iloc[tr].mean().max()
    budget = args.budget if args.budget is not None else float(np.sqrt(lo * hi))
    print(f"{len(tr)} train / {len(te)} test queries, {len(s.strategies)} strategies; "
          f"strategies' mean latency {lo:.2f}-{hi:.2f} s; budget {budget:.2f} s")

    cv = UtilityRouterCV(max_mean_latency=budget, cv=3, random_state=0)
    cv.fit(E[tr], s.Y.iloc[tr], tokens=s.T.iloc[tr], latency=s.L.iloc[tr])
    best = cv.cv_results_.iloc[cv.best_index_]
    print(f"chosen lambda_tokens={cv.best_lambda_tokens_:.3g}, "
          f"lambda_latency={cv.best_lambda_latency_:.3g} (cross-validated accuracy "
          f"{best['accuracy']:.3f}, mean latency {best['mean_latency']:.2f} s)")

    choice = cv.predict(E[te])
    acc = routed_accuracy(s.Y.iloc[te], choice)
    lat = routed_mean_latency(s.L.iloc[te], choice, strategies=s.strategies)
    within = static[static["mean_latency"] <= budget]
    print(f"router on the test queries: accuracy {acc:.3f}, mean latency {lat:.2f} s")
    if lat > budget:
        print(f"  (over the budget on these {len(te)} test queries: the budget is met in "
              f"cross-validation on the training queries, an estimate that is noisy when "
              f"there are few queries)")
    if len(within):
        name = within["accuracy"].idxmax()
        print(f"best single strategy within the budget: {name}, accuracy "
              f"{within.loc[name, 'accuracy']:.3f}, mean latency "
              f"{within.loc[name, 'mean_latency']:.2f} s")
    else:
        print("no single strategy meets the budget on the test queries")
    mix = dict(zip(*np.unique(choice, return_counts=True)))
    print("strategy mix:", ", ".join(f"{k}: {v}" for k, v in sorted(mix.items(),
                                                                        key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
