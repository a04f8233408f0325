"""Lazy re-export of public names, so importing a package stays light.

``ttcrouter`` and ``ttcrouter.executors`` name each public object and the submodule that
defines it; the submodule (and what it imports: scikit-learn, torch, vLLM) is imported the
first time the name is used.
"""

from importlib import import_module

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict, namespace: dict):
    """Module ``__getattr__`` and ``__dir__`` that import ``exports`` on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        Public name -> submodule (relative to ``package``) that defines it.
    namespace : dict
        The package's ``globals()``; a name, once imported, is cached there.

    Returns
    -------
    (callable, callable)
        ``__getattr__`` and ``__dir__`` for the package module.
    """

    def __getattr__(name):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(namespace.get("__all__", exports))

    return __getattr__, __dir__
