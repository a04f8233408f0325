"""The runs table: one row per execution of a strategy on a query.

It is the unit of data exchanged between collection, fitting and evaluation. Required
columns (:data:`RUN_COLUMNS`):

``query_id``, ``query``, ``gold``, ``strategy`` (canonical name), ``repeat``, ``answer``,
``correct`` (0/1), ``tokens`` (generated tokens, all candidates and steps together),
``latency_s`` (wall clock of that execution), ``error`` (null when it ran).

More columns are kept as they are. Provenance (model, backend, hardware, seed, version,
date, ...) travels with the file: in the Parquet schema metadata, or for JSONL in a sidecar
file ``<path>.meta.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .strategies import METHODS, MODES, parse_strategy
from .tables import read_table, read_table_provenance, write_table

__all__ = [
    "RUN_COLUMNS",
    "RunsTableError",
    "RunsSummary",
    "validate_runs",
    "read_runs",
    "write_runs",
    "read_provenance",
    "aggregate_runs",
    "split_queries",
    "train_test_split_runs",
    "strategy_sort_key",
]

RUN_COLUMNS = (
    "query_id", "query", "gold", "strategy", "repeat",
    "answer", "correct", "tokens", "latency_s", "error",
)
_KEY = ["query_id", "strategy", "repeat"]


class RunsTableError(ValueError):
    """A runs table breaks the data contract; the message names the row and column."""


def _row_label(df: pd.DataFrame, pos: int) -> str:
    row = df.iloc[pos]
    keys = ", ".join(f"{c}={row[c]!r}" for c in _KEY if c in df.columns)
    return f"row {pos} ({keys})" if keys else f"row {pos}"


def _first_bad(df: pd.DataFrame, mask: np.ndarray, column: str, problem: str, fix: str):
    bad = np.flatnonzero(mask)
    if bad.size:
        more = f" ({bad.size} rows in all)" if bad.size > 1 else ""
        raise RunsTableError(
            f"Runs table, {_row_label(df, bad[0])}, column {column!r}: {problem}{more}. {fix}"
        )


def validate_runs(runs: pd.DataFrame, *, copy: bool = True) -> pd.DataFrame:
    """Check a runs table against the data contract and normalise its dtypes.

    Parameters
    ----------
    runs : DataFrame
        One row per execution; see :data:`RUN_COLUMNS`.
    copy : bool, default=True
        Work on a copy rather than on ``runs``.

    Returns
    -------
    DataFrame
        The table with canonical strategy names and integer ``correct``/``tokens``/``repeat``.

    Raises
    ------
    RunsTableError
        On a missing column, a null id/query/strategy, NaN or negative tokens or latency,
        ``correct`` not 0/1, an unknown strategy name or a duplicate
        (query_id, strategy, repeat). The message names the first offending row.
    """
    if not isinstance(runs, pd.DataFrame):
        raise TypeError(f"A runs table must be a pandas DataFrame, got {type(runs).__name__}.")
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise RunsTableError(
            f"Runs table lacks column(s) {missing}; required columns are {list(RUN_COLUMNS)}."
        )
    df = runs.copy() if copy else runs
    df = df.reset_index(drop=True)
    if len(df) == 0:
        raise RunsTableError("Runs table is empty: collect some runs first (ttcrouter collect).")

    for col in ("query_id", "query", "strategy"):
        _first_bad(df, df[col].isna().to_numpy(), col, "is null",
                   "Every row needs a query id, query text and strategy name.")
    df["query_id"] = df["query_id"].astype(str)
    for col in ("gold", "answer", "error"):  # nullable text: None, never NaN, across formats
        df[col] = [None if pd.isna(v) else str(v) for v in df[col].astype(object)]
        df[col] = df[col].astype(object)

    # Canonical strategy names: parse each distinct name once.
    canonical = {}
    for name in pd.unique(df["strategy"]):
        try:
            canonical[name] = parse_strategy(str(name)).name
        except (ValueError, TypeError) as exc:
            mask = (df["strategy"] == name).to_numpy()
            _first_bad(df, mask, "strategy", f"unknown strategy name {name!r} ({exc})",
                       "Use canonical names such as 'majority_vote@n=8' or "
                       "'beam_search@n=8,w=4'.")
    df["strategy"] = df["strategy"].map(canonical)

    ok = df["error"].isna().to_numpy()
    for col in ("repeat", "correct", "tokens", "latency_s"):
        values = pd.to_numeric(df[col], errors="coerce")
        nonnum = values.isna().to_numpy() & df[col].notna().to_numpy()
        _first_bad(df, nonnum, col, f"is not a number ({df[col].iloc[np.flatnonzero(nonnum)[0]]!r})"
                   if nonnum.any() else "", "Store numbers in this column.")
        df[col] = values
    for col in ("tokens", "latency_s"):
        v = df[col].to_numpy(dtype=float)
        _first_bad(df, ok & np.isnan(v), col, "is NaN in a row that ran (error is null)",
                   "Record the measured value, or set 'error' for a failed run.")
        _first_bad(df, v < 0, col, f"is negative ({np.nanmin(v) if v.size else 0})",
                   "Token counts and latencies are never negative.")
    c = df["correct"].to_numpy(dtype=float)
    _first_bad(df, ok & ~np.isin(c, (0.0, 1.0)), "correct",
               f"must be 0 or 1, got {c[ok & ~np.isin(c, (0.0, 1.0))][:1]}"
               if (ok & ~np.isin(c, (0.0, 1.0))).any() else "",
               "Grade each run as correct (1) or not (0).")
    r = df["repeat"].to_numpy(dtype=float)
    _first_bad(df, np.isnan(r) | (r < 0) | (r != np.floor(r)), "repeat",
               "must be a non-negative integer", "Number repeats 0, 1, 2, ...")
    df["repeat"] = df["repeat"].astype(np.int64)
    df["correct"] = df["correct"].fillna(0).astype(np.int8)
    df["tokens"] = df["tokens"].fillna(0).astype(np.int64)
    df["latency_s"] = df["latency_s"].astype(np.float64)

    dup = df.duplicated(_KEY, keep="first").to_numpy()
    _first_bad(df, dup, "repeat", "duplicates an earlier (query_id, strategy, repeat)",
               "Each execution must have its own repeat number; drop the duplicate rows.")
    return df


def write_runs(runs: pd.DataFrame, path, provenance: dict | None = None,
               *, validate: bool = True) -> Path:
    """Write a runs table to Parquet or JSONL, atomically, with its provenance.

    Parameters
    ----------
    runs : DataFrame
    path : str or Path
        ``*.parquet`` or ``*.jsonl``.
    provenance : dict, optional
        JSON-serialisable facts about how the runs were made.
    validate : bool, default=True
        Check the table first (:func:`validate_runs`).

    Returns
    -------
    Path
    """
    df = validate_runs(runs) if validate else runs
    return write_table(df, path, provenance)


def read_provenance(path) -> dict:
    """Provenance stored with a runs file (an empty dict when there is none)."""
    return read_table_provenance(path)


def read_runs(path, *, validate: bool = True) -> pd.DataFrame:
    """Read a runs table from Parquet or JSONL.

    The provenance is available as ``df.attrs["provenance"]``.

    Parameters
    ----------
    path : str or Path
        A ``.parquet`` or ``.jsonl`` file. A collection directory written by
        ``ttcrouter collect`` is read by :func:`ttcrouter.collection.load_collection`.
    validate : bool, default=True

    Returns
    -------
    DataFrame

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    IsADirectoryError
        ``path`` is a directory; the message names the function that reads it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No runs table at {str(path)!r}.")
    if path.is_dir():
        # A collection directory is the collection's format; the collection depends on
        # this module, never the reverse, so it is read there.
        raise IsADirectoryError(
            f"{str(path)!r} is a directory, not a runs file. A collection directory "
            f"written by ttcrouter collect is read with "
            f"ttcrouter.load_collection({str(path)!r}), or exported to one runs file with "
            f"ttcrouter.export_collection."
        )
    df = read_table(path)
    if validate:
        prov = df.attrs["provenance"]
        df = validate_runs(df, copy=False)
        df.attrs["provenance"] = prov
    return df


