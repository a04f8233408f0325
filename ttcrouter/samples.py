"""The samples table: every sample of every pool, in drawing order, and the runs derived from it.

One row per generated sample (:data:`SAMPLE_COLUMNS`): ``query_id``, ``query``, ``gold``,
``repeat``, ``mode`` (prompt mode), ``sample`` (index in drawing order within its pool, the
pool being one (query_id, repeat, mode)), ``text``, ``answer`` (extracted), ``correct``
(0/1), ``tokens`` (generated), ``finish_reason``, ``request_latency_s`` (wall clock of the
generation request that drew it; NaN when not measured), ``round`` (index of that request
when the pool was drawn in rounds; 0 for a pool drawn at once), ``prompt_tokens`` (prompt
of that request), and one ``score_<scorer>`` column per scorer (e.g. ``score_logprob``).
Optional: ``reward_tokens`` (the collection scorer's tokens charged to the sample), ``level``,
and per scorer added later (:func:`ttcrouter.verifier_samples.score_samples`):
``reward_tokens_<scorer>`` (tokens its model read for the sample) and
``score_latency_s_<scorer>`` (seconds of scoring the sample), which :func:`derive_runs`
charges to the rows that read that score.

:func:`derive_runs` is the one function that turns samples into runs-table rows for every
strategy that can be derived from a pool (best-of-N, majority and weighted majority voting
at any ``n`` up to the pool size, early-stopping votes), so a new voting rule needs no new
generation. ``ttcrouter derive`` runs it from the command line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .executors.results import Candidate

# importing the families registers their selection rules with select_candidate
from .executors.search import best_of_n, majority_vote, select_candidate  # noqa: F401
from .executors.search.adaptive_vote import adaptive_prefix
from .grading import normalize_answer
from .strategies import MODES, AdaptiveVote, as_strategy
from .tables import read_table, write_table

__all__ = ["SAMPLE_COLUMNS", "SamplesTableError", "validate_samples", "read_samples",
           "write_samples", "derive_runs", "score_columns", "cost_columns", "samples_from_pool"]

SAMPLE_COLUMNS = (
    "query_id", "query", "gold", "repeat", "mode", "sample", "text", "answer", "correct",
    "tokens", "finish_reason", "request_latency_s", "round", "prompt_tokens",
)
SCORE_PREFIX = "score_"
#: Per-scorer cost columns: ``reward_tokens_<scorer>``, ``score_latency_s_<scorer>``.
COST_PREFIXES = ("reward_tokens_", "score_latency_s_")
_POOL = ["query_id", "repeat", "mode"]


class SamplesTableError(ValueError):
    """A samples table breaks its contract; the message names the row and column."""


def score_columns(samples: pd.DataFrame) -> list[str]:
    """The ``score_<scorer>`` columns of a samples table (not ``score_latency_s_<scorer>``)."""
    return [c for c in samples.columns
            if c.startswith(SCORE_PREFIX) and not c.startswith(COST_PREFIXES)]


def cost_columns(samples: pd.DataFrame) -> list[str]:
    """The per-scorer cost columns (``reward_tokens_<s>``, ``score_latency_s_<s>``)."""
    return [c for c in samples.columns if c.startswith(COST_PREFIXES)]


def _fail(df, mask, column, problem, fix):
    bad = np.flatnonzero(np.asarray(mask))
    if bad.size:
        row = df.iloc[bad[0]]
        keys = ", ".join(f"{c}={row[c]!r}" for c in (*_POOL, "sample") if c in df.columns)
        more = f" ({bad.size} rows in all)" if bad.size > 1 else ""
        raise SamplesTableError(f"Samples table, row {bad[0]} ({keys}), column {column!r}: "
                                f"{problem}{more}. {fix}")


def validate_samples(samples: pd.DataFrame, *, copy: bool = True) -> pd.DataFrame:
    """Check a samples table against its contract; normalise dtypes and sort it.

    Parameters
    ----------
    samples : DataFrame
        One row per sample; see :data:`SAMPLE_COLUMNS`.
    copy : bool, default=True

    Returns
    -------
    DataFrame
        Sorted by (query_id, repeat, mode, sample), integer counts, text columns as str or
        None.

    Raises
    ------
    SamplesTableError
        A missing column, an empty table, a null key or text, an unknown mode, a negative
        or non-integer count, ``correct`` not 0/1, a negative latency, a non-numeric score,
        a duplicate (query_id, repeat, mode, sample), or a pool whose samples are not
        numbered 0, 1, ..., M-1.
    """
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"A samples table must be a DataFrame, got {type(samples).__name__}.")
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise SamplesTableError(f"Samples table lacks column(s) {missing}; required columns "
                                f"are {list(SAMPLE_COLUMNS)} and score_<scorer> columns.")
    df = (samples.copy() if copy else samples).reset_index(drop=True)
    if len(df) == 0:
        raise SamplesTableError("Samples table is empty.")
    for col in ("query_id", "query", "mode", "text"):
        _fail(df, df[col].isna(), col, "is null", "Every sample needs a query id, query text, "
              "prompt mode and its text (an empty string when nothing was generated).")
    df["query_id"] = df["query_id"].astype(str)
    for col in ("gold", "answer", "finish_reason"):
        df[col] = pd.Series([None if pd.isna(v) else str(v) for v in df[col].astype(object)],
                            dtype=object)
    bad_mode = ~df["mode"].isin(MODES)
    _fail(df, bad_mode, "mode", f"unknown prompt mode "
          f"{df.loc[bad_mode, 'mode'].iloc[0] if bad_mode.any() else ''!r}",
          f"Use one of {', '.join(MODES)}.")
    for col in ("repeat", "sample", "tokens", "round", "prompt_tokens", "correct"):
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        _fail(df, np.isnan(v) | (v < 0) | (v != np.floor(v)), col,
              "must be a non-negative integer", "Store whole counts in this column.")
        df[col] = v.astype(np.int64)
    _fail(df, df["correct"] > 1, "correct", "must be 0 or 1", "Grade each sample 0 or 1.")
    df["correct"] = df["correct"].astype(np.int8)
    for col in ("request_latency_s", *score_columns(df), *cost_columns(df),
                *(["reward_tokens"] if "reward_tokens" in df.columns else [])):
        v = pd.to_numeric(df[col], errors="coerce")
        _fail(df, v.isna() & df[col].notna(), col, "is not a number", "Store numbers here.")
        if col not in score_columns(df):  # scores may be log-probabilities
            _fail(df, v < 0, col, "is negative", "Latencies and token counts are never "
                  "negative (NaN marks a latency that was not measured).")
        df[col] = v.astype(np.float64)
    df = df.sort_values([*_POOL, "sample"], kind="stable").reset_index(drop=True)
    _fail(df, df.duplicated([*_POOL, "sample"]).to_numpy(), "sample",
          "duplicates an earlier (query_id, repeat, mode, sample)",
          "Each sample of a pool has its own index.")
    expected = df.groupby(_POOL, sort=False).cumcount().to_numpy()
    _fail(df, df["sample"].to_numpy() != expected, "sample",
          "pool samples must be numbered 0..M-1 in drawing order",
          "Number the samples of each (query_id, repeat, mode) pool from 0 without gaps.")
    return df


def write_samples(samples: pd.DataFrame, path, provenance: dict | None = None,
                  *, validate: bool = True) -> Path:
    """Write a samples table to Parquet or JSONL atomically (provenance in the Parquet
    metadata, or ``<path>.meta.json`` beside a JSONL file)."""
    df = validate_samples(samples) if validate else samples
    return write_table(df, path, provenance)


def read_samples(path, *, validate: bool = True) -> pd.DataFrame:
    """Read a samples file (``.parquet`` or ``.jsonl``); provenance in ``attrs``.

    A collection directory is read by :func:`ttcrouter.collection.load_samples`.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; read a collection's samples "
                                f"with ttcrouter.collection.load_samples({str(path)!r}).")
    if not path.exists():
        raise FileNotFoundError(f"No samples table at {str(path)!r}.")
    df = read_table(path)
    prov = df.attrs["provenance"]
    if validate:
        df = validate_samples(df, copy=False)
    df.attrs["provenance"] = prov
    return df


