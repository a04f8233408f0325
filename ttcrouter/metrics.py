"""Score routing decisions against realized outcomes; oracle and static baselines.

Every score here is computed with lambdas FIXED by the caller (or by the scorer factory),
never with the router's own ``lambda_tokens``/``lambda_latency``: a scorer that used the
router's lambdas would always rate ``lambda=0`` best when tuning. Inputs:

* ``Y`` (n_queries, n_strategies): realized accuracy (soft labels) of every strategy,
* ``T``, ``L`` (same shape): realized tokens and latency,
* ``choice``: per query the chosen strategy, as column indices or as strategy names (names
  need ``Y`` as a DataFrame whose columns are the names, or ``strategies=``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import make_scorer

from .frontier import frontier_auc, pareto_frontier
from .strategies import parse_strategy
from .validation import check_int

__all__ = [
    "realized_utility",
    "routed_accuracy",
    "routed_mean_tokens",
    "routed_mean_latency",
    "make_utility_scorer",
    "make_accuracy_scorer",
    "make_tokens_scorer",
    "make_latency_scorer",
    "routing_scorers",
    "oracle_choice",
    "static_strategy_table",
    "pareto_frontier",
    "frontier_auc",
    "split_half_reliability",
]


def _names_of(M, strategies=None):
    if strategies is not None:
        return [parse_strategy(s).name for s in strategies]
    if isinstance(M, pd.DataFrame):
        return [parse_strategy(str(c)).name for c in M.columns]
    return None


def _as_matrix(M, what, n_rows=None, n_cols=None, *, allow_none=False):
    if M is None:
        if allow_none:
            return None
        raise ValueError(f"{what} is required here but was None.")
    A = np.asarray(M, dtype=float)
    if A.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n_queries, n_strategies), got shape {A.shape}.")
    if n_rows is not None and A.shape[0] != n_rows:
        raise ValueError(f"{what} has {A.shape[0]} rows but {n_rows} queries were routed.")
    if n_cols is not None and A.shape[1] != n_cols:
        raise ValueError(f"{what} has {A.shape[1]} columns, expected {n_cols} strategies.")
    if np.isnan(A).any():
        raise ValueError(f"{what} contains NaN; every (query, strategy) cell needs a value.")
    return A


def _choice_index(choice, n_queries, n_strategies, names=None):
    """Column index per query from indices or strategy names."""
    c = np.asarray(choice)
    if c.ndim != 1 or c.shape[0] != n_queries:
        raise ValueError(
            f"choice must hold one strategy per query ({n_queries}), got shape {c.shape}."
        )
    if c.dtype.kind in "iu":
        if c.size and (c.min() < 0 or c.max() >= n_strategies):
            raise ValueError(f"choice indices must be in [0, {n_strategies}), got {c.min()}..{c.max()}.")
        return c.astype(np.intp)
    if names is None:
        raise ValueError(
            "choice holds strategy names but the columns have none: pass Y as a DataFrame "
            "with strategy-name columns, or strategies=[...]."
        )
    pos = {n: i for i, n in enumerate(names)}
    out = np.empty(n_queries, dtype=np.intp)
    for i, name in enumerate(c):
        key = name if name in pos else parse_strategy(str(name)).name
        if key not in pos:
            raise ValueError(
                f"Chosen strategy {name!r} is not a column of Y; columns are {names}."
            )
        out[i] = pos[key]
    return out


def _pick(M, idx):
    return M[np.arange(M.shape[0]), idx]


def realized_utility(Y, T, L, choice, lambda_tokens=0.0, lambda_latency=0.0, *,
                     strategies=None):
    """Mean realized utility ``Y - lambda_tokens * T - lambda_latency * L`` of the choices.

    Parameters
    ----------
    Y, T, L : array-like or DataFrame of shape (n_queries, n_strategies)
        Realized accuracy, tokens and latency; ``T`` or ``L`` may be None when its lambda
        is 0.
    choice : array-like of shape (n_queries,)
        Column indices or strategy names.
    lambda_tokens, lambda_latency : float, default=0.0
        Fixed prices of a token and of a second, in accuracy units.
    strategies : list of str, optional
        Column names when ``Y`` is an array and ``choice`` holds names.

    Returns
    -------
    float
    """
    if lambda_tokens < 0 or lambda_latency < 0:
        raise ValueError(
            f"lambdas must be >= 0, got lambda_tokens={lambda_tokens}, "
            f"lambda_latency={lambda_latency}."
        )
    names = _names_of(Y, strategies)
    Ya = _as_matrix(Y, "Y")
    idx = _choice_index(choice, *Ya.shape, names)
    u = _pick(Ya, idx)
    for M, lam, what in ((T, lambda_tokens, "T (tokens)"), (L, lambda_latency, "L (latency)")):
        if lam == 0:
            continue
        if M is None:
            raise ValueError(f"{what} is needed for a non-zero lambda but was None.")
        u = u - lam * _pick(_as_matrix(M, what, *Ya.shape), idx)
    return float(u.mean())


def routed_accuracy(Y, choice, *, strategies=None):
    """Mean realized accuracy of the chosen strategies."""
    Ya = _as_matrix(Y, "Y")
    return float(_pick(Ya, _choice_index(choice, *Ya.shape, _names_of(Y, strategies))).mean())


def routed_mean_tokens(T, choice, *, strategies=None):
    """Mean realized tokens of the chosen strategies."""
    return routed_accuracy(T, choice, strategies=strategies)


def routed_mean_latency(L, choice, *, strategies=None):
    """Mean realized latency (seconds) of the chosen strategies."""
    return routed_accuracy(L, choice, strategies=strategies)


# --- scorers for GridSearchCV & co. -------------------------------------------------------

def _utility_score(y_true, y_pred, tokens=None, latency=None, *, lambda_tokens=0.0,
                   lambda_latency=0.0, strategies=None):
    return realized_utility(y_true, tokens, latency, y_pred, lambda_tokens, lambda_latency,
                            strategies=strategies)


def _accuracy_score(y_true, y_pred, *, strategies=None):
    return routed_accuracy(y_true, y_pred, strategies=strategies)


def _cost_score(y_true, y_pred, cost=None, *, what, strategies=None):
    if cost is None:
        raise ValueError(
            f"The {what} scorer needs the {what} matrix as metadata: enable metadata routing "
            f"(sklearn.set_config(enable_metadata_routing=True)) before making the scorer, "
            f"and pass {what}=... to fit of the search."
        )
    names = _names_of(y_true, strategies)
    C = _as_matrix(cost, what)
    return float(_pick(C, _choice_index(y_pred, *C.shape, names)).mean())


def _tokens_score(y_true, y_pred, tokens=None, *, strategies=None):
    return _cost_score(y_true, y_pred, tokens, what="tokens", strategies=strategies)


def _latency_score(y_true, y_pred, latency=None, *, strategies=None):
    return _cost_score(y_true, y_pred, latency, what="latency", strategies=strategies)


def _request(scorer, **params):
    from sklearn.utils.metadata_routing import _routing_enabled

    if _routing_enabled():
        scorer = scorer.set_score_request(**params)
    return scorer


def make_utility_scorer(lambda_tokens=0.0, lambda_latency=0.0, *, strategies=None):
    """Scorer of realized utility at FIXED lambdas, for ``GridSearchCV(scoring=...)``.

    It calls ``estimator.predict(X)`` (strategy names) and scores them against ``y_true = Y``
    with ``tokens`` and ``latency`` received as metadata. Make it after
    ``sklearn.set_config(enable_metadata_routing=True)``: it then requests ``tokens`` and
    ``latency`` (``set_score_request``) itself.

    Parameters
    ----------
    lambda_tokens, lambda_latency : float, default=0.0
        The trade-off the score measures; independent of the router's own lambdas.
    strategies : list of str, optional
        Column names of ``Y`` when it is passed as an array.

    Returns
    -------
    scorer : callable ``scorer(estimator, X, Y, tokens=None, latency=None)``
    """
    if lambda_tokens < 0 or lambda_latency < 0:
        raise ValueError(
            f"lambdas must be >= 0, got lambda_tokens={lambda_tokens}, "
            f"lambda_latency={lambda_latency}."
        )
    scorer = make_scorer(_utility_score, response_method="predict",
                         lambda_tokens=float(lambda_tokens), lambda_latency=float(lambda_latency),
                         strategies=strategies)
    return _request(scorer, tokens=True, latency=True)


def make_accuracy_scorer(*, strategies=None):
    """Scorer of the realized accuracy of the routed choices (higher is better)."""
    return make_scorer(_accuracy_score, response_method="predict", strategies=strategies)


def make_tokens_scorer(*, strategies=None):
    """Scorer of the mean realized tokens of the routed choices (NEGATED: higher is better).

    Needs ``tokens`` as metadata (see :func:`make_utility_scorer`).
    """
    scorer = make_scorer(_tokens_score, response_method="predict", greater_is_better=False,
                         strategies=strategies)
    return _request(scorer, tokens=True)


def make_latency_scorer(*, strategies=None):
    """Scorer of the mean realized latency of the routed choices (NEGATED: higher is better).

    Needs ``latency`` as metadata (see :func:`make_utility_scorer`).
    """
    scorer = make_scorer(_latency_score, response_method="predict", greater_is_better=False,
                         strategies=strategies)
    return _request(scorer, latency=True)


def routing_scorers(lambda_tokens=0.0, lambda_latency=0.0, *, strategies=None):
    """Dict of scorers for multi-metric search: utility, accuracy, tokens, latency.

    Use with ``GridSearchCV(scoring=routing_scorers(...), refit="utility")``.
    """
    return {
        "utility": make_utility_scorer(lambda_tokens, lambda_latency, strategies=strategies),
        "accuracy": make_accuracy_scorer(strategies=strategies),
        "tokens": make_tokens_scorer(strategies=strategies),
        "latency": make_latency_scorer(strategies=strategies),
    }


# --- baselines ------------------------------------------------------------------------------

def oracle_choice(Y, T=None, L=None, lambda_tokens=0.0, lambda_latency=0.0):
    """Per-query oracle: the column index that maximizes the TRUE utility.

    Ties go to the first strategy in column order.

    Returns
    -------
    ndarray of shape (n_queries,), int
    """
    Ya = _as_matrix(Y, "Y")
    U = Ya.copy()
    if lambda_tokens < 0 or lambda_latency < 0:
        raise ValueError("lambdas must be >= 0.")
    if lambda_tokens:
        U -= lambda_tokens * _as_matrix(T, "T (tokens)", *Ya.shape)
    if lambda_latency:
        U -= lambda_latency * _as_matrix(L, "L (latency)", *Ya.shape)
    return np.argmax(U, axis=1)


def static_strategy_table(Y, T=None, L=None, *, strategies=None):
    """Accuracy, mean tokens and mean latency of always running one strategy.

    Returns
    -------
    DataFrame indexed by strategy name with columns ``accuracy``, ``mean_tokens``,
    ``mean_latency`` (NaN where that matrix was not given).
    """
    Ya = _as_matrix(Y, "Y")
    names = _names_of(Y, strategies) or [f"strategy_{j}" for j in range(Ya.shape[1])]
    out = pd.DataFrame(index=pd.Index(names, name="strategy"))
    out["accuracy"] = Ya.mean(axis=0)
    for M, col in ((T, "mean_tokens"), (L, "mean_latency")):
        A = _as_matrix(M, col, *Ya.shape, allow_none=True)
        out[col] = np.nan if A is None else A.mean(axis=0)
    return out


def _default_gain_pairs(names):
    """Consecutive budgets of each method and prompt mode: (cheaper, dearer) name pairs."""
    by_method = {}
    for name in names:
        spec = parse_strategy(name)
        by_method.setdefault((spec.method, spec.mode), []).append((spec.n, getattr(spec, "beam_width", 0),
                                                      spec.name))
    pairs = []
    for specs in by_method.values():
        specs.sort()
        pairs += [(a[2], b[2]) for a, b in zip(specs, specs[1:])]
    return pairs


def split_half_reliability(runs, strategies=None, gains=None, *, n_splits=20,
                           random_state=0):
    """How reproducible per-query accuracies and per-query gains are across repeated runs.

    A router can only learn per-query differences that repeat. For every query its runs are
    split at random into two halves of repeats; the per-query mean correctness of each half
    is correlated over queries (Pearson), averaged over ``n_splits`` random splits, and
    stepped up to the full number of repeats with the Spearman-Brown formula
    ``2 r / (1 + r)``. Values near 1: the table pins down which queries a strategy solves
    (or gains on); near 0: the per-query differences are run-to-run noise, and no router
    can exploit them on this table.

    Parameters
    ----------
    runs : DataFrame
        A runs table (``query_id``, ``strategy``, ``repeat``, ``correct``, ``error``).
        Failed runs (``error`` set) are left out.
    strategies : list of str, default=None
        Strategies whose accuracy to assess; ``None`` means every strategy in ``runs``.
    gains : list of (str, str), default=None
        Pairs ``(a, b)`` whose per-query gain ``accuracy(b) - accuracy(a)`` to assess, paired
        by repeat (the same pooled samples when both come from one pool). ``None`` means
        consecutive budgets of each method among ``strategies`` (e.g. ``majority_vote@n=2``
        -> ``majority_vote@n=4``).
    n_splits : int, default=20
        Random half splits averaged.
    random_state : int or None, default=0

    Returns
    -------
    DataFrame
        One row per strategy (``what="accuracy"``) and per pair (``what="gain"``, index
        ``"a -> b"``), with ``n_queries`` (queries with at least two repeats of it),
        ``split_half_r`` and ``reliability`` (Spearman-Brown). NaN where a half has no
        variance across queries.

    Raises
    ------
    ValueError
        When a strategy is not in ``runs`` or no query has two repeats of a strategy.
    """
    df = pd.DataFrame(runs)
    missing = [c for c in ("query_id", "strategy", "repeat", "correct") if c not in df.columns]
    if missing:
        raise ValueError(f"runs lacks the column(s) {missing}; pass a runs table "
                         f"(see ttcrouter.runs).")
    if "error" in df.columns:
        df = df[df["error"].isna()]
    df = df.assign(query_id=df["query_id"].astype(str),
                   strategy=[parse_strategy(n).name for n in df["strategy"]])
    known = list(dict.fromkeys(df["strategy"]))
    names = known if strategies is None else [parse_strategy(s).name for s in strategies]
    pairs = (_default_gain_pairs(names) if gains is None
             else [(parse_strategy(a).name, parse_strategy(b).name) for a, b in gains])
    unknown = sorted({n for n in names + [x for pair in pairs for x in pair]} - set(known))
    if unknown:
        raise ValueError(f"No runs of {unknown} in runs; it has {known}.")
    n_splits = check_int(n_splits, "n_splits", min_val=1)
    # (query, repeat) x strategy correctness; repeats of one query are split together, so a
    # gain is paired within a repeat
    cell = df.pivot_table(index=["query_id", "repeat"], columns="strategy", values="correct",
                          aggfunc="mean")
    queries = cell.index.get_level_values(0)
    rng = np.random.default_rng(random_state)
    series = {name: cell[name] for name in names}
    series.update({f"{a} -> {b}": cell[b] - cell[a] for a, b in pairs})
    r = {key: [] for key in series}
    for _ in range(n_splits):
        # a random rank of each (query, repeat) within its query: halves by rank parity
        order = pd.Series(rng.random(len(cell)), index=cell.index)
        for key, values in series.items():
            ok = values.notna().to_numpy()
            v, q, o = values[ok], queries[ok], order[ok]
            rank = o.groupby(q).rank(method="first").to_numpy()
            half = pd.DataFrame({"q": q, "h": rank % 2, "v": v.to_numpy()})
            means = half.groupby(["q", "h"])["v"].mean().unstack("h").dropna()
            if len(means) < 3 or (means.std(ddof=0) == 0).any():
                r[key].append(np.nan)
            else:
                r[key].append(float(np.corrcoef(means[0.0], means[1.0])[0, 1]))
    rows = []
    for key, values in series.items():
        n_q = int((values.notna().groupby(queries).sum() >= 2).sum())
        if n_q == 0:
            raise ValueError(f"No query has two successful repeats of {key!r}: collect at "
                             f"least 2 repeats per query to measure reliability.")
        rr = np.asarray(r[key], dtype=float)
        mean_r = float(np.nanmean(rr)) if np.isfinite(rr).any() else np.nan
        rows.append({"what": "gain" if " -> " in key else "accuracy", "n_queries": n_q,
                     "split_half_r": mean_r,
                     "reliability": 2 * mean_r / (1 + mean_r) if mean_r > -1 else np.nan})
    return pd.DataFrame(rows, index=pd.Index(list(series), name="strategy"))
