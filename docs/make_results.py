"""Evaluate on the shipped runs table and write docs/results.md (plus its plots).

Run: python docs/make_results.py [RUNS] [--seed N] [--test-size F] [--cv K]

It runs exactly what ``ttcrouter demo --report docs/results --seed N`` runs (and the plain
setup, and every configuration over several seeds), then renders the numbers into
docs/results.md. The verdicts in the text are computed from the
numbers, not written by hand.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCS = Path(__file__).resolve().parent


def _memoize_embeddings():
    """Embed each (encoder, texts) once per run of this script.

    Every evaluation here embeds the same 400 queries with one of two frozen encoders; the
    robustness tables alone would embed them 15 times with the 135M-parameter generator.
    A frozen encoder maps the same texts to the same vectors, so the cache changes no number.
    """
    from ttcrouter.embedding import EmbeddingTransformer

    embed, cache = EmbeddingTransformer.transform, {}

    def transform(self, X):
        key = (self.model_path_, repr(sorted(self.get_params().items())), tuple(map(str, X)))
        if key not in cache:
            cache[key] = embed(self, X)
        return cache[key].copy()

    EmbeddingTransformer.transform = transform


def fmt(v, pct=False):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:.0f}%" if pct else f"{v:.3f}"


def table(rows, cols):
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _setup(seed, per_query_costs=False, prune=True, generator_encoder=False):
    """(encoder, router) of one configuration; None encoder: EmbeddingTransformer()."""
    from ttcrouter import CostTable, EmbeddingTransformer, ProbeClassifier, UtilityRouter
    from ttcrouter.models import embedded_generator_path

    encoder = None
    if generator_encoder:
        encoder = EmbeddingTransformer(model=str(embedded_generator_path()), pooling="mean")
    router = UtilityRouter(probe=ProbeClassifier(random_state=seed),
                           costs=CostTable(per_query=per_query_costs), prune_dominated=prune)
    return encoder, router


def _setup_text(per_query_costs=False, prune=True, generator_encoder=False):
    enc = ("the embedded generator's hidden states (SmolLM2-135M-Instruct, mean pooling: "
           "`--encoder generator`)" if generator_encoder else "the embedded all-MiniLM-L6-v2")
    costs = ("per-query costs (`CostTable(per_query=True)`: ridge regression of log cost on the "
             "embedding)" if per_query_costs else "per-strategy mean costs")
    prune_text = ("strategies dominated on the training queries left out" if prune else
                  "no pruning")
    return (f"Encoder: {enc}; router: `UtilityRouter` with a calibrated MLP probe seeded with "
            f"the split seed, {costs}, {prune_text}.")


def section(summary, runs, prov, shown, args, report_dir, cmd, title, cv=None, batch=None,
            **setup):
    from ttcrouter.evaluation import evaluate, mix_sentences
    from ttcrouter.evaluation.batch import batch_markdown

    repeats = runs[runs["strategy"].isin(summary.strategies)].groupby(["query_id", "strategy"]).size()
    encoder, router = _setup(args.seed, **setup)
    t0 = time.perf_counter()
    rep = evaluate(summary, test_size=args.test_size, random_state=args.seed,
                   report_dir=report_dir, cv=cv, encoder=encoder, router=router,
                   batch_budgets=batch)
    wall = time.perf_counter() - t0

    static_rows = []
    for name, r in rep.static.sort_values("mean_tokens").iterrows():
        static_rows.append({"strategy": f"**{name}**" if name == rep.best_static else name,
                            "accuracy": fmt(r["accuracy"]), "mean tokens": f"{r['mean_tokens']:.1f}",
                            "mean latency (s)": f"{r['mean_latency_s']:.2f}"})
    r0, o0 = rep.adaptive["tokens"].iloc[0], rep.oracle["tokens"].iloc[0]
    b = rep.static.loc[rep.best_static]
    head_rows = [
        {"policy": f"best static ({rep.best_static})", "accuracy": fmt(b["accuracy"]),
         "mean tokens": f"{b['mean_tokens']:.1f}", "mean latency (s)": f"{b['mean_latency_s']:.2f}"},
        {"policy": "adaptive router, lambda = 0", "accuracy": fmt(r0["accuracy"]),
         "mean tokens": f"{r0['mean_tokens']:.1f}", "mean latency (s)": f"{r0['mean_latency_s']:.2f}"},
        {"policy": "per-query oracle, lambda = 0", "accuracy": fmt(o0["accuracy"]),
         "mean tokens": f"{o0['mean_tokens']:.1f}", "mean latency (s)": f"{o0['mean_latency_s']:.2f}"},
    ]
    gap_rows = [{"cost axis": g["axis"], "budget": f"{g['budget']:.4g}",
                 "best static": fmt(g["static_accuracy"]), "router": fmt(g["router_accuracy"]),
                 "oracle": fmt(g["oracle_accuracy"]), "gap closed": fmt(g["gap_closed"], True)}
                for _, g in rep.gap_closed.iterrows()]
    auc_rows = [{"cost axis": k, "static": fmt(v["static"]), "router": fmt(v["router"]),
                 "oracle": fmt(v["oracle"])} for k, v in rep.auc.items()]
    verdicts = []
    for axis, c in rep.frontier_check.items():
        if c["at_or_above_everywhere"]:
            verdicts.append(f"- **{axis}**: yes, the router's frontier is at or above the static "
                            f"frontier at every budget.")
        else:
            n_static = rep.static[{"tokens": "mean_tokens", "latency": "mean_latency_s"}[axis]]
            verdicts.append(
                f"- **{axis}**: no. It is below the static frontier at "
                f"{len(c['below_at_budgets'])} of {n_static.nunique()} static cost levels "
                f"(budgets {', '.join(f'{x:.4g}' for x in c['below_at_budgets'])}), by up to "
                f"{c['largest_shortfall']:.3f} accuracy; "
                + (f"clearly below (90% bootstrap interval of router - static under 0) at "
                   f"{', '.join(f'{x:.4g}' for x in c['clearly_below_at_budgets'])}."
                   if c.get("clearly_below_at_budgets") else
                   "at every one of them the 90% bootstrap interval of router - static "
                   "includes 0: the test set cannot tell the frontiers apart there."))
        if "difference_ci90" in c:
            above = [b for b, (lo, _) in zip(c["budgets"], c["difference_ci90"]) if lo > 0]
            verdicts.append(f"  Clearly above (90% bootstrap interval over 0) at {len(above)} of "
                            f"{len(c['budgets'])} levels"
                            + (f": {', '.join(f'{x:.4g}' for x in above)}." if above else "."))
    gaps = rep.gap_closed["gap_closed"].dropna()
    n_q = len(summary)
    split_text = (f"Split by query (seed {args.seed}): {rep.n_train} training and {rep.n_test} "
                  f"test queries." if not cv else
                  f"Cross-fitting over {cv} query folds (seed {args.seed}): each query is routed "
                  f"by a router fitted on the other folds ({rep.n_train} queries), so all "
                  f"{rep.n_test} queries are test queries, each exactly once.")
    per_cell = sorted(set(repeats.tolist()))

    text = f"""{title}