@dataclass
class RunsSummary:
    """A runs table aggregated by (query, strategy).

    Attributes
    ----------
    queries : DataFrame
        Indexed by ``query_id``, columns ``query`` and ``gold``.
    strategies : list of str
        Canonical strategy names, the column order of the matrices.
    Y : DataFrame
        Soft labels: mean of ``correct`` per (query, strategy).
    T : DataFrame
        Mean generated tokens.
    L : DataFrame
        Mean latency in seconds.
    counts : DataFrame
        Number of successful runs behind each cell.
    """

    queries: pd.DataFrame
    strategies: list
    Y: pd.DataFrame
    T: pd.DataFrame
    L: pd.DataFrame
    counts: pd.DataFrame = field(repr=False)

    @property
    def texts(self) -> list:
        """Query strings in row order."""
        return self.queries["query"].tolist()

    def __len__(self) -> int:
        return len(self.queries)


def aggregate_runs(runs: pd.DataFrame, strategies=None, *, missing: str = "drop") -> RunsSummary:
    """Aggregate runs into soft labels and cost matrices.

    Rows with an error are left out (they say the execution failed, not how the strategy
    performs).

    Parameters
    ----------
    runs : DataFrame
        A runs table.
    strategies : list of str, optional
        Column order; defaults to the sorted canonical names present.
    missing : {"drop", "raise"}, default="drop"
        What to do with a query that lacks a successful run of some strategy: drop the query,
        or raise.

    Returns
    -------
    RunsSummary
    """
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}.")
    df = validate_runs(runs)
    ok = df[df["error"].isna()]
    if strategies is None:
        strategies = sorted(ok["strategy"].unique(), key=strategy_sort_key)
    else:
        strategies = [parse_strategy(s).name for s in strategies]
        unknown = sorted(set(strategies) - set(ok["strategy"].unique()))
        if unknown:
            raise RunsTableError(f"Strategies {unknown} have no successful run in the table.")
        ok = ok[ok["strategy"].isin(strategies)]
    grouped = ok.groupby(["query_id", "strategy"], sort=False)
    stats = grouped.agg(Y=("correct", "mean"), T=("tokens", "mean"),
                        L=("latency_s", "mean"), n=("correct", "size"))
    order = pd.unique(df["query_id"])
    mats = {k: stats[k].unstack("strategy").reindex(index=order, columns=strategies)
            for k in ("Y", "T", "L", "n")}
    incomplete = mats["Y"].isna().any(axis=1)
    if incomplete.any():
        if missing == "raise":
            qid = incomplete.index[incomplete.to_numpy()][0]
            lacks = mats["Y"].columns[mats["Y"].loc[qid].isna().to_numpy()].tolist()
            raise RunsTableError(
                f"Query {qid!r} has no successful run of {lacks}; collect them or pass "
                f"missing='drop'."
            )
        keep = ~incomplete
        mats = {k: v[keep.to_numpy()] for k, v in mats.items()}
    if len(mats["Y"]) == 0:
        raise RunsTableError(
            "No query has a successful run of every strategy; check the 'error' column."
        )
    queries = (df.drop_duplicates("query_id").set_index("query_id")
               .loc[mats["Y"].index, ["query", "gold"]])
    for v in mats.values():
        v.columns.name = None
        v.index.name = "query_id"
    return RunsSummary(queries=queries, strategies=list(strategies), Y=mats["Y"].astype(float),
                       T=mats["T"].astype(float), L=mats["L"].astype(float),
                       counts=mats["n"].fillna(0).astype(int))


