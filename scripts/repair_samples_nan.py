"""Repair samples files written before store.write_part tested for NaN: answer "nan" -> null.

Under pandas 3 a column of strings reads None as NaN, and ``write_part`` turned it into the
string "nan" (a sample with no extracted answer looked like an answer "nan"). The runs rows
were derived before the write, from the samples in memory, so they are right; this rewrites
the samples files of a collection in place (atomically), and
tests/test_collection.py::test_shipped_samples_derive_the_shipped_runs checks that
derive_runs on the repaired samples gives back every pooled row.

    python scripts/repair_samples_nan.py collections/arith400_samples
"""

import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ttcrouter.atomic import atomic_path

fixed = 0
for path in sorted(Path(sys.argv[1]).glob("samples-*.parquet")):
    df = pd.read_parquet(path)
    bad = df["answer"].astype(object).eq("nan")
    if bad.any():
        df["answer"] = pd.array([None if b else v for v, b in zip(df["answer"], bad)],
                                dtype="string")
        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
        fixed += int(bad.sum())
print(f"{fixed} answers 'nan' -> null")
