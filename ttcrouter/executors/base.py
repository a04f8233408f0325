"""The interface every generator backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

__all__ = ["GenerationRequest", "Completion", "Generator", "DEFAULT_SYSTEM_PROMPT"]

#: System prompt for the embedded model: short, and ends with an extractable answer line.
DEFAULT_SYSTEM_PROMPT = "Solve the problem. End with 'Answer: <number>'."


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt: a user query, and assistant text already written.

    Parameters
    ----------
    query : str
        The user's question; the backend wraps it in the chat template with its system prompt.
    prefix : str, default=""
        Assistant text the completion continues (the partial solution in beam search).
    """

    query: str
    prefix: str = ""


@dataclass
class Completion:
    """One generated continuation.

    Attributes
    ----------
    text : str
        The generated text only (not the prompt, not the prefix).
    tokens : int
        Number of generated tokens.
    prompt_tokens : int
        Number of prompt tokens (chat template, query and prefix).
    finish_reason : str
        ``"stop"`` (stop string or end of sequence) or ``"length"`` (hit ``max_tokens``).
    logprobs : list of float or None
        Log-probability of each generated token, when asked for.
    stop_reason : str or None
        The stop string that ended the completion, if any.
    """

    text: str
    tokens: int
    prompt_tokens: int = 0
    finish_reason: str = "stop"
    logprobs: list | None = field(default=None, repr=False)
    stop_reason: str | None = None


class Generator(ABC):
    """A text generator backend: vLLM engine, OpenAI-compatible server or transformers."""

    #: Short backend name recorded in provenance ("vllm", "openai", "transformers").
    backend: str = ""

    @abstractmethod
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        n: int = 1,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] | None = None,
        logprobs: bool = False,
    ) -> list[list[Completion]]:
        """Generate ``n`` completions for each request, all requests in one batch.

        Returns
        -------
        list of list of Completion
            ``result[i]`` holds the ``n`` completions of ``requests[i]``.
        """

    @property
    def model_name(self) -> str:
        """Model identifier recorded in provenance (the embedded model's name for ``None``)."""
        from ..models import EMBEDDED_GENERATOR_NAME

        model = getattr(self, "model", None)
        if model is None or str(model) == "embedded":
            return EMBEDDED_GENERATOR_NAME
        return str(model)

    def close(self) -> None:
        """Release the backend's resources (engine, connections)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
