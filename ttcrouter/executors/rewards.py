"""Step scorers: process reward models (PRMs) and the generator's own log-probabilities.

Every scorer has ``score(question, solutions) -> list[list[float]]``: ``solutions`` is a list
of candidate solutions, each a list of step strings, and the result holds one reward in
[0, 1] per step of each candidate. :func:`aggregate_step_scores` turns the step rewards of a
candidate into one number (last, min, product or mean).

- :class:`QwenMathPRM`: ``Qwen/Qwen2.5-Math-PRM-7B`` (or any token-classification model with
  two labels and a step token) run with ``transformers``, as its model card prescribes.
- :class:`VLLMRewardModel`: the same PRM served by vLLM as a pooling (reward) model.
- :class:`LogprobScorer`: ``exp(mean token log-probability)`` of each step, from the
  log-probabilities the generator recorded while sampling; no extra model pass, so it is the
  default where no PRM fits (CPU machines).

Scorers count the tokens they read in ``last_reward_tokens`` (the latest call) and
``reward_tokens`` (running total), so executors can report reward-model tokens honestly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "PRM_SYSTEM_PROMPT",
    "StepScorer",
    "QwenMathPRM",
    "VLLMRewardModel",
    "LogprobScorer",
    "aggregate_step_scores",
    "format_prm_input",
]

#: System prompt of Qwen2.5-Math-PRM (from its model card).
PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
#: Token the Qwen PRM reads after every step; its logits there give the step's reward.
PRM_STEP_TOKEN = "<extra_0>"
AGGREGATIONS = ("last", "min", "prod", "mean")


def _aggregate_one(scores: Sequence[float], how: str) -> float:
    values = [float(s) for s in scores]
    if not values:
        return 0.0
    if how == "last":
        return values[-1]
    if how == "min":
        return min(values)
    if how == "prod":
        return float(math.prod(values))
    return float(sum(values) / len(values))


def aggregate_step_scores(scores, how: str = "last"):
    """Aggregate per-step rewards into one score per candidate.

    Parameters
    ----------
    scores : sequence of float, or sequence of sequences of float
        The step rewards of one candidate, or of several candidates.
    how : {"last", "min", "prod", "mean"}, default="last"
        ``"last"``: reward of the final step (the usual choice for Qwen PRMs);
        ``"min"``: weakest step; ``"prod"``: product; ``"mean"``: average.

    Returns
    -------
    float or list of float
        One score per candidate (a float for a single candidate). A candidate with no steps
        scores 0.0, so it never wins a ranking.

    Examples
    --------
    >>> aggregate_step_scores([0.9, 0.5, 0.8], "min")
    0.5
    >>> aggregate_step_scores([[0.9, 0.5], [0.2]], "last")
    [0.5, 0.2]
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"Unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}.")
    if isinstance(scores, np.ndarray):
        scores = scores.tolist()
    scores = list(scores)
    if scores and all(isinstance(s, (list, tuple, np.ndarray)) for s in scores):
        return [_aggregate_one(list(s), how) for s in scores]
    return _aggregate_one(scores, how)


def _check_solutions(solutions) -> list[list[str]]:
    if isinstance(solutions, str):
        raise TypeError(
            "solutions must be a list of candidates, each a list of step strings; got a "
            "string. Wrap it: [[step1, step2, ...]]."
        )
    out = []
    for i, sol in enumerate(solutions):
        if isinstance(sol, str):
            raise TypeError(
                f"Candidate {i} is a string; each candidate must be a list of step strings "
                "(split the solution at the step delimiter)."
            )
        out.append([str(s) for s in sol])
    return out


class StepScorer:
    """Base class of the step scorers.

    Subclasses implement :meth:`score`; :meth:`score_batch` scores several questions at once
    (the default loops over :meth:`score`).
    """

    #: Whether the scorer reads the generator's token log-probabilities (no model of its own).
    uses_logprobs: bool = False

    def __init__(self):
        self.last_reward_tokens = 0
        self.reward_tokens = 0
        self.last_batch_reward_tokens = []

    def _count(self, n_tokens: int) -> None:
        self.last_reward_tokens = int(n_tokens)
        self.reward_tokens = getattr(self, "reward_tokens", 0) + int(n_tokens)

    def score(self, question: str, solutions, **kwargs) -> list[list[float]]:
        """Per-step rewards in [0, 1] of each candidate solution of ``question``."""
        raise NotImplementedError

    def score_batch(self, questions, solutions, **kwargs) -> list[list[list[float]]]:
        """Score ``solutions[i]`` (a list of candidates) for ``questions[i]``, for every i.

        Sets ``last_batch_reward_tokens`` to the tokens read for each question.
        """
        per_question, out = [], []
        for i, (q, sols) in enumerate(zip(questions, solutions)):
            extra = {k: v[i] for k, v in kwargs.items() if v is not None}
            out.append(self.score(q, sols, **extra))
            per_question.append(self.last_reward_tokens)
        self.last_reward_tokens = int(sum(per_question))
        self.last_batch_reward_tokens = per_question
        return out

    def close(self) -> None:
        """Free the model, if any."""


