"""The collection directory: its configuration fingerprint, lock, part files and read-back.

``out`` is a directory::

    out/_config.json          configuration fingerprint (written once)
    out/_provenance.json      model, backend, hardware, versions, command lines, dates
    out/_calibration.parquet  the isolated timing runs
    out/part-*.parquet        the rows, one file per finished chunk
    out/samples-*.parquet     the samples of the chunk's pools, beside the part of the same
                              name (``samples-X`` belongs to ``part-X``)
    out/_lock                 held while a collector writes

Each chunk of rows is written to a hidden temporary file, flushed, ``fsync``-ed and renamed
into place (atomic on POSIX), then the directory is ``fsync``-ed (:mod:`ttcrouter.atomic`).
A run killed at any moment (SIGKILL included) leaves only whole part files, so it loses at
most the chunk in flight; a later run with the same configuration reads the keys (query_id,
strategy, repeat) already written (:meth:`CollectionStore.done_keys`) and computes only the
missing work units, so no row is ever written twice. Units are whole (a pooled unit is one
(query, repeat, prompt mode) with all its pooled rows and its pool's samples; a beam unit
one (query, strategy, repeat)), and a part holds only whole units. A chunk's samples file
is written before its part file, and a samples file whose part is absent (the run was
killed between the two) is removed under the lock and never read, so a unit's samples are
there exactly when its rows are. An output directory made with another configuration
(strategies, model, backend, sampling parameters, scorer, pool size, seed, dataset) is
refused with a message naming what differs (:func:`config_diff`); ``repeats`` is not part
of the configuration, so a run with more repeats extends a collection. A lock file
(the ``filelock`` package) keeps two collectors from writing the same directory at once.

:func:`load_collection` reads a directory back into a validated runs table and
:func:`export_collection` writes it as one Parquet/JSONL runs file with its provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from ..atomic import atomic_path, remove_temporaries, write_atomic
from ..lifetime import live_engine_pids, record_engine_pids
from ..provenance import describe
from ..runs import RUN_COLUMNS, read_runs, validate_runs, write_runs
from ..samples import derive_runs, validate_samples
from .latency import (apply_calibration, latency_models, latest_calibration,
                      request_latency_model)

__all__ = ["FORMAT", "COLUMNS", "CollectionConfigError", "CollectionStore", "config_diff",
           "collection_config", "load_collection", "export_collection", "load_samples"]

#: The ``format`` field of ``_config.json``.
FORMAT = "ttcrouter-collection/1"
CONFIG_FILE = "_config.json"
PROVENANCE_FILE = "_provenance.json"
CALIBRATION_FILE = "_calibration.parquet"
LOCK_FILE = "_lock"

#: Columns of the rows :func:`~ttcrouter.collection.collect` writes (runs-table columns first).
COLUMNS = (*RUN_COLUMNS, "prompt_tokens", "reward_tokens", "n_samples", "steps",
           "latency_source", "latency_x", "pool_correct", "level", "score_latency_s")

_COLUMN_TYPES = {
    "query_id": "string", "query": "string", "gold": "string", "strategy": "string",
    "repeat": "int64", "answer": "string", "correct": "int8", "tokens": "int64",
    "latency_s": "float64", "error": "string", "prompt_tokens": "int64",
    "reward_tokens": "int64", "n_samples": "int64", "steps": "int64",
    "latency_source": "string", "latency_x": "float64", "pool_correct": "int64",
    "level": "string", "score_latency_s": "float64",
}


class CollectionConfigError(ValueError):
    """The output directory holds a collection made with another configuration."""


def config_diff(stored: dict, now: dict, prefix: str = "") -> list[str]:
    """What differs between two configurations, one readable line per difference.

    Nested dicts are compared key by key (``sampling.max_tokens: stored 24, now 16``); for
    lists the added and missing items are named (``strategies: now adds ['y']``).
    """
    diffs = []
    for key in sorted(set(stored) | set(now)):
        a, b = stored.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            if isinstance(a, list) and isinstance(b, list):
                extra = sorted(set(map(str, b)) - set(map(str, a)))
                gone = sorted(set(map(str, a)) - set(map(str, b)))
                detail = f"now adds {extra}" if extra else ""
                detail += ("; " if extra and gone else "") + (f"now lacks {gone}" if gone else "")
                diffs.append(f"{prefix}{key}: {detail or 'order differs'}")
            else:
                diffs.append(f"{prefix}{key}: stored {a!r}, now {b!r}")
    return diffs


def _executor_config(executor) -> dict:
    gen = getattr(executor, "generator", None)
    keys = ("temperature", "top_p", "max_tokens", "step_max_tokens", "max_steps", "aggregation",
            "step_delimiter", "system_prompt")
    sampling = {k: getattr(executor, k) for k in keys if hasattr(executor, k)}
    if "system_prompt" not in sampling and gen is not None:
        sampling["system_prompt"] = getattr(gen, "system_prompt", None)
    config = {
        "model": str(getattr(gen, "model_name", None) or getattr(gen, "model", None)),
        "backend": getattr(gen, "backend", None) or type(gen).__name__,
        "sampling": {k: (v if isinstance(v, (int, float, str, type(None))) else str(v))
                     for k, v in sampling.items()},
        "scorer": describe(getattr(executor, "scorer", None)),
    }
    named = getattr(executor, "scorers", None)
    if named:  # absent otherwise, so configurations written before still resume
        config["scorers"] = {k: describe(v) for k, v in sorted(named.items())}
    return config


def _dataset_hash(queries: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for qid, q, g in zip(queries["query_id"], queries["query"], queries["gold"]):
        h.update(f"{qid}\x1f{q}\x1f{g}\x1e".encode())
    return h.hexdigest()[:16]


def collection_config(queries: pd.DataFrame, specs, pool_size, seed, latency,
                      executor) -> dict:
    """The configuration fingerprint of a collection (the content of ``_config.json``).

    Everything that changes the rows: the dataset (size and hash), the strategies, the pool
    size, the seed, the latency method, and the executor's model, backend, sampling
    parameters and scorer. ``repeats`` and ``chunk_size`` are not part of it.
    """
    parallel = any(s.parallel for s in specs)
    return {
        "format": FORMAT,
        "dataset": {"n_queries": int(len(queries)), "sha256": _dataset_hash(queries)},
        "strategies": [s.name for s in specs],
        "pool_size": int(pool_size) if parallel else None,
        "seed": int(seed),
        "latency": latency,
        **_executor_config(executor),
    }


def _part_schema():
    return pa.schema([(c, getattr(pa, _COLUMN_TYPES[c])()) for c in COLUMNS])


def _write_table(path: Path, df: pd.DataFrame, schema=None):
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class CollectionStore:
    """A collection directory: configuration, provenance, calibration, part files, lock.

    Parameters
    ----------
    path : str or Path
        The directory (created by :meth:`lock`).

    Examples
    --------
    >>> store = CollectionStore("out")                          # doctest: +SKIP
    >>> with store.locked():                                    # doctest: +SKIP
    ...     store.check_or_write_config(config)
    ...     store.write_part(rows)
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock = None

    # -- lock ---------------------------------------------------------------------------------
    def lock(self):
        """Take the directory's lock (created if needed), or raise at once.

        Raises
        ------
        RuntimeError
            Another collector, in this process or another, holds the lock.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RuntimeError(f"Another collection is writing {str(self.path)!r} (its lock is "
                               f"held); wait for it to finish or stop it.") from None
        stale = live_engine_pids(self.path)
        if stale:
            lock.release()
            pids = " ".join(map(str, stale))
            raise RuntimeError(
                f"An engine of an earlier run of {str(self.path)!r} is still alive (pids "
                f"{pids}); stop it (kill {pids}) before resuming, so that no second engine "
                "runs beside it."
            )
        # the engine started later is added to this record when it starts
        record_engine_pids(self.path)
        self._lock = lock

    def unlock(self):
        """Release the lock if this store holds it."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()

    # -- files --------------------------------------------------------------------------------
    def parts(self) -> list[Path]:
        """The part files, oldest first (their names start with the write time)."""
        return sorted(self.path.glob("part-*.parquet"))

    def sample_parts(self) -> list[Path]:
        """The samples files whose part file exists (a unit's samples count once its rows
        are written)."""
        return [p for p in sorted(self.path.glob("samples-*.parquet"))
                if (self.path / ("part-" + p.name[len("samples-"):])).exists()]

    def cleanup_tmp(self):
        """Remove temporary files a killed writer left, and samples files whose part file
        was never written (call it under the lock)."""
        remove_temporaries(self.path)
        for p in self.path.glob("samples-*.parquet"):
            if not (self.path / ("part-" + p.name[len("samples-"):])).exists():
                p.unlink()

    def read_config(self) -> dict | None:
        p = self.path / CONFIG_FILE
        return json.loads(p.read_text()) if p.exists() else None

    def check_or_write_config(self, config: dict):
        """Write ``config`` to a new collection, or check it against the stored one.

        Raises
        ------
        CollectionConfigError
            The directory holds a collection of another configuration (the message names
            each difference), or part files without a configuration.
        """
        stored = self.read_config()
        if stored is None:
            if self.parts():
                raise CollectionConfigError(
                    f"{str(self.path)!r} holds part files but no {CONFIG_FILE}; it was not "
                    f"made by this version of ttcrouter collect. Use another output path."
                )
            write_atomic(self.path / CONFIG_FILE,
                         json.dumps(config, indent=2, sort_keys=True).encode())
            return
        diffs = config_diff(stored, config)
        if diffs:
            raise CollectionConfigError(
                f"Output {str(self.path)!r} holds a collection made with another "
                f"configuration: " + "; ".join(diffs) + ". Resume with the same settings, "
                "use another --out, or delete that directory to start over."
            )

    def done_keys(self) -> set:
        """The (query_id, strategy, repeat) keys of every row written so far."""
        keys = set()
        for p in self.parts():
            df = pd.read_parquet(p, columns=["query_id", "strategy", "repeat"])
            keys.update(zip(df["query_id"], df["strategy"], df["repeat"].astype(int)))
        return keys

    def write_part(self, rows: list[dict], samples: list[dict] | None = None) -> Path | None:
        """Write rows (whole work units) as one new part file, atomically; their pools'
        ``samples`` (samples-table rows) first, in the samples file of the same name."""
        if not rows:
            return None
        df = pd.DataFrame(rows, columns=list(COLUMNS))
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}.parquet"
        path = self.path / name
        if samples:
            frame = pd.DataFrame(samples)
            for col in ("query_id", "gold", "answer", "level", "finish_reason"):
                if col in frame.columns:
                    # pandas 3 reads None in a column of strings as NaN: test with isna
                    frame[col] = pd.array([None if pd.isna(v) else str(v)
                                           for v in frame[col]], dtype="string")
            _write_table(self.path / ("samples-" + name[len("part-"):]), frame)
        _write_table(path, df, _part_schema())
        return path

    def read_calibration(self) -> pd.DataFrame | None:
        p = self.path / CALIBRATION_FILE
        return pd.read_parquet(p) if p.exists() else None

    def write_calibration(self, df: pd.DataFrame):
        _write_table(self.path / CALIBRATION_FILE, df)

    def read_provenance(self) -> dict:
        p = self.path / PROVENANCE_FILE
        return json.loads(p.read_text()) if p.exists() else {}

    def write_provenance(self, prov: dict):
        write_atomic(self.path / PROVENANCE_FILE,
                     json.dumps(prov, indent=2, default=str).encode())


