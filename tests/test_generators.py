"""Tests for the generator backends on the real embedded model (SmolLM2-135M-Instruct)."""

import pytest

from ttcrouter.executors.base import Completion, GenerationRequest

Q_ADD = "What is 3 + 4?"
Q_MUL = "What is 6 times 7?"


# --- argument checks (no engine needed) -----------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n must be"),
        ({"max_tokens": 0}, "max_tokens must be"),
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
