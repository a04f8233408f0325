"""Helpers shared by the generator backends: chat prompts and argument checks."""

from __future__ import annotations

from typing import Sequence

from .base import GenerationRequest


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
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}.")
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


def prompt_too_long(index: int, n_tokens: int, max_len: int) -> ValueError:
    return ValueError(
        f"Request {index}: the prompt has {n_tokens} tokens, which leaves no room to generate "
        f"within the model's context of {max_len} tokens. Shorten the query or prefix, or "
        "raise max_model_len."
    )


def first_stop(text: str, stop: Sequence[str]) -> tuple[int, str | None]:
    """Position and value of the earliest stop string in ``text`` (``(-1, None)`` if none)."""
    best, which = -1, None
    for s in stop:
        pos = text.find(s)
        if pos != -1 and (best == -1 or pos < best):
            best, which = pos, s
    return best, which
