"""Check ttcrouter's CUDA code paths against CPU, on tiny random-weight models.

Run: python scripts/cuda_check.py TOKENIZERS_DIR OUT_DIR [--dry-run]
     python scripts/cuda_check.py --load-back OUT_DIR   (on a CPU-only machine, afterwards)

``TOKENIZERS_DIR`` holds ``bert/`` (a WordPiece tokenizer, e.g. MiniLM's) and ``llama/`` (a
chat tokenizer, e.g. SmolLM2's): weights are not needed, the models are built here with random
weights, so the check fits on a GPU machine that cannot download anything. It compares, CPU
against CUDA: ``EmbeddingTransformer`` (mean and last pooling), ``ProbeClassifier`` and
``UtilityRouter`` fitted on CUDA (then pickled, for loading back on a CPU-only machine),
``QwenMathPRM`` step rewards, ``TransformersGenerator`` greedy generation and token counts, and
a PRM-guided beam search through ``StrategyExecutor``. Prints one line per check and writes
``cuda_check.json`` (and ``probe_cuda.joblib``, ``router_cuda.joblib``) to ``OUT_DIR``.
Without CUDA it runs the CPU side only and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TEXTS = ["What is 2 + 3?", "Compute 17 * 4 - 9.", "A train leaves at 3 pm.", "x"]


def tiny_bert(tok_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_llama(tok_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_prm(tok_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForTokenClassification

    out.mkdir(parents=True, exist_ok=True)
    for f in tok_dir.iterdir():
        shutil.copy(f, out / f.name)
    tok = AutoTokenizer.from_pretrained(out)
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, num_labels=2, pad_token_id=tok.pad_token_id)
    Qwen2ForTokenClassification(cfg).save_pretrained(out)
    return out


def check_embedding(models, dev, report):
    from ttcrouter import EmbeddingTransformer

    for name, pooling in (("bert", "mean"), ("llama", "last")):
        cpu = EmbeddingTransformer(model=str(models[name]), pooling=pooling, device="cpu")
        E_cpu = cpu.fit_transform(TEXTS)
        out = {"cpu_shape": list(E_cpu.shape)}
        if dev:
            # device="auto" must find the GPU by itself
            auto = EmbeddingTransformer(model=str(models[name]), pooling=pooling,
                                        device="auto" if dev == "cuda" else dev)
            E_gpu = auto.fit_transform(TEXTS)
            out.update(device=auto.device_, dtype=str(E_gpu.dtype),
                       max_abs_diff=float(np.abs(E_gpu - E_cpu).max()))
            assert auto.device_.startswith(dev), auto.device_
            assert E_gpu.dtype == np.float32
            np.testing.assert_allclose(E_gpu, E_cpu, atol=1e-4)
            half = EmbeddingTransformer(model=str(models[name]), pooling=pooling, device=dev,
                                        dtype="bfloat16").fit_transform(TEXTS)
            out["bf16_max_abs_diff"] = float(np.abs(half - E_cpu).max())
            assert half.dtype == np.float32 and np.isfinite(half).all()
        report[f"embedding_{name}_{pooling}"] = out


def check_probe_and_router(dev, out_dir, report):
    import joblib
    import pandas as pd

    from ttcrouter import ProbeClassifier, UtilityRouter

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 16)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    device = dev or "cpu"
    t0 = time.perf_counter()
    probe = ProbeClassifier(device=device, random_state=0, max_epochs=30).fit(X, y)
    p = probe.predict_proba(X)[:, 1]
    acc = float(((p > 0.5) == y).mean())
    assert np.isfinite(p).all() and 0 <= p.min() and p.max() <= 1 and acc > 0.75, acc
    cpu_probe = ProbeClassifier(device="cpu", random_state=0, max_epochs=30).fit(X, y)
    p_cpu = cpu_probe.predict_proba(X)[:, 1]
    joblib.dump(probe, out_dir / "probe_cuda.joblib")
    report["probe"] = {"device": device, "train_accuracy": acc,
                       "fit_seconds": round(time.perf_counter() - t0, 2),
                       "corr_with_cpu_fit": float(np.corrcoef(p, p_cpu)[0, 1])}
    names = ["majority_vote@n=1", "majority_vote@n=8", "beam_search@n=4,w=2"]
    Y = pd.DataFrame(rng.uniform(size=(120, 3)), columns=names)
    Y.iloc[:, 1] = np.clip(Y.iloc[:, 0] + 0.2 * (X[:120, 0] > 0), 0, 1)
    T = pd.DataFrame(np.tile([50.0, 400.0, 250.0], (120, 1)), columns=names)
    router = UtilityRouter(probe=ProbeClassifier(device=device, random_state=0, max_epochs=20),
                           lambda_tokens=1e-4).fit(X[:120], Y, tokens=T)
    choice = router.predict(X[:120])
    joblib.dump({"router": router, "X": X[:120], "choice": list(choice),
                 "accuracy": router.predict_accuracy(X[:120])}, out_dir / "router_cuda.joblib")
    report["router"] = {"device": device, "choices": pd.Series(choice).value_counts().to_dict()}


def check_prm(models, dev, report):
    from ttcrouter.executors import QwenMathPRM

    sols = [["3 + 4 = 7.", "Answer: 7"], ["Three plus four is eight."]]
    cpu = QwenMathPRM(model=str(models["prm"]), device="cpu")
    cpu = cpu.score("What is 3 + 4?", sols).rewards
    out = {"cpu": cpu}
    if dev:
        # the default dtype on CUDA is bfloat16: close to float32 CPU, not equal
        prm = QwenMathPRM(model=str(models["prm"]), device=dev)
        scored = prm.score("What is 3 + 4?", sols)
        gpu = scored.rewards
        out["cuda"] = gpu
        out["cuda_default_dtype_max_abs_diff"] = max(
            float(np.abs(np.subtract(a, b)).max()) for a, b in zip(cpu, gpu))
        for a, b in zip(cpu, gpu):
            np.testing.assert_allclose(a, b, atol=1e-2)
        f32 = QwenMathPRM(model=str(models["prm"]), device=dev, dtype="float32")
        gpu32 = f32.score("What is 3 + 4?", sols).rewards
        out["cuda_float32_max_abs_diff"] = max(
            float(np.abs(np.subtract(a, b)).max()) for a, b in zip(cpu, gpu32))
        for a, b in zip(cpu, gpu32):
            np.testing.assert_allclose(a, b, atol=1e-4)
        batch = prm.score_batch(["What is 3 + 4?"] * 3, [sols] * 3)
        assert all(np.allclose(np.concatenate(s.rewards), np.concatenate(gpu), atol=1e-4)
                   for s in batch)
        out["reward_tokens"] = scored.reward_tokens
    report["prm"] = out


def check_generator_and_beam(models, dev, report):
    from ttcrouter.executors import GenerationRequest, StrategyExecutor, TransformersGenerator
    from ttcrouter.executors import QwenMathPRM

    req = [GenerationRequest("What is 6 times 7?"), GenerationRequest("Count to 5.")]
    cpu = TransformersGenerator(model=str(models["llama"]), device="cpu")
    g_cpu = cpu.generate(req, max_tokens=12, temperature=0)
    out = {"cpu_tokens": [c[0].tokens for c in g_cpu]}
    if dev:
        gen = TransformersGenerator(model=str(models["llama"]), device=dev)
        g_gpu = gen.generate(req, max_tokens=12, temperature=0)
        out.update(cuda_tokens=[c[0].tokens for c in g_gpu],
                   greedy_same_text=[a[0].text == b[0].text for a, b in zip(g_cpu, g_gpu)])
        sampled = gen.generate(req, n=4, max_tokens=16, temperature=0.7, logprobs=True)
        assert all(len(c) == 4 for c in sampled)
        for comps in sampled:
            for c in comps:
                assert c.tokens == len(c.logprobs) and c.tokens <= 16, (c.tokens, c.logprobs)
        ex = StrategyExecutor(gen, scorer=QwenMathPRM(model=str(models["prm"]), device=dev),
                              max_tokens=48, step_max_tokens=16)
        t0 = time.perf_counter()
        res = ex.execute("beam_search@n=4,w=2", "What is 6 times 7?")
        assert res.error is None, res.error
        out["beam_search"] = {"tokens": res.tokens, "reward_tokens": res.reward_tokens,
                              "latency_s": round(res.latency_s, 3),
                              "wall_s": round(time.perf_counter() - t0, 3)}
        res = ex.execute("weighted_majority_vote@n=8", "What is 6 times 7?")
        assert res.error is None, res.error
        out["weighted_majority_vote"] = {"tokens": res.tokens}
    report["generator"] = out


def load_back(out_dir: Path) -> int:
    """On any machine (a CPU-only one too): the CUDA-fitted router routes as it did there."""
    import joblib

    saved = joblib.load(out_dir / "router_cuda.joblib")
    router = saved["router"]
    diff = float(np.abs(np.asarray(router.predict_accuracy(saved["X"]))
                        - np.asarray(saved["accuracy"])).max())
    same = list(router.predict(saved["X"])) == list(saved["choice"])
    probe = joblib.load(out_dir / "probe_cuda.joblib")
    p = probe.predict_proba(saved["X"])
    ok = same and diff < 1e-5 and np.allclose(p.sum(axis=1), 1)
    print(json.dumps({"cuda_here": torch.cuda.is_available(),
                      "predict_accuracy_max_abs_diff": diff, "same_choices": same, "ok": ok}))
    return 0 if ok else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--load-back":
        return load_back(Path(argv[1]))
    dry = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    tok_dir, out_dir = Path(argv[0]), Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    # --dry-run without a GPU runs every comparison with CPU on both sides (tests the script)
    dev = "cuda" if cuda else ("cpu" if dry else None)
    report = {"cuda": cuda, "compared_device": dev, "torch": torch.__version__,
              "device_name": torch.cuda.get_device_name(0) if cuda else None}
    work = out_dir / "_models"
    models = {"bert": tiny_bert(tok_dir / "bert", work / "bert"),
              "llama": tiny_llama(tok_dir / "llama", work / "llama"),
              "prm": tiny_prm(tok_dir / "bert", work / "prm")}
    failed = []
    for name, fn in (("embedding", lambda: check_embedding(models, dev, report)),
                     ("probe_router", lambda: check_probe_and_router(dev, out_dir, report)),
                     ("prm", lambda: check_prm(models, dev, report)),
                     ("generator", lambda: check_generator_and_beam(models, dev, report))):
        t0 = time.perf_counter()
        try:
            fn()
            print(f"ok   {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - report every check, then fail
            failed.append(name)
            report[f"{name}_error"] = "".join(traceback.format_exception(exc))[-3000:]
            print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    report["failed"] = failed
    (out_dir / "cuda_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({k: v for k, v in report.items() if not k.endswith("_error")},
                     default=str)[:3000])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
