"""Generator backend on plain ``transformers`` (``model.generate``): no server, no vLLM.

Slower than vLLM (no paged KV cache, no prefix caching) but runs wherever PyTorch does.
"""

from __future__ import annotations

import copy
from typing import Sequence

from ..models import resolve_model
from .base import (
    DEFAULT_SYSTEM_PROMPT,
    Completion,
    GenerationRequest,
    Generator,
    check_prompt_lengths,
    first_stop,
    prompt_token_ids,
)

__all__ = ["TransformersGenerator"]


class TransformersGenerator(Generator):
    """Generate with a ``transformers`` causal LM, batched with left padding.

    Parameters
    ----------
    model : str, path-like or None, default=None
        Model folder or hub name; ``None`` or ``"embedded"`` means the embedded
        SmolLM2-135M-Instruct (see :func:`ttcrouter.models.resolve_model`).
    device : str, default="auto"
        ``"auto"`` picks ``"cuda"`` when available, else ``"cpu"``.
    dtype : str, torch.dtype or None, default=None
        ``None`` means float32 on CPU and bfloat16 on GPU.
    seed : int, default=0
        Seeds torch's generator once, when the model loads.
    system_prompt : str or None, default=DEFAULT_SYSTEM_PROMPT
        System message put before every query; ``None`` leaves the template's default.
    max_batch_size : int, default=64
        Most sequences (prompts times ``n``) decoded in one ``generate`` call.
    max_model_len : int or None, default=None
        Context length; ``None`` uses the model's ``max_position_embeddings``.
    num_threads : int or None, default=None
        If set, ``torch.set_num_threads(num_threads)`` when the model loads (process-wide).
        On a small, busy CPU one thread can be far faster than several (OpenMP threads
        spin-wait for each other; see ``docs/bench_generators.md``).

    Notes
    -----
    Token counts are honest: a completion's ``tokens`` counts the generated tokens up to and
    including the end-of-sequence token, or the token that completed a stop string (the text is
    cut before the stop string), never the padding after it. ``logprobs`` are log-softmax of the
    raw logits (before temperature and top-p), as vLLM reports them.
    """

    backend = "transformers"

    def __init__(
        self,
        model=None,
        device="auto",
        dtype=None,
        seed=0,
        system_prompt=DEFAULT_SYSTEM_PROMPT,
        max_batch_size=64,
        max_model_len=None,
        num_threads=None,
    ):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.seed = seed
        self.system_prompt = system_prompt
        self.max_batch_size = max_batch_size
        self.max_model_len = max_model_len
        self.num_threads = num_threads
        self._model = None
        self._tokenizer = None

    @property
    def hf_model(self):
        """The loaded ``transformers`` model (loaded on first access)."""
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    def _load(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model(self.model)
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.dtype
        if dtype is None:
            dtype = torch.float32 if str(device).startswith("cpu") else torch.bfloat16
        elif isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        if self.num_threads is not None:
            torch.set_num_threads(int(self.num_threads))
        torch.manual_seed(self.seed)
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        model.eval()
        self._device = device
        self._tokenizer, self._model = tok, model

    def close(self) -> None:
        """Drop the model and free its memory."""
        self._model = self._tokenizer = None
        import gc

        gc.collect()

    def _context_len(self) -> int:
        if self.max_model_len is not None:
            return int(self.max_model_len)
        return int(getattr(self.hf_model.config, "max_position_embeddings", 2048))

    def prompt_token_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Token ids of each request's full prompt (chat template, query, prefix)."""
        return prompt_token_ids(self.tokenizer, self.system_prompt, requests)

    def _generate(self, requests, *, n, temperature, top_p, max_tokens, stop, logprobs):
        """``n`` completions per request, in chunks of at most ``max_batch_size`` sequences;
        a prompt must fit in the context."""
        ids = self.prompt_token_ids(requests)
        ctx = self._context_len()
        check_prompt_lengths(ids, ctx)
        per_call = max(1, int(self.max_batch_size) // n)
        results = []
        for start in range(0, len(ids), per_call):
            chunk = ids[start:start + per_call]
            # keep within the context: a long prompt gets fewer new tokens
            room = min(ctx - len(p) for p in chunk)
            results.extend(
                self._generate_chunk(
                    chunk, n, temperature, top_p, min(max_tokens, room), stop, logprobs
                )
            )
        return results

    def _generate_chunk(self, ids, n_out, temperature, top_p, max_tokens, stop, logprobs):
        import torch

        # greedy samples are identical (and transformers refuses them): decode once, copy
        n = n_out if temperature > 0 else 1

        tok, model = self.tokenizer, self.hf_model
        batch = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        batch = {k: v.to(self._device) for k, v in batch.items()}
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        gen_kwargs = dict(
            max_new_tokens=max_tokens,
            num_return_sequences=n,
            pad_token_id=tok.pad_token_id,
            return_dict_in_generate=True,
            output_logits=bool(logprobs),
        )
        if temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            gen_kwargs.update(stop_strings=list(stop), tokenizer=tok)
        with torch.no_grad():
            out = model.generate(**batch, **gen_kwargs)
        width = batch["input_ids"].shape[1]
        new = out.sequences[:, width:].tolist()
        lp_rows = None
        if logprobs:
            logits = torch.stack(out.logits, dim=1).float()  # (seqs, steps, vocab)
            lps = torch.log_softmax(logits, dim=-1)
            chosen = out.sequences[:, width:width + lps.shape[1]]
            lp_rows = lps.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).tolist()
        results = []
        for i, p in enumerate(ids):
            comps = []
            for j in range(n):
                row = i * n + j
                comps.append(
                    self._completion(
                        new[row], len(p), stop, eos_ids, max_tokens,
                        lp_rows[row] if lp_rows is not None else None,
                    )
                )
            if n != n_out:
                comps = [copy.copy(comps[0]) for _ in range(n_out)]
            results.append(comps)
        return results

    def _completion(self, gen_ids, prompt_len, stop, eos_ids, max_tokens, lp_row):
        tok = self.tokenizer
        # cut at the first end-of-sequence token (included in the count, not in the text)
        n_tok, finish = len(gen_ids), "length"
        for k, t in enumerate(gen_ids):
            if t in eos_ids:
                n_tok, finish = k + 1, "stop"
                break
        body = [t for t in gen_ids[:n_tok] if t not in eos_ids]
        text = tok.decode(body, skip_special_tokens=True)
        stop_reason = None
        pos, which = first_stop(text, stop)
        if pos != -1:
            # the fewest tokens whose text already holds the stop string
            k = _first_prefix_with(tok, body, which)
            n_tok, finish, stop_reason, text = k, "stop", which, text[:pos]
        elif finish == "length" and n_tok < max_tokens:  # pragma: no cover - defensive
            finish = "stop"
        lps = None if lp_row is None else [float(x) for x in lp_row[:n_tok]]
        return Completion(
            text=text,
            tokens=n_tok,
            prompt_tokens=prompt_len,
            finish_reason=finish,
            logprobs=lps,
            stop_reason=stop_reason,
        )


def _first_prefix_with(tok, ids, s):
    """Smallest ``k`` such that ``decode(ids[:k])`` contains ``s`` (binary search)."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if s in tok.decode(ids[:mid], skip_special_tokens=True):
            hi = mid
        else:
            lo = mid + 1
    return lo