The numbers come from the command

```bash
{cmd}
```

(`docs/make_results.py` runs the same evaluation and renders this page; the evaluation took
{wall:.0f} s here.)

### Data

`{shown}`: {n_q} queries with a successful run of every strategy, {len(summary.strategies)}
strategies, {', '.join(map(str, per_cell))} run(s) per (query, strategy) cell.
Model: {prov.get('model', 'see provenance')}; backend: {prov.get('backend', 'see provenance')};
scorer: {prov.get('scorer', 'see provenance')}; latency: {prov.get('latency_method', 'see provenance')}
(see `docs/collection.md`). These are real executions on CPU, not synthetic outcomes. {split_text}
{_setup_text(**setup)}

**Caveat on size.** With {rep.n_test} test queries and {per_cell[0]} run(s) per cell, one query
moves an accuracy by {1 / rep.n_test:.3f}: differences below that are noise, and the router
learns from only {rep.n_train} queries{"" if cv else "; the cross-fitted evaluation below uses every query as a test query"}.

### Headline

{table(head_rows, ["policy", "accuracy", "mean tokens", "mean latency (s)"])}

Gap closed at matched mean cost: at each budget B, each policy's best accuracy with mean cost
<= B; gap closed = (router - best static) / (oracle - best static). "n/a" where the oracle is
no better than static, or the router has no point within the budget.

{table(gap_rows, ["cost axis", "budget", "best static", "router", "oracle", "gap closed"])}

