"""The executor factory: a StrategyExecutor on a named backend, built in one place.

Collection (:func:`ttcrouter.collection.collect`) and serving build their executors here,
so a backend is configured the same way wherever it runs; :func:`named_scorers_for` gives
the named scorers a router's strategies need. Backends are imported when an
executor is built, never at import, so this module is light.
"""

from __future__ import annotations

import logging
import os
from importlib import import_module
from pathlib import Path

from ..models import shipped_verifier_path
from ..strategies import as_strategy

__all__ = ["BACKENDS", "make_executor", "named_scorers_for"]

logger = logging.getLogger(__name__)

#: backend name -> its generator class among the public names of :mod:`ttcrouter.executors`
BACKENDS = {
    "vllm": "VLLMGenerator",
    "openai": "OpenAIGenerator",
    "transformers": "TransformersGenerator",
}


def _public(name: str):
    # through the package's lazy exports: a backend (and vLLM) is imported only when used
    return getattr(import_module(__package__), name)


def make_executor(backend="vllm", model=None, base_url=None, *, seed=0, max_tokens=128,
                  temperature=0.7, max_steps=None, step_max_tokens=None, scorer="logprob",
                  enforce_eager=False, kv_cache_space_gb=None, generator_kwargs=None,
                  **executor_kwargs):
    """A :class:`~ttcrouter.executors.StrategyExecutor` on a backend.

    Parameters
    ----------
    backend : {"vllm", "openai", "transformers"}
    model : str or None
        Model path or name; None is the embedded SmolLM2-135M-Instruct.
    base_url : str or list of str, optional
        Server(s) of the ``openai`` backend (required there).
    seed : int, default=0
        Seed of the ``vllm`` and ``transformers`` generators.
    max_tokens, temperature, max_steps, step_max_tokens
        Executor parameters; ``max_steps`` and ``step_max_tokens`` keep the executor's
        defaults when None.
    scorer : "logprob", a verifier file, None or a scorer object, default="logprob"
        ``"logprob"`` (or None) scores candidates with
        :class:`~ttcrouter.executors.LogprobScorer` on the generator itself (no PRM ships
        offline); a scorer object replaces it. The path of a verifier file (``ttcrouter
        train-verifier``) keeps LogprobScorer as the executor's own scorer and adds a
        :class:`~ttcrouter.executors.VerifierScorer` as ``scorers["verifier"]``, which the
        strategies named ``...,scorer=verifier`` use.
    enforce_eager : bool, default=False
        ``vllm``: skip graph compilation.
    kv_cache_space_gb : int, optional
        ``vllm``: KV cache size of the CPU engine.
    generator_kwargs : dict, optional
        More keyword arguments of the generator class; they override the ones above.
    **executor_kwargs
        More keyword arguments of :class:`~ttcrouter.executors.StrategyExecutor`.

    Raises
    ------
    ValueError
        An unknown backend or scorer, or the ``openai`` backend without ``base_url``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose vllm, openai or transformers.")
    if isinstance(scorer, (str, os.PathLike)) and str(scorer) != "logprob":
        if not Path(scorer).is_file():
            raise ValueError(f"Unknown scorer {str(scorer)!r}: neither 'logprob' nor a "
                             "verifier file (ttcrouter train-verifier --out FILE).")
        # loads and checks it before any engine starts
        named = executor_kwargs.get("scorers") or {}
        executor_kwargs["scorers"] = {**named, "verifier": named.get("verifier")
                                      or _public("VerifierScorer")(scorer)}
        scorer = "logprob"
    if backend == "openai":
        if not base_url:
            raise ValueError("The openai backend needs --base-url (e.g. "
                             "http://127.0.0.1:8000/v1).")
        gen_kwargs = {"base_urls": base_url, "model": model}
    elif backend == "vllm":
        gen_kwargs = {"model": model, "seed": seed, "enforce_eager": enforce_eager,
                      "kv_cache_space_gb": kv_cache_space_gb}
    else:
        gen_kwargs = {"model": model, "seed": seed}
    gen_kwargs.update(generator_kwargs or {})
    generator = _public(BACKENDS[backend])(**gen_kwargs)
    if isinstance(scorer, str):
        scorer = _public("LogprobScorer")()
    kwargs = dict(max_tokens=max_tokens, temperature=temperature)
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    if step_max_tokens is not None:
        kwargs["step_max_tokens"] = step_max_tokens
    kwargs.update(executor_kwargs)
    return _public("StrategyExecutor")(generator, scorer=scorer, **kwargs)


def named_scorers_for(strategies, *, scorer=None, embedded_generator=True) -> dict:
    """The named scorers (``StrategyExecutor(scorers=...)``) a router's strategies need.

    A router fitted on a table with ``...,scorer=verifier`` rows may choose them, and their
    execution needs a :class:`~ttcrouter.executors.VerifierScorer`: the verifier file given
    as ``scorer``, else, for the embedded generator, the verifier shipped with the runs table
    (:func:`ttcrouter.models.shipped_verifier_path`), fitted on the embedded generator's own
    samples.

    Parameters
    ----------
    strategies : iterable of str or Strategy
    scorer : str, path or None
        ``--scorer``: a verifier file, ``"logprob"`` or None.
    embedded_generator : bool, default=True
        Whether the generator is the embedded one (the shipped verifier reads its states;
        for another one it is still used, with a warning to pass its own).

    Returns
    -------
    dict
        ``{"verifier": VerifierScorer}`` or ``{}``.

    Raises
    ------
    ValueError
        A verifier is needed and none is given or shipped.
    """

    needed = sorted({as_strategy(s).scorer for s in strategies} - {None})
    if not needed:
        return {}
    if scorer is not None and str(scorer) != "logprob":
        return {"verifier": _public("VerifierScorer")(scorer)}
    shipped = shipped_verifier_path()
    if shipped is None:
        raise ValueError(
            "The router chooses between strategies scored by a trained verifier "
            "(...,scorer=verifier) and no verifier ships with this installation: pass the "
            "verifier file of this generator with --scorer FILE (scorer=...), trained with "
            "`ttcrouter train-verifier`.")
    if not embedded_generator:
        # the router itself learned the embedded generator's accuracies and costs; its
        # verifier strategies stay runnable, and the log says what they read
        logger.warning("the router's ...,scorer=verifier strategies are scored by the "
                       "verifier shipped for the embedded SmolLM2-135M-Instruct (it reads "
                       "that model's states); for another generator pass --scorer FILE, a "
                       "verifier trained on its samples (ttcrouter train-verifier)")
    return {"verifier": _public("VerifierScorer")(shipped)}
