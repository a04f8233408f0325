"""Every step scorer under its historical import path (re-exports of ``scoring`` and ``prm``).

The step-scorer interface, aggregation and the log-probability scorer live in
:mod:`ttcrouter.executors.scoring`; the process reward models in :mod:`ttcrouter.executors.prm`.
"""

from .prm import PRM_STEP_TOKEN, PRM_SYSTEM_PROMPT, QwenMathPRM, VLLMRewardModel, format_prm_input
from .scoring import (
    AGGREGATIONS,
    LogprobScorer,
    ScoreResult,
    StepScorer,
    aggregate_step_scores,
    check_solutions,
)

__all__ = [
    "AGGREGATIONS",
    "PRM_STEP_TOKEN",
    "PRM_SYSTEM_PROMPT",
    "LogprobScorer",
    "QwenMathPRM",
    "ScoreResult",
    "StepScorer",
    "VLLMRewardModel",
    "aggregate_step_scores",
    "check_solutions",
    "format_prm_input",
]