Defined gap-closed values: {len(gaps)}; median {fmt(float(gaps.median()) if len(gaps) else float('nan'), True)}.

Area under each accuracy-cost frontier (log cost scaled to [0, 1] over the static cost range):

{table(auc_rows, ["cost axis", "static", "router", "oracle"])}

### Is the adaptive curve at or above the static frontier at every budget?

{chr(10).join(verdicts)}

### Static strategies (test queries)

{table(static_rows, ["strategy", "accuracy", "mean tokens", "mean latency (s)"])}

### Plots

![accuracy vs tokens]({report_dir.name}/accuracy_vs_tokens.png)

![accuracy vs latency]({report_dir.name}/accuracy_vs_latency.png)

![strategy mix]({report_dir.name}/strategy_mix.png)

### Token-aware against latency-aware routing at matched budgets

At each budget, the setting of each single-cost sweep with the best test accuracy whose mean
cost on that axis is within the budget; mixes that route fewer than 10% of the queries
differently count as the same (`ttcrouter.evaluation.matched_budget_mixes`).

{chr(10).join("- " + t for t in mix_sentences(rep.matched_mixes))}

![strategy mix at matched budgets]({report_dir.name}/strategy_mix_matched.png)

The full report (all sweeps, metrics.json) is in `docs/{report_dir.name}/`.
"""
    if rep.batch is not None:
        # one heading level down, plots under the report's folder
        md = "\n".join(batch_markdown(rep.batch, rep.config)).replace("\n### ", "\n#### ")
        text += "\n#" + md.replace("](batch_budgets.png)",
                                   f"]({report_dir.name}/batch_budgets.png)")
    a = rep.auc
    chk = rep.frontier_check
    line = (f"- **{title.lstrip('# ')}** ({rep.n_test} test queries): area under the frontier, "
            f"static / router / oracle: tokens {a['tokens']['static']:.3f} / "
            f"{a['tokens']['router']:.3f} / {a['tokens']['oracle']:.3f}, latency "
            f"{a['latency']['static']:.3f} / {a['latency']['router']:.3f} / "
            f"{a['latency']['oracle']:.3f}; median gap closed "
            f"{fmt(float(gaps.median()) if len(gaps) else float('nan'), True)}; router at or above "
            f"the static frontier at every budget: tokens "
            f"{'yes' if chk['tokens']['at_or_above_everywhere'] else 'no'}, latency "
            f"{'yes' if chk['latency']['at_or_above_everywhere'] else 'no'}.")
    return text, line


def robustness(summary, args, seeds, cv=None, per_query_costs=False, prune=True,
               generator_encoder=False) -> str:
    """The headline numbers over several query splits (one evaluation per seed)."""
    from ttcrouter.evaluation import evaluate

    rows, cells = [], []
    for seed in seeds:
        encoder, router = _setup(seed, per_query_costs=per_query_costs, prune=prune,
                                 generator_encoder=generator_encoder)
        rep = evaluate(summary, test_size=args.test_size, random_state=seed, progress=False,
                       cv=cv, router=router, encoder=encoder)
        gaps = rep.gap_closed["gap_closed"].dropna()
        chk, a = rep.frontier_check, rep.auc
        r0 = rep.adaptive["tokens"].iloc[0]
        cells.append(chk)
        verdict = {k: "yes" if v["at_or_above_everywhere"] else
                   f"no (at {', '.join(f'{b:.4g}' for b in v['below_at_budgets'])}; "
                   f"up to {v['largest_shortfall']:.3f}; "
                   f"clearly below at {len(v.get('clearly_below_at_budgets', []))})"
                   for k, v in chk.items()}
        rows.append({
            "seed": seed,
            "best static": f"{rep.best_static} {fmt(rep.static.loc[rep.best_static, 'accuracy'])}",
            "router, lambda=0": fmt(r0["accuracy"]),
            "AUC tokens static / router": f"{a['tokens']['static']:.3f} / {a['tokens']['router']:.3f}",
            "AUC latency static / router": f"{a['latency']['static']:.3f} / {a['latency']['router']:.3f}",
            "median gap closed": fmt(float(gaps.median()) if len(gaps) else float("nan"), True),
            "at/above on tokens": verdict["tokens"],
            "at/above on latency": verdict["latency"],
        })
    ok = {k: sum(c[k]["at_or_above_everywhere"] for c in cells) for k in ("tokens", "latency")}
    clear = {k: sum(bool(c[k].get("clearly_below_at_budgets")) for c in cells)
             for k in ("tokens", "latency")}
    worst = {k: max(c[k]["largest_shortfall"] for c in cells) for k in ("tokens", "latency")}
    cols = list(rows[0])
    what = (f"the single split (test_size {args.test_size})" if not cv
            else f"{cv}-fold cross-fitting")
    if per_query_costs:
        what += ", router with per-query costs (`CostTable(per_query=True)`)"
    if generator_encoder:
        what += (", queries embedded by the generator itself (SmolLM2-135M-Instruct hidden "
                 "states, mean-pooled: `--encoder generator`; the paper embeds with the "
                 "generator family too)")
    if per_query_costs and generator_encoder and cv == 4 and prune:
        what = "the demo's configuration: " + what
    if not prune:
        what += (", router without pruning (`UtilityRouter(prune_dominated=False)`, the "
                 "paper's rule: every strategy is a candidate)")
    n_test = len(summary) if cv else max(1, round(args.test_size * len(summary)))
    return (f"""### {what[0].upper() + what[1:]}, seeds {', '.join(map(str, seeds))}

