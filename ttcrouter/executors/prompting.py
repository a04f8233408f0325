"""How each prompt mode asks: the system prompt, assistant prefix, token cap and stop strings.

:class:`PromptModes` is the part of :class:`~ttcrouter.executors.StrategyExecutor` that maps a
strategy's prompt ``mode`` (``cot``, ``direct``) to a
:class:`~ttcrouter.executors.base.PromptMode` from the executor's ``prompts`` and
``system_prompt``, and installs the mode's system prompt on the generator while it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses

from .base import DEFAULT_PROMPTS, GenerationRequest, PromptMode

__all__ = ["PromptModes"]


class PromptModes:
    """Prompt-mode methods of an executor with ``prompts``, ``system_prompt``,
    ``max_tokens`` and ``generator`` attributes."""

    def prompt_mode(self, mode: str = "cot") -> PromptMode:
        """How prompt ``mode`` asks (:class:`~ttcrouter.executors.base.PromptMode`)."""
        if self.prompts is not None and mode in self.prompts:
            got = self.prompts[mode]
            if isinstance(got, PromptMode):
                return got
            # a string replaces the system prompt and keeps the rest of the mode's default
            return (dataclasses.replace(DEFAULT_PROMPTS[mode], system=got)
                    if mode in DEFAULT_PROMPTS and mode != "cot" else PromptMode(got))
        if mode == "cot":
            return PromptMode(self.system_prompt)
        if mode not in DEFAULT_PROMPTS:
            raise ValueError(f"No system prompt for prompt mode {mode!r}; pass "
                             f"StrategyExecutor(prompts={{{mode!r}: ...}}).")
        return DEFAULT_PROMPTS[mode]

    def prompt_for(self, mode: str = "cot") -> str | None:
        """The system prompt of prompt ``mode`` (None: the generator's own)."""
        return self.prompt_mode(mode).system

    def mode_request(self, query: str, mode: str = "cot") -> tuple:
        """``(GenerationRequest, max_tokens, stop)`` of one full sample in prompt ``mode``."""
        pm = self.prompt_mode(mode)
        return (GenerationRequest(query, prefix=pm.prefix),
                min(pm.max_tokens or self.max_tokens, self.max_tokens), list(pm.stop) or None)

    @contextlib.contextmanager
    def using_system_prompt(self, mode: str = "cot"):
        """Context in which the generator uses the system prompt of ``mode``
        (:meth:`prompt_for`; for ``cot`` without ``system_prompt``: the generator's own)."""
        prompt = self.prompt_for(mode)
        if prompt is None:
            yield
            return
        if not hasattr(self.generator, "system_prompt"):
            raise TypeError(
                f"{type(self.generator).__name__} has no system_prompt to override; leave "
                "StrategyExecutor(system_prompt=None) and set it on the generator."
            )
        old = self.generator.system_prompt
        self.generator.system_prompt = prompt
        try:
            yield
        finally:
            self.generator.system_prompt = old
