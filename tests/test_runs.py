import numpy as np
import pandas as pd
import pytest

from ttcrouter import (RunsTableError, aggregate_runs, read_runs, split_queries,
                       train_test_split_runs, validate_runs, write_runs)
from ttcrouter.runs import RUN_COLUMNS, read_provenance


def make_runs(n_queries=4, strategies=("majority_vote@n=1", "beam_search@n=4,w=2"), repeats=2):
    rows = []
    for q in range(n_queries):
        for s_idx, s in enumerate(strategies):
            for r in range(repeats):
                rows.append(dict(query_id=f"q{q}", query=f"What is {q} + {q}?", gold=str(2 * q),
                                 strategy=s, repeat=r, answer=str(2 * q) if (q + r) % 2 else "0",
                                 correct=int((q + r) % 2 == 1), tokens=10 * (s_idx + 1) + r,
                                 latency_s=0.5 * (s_idx + 1) + 0.1 * r, error=None))
    return pd.DataFrame(rows)


def test_validate_normalises_names_and_dtypes():
    df = make_runs()
    df.loc[0, "strategy"] = " majority_vote @ n=1"
    out = validate_runs(df)
    assert set(out["strategy"]) == {"majority_vote@n=1", "beam_search@n=4,w=2"}
    assert out["correct"].dtype == np.int8 and out["tokens"].dtype == np.int64
    assert df.loc[0, "strategy"] == " majority_vote @ n=1"  # input untouched


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.drop(columns=["latency_s"]), r"lacks column\(s\) \['latency_s'\]"),
    (lambda d: d.assign(tokens=d["tokens"].where(d.index != 3, -1)), r"row 3 .*'tokens'.*negative"),
    (lambda d: d.assign(latency_s=d["latency_s"].where(d.index != 2, np.nan)),
     r"row 2 .*'latency_s'.*NaN"),
    (lambda d: d.assign(correct=d["correct"].where(d.index != 5, 2)), r"row 5 .*'correct'.*0 or 1"),
    (lambda d: d.assign(strategy=d["strategy"].where(d.index != 1, "greedy@n=1")),
     r"row 1 .*'strategy'.*unknown strategy name 'greedy@n=1'"),
    (lambda d: pd.concat([d, d.iloc[[4]]], ignore_index=True), r"row 16 .*duplicates"),
    (lambda d: d.assign(query_id=d["query_id"].where(d.index != 0, None)), r"row 0 .*'query_id'.*null"),
    (lambda d: d.assign(tokens=d["tokens"].astype(object).where(d.index != 7, "many")),
     r"row 7 .*'tokens'.*not a number"),
    (lambda d: d.iloc[:0], "empty"),
])
def test_validate_errors_name_row_and_column(mutate, match):
    with pytest.raises(RunsTableError, match=match):
        validate_runs(mutate(make_runs()))


def test_failed_runs_may_have_nan_costs_and_are_left_out_of_aggregates():
    df = make_runs()
    df.loc[0, ["tokens", "latency_s", "correct"]] = [np.nan, np.nan, np.nan]
    df.loc[0, "error"] = "prompt too long"
    summary = aggregate_runs(df)
    # q0 / majority_vote@n=1 keeps only its repeat 1
    assert summary.counts.loc["q0", "majority_vote@n=1"] == 1
    assert summary.Y.loc["q0", "majority_vote@n=1"] == 1.0


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_round_trip_keeps_rows_and_provenance(tmp_path, suffix):
    df = make_runs()
    df["steps"] = 3  # extra columns are kept
    path = write_runs(df, tmp_path / f"runs{suffix}", provenance={"model": "m", "seed": 0})
    back = read_runs(path)
    pd.testing.assert_frame_equal(back.drop(columns="steps"), validate_runs(make_runs()),
                                  check_dtype=False)
    assert (back["steps"] == 3).all()
    assert back.attrs["provenance"] == {"model": "m", "seed": 0}
    assert read_provenance(path) == {"model": "m", "seed": 0}
    assert not list(tmp_path.glob("*.tmp"))


def test_write_refuses_invalid_table_and_unknown_suffix(tmp_path):
    bad = make_runs().assign(correct=3)
    with pytest.raises(RunsTableError):
        write_runs(bad, tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()
    with pytest.raises(ValueError, match="suffix"):
        write_runs(make_runs(), tmp_path / "r.csv")
    with pytest.raises(FileNotFoundError, match="No runs table"):
        read_runs(tmp_path / "missing.parquet")


def test_aggregate_matrices():
    summary = aggregate_runs(make_runs())
    assert summary.strategies == ["majority_vote@n=1", "beam_search@n=4,w=2"]
    assert summary.Y.shape == summary.T.shape == summary.L.shape == (4, 2)
    assert list(summary.Y.index) == ["q0", "q1", "q2", "q3"]
    # q0: repeats 0,1 -> correct 0,1 -> 0.5; tokens of beam search: 20, 21
    assert summary.Y.loc["q0", "beam_search@n=4,w=2"] == 0.5
    assert summary.T.loc["q0", "beam_search@n=4,w=2"] == 20.5
    assert summary.L.loc["q1", "majority_vote@n=1"] == pytest.approx(0.55)
    assert summary.texts[1] == "What is 1 + 1?" and len(summary) == 4
    assert summary.queries.loc["q2", "gold"] == "4"


def test_aggregate_missing_cells():
    df = make_runs()
    df = df[~((df["query_id"] == "q1") & (df["strategy"] == "beam_search@n=4,w=2"))]
    assert "q1" not in aggregate_runs(df).Y.index
    with pytest.raises(RunsTableError, match="Query 'q1' has no successful run"):
        aggregate_runs(df, missing="raise")
    sub = aggregate_runs(df, strategies=["majority_vote@n=1"])
    assert "q1" in sub.Y.index and sub.strategies == ["majority_vote@n=1"]
    with pytest.raises(RunsTableError, match="no successful run"):
        aggregate_runs(df, strategies=["best_of_n@n=2"])


def test_split_by_query_is_seeded_and_disjoint():
    df = make_runs(n_queries=20)
    train, test = train_test_split_runs(df, test_size=0.25, random_state=3)
    assert set(train["query_id"]).isdisjoint(test["query_id"])
    assert set(train["query_id"]) | set(test["query_id"]) == set(df["query_id"])
    assert test["query_id"].nunique() == 5 and len(train) + len(test) == len(df)
    again = train_test_split_runs(df, test_size=0.25, random_state=3)[1]
    assert list(again["query_id"].unique()) == list(test["query_id"].unique())


def test_split_errors():
    with pytest.raises(ValueError, match="at least 2 distinct queries"):
        split_queries(["a", "a"])
    with pytest.raises(ValueError, match="at least one query on each side"):
        split_queries(["a", "b", "c"], test_size=0.05)


def test_columns_constant():
    assert RUN_COLUMNS[:4] == ("query_id", "query", "gold", "strategy")


def test_read_runs_refuses_a_directory_naming_load_collection(tmp_path):
    # the runs contract does not import the collection that writes it: no cycle
    (tmp_path / "_config.json").write_text('{"format": "ttcrouter-collection/1"}')
    with pytest.raises(IsADirectoryError, match=r"ttcrouter.load_collection\("):
        read_runs(tmp_path)


def test_runs_module_does_not_import_the_collection():
    import subprocess
    import sys

    code = ("import sys, ttcrouter.runs; "
            "print(any(m.startswith('ttcrouter.collection') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
