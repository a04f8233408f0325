import pandas as pd
import pytest

from ttcrouter.tables import read_table, read_table_provenance, table_format, write_table


@pytest.mark.parametrize("name", ["t.parquet", "t.jsonl"])
def test_round_trip_with_provenance(tmp_path, name):
    df = pd.DataFrame({"query_id": ["007", "8"], "gold": ["1", "2"], "x": [0.5, 1.5]})
    path = write_table(df, tmp_path / "sub" / name, provenance={"model": "m", "n": 2})
    back = read_table(path)
    pd.testing.assert_frame_equal(back, df)  # "007" stays a string in JSONL too
    assert back.attrs["provenance"] == {"model": "m", "n": 2}
    assert read_table_provenance(path) == {"model": "m", "n": 2}
    assert not list((tmp_path / "sub").glob(".tmp-*"))  # written atomically, nothing left


def test_without_provenance_and_bad_names(tmp_path):
    path = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.jsonl")
    assert read_table(path).attrs["provenance"] == {}
    assert table_format("x.PARQUET") == "parquet"
    with pytest.raises(ValueError, match=r"use a \.parquet or \.jsonl suffix"):
        table_format("runs.csv")
