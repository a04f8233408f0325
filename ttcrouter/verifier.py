"""TrainedVerifier: P(correct | question, partial or complete solution), learnt from the generator's own samples.

A small calibrated head (standardised features, logistic regression, sigmoid calibration on
query-grouped folds) over :class:`~ttcrouter.step_features.GeneratorStepFeatures`: the
generator's hidden state at the end of each step plus log-probability statistics. It is an
outcome-supervised value model: every prefix of a training solution, cut at step boundaries,
is one training row labelled with the solution's final outcome, so the same model scores
partial solutions (beam search) and complete ones (best-of-N, weighted voting).

:func:`save_verifier` and :func:`load_verifier` write and read it without the generator's
weights. Its use on a samples table (training data, scores, cross-fitting) is in
:mod:`ttcrouter.verifier_samples`.

The executor-side scorer is :class:`ttcrouter.executors.VerifierScorer`; docs/verifier.md.
"""

from __future__ import annotations

import logging
import numbers
import os
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .atomic import atomic_path
from .executors.search.utils import split_steps
from .step_features import STAT_NAMES, GeneratorStepFeatures, StepFeatures

__all__ = ["TrainedVerifier", "save_verifier", "load_verifier"]

logger = logging.getLogger(__name__)


def _check_X(X, *, allow_steps=False) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a DataFrame with 'question' and 'solution' text columns "
                        f"(and optionally 'mode', 'query_id'); got {type(X).__name__}. Build "
                        "one from a samples table with verifier_data(samples).")
    missing = [c for c in ("question", "solution") if c not in X.columns]
    if missing:
        raise ValueError(f"X lacks column(s) {missing}; it needs 'question' and 'solution' "
                         f"text columns (it has {list(X.columns)}).")
    if len(X) == 0:
        raise ValueError("X is empty; pass at least one (question, solution) row.")
    for col in ("question", "solution"):
        for i, v in enumerate(X[col]):
            ok = isinstance(v, str) or (allow_steps and col == "solution" and isinstance(
                v, (list, tuple)) and all(isinstance(s, str) for s in v))
            if not ok:
                raise TypeError(f"X[{col!r}] row {i} is a {type(v).__name__} ({v!r:.60}), not "
                                "a string; every question and solution must be text.")
            if col == "question" and not v.strip():
                raise ValueError(f"X['question'] row {i} is empty; every row needs its question.")
    if "mode" in X.columns and X["mode"].isna().any():
        raise ValueError("X['mode'] has missing values; give every row its prompt mode "
                         "('cot' or 'direct') or drop the column (all 'cot').")
    return X.reset_index(drop=True)


def _check_y(y, n) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"y must be one 0/1 label per row of X ({n}); got shape {y.shape}.")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold 0 (wrong) and 1 (correct) only, e.g. the samples "
                         "table's 'correct' column.")
    y = y.astype(np.int64)
    if len(np.unique(y)) < 2:
        raise ValueError(f"y holds one class only (all {y[0]}); the verifier needs correct and "
                         "wrong solutions to learn from.")
    return y


