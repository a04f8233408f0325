"""Tests of ``ttcrouter serve`` (ttcrouter.server).

Fast tests run the real app (real router, real StrategyExecutor) over a scripted generator,
through FastAPI's TestClient or a real uvicorn server on 127.0.0.1 driven by the official
``openai`` client. Slow tests (marked ``slow`` and ``vllm``) start ``ttcrouter serve`` on the
embedded model, and two real upstream vLLM servers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from fastapi.testclient import TestClient

from server_helpers import (SERVER_STRATEGIES, ScriptedGenerator, fake_upstream_app, free_port,
                            serve_in_thread, small_router)
from ttcrouter.executors import StrategyExecutor
from ttcrouter.server import MicroBatcher, ServerConfig, UpstreamPool, create_app
from ttcrouter.server.context import UpstreamUnavailable

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def router():
    return small_router()


def make_client(router, generator="scripted", **config):
    """TestClient of the app; ``generator=None`` uses the configured backend."""
    if generator == "scripted":
        generator = ScriptedGenerator()
    config.setdefault("route_threads", None)  # leave torch's threads alone in the test process
    app = create_app(ServerConfig(**config), router=router, generator=generator)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(router):
    with make_client(router) as c:
        yield c


def ask(client, question="What is 7 + 8?", **body):
    payload = {"model": "ttcrouter", "messages": [{"role": "user", "content": question}]}
    payload.update(body)
    return client.post(CHAT, json=payload)


def assert_error(resp, status, code=None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


# ---------------------------------------------------------------------------------------
# answers
# ---------------------------------------------------------------------------------------

def test_chat_answer_usage_and_ttc(client, router):
    resp = ask(client)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion"
    msg = body["choices"][0]["message"]
    assert msg["role"] == "assistant" and "Answer:" in msg["content"]
    ttc = body["ttc"]
    assert ttc["strategy"] in SERVER_STRATEGIES and not ttc["forced"]
    assert 0 <= ttc["predicted_accuracy"] <= 1
    for key in ("predicted_tokens", "predicted_latency_s", "measured_tokens",
                "measured_latency_s", "route_s", "votes", "lambda_tokens"):
        assert key in ttc
    usage = body["usage"]
    assert usage["completion_tokens"] == ttc["measured_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["reward_tokens"] == 0  # the log-probability scorer reads nothing
    # the router's own choice at its own lambdas
    assert ttc["strategy"] == router.predict(["What is 7 + 8?"])[0]


@pytest.mark.parametrize("strategy", SERVER_STRATEGIES)
def test_forced_strategy_matches_a_direct_execution(client, strategy):
    q = "What is 7 + 8?"
    resp = ask(client, q, model=f"ttcrouter:{strategy}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    direct = StrategyExecutor(ScriptedGenerator()).execute(strategy, q)
    assert body["ttc"]["strategy"] == strategy and body["ttc"]["forced"]
    assert body["choices"][0]["message"]["content"] == direct.text
    assert body["ttc"]["answer"] == direct.answer == "15"
    assert body["usage"]["completion_tokens"] == direct.tokens
    assert body["usage"]["prompt_tokens"] == direct.prompt_tokens
    n = int(strategy.split("n=")[1].split(",")[0])
    if not strategy.startswith("beam"):
        assert sum(body["ttc"]["votes"].values()) == n == body["ttc"]["candidates"]


def test_ttc_strategy_field_and_lambdas(client, router):
    resp = ask(client, ttc={"strategy": "best_of_n@n=4"})
    assert resp.json()["ttc"]["strategy"] == "best_of_n@n=4"
    # a huge price on tokens: the strategy with the fewest predicted tokens
    resp = ask(client, ttc={"lambda_tokens": 10.0})
    ttc = resp.json()["ttc"]
    T, _ = router.steps[-1][1].predict_costs(router.steps[0][1].transform(["What is 7 + 8?"]))
    assert ttc["lambda_tokens"] == 10.0
    assert ttc["predicted_tokens"] == pytest.approx(T.min(), abs=0.01)


def test_hard_budgets(client):
    free = ask(client, ttc={"lambda_tokens": 0, "lambda_latency": 0}).json()["ttc"]
    cap = free["predicted_tokens"] - 1
    capped = ask(client, ttc={"lambda_tokens": 0, "max_tokens": cap}).json()["ttc"]
    assert capped["predicted_tokens"] <= cap and capped["strategy"] != free["strategy"]
    lat = ask(client, ttc={"max_latency_s": 1e-6})
    err = assert_error(lat, 400, "budget_unmeetable")
    assert "lowest predicted latency" in err["message"]


def test_completions_endpoint(client):
    resp = client.post("/v1/completions", json={"model": "ttcrouter:majority_vote@n=4",
                                                "prompt": "What is 7 + 8?"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "text_completion" and "Answer: 15" in body["choices"][0]["text"]
    assert body["ttc"]["votes"] == {"15": 3, "14": 1}


def test_stream_sends_the_answer_then_ttc_then_done(client):
    with client.stream("POST", CHAT, json={
            "model": "ttcrouter:majority_vote@n=4", "stream": True,
            "messages": [{"role": "user", "content": "What is 7 + 8?"}]}) as resp:
        assert resp.status_code == 200
        lines = [ln for ln in resp.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[len("data: "):]) for ln in lines[:-1]]
    assert len(chunks) == 2
    assert "Answer: 15" in chunks[0]["choices"][0]["delta"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["ttc"]["strategy"] == "majority_vote@n=4"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_completions_stream_and_ignored_fields(client):
    with client.stream("POST", "/v1/completions", json={
            "model": "ttcrouter:majority_vote@n=1", "prompt": ["What is 7 + 8?"],
            "stream": True}) as resp:
        lines = [ln for ln in resp.iter_lines() if ln]
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert lines[-1] == "data: [DONE]" and chunks[0]["object"] == "text_completion"
    assert "Answer: 15" in chunks[0]["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "ttc" in chunks[-1]
    resp = ask(client, messages=[{"role": "system", "content": "Be terse."},
                                 {"role": "user", "content": [{"type": "text",
                                                               "text": "What is 7 + 8?"}]}],
               tools=[{"type": "function", "function": {"name": "f"}}])
    ignored = resp.json()["ttc"]["ignored"]
    assert any("system" in x for x in ignored) and any("tools" in x for x in ignored)


def test_models_health_metrics(client):
    models = client.get("/v1/models").json()
    ids = [m["id"] for m in models["data"]]
    assert ids[0] == "ttcrouter" and f"ttcrouter:{SERVER_STRATEGIES[1]}" in ids
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ask(client)
    text = client.get("/metrics").text
    for name in ("ttcrouter_requests_total", "ttcrouter_strategy_requests_total",
                 "ttcrouter_tokens_total", "ttcrouter_request_latency_seconds_bucket",
                 "ttcrouter_route_latency_seconds", "ttcrouter_in_flight"):
        assert name in text
    assert 'ttcrouter_tokens_total{kind="completion"}' in text


# ---------------------------------------------------------------------------------------
# errors: each answered in OpenAI's shape, and the server keeps serving
# ---------------------------------------------------------------------------------------

BAD_BODIES = [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "missing_model"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404,
     "model_not_found"),
    ({"model": "ttcrouter:magic@n=3", "messages": [{"role": "user", "content": "hi"}]}, 400,
     "unknown_strategy"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "hi"}],
      "ttc": {"strategy": "majority_vote@n=64"}}, 400, "unknown_strategy"),
    ({"model": "ttcrouter", "messages": []}, 400, "invalid_type"),
    ({"model": "ttcrouter", "messages": [{"role": "system", "content": "x"}]}, 400,
     "no_user_message"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "   "}]}, 400,
     "empty_prompt"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "x" * 9000}]}, 400,
     "prompt_too_long"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "hi"}],
      "ttc": {"lambda_tokens": -1}}, 400, "out_of_range"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "hi"}],
      "ttc": {"max_latency_s": 0}}, 400, "out_of_range"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "hi"}],
      "ttc": {"max_tokens": "many"}}, 400, "invalid_type"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "hi"}],
      "ttc": {"budget": 3}}, 400, "unknown_field"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "hi"}],
      "max_tokens": 10 ** 6}, 400, "out_of_range"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "hi"}],
      "temperature": 9}, 400, "out_of_range"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "hi"}], "n": 3}, 400,
     "unsupported_value"),
    ({"model": "ttcrouter", "messages": [{"role": "user", "content": "TOO LONG"}]}, 400,
     "context_length_exceeded"),
]


@pytest.mark.parametrize("body,status,code", BAD_BODIES)
def test_bad_requests_are_answered_and_the_server_goes_on(client, body, status, code):
    if isinstance(body, bytes):
        resp = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    else:
        resp = client.post(CHAT, json=body)
    assert_error(resp, status, code)
    assert ask(client).status_code == 200


def test_unknown_route_and_method(client):
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get(CHAT), 405)


def test_deadline_is_a_504_and_stops_further_calls(router):
    gen = ScriptedGenerator(delay=0.4)
    with make_client(router, gen) as c:
        resp = ask(c, model="ttcrouter:beam_search@n=4,w=2", ttc={"timeout_s": 0.1})
        assert_error(resp, 504, "deadline_exceeded")
        time.sleep(1.0)
        assert gen.calls <= 1  # the beam search stopped before its second step
        gen.delay = 0
        assert ask(c).status_code == 200


def test_client_gone_stops_the_work(router):
    import httpx

    gen = ScriptedGenerator(delay=1.0)
    app = create_app(ServerConfig(route_threads=None, disconnect_poll_s=0.05), router=router,
                     generator=gen)
    with serve_in_thread(app) as (_, url):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/chat/completions", timeout=0.2, json={
                "model": "ttcrouter:beam_search@n=4,w=2",
                "messages": [{"role": "user", "content": "What is 7 + 8?"}]})
        time.sleep(2.2)
        assert gen.calls <= 1  # the second beam-search step never ran
        assert app.state.ttc.in_flight == 0
        assert 'code="client_disconnected"' in httpx.get(url[:-3] + "/metrics").text


def test_api_key(router):
    with make_client(router, api_key="sekret") as c:
        assert_error(ask(c), 401, "invalid_api_key")
        bad = c.post(CHAT, headers={"Authorization": "Bearer wrong"},
                     json={"model": "ttcrouter", "messages": [{"role": "user", "content": "q"}]})
        assert_error(bad, 401)
        odd = c.post(CHAT, headers={"Authorization": "Bearer s\u00e9kret".encode()},
                     json={"model": "ttcrouter", "messages": [{"role": "user", "content": "q"}]})
        assert_error(odd, 401)
        good = c.post(CHAT, headers={"Authorization": "Bearer sekret"},
                      json={"model": "ttcrouter", "messages": [{"role": "user",
                                                                "content": "What is 2+2?"}]})
        assert good.status_code == 200
        assert c.get("/health").status_code == 200  # health and metrics stay open


def test_unreachable_upstreams_are_a_503(router):
    # a real OpenAIGenerator on a port where nothing listens: connection refused
    pool = UpstreamPool([f"http://127.0.0.1:{free_port()}/v1"], model="m", cooldown_s=30)
    with make_client(router, pool) as c:
        err = assert_error(ask(c), 503, "upstream_unavailable")
        assert "127.0.0.1" in err["message"]
        assert_error(ask(c), 503)  # still answering
        assert pool.status()[0]["failures"] >= 1
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "no_upstream"


# ---------------------------------------------------------------------------------------
# concurrency and batching, through a real server and the official client
# ---------------------------------------------------------------------------------------

def test_openai_client_concurrent_requests_each_with_its_strategy(router):
    openai = pytest.importorskip("openai")
    gen = ScriptedGenerator(delay=0.05)
    app = create_app(ServerConfig(batch_window_ms=100, api_key="k", route_threads=None),
                     router=router,
                     generator=gen)
    with serve_in_thread(app) as (_, url):
        cli = openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=30)
        wanted = [SERVER_STRATEGIES[i % len(SERVER_STRATEGIES)] for i in range(8)]
        results = [None] * 8

        def one(i):
            results[i] = cli.chat.completions.create(
                model="ttcrouter", messages=[{"role": "user", "content": f"What is {i} + 8?"}],
                extra_body={"ttc": {"strategy": wanted[i]}})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for want, r in zip(wanted, results):
            assert r is not None and r.choices[0].message.content
            extra = r.model_extra
            assert extra["ttc"]["strategy"] == want
            assert r.usage.completion_tokens == extra["ttc"]["measured_tokens"]
        assert max(r.model_extra["ttc"]["route_batch_size"] for r in results) > 1
        stats = app.state.ttc.router.batcher.stats
        assert stats.batches < 8  # several requests shared one embedding call
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="nope", max_retries=0).chat.completions.create(
                model="ttcrouter", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError):
            cli.chat.completions.create(model="ttcrouter:nope@n=1",
                                        messages=[{"role": "user", "content": "hi"}])
        stream = cli.chat.completions.create(
            model="ttcrouter:majority_vote@n=4", stream=True,
            messages=[{"role": "user", "content": "What is 7 + 8?"}])
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].model_extra["ttc"]["strategy"] == "majority_vote@n=4"


def test_graceful_drain_finishes_in_flight_and_refuses_new(router):
    import httpx

    gen = ScriptedGenerator(delay=1.0)
    app = create_app(ServerConfig(route_threads=None), router=router, generator=gen)
    with serve_in_thread(app) as (server, url):
        got = {}

        def slow():
            got["resp"] = httpx.post(url + "/chat/completions", timeout=30, json={
                "model": "ttcrouter:majority_vote@n=1",
                "messages": [{"role": "user", "content": "What is 7 + 8?"}]})

        t = threading.Thread(target=slow)
        t.start()
        t0 = time.monotonic()
        while app.state.ttc.in_flight == 0 and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        import signal

        server.handle_exit(signal.SIGTERM, None)
        assert app.state.ttc.draining
        t.join(30)
        assert got["resp"].status_code == 200, got["resp"].text
        with pytest.raises(httpx.TransportError):
            for _ in range(50):  # bounded: the listener closes within moments
                r = httpx.post(url + "/chat/completions", timeout=5, json={
                    "model": "ttcrouter", "messages": [{"role": "user", "content": "q"}]})
                assert r.status_code == 503
                time.sleep(0.1)


def test_upstream_fleet_survives_an_upstream_stopped_mid_run(router):
    """Two real HTTP upstreams (small OpenAI-compatible stand-ins); one stops mid-run."""
    up_a, up_b = fake_upstream_app(delay=0.1), fake_upstream_app(delay=0.1)
    with serve_in_thread(up_a) as (server_a, url_a), serve_in_thread(up_b) as (_, url_b):
        with make_client(router, None, upstreams=[url_a, url_b], cooldown_s=60) as c:
            codes, lock = [], threading.Lock()

            def worker(k):
                for i in range(4):
                    r = ask(c, f"What is {k} + {i}?", model="ttcrouter:majority_vote@n=4")
                    with lock:
                        codes.append(r.status_code)

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
            for t in threads:
                t.start()
            t0 = time.monotonic()
            while len(codes) < 3 and time.monotonic() - t0 < 30:
                time.sleep(0.01)
            server_a.should_exit = True  # upstream a goes away in the middle of the run
            for t in threads:
                t.join(60)
            assert codes == [200] * 12
            assert up_a.state.calls >= 1 and up_b.state.calls > up_a.state.calls
            health = c.get("/health").json()
            state = {u["url"]: u for u in health["upstreams"]}
            assert not state[url_a]["healthy"] and state[url_a]["failures"] >= 1
            assert state[url_b]["healthy"]
            assert 'ttcrouter_upstream_up{url="%s"} 0.0' % url_a in c.get("/metrics").text


def test_cli_serve_runs_and_drains_on_sigterm(router, tmp_path):
    """`ttcrouter serve` as users start it (a subprocess), on a stand-in upstream."""
    import os
    import signal
    import subprocess
    import sys

    import httpx
    import openai

    from server_helpers import stop_process, wait_healthy
    from ttcrouter import save_router
    from ttcrouter.cli import main

    assert main(["serve", "--router", str(tmp_path / "missing.joblib")]) == 2
    with pytest.raises(SystemExit) as bad_value:  # argparse: usage and the error, exit 2
        main(["serve", "--router", "r.joblib", "--max-concurrency", "0"])
    assert bad_value.value.code == 2
    (tmp_path / "junk.joblib").write_bytes(b"not a router")
    assert main(["serve", "--router", str(tmp_path / "junk.joblib")]) == 2
    path = save_router(router, tmp_path / "router.joblib")
    with serve_in_thread(fake_upstream_app()) as (_, up_url):
        port = free_port()
        here = os.path.dirname(__file__)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [os.path.dirname(here), here, os.environ.get("PYTHONPATH", "")]))
        log = tmp_path / "serve.log"
        out = tmp_path / "serve.out"
        proc = subprocess.Popen(
            [sys.executable, "-m", "ttcrouter.cli", "serve", "--router", str(path), "--port",
             str(port), "--upstream", up_url, "--api-key", "k"],
            stdout=open(out, "w"), stderr=open(log, "w"), env=env)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=120)
            cli = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k",
                                max_retries=0, timeout=60)
            r = cli.chat.completions.create(model="ttcrouter",
                                            messages=[{"role": "user", "content": "7 + 8?"}])
            assert r.model_extra["ttc"]["answer"] == "15"
            assert r.model_extra["ttc"]["backend"] == "upstream"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) in (0, 143)  # 143: the clean SIGTERM exit of every command
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        finally:
            stop_process(proc, timeout=30)
    text = log.read_text()
    assert "ready: http://127.0.0.1" in text and "Application shutdown complete" in text
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in text  # the access log, on stderr
    assert out.read_text() == ""  # stdout carries results only; a server has none


# ---------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------

def test_public_names():
    import ttcrouter
    import ttcrouter.server as server

    assert ttcrouter.create_app is create_app and ttcrouter.ServerConfig is ServerConfig
    for name in server.__all__:
        assert getattr(server, name) is not None


def test_micro_batcher_gathers_concurrent_items():
    calls = []

    def fn(items):
        calls.append(list(items))
        return [x * 2 for x in items]

    async def main():
        b = MicroBatcher(fn, window_s=0.02, max_batch=4)
        out = await asyncio.gather(*(b.submit(i) for i in range(6)))
        await b.close()
        return out

    out = asyncio.run(main())
    assert [r for r, _, _, _ in out] == [0, 2, 4, 6, 8, 10]
    assert all(size in (2, 4) and wall >= cpu >= 0 for _, size, wall, cpu in out)
    assert [len(c) for c in calls] == [4, 2]


def test_micro_batcher_gives_errors_to_the_batch_and_goes_on():
    def fn(items):
        if "bad" in items:
            raise RuntimeError("boom")
        return items

    async def main():
        b = MicroBatcher(fn, window_s=0.01)
        first = await asyncio.gather(b.submit("bad"), b.submit("x"), return_exceptions=True)
        second = await b.submit("y")
        await b.close()
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) for e in first) and second[0] == "y"


def test_upstream_pool_spreads_and_takes_out_a_failing_upstream():
    gens = {"http://a/v1": ScriptedGenerator(delay=0.05), "http://b/v1": ScriptedGenerator()}
    changes = []
    pool = UpstreamPool(list(gens), generator_factory=gens.__getitem__, cooldown_s=0.3,
                        on_change=lambda url, up: changes.append((url, up)))
    for _ in range(4):
        pool.generate(["q"], n=1)
    assert gens["http://a/v1"].calls == 2 and gens["http://b/v1"].calls == 2  # in turn
    gens["http://a/v1"].fail = True
    for _ in range(4):  # a fails once, is taken out, b answers everything
        assert pool.generate(["q"], n=1)[0][0].text
    status = {s["url"]: s for s in pool.status()}
    assert not status["http://a/v1"]["healthy"] and status["http://a/v1"]["failures"] == 1
    assert changes == [("http://a/v1", False)]
    gens["http://a/v1"].fail = False
    time.sleep(0.35)  # after the cool-down it is tried again, and comes back
    for _ in range(3):
        pool.generate(["q"], n=1)
    assert ("http://a/v1", True) in changes
    gens["http://a/v1"].fail = gens["http://b/v1"].fail = True
    with pytest.raises(UpstreamUnavailable, match="No upstream server answered"):
        pool.generate(["q"], n=1)


def test_upstream_pool_decodes_greedy_once():
    gen = ScriptedGenerator()
    pool = UpstreamPool(["http://a/v1"], generator_factory=lambda url: gen)
    out = pool.generate(["q"], n=4, temperature=0)
    assert gen.calls == 1 and len(out[0]) == 4
    assert len({c.text for c in out[0]}) == 1 and out[0][0] is not out[0][1]


def test_upstream_pool_prefers_the_least_busy():
    gens = {u: ScriptedGenerator(delay=0.3 if u == "http://slow/v1" else 0.0)
            for u in ("http://slow/v1", "http://fast/v1")}
    pool = UpstreamPool(list(gens), generator_factory=gens.__getitem__)
    t = threading.Thread(target=pool.generate, args=(["q"],))
    t.start()
    t0 = time.monotonic()
    while pool.upstreams[0].in_flight == 0 and time.monotonic() - t0 < 5:
        time.sleep(0.005)  # until slow is busy
    for _ in range(3):
        pool.generate(["q"])
    t.join()
    assert gens["http://slow/v1"].calls == 1 and gens["http://fast/v1"].calls == 3


# ---------------------------------------------------------------------------------------
# slow: the real embedded model, real upstream vLLM servers
# ---------------------------------------------------------------------------------------

SEVEN_PLUS_EIGHT = [{"role": "user", "content": "What is 7 + 8?"}]


@pytest.fixture(scope="module")
def shipped_router_file(tmp_path_factory):
    """``ttcrouter fit`` on the shipped runs table with MiniLM (about 20 s)."""
    from ttcrouter.cli import main, shipped_runs_path

    out = tmp_path_factory.mktemp("serve") / "router.joblib"
    assert main(["fit", str(shipped_runs_path()), "--out", str(out), "--encoder", "minilm",
                 "--lambda-tokens", "0.0005"]) == 0
    return out


@pytest.mark.slow
@pytest.mark.vllm
class TestEmbeddedServer:
    """``ttcrouter serve`` on the embedded model (vLLM async engine), official client."""

    KEY = "test-key"

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, shipped_router_file, tmp_path_factory):
        from server_helpers import free_port, start_ttc_server, stop_process, wait_healthy

        port = free_port()
        log = tmp_path_factory.mktemp("serve-log") / "server.log"
        proc = start_ttc_server(shipped_router_file, port, log, "--api-key", cls.KEY,
                                "--max-model-len", "1024", "--max-tokens", "96",
                                "--kv-cache-space", "1")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc)
            yield url, proc, log
        finally:
            stop_process(proc)

    def client(self, url, **kw):
        import openai

        return openai.OpenAI(base_url=url + "/v1", api_key=self.KEY, max_retries=0,
                             timeout=600, **kw)

    def test_what_is_7_plus_8(self, server):
        url, _, _ = server
        r = self.client(url).chat.completions.create(model="ttcrouter",
                                                     messages=SEVEN_PLUS_EIGHT)
        assert r.choices[0].message.content.strip()
        ttc = r.model_extra["ttc"]
        assert ttc["backend"] == "vllm-async" and not ttc["forced"]
        assert 0 <= ttc["predicted_accuracy"] <= 1
        assert r.usage.completion_tokens == ttc["measured_tokens"] > 0
        assert r.usage.prompt_tokens > 0
        # the shipped verifier reads every candidate; the log-probability scorer reads nothing
        verified = ttc["strategy"].endswith(",scorer=verifier")
        assert (r.usage.model_extra["reward_tokens"] > 0) == verified
        assert ttc["candidates"] >= 1 and ttc["measured_latency_s"] > 0

    def test_eight_concurrent_requests_share_the_engine(self, server):
        import httpx

        url, _, _ = server
        cli = self.client(url)
        strategies = ["majority_vote@n=1", "majority_vote@n=4", "best_of_n@n=2",
                      "weighted_majority_vote@n=4", "majority_vote@n=2", "best_of_n@n=4",
                      "weighted_majority_vote@n=2", "beam_search@n=4,w=2"]
        before = httpx.get(url + "/health").json()["engine"]
        results = [None] * 8

        def one(i):
            results[i] = cli.chat.completions.create(
                model="ttcrouter", max_tokens=48,
                messages=[{"role": "user", "content": f"What is {i + 2} + 5?"}],
                extra_body={"ttc": {"strategy": strategies[i]}})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(900)
        wall = time.monotonic() - t0
        assert all(r is not None for r in results)
        for want, r in zip(strategies, results):
            assert r.model_extra["ttc"]["strategy"] == want
            assert r.usage.completion_tokens == r.model_extra["ttc"]["measured_tokens"] > 0
        after = httpx.get(url + "/health").json()["engine"]
        # one engine held requests of several HTTP calls at once
        assert after["engine_peak_in_flight"] > 1
        assert after["engine_requests"] > before["engine_requests"]
        assert wall < sum(r.model_extra["ttc"]["measured_latency_s"] for r in results)

    def test_error_cases_and_the_server_goes_on(self, server):
        import httpx
        import openai

        url, proc, _ = server
        cli = self.client(url)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong",
                          max_retries=0).chat.completions.create(model="ttcrouter",
                                                                 messages=SEVEN_PLUS_EIGHT)
        cases = [
            ({"model": "ttcrouter:nope@n=1"}, openai.BadRequestError, "unknown_strategy"),
            ({"model": "nope"}, openai.NotFoundError, "model_not_found"),
            ({"extra_body": {"ttc": {"max_latency_s": -1}}}, openai.BadRequestError,
             "out_of_range"),
            ({"extra_body": {"ttc": {"max_tokens": 1}}}, openai.BadRequestError,
             "budget_unmeetable"),
            ({"messages": [{"role": "user", "content": "7 + " * 700}]},
             openai.BadRequestError, "context_length_exceeded"),
            ({"extra_body": {"ttc": {"timeout_s": 0.2, "strategy": "majority_vote@n=16"}}},
             openai.APIStatusError, "deadline_exceeded"),
        ]
        for kwargs, exc_type, code in cases:
            kwargs = {"model": "ttcrouter", "messages": SEVEN_PLUS_EIGHT, **kwargs}
            with pytest.raises(exc_type) as err:
                cli.chat.completions.create(**kwargs)
            assert err.value.body["code"] == code, err.value.body
        assert err.value.status_code == 504
        bad = httpx.post(url + "/v1/chat/completions", content=b"{oops",
                         headers={"Authorization": f"Bearer {self.KEY}",
                                  "content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
        assert proc.poll() is None
        # a candidate limit as long as the whole context: capped at the room the prompt left
        ok = cli.chat.completions.create(model="ttcrouter:majority_vote@n=1", max_tokens=1024,
                                         messages=SEVEN_PLUS_EIGHT)
        assert ok.model_extra["ttc"]["measured_tokens"] > 0
        metrics = httpx.get(url + "/metrics").text
        assert 'code="deadline_exceeded"' in metrics and 'status="401"' in metrics

    @pytest.mark.parametrize("strategy", ["majority_vote@n=4", "beam_search@n=4,w=2"])
    def test_forced_strategy_matches_a_direct_execution(self, server, strategy,
                                                        direct_executor):
        """Greedy decoding (temperature 0) makes both runs decode the same tokens, so the
        answer, the chosen text and every token count must agree exactly."""
        url, _, _ = server
        r = self.client(url).chat.completions.create(
            model=f"ttcrouter:{strategy}", messages=SEVEN_PLUS_EIGHT, temperature=0,
            max_tokens=48)
        direct = direct_executor.execute(strategy, "What is 7 + 8?")
        ttc = r.model_extra["ttc"]
        assert ttc["strategy"] == strategy and ttc["forced"]
        assert r.choices[0].message.content == direct.text
        assert ttc["answer"] == direct.answer
        assert r.usage.completion_tokens == direct.tokens
        assert r.usage.prompt_tokens == direct.prompt_tokens

    def test_sigterm_finishes_in_flight_requests(self, server):
        import signal

        import httpx

        url, proc, log = server
        got = {}

        def slow():
            got["r"] = self.client(url).chat.completions.create(
                model="ttcrouter:majority_vote@n=4", max_tokens=64, messages=SEVEN_PLUS_EIGHT)

        t = threading.Thread(target=slow)
        t.start()
        t0 = time.monotonic()
        while httpx.get(url + "/health").json()["in_flight"] == 0 \
                and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        t.join(600)
        assert got["r"].choices[0].message.content  # the request in flight was answered
        code = proc.wait(180)
        assert code in (0, 143)  # uvicorn re-raises the signal once drained: exit 143
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=5)
        assert "Application shutdown complete" in log.read_text()


@pytest.fixture(scope="class")
def direct_executor(embedded_model_path, shipped_router_file):
    """A StrategyExecutor on its own offline engine (seed 0, greedy), closed after use.

    It runs with the settings the router file records (beam steps of the shipped table's
    32 tokens, its prompt modes), as the server does; the request's own temperature and
    token limit win, as in the server.
    """
    from conftest import TEST_MAX_MODEL_LEN
    from ttcrouter.executors import VLLMGenerator
    from ttcrouter.persistence import load_router
    from ttcrouter.serving import learned_executor_kwargs

    learned = learned_executor_kwargs(load_router(shipped_router_file)["metadata"])
    learned.update(temperature=0, max_tokens=48)
    learned.pop("top_p", None)
    gen = VLLMGenerator(seed=0, enforce_eager=True, max_model_len=TEST_MAX_MODEL_LEN,
                        kv_cache_space_gb=1)
    executor = StrategyExecutor(gen, **learned)
    yield executor
    gen.close()


@pytest.mark.slow
@pytest.mark.vllm
def test_upstream_killed_in_the_middle_of_a_run(shipped_router_file, embedded_model_path,
                                                tmp_path):
    """Two real upstream vLLM servers; one is killed mid-run: every request is still
    answered, the dead one is taken out; with both dead, a 503."""
    import httpx
    import openai

    from server_helpers import (free_port, kill_group, start_api_server, start_ttc_server,
                                stop_process, wait_healthy)

    ports = [free_port(), free_port()]
    ups = [start_api_server(embedded_model_path, p, tmp_path / f"up{p}.log") for p in ports]
    procs = list(ups)
    try:
        for p, proc in zip(ports, ups):
            wait_healthy(f"http://127.0.0.1:{p}", proc)
        port = free_port()
        urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
        ttc = start_ttc_server(shipped_router_file, port, tmp_path / "ttc.log",
                               "--upstream", urls[0], "--upstream", urls[1], "--cooldown", "300",
                               "--max-tokens", "32")
        procs.append(ttc)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, ttc, timeout=300)
        cli = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=600)
        answered, lock = [], threading.Lock()

        def worker(k):
            for i in range(4):
                r = cli.chat.completions.create(
                    model="ttcrouter:majority_vote@n=2",
                    messages=[{"role": "user", "content": f"What is {k} + {i}?"}])
                with lock:
                    answered.append(r)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        while len(answered) < 3 and time.monotonic() - t0 < 600:
            time.sleep(0.05)
        kill_group(ups[0])  # the first upstream dies (engine and all) with requests in flight
        for t in threads:
            t.join(900)
        assert len(answered) == 12
        assert all(r.usage.completion_tokens > 0 for r in answered)
        health = httpx.get(base + "/health").json()
        dead = next(u for u in health["upstreams"] if u["url"] == urls[0])
        live = next(u for u in health["upstreams"] if u["url"] == urls[1])
        assert not dead["healthy"] and dead["failures"] >= 1 and live["healthy"]
        kill_group(ups[1])
        with pytest.raises(openai.InternalServerError) as err:
            cli.chat.completions.create(model="ttcrouter", messages=SEVEN_PLUS_EIGHT)
        assert err.value.status_code == 503
        assert err.value.body["code"] == "upstream_unavailable"
        assert httpx.get(base + "/v1/models").status_code == 200  # still serving
    finally:
        for proc in procs:
            stop_process(proc, timeout=60)
