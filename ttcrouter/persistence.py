"""Router files: save a fitted router with its versions and metadata, and load it back.

A router file is a joblib file holding a small header (format, ttcrouter, scikit-learn and
Python versions, creation date, metadata) and the pickled router as bytes. :func:`load_router`
reads and checks the header first, so a file made by an incompatible ttcrouter version fails
with a message naming both versions instead of an unpickling error.

Compatibility: a file loads when it was made by the same major version of ttcrouter (for
0.x, the same minor version too). The format string :data:`ROUTER_FORMAT` changes only when
the header does.
"""

from __future__ import annotations

import io
import platform
import warnings
from pathlib import Path

import joblib
import sklearn

from ._version import __version__
from .atomic import atomic_path
from .provenance import now

__all__ = [
    "ROUTER_FORMAT",
    "RouterFileError",
    "save_router",
    "load_router",
    "router_metadata",
    "router_lambda",
    "is_compatible",
]

#: Value of the ``format`` key of a router file.
ROUTER_FORMAT = "ttcrouter-router/1"


class RouterFileError(ValueError):
    """A router file is missing, not a ttcrouter router, or from an incompatible version."""


def _major_minor(version: str) -> tuple:
    parts = str(version).split("+")[0].split(".")
    out = []
    for p in parts[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (2 - len(out)))


def is_compatible(made_by: str, running: str = __version__) -> bool:
    """Whether ttcrouter ``running`` reads router files made by ttcrouter ``made_by``.

    Same major version, and for 0.x the same minor version too.
    """
    a, b = _major_minor(made_by), _major_minor(running)
    return a == b if a[0] == 0 else a[0] == b[0]


def _final_step(router):
    steps = getattr(router, "steps", None)
    return steps[-1][1] if steps else router


def router_lambda(router, name: str) -> float | None:
    """The lambda a fitted router routes with.

    Parameters
    ----------
    router : estimator
        A fitted router, a tuned router (``UtilityRouterCV``: the lambda it chose), or a
        Pipeline ending in one.
    name : {"lambda_tokens", "lambda_latency"}

    Returns
    -------
    float or None
        None when the router has no such lambda.
    """
    final = _final_step(router)
    for value in (getattr(final, f"best_{name}_", None),
                  getattr(getattr(final, "best_estimator_", None), name, None),
                  getattr(final, name, None)):
        if value is not None:
            return float(value)
    return None


def router_metadata(router) -> dict:
    """Strategies, lambdas, budget and encoder of a fitted router (best effort, JSON-ready).

    Parameters
    ----------
    router : estimator
        A fitted router or a Pipeline ending in one.

    Returns
    -------
    dict
        Keys among ``strategies``, ``lambda_tokens``, ``lambda_latency``,
        ``max_mean_latency``, ``max_mean_tokens``, ``encoder`` and ``router`` (short reprs).
    """
    meta = {}
    final = _final_step(router)
    strategies = getattr(final, "strategies_", None)
    if strategies is None and hasattr(final, "best_estimator_"):
        strategies = getattr(final.best_estimator_, "strategies_", None)
    if strategies is not None:
        meta["strategies"] = [str(s) for s in strategies]
    for name in ("lambda_tokens", "lambda_latency"):
        value = router_lambda(final, name)
        if value is not None:
            meta[name] = value
    for name in ("max_mean_latency", "max_mean_tokens"):
        if getattr(final, name, None) is not None:
            meta[name] = float(getattr(final, name))
    steps = getattr(router, "steps", None)
    if steps and len(steps) > 1:
        meta["encoder"] = " ".join(repr(steps[0][1]).split())[:300]
    meta["router"] = " ".join(repr(final).split())[:300]
    return meta


def save_router(obj, path, metadata=None) -> Path:
    """Save a fitted router (a Pipeline, or a router with its encoder) to a joblib file.

    Parameters
    ----------
    obj : estimator
        A fitted ``Pipeline([("embed", ...), ("router", UtilityRouter())])`` (strings in,
        strategy names out), or a fitted router fed with features.
    path : str or Path
        Destination file (conventionally ``*.joblib``); written atomically.
    metadata : dict, optional
        Extra JSON-ready facts (runs file, budget, ...). Strategies, lambdas and the encoder
        are filled in from the router when not given.

    Returns
    -------
    Path
    """
    meta = router_metadata(obj)
    meta.update(metadata or {})
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    payload = {
        "format": ROUTER_FORMAT,
        "ttcrouter_version": __version__,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        "created": now(),
        "metadata": meta,
        "router": buffer.getvalue(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        joblib.dump(payload, tmp)
    return path


def load_router(path) -> dict:
    """Load a router file written by :func:`save_router`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        ``{"format", "ttcrouter_version", "sklearn_version", "python_version", "created",
        "metadata", "router"}`` with ``router`` the fitted estimator.

    Raises
    ------
    RouterFileError
        If the file does not exist, is not a ttcrouter router file, was made by an
        incompatible ttcrouter version (the message names the version that made it and the
        one running), or cannot be unpickled here.
    """
    path = Path(path)
    if not path.is_file():
        raise RouterFileError(f"No router file at {str(path)!r}; make one with `ttcrouter fit`.")
    try:
        payload = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise RouterFileError(
            f"{str(path)!r} is not a readable ttcrouter router file ({type(exc).__name__}: "
            f"{exc}); make one with `ttcrouter fit` or ttcrouter.save_router."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != ROUTER_FORMAT:
        raise RouterFileError(
            f"{str(path)!r} is not a ttcrouter router file (expected format "
            f"{ROUTER_FORMAT!r}); make one with `ttcrouter fit` or "
            f"ttcrouter.save_router(router, path)."
        )
    made_by = str(payload.get("ttcrouter_version"))
    sk_made = str(payload.get("sklearn_version"))
    if not is_compatible(made_by, __version__):
        raise RouterFileError(
            f"Router file {str(path)!r} was made by ttcrouter {made_by} (scikit-learn "
            f"{sk_made}); this is ttcrouter {__version__} (scikit-learn {sklearn.__version__}), "
            f"which cannot read it. Refit it with `ttcrouter fit`, or install ttcrouter=={made_by}."
        )
    try:
        router = joblib.load(io.BytesIO(payload["router"]))
    except Exception as exc:  # noqa: BLE001
        raise RouterFileError(
            f"Router file {str(path)!r} (made by ttcrouter {made_by}, scikit-learn "
            f"{sk_made}) cannot be loaded with scikit-learn {sklearn.__version__} "
            f"({type(exc).__name__}: {exc}). Refit it with `ttcrouter fit`."
        ) from exc
    if sk_made != sklearn.__version__:
        warnings.warn(
            f"Router file {str(path)!r} was made with scikit-learn {sk_made}, running "
            f"{sklearn.__version__}; predictions may differ. Refit to be safe.",
            UserWarning, stacklevel=2,
        )
    out = dict(payload)
    out["router"] = router
    return out
