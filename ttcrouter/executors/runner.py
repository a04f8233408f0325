"""StrategyExecutor: validate, generate with per-query error isolation, score, dispatch.

:class:`StrategyExecutor` runs any strategy whose spec class has a registered family
(:mod:`ttcrouter.executors.search`): best-of-N, majority and weighted majority voting
(``search/best_of_n.py``, ``search/majority_vote.py``), beam search
(``search/beam_search.py``) and early-stopping votes (``search/adaptive_vote.py``). A
strategy's prompt ``mode`` picks the system prompt (:meth:`StrategyExecutor.prompt_for`). For a parallel family it draws ``n`` full samples per query in
one request, scores them when the family needs a reward model, and applies the family's
selection rule; a family with its own ``run`` (beam search) generates through
:meth:`StrategyExecutor.generate_isolated` and :meth:`StrategyExecutor.score_isolated`
(``isolation.py``); the prompt modes are in ``prompting.py``.

Token accounting is honest: ``tokens`` counts every token generated for the query, by every
candidate and every beam at every step (pruned beams included); ``prompt_tokens`` counts the
prompt of every request once (parallel samples of one request share their prompt);
``reward_tokens`` counts the tokens the reward model read. Each query of a batch has its own
beam pool.
"""

from __future__ import annotations

import numbers
import time

from sklearn.utils import check_scalar

from ..strategies import Strategy, as_strategy
from .isolation import IsolatedCalls
from .prompting import PromptModes
from .results import Candidate, CandidatePool, ExecutionResult
from .scoring import AGGREGATIONS, LogprobScorer
# Importing a family module registers it; every built-in family is imported here, so the
# runner can dispatch to all of them.
from .search import adaptive_vote, beam_search, best_of_n, majority_vote  # noqa: F401
from .search import register, search_for, select_candidate  # noqa: F401 - re-exported
from .search.utils import split_logprobs, split_steps

__all__ = [
    "Candidate",
    "CandidatePool",
    "ExecutionResult",
    "StrategyExecutor",
    "execute",
    "split_steps",
    "select_candidate",
]


