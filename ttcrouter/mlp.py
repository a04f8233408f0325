"""The torch side of the probe: the MLP, its batch iterator, its skorch net, grid scoring.

:class:`~ttcrouter.probe.ProbeClassifier` builds a :class:`WeightedBinaryNet` over a
:class:`ProbeModule` and wraps it in sklearn's calibration; :func:`grid_proba` is the fast
path of :meth:`~ttcrouter.probe.ProbeClassifier.predict_proba_grid`. Importing this module
imports torch and skorch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from skorch import NeuralNetBinaryClassifier
from skorch.utils import to_tensor

__all__ = [
    "ProbeModule",
    "BatchIterator",
    "WeightedBinaryNet",
    "resolve_device",
    "member_params",
    "grid_proba",
]


class ProbeModule(torch.nn.Module):
    """MLP ``n_features -> hidden_units... -> 1`` (ReLU), standardizing its input."""

    def __init__(self, n_features=1, hidden_units=(200, 200)):
        super().__init__()
        sizes = [int(n_features), *[int(h) for h in hidden_units], 1]
        self.linears = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.register_buffer("mean", torch.zeros(int(n_features)))
        self.register_buffer("scale", torch.ones(int(n_features)))

    def set_stats(self, mean, scale):
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.scale.copy_(torch.as_tensor(scale, dtype=self.scale.dtype))

    def forward(self, data, sample_weight=None):
        h = (data - self.mean) / self.scale
        last = len(self.linears) - 1
        for i, layer in enumerate(self.linears):
            h = layer(h)
            if i < last:
                h = torch.relu(h)
        return h.reshape(-1)


class BatchIterator:
    """Mini-batches by slicing whole tensors (no per-row collate as with DataLoader).

    A drop-in for skorch's ``iterator_train``/``iterator_valid`` over a
    :class:`skorch.dataset.Dataset` of arrays (or a dict of arrays); shuffling draws from
    torch's global generator, so ``torch.manual_seed`` makes it reproducible.
    """

    def __init__(self, dataset, batch_size=256, shuffle=False, **kwargs):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        ds = self.dataset
        n = len(ds)
        X = ds.X
        if isinstance(X, Mapping):
            X = {k: torch.as_tensor(v) for k, v in X.items()}
        else:
            X = torch.as_tensor(X)
        y = torch.zeros(n) if ds.y is None else torch.as_tensor(ds.y)
        order = torch.randperm(n) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                sel = slice(start, start + self.batch_size)
            else:
                sel = order[start : start + self.batch_size]
            if isinstance(X, dict):
                xb = {k: v[sel] for k, v in X.items()}
            else:
                xb = X[sel]
            yield xb, y[sel]


class WeightedBinaryNet(NeuralNetBinaryClassifier):
    """skorch binary classifier with a sample-weighted loss and a ``decision_function``.

    ``fit(X, y, sample_weight)`` takes plain arrays (as CalibratedClassifierCV passes
    them) and carries the weights to ``get_loss`` inside a dict ``X``. The input
    standardization (mean, std of the training rows) lives in the module's buffers.
    """

    def __init__(self, *args, standardize=True, min_steps=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.standardize = standardize
        self.min_steps = min_steps

    def fit(self, X, y, sample_weight=None):
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if sample_weight is None:
            w = np.ones(X.shape[0], dtype=np.float32)
        else:
            w = np.asarray(sample_weight, dtype=np.float64)
            total = w.mean()
            w = (w / total if total > 0 else np.ones_like(w)).astype(np.float32)
        if self.standardize:
            mean = X.mean(axis=0)
            scale = X.std(axis=0)
            scale[~(scale > 1e-6)] = 1.0
        else:
            mean = np.zeros(X.shape[1], dtype=np.float32)
            scale = np.ones(X.shape[1], dtype=np.float32)
        self._input_stats = (mean, scale)
        self.set_params(module__n_features=X.shape[1])
        n_batches = -(-X.shape[0] // self.batch_size)
        epochs = max(self.max_epochs, -(-self.min_steps // n_batches))
        super().fit({"data": X, "sample_weight": w}, y, epochs=epochs)
        # Adam's moment estimates are twice the size of the weights: not worth pickling
        self.optimizer_.state.clear()
        return self

    def initialize_module(self):
        super().initialize_module()
        stats = getattr(self, "_input_stats", None)
        if stats is not None:
            self.module_.set_stats(*stats)
        return self

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if isinstance(X, Mapping) and "sample_weight" in X:
            loss = loss * to_tensor(X["sample_weight"], device=self.device)
        return loss.mean()

    def decision_function(self, X):
        """Logit of P(y=1), shape (n_samples,)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        logits = self.forward(X, training=False, device="cpu")
        return logits.numpy().astype(np.float64).reshape(-1)


def resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def member_params(calibrated_classifier):
    """Plain float32 weights of one calibrated ensemble member, for the fast path.

    The input standardization is folded into the first layer, and the member's Platt
    calibrator ``p = expit(-(a * f + b))`` is read from sklearn's ``_SigmoidCalibration``,
    with ``f`` the logit (``decision_function``) or P(y=1) (``predict_proba``), whichever
    CalibratedClassifierCV used.
    """
    net = calibrated_classifier.estimator
    module = net.module_
    (calibrator,) = calibrated_classifier.calibrators
    response = "decision_function" if hasattr(net, "decision_function") else "predict_proba"
    with torch.no_grad():
        weights = [layer.weight.detach().cpu().double() for layer in module.linears]
        biases = [layer.bias.detach().cpu().double() for layer in module.linears]
        mean = module.mean.detach().cpu().double()
        scale = module.scale.detach().cpu().double()
        w0 = weights[0] / scale
        b0 = biases[0] - w0 @ mean
    weights[0], biases[0] = w0, b0
    return {
        "weights": [w.float().T.contiguous() for w in weights],  # (in, out)
        "biases": [b.float() for b in biases],
        "a": float(calibrator.a_),
        "b": float(calibrator.b_),
        "response": response,
    }


def grid_proba(members, E, S, max_pairs=1 << 15):
    E_t = torch.from_numpy(np.ascontiguousarray(E))
    S_t = torch.from_numpy(np.ascontiguousarray(S))
    n_q, d_e = E_t.shape
    n_s = S_t.shape[0]
    out = torch.zeros((n_q, n_s), dtype=torch.float64)
    chunk = max(1, max_pairs // max(n_s, 1))
    with torch.no_grad():
        for m in members:
            W, B = m["weights"], m["biases"]
            strat = S_t @ W[0][d_e:] + B[0]  # (n_s, h)
            query = E_t @ W[0][:d_e]  # (n_q, h)
            for start in range(0, n_q, chunk):
                q = query[start : start + chunk]
                h = (q[:, None, :] + strat[None, :, :]).reshape(-1, strat.shape[1])
                for Wi, Bi in zip(W[1:], B[1:]):
                    h = torch.addmm(Bi, torch.relu_(h), Wi)
                f = h.reshape(q.shape[0], n_s)
                if m["response"] == "predict_proba":
                    f = torch.sigmoid(f)
                p = torch.sigmoid(-(m["a"] * f.double() + m["b"]))
                out[start : start + chunk] += p
    out /= len(members)
    return out.numpy()
