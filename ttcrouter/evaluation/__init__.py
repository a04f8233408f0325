"""Evaluate a router on held-out queries: static strategies, the adaptive router, the oracle.

- :mod:`~ttcrouter.evaluation.evaluate`: :func:`evaluate`, the split or cross-fitting and
  the penalty sweeps;
- :mod:`~ttcrouter.evaluation.report`: :class:`EvaluationReport`, its JSON and markdown;
- :mod:`~ttcrouter.evaluation.plots`: :class:`FrontierDisplay` and
  :class:`StrategyMixDisplay`, :class:`BatchBudgetDisplay`, the report's plots;
- :mod:`~ttcrouter.evaluation.mixes`: :func:`matched_budget_mixes`, the token-aware and the
  latency-aware router's strategy mix at the same budgets, and :func:`mix_sentences`;
  drawn by :class:`MatchedMixDisplay`;
- :mod:`~ttcrouter.evaluation.batch`: :func:`batch_budget_comparison`, allocation against
  per-query lambdas and the static mix at batch budgets (``evaluate(batch_budgets=...)``).

:func:`frontier_at` lives in :mod:`ttcrouter.frontier` and is importable from here too.
"""

from ..frontier import frontier_at
from .batch import batch_budget_comparison
from .evaluate import MIN_TEST_QUERIES, MIN_TRAIN_QUERIES, evaluate
from .mixes import matched_budget_mixes, mix_sentences
from .plots import BatchBudgetDisplay, FrontierDisplay, MatchedMixDisplay, StrategyMixDisplay
from .report import EvaluationReport

__all__ = [
    "EvaluationReport",
    "evaluate",
    "frontier_at",
    "MIN_TRAIN_QUERIES",
    "MIN_TEST_QUERIES",
    "FrontierDisplay",
    "StrategyMixDisplay",
    "MatchedMixDisplay",
    "matched_budget_mixes",
    "mix_sentences",
    "BatchBudgetDisplay",
    "batch_budget_comparison",
]
