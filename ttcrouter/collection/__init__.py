"""Pooled, resumable collection of a runs table.

:func:`collect` runs every strategy of a grid on every query ``repeats`` times with a real
generator and writes one runs-table row per (query, strategy, repeat) (see
:mod:`ttcrouter.runs`) into a resumable directory; :func:`load_collection` reads it back and
:func:`export_collection` writes it as one runs file. One job per module:

- :mod:`.pooled`: the pooled estimator. The parallel strategies (best-of-N, majority and
  weighted majority voting at every N) are derived from prefixes of one pool of i.i.d.
  samples per (query, repeat); each row has the distribution of an independent execution.
- :mod:`.latency`: the latency model. Wall clock is measured, never invented: isolated
  executions are timed on a calibration subset and a line in the row's token feature gives
  each row its latency; a later calibration re-derives every row.
- :mod:`.store`: the collection directory (configuration fingerprint, atomic part files,
  calibration and provenance files, lock) and its read-back. A run killed at any moment
  resumes with no row lost or written twice.
- :mod:`.collect`: the collect loop.

The executors come from :func:`ttcrouter.executors.factory.make_executor`, the provenance
facts from :mod:`ttcrouter.provenance`; ``ttcrouter collect`` (and ``python -m
ttcrouter.collection``) parse their arguments in :mod:`ttcrouter.cli`.
"""

from ..executors.factory import make_executor
from ..provenance import hardware_info
from .collect import collect
from .pooled import PooledResult, derive_pooled
from .store import (COLUMNS, FORMAT, CollectionConfigError, CollectionStore, export_collection,
                    load_collection, load_runs, load_samples)

__all__ = [
    "collect",
    "derive_pooled",
    "load_collection",
    "load_runs",
    "load_samples",
    "export_collection",
    "make_executor",
    "hardware_info",
    "COLUMNS",
    "CollectionConfigError",
    "CollectionStore",
    "PooledResult",
    "FORMAT",
]
