"""Work units to rows: run a chunk of queries and turn the results into runs-table rows.

Three kinds of unit: a pooled unit (one query and repeat, every missing parallel strategy,
:func:`pooled_chunk`), a beam unit (one query, beam search configuration and repeat, run
batched across the chunk, :func:`beam_chunk`) and, with ``latency="isolated"``, one
execution timed on its own (:func:`isolated_rows`). A failed execution is a row with an
``error`` and is not retried: a batch that raises is re-run query by query, so one bad
query costs its own rows, never its chunk's. Rows carry :data:`.store.COLUMNS`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..grading import is_correct
from .latency import latency_feature, predict_latency
from .pooled import derive_pooled

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


def pooled_chunk(executor, chunk, parallel, repeat, pool_size, models, done=frozenset()):
    """The rows of the parallel strategies for a chunk of queries, from one pool each.

    Parameters
    ----------
    executor : StrategyExecutor
    chunk : list of dict
        Query records (``query_id``, ``query``, ``gold``, optional ``level``).
    parallel : list of Strategy
    repeat : int
    pool_size : int
    models : dict
        Strategy name -> latency model (:func:`~.latency.latency_models`).
    done : set, optional
        Keys already written; their rows are not made again.

    Returns
    -------
    rows : list of dict
        Whole units (every missing parallel row of each query), columns
        :data:`~ttcrouter.collection.store.COLUMNS`.
    generated : int
        Tokens the pools generated.
    """
    results = _isolating_failures(lambda texts: executor.sample_pool(texts, pool_size),
                        [q["query"] for q in chunk])
    rows, generated = [], 0
    for q, pool in zip(chunk, results):
        pool_err = getattr(pool, "error", None)
        todo = [s for s in parallel if (q["query_id"], s.name, repeat) not in done]
        if pool_err:
            rows += [_error_row(q, s.name, repeat, pool_err, "calibrated") for s in todo]
            continue
        generated += int(pool.tokens)
        prompt_tokens = int(pool.prompt_tokens)
        try:
            derived = derive_pooled(pool, todo)
        except Exception as exc:  # noqa: BLE001 - recorded in the rows, the run goes on
            rows += [_error_row(q, s.name, repeat, f"{type(exc).__name__}: {exc}",
                                "calibrated") for s in todo]
            continue
        pool_correct = sum(_grade(c.answer, q["gold"]) for c in pool.candidates)
        for s in todo:
            d = derived[s.name]
            row = _base_row(q, s.name, repeat)
            row.update(answer=d.answer, correct=_grade(d.answer, q["gold"]), tokens=d.tokens,
                       latency_s=predict_latency(models[s.name], d.max_candidate_tokens),
                       error=None, prompt_tokens=prompt_tokens, reward_tokens=d.reward_tokens,
                       n_samples=d.n_samples, steps=1, latency_source="calibrated",
                       latency_x=float(d.max_candidate_tokens), pool_correct=pool_correct)
            rows.append(row)
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

