"""Code identity: a fingerprint of the source code that computes a run's result.

A run's identity holds this fingerprint, so a change to a method (or to anything it imports from mmclust:
ops, nets, data, metrics, ...) starts new runs instead of reusing results the current code never produced.
The modules are found by reading the ``import`` statements of the method's module, transitively, inside the
``mmclust`` package; the harness itself (``mmclust.repro``, ``mmclust.cli``) is left out, so a change to the
report or the command line keeps every stored run.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util

__all__ = ["code_fingerprint", "code_modules"]

PACKAGE = "mmclust"
# Read by the runner for every run, whatever the method: how rows go missing, how data load, how runs are scored.
ALWAYS = ("mmclust.metrics", "mmclust.data")
_EXCLUDED = ("mmclust.repro", "mmclust.cli")


def _source_of(module: str) -> tuple[str, bytes] | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, "rb") as fh:
        return spec.origin, fh.read()


def _is_package(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


def _imports_of(module: str, source: bytes) -> set[str]:
    """mmclust modules that ``module`` imports (absolute names), wherever the import statement sits."""
    package = module if _is_package(module) else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            if not base:
                continue
            found.add(base)
            # `from .. import ops` names a module, `from .nets import mlp` a function: keep what is a module
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if (m == PACKAGE or m.startswith(PACKAGE + ".")) and not m.startswith(_EXCLUDED)}


@functools.lru_cache(maxsize=64)
def code_modules(module: str) -> tuple[str, ...]:
    """``module`` and every mmclust module it reaches by imports (plus :data:`ALWAYS`), sorted."""
    seen, todo = set(), [module, *ALWAYS]
    while todo:
        name = todo.pop()
        if name in seen or name == PACKAGE:
            continue
        got = _source_of(name)
        if got is None:
            continue  # a name imported from a module, not a module itself
        seen.add(name)
        todo.extend(_imports_of(name, got[1]) - seen)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=64)
def code_fingerprint(module: str) -> str:
    """sha256 over the sources of :func:`code_modules` (name and bytes of each); 16 hex digits."""
    h = hashlib.sha256()
    for name in code_modules(module):
        h.update(name.encode() + b"\0" + _source_of(name)[1] + b"\0")
    return h.hexdigest()[:16]