The same evaluation ({what}; all strategies) with the seed {', '.join(map(str, seeds))}
(`python docs/make_results.py --robust-seeds {' '.join(map(str, seeds))}`). Each seed is
another split of the queries and another probe initialisation.

{table(rows, cols)}

At or above the static frontier at every budget: tokens in {ok['tokens']} of {len(seeds)}
splits, latency in {ok['latency']} of {len(seeds)}; the largest shortfall over all splits is
{worst['tokens']:.3f} (tokens) and {worst['latency']:.3f} (latency) accuracy, against
{1 / n_test:.3f} for one test query. Splits with a budget where the router is clearly below
(90% bootstrap interval under 0): tokens {clear['tokens']}, latency {clear['latency']}.
""")


def reliability(runs) -> str:
    """How much per-query signal the table holds: split-half reliability by strategy."""
    from ttcrouter.frontier import pareto_frontier
    from ttcrouter.metrics import split_half_reliability

    rel = split_half_reliability(runs, random_state=0)
    means = runs[runs["error"].isna()].groupby("strategy")[["correct", "tokens"]].mean()
    on = pareto_frontier(means["tokens"], means["correct"])
    frontier = ", ".join(f"`{means.index[i]}` ({means['tokens'].iloc[i]:.0f} tokens)" for i in on)
    acc, gain = rel[rel["what"] == "accuracy"], rel[rel["what"] == "gain"]
    rows = [{"strategy or gain": k, "queries": int(r["n_queries"]),
             "split-half r": fmt(r["split_half_r"]), "reliability": fmt(r["reliability"])}
            for k, r in rel.iterrows()]
    return f"""## How much per-query signal is there to route on?

A router can only exploit per-query differences that repeat from run to run.
`ttcrouter.split_half_reliability(runs)` splits each query's repeats into two random halves,
correlates the per-query accuracy of the halves over queries (20 random splits), and steps the
correlation up to all repeats (Spearman-Brown):

{table(rows, list(rows[0]))}

