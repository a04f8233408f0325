import json

import pandas as pd
import pytest

from ttcrouter.datasets import (ARITHMETIC_LEVELS, DatasetError, arithmetic, as_queries,
                                gsm_symbolic, load_jsonl, load_queries)
from ttcrouter.grading import is_correct


def test_arithmetic_deterministic_unique_and_graded():
    a = arithmetic(300, seed=3)
    b = arithmetic(300, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns[:3]) == ["query_id", "query", "gold"]
    assert a["query_id"].is_unique and a["query"].is_unique
    assert set(a["level"]) == set(ARITHMETIC_LEVELS)
    assert a["query_id"].str.match(r"^arith-[a-z0-9]+-\d+$").all()
    # The two easiest levels make up a large share (so that per-query accuracy varies).
    assert a["level"].isin(["add1", "mul1"]).mean() > 0.35
    assert not a.equals(arithmetic(300, seed=4))


def test_arithmetic_gold_is_right():
    df = arithmetic(200, seed=1)
    for q, g, level in zip(df["query"], df["gold"], df["level"]):
        if level in ("add1", "add21", "add22", "mul1", "addsub", "multi") and "?" in q \
                and q.startswith("What is") and "of" not in q:
            expr = q[len("What is "):-1].replace(" plus ", " + ").replace(" times ", " * ")
            assert str(eval(expr)) == g, q  # noqa: S307 - our own generated arithmetic
        assert int(g) >= 0


def test_arithmetic_levels_prefix_stable():
    small = arithmetic(50, seed=0, levels=["add1"])
    big = arithmetic(80, seed=0, levels=["add1"])
    merged = small.merge(big, on="query_id", suffixes=("_s", "_b"))
    assert len(merged) == 50
    assert (merged["query_s"] == merged["query_b"]).all()
    assert set(arithmetic(20, levels={"mul1": 1, "word": 1})["level"]) == {"mul1", "word"}


def test_arithmetic_bad_input():
    with pytest.raises(ValueError, match="Unknown arithmetic level"):
        arithmetic(10, levels=["nope"])
    with pytest.raises(ValueError, match=r"n == 0, must be >= 1"):
        arithmetic(0)
    with pytest.raises(ValueError, match="distinct questions"):
        arithmetic(100000, levels=["add1"])


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    return path


def test_load_jsonl_gsm8k_and_numina(tmp_path):
    gsm = _write(tmp_path / "gsm.jsonl", [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=7\n#### 7"},
        {"question": "Big numbers?", "answer": "so\n#### 1,234"},
    ])
    df = load_jsonl(gsm)
    assert df["gold"].tolist() == ["7", "1234"]
    assert df["query_id"].tolist() == ["gsm-1", "gsm-2"]
    numina = _write(tmp_path / "numina.jsonl", [
        {"id": "a", "problem": "Compute 1/2 + 1/2.", "solution": "We get \\boxed{1}."},
        {"id": "b", "problem": "Fraction?", "solution": "x \\boxed{2} then \\boxed{\\frac{1}{2}}"},
    ])
    df = load_jsonl(numina)
    assert df["query_id"].tolist() == ["a", "b"]
    assert df["gold"].tolist() == ["1", "\\frac{1}{2}"]
    assert is_correct("0.5", df["gold"][1])
    plain = _write(tmp_path / "plain.jsonl", [{"q": "2+2?", "a": 4, "key": "k1"}])
    df = load_jsonl(plain, format="plain", question_field="q", answer_field="a", id_field="key")
    assert df.loc[0, ["query_id", "query", "gold"]].tolist() == ["k1", "2+2?", "4"]
    pd.testing.assert_frame_equal(load_queries(str(plain.with_name("gsm.jsonl"))),
                                  load_jsonl(gsm))


@pytest.mark.parametrize("records, message", [
    ([{"question": "a", "answer": "#### 1"}, {"question": "b"}],
     r":2: missing field 'answer'"),
    ([{"question": "  ", "answer": "#### 1"}], r":1: empty question"),
    ([{"id": 1, "question": "a", "answer": "#### 1"},
      {"id": 2, "question": "b", "answer": "#### 2"},
      {"id": 1, "question": "c", "answer": "#### 3"}],
     r":3: duplicated id '1' \(also on line 1\)"),
    ([{"question": "a", "answer": "#### 1"}, '{"question": "b", '],
     r":2: not valid JSON"),
    ([{"question": "a", "answer": "no marker"}], r":1: field 'answer' has no '#### <answer>'"),
    (["[1, 2]"], r":1: expected a JSON object"),
    ([{"foo": 1}], r"cannot tell the format"),
])
def test_load_jsonl_errors(tmp_path, records, message):
    path = _write(tmp_path / "bad.jsonl", records)
    with pytest.raises(DatasetError, match=message):
        load_jsonl(path)


def test_load_jsonl_missing_file_and_bad_format(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="format must be one of"):
        load_jsonl(tmp_path / "nope.jsonl", format="csv")


def test_as_queries_checks():
    df = as_queries(["a?", "b?"])
    assert df["query_id"].tolist() == ["q-0", "q-1"]
    with pytest.raises(DatasetError, match="duplicated query_id 'x'"):
        as_queries(pd.DataFrame({"query_id": ["x", "x"], "query": ["a", "b"], "gold": [1, 2]}))
    with pytest.raises(DatasetError, match="empty question"):
        as_queries(pd.DataFrame({"query_id": ["x"], "query": [""], "gold": [1]}))
    with pytest.raises(DatasetError, match="lacks column"):
        as_queries(pd.DataFrame({"query_id": ["x"], "query": ["a"]}))
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_queries("mnist:10")
    assert len(load_queries("arithmetic:12")) == 12


def test_gsm_symbolic():
    pytest.importorskip("reasoning_gym", reason="needs the optional extra: "
                        "pip install 'ttcrouter[gsm]'")
    import sys

    before = set(sys.modules)
    df = gsm_symbolic(20, seed=0)
    assert len(df) == 20 and df["query_id"].is_unique and df["query"].is_unique
    assert df["gold"].map(lambda g: g.replace(".", "", 1).lstrip("-").isdigit()).all()
    pd.testing.assert_frame_equal(df, gsm_symbolic(20, seed=0))
    # reasoning-gym's heavy package __init__ was not imported
    assert "reasoning_gym" not in set(sys.modules) - before
