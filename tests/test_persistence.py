"""A fitted Pipeline (real MiniLM encoder + router) survives joblib in a fresh process."""

import json
import os
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest


@pytest.mark.slow
def test_pipeline_roundtrip_in_fresh_process(tmp_path):
    from sklearn.pipeline import Pipeline

    from router_helpers import split_synthetic
    from ttcrouter.costs import CostTable
    from ttcrouter.embedding import EmbeddingTransformer
    from ttcrouter.probe import ProbeClassifier
    from ttcrouter.router import UtilityRouter

    train, test, _ = split_synthetic(80, random_state=2)
    # A small probe keeps the file small; the paper's 200-200 probe is sized in
    # bench/bench_routing.py (docs/bench_routing.md).
    router = UtilityRouter(probe=ProbeClassifier(hidden_units=(64,), max_epochs=5,
                                                 random_state=0),
                           costs=CostTable(), lambda_tokens=1e-4, lambda_latency=0.02)
    pipe = Pipeline([("embed", EmbeddingTransformer()), ("router", router)])
    pipe.fit(train.texts, train.Y, router__tokens=train.T, router__latency=train.L)
    texts = test.texts
    expected_pred = pipe.predict(texts).tolist()
    expected_u = pipe[-1].predict_utility(pipe[0].transform(texts))

    path = tmp_path / "router.joblib"
    joblib.dump(pipe, path)
    size = path.stat().st_size
    assert size < 5 * 2**20, f"pickled pipeline is {size} bytes: encoder weights inside?"
    # the encoder step pickles without its weights (all-MiniLM-L6-v2 is ~90 MB)
    import pickle

    assert len(pickle.dumps(pipe[0])) < 100_000

    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = textwrap.dedent(f"""
        import json, joblib, numpy as np
        pipe = joblib.load({str(path)!r})
        texts = json.load(open({str(tmp_path / 'texts.json')!r}))
        pred = pipe.predict(texts).tolist()
        U = pipe[-1].predict_utility(pipe[0].transform(texts))
        np.save({str(tmp_path / 'u.npy')!r}, U)
        print(json.dumps(pred))
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected_pred
    np.testing.assert_allclose(np.load(tmp_path / "u.npy"), expected_u, rtol=1e-5, atol=1e-6)