def load_collection(out, *, validate: bool = True) -> pd.DataFrame:
    """Read a collection directory into one runs table.

    Parameters
    ----------
    out : str or Path
        A directory written by :func:`~ttcrouter.collection.collect`.
    validate : bool, default=True
        Check the table (:func:`ttcrouter.runs.validate_runs`); duplicate keys raise.

    Returns
    -------
    DataFrame
        The rows of all part files, ``latency_s`` of calibrated rows from the newest
        calibration; ``df.attrs["provenance"]`` holds the configuration, the provenance and
        the latency calibration summary.
    """
    store = CollectionStore(out)
    if not store.path.is_dir() or store.read_config() is None:
        raise FileNotFoundError(f"No collection at {str(store.path)!r} (expected a directory "
                                f"with {CONFIG_FILE}, written by ttcrouter collect).")
    frames = [pd.read_parquet(p) for p in store.parts()]
    df = (pd.concat(frames, ignore_index=True) if frames
          else pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS}))
    cal = latest_calibration(store.read_calibration())
    if len(df) and cal is not None and len(cal):
        models = latency_models(cal)
        df = apply_calibration(df, models)
        _rederive_rounds(store, df, models)
    if validate and len(df):
        df = validate_runs(df, copy=False)
    prov = store.read_provenance()
    prov["config"] = store.read_config()
    df.attrs["provenance"] = prov
    return df