# -- log-probability scorer --------------------------------------------------------------------
class LogprobScorer(StepScorer):
    """Score each step by the generator's confidence: ``exp(mean token log-probability)``.

    Needs no model of its own: the executor asks the generator for token log-probabilities
    while sampling and passes them as ``step_logprobs``. A step with no tokens scores 0.0.

    Examples
    --------
    >>> LogprobScorer().score("q", [["a", "b"]], step_logprobs=[[[0.0, 0.0], [-1.0]]])
    [[1.0, 0.36787944117144233]]
    """

    uses_logprobs = True

    def score(self, question, solutions, step_logprobs=None, **kwargs) -> list[list[float]]:
        """Per-step rewards from recorded log-probabilities.

        Parameters
        ----------
        question : str
            Unused (the log-probabilities already depend on it).
        solutions : list of list of str
            Candidate solutions as step strings.
        step_logprobs : list of list of (list of float or float)
            For each candidate and step, the token log-probabilities of that step (or their
            mean, as one float).

        Returns
        -------
        list of list of float
        """
        solutions = _check_solutions(solutions)
        if step_logprobs is None:
            raise ValueError(
                "LogprobScorer scores from the generator's token log-probabilities: pass "
                "step_logprobs (one list per candidate, one entry per step). StrategyExecutor "
                "records them while sampling."
            )
        if len(step_logprobs) != len(solutions):
            raise ValueError(
                f"step_logprobs has {len(step_logprobs)} candidates, solutions has "
                f"{len(solutions)}."
            )
        out = []
        for i, (steps, lps) in enumerate(zip(solutions, step_logprobs)):
            if len(lps) != len(steps):
                raise ValueError(
                    f"Candidate {i}: {len(steps)} steps but {len(lps)} log-probability entries."
                )
            out.append([self._step_reward(lp) for lp in lps])
        self._count(0)
        return out

    @staticmethod
    def _step_reward(lp) -> float:
        if lp is None:
            return 0.0
        if isinstance(lp, (int, float, np.floating)):
            mean = float(lp)
        else:
            values = [float(v) for v in lp if v is not None and math.isfinite(float(v))]
            if not values:
                return 0.0
            mean = sum(values) / len(values)
        return float(min(1.0, math.exp(min(0.0, mean))))


# -- PRM input formatting (shared by the transformers and vLLM PRMs) -------------------------------
def format_prm_input(
    tokenizer,
    question: str,
    steps: Sequence[str],
    *,
    system_prompt: str | None = PRM_SYSTEM_PROMPT,
    step_token: str = PRM_STEP_TOKEN,
) -> str:
    """The PRM's input text: chat template with the steps, each followed by ``step_token``.

    As on the Qwen2.5-Math-PRM model card: the assistant message is
    ``step_token.join(steps) + step_token`` (steps stripped of surrounding whitespace). A
    tokenizer without a chat template gets ``system\\n\\nquestion\\n\\nsteps``.
    """
    steps = [s.strip() for s in steps]
    response = step_token.join(steps) + step_token
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages += [{"role": "user", "content": question},
                 {"role": "assistant", "content": response}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=False
        )
    parts = [system_prompt] if system_prompt else []
    return "\n\n".join(parts + [question, response])


