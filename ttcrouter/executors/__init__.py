"""Strategy executors: generator backends, reward models and strategy execution.

Nothing here imports vLLM at module import; backends import it when they start an engine.
Public names are imported lazily.
"""

from importlib import import_module

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
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ttcrouter.executors' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
