"""Tests for the generator backends on the real embedded model (SmolLM2-135M-Instruct)."""

import pytest

from ttcrouter.executors.base import Completion, GenerationRequest

Q_ADD = "What is 3 + 4?"
Q_MUL = "What is 6 times 7?"


# --- argument checks (no engine needed) -----------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, r"n == 0, must be >= 1"),
        ({"max_tokens": 0}, r"max_tokens == 0, must be >= 1"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"stop": [""]}, "stop must be"),
    ],
)
def test_vllm_bad_arguments_fail_before_engine_start(kwargs, match):
    from ttcrouter.executors.vllm_backend import VLLMGenerator

    gen = VLLMGenerator()
    with pytest.raises(ValueError, match=match):
        gen.generate([GenerationRequest("hi")], **kwargs)
    with pytest.raises(TypeError, match="sequence of requests"):
        gen.generate(GenerationRequest("hi"))
    assert gen._llm is None  # nothing started


def test_cpu_engine_dtype_follows_the_bf16_flags(tmp_path):
    from ttcrouter.executors.vllm_backend import cpu_engine_dtype

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_engine_dtype(info) == "float32"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_engine_dtype(info) is None
    info.write_text("processor\t: 0\n")
    assert cpu_engine_dtype(info) is None
    assert cpu_engine_dtype(tmp_path / "missing") is None


def _check_contract(results, n_requests, n, max_tokens, logprobs=False):
    assert len(results) == n_requests
    for comps in results:
        assert len(comps) == n
        for c in comps:
            assert isinstance(c, Completion)
            assert isinstance(c.text, str)
            assert 0 < c.tokens <= max_tokens
            assert c.prompt_tokens > 0
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert c.tokens == max_tokens
            if logprobs:
                assert len(c.logprobs) == c.tokens
                assert all(lp <= 0.0 for lp in c.logprobs)
            else:
                assert c.logprobs is None


# --- vLLM -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_parallel_samples(vllm_generator):
    reqs = [GenerationRequest(Q_ADD), GenerationRequest(Q_MUL)]
    res = vllm_generator.generate(reqs, n=4, max_tokens=24, temperature=0.8, logprobs=True)
    _check_contract(res, 2, 4, 24, logprobs=True)
    # same prompt -> same prompt length for all samples; different samples exist
    assert len({c.prompt_tokens for c in res[0]}) == 1
    assert len({c.text for comps in res for c in comps}) > 1
    assert vllm_generator.backend == "vllm"
    assert vllm_generator.model_name == "SmolLM2-135M-Instruct"
    from ttcrouter.executors.vllm_backend import cpu_engine_dtype

    # no dtype asked for: float32 where the CPU has no native bfloat16, else the model's
    assert vllm_generator.engine_dtype_ == (cpu_engine_dtype() or "auto")
    assert vllm_generator.engine_dtype == vllm_generator.engine_dtype_


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_token_counts_match_tokenizer(vllm_generator):
    res = vllm_generator.generate([GenerationRequest(Q_ADD)], n=2, max_tokens=16, temperature=0)
    tok = vllm_generator.tokenizer
    ids = vllm_generator.prompt_token_ids([GenerationRequest(Q_ADD)])[0]
    for c in res[0]:
        assert c.prompt_tokens == len(ids)
        # re-tokenizing the text gives (nearly) the generated count; EOS is not in the text
        assert abs(len(tok.encode(c.text, add_special_tokens=False)) - c.tokens) <= 1


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_stop_strings(vllm_generator):
    res = vllm_generator.generate(
        [GenerationRequest("Count from 1 to 20, one number per line.")],
        n=3, max_tokens=48, stop=["\n"], temperature=0.7,
    )
    _check_contract(res, 1, 3, 48)
    for c in res[0]:
        assert "\n" not in c.text
        if c.stop_reason is not None:
            assert c.stop_reason == "\n" and c.finish_reason == "stop"
    count = GenerationRequest("Count from 1 to 20, one number per line.", prefix="1\n2\n3\n")
    c = vllm_generator.generate([count], max_tokens=24, stop=["\n"], temperature=0)[0][0]
    assert (c.text, c.tokens, c.finish_reason, c.stop_reason) == ("4", 2, "stop", "\n")


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_prefix_continuation(vllm_generator):
    base = GenerationRequest(Q_MUL)
    prefix = "6 times 7 equals"
    cont = GenerationRequest(Q_MUL, prefix=prefix)
    ids = vllm_generator.prompt_token_ids([base, cont])
    tok = vllm_generator.tokenizer
    assert len(ids[1]) == len(ids[0]) + len(tok.encode(prefix, add_special_tokens=False))
    res = vllm_generator.generate([base, cont], n=1, max_tokens=8, temperature=0, logprobs=True)
    assert res[1][0].prompt_tokens == len(ids[1])
    # the continuation does not restate the prefix; greedy text continues the sentence
    text = res[1][0].text
    assert not text.lstrip().startswith(prefix)
    assert "42" in text


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_too_long_prompt(vllm_generator):
    from conftest import TEST_MAX_MODEL_LEN

    long = GenerationRequest("word " * (TEST_MAX_MODEL_LEN + 50))
    with pytest.raises(ValueError, match="Request 1: the prompt has"):
        vllm_generator.generate([GenerationRequest(Q_ADD), long], max_tokens=4)
    # a prompt that fits but leaves fewer than max_tokens: generation stops at the context end
    n_tpl = len(vllm_generator.prompt_token_ids([GenerationRequest("")])[0])
    near = GenerationRequest("word " * (TEST_MAX_MODEL_LEN - n_tpl - 10))
    p = vllm_generator.prompt_token_ids([near])[0]
    assert len(p) < TEST_MAX_MODEL_LEN
    res = vllm_generator.generate([near], max_tokens=64, temperature=0.7)
    c = res[0][0]
    assert c.prompt_tokens + c.tokens <= TEST_MAX_MODEL_LEN
    assert vllm_generator.generate([], max_tokens=4) == []


