"""Make router files with the code BEFORE issue 13 (run with PYTHONPATH=/work/main)."""
import json, sys
from pathlib import Path
import numpy as np
from sklearn.pipeline import Pipeline
import ttcrouter
from ttcrouter import make_synthetic_runs, aggregate_runs, save_router
from ttcrouter.costs import CostTable
from ttcrouter.embedding import EmbeddingTransformer
from ttcrouter.probe import ProbeClassifier
from ttcrouter.router import UtilityRouter

assert "/work/main" in ttcrouter.__file__, ttcrouter.__file__
out = Path(sys.argv[1])
STRATEGIES = ["majority_vote@n=1", "majority_vote@n=4", "beam_search@n=4,w=2"]
runs, truth = make_synthetic_runs(48, strategies=STRATEGIES, repeats=2, random_state=0,
                                  return_truth=True)
s = aggregate_runs(runs)
# 1. a router fed with features: one-hot latent difficulty (no encoder needed to load)
codes = truth.difficulty_code.loc[list(s.queries.index)].to_numpy()
X = np.eye(3, dtype=np.float32)[codes]
router = UtilityRouter(probe=ProbeClassifier(hidden_units=(16,), max_epochs=10, random_state=0),
                       costs=CostTable(), lambda_tokens=1e-3, lambda_latency=0.01)
router.fit(X, s.Y, tokens=s.T, latency=s.L)
save_router(router, out / "router_features_0.1.0.joblib", metadata={"runs": "synthetic"})
Xq = np.eye(3, dtype=np.float32)
# 2. a Pipeline on query strings (the real MiniLM encoder, weights not pickled)
pipe = Pipeline([("embed", EmbeddingTransformer()),
                 ("router", UtilityRouter(probe=ProbeClassifier(hidden_units=(16,), max_epochs=10,
                                                                random_state=0),
                                          lambda_tokens=1e-3))])
pipe.fit(s.texts, s.Y, router__tokens=s.T, router__latency=s.L)
save_router(pipe, out / "router_pipeline_0.1.0.joblib", metadata={"runs": "synthetic"})
qs = ["Easy: what is 2 + 3?", "Olympiad problem: find the number of pairs.",
      "Quick sum: what is 4 plus 5?", "What is 7 + 8?"]
expected = {
    "made_by": ttcrouter.__version__,
    "strategies": STRATEGIES,
    "features": {"X": Xq.tolist(), "predict": [str(p) for p in router.predict(Xq)],
                 "predict_utility": router.predict_utility(Xq).tolist(),
                 "predict_accuracy": router.predict_accuracy(Xq).tolist()},
    "pipeline": {"questions": qs, "predict": [str(p) for p in pipe.predict(qs)],
                 "predict_utility": pipe[-1].predict_utility(pipe[0].transform(qs)).tolist()},
}
(out / "router_0.1.0_expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(json.dumps(expected)[:600])
