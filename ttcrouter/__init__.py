"""ttcrouter: latency- and token-aware routing between test-time-compute strategies.

For each query, :class:`UtilityRouter` predicts the accuracy of every candidate strategy
(best-of-N, majority voting, weighted majority voting, PRM-guided beam search, early-stopping
votes, at several budgets and prompt modes) and picks ``argmax_s a_s(x) - lambda_tokens * T_s - lambda_latency * L_s``.
The executors in :mod:`ttcrouter.executors` then run the chosen strategy on a real model.

Public names are imported lazily, so ``import ttcrouter`` stays light and never imports
vLLM or torch until an estimator that needs them is used.
"""

from ._lazy import lazy_exports

from ._version import __version__

# public name -> submodule that defines it
_EXPORTS = {
    # strategy specs
    "Strategy": "strategies",
    "BestOfN": "strategies",
    "MajorityVote": "strategies",
    "WeightedMajorityVote": "strategies",
    "BeamSearch": "strategies",
    "AdaptiveVote": "strategies",
    "parse_strategy": "strategies",
    "encode_strategies": "strategies",
    "default_strategy_space": "strategies",
    # runs table
    "RunsSummary": "runs",
    "RunsTableError": "runs",
    "read_runs": "runs",
    "write_runs": "runs",
    "validate_runs": "runs",
    "aggregate_runs": "runs",
    "split_queries": "runs",
    "train_test_split_runs": "runs",
    # samples table
    "SamplesTableError": "samples",
    "validate_samples": "samples",
    "read_samples": "samples",
    "write_samples": "samples",
    "derive_runs": "samples",
    # verifier trained on the generator's own samples
    "TrainedVerifier": "verifier",
    "verifier_data": "verifier_samples",
    "score_samples": "verifier_samples",
    "cross_fit_scores": "verifier_samples",
    "sample_features": "verifier_samples",
    "save_verifier": "verifier",
    "load_verifier": "verifier",
    # estimators
    "EmbeddingTransformer": "embedding",
    "ProbeClassifier": "probe",
    "soft_to_weighted": "probe",
    "default_encoder_path": "models",
    "CostTable": "costs",
    "UtilityRouter": "router",
    "UtilityRouterCV": "tuning",
    "lambda_grid": "tuning",
    # batch budgets
    "allocate": "allocation",
    "allocate_batch": "budgeting",
    "AllocationResult": "allocation",
    "calibrate_lambda": "budgeting",
    "BudgetedRun": "budgeting",
    # metrics (fixed-lambda scorers and baselines)
    "make_utility_scorer": "metrics",
    "make_accuracy_scorer": "metrics",
    "make_tokens_scorer": "metrics",
    "make_latency_scorer": "metrics",
    "oracle_choice": "metrics",
    "static_strategy_table": "metrics",
    "split_half_reliability": "metrics",
    # grading
    "extract_answer": "grading",
    "is_correct": "grading",
    "normalize_answer": "grading",
    # data
    "make_synthetic_runs": "synthetic",
    "arithmetic": "datasets",
    "gsm_symbolic": "datasets",
    "load_jsonl": "datasets",
    "collect": "collection",
    "load_collection": "collection",
    "load_samples": "collection",
    "export_collection": "collection",
    # evaluation and serving
    "evaluate": "evaluation",
    "EvaluationReport": "evaluation",
    "RoutedExecutor": "serving",
    "save_router": "persistence",
    "load_router": "persistence",
    "RouterFileError": "persistence",
    # OpenAI-compatible server (ttcrouter serve)
    "ServerConfig": "server",
    "create_app": "server",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
