"""Tune a router's penalties with GridSearchCV on a Pipeline, using metadata routing.

The pipeline maps raw question strings to strategy names:
``Pipeline([("embed", EmbeddingTransformer()), ("router", UtilityRouter())])``.
The token and latency matrices travel as metadata (sklearn's metadata routing) to the
router's ``fit`` and to the scorer. The scorer measures realized utility at a FIXED
trade-off (the one you care about), never at the router's own lambdas: scoring at the
router's lambdas would always favour lambda = 0.

Run: python examples/pipeline_gridsearch.py
"""

import tempfile

import sklearn
from joblib import Memory
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline

from ttcrouter import EmbeddingTransformer, ProbeClassifier, UtilityRouter, aggregate_runs
from ttcrouter.cli import shipped_runs_path
from ttcrouter.metrics import make_accuracy_scorer, make_tokens_scorer, make_utility_scorer
from ttcrouter.runs import read_runs
from ttcrouter.synthetic import make_synthetic_runs


def load_runs():
    """The runs table shipped with ttcrouter, or synthetic runs when it is not installed."""
    path = shipped_runs_path()
    if path is not None:
        return read_runs(path)
    print("NOTE: shipped runs table not found; using SYNTHETIC runs (no model was run).")
    return make_synthetic_runs(120, random_state=0)


def main():
    sklearn.set_config(enable_metadata_routing=True)
    summary = aggregate_runs(load_runs())
    print(f"{len(summary)} queries x {len(summary.strategies)} strategies")

    router = UtilityRouter(probe=ProbeClassifier(random_state=0))
    router.set_fit_request(tokens=True, latency=True)
    # memory= caches the fitted encoder: each fold embeds its queries once, not once per
    # lambda candidate (UtilityRouterCV goes further and fits the probe once per fold too)
    cache = tempfile.TemporaryDirectory()
    pipe = Pipeline([("embed", EmbeddingTransformer()), ("router", router)],
                    memory=Memory(cache.name, verbose=0))

    # The trade-off we care about: 1000 generated tokens cost as much as 0.1 accuracy.
    price = 1e-4
    scoring = {
        "utility": make_utility_scorer(lambda_tokens=price),
        "accuracy": make_accuracy_scorer(),
        "tokens": make_tokens_scorer(),
    }
    mean_tokens = summary.T.to_numpy().mean()
    grid = {
        "router__lambda_tokens": [0.0, price / 4, price, 4 * price],
        "router__lambda_latency": [0.0],
    }
    search = GridSearchCV(pipe, grid, scoring=scoring, refit="utility", cv=GroupKFold(3))
    groups = list(summary.queries.index)
    search.fit(summary.texts, summary.Y, tokens=summary.T, latency=summary.L, groups=groups)

    res = search.cv_results_
    print(f"\nmean tokens of a strategy on these runs: {mean_tokens:.0f}")
    print(f"{'lambda_tokens':>14} {'utility':>8} {'accuracy':>8} {'tokens':>8}")
    for i, params in enumerate(res["params"]):
        print(f"{params['router__lambda_tokens']:>14.2e} {res['mean_test_utility'][i]:>8.3f} "
              f"{res['mean_test_accuracy'][i]:>8.3f} {-res['mean_test_tokens'][i]:>8.1f}")
    print(f"\nbest: {search.best_params_}")
    question = "What is 7 + 5?"
    print(f"{question!r} -> {search.predict([question])[0]}")
    sklearn.set_config(enable_metadata_routing=False)
    cache.cleanup()


if __name__ == "__main__":
    main()