Which queries a strategy solves repeats well (reliability {acc['reliability'].min():.2f} to
{acc['reliability'].max():.2f}): the probe learns difficulty, which is what moves the router above
the static frontier at the middle budgets. Which queries *gain* from the next budget of a
method barely repeats (reliability {gain['reliability'].min():.2f} to
{gain['reliability'].max():.2f}): with at most {int(runs['repeat'].nunique())} runs per cell, the per-query gain of
one budget over the next is mostly run-to-run noise. Where the static frontier is one strategy
at a kink of the static curve or at its top (on the token axis here: {frontier}), beating it
needs exactly that gain signal, so the router can at best tie there, and on a finite test set
a tie lands a query or two above or below. Compare the budgets at which the robustness tables
above report a shortfall. More runs per cell would raise the reliability of the gains.
"""


def main(argv=None) -> int:
    from ttcrouter.cli import shipped_runs_path
    from ttcrouter.runs import aggregate_runs, read_runs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="?", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-size", type=float, default=0.25)
    p.add_argument("--cv", type=int, default=4, help="folds of the cross-fitted evaluation")
    p.add_argument("--no-batch-budgets", action="store_true",
                   help="skip the batch-budget comparison of the cross-fitted evaluations")
    p.add_argument("--robust-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                   help="split seeds of the robustness table (none: skip it)")
    args = p.parse_args(argv)
    path = Path(args.runs) if args.runs else shipped_runs_path()
    if path is None:
        print("no runs table: pass one, or install the shipped table", file=sys.stderr)
        return 2
    _memoize_embeddings()
    runs = read_runs(path)
    prov = runs.attrs.get("provenance", {})
    summary = aggregate_runs(runs)
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    parallel = [n for n in summary.strategies if not n.startswith("beam_search")]
    par = aggregate_runs(runs, strategies=parallel)
    text = (f"# Results on the shipped runs table\n\nGenerated by `python docs/make_results.py` "
            f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. The evaluations: what "
            f"`ttcrouter demo` runs ({args.cv}-fold cross-fitting, every query a test query "
            f"once; the generator's hidden states as the encoder; per-query costs); the plain "
            f"setup (MiniLM encoder, per-strategy mean costs) on one query split and with "
            f"cross-fitting; when beam search was run on fewer queries, the parallel strategies "
            f"on every query; and each over several seeds.\n\n")
    demo = dict(per_query_costs=True, generator_encoder=True)
    batch = None if args.no_batch_budgets else "auto"
    flag = "" if batch is None else " --batch-budgets auto"
    body, line = section(summary, runs, prov, shown, args, DOCS / "results",
                         f"ttcrouter demo --report docs/results --seed {args.seed} --cv {args.cv}"
                         f"{flag}\n# the same on any runs table:\n# ttcrouter evaluate {shown} "
                         f"--cv {args.cv} --encoder generator --per-query-costs{flag}",
                         f"## The demo: {args.cv}-fold cross-fitting, generator encoder, "
                         f"per-query costs", cv=args.cv, batch=batch, **demo)
    lines = [line]
    plain = f"ttcrouter evaluate {shown} --seed {args.seed}"
    more, line = section(summary, runs, prov, shown, args, DOCS / "results_split",
                         f"{plain} --report docs/results_split --test-size {args.test_size}",
                         "## The plain setup on one split (MiniLM encoder, mean costs)")
    body += "\n" + more
    lines.append(line)
    if len(par) > len(summary) and parallel:
        names = ",".join(par.strategies)
        more, line = section(par, runs, prov, shown, args, DOCS / "results_parallel",
                             f"{plain} --report docs/results_parallel --test-size "
                             f"{args.test_size} --strategies {names}",
                             "## Parallel strategies only (best-of-N, majority, weighted "
                             "majority), every query")
        body += "\n" + more
        lines.append(line)
    more, line = section(summary, runs, prov, shown, args, DOCS / "results_cv",
                         f"{plain} --report docs/results_cv --cv {args.cv}{flag}",
                         f"## The plain setup with {args.cv}-fold cross-fitting", cv=args.cv,
                         batch=batch)
    body += "\n" + more
    lines.append(line)
    if args.robust_seeds:
        body += ("\n## Robustness: other seeds\n\nEach seed gives another split of the "
                 "queries and another probe initialisation, so the spread between rows is what "
                 "a single evaluation cannot show.\n\n"
                 + robustness(summary, args, args.robust_seeds, cv=args.cv, **demo)
                 + "\n" + robustness(summary, args, args.robust_seeds, **demo)
                 + "\n" + robustness(summary, args, args.robust_seeds)
                 + "\n" + robustness(summary, args, args.robust_seeds, cv=args.cv)
                 + "\n" + robustness(summary, args, args.robust_seeds, cv=args.cv,
                                      per_query_costs=True)
                 + "\n" + robustness(summary, args, args.robust_seeds, cv=args.cv,
                                      prune=False)
                 + "\n" + robustness(summary, args, args.robust_seeds, cv=args.cv,
                                      generator_encoder=True))
    body += "\n" + reliability(runs)
    text += ("In short (computed from the tables below; small test sets, so read the "
             "caveats):\n\n" + "\n".join(lines) + "\n\n" + body)
    (DOCS / "results.md").write_text(text)
    print(f"wrote {DOCS / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
