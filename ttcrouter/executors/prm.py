"""Process reward models as step scorers: a PRM run with ``transformers`` or served by vLLM.

- :class:`QwenMathPRM`: ``Qwen/Qwen2.5-Math-PRM-7B`` (or any token-classification model with
  two labels and a step token) run with ``transformers``, as its model card prescribes.
- :class:`VLLMRewardModel`: the same PRM served by vLLM as a pooling (reward) model.

Both build the input with :func:`format_prm_input` and return a
:class:`~ttcrouter.executors.scoring.ScoreResult` per question, with the tokens they read.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..validation import check_int
from .scoring import ScoreResult, StepScorer, check_solutions
from .vllm_backend import shutdown_engine

__all__ = [
    "PRM_SYSTEM_PROMPT",
    "PRM_STEP_TOKEN",
    "QwenMathPRM",
    "VLLMRewardModel",
    "format_prm_input",
]

#: System prompt of Qwen2.5-Math-PRM (from its model card).
PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
#: Token the Qwen PRM reads after every step; its logits there give the step's reward.
PRM_STEP_TOKEN = "<extra_0>"


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
class ProcessRewardModel(StepScorer):
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

    def score(self, question, solutions, **kwargs) -> ScoreResult:
        """Per-step rewards in [0, 1] for each candidate solution (a list of steps)."""
        return self.score_batch([question], [solutions])[0]

    def score_batch(self, questions, solutions, **kwargs) -> list[ScoreResult]:
        """Score the candidates of several questions, batched together across questions.

        Returns
        -------
        list of ScoreResult
            One per question; ``reward_tokens`` counts the tokens of its candidates' inputs.
        """
        self._load()
        flat, owners = [], []
        for qi, (q, sols) in enumerate(zip(questions, solutions)):
            for steps in check_solutions(sols):
                flat.append((q, steps))
                owners.append(qi)
        rewards, counts = self._score_flat(flat)
        out: list[list[list[float]]] = [[] for _ in questions]
        per_question = [0] * len(out)
        for qi, r, c in zip(owners, rewards, counts):
            out[qi].append(r)
            per_question[qi] += c
        return [ScoreResult(r, int(t)) for r, t in zip(out, per_question)]


class QwenMathPRM(ProcessRewardModel):
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

        check_int(self.batch_size, "batch_size", min_val=1)
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

    def _score_flat(self, items) -> tuple[list[list[float]], list[int]]:
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
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = tok.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            input_ids = batch["input_ids"].to(self._device)
            mask = batch["attention_mask"].to(self._device)
            with torch.inference_mode():
                out = self._model(input_ids=input_ids, attention_mask=mask)
            logits = out.logits if hasattr(out, "logits") else out[0]
            probs = torch.softmax(logits.float(), dim=-1)[..., 1]
            is_step = (input_ids == self._step_id) & mask.bool()
            for row, i in enumerate(chunk):
                got = probs[row][is_step[row]].cpu().tolist()
                rewards[i] = _fit_to_steps(got, len(items[i][1]))
        return rewards, counts  # type: ignore[return-value]

    def close(self) -> None:
        self._model = None
        self._tokenizer = None


# -- vLLM PRM ------------------------------------------------------------------------------------
class VLLMRewardModel(ProcessRewardModel):
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
        return rewards, [len(p) for p in ids]

    def close(self) -> None:
        llm, self._llm = self._llm, None
        shutdown_engine(llm)