def samples_from_pool(pool, *, query_id, gold, repeat, mode="cot", scorer="logprob",
                      correct=None, level=None) -> list[dict]:
    """Sample rows of one :class:`~ttcrouter.executors.CandidatePool` (or any result whose
    ``candidates`` are :class:`~ttcrouter.executors.Candidate`), in drawing order.

    ``correct`` is one 0/1 per candidate (the caller grades); None grades nothing (0).
    A pool scored by several scorers (its ``scores``) gets, beside ``score_<scorer>`` and
    ``reward_tokens`` of its own scorer (key None), ``score_<name>``,
    ``reward_tokens_<name>`` and ``score_latency_s_<name>`` of each named one.
    """
    cands = list(pool.candidates)
    # an early-stopping vote's result sums the prompts of its rounds: one per request here
    per_request = int(getattr(pool, "prompt_tokens", 0) or 0) // max(
        len({c.round for c in cands}), 1)
    scores = getattr(pool, "scores", None) or {}
    own = scores[None][0] if None in scores else [c.reward for c in cands]
    share = float(scores[None][1] if None in scores else getattr(pool, "reward_tokens", 0)
                  or 0) / max(len(cands), 1)
    rows = []
    for k, c in enumerate(cands):
        rows.append({
            "query_id": str(query_id), "query": pool.query, "gold": gold, "repeat": int(repeat),
            "mode": mode, "sample": k, "text": c.text, "answer": c.answer,
            "correct": int(correct[k]) if correct is not None else 0, "tokens": int(c.tokens),
            "finish_reason": c.finish_reason, "request_latency_s": float(c.request_latency_s),
            "round": int(c.round), "prompt_tokens": per_request,
            f"{SCORE_PREFIX}{scorer}": float(own[k]), "reward_tokens": share,
            "level": level,
        })
    n = max(len(cands), 1)
    for name, got in scores.items():
        if name is None:
            continue
        rewards, tokens, seconds = got
        for row, reward in zip(rows, rewards):
            row[f"{SCORE_PREFIX}{name}"] = float(reward)
            row[f"reward_tokens_{name}"] = float(tokens) / n
            row[f"score_latency_s_{name}"] = float(seconds) / n
    return rows