def strategy_sort_key(name: str):
    """Sort key of a strategy name: prompt mode (in ``MODES`` order), method (in ``METHODS``
    order, then the methods outside it, as early-stopping votes), n, beam width, name."""
    spec = parse_strategy(name)
    method = METHODS.index(spec.method) if spec.method in METHODS else len(METHODS)
    return (MODES.index(spec.mode), method, spec.n, spec.beam_width, name)


def split_queries(query_ids, test_size: float = 0.25, random_state=None):
    """Split distinct query ids into train and test (seeded); never a query in both.

    Returns
    -------
    train_ids, test_ids : ndarray of str
    """
    ids = pd.unique(pd.Series(list(query_ids), dtype=str))
    if len(ids) < 2:
        raise ValueError(
            f"Need at least 2 distinct queries to split into train and test, got {len(ids)}."
        )
    n_test = int(round(test_size * len(ids))) if isinstance(test_size, float) else int(test_size)
    if not 1 <= n_test < len(ids):
        raise ValueError(
            f"test_size={test_size!r} leaves {n_test} of {len(ids)} queries for testing; "
            f"it must leave at least one query on each side."
        )
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(len(ids))
    return ids[np.sort(perm[n_test:])], ids[np.sort(perm[:n_test])]


def train_test_split_runs(runs: pd.DataFrame, test_size: float = 0.25, random_state=None):
    """Split a runs table by query; returns ``(train_runs, test_runs)``."""
    train_ids, test_ids = split_queries(runs["query_id"].astype(str), test_size, random_state)
    qid = runs["query_id"].astype(str)
    return runs[qid.isin(train_ids)].copy(), runs[qid.isin(test_ids)].copy()
