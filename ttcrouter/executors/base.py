"""The generator interface every backend implements, and the helpers the backends share.

:class:`Generator.generate` validates the requests and sampling arguments once, for every
backend, then calls the backend's :meth:`Generator._generate`. The helpers below build chat
prompts and check arguments the same way for the vLLM, OpenAI-compatible and transformers
backends.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from typing import Sequence

from ..models import EMBEDDED_GENERATOR_NAME
from ..validation import check_int

__all__ = [
    "GenerationRequest",
    "Completion",
    "Generator",
    "DEFAULT_SYSTEM_PROMPT",
    "DIRECT_SYSTEM_PROMPT",
    "DEFAULT_PROMPTS",
    "PromptMode",
    "chat_messages",
    "check_prompt_lengths",
    "check_requests",
    "check_sampling",
    "first_stop",
    "prompt_token_ids",
    "render_prompt",
]

#: System prompt for the embedded model: short, and ends with an extractable answer line.
DEFAULT_SYSTEM_PROMPT = "Solve the problem. End with 'Answer: <number>'."
#: System prompt of the ``direct`` prompt mode: the final answer alone, a handful of tokens.
DIRECT_SYSTEM_PROMPT = "Give only the final answer, no working. Reply 'Answer: <number>'."


@dataclass(frozen=True)
class PromptMode:
    """How a prompt mode asks: its system prompt, and what the answer starts with.

    Parameters
    ----------
    system : str or None
        System prompt; None keeps the generator's own.
    prefix : str, default=""
        Assistant text every sample continues (``"Answer:"`` makes a small model state the
        answer at once instead of reasoning first; the sample's text excludes it).
    max_tokens : int or None, default=None
        Token cap of a sample in this mode (None: the executor's ``max_tokens``).
    stop : tuple of str, default=()
        Stop strings of a sample in this mode (``("\n",)``: one line).
    """

    system: str | None
    prefix: str = ""
    max_tokens: int | None = None
    stop: tuple = ()


#: Prompt mode -> how it asks; a model may need others (``StrategyExecutor(prompts=...)``).
#: SmolLM2-135M ignores "answer only" in a system prompt (about 45 generated tokens against
#: 52 for ``cot``, bench/bench_adaptive.py), so ``direct`` also starts the answer for it.
DEFAULT_PROMPTS = {
    "cot": PromptMode(DEFAULT_SYSTEM_PROMPT),
    "direct": PromptMode(DIRECT_SYSTEM_PROMPT, prefix="Answer:", max_tokens=12, stop=("\n",)),
}


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
    """A text generator backend: vLLM engine, OpenAI-compatible server or transformers.

    A backend implements :meth:`_generate`, which receives validated arguments; a wrapper
    (a generator forwarding to another) may override :meth:`generate` itself instead.
    """

    #: Short backend name recorded in provenance ("vllm", "openai", "transformers").
    backend: str = ""

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

        Parameters
        ----------
        requests : sequence of GenerationRequest or str
            Queries (and assistant prefixes to continue); a str is a query.
        n : int, default=1
            Completions per request. With ``temperature=0`` (greedy) a backend may decode one
            completion and copy it ``n`` times (each copy reports the tokens it would cost).
        temperature, top_p : float
            Sampling parameters.
        max_tokens : int, default=256
            Most tokens generated per completion (fewer if the context ends first).
        stop : sequence of str or None
            Stop strings; the text is cut before the first one (its tokens are counted).
        logprobs : bool, default=False
            Return the log-probability of each generated token.

        Returns
        -------
        list of list of Completion
            ``result[i]`` holds the ``n`` completions of ``requests[i]``.

        Raises
        ------
        TypeError, ValueError
            For bad requests or sampling arguments; a backend raises ValueError naming the
            request index when a prompt does not fit its context.
        """
        requests = check_requests(requests)
        stop = check_sampling(n, temperature, top_p, max_tokens, stop)
        if not requests:
            return []
        return self._generate(requests, n=n, temperature=temperature, top_p=top_p,
                              max_tokens=max_tokens, stop=stop, logprobs=logprobs)

    def _generate(self, requests: list[GenerationRequest], *, n: int, temperature: float,
                  top_p: float, max_tokens: int, stop: list[str],
                  logprobs: bool) -> list[list[Completion]]:
        """The backend's generation, on a non-empty list of validated requests."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement _generate() (or override generate())."
        )

    @property
    def model_name(self) -> str:
        """Model identifier recorded in provenance (the embedded model's name for ``None``)."""
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


# -- helpers shared by the backends ---------------------------------------------------------
def chat_messages(system_prompt: str | None, query: str) -> list[dict]:
    """Chat messages for one query: an optional system message, then the user message."""
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": query})
    return messages


def render_prompt(tokenizer, system_prompt: str | None, request: GenerationRequest) -> str:
    """The chat template applied to the query (with the generation prompt), plus the prefix."""
    text = tokenizer.apply_chat_template(
        chat_messages(system_prompt, request.query), tokenize=False, add_generation_prompt=True
    )
    return text + request.prefix


def prompt_token_ids(tokenizer, system_prompt: str | None, requests) -> list[list[int]]:
    """Token ids of each request's full prompt (chat template, query, prefix)."""
    return [
        tokenizer.encode(render_prompt(tokenizer, system_prompt, r), add_special_tokens=False)
        for r in check_requests(requests)
    ]


def check_requests(requests) -> list[GenerationRequest]:
    """Validate a batch of requests; plain strings are accepted as queries."""
    if isinstance(requests, (str, GenerationRequest)):
        raise TypeError(
            "generate() takes a sequence of requests; wrap a single one in a list: "
            "generate([GenerationRequest(query)])."
        )
    out = []
    for i, req in enumerate(requests):
        if isinstance(req, str):
            req = GenerationRequest(req)
        if not isinstance(req, GenerationRequest):
            raise TypeError(
                f"Request {i} is a {type(req).__name__}; expected a GenerationRequest or str."
            )
        out.append(req)
    return out


def check_sampling(n, temperature, top_p, max_tokens, stop) -> list[str]:
    """Validate sampling arguments shared by all backends; return the stop strings as a list."""
    check_int(n, "n", min_val=1)
    check_int(max_tokens, "max_tokens", min_val=1)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}.")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}.")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    stop = list(stop)
    if any(not isinstance(s, str) or not s for s in stop):
        raise ValueError(f"stop must be a list of non-empty strings, got {stop!r}.")
    return stop


def check_prompt_lengths(ids: Sequence[Sequence[int]], max_len: int) -> None:
    """Raise ValueError naming the first prompt that leaves no room to generate in ``max_len``."""
    for index, p in enumerate(ids):
        if len(p) >= max_len:
            raise ValueError(
                f"Request {index}: the prompt has {len(p)} tokens, which leaves no room to "
                f"generate within the model's context of {max_len} tokens. Shorten the query or "
                "prefix, or raise max_model_len."
            )


def first_stop(text: str, stop: Sequence[str]) -> tuple[int, str | None]:
    """Position and value of the earliest stop string in ``text`` (``(-1, None)`` if none)."""
    best, which = -1, None
    for s in stop:
        pos = text.find(s)
        if pos != -1 and (best == -1 or pos < best):
            best, which = pos, s
    return best, which
