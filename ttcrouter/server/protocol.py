"""The OpenAI wire format: parse and check request bodies, build responses and stream chunks.

A request is an ordinary OpenAI chat or text completion body. ttcrouter reads, beyond the
standard fields, an optional ``ttc`` object::

    {"model": "ttcrouter", "messages": [...],
     "ttc": {"lambda_tokens": 0.001, "lambda_latency": 0.05,
             "max_latency_s": 5, "max_tokens": 200, "strategy": "majority_vote@n=4",
             "timeout_s": 30}}

and a model preset: ``"ttcrouter"`` (the router decides) or ``"ttcrouter:<strategy>"`` (that
strategy is run). Everything is checked here, so that a bad request is answered with a 400
that names the field, before any routing or generation.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field

from .errors import APIError, bad_request

__all__ = [
    "MODEL_NAME",
    "TTC_FIELDS",
    "ServeRequest",
    "parse_request",
    "usage_of",
    "chat_response",
    "completion_response",
    "stream_chunks",
]

#: The model name clients send; ``MODEL_NAME + ":" + strategy`` forces a strategy.
MODEL_NAME = "ttcrouter"

#: Keys accepted inside the ``ttc`` object.
TTC_FIELDS = ("lambda_tokens", "lambda_latency", "max_latency_s", "max_tokens", "strategy",
              "timeout_s")


@dataclass
class ServeRequest:
    """One checked request.

    Attributes
    ----------
    kind : {"chat", "completion"}
    model : str
        The model name as sent.
    query : str
        The question the strategy is run on (the last user message, or the prompt).
    strategy : str or None
        The forced strategy (``ttc.strategy`` or the model preset), as sent.
    lambda_tokens, lambda_latency : float or None
        Per-request prices; None keeps the router file's.
    max_latency_s, max_total_tokens : float or None
        Hard budgets on the predicted latency and predicted generated tokens.
    timeout_s : float or None
        Deadline of the whole request (504 when passed); None keeps the server's.
    stream : bool
    temperature, top_p : float or None
        Sampling parameters; None keeps the server's (those the router was fitted on).
    max_tokens : int or None
        Token limit of one candidate solution (OpenAI's ``max_tokens``).
    ignored : list of str
        Request fields that the server does not apply (reported in the ``ttc`` block).
    """

    kind: str
    model: str
    query: str
    strategy: str | None = None
    lambda_tokens: float | None = None
    lambda_latency: float | None = None
    max_latency_s: float | None = None
    max_total_tokens: float | None = None
    timeout_s: float | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    ignored: list = field(default_factory=list)


def _number(value, param, *, low=0.0, low_open=False, high=None, integer=False):
    """A finite number within range, or a 400 naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request(f"{param} must be a number, got {json.dumps(value)}.", param,
                          "invalid_type")
    if not math.isfinite(value):
        raise bad_request(f"{param} must be finite, got {value}.", param, "out_of_range")
    if integer and float(value) != int(value):
        raise bad_request(f"{param} must be a whole number, got {value}.", param,
                          "invalid_type")
    bad_low = value <= low if low_open else value < low
    if bad_low or (high is not None and value > high):
        rng = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high else "")
        raise bad_request(f"{param} must be {rng}, got {value}.", param, "out_of_range")
    return int(value) if integer else float(value)


