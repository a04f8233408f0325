"""Work units to rows: run a chunk of queries and turn the results into runs-table rows.

Three kinds of unit: a pooled unit (one query, repeat and prompt mode, every missing pooled
strategy, and the pool's samples; :func:`pooled_chunk`), a beam unit (one query, beam search configuration and repeat, run
batched across the chunk, :func:`beam_chunk`) and, with ``latency="isolated"``, one
execution timed on its own (:func:`isolated_rows`). A failed execution is a row with an
``error`` and is not retried: a batch that raises is re-run query by query, so one bad
query costs its own rows, never its chunk's. Rows carry :data:`.store.COLUMNS`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pandas as pd

from ..grading import is_correct
from ..samples import derive_runs, samples_from_pool
from .latency import latency_feature, predict_latency, request_latency_model

__all__ = ["pooled_chunk", "beam_chunk", "isolated_rows", "timed_execute"]

logger = logging.getLogger("ttcrouter.collection")


@dataclass
class _Failed:
    """A query whose execution raised even on its own."""

    error: str


def _grade(answer, gold) -> int:
    if gold is None:
        return 0
    return int(bool(is_correct(answer, gold)))


def _base_row(q, spec_name, repeat):
    return {"query_id": q["query_id"], "query": q["query"], "gold": q["gold"],
            "strategy": spec_name, "repeat": int(repeat), "level": q.get("level")}


def _error_row(q, spec_name, repeat, error, source):
    row = _base_row(q, spec_name, repeat)
    row.update(answer=None, correct=0, tokens=0, latency_s=float("nan"), error=str(error)[:2000],
               prompt_tokens=0, reward_tokens=0, n_samples=0, steps=0, latency_source=source,
               latency_x=float("nan"))
    return row


def _result_row(q, spec, repeat, res, latency, source):
    row = _base_row(q, spec.name, repeat)
    err = getattr(res, "error", None)
    answer = getattr(res, "answer", None)
    row.update(
        answer=None if answer is None else str(answer),
        correct=0 if err else _grade(answer, q["gold"]),
        tokens=int(getattr(res, "tokens", 0) or 0),
        latency_s=float("nan") if err else float(latency),
        error=None if not err else str(err)[:2000],
        prompt_tokens=int(getattr(res, "prompt_tokens", 0) or 0),
        reward_tokens=int(getattr(res, "reward_tokens", 0) or 0),
        n_samples=int(spec.n),
        steps=int(getattr(res, "steps", 0) or 0),
        latency_source=source,
        latency_x=latency_feature(spec, res),
    )
    return row


def _isolating_failures(call, texts):
    """``call(texts)``, or when the batch raises, ``call([text])`` per text.

    One result per text: a query that raises on its own too gets :class:`_Failed`, so a
    bad query costs its own rows, never its chunk's.
    """
    try:
        return list(call(texts))
    except Exception:  # noqa: BLE001 - isolate the failing query
        logger.warning("a batch of %d queries failed; running them one by one", len(texts))
    results = []
    for text in texts:
        try:
            results.append(call([text])[0])
        except Exception as exc:  # noqa: BLE001 - recorded in the row, the run goes on
            results.append(_Failed(f"{type(exc).__name__}: {exc}"))
    return results


def timed_execute(executor, spec, query):
    """``executor.execute(spec, query)`` timed alone: ``(result or None, seconds, error)``."""
    t0 = time.perf_counter()
    try:
        res = executor.execute(spec, query)
        err = getattr(res, "error", None)
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        res, err = None, f"{type(exc).__name__}: {exc}"
    return res, time.perf_counter() - t0, err


def isolated_rows(executor, chunk, spec, repeat) -> list:
    """Rows of ``spec`` on each query of ``chunk``, each executed and timed on its own."""
    rows = []
    for q in chunk:
        res, wall, err = timed_execute(executor, spec, q["query"])
        rows.append(_error_row(q, spec.name, repeat, err, "isolated") if res is None
                    else _result_row(q, spec, repeat, res, wall, "isolated"))
    return rows


def pooled_chunk(executor, chunk, parallel, repeat, pool_size, models, done=frozenset(), *,
                 samples_out=None, scorer="logprob"):
    """The rows of the pooled strategies for a chunk of queries, from one pool each.

    For each prompt mode among ``parallel``, one batched request draws ``pool_size``
    samples per query (:meth:`~ttcrouter.executors.StrategyExecutor.sample_pool`); each
    sample is graded and becomes a samples-table row (:func:`ttcrouter.samples.samples_from_pool`),
    and the rows of every pooled strategy of that mode come from those samples through
    :func:`ttcrouter.samples.derive_runs`, latency from the calibrated request lines
    (:func:`~.latency.request_latency_model`).

    Parameters
    ----------
    executor : StrategyExecutor
    chunk : list of dict
        Query records (``query_id``, ``query``, ``gold``, optional ``level``).
    parallel : list of Strategy
        Pooled strategies (``derivable``: the parallel methods and early-stopping votes).
    repeat : int
    pool_size : int
    models : dict
        Strategy name -> latency model (:func:`~.latency.latency_models`).
    done : set, optional
        Keys already written; their rows are not made again.
    samples_out : list or None, optional
        Where the sample rows of the pools drawn go (the samples table's columns).
    scorer : str, default="logprob"
        Name of the score column (``score_<scorer>``).

    Returns
    -------
    rows : list of dict
        Whole units (every missing pooled row of each (query, mode)), columns
        :data:`~ttcrouter.collection.store.COLUMNS`.
    generated : int
        Tokens the pools generated.
    """
    rows, generated = [], 0
    request_latency = request_latency_model(models)
    for mode in dict.fromkeys(s.mode for s in parallel):
        of_mode = [s for s in parallel if s.mode == mode]
        todo_q = [q for q in chunk if not all(
            (q["query_id"], s.name, repeat) in done for s in of_mode)]
        if not todo_q:
            continue
        # the executor's own scorer, then each scorer a strategy of this mode names
        scorers = [None] + sorted({s.scorer for s in of_mode if s.scorer is not None})
        results = _isolating_failures(
            lambda texts, m=mode: executor.sample_pool(texts, pool_size, mode=m,
                                                       scorers=scorers),
            [q["query"] for q in todo_q])
        for q, pool in zip(todo_q, results):
            pool_err = getattr(pool, "error", None)
            todo = [s for s in of_mode if (q["query_id"], s.name, repeat) not in done]
            if pool_err:
                rows += [_error_row(q, s.name, repeat, pool_err, "calibrated") for s in todo]
                continue
            generated += int(pool.tokens)
            sample_rows = samples_from_pool(
                pool, query_id=q["query_id"], gold=q["gold"], repeat=repeat, mode=mode,
                scorer=scorer, level=q.get("level"),
                correct=[_grade(c.answer, q["gold"]) for c in pool.candidates])
            try:
                derived = derive_runs(pd.DataFrame(sample_rows), todo,
                                      score=scorer, request_latency=request_latency)
            except Exception as exc:  # noqa: BLE001 - recorded in the rows, the run goes on
                rows += [_error_row(q, s.name, repeat, f"{type(exc).__name__}: {exc}",
                                    "calibrated") for s in todo]
                continue
            derived["level"] = q.get("level")
            rows += derived.to_dict("records")
            if samples_out is not None:
                samples_out += sample_rows
    return rows, generated


def beam_chunk(executor, chunk, spec, repeat, models):
    """The rows of one beam search configuration for a chunk of queries (run batched)."""
    results = _isolating_failures(lambda texts: executor.execute_batch(spec, texts),
                        [q["query"] for q in chunk])
    rows = []
    for q, res in zip(chunk, results):
        err = getattr(res, "error", None)
        if err:
            rows.append(_error_row(q, spec.name, repeat, err, "calibrated"))
            continue
        lat = predict_latency(models[spec.name], latency_feature(spec, res))
        rows.append(_result_row(q, spec, repeat, res, lat, "calibrated"))
    return rows

