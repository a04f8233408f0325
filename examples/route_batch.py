"""Route a batch of questions with a saved router and run the chosen strategies on a real model.

Fits a small router (or loads ``router.joblib`` when you pass its path), saves it with
``save_router``, loads it back and routes a batch of questions with :class:`RoutedExecutor`
on the embedded SmolLM2-135M-Instruct served by vLLM (``--backend transformers`` runs
without vLLM). Questions routed to the same strategy run together in one batched call.

Run: python examples/route_batch.py [--router router.joblib] [--backend transformers]
"""

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "What is 3 + 4?",
    "What is 6 times 7?",
    "What is 12 + 9?",
    "Tom has 5 apples and buys 3 more. How many apples does he have?",
]


def fit_small_router(path):
    """Fit EmbeddingTransformer + UtilityRouter on the shipped (or synthetic) runs."""
    from sklearn.pipeline import Pipeline

    from ttcrouter import EmbeddingTransformer, UtilityRouter, aggregate_runs
    from ttcrouter.cli import shipped_runs_path
    from ttcrouter.runs import read_runs
    from ttcrouter.serving import save_router
    from ttcrouter.synthetic import make_synthetic_runs

    shipped = shipped_runs_path()
    if shipped is not None:
        runs = read_runs(shipped)
    else:
        print("NOTE: shipped runs table not found; fitting on SYNTHETIC runs.")
        runs = make_synthetic_runs(
            80, strategies=["majority_vote@n=1", "majority_vote@n=2", "majority_vote@n=4"],
            random_state=0)
    s = aggregate_runs(runs)
    pipe = Pipeline([("embed", EmbeddingTransformer()),
                     ("router", UtilityRouter(lambda_tokens=1e-4))])
    pipe.fit(s.texts, s.Y, router__tokens=s.T, router__latency=s.L)
    return save_router(pipe, path, metadata={"example": "route_batch.py"})


def main(argv=None):
    from ttcrouter.serving import RoutedExecutor, load_router

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", default=None, help="router file (default: fit one)")
    parser.add_argument("--backend", default="vllm", choices=("vllm", "transformers"))
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.router) if args.router else fit_small_router(Path(tmp) / "r.joblib")
        bundle = load_router(path)
        print(f"router made by ttcrouter {bundle['ttcrouter_version']}, strategies: "
              f"{bundle['metadata'].get('strategies')}")
        gen_kw = {"kv_cache_space_gb": 2} if args.backend == "vllm" else {}
        with RoutedExecutor(bundle, backend=args.backend, generator_kwargs=gen_kw,
                            executor_kwargs={"max_tokens": args.max_tokens}) as routed:
            for r in routed.route_batch(QUESTIONS):
                status = f"error: {r.error}" if r.error else f"answer {r.answer!r}"
                print(f"{r.question!r}\n  -> {r.strategy} (predicted accuracy "
                      f"{r.predicted_accuracy:.2f}), {status}, {r.tokens} tokens, "
                      f"{r.latency_s:.1f}s (+{1000 * r.route_latency_s:.0f} ms routing)")


if __name__ == "__main__":
    main()
