"""Overhead of ``ttcrouter serve``: the same strategies through the server and straight upstream.

One real vLLM server (the embedded SmolLM2-135M, loopback) is the engine of both arms:

- serve: K concurrent clients send M requests each to ``ttcrouter serve --upstream`` with the
  official ``openai`` client; the server routes each request and runs the chosen strategy;
- direct: K threads run the SAME strategies on the SAME questions with a
  ``StrategyExecutor`` sent straight to the upstream server (no routing, no extra hop).

Decoding is greedy by default (``--temperature 0``), so both arms decode exactly the same
tokens and the difference is the server's own cost: HTTP, routing, thread hand-off. The arms
alternate for ``--rounds`` rounds. Routing time per request (embedding plus probe, from each
response's ``ttc`` block) is reported apart, against the latency of the cheapest strategy
run alone.

    HF_HUB_OFFLINE=1 flock /work/plan/engine.lock python bench/bench_serve.py

Bounded: at most K x M requests per arm and round, and ``--time-limit`` seconds in all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def run_concurrent(items, k, fn):
    """Run ``fn(item)`` over ``items`` with ``k`` threads; returns (results, wall seconds)."""
    results = [None] * len(items)
    cursor = iter(range(len(items)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            t0 = time.perf_counter()
            out = fn(items[i])
            results[i] = (out, time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(k)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - t0


def summarize(lat, wall):
    return {"requests": len(lat), "wall_s": round(wall, 2),
            "throughput_rps": round(len(lat) / wall, 4), "mean_s": round(statistics.mean(lat), 3),
            "p50_s": round(pct(lat, 0.5), 3), "p95_s": round(pct(lat, 0.95), 3)}


def route_alone(router_file, k, repeats=20):
    """Routing compute in this process, nothing else running here: p50 seconds per call at
    batch 1 and per query at batch ``k`` (one torch thread, as the server routes)."""
    from ttcrouter import load_router
    from ttcrouter.server import RouterService

    bundle = load_router(router_file)
    rs = RouterService(bundle["router"], bundle["metadata"], torch_threads=1)
    rs.warm_up()
    out = {}
    for size in (1, k):
        qs = [f"What is {i + 1} + {2 * i + 3}?" for i in range(size)]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rs.predict_batch(qs)
            times.append(time.perf_counter() - t0)
        out[f"batch_{size}_per_query_s"] = round(pct(times, 0.5) / size, 5)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", default=None, help="router file (default: fit one on the "
                    "shipped runs table with MiniLM)")
    ap.add_argument("--clients", type=int, default=4, help="K concurrent clients")
    ap.add_argument("--requests", type=int, default=4, help="M requests per client")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of (serve, direct)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--lambda-tokens", type=float, default=0.0005,
                    help="lambda of the fitted router (when --router is not given)")
    ap.add_argument("--time-limit", type=float, default=1500.0)
    ap.add_argument("--kv-gb", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_serve.md"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t_start = time.monotonic()

    import httpx
    import openai

    from server_helpers import (free_port, start_api_server, start_ttc_server, stop_process,
                                wait_healthy)
    from ttcrouter.cli import main as cli_main
    from ttcrouter.cli import shipped_runs_path
    from ttcrouter.executors import StrategyExecutor
    from ttcrouter.models import embedded_generator_path
    from ttcrouter.server import UpstreamPool

    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    router = args.router
    if router is None:
        router = work / "router.joblib"
        assert cli_main(["fit", str(shipped_runs_path()), "--out", str(router), "--encoder",
                         "minilm", "--lambda-tokens", str(args.lambda_tokens)]) == 0
    alone_route = route_alone(router, args.clients)
    procs = []
    try:
        up_port, ttc_port = free_port(), free_port()
        up = start_api_server(embedded_generator_path(), up_port, work / "upstream.log",
                              kv_gb=args.kv_gb)
        procs.append(up)
        wait_healthy(f"http://127.0.0.1:{up_port}", up)
        up_url = f"http://127.0.0.1:{up_port}/v1"
        ttc = start_ttc_server(router, ttc_port, work / "ttc.log", "--upstream", up_url,
                               "--temperature", args.temperature, "--max-tokens",
                               args.max_tokens, "--max-concurrency", max(8, args.clients))
        procs.append(ttc)
        base = f"http://127.0.0.1:{ttc_port}"
        wait_healthy(base, ttc, timeout=300)

        client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=600)
        pool = UpstreamPool([up_url], max_concurrency=max(8, args.clients))

        def direct(item):
            ex = StrategyExecutor(pool, temperature=args.temperature, max_tokens=args.max_tokens)
            res = ex.execute(item["strategy"], item["q"])
            assert res.error is None, res.error
            return {"tokens": res.tokens, "answer": res.answer}

        def served(item):
            r = client.chat.completions.create(
                model="ttcrouter", messages=[{"role": "user", "content": item["q"]}])
            return {"tokens": r.usage.completion_tokens, "ttc": r.model_extra["ttc"]}

        n = args.clients * args.requests
        items = [{"q": f"What is {3 + i % 7} + {2 + (i * 5) % 9}?"} for i in range(n)]
        for it in items[:2]:  # warm both paths (connections, caches)
            served(it)
        runs = {"serve": [], "direct": []}
        route = []
        for rnd in range(args.rounds):
            if time.monotonic() - t_start > args.time_limit:
                break
            res, wall = run_concurrent(items, args.clients, served)
            for it, (out, _) in zip(items, res):
                it["strategy"] = out["ttc"]["strategy"]
                it.setdefault("serve_tokens", []).append(out["tokens"])
                route.append((out["ttc"]["route_s"], out["ttc"]["route_compute_s"],
                              out["ttc"]["route_batch_size"], out["ttc"]["route_cpu_s"]))
            runs["serve"].append(([d for _, d in res], wall))
            res, wall = run_concurrent(items, args.clients, direct)
            for it, (out, _) in zip(items, res):
                it.setdefault("direct_tokens", []).append(out["tokens"])
            runs["direct"].append(([d for _, d in res], wall))
            print(f"round {rnd}: serve {runs['serve'][-1][1]:.1f}s, direct {wall:.1f}s",
                  file=sys.stderr, flush=True)
        cheapest = "majority_vote@n=1"
        alone = []
        for it in items[:5]:  # the cheapest strategy alone, one request at a time
            t0 = time.perf_counter()
            direct({"q": it["q"], "strategy": cheapest})
            alone.append(time.perf_counter() - t0)
        health = httpx.get(base + "/health").json()
    finally:
        for p in procs:
            stop_process(p, timeout=60)

    serve_lat = [x for lat, _ in runs["serve"] for x in lat]
    direct_lat = [x for lat, _ in runs["direct"] for x in lat]
    serve_sum = summarize(serve_lat, sum(w for _, w in runs["serve"]))
    direct_sum = summarize(direct_lat, sum(w for _, w in runs["direct"]))
    pairs = [(a, b) for it in items for a, b in zip(it["serve_tokens"], it["direct_tokens"])]
    same_tokens = all(a == b for a, b in pairs)
    route_s = [r[0] for r in route]
    route_c = [r[1] for r in route]
    route_cpu = [r[3] for r in route]
    report = {
        "setup": {"clients": args.clients, "requests_per_client": args.requests,
                  "rounds": len(runs["serve"]), "max_tokens": args.max_tokens,
                  "temperature": args.temperature, "upstream": "vLLM api_server, "
                  "SmolLM2-135M-Instruct, eager, loopback", "cpu_cores": os.cpu_count()},
        "serve": serve_sum, "direct": direct_sum,
        "overhead_ratio_mean_latency": round(serve_sum["mean_s"] / direct_sum["mean_s"], 4),
        "overhead_ratio_p50": round(serve_sum["p50_s"] / direct_sum["p50_s"], 4),
        "throughput_ratio": round(direct_sum["throughput_rps"] / serve_sum["throughput_rps"],
                                  4),
        "identical_token_counts": same_tokens,
        "requests_with_other_token_counts": sum(a != b for a, b in pairs),
        "tokens_serve": sum(a for a, _ in pairs), "tokens_direct": sum(b for _, b in pairs),
        "strategies": sorted({it["strategy"] for it in items}),
        "routing": {"mean_s": round(statistics.mean(route_s), 5),
                    "p50_s": round(pct(route_s, 0.5), 5), "p95_s": round(pct(route_s, 0.95), 5),
                    "compute_mean_s": round(statistics.mean(route_c), 5),
                    "cpu_mean_s": round(statistics.mean(route_cpu), 5),
                    "mean_batch": round(statistics.mean(r[2] for r in route), 2)},
        "routing_alone": alone_route,
        "cheapest_strategy": cheapest,
        "cheapest_alone_p50_s": round(pct(alone, 0.5), 3),
        "routing_share_of_cheapest": round(statistics.mean(route_s) / pct(alone, 0.5), 5),
        "routing_compute_share_of_cheapest": round(statistics.mean(route_c) / pct(alone, 0.5),
                                                   5),
        "routing_cpu_share_of_cheapest": round(statistics.mean(route_cpu) / pct(alone, 0.5), 5),
        "routing_alone_share_of_cheapest": round(alone_route["batch_1_per_query_s"]
                                                 / pct(alone, 0.5), 5),
        "server_health": health.get("routing"),
    }
    print(json.dumps(report, indent=2))
    write_markdown(report, Path(args.out))
    return 0


def write_markdown(r, path):
    s, d, st, ro = r["serve"], r["direct"], r["setup"], r["routing"]
    ok_ratio = "meets" if r["overhead_ratio_mean_latency"] <= 1.10 else "misses"
    ok_route = "meets" if r["routing_share_of_cheapest"] <= 0.01 else "misses"
    batch_k = f"batch_{st['clients']}_per_query_s"
    row = "| {} | {requests} | {wall_s} | {throughput_rps} | {mean_s} | {p50_s} | {p95_s} |"
    lines = [
        "# `ttcrouter serve` overhead (bench/bench_serve.py)",
        "",
        "Written by `bench/bench_serve.py`; rerun it to refresh (about 5 minutes, holding the "
        "engine lock). "
        f"Setup: {st['clients']} concurrent clients x {st['requests_per_client']} requests, "
        f"{st['rounds']} rounds alternating the two arms, greedy decoding (temperature "
        f"{st['temperature']}), at most {st['max_tokens']} tokens per candidate; one upstream "
        f"{st['upstream']}; {st['cpu_cores']} CPU cores shared with other work.",
        "",
        "- **serve**: the official `openai` client -> `ttcrouter serve --upstream` (routes each "
        "request, runs the chosen strategy over HTTP on the upstream);",
        "- **direct**: the same strategies on the same questions, `StrategyExecutor` straight "
        "to the upstream from the client process (no routing, no extra hop).",
        "",
        f"Strategies the router chose: {', '.join(r['strategies'])}. Tokens generated: "
        f"{r['tokens_serve']} through the server, {r['tokens_direct']} direct; "
        f"{r['requests_with_other_token_counts']} of {s['requests']} requests decoded a "
        "different number of tokens in the two arms (greedy decoding on vLLM is not "
        "batch-invariant: concurrent requests batched differently can round differently and "
        "diverge).",
        "",
        "| arm | requests | wall (s) | throughput (req/s) | mean (s) | p50 (s) | p95 (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        row.format("serve", **s),
        row.format("direct", **d),
        "",
        f"**Overhead ratio** (serve / direct, mean latency): "
        f"**{r['overhead_ratio_mean_latency']}** (p50: {r['overhead_ratio_p50']}; throughput "
        f"direct / serve: {r['throughput_ratio']}). Goal <= 1.10: {ok_ratio} it.",
        "",
        f"**Routing** per request inside the server (MiniLM embedding plus probe, "
        f"micro-batched, mean batch {ro['mean_batch']}): {1000 * ro['mean_s']:.1f} ms mean "
        f"(p50 {1000 * ro['p50_s']:.1f} ms, p95 {1000 * ro['p95_s']:.1f} ms, batch wait "
        f"included), of which the batch call {1000 * ro['compute_mean_s']:.1f} ms, and of that "
        f"{1000 * ro['cpu_mean_s']:.1f} ms of CPU time (the rest waiting for a core). The "
        f"cheapest strategy ({r['cheapest_strategy']}) alone takes "
        f"{r['cheapest_alone_p50_s']} s (p50), "
        f"so routing is **{100 * r['routing_share_of_cheapest']:.2f}%** of it "
        f"({100 * r['routing_compute_share_of_cheapest']:.2f}% counting the batch call only, "
        f"{100 * r['routing_cpu_share_of_cheapest']:.2f}% counting its CPU time only). Goal "
        f"<= 1%: {ok_route} it.",
        "",
        f"Routing alone (the same router in the bench process before the engine starts): "
        f"{1000 * r['routing_alone']['batch_1_per_query_s']:.1f} ms for one query, "
        f"{1000 * r['routing_alone'][batch_k]:.1f} ms per "
        f"query in a batch of {st['clients']}: "
        f"{100 * r['routing_alone_share_of_cheapest']:.2f}% of the cheapest strategy. "
        "Inside the server routing competes for the two cores with the engine, the clients "
        "and the strategies in flight, which is what stretches it.",
        "",
        "```json",
        json.dumps(r, indent=2),
        "```",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