def _pick_score(df, strategies, score):
    cols = score_columns(df)
    if score is not None:
        col = score if score.startswith(SCORE_PREFIX) else SCORE_PREFIX + score
        if col not in cols:
            raise SamplesTableError(f"No score column {col!r}; the table has {cols}.")
        return col
    if len(cols) == 1:
        return cols[0]
    if any(s.needs_reward_model for s in strategies):
        raise SamplesTableError(f"Best-of-N and weighted voting need a score column; the table "
                                f"has {cols or 'none'}. Pass score=<scorer>.")
    return cols[0] if cols else None


def _scorer_columns(df, score_col):
    """``(score column, scorer name, reward-token column, verification-time column)``."""
    scorer = score_col[len(SCORE_PREFIX):] if score_col else None
    tokens_col = next((c for c in (f"reward_tokens_{scorer}", "reward_tokens")
                       if c in df.columns), None)
    seconds_col = f"score_latency_s_{scorer}"
    return score_col, scorer, tokens_col, seconds_col if seconds_col in df.columns else None


def _measured(rows: pd.DataFrame) -> float:
    return float(rows["request_latency_s"].max())


def derive_runs(samples: pd.DataFrame, strategies, *, score: str | None = None,
                request_latency=None) -> pd.DataFrame:
    """The runs of pooled strategies, derived from the samples already drawn.

    For each pool (query_id, repeat, mode) and each strategy of that prompt mode:

    - best-of-N, majority and weighted majority voting at ``n`` use the first ``n``
      samples (one request of ``n`` samples), with the selection rule of a live execution
      (:func:`ttcrouter.executors.select_candidate`);
    - an early-stopping vote walks the samples in rounds of ``batch``
      (:func:`ttcrouter.executors.search.adaptive_vote.adaptive_prefix`, the rule of the
      live execution) and uses the ``k * batch`` samples drawn before it stops.

    ``tokens`` are the generated tokens of the samples used, ``prompt_tokens`` the prompt
    once per request (``k`` rounds: ``k`` times), ``reward_tokens`` the scorer's tokens of
    the samples used (0 for majority and early-stopping votes, which read no scores):
    ``reward_tokens_<scorer>`` when the table has it, else ``reward_tokens``; ``correct``
    the grade of the returned sample, ``pool_correct`` the correct samples of the whole pool.
    ``scorer`` names the score a row read (None for rows that read none).

    Verification time: when the table has ``score_latency_s_<scorer>``, best-of-N and
    weighted-vote rows add the scoring seconds of the samples they use to their latency (and
    report them in ``score_latency_s``); the scorer runs after generation.

    Latency (a request's wall clock, and rounds are sequential):

    - ``request_latency=None`` (measured): a request is as long as the measured request
      that drew its samples (``request_latency_s``, the longest when they came from
      several); exact for a pool drawn the way the strategy runs (rounds of ``batch`` for an
      early-stopping vote), an upper bound for a strategy using fewer samples of one larger
      request.
    - ``request_latency(n, x)``, a callable: a request of ``n`` samples whose longest
      generated ``x`` tokens takes ``request_latency(n, x)`` seconds (the collection passes
      its calibrated lines). A parallel row's latency is ``request_latency(n, x)`` with
      ``x`` the longest of its samples (kept in ``latency_x``); an early-stopping row's is the
      sum over its rounds of ``request_latency(batch, longest sample of the round)``.

    Parameters
    ----------
    samples : DataFrame
        A samples table (:func:`validate_samples`).
    strategies : iterable of Strategy or str
        Pooled strategies (``BestOfN``, ``MajorityVote``, ``WeightedMajorityVote``,
        ``AdaptiveVote``); each is derived on the pools of its own mode.
    score : str, optional
        The scorer whose ``score_<scorer>`` column weighs votes and ranks best-of-N for the
        strategies that name no scorer; needed when the table has several. A strategy that
        names one (``best_of_n@n=4,scorer=verifier``) reads ``score_<its scorer>``.
    request_latency : callable or None, default=None

    Returns
    -------
    DataFrame
        A runs table (:data:`ttcrouter.runs.RUN_COLUMNS` plus ``prompt_tokens``,
        ``reward_tokens``, ``n_samples``, ``steps``, ``latency_source``, ``latency_x``,
        ``pool_correct``, ``level``, ``scorer``, ``score_latency_s``), one row per (pool,
        strategy), pools in table order.

    Raises
    ------
    ValueError
        A strategy that cannot be derived from a pool (beam search), or a pool smaller than
        a strategy's ``n``.
    """
    df = validate_samples(samples)
    specs = [as_strategy(s) for s in strategies]
    for s in specs:
        if not s.derivable:
            raise ValueError(f"{s.name} generates step by step; it cannot be derived from a "
                             "pool of full samples.")
    default_col = _pick_score(df, [s for s in specs if s.scorer is None], score)
    cols_of = {None: _scorer_columns(df, default_col)}
    for named in dict.fromkeys(s.scorer for s in specs if s.scorer is not None):
        col = SCORE_PREFIX + named
        if col not in df.columns:
            users = [s.name for s in specs if s.scorer == named]
            raise SamplesTableError(
                f"{users[0]} reads the scores of scorer {named!r}, but the samples table has "
                f"no {col!r} column (it has {score_columns(df) or 'none'}); add it with "
                f"ttcrouter.score_samples or ttcrouter.cross_fit_scores.")
        cols_of[named] = _scorer_columns(df, col)
    has_level = "level" in df.columns
    out = []
    for (qid, repeat, mode), pool in df.groupby(_POOL, sort=False):
        mine = [s for s in specs if s.mode == mode]
        if not mine:
            continue
        pool = pool.reset_index(drop=True)
        too_big = [s.name for s in mine if s.n > len(pool) and s.parallel]
        if too_big:
            raise ValueError(f"Pool (query_id={qid!r}, repeat={repeat}, mode={mode!r}) holds "
                             f"{len(pool)} samples; {too_big} need more.")
        answers = pool["answer"].tolist()
        normalized = [normalize_answer(a) for a in answers]
        cands_of = {}
        for key, (score_col, _, _, _) in cols_of.items():
            rewards = pool[score_col].to_numpy(float) if score_col else np.zeros(len(pool))
            cands_of[key] = [Candidate(text=t, steps=[t], answer=a, normalized=na,
                                       tokens=int(k), reward=float(r))
                             for t, a, na, k, r in zip(pool["text"], answers, normalized,
                                                       pool["tokens"], rewards)]
        first = pool.iloc[0]
        base = {"query_id": qid, "query": first["query"], "gold": first["gold"],
                "repeat": int(repeat), "error": None,
                "pool_correct": int(pool["correct"].sum()),
                "level": first["level"] if has_level else None}
        for s in mine:
            _, scorer, tokens_col, seconds_col = cols_of[s.scorer]
            cands = cands_of[s.scorer]
            if isinstance(s, AdaptiveVote):
                try:
                    drawn, idx = adaptive_prefix(s, cands)
                except ValueError as exc:
                    raise ValueError(f"Pool (query_id={qid!r}, repeat={repeat}, mode={mode!r}): "
                                     f"{exc}") from None
                rounds = [pool.iloc[k:k + s.batch] for k in range(0, drawn, s.batch)]
                if request_latency is None:
                    latency = sum(_measured(r) for r in rounds)
                else:
                    latency = sum(request_latency(s.batch, float(r["tokens"].max()))
                                  for r in rounds)
                x, requests, source = float("nan"), len(rounds), "rounds"
            else:
                drawn = s.n
                idx = select_candidate(s, cands[:drawn])
                x = float(pool["tokens"].iloc[:drawn].max())
                latency = (_measured(pool.iloc[:drawn]) if request_latency is None
                           else request_latency(s.n, x))
                requests = 1
                source = "measured" if request_latency is None else "calibrated"
            used = pool.iloc[:drawn]
            reward_tokens, score_s = 0, 0.0
            if s.needs_reward_model and tokens_col:
                reward_tokens = int(round(float(used[tokens_col].sum())))
            if s.needs_reward_model and seconds_col:
                score_s = float(used[seconds_col].sum())
            out.append({**base, "strategy": s.name, "answer": answers[idx],
                        "correct": int(pool["correct"].iloc[idx]),
                        "tokens": int(used["tokens"].sum()),
                        "latency_s": float(latency) + score_s,
                        "prompt_tokens": int(first["prompt_tokens"]) * requests,
                        "reward_tokens": reward_tokens, "n_samples": int(drawn),
                        "steps": requests, "latency_source": source,
                        "latency_x": x, "scorer": scorer if s.needs_reward_model else None,
                        "score_latency_s": score_s})
    cols = ["query_id", "query", "gold", "strategy", "repeat", "answer", "correct", "tokens",
            "latency_s", "error", "prompt_tokens", "reward_tokens", "n_samples", "steps",
            "latency_source", "latency_x", "pool_correct", "level", "scorer", "score_latency_s"]
    return pd.DataFrame(out, columns=cols)
