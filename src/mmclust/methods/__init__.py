"""Clustering methods, one module per paper plus baselines. ``get_method(name)`` builds one by name."""

from __future__ import annotations

from ..data import DataError
from .base import DivergenceError, MultiModalClusterer
from .baselines import KMeansBaseline

METHODS: dict[str, type] = {"kmeans": KMeansBaseline}


def _register_optional() -> None:
    # Method modules register themselves here; importing lazily keeps `import mmclust` light.
    import importlib

    for mod, name, cls in (("cigit_c", "cigit_c", "CIGITC"), ("jecl", "jecl", "JECL"), ("dec", "dec", "DEC"),
                           ("dm2c", "dm2c", "DM2C"), ("dmim", "dmim", "DMIM"), ("mca", "mca", "MCA")):
        try:
            module = importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{mod}":
                raise
            continue
        METHODS[name] = getattr(module, cls)


_register_optional()


def get_method(name: str, **params) -> MultiModalClusterer:
    """An estimator by registry name with ``params``; unknown names list the valid ones."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise DataError(f"unknown method {name!r}; valid: {', '.join(sorted(METHODS))}") from None
    return cls(**params)


__all__ = ["METHODS", "get_method", "MultiModalClusterer", "DivergenceError", "KMeansBaseline"]
