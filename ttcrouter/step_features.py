"""The generator's own features of a solution at the end of each step, from one forward pass.

:class:`GeneratorStepFeatures` runs a causal language model (by default the embedded
generator SmolLM2-135M-Instruct) over the text the generator saw when it wrote a solution:
its chat template with the prompt mode's system prompt and the question, the mode's
assistant prefix, then the solution. At the last token of every step it reads

- the hidden state of one layer (``layer``), and
- log-probability statistics of the solution's tokens up to that step (:data:`STAT_NAMES`):
  mean and minimum token log-probability so far, mean log-probability of the step's own
  tokens (``exp`` of it is :class:`~ttcrouter.executors.LogprobScorer`'s step reward),
  solution tokens so far, steps so far.

Attention is causal, so the state at the end of a step is the state of the prefix that ends
there: one pass gives the features of every prefix of a solution. Texts are re-tokenized
(the fast tokenizer's offset mapping places the step ends), so log-probabilities are those of
the canonical tokenization, close to but not always equal to the sampled tokens'.

The weights load on first use (:func:`ttcrouter.embedding.load_pretrained`, the loader of
:class:`~ttcrouter.embedding.EmbeddingTransformer`) and are never pickled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import numpy as np

from .embedding import (load_model_config, load_pretrained, resolve_device, resolve_model_folder,
                        torch_threads)
from .executors.base import (DEFAULT_PROMPTS, DEFAULT_SYSTEM_PROMPT, GenerationRequest,
                             PromptMode, render_prompt)
from .models import embedded_generator_path

__all__ = ["STAT_NAMES", "StepFeatures", "GeneratorStepFeatures", "default_prompt_modes"]

#: Log-probability statistics appended to the hidden state, in this order.
STAT_NAMES = ("mean_logprob", "min_logprob", "step_mean_logprob", "solution_tokens", "steps")


def default_prompt_modes() -> dict:
    """Prompt mode -> :class:`PromptMode` as a default executor and collection ask."""
    return {"cot": PromptMode(DEFAULT_SYSTEM_PROMPT), "direct": DEFAULT_PROMPTS["direct"]}


@dataclass
class StepFeatures:
    """Features of the step ends of several solutions, one row per (solution, step).

    Attributes
    ----------
    hidden : ndarray of shape (n_prefixes, hidden_size), float32
        The chosen layer's hidden state at each step's last token.
    stats : ndarray of shape (n_prefixes, 5), float64
        :data:`STAT_NAMES` at each step.
    row : ndarray of shape (n_prefixes,), int
        The solution (input row) each prefix belongs to; prefixes of a row are consecutive.
    step : ndarray of shape (n_prefixes,), int
        Index of the step the prefix ends with.
    tokens_read : ndarray of shape (n_rows,), int
        Tokens of each row's forward pass (prompt and solution, no padding).
    seconds : ndarray of shape (n_rows,), float
        Each row's share of the forward passes' wall clock (its share of its batch's tokens).
    """

    hidden: np.ndarray
    stats: np.ndarray
    row: np.ndarray
    step: np.ndarray
    tokens_read: np.ndarray
    seconds: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.tokens_read)

    def matrix(self) -> np.ndarray:
        """``[hidden, stats]`` as one float64 matrix, one row per prefix."""
        return np.hstack([self.hidden.astype(np.float64), self.stats])

    def bounds(self) -> np.ndarray:
        """``bounds[i]:bounds[i + 1]`` are the prefixes of row ``i`` (rows are in order)."""
        return np.searchsorted(self.row, np.arange(self.n_rows + 1))

    def subset(self, rows) -> "StepFeatures":
        """The features of ``rows`` (input row indices), renumbered 0..len(rows)-1 in order."""
        rows = np.asarray(rows, dtype=np.int64)
        bounds = self.bounds()
        starts, counts = bounds[rows], bounds[rows + 1] - bounds[rows]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(rows) else counts
        order = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))
        return StepFeatures(self.hidden[order], self.stats[order],
                            np.repeat(np.arange(len(rows)), counts), self.step[order],
                            self.tokens_read[rows], self.seconds[rows])

    @classmethod
    def concat(cls, parts) -> "StepFeatures":
        """The features of several extractions, their rows renumbered in the order given."""
        parts = list(parts)
        if not parts:
            raise ValueError("StepFeatures.concat needs at least one part.")
        offsets = np.cumsum([0] + [p.n_rows for p in parts[:-1]])
        return cls(np.concatenate([p.hidden for p in parts]),
                   np.concatenate([p.stats for p in parts]),
                   np.concatenate([p.row + o for p, o in zip(parts, offsets)]),
                   np.concatenate([p.step for p in parts]),
                   np.concatenate([p.tokens_read for p in parts]),
                   np.concatenate([p.seconds for p in parts]))

    def save(self, path) -> None:
        """Write the features to an ``.npz`` file (:meth:`load` reads it back)."""
        np.savez(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path) -> "StepFeatures":
        """Read features written by :meth:`save`."""
        with np.load(path) as z:
            missing = [f.name for f in fields(cls) if f.name not in z.files]
            if missing:
                raise ValueError(f"{path} is not a StepFeatures file: it lacks {missing}.")
            return cls(**{f.name: z[f.name] for f in fields(cls)})

    def last_step(self) -> np.ndarray:
        """Index (into the prefixes) of each row's last step."""
        last = np.zeros(self.n_rows, dtype=np.int64)
        last[self.row] = np.arange(len(self.row))  # later prefixes of a row overwrite
        return last


class GeneratorStepFeatures:
    """Extract :class:`StepFeatures` with a causal LM (weights loaded lazily, never pickled).

    Parameters
    ----------
    model : str, path or None, default=None
        A local causal-LM folder or cached name; None is the embedded SmolLM2-135M-Instruct.
    layer : int, default=-1
        Hidden state read: index into ``hidden_states`` (0 the embeddings, -1 the last
        layer after the final norm).
    prompts : dict or None, default=None
        Prompt mode -> :class:`~ttcrouter.executors.base.PromptMode` (or a system prompt
        string); None is :func:`default_prompt_modes`, what the collection used.
    batch_size : int, default=16
    max_length : int, default=1024
        Tokens kept per text; a step whose end was cut away takes the last kept token.
    device : str, default="cpu"
    dtype : str or None, default=None
        Model weights' dtype (None: float32).
    n_threads : int or None, default=None
        Torch CPU threads while extracting (restored afterwards).
    show_progress : bool, default=False
    """

    def __init__(self, model=None, layer=-1, prompts=None, batch_size=16, max_length=1024,
                 device="cpu", dtype=None, n_threads=None, show_progress=False):
        self.model = model
        self.layer = layer
        self.prompts = prompts
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads
        self.show_progress = show_progress
        self._tokenizer = self._model = None

    def model_path(self) -> str:
        """The resolved model folder (the embedded generator's is resolved on this machine)."""
        return resolve_model_folder(self.model, embedded_generator_path)

    def hidden_size(self) -> int:
        """The model's hidden size (from its config; no weights load)."""
        config = load_model_config(self.model_path())
        n_layers = int(config.num_hidden_layers)
        if not -(n_layers + 1) <= int(self.layer) <= n_layers:
            raise ValueError(f"layer={self.layer} is out of range: the model has {n_layers} "
                             f"layers, so layer must be in [{-(n_layers + 1)}, {n_layers}].")
        return int(config.hidden_size)

    def prompt_modes(self) -> dict:
        modes = default_prompt_modes()
        for mode, pm in (self.prompts or {}).items():
            modes[mode] = pm if isinstance(pm, PromptMode) else PromptMode(pm)
        return modes

    def _load(self):
        if self._model is None:
            self._tokenizer, self._model = load_pretrained(
                self.model_path(), auto_class="AutoModelForCausalLM", dtype=self.dtype,
                device=resolve_device(self.device), show_progress=bool(self.show_progress))
            if not getattr(self._tokenizer, "is_fast", False):
                raise TypeError(f"{self.model_path()!r} has no fast tokenizer; the step ends "
                                "are placed with a fast tokenizer's offset mapping.")
        return self._tokenizer, self._model

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tokenizer"] = state["_model"] = None
        return state

    # -- extraction ---------------------------------------------------------------------------
    def extract(self, questions, solutions, modes) -> StepFeatures:
        """Features at every step end of every solution.

        Parameters
        ----------
        questions : list of str
        solutions : list of list of str
            Each solution as its steps (their concatenation is the solution text).
        modes : list of str
            Prompt mode of each solution (a key of :meth:`prompt_modes`).

        Returns
        -------
        StepFeatures
        """
        tokenizer, _ = self._load()
        known = self.prompt_modes()
        texts, starts, ends = [], [], []
        for q, steps, mode in zip(questions, solutions, modes):
            if mode not in known:
                raise ValueError(f"Unknown prompt mode {mode!r}; known: {sorted(known)} (pass "
                                 "prompts={mode: PromptMode(...)}).")
            pm = known[mode]
            prompt = render_prompt(tokenizer, pm.system, GenerationRequest(q, prefix=pm.prefix))
            texts.append(prompt + "".join(steps))
            starts.append(len(prompt))
            ends.append(len(prompt) + np.cumsum([len(s) for s in steps]))
        with torch_threads(self.n_threads):
            return self._extract(texts, starts, ends)

    def _extract(self, texts, starts, ends) -> StepFeatures:
        import torch

        tokenizer, model = self._load()
        decoder, head = model.get_decoder(), model.get_output_embeddings()
        n = len(texts)
        per_row: list = [None] * n
        tokens_read = np.zeros(n, dtype=np.int64)
        seconds = np.zeros(n)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="verifier features", unit="batch")
        device = next(model.parameters()).device
        with torch.inference_mode():
            for idx in batches:
                t0 = time.perf_counter()
                enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                max_length=self.max_length, add_special_tokens=False,
                                return_offsets_mapping=True, return_tensors="pt")
                offsets = enc.pop("offset_mapping").numpy()
                enc = enc.to(device)
                out = decoder(**enc, output_hidden_states=True)
                states = out.hidden_states[self.layer].float().cpu().numpy()
                final = out.last_hidden_state
                mask = enc["attention_mask"].cpu().numpy().astype(bool)
                for b, i in enumerate(idx):
                    length = int(mask[b].sum())
                    per_row[i] = self._row(b, length, offsets[b], starts[i], ends[i],
                                           enc["input_ids"][b], final[b], states[b], head)
                    tokens_read[i] = length
                lengths = tokens_read[idx]
                seconds[idx] = (time.perf_counter() - t0) * lengths / max(lengths.sum(), 1)
        hidden = np.concatenate([r[0] for r in per_row]).astype(np.float32)
        stats = np.concatenate([r[1] for r in per_row])
        row = np.concatenate([np.full(len(r[1]), i) for i, r in enumerate(per_row)])
        step = np.concatenate([np.arange(len(r[1])) for r in per_row])
        return StepFeatures(hidden, stats, row.astype(np.int64), step.astype(np.int64),
                            tokens_read, seconds)

    @staticmethod
    def _row(b, length, offsets, start, step_ends, ids, final, states, head):
        """(hidden at step ends, stats) of one text of a batch."""
        import torch

        tok_start = offsets[:length, 0]
        tok_end = offsets[:length, 1]
        # a token straddling the prompt/solution boundary belongs to the solution
        first = int(np.searchsorted(tok_end, start, side="right"))
        first = max(first, 1)  # token 0 has no log-probability
        logprobs = np.zeros(0)
        if first < length:
            logits = head(final[first - 1:length - 1]).float()
            lp = torch.log_softmax(logits, dim=-1)
            logprobs = lp.gather(1, ids[first:length, None]).squeeze(1).cpu().numpy()
        # last token starting before each step's end (the step's delimiter token)
        last_tok = np.searchsorted(tok_start, step_ends, side="left") - 1
        last_tok = np.clip(last_tok, first - 1, length - 1)
        hidden = states[last_tok]
        stats = np.zeros((len(step_ends), len(STAT_NAMES)))
        prev = 0
        for k, t in enumerate(last_tok):
            upto = max(int(t) - first + 1, 0)  # solution tokens up to this step's end
            seen = logprobs[:upto]
            own = logprobs[prev:upto]
            stats[k] = (seen.mean() if seen.size else 0.0, seen.min() if seen.size else 0.0,
                        own.mean() if own.size else 0.0, upto, k + 1)
            prev = max(prev, upto)
        return hidden, stats
