"""The embedded model on vLLM's asynchronous engine, and a synchronous facade over it.

:class:`AsyncVLLMGenerator` keeps the ``generate(requests, n=, temperature=, top_p=,
max_tokens=, stop=, logprobs=)`` contract of :class:`ttcrouter.executors.base.Generator`, but
as a coroutine on ``vllm.v1.engine.async_llm.AsyncLLM``: every request of every concurrent
HTTP call goes into one engine, whose scheduler batches them continuously.

Why a facade rather than async strategies: :class:`~ttcrouter.executors.StrategyExecutor`
(best-of-N, voting, PRM-guided beam search with per-query error isolation and honest token
accounting) is synchronous, and rewriting it as coroutines would duplicate it. A strategy's
own work between generation calls is a few milliseconds of Python; its time goes into waiting
for the engine. So each request's strategy runs in a worker thread over
:class:`SyncGenerator`, whose ``generate`` submits the coroutine to the event loop that owns
the engine and blocks only that worker thread. The event loop stays free for HTTP, routing
and the engine's output handler; concurrent strategies share the engine's batches.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from concurrent.futures import CancelledError as FutureCancelled
from typing import Sequence

from ..executors import cpu_engine_dtype
from ..executors.base import (
    DEFAULT_SYSTEM_PROMPT,
    Completion,
    GenerationRequest,
    Generator,
)
from ..lifetime import reap_children_on_exit
from ..models import EMBEDDED_GENERATOR_NAME, resolve_model
from .context import DeadlineExceeded, current_trace

__all__ = ["AsyncVLLMGenerator", "SyncGenerator", "check_generation_args"]


def check_generation_args(requests, n, temperature, top_p, max_tokens, stop):
    """Validate a generate() call; returns (requests, stop list)."""
    if isinstance(requests, (str, GenerationRequest)):
        raise TypeError("generate() takes a sequence of requests; wrap a single one in a list.")
    reqs = [GenerationRequest(r) if isinstance(r, str) else r for r in requests]
    if any(not isinstance(r, GenerationRequest) for r in reqs):
        raise TypeError("requests must be GenerationRequest objects or strings.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}.")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"bad sampling parameters temperature={temperature}, top_p={top_p}.")
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not isinstance(s, str) or not s for s in stop):
        raise ValueError(f"stop must be a list of non-empty strings, got {stop!r}.")
    return reqs, stop


class AsyncVLLMGenerator:
    """Generate on an in-process ``AsyncLLM`` engine (one engine for all requests).

    Parameters
    ----------
    model : str, path-like or None, default=None
        Model folder or hub name; None means the embedded SmolLM2-135M-Instruct.
    seed : int, default=0
        Engine seed (requests carry none: a per-request seed breaks the CPU engine).
    system_prompt : str or None, default=DEFAULT_SYSTEM_PROMPT
        The system message put before every query (that of the router's training runs).
    enforce_eager : bool, default=True
    enable_prefix_caching : bool, default=True
    max_model_len : int, default=2048
    kv_cache_space_gb : int or None, default=None
        Sets ``VLLM_CPU_KVCACHE_SPACE`` before the engine starts (CPU).
    **engine_kwargs
        Passed to ``AsyncEngineArgs`` (``dtype``, ``gpu_memory_utilization``, ...).

    Notes
    -----
    :meth:`start` must run on the event loop that will call :meth:`generate` (the engine's
    output handler is a task of that loop).
    """

    backend = "vllm-async"

    def __init__(self, model=None, seed=0, system_prompt=DEFAULT_SYSTEM_PROMPT,
                 enforce_eager=True, enable_prefix_caching=True, max_model_len=2048,
                 kv_cache_space_gb=None, **engine_kwargs):
        self.model = model
        self.seed = seed
        self.system_prompt = system_prompt
        self.enforce_eager = enforce_eager
        self.enable_prefix_caching = enable_prefix_caching
        self.max_model_len = max_model_len
        self.kv_cache_space_gb = kv_cache_space_gb
        self.engine_kwargs = engine_kwargs
        self.engine = None
        self.tokenizer = None
        self.model_path = None
        self.submitted = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    def start(self):
        """Start the engine (about a minute on CPU, eager). Call it on the serving loop."""
        if self.engine is not None:
            return self
        if self.kv_cache_space_gb is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(self.kv_cache_space_gb))
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.model_path = resolve_model(self.model)
        kwargs = dict(model=self.model_path, seed=self.seed, enforce_eager=self.enforce_eager,
                      enable_prefix_caching=self.enable_prefix_caching,
                      max_model_len=self.max_model_len, disable_log_stats=True)
        kwargs.update(self.engine_kwargs)
        if "dtype" not in kwargs:
            try:
                from vllm.platforms import current_platform

                dtype = cpu_engine_dtype() if current_platform.is_cpu() else None
            except Exception:  # noqa: BLE001 - unknown vLLM layout: the model's own dtype
                dtype = None
            if dtype:
                kwargs["dtype"] = dtype
        with reap_children_on_exit():  # the engine's processes end when this process ends
            self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        self.tokenizer = self.engine.get_tokenizer()
        return self

    @property
    def model_name(self) -> str:
        if self.model is None or str(self.model) == "embedded":
            return EMBEDDED_GENERATOR_NAME
        return str(self.model)

    def prompt_token_ids(self, request: GenerationRequest) -> list[int]:
        """Token ids of the chat template with the query, plus the assistant prefix."""
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": request.query})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        return self.tokenizer.encode(text + request.prefix, add_special_tokens=False)

    async def generate(self, requests: Sequence[GenerationRequest], *, n: int = 1,
                       temperature: float = 0.7, top_p: float = 1.0, max_tokens: int = 256,
                       stop: Sequence[str] | None = None,
                       logprobs: bool = False) -> list[list[Completion]]:
        """``n`` completions per request; all requests go to the engine at once.

        Same contract as :meth:`ttcrouter.executors.VLLMGenerator.generate` (with
        ``temperature=0`` one greedy completion is decoded and copied ``n`` times).
        Cancelling the coroutine aborts its requests in the engine.
        """
        requests, stop = check_generation_args(requests, n, temperature, top_p, max_tokens,
                                               stop)
        if not requests:
            return []
        if self.engine is None:
            raise RuntimeError("The engine is not started; call start() on the serving loop.")
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        ids = [self.prompt_token_ids(r) for r in requests]
        for i, p in enumerate(ids):
            if len(p) >= self.max_model_len:
                raise ValueError(
                    f"Request {i}: the prompt has {len(p)} tokens, which leaves no room to "
                    f"generate within the model's context of {self.max_model_len} tokens.")
        n_engine = 1 if temperature == 0 else n
        params = SamplingParams(n=n_engine, temperature=temperature, top_p=top_p,
                                max_tokens=max_tokens, stop=stop or None,
                                logprobs=0 if logprobs else None,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._one(p, self._fit(params, len(p))))
                         for p in ids]
        except ExceptionGroup as eg:  # one failed: the others were cancelled and aborted
            raise eg.exceptions[0] from None
        results = []
        for p, task in zip(ids, tasks):
            outs = sorted(task.result().outputs, key=lambda o: o.index)
            if len(outs) != n_engine:
                raise RuntimeError(f"the engine returned {len(outs)} completions, "
                                   f"expected {n_engine}")
            comps = [self._completion(o, len(p), logprobs) for o in outs]
            if n_engine != n:
                comps = [copy.copy(comps[0]) for _ in range(n)]
            results.append(comps)
        return results

    def _fit(self, params, n_prompt):
        """Per-request copy of ``params`` whose ``max_tokens`` ends within the context (the
        completion then stops with ``finish_reason="length"`` instead of being refused)."""
        params = params.clone()
        params.max_tokens = min(params.max_tokens, self.max_model_len - n_prompt)
        return params

    async def _one(self, prompt_ids, params):
        final = None
        self.submitted += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            async for out in self.engine.generate({"prompt_token_ids": prompt_ids}, params,
                                                  f"ttc-{uuid.uuid4().hex}"):
                final = out
        finally:
            self.in_flight -= 1
        if final is None:
            raise RuntimeError("the engine finished a request without output")
        return final

    @staticmethod
    def _completion(o, n_prompt, logprobs) -> Completion:
        token_ids = list(o.token_ids)
        lps = None
        if logprobs:
            lps = [float(pos[t].logprob) for pos, t in zip(o.logprobs or [], token_ids)]
        return Completion(text=o.text, tokens=len(token_ids), prompt_tokens=n_prompt,
                          finish_reason=o.finish_reason or "stop", logprobs=lps,
                          stop_reason=o.stop_reason if isinstance(o.stop_reason, str) else None)

    def status(self) -> dict:
        """Engine requests submitted, in flight now, and the most in flight at once (requests
        of several HTTP calls in the engine together show that they share its batches)."""
        errored = bool(getattr(self.engine, "errored", False)) if self.engine else False
        return {"model": self.model_name, "engine_requests": self.submitted,
                "engine_in_flight": self.in_flight, "engine_peak_in_flight": self.peak_in_flight,
                "engine_errored": errored}

    def close(self) -> None:
        """Shut the engine down."""
        engine, self.engine = self.engine, None
        if engine is not None:
            try:
                engine.shutdown()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass


class SyncGenerator(Generator):
    """A synchronous :class:`~ttcrouter.executors.base.Generator` over an async one.

    ``generate`` submits the async generator's coroutine to ``loop`` (the loop that owns the
    engine) and waits for it in the calling worker thread. When the calling thread works for
    a request (:func:`~ttcrouter.server.context.current_trace`), a request past its deadline
    makes no new call, and its in-flight call is cancelled (which aborts its engine requests).

    Parameters
    ----------
    agen : AsyncVLLMGenerator
    loop : asyncio.AbstractEventLoop
    """

    def __init__(self, agen, loop):
        self.agen = agen
        self.loop = loop
        self.backend = getattr(agen, "backend", "async")
        self.model = getattr(agen, "model", None)

    @property
    def system_prompt(self):
        return self.agen.system_prompt

    @property
    def model_name(self) -> str:
        return self.agen.model_name

    def generate(self, requests, *, n=1, temperature=0.7, top_p=1.0, max_tokens=256,
                 stop=None, logprobs=False):
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:  # waiting here would deadlock the loop
            raise RuntimeError("SyncGenerator.generate() was called on the event loop it "
                               "submits to; call it from a worker thread.")
        trace = current_trace()
        if trace is not None:
            trace.check()
        coro = self.agen.generate(requests, n=n, temperature=temperature, top_p=top_p,
                                  max_tokens=max_tokens, stop=stop, logprobs=logprobs)
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if trace is not None:
            trace.add(future)
        try:
            return future.result()
        except FutureCancelled:
            raise DeadlineExceeded("the request's deadline passed during generation") from None
        finally:
            if trace is not None:
                trace.discard(future)

    def close(self) -> None:
        """The engine belongs to the server; closing the facade leaves it running."""

