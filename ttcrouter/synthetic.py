"""Synthetic runs tables with a known best routing (for tests, examples and benchmarks).

The outcomes here are SYNTHETIC: no model was run. Each query belongs to one of three latent
difficulty levels whose wording a real sentence encoder can tell apart:

* ``easy``: one sample suffices; every strategy is about equally accurate, so the cheapest
  one is best whenever cost matters.
* ``medium``: a single sample is often wrong but the right answer is the most frequent one,
  so majority voting gains with N (weighted majority voting a little more).
* ``hard``: parallel sampling hardly helps; only PRM-guided beam search solves them.

Costs follow the shape of real runs: generated tokens grow linearly with N (beam search:
N candidates times the number of steps), latency of the parallel methods is nearly flat in N
(one batched request), while beam search latency grows with the number of steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

from .strategies import as_strategy, default_strategy_space
from .validation import check_int

__all__ = ["make_synthetic_runs", "DIFFICULTIES"]

#: Latent difficulty levels, in the order used by ``truth.difficulty_code``.
DIFFICULTIES = ("easy", "medium", "hard")

_NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
_ITEMS = ["apples", "pencils", "marbles", "stickers", "cookies", "books", "coins", "shells"]

# Mean tokens of one full solution, tokens per beam-search step and number of steps.
_SOLUTION_TOKENS = {"easy": 40.0, "medium": 120.0, "hard": 260.0}
_STEP_TOKENS = 45.0
_BEAM_STEPS = {"easy": 2.0, "medium": 4.0, "hard": 7.0}
_SECONDS_PER_TOKEN = 0.02      # decode time of one sequence
_REQUEST_OVERHEAD_S = 0.3      # per generation request (one per parallel run, one per step)
_PRM_SECONDS_PER_CANDIDATE = 0.02


def _easy_query(rng) -> tuple[str, str]:
    a, b = (int(v) for v in rng.integers(1, 10, size=2))
    template = [
        "Easy: what is {a} + {b}?",
        "Quick sum: what is {a} plus {b}?",
        "Simple arithmetic: add {a} and {b}.",
    ][rng.integers(3)]
    return template.format(a=a, b=b), str(a + b)


def _medium_query(rng) -> tuple[str, str]:
    name = _NAMES[rng.integers(len(_NAMES))]
    item = _ITEMS[rng.integers(len(_ITEMS))]
    a, b = (int(v) for v in rng.integers(3, 13, size=2))
    c = int(rng.integers(1, a * b))
    template = [
        "Word problem: {name} buys {a} boxes with {b} {item} each and gives {c} {item} to a "
        "friend. How many {item} does {name} have left?",
        "Story problem: {name} packs {b} {item} into each of {a} bags, then loses {c} of "
        "them. How many {item} remain in the bags?",
    ][rng.integers(2)]
    return template.format(name=name, item=item, a=a, b=b, c=c), str(a * b - c)


def _hard_query(rng) -> tuple[str, str]:
    n = int(rng.integers(5, 40))
    template = [
        "Olympiad problem: find the number of ordered pairs of positive integers (x, y) with "
        "x * y dividing {n}! and gcd(x, y) = 1, proving each step of the counting argument.",
        "Competition geometry: a circle is inscribed in a triangle with integer sides summing "
        "to {n}; determine the largest possible inradius and justify every step rigorously.",
        "Number theory proof: determine the sum of all primes p below {n}0 for which p^2 + 2 "
        "is also prime, with a complete rigorous derivation.",
    ][rng.integers(3)]
    return template.format(n=n), str(int(rng.integers(10, 1000)))


_QUERY_MAKERS = {"easy": _easy_query, "medium": _medium_query, "hard": _hard_query}


def _true_accuracy(difficulty: str, spec) -> float:
    """Latent probability that one run of ``spec`` answers a query of this level."""
    k = np.log2(spec.n) / 4.0  # 0 at n=1, 1 at n=16
    method = spec.method
    if difficulty == "easy":
        return 0.90 if method == "beam_search" else 0.93
    if difficulty == "medium":
        if method == "majority_vote":
            return 0.30 + 0.58 * k
        if method == "weighted_majority_vote":
            return 0.30 + 0.62 * k
        if method == "best_of_n":
            return 0.30 + 0.35 * k
        return 0.40 + 0.05 * k  # beam search
    # hard
    if method == "beam_search":
        return float(np.clip(0.55 + 0.30 * (np.log2(spec.n) - 2.0), 0.3, 0.92))
    if method == "best_of_n":
        return 0.05 + 0.10 * k
    return 0.05 + 0.04 * k


def _expected_costs(difficulty: str, spec) -> tuple[float, float]:
    """Expected generated tokens and latency (seconds) of one run."""
    if spec.method == "beam_search":
        steps = _BEAM_STEPS[difficulty]
        tokens = spec.n * steps * _STEP_TOKENS
        per_step = (_REQUEST_OVERHEAD_S + _STEP_TOKENS * _SECONDS_PER_TOKEN * (1 + 0.05 * np.log2(spec.n))
                    + _PRM_SECONDS_PER_CANDIDATE * spec.n + 0.25)
        return tokens, steps * per_step
    length = _SOLUTION_TOKENS[difficulty]
    tokens = spec.n * length
    latency = _REQUEST_OVERHEAD_S + length * _SECONDS_PER_TOKEN * (1 + 0.05 * np.log2(spec.n))
    if spec.needs_reward_model:
        latency += 0.1 + _PRM_SECONDS_PER_CANDIDATE * spec.n
    return tokens, latency


def make_synthetic_runs(n_queries=200, strategies=None, repeats=4, random_state=None, *,
                        difficulty_weights=(1 / 3, 1 / 3, 1 / 3), accuracy_noise=0.03,
                        cost_noise=0.15, return_truth=False):
    """Make a SYNTHETIC runs table with a known best routing.

    No model is run: outcomes are drawn from latent per-query accuracies (see the module
    docstring for the three difficulty levels). The table satisfies the runs-table contract
    (:func:`ttcrouter.runs.validate_runs`) and carries ``attrs["provenance"]`` with
    ``{"synthetic": True, ...}``.

    Parameters
    ----------
    n_queries : int, default=200
        Number of distinct queries.
    strategies : list of str or Strategy, optional
        Strategies to "run"; defaults to :func:`ttcrouter.strategies.default_strategy_space`
        (17 strategies).
    repeats : int, default=4
        Runs per (query, strategy); the soft label is the mean of their ``correct``.
    random_state : int, RandomState instance or None, default=None
        Seed of the draws.
    difficulty_weights : tuple of 3 floats, default=(1/3, 1/3, 1/3)
        Share of easy, medium and hard queries.
    accuracy_noise : float, default=0.03
        Standard deviation of a per-(query, strategy) jitter of the latent accuracy.
    cost_noise : float, default=0.15
        Log-normal spread of the per-query solution length and per-run costs.
    return_truth : bool, default=False
        Also return the latent truth.

    Returns
    -------
    runs : DataFrame
        One row per (query, strategy, repeat) with the columns of
        :data:`ttcrouter.runs.RUN_COLUMNS` plus ``difficulty``.
    truth : Bunch
        Only when ``return_truth=True``: ``difficulty`` (Series of level names by query_id),
        ``accuracy`` (DataFrame of latent accuracies, queries x strategies), ``tokens`` and
        ``latency`` (expected costs, same shape) and ``strategies`` (canonical names).
    """
    n_queries = check_int(n_queries, "n_queries", min_val=1)
    repeats = check_int(repeats, "repeats", min_val=1)
    weights = np.asarray(difficulty_weights, dtype=float)
    if weights.shape != (3,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"difficulty_weights must be 3 non-negative numbers (easy, medium, hard) with a "
            f"positive sum, got {difficulty_weights!r}."
        )
    specs = [as_strategy(s) for s in (default_strategy_space(single_sample_once=False)
                                      if strategies is None
                                      else strategies)]
    if not specs:
        raise ValueError("strategies must name at least one strategy.")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"strategies has duplicates: {names}.")
    rng = check_random_state(random_state)
    gen = np.random.default_rng(rng.randint(2**31 - 1))

    levels = gen.choice(3, size=n_queries, p=weights / weights.sum())
    qids = [f"syn-{i:05d}" for i in range(n_queries)]
    texts, golds = zip(*(_QUERY_MAKERS[DIFFICULTIES[lv]](gen) for lv in levels))

    n_s = len(specs)
    acc = np.empty((n_queries, n_s))
    exp_tok = np.empty((n_queries, n_s))
    exp_lat = np.empty((n_queries, n_s))
    length_factor = np.exp(gen.normal(0.0, cost_noise, size=n_queries))
    for i, lv in enumerate(levels):
        level = DIFFICULTIES[lv]
        for j, spec in enumerate(specs):
            acc[i, j] = _true_accuracy(level, spec)
            tok, lat = _expected_costs(level, spec)
            exp_tok[i, j] = tok * length_factor[i]
            exp_lat[i, j] = lat * length_factor[i]
    acc = np.clip(acc + gen.normal(0.0, accuracy_noise, size=acc.shape), 0.0, 1.0)

    shape = (n_queries, n_s, repeats)
    correct = (gen.random(shape) < acc[..., None]).astype(np.int8)
    tokens = np.maximum(1, np.round(exp_tok[..., None] * np.exp(gen.normal(0, cost_noise, shape))))
    latency = exp_lat[..., None] * np.exp(gen.normal(0.0, cost_noise, shape))

    qi, si, ri = (a.ravel() for a in np.indices(shape))
    gold_arr = np.asarray(golds, dtype=object)
    wrong = np.array([str(int(g) + 1) for g in golds], dtype=object)
    flat_correct = correct.ravel()
    runs = pd.DataFrame({
        "query_id": np.asarray(qids, dtype=object)[qi],
        "query": np.asarray(texts, dtype=object)[qi],
        "gold": gold_arr[qi],
        "strategy": np.asarray(names, dtype=object)[si],
        "repeat": ri.astype(np.int64),
        "answer": np.where(flat_correct == 1, gold_arr[qi], wrong[qi]),
        "correct": flat_correct,
        "tokens": tokens.ravel().astype(np.int64),
        "latency_s": latency.ravel(),
        "error": None,
        "difficulty": np.asarray(DIFFICULTIES, dtype=object)[levels][qi],
    })
    runs.attrs["provenance"] = {
        "synthetic": True,
        "generator": "ttcrouter.synthetic.make_synthetic_runs",
        "n_queries": int(n_queries),
        "repeats": int(repeats),
        "strategies": names,
        "random_state": random_state if isinstance(random_state, (int, type(None))) else "object",
        "note": "SYNTHETIC outcomes drawn from latent accuracies; no model was run.",
    }
    if not return_truth:
        return runs
    index = pd.Index(qids, name="query_id")
    truth = Bunch(
        difficulty=pd.Series(np.asarray(DIFFICULTIES, dtype=object)[levels], index=index,
                             name="difficulty"),
        difficulty_code=pd.Series(levels, index=index, name="difficulty_code"),
        accuracy=pd.DataFrame(acc, index=index, columns=names),
        tokens=pd.DataFrame(exp_tok, index=index, columns=names),
        latency=pd.DataFrame(exp_lat, index=index, columns=names),
        strategies=names,
    )
    return runs, truth