# --- transformers ---------------------------------------------------------------------------
def test_hf_bad_arguments_fail_before_load():
    from ttcrouter.executors.hf_backend import TransformersGenerator

    gen = TransformersGenerator()
    with pytest.raises(ValueError, match=r"n == 0, must be >= 1"):
        gen.generate([GenerationRequest("hi")], n=0)
    assert gen._model is None


@pytest.mark.slow
def test_hf_samples_stop_logprobs(hf_generator):
    reqs = [GenerationRequest(Q_ADD), GenerationRequest("Count from 1 to 20, one per line.")]
    res = hf_generator.generate(reqs, n=3, max_tokens=24, stop=["\n"], logprobs=True)
    _check_contract(res, 2, 3, 24, logprobs=True)
    tok = hf_generator.tokenizer
    for comps in res:
        for c in comps:
            assert "\n" not in c.text
            if c.stop_reason is not None:
                assert c.stop_reason == "\n" and c.finish_reason == "stop"
            # honest counts: the text re-tokenizes to about the counted tokens (the EOS or
            # the token carrying the stop string is counted, not shown)
            assert abs(len(tok.encode(c.text, add_special_tokens=False)) - c.tokens) <= 2
    # padding is never counted: the list continues with "4" then stops at the newline
    count = GenerationRequest("Count from 1 to 20, one number per line.", prefix="1\n2\n3\n")
    c = hf_generator.generate([count], max_tokens=24, stop=["\n"], temperature=0)[0][0]
    assert (c.text, c.tokens, c.finish_reason, c.stop_reason) == ("4", 2, "stop", "\n")
    assert hf_generator.backend == "transformers"


@pytest.mark.slow
def test_hf_greedy_prefix_and_too_long(hf_generator):
    base = GenerationRequest(Q_MUL)
    cont = GenerationRequest(Q_MUL, prefix="6 times 7 equals")
    res = hf_generator.generate([base, cont], n=2, max_tokens=8, temperature=0)
    assert res[1][0].text == res[1][1].text  # greedy: copies
    assert "42" in res[1][0].text
    assert res[1][0].prompt_tokens > res[0][0].prompt_tokens
    too_long = GenerationRequest("word " * 9000)
    with pytest.raises(ValueError, match="Request 1: the prompt has"):
        hf_generator.generate([base, too_long], max_tokens=4)


@pytest.mark.slow
@pytest.mark.vllm
def test_hf_and_vllm_agree_greedy(hf_generator, vllm_generator):
    """Same weights, same template: the greedy answers start the same way."""
    req = [GenerationRequest(Q_MUL, prefix="6 times 7 equals")]
    a = hf_generator.generate(req, max_tokens=4, temperature=0)[0][0]
    b = vllm_generator.generate(req, max_tokens=4, temperature=0)[0][0]
    assert a.prompt_tokens == b.prompt_tokens
    assert a.text.split()[:1] == b.text.split()[:1]


# --- OpenAI-compatible server ---------------------------------------------------------------
def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_unreachable_server_fast_error():
    from ttcrouter.executors.openai_backend import OpenAIGenerator

    port = _free_port()  # closed: nothing listens there
    gen = OpenAIGenerator(
        [f"http://127.0.0.1:{port}"], model="m", max_retries=2, backoff=0.01, timeout=2
    )
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}/v1.*after 3 attempts"):
        gen.generate([GenerationRequest("hi")])
    gen.close()


def test_openai_bad_urls():
    from ttcrouter.executors.openai_backend import OpenAIGenerator

    with pytest.raises(ValueError, match="Bad server URL"):
        OpenAIGenerator("localhost:8000", model="m").urls
    with pytest.raises(ValueError, match="empty"):
        OpenAIGenerator([], model="m").urls
    assert OpenAIGenerator("http://h:1/", model="m").urls == ["http://h:1/v1"]
    assert OpenAIGenerator("http://h:1/api/v1", model="m").urls == ["http://h:1/api/v1"]