class TrainedVerifier(ClassifierMixin, BaseEstimator):
    """Learn P(correct | question, partial or complete solution) from graded samples.

    Parameters
    ----------
    model : str, path or None, default=None
        The generator whose states are read (a local causal-LM folder or cached name); None
        is the embedded SmolLM2-135M-Instruct. Use the model that wrote the solutions.
    layer : int, default=-1
        Hidden layer read (index into the model's ``hidden_states``; -1 the last).
    step_delimiter : str, default="\\n"
        Where solutions are cut into steps (as ``StrategyExecutor(step_delimiter=...)``).
    prompts : dict or None, default=None
        Prompt mode -> system prompt or ``PromptMode``; None: what the collection used
        (:func:`ttcrouter.step_features.default_prompt_modes`).
    C : float, default=0.005
        Inverse L2 strength of the logistic regression (features are standardised). Strong
        regularisation: a few hundred features against a few thousand correlated prefixes
        (0.005 beat 0.05 and 0.001 in held-out AUROC on the arith400 samples, see
        docs/verifier_eval.md).
    cv : int, default=3
        Calibration folds, grouped by query (fewer when there are fewer queries).
    max_iter : int, default=2000
    batch_size : int, default=16
        Texts per forward pass.
    max_length : int, default=1024
        Tokens kept per text (prompt and solution).
    device : str, default="cpu"
        Torch device ("cuda" on a GPU, "auto": cuda when available).
    dtype : {"float32", "float16", "bfloat16", "auto"} or None, default=None
        Weights' dtype (None: float32).
    n_threads : int or None, default=None
        Torch CPU threads while extracting features.
    show_progress : bool, default=False
        tqdm bar over forward-pass batches.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[0, 1]``.
    calibration_groups_ : list of ndarray
        The queries of each calibration fold: the out-of-fold scores the sigmoid is fitted
        on come from heads that never saw their queries.
    calibrated_ : CalibratedClassifierCV
        The fitted head.
    features_ : GeneratorStepFeatures
        The feature extractor (weights reloaded lazily after unpickling).
    train_groups_ : ndarray
        The distinct groups (query ids) it was trained on: check new queries against it.
    n_prefixes_ : int
        Training rows after expanding solutions into step prefixes.
    n_features_ : int
        Hidden size plus the 5 log-probability statistics.
    """

    _parameter_constraints = {
        "model": [str, os.PathLike, None],
        "layer": [numbers.Integral],
        "step_delimiter": [str],
        "prompts": [dict, None],
        "C": [Interval(numbers.Real, 0, None, closed="neither")],
        "cv": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_length": [Interval(numbers.Integral, 2, None, closed="left")],
        "device": [str],
        "dtype": [str, None],
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "show_progress": ["boolean"],
    }

    def __init__(self, model=None, layer=-1, step_delimiter="\n", prompts=None, C=0.005, cv=3,
                 max_iter=2000, batch_size=16, max_length=1024, device="cpu", dtype=None,
                 n_threads=None, show_progress=False):
        self.model = model
        self.layer = layer
        self.step_delimiter = step_delimiter
        self.prompts = prompts
        self.C = C
        self.cv = cv
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads
        self.show_progress = show_progress

    # -- features -----------------------------------------------------------------------------
    def _extractor(self) -> GeneratorStepFeatures:
        if not self.step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string, e.g. '\\n'.")
        return GeneratorStepFeatures(
            model=self.model, layer=self.layer, prompts=self.prompts,
            batch_size=self.batch_size, max_length=self.max_length, device=self.device,
            dtype=self.dtype, n_threads=self.n_threads, show_progress=self.show_progress)

    def _steps(self, solutions) -> list[list[str]]:
        return [list(s) if isinstance(s, (list, tuple)) else split_steps(s, self.step_delimiter)
                for s in solutions]

    def extract_features(self, X) -> StepFeatures:
        """The generator's features at every step end of every row (one forward pass each).

        Pass the result as ``features=`` to :meth:`fit`, :meth:`predict_proba` or
        :meth:`predict_step_proba` (or to :func:`cross_fit_scores`) to read each text once.

        Parameters
        ----------
        X : DataFrame
            ``question`` and ``solution`` (text, or a list of step strings) columns;
            optional ``mode``.

        Returns
        -------
        StepFeatures
        """
        X = _check_X(X, allow_steps=True)
        extractor = getattr(self, "features_", None) or self._extractor()
        modes = X["mode"].tolist() if "mode" in X.columns else ["cot"] * len(X)
        return extractor.extract(X["question"].tolist(), self._steps(X["solution"]), modes)

    # -- fit ----------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, *, features=None):
        """Fit on every step prefix of every solution, labelled with the solution's outcome.

        Parameters
        ----------
        X : DataFrame
            ``question`` and ``solution`` text columns; optional ``mode`` (prompt mode) and
            ``query_id``.
        y : array-like of shape (n_rows,)
            1 when the solution's final answer is correct, else 0.
        groups : array-like of shape (n_rows,), optional
            The query of each row (calibration folds never split one); default
            ``X["query_id"]``, else the question text.
        features : StepFeatures, optional
            :meth:`extract_features` of this ``X``, to skip the forward passes.

        Returns
        -------
        self : TrainedVerifier
        """
        X = _check_X(X)
        y = _check_y(y, len(X))
        if groups is None:
            groups = X["query_id"] if "query_id" in X.columns else X["question"]
        groups = np.asarray(groups).astype(str)
        if len(groups) != len(X):
            raise ValueError(f"groups has {len(groups)} entries for {len(X)} rows of X.")
        extractor = self._extractor()
        hidden = extractor.hidden_size()  # checks model and layer before any weights load
        self.features_ = extractor
        if features is None:
            features = self.extract_features(X)
        if features.n_rows != len(X):
            raise ValueError(f"features describe {features.n_rows} rows, X has {len(X)}.")
        Z, rows = features.matrix(), features.row
        y_rows, g_rows = y[rows], groups[rows]
        n_groups = len(np.unique(g_rows))
        if n_groups < 2:
            raise ValueError("All rows belong to one query; calibration folds are grouped by "
                             "query, so give solutions of at least 2 queries.")
        splits = list(GroupKFold(n_splits=min(self.cv, n_groups)).split(Z, y_rows, g_rows))
        for k, (train, _) in enumerate(splits):
            if len(np.unique(y_rows[train])) < 2:
                raise ValueError(f"Calibration fold {k}: its training queries have only one "
                                 "class of solution. Give more queries, or fewer folds (cv).")
        head = make_pipeline(StandardScaler(),
                             LogisticRegression(C=self.C, max_iter=self.max_iter))
        # ensemble=False: one head fitted on all rows (so the ranking is that head's) and
        # one sigmoid fitted on all out-of-fold scores, rather than an average of heads each
        # fitted on a share of few queries with its own small calibration fold
        self.calibrated_ = CalibratedClassifierCV(head, method="sigmoid", cv=splits,
                                                  ensemble=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*did not converge.*")
            self.calibrated_.fit(Z, y_rows)
        # the fitted calibrator never reads its splits again; kept, they are index arrays
        # over every prefix (1.8 MB of a 51,200-sample verifier's 1.9 MB file)
        self.calibrated_.cv = len(splits)
        self.calibration_groups_ = [np.unique(g_rows[cal]) for _, cal in splits]
        self.classes_ = np.array([0, 1])
        self.train_groups_ = np.unique(groups)
        self.n_prefixes_ = int(len(rows))
        self.n_features_ = int(hidden + len(STAT_NAMES))
        return self

    # -- predict ------------------------------------------------------------------------------
    def _features_for(self, X, features):
        check_is_fitted(self, "calibrated_")
        X = _check_X(X, allow_steps=True)
        if features is None:
            features = self.extract_features(X)
        elif features.n_rows != len(X):
            raise ValueError(f"features describe {features.n_rows} rows, X has {len(X)}.")
        if features.hidden.shape[1] + len(STAT_NAMES) != self.n_features_:
            raise ValueError(f"features have {features.hidden.shape[1] + len(STAT_NAMES)} "
                             f"columns; this verifier was fitted on {self.n_features_}.")
        return features

    def predict_step_proba(self, X, *, features=None, return_tokens=False):
        """P(correct) after each step of each row's solution.

        Parameters
        ----------
        X : DataFrame
            ``question`` and ``solution`` (text, or a list of step strings) columns;
            optional ``mode``.
        features : StepFeatures, optional
            :meth:`extract_features` of this ``X``.
        return_tokens : bool, default=False
            Also return the tokens each row's forward pass read.

        Returns
        -------
        step_proba : list of ndarray
            One array per row, one probability per step (the last: the whole solution).
        tokens : ndarray of shape (n_rows,), int
            Only with ``return_tokens``.
        """
        features = self._features_for(X, features)
        p = self.calibrated_.predict_proba(features.matrix())[:, 1]
        bounds = features.bounds()
        out = [p[bounds[i]:bounds[i + 1]] for i in range(features.n_rows)]
        return (out, features.tokens_read.copy()) if return_tokens else out

    def predict_proba(self, X, *, features=None):
        """P(wrong), P(correct) of each complete solution.

        Returns
        -------
        proba : ndarray of shape (n_rows, 2)
        """
        last = np.array([p[-1] for p in self.predict_step_proba(X, features=features)])
        return np.column_stack([1 - last, last])

    def predict(self, X, *, features=None):
        """1 where P(correct) >= 0.5, else 0."""
        return (self.predict_proba(X, features=features)[:, 1] >= 0.5).astype(np.int64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


# -- the samples table ----------------------------------------------------------------------
def save_verifier(verifier: TrainedVerifier, path) -> Path:
    """Write a fitted verifier to a joblib file atomically (no generator weights inside)."""
    check_is_fitted(verifier, "calibrated_")
    path = Path(path)
    with atomic_path(path) as tmp:
        joblib.dump(verifier, tmp)
    return path


def load_verifier(path) -> TrainedVerifier:
    """Read a verifier file written by :func:`save_verifier` (or ``joblib.dump``).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    TypeError
        The file holds something else than a fitted :class:`TrainedVerifier`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No verifier file at {str(path)!r}; train one with "
                                "`ttcrouter train-verifier SAMPLES --out verifier.joblib`.")
    obj = joblib.load(path)
    if not isinstance(obj, TrainedVerifier):
        raise TypeError(f"{str(path)!r} holds a {type(obj).__name__}, not a TrainedVerifier; "
                        "train one with `ttcrouter train-verifier`.")
    check_is_fitted(obj, "calibrated_")
    return obj
