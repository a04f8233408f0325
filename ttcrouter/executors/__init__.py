"""Strategy executors: generator backends, reward models and strategy execution.

Nothing here imports vLLM at module import; backends import it when they start an engine.
Public names are imported lazily.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "GenerationRequest": "base",
    "Completion": "base",
    "Generator": "base",
    "DEFAULT_SYSTEM_PROMPT": "base",
    "VLLMGenerator": "vllm_backend",
    "cpu_engine_dtype": "vllm_backend",
    "OpenAIGenerator": "openai_backend",
    "TransformersGenerator": "hf_backend",
    "QwenMathPRM": "prm",
    "VLLMRewardModel": "prm",
    "LogprobScorer": "scoring",
    "ScoreResult": "scoring",
    "StepScorer": "scoring",
    "VerifierScorer": "verifier_scorer",
    "aggregate_step_scores": "scoring",
    "StrategyExecutor": "runner",
    "Candidate": "results",
    "ExecutionResult": "results",
    "CandidatePool": "results",
    "execute": "runner",
    # Through the runner, which imports (so registers) every built-in family.
    "select_candidate": "runner",
    "register": "runner",
    "search_for": "runner",
    "make_executor": "factory",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