@pytest.fixture(scope="module")
def vllm_server(embedded_model_path):
    """A real vLLM OpenAI-compatible server on the embedded model (killed at teardown)."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    port = _free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(embedded_model_path), "--served-model-name", "smollm",
        "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
        "--max-model-len", "1024", "--seed", "0",
    ]
    log = open(embedded_model_path.parent / f"vllm-server-{port}.log", "w")
    from ttcrouter.lifetime import reap_children_on_exit

    with reap_children_on_exit():  # the server ends with pytest, even a killed pytest
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.time() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail(f"vLLM server not healthy after 600 s; see {log.name}")
            time.sleep(2)
        yield port
    finally:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
@pytest.mark.vllm
def test_openai_chat_n_samples(vllm_server):
    from ttcrouter.executors.openai_backend import OpenAIGenerator

    gen = OpenAIGenerator(f"http://127.0.0.1:{vllm_server}/v1")
    assert gen.model_name == "smollm"  # asked from /v1/models
    res = gen.generate(
        [GenerationRequest(Q_ADD), GenerationRequest(Q_MUL)], n=3, max_tokens=16, logprobs=True
    )
    _check_contract(res, 2, 3, 16, logprobs=True)
    # stop strings
    res = gen.generate([GenerationRequest("Count from 1 to 20, one per line.")],
                       n=2, max_tokens=32, stop=["\n"])
    _check_contract(res, 1, 2, 32)
    assert all("\n" not in c.text for c in res[0])
    gen.close()


@pytest.mark.slow
@pytest.mark.vllm
def test_openai_prefix_both_ways(vllm_server, embedded_model_path):
    from ttcrouter.executors.openai_backend import OpenAIGenerator

    url = f"http://127.0.0.1:{vllm_server}/v1"
    base = GenerationRequest(Q_MUL)
    cont = GenerationRequest(Q_MUL, prefix="6 times 7 equals")
    chat = OpenAIGenerator(url, model="smollm")  # continue_final_message
    local = OpenAIGenerator(url, model="smollm", tokenizer=str(embedded_model_path))
    for gen in (chat, local):
        res = gen.generate([base, cont], max_tokens=6, temperature=0)
        assert res[1][0].prompt_tokens > res[0][0].prompt_tokens
        assert "42" in res[1][0].text
        assert not res[1][0].text.lstrip().startswith("6 times")
        gen.close()
    # both ways render the same prompt
    a = chat.generate([cont], max_tokens=1, temperature=0)[0][0]
    b = local.generate([cont], max_tokens=1, temperature=0)[0][0]
    assert a.prompt_tokens == b.prompt_tokens


@pytest.mark.slow
@pytest.mark.vllm
def test_openai_round_robin_and_errors(vllm_server):
    from ttcrouter.executors.openai_backend import OpenAIGenerator

    urls = [f"http://127.0.0.1:{vllm_server}/v1", f"http://localhost:{vllm_server}"]
    gen = OpenAIGenerator(urls, model="smollm", max_concurrency=4)
    seen = []
    real_next = gen._next_url

    def spy():
        url = real_next()
        seen.append(url)
        return url

    gen._next_url = spy
    res = gen.generate([GenerationRequest(f"What is {i} + 1?") for i in range(4)], max_tokens=4)
    assert len(res) == 4 and all(len(r) == 1 for r in res)
    # the first four calls alternate over the two URL forms (a retry, if any, comes later)
    assert sorted(seen[:4]) == sorted([urls[0], urls[1] + "/v1"] * 2), seen
    # the server rejects a too-long prompt: a ValueError naming the request
    with pytest.raises(ValueError, match="Request 1"):
        gen.generate([GenerationRequest("hi"), GenerationRequest("word " * 1100)], max_tokens=4)
    # a dead replica next to a live one: retried on the live one
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    mixed = OpenAIGenerator([dead, urls[0]], model="smollm", backoff=0.01)
    assert len(mixed.generate([GenerationRequest(Q_ADD)] * 3, max_tokens=4)) == 3
    gen.close()
    mixed.close()


def test_openai_pickles_without_connections():
    import pickle

    from ttcrouter.executors.openai_backend import OpenAIGenerator

    gen = OpenAIGenerator(["http://127.0.0.1:1/v1", "http://127.0.0.1:2"], model="m")
    gen.client  # open the connection pool
    clone = pickle.loads(pickle.dumps(gen))
    assert clone._client is None and clone.urls == gen.urls
    assert clone._next_url() == "http://127.0.0.1:1/v1"
    assert clone._next_url() == "http://127.0.0.1:2/v1"
    clone.close()
    gen.close()
