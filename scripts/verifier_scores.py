"""Cross-fitted trained-verifier scores for every sample of a collection (resumable).

Two phases, each its own command so a killed run loses at most one chunk:

1. ``features``: the generator's step features of every distinct (query, mode, text) of the
   collection's samples, extracted in chunks of ``--chunk`` texts, each chunk written to
   ``FEATURES/chunk-NNNNN.npz`` as soon as it is done; chunks already there are skipped.
   A duplicate text (common in ``direct`` mode) is read once, but every sample is charged
   its own forward pass, as a verifier without a cache would be.
2. ``score``: :func:`ttcrouter.cross_fit_scores` over query folds (no query is scored by a
   head fitted on it), written to ``OUT`` (a parquet file of the samples' keys and the
   ``score_verifier``, ``reward_tokens_verifier``, ``score_latency_s_verifier`` and
   ``fold_verifier`` columns), which ``scripts/export_shipped_table.py --verifier-scores``
   turns into the shipped table's verifier rows.

    python scripts/verifier_scores.py features collections/arith400_samples /work/plan/feat_chunks
    python scripts/verifier_scores.py score collections/arith400_samples /work/plan/feat_chunks \\
        --out collections/arith400_samples/_verifier_scores.parquet
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ttcrouter.samples import validate_samples  # noqa: E402
from ttcrouter.verifier import TrainedVerifier, save_verifier  # noqa: E402
from ttcrouter.verifier_commands import read_samples_arg  # noqa: E402
from ttcrouter.verifier_samples import (cross_fit_scores, sample_features,  # noqa: E402
                                       verifier_columns, verifier_data)

KEY = ["query_id", "repeat", "mode", "sample"]  # a sample's key in the samples table
log = logging.getLogger("verifier_scores")


def template(args) -> TrainedVerifier:
    return TrainedVerifier(layer=args.layer, C=args.C, n_threads=args.threads,
                           batch_size=args.batch_size, show_progress=False)


def features(args):
    samples = validate_samples(read_samples_arg(args.samples))
    feats = sample_features(samples, template(args), cache_dir=args.features,
                            chunk=args.chunk, progress=True)
    log.info("features of %d samples in %s", feats.n_rows, args.features)
    return samples, feats


def score(args):
    samples, feats = features(args)  # chunks already there are read back, not extracted
    t0 = time.perf_counter()
    scored = cross_fit_scores(samples, template(args), n_folds=args.folds,
                              random_state=args.seed, features=feats)
    log.info("cross-fitted %d folds in %.0f s", args.folds, time.perf_counter() - t0)
    cols = [*verifier_columns("verifier"), "fold_verifier"]
    out = scored[KEY + cols].reset_index(drop=True)
    out.attrs = {}
    out.to_parquet(args.out, index=False)
    meta = {"folds": args.folds, "seed": args.seed, "C": args.C, "layer": args.layer,
            "threads": args.threads, "batch_size": args.batch_size,
            "distinct_texts": int(len(verifier_data(samples)[0][
                ["query_id", "mode", "solution"]].drop_duplicates())),
            "samples": len(samples)}
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    log.info("wrote %s (%d rows)", args.out, len(out))
    if args.save_verifier:
        # the verifier a router executes with: fitted on every sample (the rows of the
        # table stay cross-fitted)
        X, y, groups = verifier_data(samples)
        full = template(args).fit(X, y, groups, features=feats)
        save_verifier(full, args.save_verifier)
        log.info("saved the verifier fitted on all %d samples to %s", len(X),
                 args.save_verifier)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("features", "score"))
    ap.add_argument("samples", help="collection directory (or samples file)")
    ap.add_argument("features", help="directory of the feature chunks")
    ap.add_argument("--out", default=None, help="score: the scores parquet file")
    ap.add_argument("--save-verifier", default=None, metavar="JOBLIB",
                    help="score: also fit one verifier on every sample and save it here")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--layer", type=int, default=-1)
    ap.add_argument("--C", type=float, default=0.005)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.phase == "score" and not args.out:
        ap.error("score needs --out")
    return args


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="[verifier_scores] %(message)s")
    args = parse(argv)
    (features if args.phase == "features" else score)(args)


if __name__ == "__main__":
    main()