def _text_of(content, param) -> str:
    """Text of a message content: a string or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                raise bad_request(f"{param}: only text content parts are supported.", param,
                                  "unsupported_content")
            parts.append(part["text"])
        return "\n".join(parts)
    raise bad_request(f"{param} must be a string or a list of text parts.", param,
                      "invalid_type")


def _query_of_messages(messages, ignored) -> str:
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of {role, content} objects.",
                          "messages", "invalid_type")
    query = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad_request(f"messages[{i}] must be an object with a role and a content.",
                              f"messages[{i}]", "invalid_type")
        if m["role"] == "user":
            query = _text_of(m.get("content"), f"messages[{i}].content")
        elif m["role"] in ("system", "developer"):
            ignored.append(f"messages[{i}] ({m['role']}): the strategies run with the "
                           "server's system prompt")
    if query is None:
        raise bad_request("messages holds no user message: nothing to answer.", "messages",
                          "no_user_message")
    if sum(1 for m in messages if m.get("role") == "user") > 1:
        ignored.append("earlier user turns: the last user message is the question")
    return query


def parse_request(raw: bytes, kind: str, *, max_prompt_chars: int,
                  max_tokens_limit: int) -> ServeRequest:
    """Check an OpenAI request body and return the request it describes.

    Parameters
    ----------
    raw : bytes
        The HTTP body.
    kind : {"chat", "completion"}
    max_prompt_chars : int
        Longest question accepted (characters).
    max_tokens_limit : int
        Largest ``max_tokens`` (per candidate) accepted.

    Raises
    ------
    APIError
        400 for malformed JSON or any field out of range; 404 for an unknown model.
    """
    try:
        body = json.loads(raw or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.", None,
                          "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", None, "invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request(f"model is required: send {MODEL_NAME!r} or "
                          f"'{MODEL_NAME}:<strategy>'.", "model", "missing_model")
    preset = None
    if model != MODEL_NAME:
        if not model.startswith(MODEL_NAME + ":"):
            raise APIError(404, f"The model {model!r} does not exist here: send "
                                f"{MODEL_NAME!r} (routed) or '{MODEL_NAME}:<strategy>' (see "
                                "GET /v1/models).", param="model", code="model_not_found")
        preset = model.split(":", 1)[1].strip() or None
    ignored: list = []
    if kind == "chat":
        query = _query_of_messages(body.get("messages"), ignored)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise bad_request("prompt must be a string (one prompt per request).", "prompt",
                              "invalid_type")
        query = prompt
    if not query.strip():
        raise bad_request("The question is empty.", "messages" if kind == "chat" else "prompt",
                          "empty_prompt")
    if len(query) > max_prompt_chars:
        raise bad_request(f"The question has {len(query)} characters; this server accepts at "
                          f"most {max_prompt_chars}.",
                          "messages" if kind == "chat" else "prompt", "prompt_too_long")
    req = ServeRequest(kind=kind, model=model, query=query, strategy=preset, ignored=ignored)
    n = body.get("n")
    if n is not None and n != 1:
        raise bad_request("n must be 1: the strategy decides how many samples to draw.", "n",
                          "unsupported_value")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream must be true or false.", "stream", "invalid_type")
    req.stream = stream
    if body.get("temperature") is not None:
        req.temperature = _number(body["temperature"], "temperature", high=2.0)
    if body.get("top_p") is not None:
        req.top_p = _number(body["top_p"], "top_p", low=0.0, low_open=True, high=1.0)
    limit_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None \
        else "max_tokens"
    if body.get(limit_key) is not None:
        req.max_tokens = _number(body[limit_key], limit_key, low=1, high=max_tokens_limit,
                                 integer=True)
    for key in ("tools", "functions", "logprobs", "response_format"):
        if body.get(key):
            ignored.append(f"{key}: not supported, ignored")
    _parse_ttc(body.get("ttc"), req)
    return req


def _parse_ttc(ttc, req: ServeRequest) -> None:
    if ttc is None:
        return
    if not isinstance(ttc, dict):
        raise bad_request("ttc must be an object with any of " + ", ".join(TTC_FIELDS) + ".",
                          "ttc", "invalid_type")
    unknown = sorted(set(ttc) - set(TTC_FIELDS))
    if unknown:
        raise bad_request(f"Unknown ttc field(s) {unknown}; accepted: {', '.join(TTC_FIELDS)}.",
                          f"ttc.{unknown[0]}", "unknown_field")
    for key in ("lambda_tokens", "lambda_latency"):
        if ttc.get(key) is not None:
            setattr(req, key, _number(ttc[key], f"ttc.{key}", low=0.0))
    if ttc.get("max_latency_s") is not None:
        req.max_latency_s = _number(ttc["max_latency_s"], "ttc.max_latency_s", low_open=True)
    if ttc.get("max_tokens") is not None:
        req.max_total_tokens = _number(ttc["max_tokens"], "ttc.max_tokens", low_open=True)
    if ttc.get("timeout_s") is not None:
        req.timeout_s = _number(ttc["timeout_s"], "ttc.timeout_s", low_open=True)
    strategy = ttc.get("strategy")
    if strategy is not None:
        if not isinstance(strategy, str) or not strategy.strip():
            raise bad_request("ttc.strategy must be a strategy name such as "
                              "'majority_vote@n=4'.", "ttc.strategy", "invalid_type")
        if req.strategy is not None and strategy.strip() != req.strategy:
            raise bad_request(f"The model preset forces {req.strategy!r} and ttc.strategy "
                              f"{strategy!r}: give one.", "ttc.strategy", "conflict")
        req.strategy = strategy.strip()


# ---------------------------------------------------------------------------------------
# responses
# ---------------------------------------------------------------------------------------

def _ids(kind):
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex[:24]}", int(time.time())


def _finish_reason(result) -> str:
    cands = getattr(result, "candidates", None) or []
    chosen = next((c for c in cands if c.text == result.text), None)
    return "length" if chosen is not None and chosen.finish_reason == "length" else "stop"


def usage_of(result) -> dict:
    """``usage``: every generated token (all samples, every beam), reward tokens apart."""
    completion = int(result.tokens)
    prompt = int(result.prompt_tokens)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "reward_tokens": int(result.reward_tokens)}


def chat_response(model: str, result, ttc: dict) -> dict:
    """A ``chat.completion`` object whose message is the chosen candidate's text."""
    rid, created = _ids("chat")
    return {
        "id": rid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "logprobs": None, "finish_reason": _finish_reason(result)}],
        "usage": usage_of(result), "ttc": ttc,
    }


def completion_response(model: str, result, ttc: dict) -> dict:
    """A ``text_completion`` object whose text is the chosen candidate's text."""
    rid, created = _ids("completion")
    return {
        "id": rid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": result.text, "logprobs": None,
                     "finish_reason": _finish_reason(result)}],
        "usage": usage_of(result), "ttc": ttc,
    }


def stream_chunks(kind: str, model: str, result, ttc: dict) -> list[str]:
    """Server-sent events of a finished answer: the text in one chunk, then a last chunk
    with the finish reason, ``usage`` and the ``ttc`` block, then ``[DONE]``."""
    rid, created = _ids(kind)
    reason = _finish_reason(result)
    if kind == "chat":
        obj = "chat.completion.chunk"
        first = {"index": 0, "delta": {"role": "assistant", "content": result.text},
                 "logprobs": None, "finish_reason": None}
        last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
    else:
        obj = "text_completion"
        first = {"index": 0, "text": result.text, "logprobs": None, "finish_reason": None}
        last = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
    head = {"id": rid, "object": obj, "created": created, "model": model}
    events = [dict(head, choices=[first]),
              dict(head, choices=[last], usage=usage_of(result), ttc=ttc)]
    return [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events] + \
        ["data: [DONE]\n\n"]