def _step_token_id(tokenizer, step_token: str) -> int:
    ids = tokenizer.encode(step_token, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(
            f"The reward model's tokenizer splits the step token {step_token!r} into "
            f"{len(ids)} tokens; a PRM needs it as one token (add it as a special token)."
        )
    return int(ids[0])


def _softmax_index1(logits) -> list[float]:
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits[None, :]
    logits = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs[:, 1].tolist()


def _fit_to_steps(rewards: list[float], n_steps: int) -> list[float]:
    """One reward per step: steps whose step token was cut off (truncation) score 0.0."""
    rewards = list(rewards)[:n_steps]
    return rewards + [0.0] * (n_steps - len(rewards))


# -- transformers PRM --------------------------------------------------------------------------
class _ProcessRewardModel(StepScorer):
    """Shared input formatting and batching of the PRM backends.

    Subclasses load ``_tokenizer``/``_step_id`` in ``_load`` and implement
    ``_score_flat(items) -> (rewards, token_counts)`` over ``(question, steps)`` pairs.
    """

    @property
    def tokenizer(self):
        self._load()
        return self._tokenizer

    def format(self, question: str, steps: Sequence[str]) -> str:
        """The model's input text for one candidate (see :func:`format_prm_input`)."""
        return format_prm_input(
            self.tokenizer, question, steps,
            system_prompt=self.system_prompt, step_token=self.step_token,
        )

    def score(self, question, solutions, **kwargs) -> list[list[float]]:
        """Per-step rewards in [0, 1] for each candidate solution (a list of steps)."""
        return self.score_batch([question], [solutions])[0]

    def score_batch(self, questions, solutions, **kwargs) -> list[list[list[float]]]:
        """Score the candidates of several questions, batched together across questions."""
        self._load()
        flat, owners = [], []
        for qi, (q, sols) in enumerate(zip(questions, solutions)):
            for steps in _check_solutions(sols):
                flat.append((q, steps))
                owners.append(qi)
        rewards, counts = self._score_flat(flat)
        out: list[list[list[float]]] = [[] for _ in questions]
        per_question = [0] * len(out)
        for qi, r, c in zip(owners, rewards, counts):
            out[qi].append(r)
            per_question[qi] += c
        self.last_batch_reward_tokens = per_question
        return out


class QwenMathPRM(_ProcessRewardModel):
    """Process reward model run with ``transformers`` (Qwen2.5-Math-PRM by default).

    The input follows the model card: the PRM system prompt, the question, and the steps each
    followed by ``<extra_0>``; a step's reward is the softmax over the two logits at its
    ``<extra_0>`` token, index 1. Any token-classification model with two labels and the step
    token in its tokenizer works the same way.

    Parameters
    ----------
    model : str or path-like, default="Qwen/Qwen2.5-Math-PRM-7B"
        Hub name or local folder. Loaded lazily, on the first call to :meth:`score`.
    device : str, default="auto"
        ``"auto"`` picks CUDA when available, else CPU.
    dtype : str, torch.dtype or None, default=None
        ``None``: bfloat16 on CUDA, float32 on CPU.
    batch_size : int, default=8
        Candidates per forward pass (padded on the right, with an attention mask).
    max_length : int or None, default=None
        Truncate inputs to this many tokens; steps whose step token is cut off score 0.0.
        ``None`` truncates nothing.
    system_prompt : str or None, default=PRM_SYSTEM_PROMPT
    step_token : str, default="<extra_0>"
    trust_remote_code : bool, default=True
        Needed by the Qwen PRM's custom model class.

    Attributes
    ----------
    last_reward_tokens : int
        Tokens read (without padding) by the latest :meth:`score` / :meth:`score_batch`.
    last_batch_reward_tokens : list of int
        Tokens read per question by the latest :meth:`score_batch`.
    reward_tokens : int
        Running total of tokens read.
    """

    def __init__(
        self,
        model="Qwen/Qwen2.5-Math-PRM-7B",
        device="auto",
        dtype=None,
        batch_size=8,
        max_length=None,
        system_prompt=PRM_SYSTEM_PROMPT,
        step_token=PRM_STEP_TOKEN,
        trust_remote_code=True,
    ):
        super().__init__()
        self.model = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_length = max_length
        self.system_prompt = system_prompt
        self.step_token = step_token
        self.trust_remote_code = trust_remote_code
        self._model = None
        self._tokenizer = None

    def _load(self):
        if self._model is not None:
            return
        import torch
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.dtype
        if dtype is None:
            dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        name = str(self.model)
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=self.trust_remote_code)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
        tok.padding_side = "right"
        config = AutoConfig.from_pretrained(name, trust_remote_code=self.trust_remote_code)
        archs = list(getattr(config, "architectures", None) or [])
        if any(a.endswith("ForTokenClassification") for a in archs):
            loader = AutoModelForTokenClassification
        else:  # Qwen2ForProcessRewardModel and other remote-code PRMs
            loader = AutoModel
        model = loader.from_pretrained(
            name, dtype=dtype, trust_remote_code=self.trust_remote_code
        )
        self._device = torch.device(device)
        self._model = model.to(self._device).eval()
        self._tokenizer = tok
        self._step_id = _step_token_id(tok, self.step_token)

    def _score_flat(self, items) -> list[list[float]]:
        import torch

        texts = [self.format(q, steps) for q, steps in items]
        tok = self._tokenizer
        enc_kwargs = dict(add_special_tokens=False)
        if self.max_length is not None:
            enc_kwargs.update(truncation=True, max_length=int(self.max_length))
        ids = [tok(t, **enc_kwargs)["input_ids"] for t in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # less padding
        rewards: list[list[float] | None] = [None] * len(ids)
        counts = [len(x) for x in ids]
        n_tokens = 0
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = tok.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            input_ids = batch["input_ids"].to(self._device)
            mask = batch["attention_mask"].to(self._device)
            n_tokens += int(mask.sum())
            with torch.inference_mode():
                out = self._model(input_ids=input_ids, attention_mask=mask)
            logits = out.logits if hasattr(out, "logits") else out[0]
            probs = torch.softmax(logits.float(), dim=-1)[..., 1]
            is_step = (input_ids == self._step_id) & mask.bool()
            for row, i in enumerate(chunk):
                got = probs[row][is_step[row]].cpu().tolist()
                rewards[i] = _fit_to_steps(got, len(items[i][1]))
        self._count(n_tokens)
        return rewards, counts  # type: ignore[return-value]

    def close(self) -> None:
        self._model = None
        self._tokenizer = None


# -- vLLM PRM ------------------------------------------------------------------------------------
class VLLMRewardModel(_ProcessRewardModel):
    """Process reward model served by an offline vLLM engine as a pooling model.

    The engine runs with ``runner="pooling"`` and is asked for token classification
    (``LLM.encode(..., pooling_task="token_classify")``). For ``Qwen2ForProcessRewardModel``
    vLLM pools only the step-token positions (its ``step_tag_id`` is ``<extra_0>``); for other
    token-classification models the step positions are picked here. The input text is the one
    :class:`QwenMathPRM` builds (:func:`format_prm_input`), and rewards are the softmax over
    the two logits, index 1.

    Parameters
    ----------
    model : str or path-like, default="Qwen/Qwen2.5-Math-PRM-7B"
    system_prompt : str or None, default=PRM_SYSTEM_PROMPT
    step_token : str, default="<extra_0>"
    **engine_kwargs
        Passed to :class:`vllm.LLM` (e.g. ``gpu_memory_utilization``, ``dtype``,
        ``max_model_len``, ``enforce_eager``).
    """

    def __init__(
        self,
        model="Qwen/Qwen2.5-Math-PRM-7B",
        system_prompt=PRM_SYSTEM_PROMPT,
        step_token=PRM_STEP_TOKEN,
        **engine_kwargs,
    ):
        super().__init__()
        self.model = model
        self.system_prompt = system_prompt
        self.step_token = step_token
        self.engine_kwargs = engine_kwargs
        self._llm = None
        self._tokenizer = None

    def _load(self):
        if self._llm is not None:
            return
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "VLLMRewardModel needs vLLM (`pip install vllm`); or use QwenMathPRM."
            ) from exc
        kwargs = dict(runner="pooling", trust_remote_code=True)
        kwargs.update(self.engine_kwargs)
        self._llm = vllm.LLM(str(self.model), **kwargs)
        self._tokenizer = self._llm.get_tokenizer()
        self._step_id = _step_token_id(self._tokenizer, self.step_token)

    def _score_flat(self, items):
        from vllm import PoolingParams

        if not items:
            self._count(0)
            return [], []
        tok = self._tokenizer
        ids = [
            tok.encode(self.format(q, steps), add_special_tokens=False) for q, steps in items
        ]
        outputs = self._llm.encode(
            [{"prompt_token_ids": p} for p in ids],
            PoolingParams(use_activation=False),
            pooling_task="token_classify",
            use_tqdm=False,
        )
        rewards = []
        for (q, steps), p, res in zip(items, ids, outputs):
            data = np.asarray(res.outputs.data.float().cpu().numpy())
            if data.ndim == 1:
                data = data[None, :]
            n_tags = sum(1 for t in p if t == self._step_id)
            if data.shape[0] == len(p) and data.shape[0] != n_tags:
                # All-token pooling: keep the step-token rows.
                data = data[[i for i, t in enumerate(p) if t == self._step_id]]
            rewards.append(_fit_to_steps(_softmax_index1(data) if len(data) else [], len(steps)))
        counts = [len(p) for p in ids]
        self._count(sum(counts))
        return rewards, counts

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception:  # pragma: no cover
                pass
        del llm
        import gc

        gc.collect()
