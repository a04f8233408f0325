"""Table files: a DataFrame written to Parquet or JSONL atomically with its provenance, and read back.

The runs table (:mod:`ttcrouter.runs`) and the samples table (:mod:`ttcrouter.samples`) are
stored the same way: Parquet keeps the provenance in the file's schema metadata, JSONL in a
``<file>.meta.json`` beside it. Each contract module validates its own columns; this module
only moves bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .atomic import atomic_path

__all__ = ["PROVENANCE_KEY", "table_format", "write_table", "read_table", "read_table_provenance"]

#: Parquet schema metadata key of the provenance.
PROVENANCE_KEY = b"ttcrouter.provenance"
#: Columns JSONL would otherwise guess as numbers.
_TEXT_COLUMNS = {"query_id": str, "gold": str, "answer": str}


def table_format(path) -> str:
    """``"parquet"`` or ``"jsonl"`` from the file name; ValueError for anything else."""
    suffixes = "".join(Path(path).suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return "parquet"
    if suffixes.endswith((".jsonl", ".json", ".jsonl.gz")):
        return "jsonl"
    raise ValueError(
        f"Cannot tell the format of {str(path)!r} from its name: use a .parquet or .jsonl suffix."
    )


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def write_table(df: pd.DataFrame, path, provenance: dict | None = None) -> Path:
    """Write ``df`` to ``path`` (Parquet or JSONL, by its suffix) atomically.

    Parameters
    ----------
    df : DataFrame
    path : str or Path
    provenance : dict, optional
        Stored in the Parquet metadata, or in ``<path>.meta.json`` beside a JSONL file.

    Returns
    -------
    Path
    """
    path = Path(path)
    fmt = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            meta = dict(table.schema.metadata or {})
            if provenance is not None:
                meta[PROVENANCE_KEY] = json.dumps(provenance, default=str).encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        else:
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
    if fmt == "jsonl" and provenance is not None:
        with atomic_path(_meta_path(path)) as tmp:
            tmp.write_text(json.dumps(provenance, indent=2, default=str))
    return path


def read_table_provenance(path) -> dict:
    """The provenance stored with a table file (an empty dict when there is none)."""
    path = Path(path)
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        raw = (pq.read_schema(path).metadata or {}).get(PROVENANCE_KEY)
        return json.loads(raw) if raw else {}
    meta = _meta_path(path)
    return json.loads(meta.read_text()) if meta.exists() else {}


def read_table(path) -> pd.DataFrame:
    """Read a table file; its provenance is in ``df.attrs["provenance"]``."""
    path = Path(path)
    if table_format(path) == "parquet":
        df = pd.read_parquet(path)
    else:
        df = pd.read_json(path, lines=True, dtype=_TEXT_COLUMNS)
    df.attrs["provenance"] = read_table_provenance(path)
    return df