def check_positive_int(value, name: str) -> int:
    """``value`` as an int, if it is a positive integer (bools are refused).

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If ``value`` < 1.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    check_scalar(value, name, target_type=numbers.Integral, min_val=1)
    return int(value)


class StrategyExecutor(PromptModes, IsolatedCalls):
    """Run strategies on a generator backend, scoring candidates with a step scorer.

    Parameters
    ----------
    generator : Generator
        A backend (:class:`~ttcrouter.executors.VLLMGenerator`, ``OpenAIGenerator``,
        ``TransformersGenerator``).
    scorer : StepScorer or None, default=None
        Step scorer for best-of-N, weighted voting and beam search; None means
        :class:`~ttcrouter.executors.LogprobScorer` (no extra model).
    scorers : dict or None, default=None
        Named scorers, for strategies that name theirs: ``{"verifier": VerifierScorer(path)}``
        runs ``best_of_n@n=8,scorer=verifier``. Strategies without a scorer use ``scorer``.
    step_delimiter : str, default="\\n"
        Ends a step: a stop string in beam search, the split point of full samples.
        Use ``"\\n\\n"`` for Qwen-style models and the Qwen PRM.
    max_tokens : int, default=256
        Token budget of one candidate (a full sample, or a beam over all its steps).
    step_max_tokens : int, default=64
        Token limit of one beam-search step.
    temperature : float, default=0.7
    top_p : float, default=1.0
    aggregation : {"last", "min", "prod", "mean"}, default="last"
        How step rewards become a candidate's reward.
    max_steps : int or None, default=None
        Overrides ``BeamSearch.max_steps`` when set.
    system_prompt : str or None, default=None
        System prompt for this executor's requests; None keeps the generator's own. When set,
        it replaces the generator's ``system_prompt`` for the duration of each call (do not
        share the generator between threads then). It is the prompt of the default ``cot``
        mode.
    prompts : dict or None, default=None
        Prompt mode -> system prompt (str) or :class:`~ttcrouter.executors.base.PromptMode`
        (system prompt, assistant prefix, token cap, stop strings), for the strategies'
        ``mode``; modes it lacks take ``system_prompt`` (``cot``; None: the generator's own,
        ``DEFAULT_SYSTEM_PROMPT``) or :data:`~ttcrouter.executors.base.DEFAULT_PROMPTS`
        (``direct``: its system prompt, the prefix ``"Answer:"``, 12 tokens, one line). Set
        it per model.
    """

    def __init__(
        self,
        generator,
        scorer=None,
        scorers=None,
        step_delimiter="\n",
        max_tokens=256,
        step_max_tokens=64,
        temperature=0.7,
        top_p=1.0,
        aggregation="last",
        max_steps=None,
        system_prompt=None,
        prompts=None,
    ):
        self.generator = generator
        self.scorer = scorer
        self.scorers = scorers
        self.step_delimiter = step_delimiter
        self.max_tokens = max_tokens
        self.step_max_tokens = step_max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.aggregation = aggregation
        self.max_steps = max_steps
        self.system_prompt = system_prompt
        self.prompts = prompts
        self._default_scorer = None

    # -- checks ----------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.generator is None or not hasattr(self.generator, "generate"):
            raise TypeError("generator must be a generator backend with a generate() method.")
        check_positive_int(self.max_tokens, "max_tokens")
        check_positive_int(self.step_max_tokens, "step_max_tokens")
        if self.max_steps is not None:
            check_positive_int(self.max_steps, "max_steps")
        if not isinstance(self.step_delimiter, str) or not self.step_delimiter:
            raise ValueError(
                f"step_delimiter must be a non-empty string, got {self.step_delimiter!r}."
            )
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}."
            )
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}.")
        if self.scorer is not None and not hasattr(self.scorer, "score"):
            raise TypeError("scorer must have a score(question, solutions) method.")
        if self.scorers is not None:
            if not isinstance(self.scorers, dict):
                raise TypeError(f"scorers must be a dict of name -> scorer, got "
                                f"{type(self.scorers).__name__}.")
            for name, got in self.scorers.items():
                if not hasattr(got, "score"):
                    raise TypeError(f"scorers[{name!r}] must have a score(question, "
                                    "solutions) method.")

    def scorer_for(self, strategy):
        """The step scorer ``strategy`` reads: ``scorers[strategy.scorer]``, or
        :attr:`scorer_` for a strategy that names none.

        Raises
        ------
        ValueError
            The strategy names a scorer this executor was not given.
        """
        spec = as_strategy(strategy)
        return self.scorer_ if spec.scorer is None else self._named_scorer(spec.scorer,
                                                                           spec.name)

    def _named_scorer(self, name, user="A strategy"):
        if not self.scorers or name not in self.scorers:
            raise ValueError(
                f"{user} is scored by the {name!r} scorer, which this executor lacks (it has "
                f"{sorted(self.scorers or {}) or 'none'}); pass StrategyExecutor(scorers="
                f"{{{name!r}: ...}}), e.g. VerifierScorer('verifier.joblib'), or --scorer FILE "
                "on the command line.")
        return self.scorers[name]

    @property
    def scorer_(self):
        """The step scorer in use (``scorer``, or a :class:`LogprobScorer`)."""
        if self.scorer is not None:
            return self.scorer
        if self._default_scorer is None:
            self._default_scorer = LogprobScorer()
        return self._default_scorer

    @staticmethod
    def _check_query(query) -> str | None:
        """The reason a query is unusable, or None."""
        if not isinstance(query, str):
            return f"query must be a string, got {type(query).__name__}."
        if not query.strip():
            return "query is empty; pass the question text."
        return None

    def query_errors(self, queries) -> dict[int, str]:
        """Why each unusable query (empty, not a string) cannot run: ``{index: reason}``."""
        return {i: why for i, why in enumerate(map(self._check_query, queries)) if why}

    # -- parallel sampling ------------------------------------------------------------------------
    def _sample(self, queries, n, *, score, mode="cot", scorers=None):
        """n full samples per valid query in one request; returns CandidatePools.

        With ``score``, the candidates are scored by each of ``scorers`` (default
        ``[scorer_]``) in turn; the rewards left on them are the last scorer's, and each
        pool's ``scores`` maps the position of each scorer to its rewards and tokens.
        """
        errors = self.query_errors(queries)
        valid = [i for i in range(len(queries)) if i not in errors]
        scorers = [self.scorer_] if scorers is None else list(scorers)
        want_logprobs = bool(score and any(getattr(sc, "uses_logprobs", False)
                                           for sc in scorers))
        start = time.perf_counter()
        _, max_tokens, stop = self.mode_request("", mode)
        with self.using_system_prompt(mode):
            comps = self.generate_isolated(
                [self.mode_request(queries[i], mode)[0] for i in valid], valid, errors,
                n=n, max_tokens=max_tokens, stop=stop, logprobs=want_logprobs,
            )
        generation_s = time.perf_counter() - start
        pools: dict[int, CandidatePool] = {}
        for i, cs in zip(valid, comps):
            if cs is None or i in errors:
                continue
            cands = []
            for c in cs:
                steps = split_steps(c.text, self.step_delimiter)
                cands.append(Candidate.from_text(
                    c.text, steps, c.tokens, finish_reason=c.finish_reason, finished=True,
                    step_logprobs=split_logprobs(steps, c.logprobs) if want_logprobs else None,
                    request_latency_s=generation_s,
                ))
            pools[i] = CandidatePool(
                query=queries[i], candidates=cands,
                prompt_tokens=int(cs[0].prompt_tokens) if cs else 0,
            )
        if score and pools:
            order = list(pools)
            n_cands = max(sum(len(pools[i].candidates) for i in order), 1)
            for k, sc in enumerate(scorers):
                t0 = time.perf_counter()
                spent = self.score_isolated(
                    [queries[i] for i in order], [pools[i].candidates for i in order], order,
                    errors, mode=mode, scorer=sc,
                )
                # each pool's share of the scoring wall clock, by its share of the candidates
                seconds = time.perf_counter() - t0
                for i, nt in zip(order, spent):
                    pools[i].reward_tokens = nt
                    share = seconds * len(pools[i].candidates) / n_cands
                    pools[i].scores[k] = ([c.reward for c in pools[i].candidates], nt, share)
        elapsed = time.perf_counter() - start
        out = []
        for i, q in enumerate(queries):
            if i in errors:
                out.append(CandidatePool(query=q if isinstance(q, str) else str(q),
                                         error=errors[i], latency_s=elapsed))
            else:
                pools[i].latency_s = elapsed
                out.append(pools[i])
        return out

    def sample_pool(self, queries, n, mode="cot", scorers=None) -> list[CandidatePool]:
        """Draw ``n`` full samples per query in one batched request and score them all.

        Parameters
        ----------
        queries : sequence of str
        n : int
            Samples per query.
        mode : str, default="cot"
            Prompt mode (:meth:`prompt_for`).
        scorers : list of str or None, default=None
            Scorer names to score the samples with, in turn (None: the executor's own
            ``scorer``, else a key of ``scorers``); each pool's ``scores[name]`` holds each
            one's rewards, tokens and seconds, and the candidates keep the last one's
            rewards.

        Returns
        -------
        list of CandidatePool
            One pool per query, in order. Each candidate carries its text, extracted and
            normalised answer, generated tokens, step rewards and aggregated reward. A query
            that failed (empty, prompt too long, ...) gets a pool with ``error`` set.
            ``latency_s`` is the wall time of the whole batched request, shared by all pools.
        """
        self._check_params()
        queries = self._check_queries(queries)
        n = check_positive_int(n, "n")
        self.prompt_for(mode)
        names = [None] if scorers is None else list(scorers)
        objs = [self.scorer_ if nm is None else self._named_scorer(nm) for nm in names]
        pools = self._sample(queries, n, score=True, mode=mode, scorers=objs)
        for pool in pools:
            pool.scores = {names[k]: v for k, v in pool.scores.items()}
        return pools

    @staticmethod
    def _check_queries(queries) -> list:
        if isinstance(queries, str):
            raise TypeError("queries must be a list of strings; wrap a single query: [query].")
        return list(queries)

    # -- strategies -------------------------------------------------------------------------------
    def execute(self, strategy, query) -> ExecutionResult:
        """Run one strategy on one query.

        Parameters
        ----------
        strategy : Strategy or str
            A spec or canonical name (``"majority_vote@n=4"``).
        query : str

        Returns
        -------
        ExecutionResult
            ``latency_s`` is the wall clock of this execution. Generation or scoring failures
            are recorded in ``error``.

        Raises
        ------
        ValueError
            For an unknown strategy, bad parameters or an empty query.
        """
        why = self._check_query(query)
        if why:
            raise ValueError(why)
        return self.execute_batch(strategy, [query])[0]

    def execute_batch(self, strategy, queries, progress=False, measure="batch"):
        """Run one strategy on several queries, batched.

        Parallel methods send one request per query (``n`` samples each) in one generation
        call; beam search makes one generation call per step for all queries' beams, each
        query keeping its own beam pool.

        Parameters
        ----------
        strategy : Strategy or str
        queries : sequence of str
        progress : bool, default=False
            Show a progress bar (beam-search steps, or queries with ``measure="isolated"``).
        measure : {"batch", "isolated"}, default="batch"
            ``"batch"``: all queries run together and each result's ``latency_s`` is the
            batch's wall time (what a user who sent the batch waits). ``"isolated"``: queries
            run one at a time, each ``latency_s`` is that query's own wall time (slower, but
            the latency of a single request).

        Returns
        -------
        list of ExecutionResult
            One per query, in order; a failed query has ``error`` set and the others go on.
        """
        strategy = as_strategy(strategy)
        self._check_params()
        queries = self._check_queries(queries)
        if measure not in ("batch", "isolated"):
            raise ValueError(f"measure must be 'batch' or 'isolated', got {measure!r}.")
        if measure == "isolated":
            items = queries
            if progress:
                from tqdm.auto import tqdm

                items = tqdm(queries, desc=strategy.name)
            return [self._run_batch(strategy, [q], False)[0] for q in items]
        return self._run_batch(strategy, queries, progress)

    def _run_batch(self, strategy: Strategy, queries, progress) -> list[ExecutionResult]:
        family = search_for(strategy)
        if getattr(family, "run", None) is not None:
            return family.run(self, strategy, queries, progress)
        start = time.perf_counter()
        scorer = self.scorer_for(strategy) if strategy.needs_reward_model else None
        pools = self._sample(queries, strategy.n, score=strategy.needs_reward_model,
                             mode=strategy.mode, scorers=None if scorer is None else [scorer])
        elapsed = time.perf_counter() - start
        out = []
        for pool in pools:
            if pool.error is not None:
                res = ExecutionResult(strategy.name, pool.query, error=pool.error)
            else:
                res = pool.select(strategy, range(len(pool.candidates)))
                res.reward_tokens = pool.reward_tokens
                res.candidates = pool.candidates
            res.latency_s = elapsed
            out.append(res)
        return out

    def close(self) -> None:
        """Close the generator and the scorer."""
        for part in (self.generator, self.scorer, *(self.scorers or {}).values()):
            if part is not None and hasattr(part, "close"):
                part.close()


def execute(strategy, query, executor: StrategyExecutor) -> ExecutionResult:
    """Run ``strategy`` on ``query`` with ``executor`` (see :meth:`StrategyExecutor.execute`)."""
    if not isinstance(executor, StrategyExecutor):
        raise TypeError(
            f"executor must be a StrategyExecutor, got {type(executor).__name__}; build one "
            "with StrategyExecutor(generator)."
        )
    return executor.execute(strategy, query)
