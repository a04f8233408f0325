"""The work behind ``ttcrouter collect`` and ``ttcrouter derive``, once the CLI has parsed.

``collect`` runs a grid of strategies into a resumable collection directory; ``derive`` turns
kept samples into the runs of pooled strategies with no new generation. Results go to stdout;
messages through the ``ttcrouter.collection`` logger to stderr.
"""

from __future__ import annotations

from pathlib import Path

from ..runs import write_runs
from ..samples import derive_runs, read_samples
from .collect import collect, resolve_strategies
from .latency import request_latency_model
from .store import export_collection, load_samples

__all__ = ["cmd_collect", "cmd_derive"]


def cmd_collect(args) -> int:
    base_url = args.base_url
    if base_url and len(base_url) == 1:
        base_url = base_url[0]
    df = collect(args.dataset, strategies=args.strategies, repeats=args.repeats, out=args.out,
                 backend=args.backend, model=args.model, base_url=base_url,
                 pool_size=args.pool_size, chunk_size=args.chunk_size, seed=args.seed,
                 progress=not args.no_progress, latency=args.latency,
                 calibration_queries=args.calibration_queries, max_tokens=args.max_tokens,
                 temperature=args.temperature, max_steps=args.max_steps,
                 step_max_tokens=args.step_max_tokens, enforce_eager=args.eager,
                 kv_cache_space_gb=args.kv_cache_gb, dataset_name=args.dataset,
                 recalibrate_latency=args.recalibrate_latency,
                 prompts=_prompts(getattr(args, "prompt", None)),
                 scorer=getattr(args, "scorer", "logprob"))
    n_err = int(df["error"].notna().sum()) if len(df) else 0
    print(f"{len(df)} rows in {args.out} ({n_err} with errors)")
    if args.export:
        print(f"exported to {export_collection(args.out, args.export)}")
    return 0


def _prompts(items):
    if not items:
        return None
    out = {}
    for item in items:
        mode, sep, text = item.partition("=")
        if not sep or not mode.strip():
            raise ValueError(f"--prompt takes MODE=TEXT, got {item!r}.")
        out[mode.strip()] = text
    return out


def cmd_derive(args) -> int:
    path = Path(args.samples)
    samples = load_samples(path) if path.is_dir() else read_samples(path)
    prov = dict(samples.attrs.get("provenance", {}))
    specs = [s for s in resolve_strategies(args.strategies) if s.derivable]
    latency = args.latency
    if latency == "auto":
        latency = "calibrated" if path.is_dir() else "measured"
    request_latency = None
    if latency == "calibrated":
        models = prov.get("latency_calibration", {}).get("models")
        if not models:
            raise ValueError(f"{args.samples} has no latency calibration; use --latency measured.")
        request_latency = request_latency_model(models)
    runs = derive_runs(samples, specs, score=args.score, request_latency=request_latency)
    prov["derived"] = {"from": str(path), "strategies": [s.name for s in specs],
                       "latency": latency, "score": args.score}
    out = write_runs(runs, args.out, provenance=prov)
    print(f"{len(runs)} rows of {len(specs)} strategies from {len(samples)} samples -> {out}")
    return 0