def _rederive_rounds(store: CollectionStore, df: pd.DataFrame, models: dict) -> None:
    """Latency of the early-stopping rows (``latency_source == "rounds"``) from the newest
    calibration: their rounds re-derived from the kept samples, ``df`` changed in place."""
    rows = (df["latency_source"] == "rounds").to_numpy()
    if not rows.any() or not store.sample_parts():
        return
    names = list(pd.unique(df.loc[rows, "strategy"]))
    samples = pd.concat([pd.read_parquet(p) for p in store.sample_parts()], ignore_index=True)
    derived = derive_runs(samples, names, request_latency=request_latency_model(models))
    key = ["query_id", "strategy", "repeat"]
    latency = derived.set_index(key)["latency_s"]
    index = pd.MultiIndex.from_frame(df.loc[rows, key].astype({"repeat": "int64"}))
    new = latency.reindex(index).to_numpy()
    keep = ~pd.isna(new)
    df.loc[df.index[rows][keep], "latency_s"] = new[keep]


def load_samples(out, *, validate: bool = True) -> pd.DataFrame:
    """Read the samples table of a collection directory (every pool drawn so far).

    Parameters
    ----------
    out : str or Path
        A directory written by :func:`~ttcrouter.collection.collect`.
    validate : bool, default=True
        Check it (:func:`ttcrouter.samples.validate_samples`).

    Returns
    -------
    DataFrame
        ``attrs["provenance"]`` as in :func:`load_collection`.

    Raises
    ------
    FileNotFoundError
        No collection at ``out``, or a collection without samples (collected before
        samples were kept).
    """
    store = CollectionStore(out)
    if not store.path.is_dir() or store.read_config() is None:
        raise FileNotFoundError(f"No collection at {str(store.path)!r}.")
    parts = store.sample_parts()
    if not parts:
        raise FileNotFoundError(f"The collection at {str(store.path)!r} holds no samples (it "
                                "was collected before samples were kept, or has no pools).")
    df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    df = validate_samples(df, copy=False) if validate else df
    prov = store.read_provenance()
    prov["config"] = store.read_config()
    df.attrs["provenance"] = prov
    return df


def load_runs(path, *, validate: bool = True) -> pd.DataFrame:
    """Read a runs table from a runs file or a collection directory.

    Parameters
    ----------
    path : str or Path
        A ``.parquet``/``.jsonl`` runs file (:func:`ttcrouter.read_runs`) or a directory
        written by :func:`~ttcrouter.collection.collect` (:func:`load_collection`).
    validate : bool, default=True

    Returns
    -------
    DataFrame
    """
    path = Path(path)
    if path.is_dir():
        return load_collection(path, validate=validate)
    return read_runs(path, validate=validate)


def export_collection(out, path, *, validate: bool = True) -> Path:
    """Write a collection directory as one runs file with its provenance.

    Parameters
    ----------
    out : str or Path
        The collection directory.
    path : str or Path
        ``*.parquet`` or ``*.jsonl`` (:func:`ttcrouter.runs.write_runs`).
    validate : bool, default=True

    Returns
    -------
    Path
    """
    df = load_collection(out, validate=validate)
    prov = df.attrs.get("provenance", {})
    df.attrs = {}
    return write_runs(df, path, provenance=prov, validate=validate)
