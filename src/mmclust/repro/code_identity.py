"""Code identity: a fingerprint of the source code that computes a run's result.

A run's identity holds this fingerprint, so a change to a method, or to anything it uses from mmclust (ops, nets,
data, metrics, ...), starts new runs instead of reusing results the current code never produced.

What is hashed is the code a result depends on, at the level of top-level definitions: starting from the
method's class, every function, class or constant it names is followed, within its own module and through
imports into other mmclust modules, transitively. Each definition is hashed as its syntax tree without
docstrings. So editing a function CIGIT-C calls starts new CIGIT-C runs; adding a function to ``ops`` for
another method, or rewording a docstring or comment, does not. The runner's own steps that shape a result
(loading data, the missing-view and split protocols, the metrics) are always included whole: ``mmclust.data``
and ``mmclust.metrics``. The harness (``mmclust.repro``, ``mmclust.cli``) is not: a change to the report or
the command line keeps every stored run.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util

__all__ = ["code_fingerprint", "code_definitions"]

PACKAGE = "mmclust"
ALWAYS = ("mmclust.data", "mmclust.data.dataset", "mmclust.data.protocols", "mmclust.data.registry",
          "mmclust.data.synthetic", "mmclust.metrics")
_EXCLUDED = ("mmclust.repro", "mmclust.cli")


@functools.lru_cache(maxsize=128)
def _module(name: str):
    """``(tree, {top-level name: node}, {imported name: (module, attr or None)}, package)`` or None."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, "rb") as fh:
        tree = ast.parse(fh.read())
    package = name if spec.submodule_search_locations is not None else name.rpartition(".")[0]
    defs, imports = {}, {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name):
                        defs[t.id] = node
    for node in ast.walk(tree):  # imports anywhere, function-local ones too
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            for alias in node.names:
                imports[alias.asname or alias.name] = (base, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                imports[alias.asname or alias.name.partition(".")[0]] = (alias.name if alias.asname else alias.name.partition(".")[0], None)
    return tree, defs, imports, package


def _ours(module: str | None) -> bool:
    return bool(module) and (module == PACKAGE or module.startswith(PACKAGE + ".")) and not module.startswith(_EXCLUDED)


def _strip_docstrings(node: ast.AST) -> ast.AST:
    node = ast.parse(ast.unparse(node))  # a copy
    for n in ast.walk(node):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            n.body = body[1:] or [ast.Pass()]
    return node


def _resolve(module: str, name: str) -> list[tuple[str, str | None]]:
    """Where ``name`` (as used in ``module``) is defined: ``(module, definition)``; definition None = whole module."""
    info = _module(module)
    if info is None:
        return []
    _, defs, imports, _ = info
    if name in defs:
        return [(module, name)]
    if name in imports:
        base, attr = imports[name]
        if attr is None:
            return [(base, None)] if _ours(base) else []
        sub = f"{base}.{attr}"
        if _ours(sub) and _module(sub) is not None:
            return [(sub, None)]  # `from .. import ops`: a module
        return _resolve(base, attr) if _ours(base) else []
    return []


def _names_used(node: ast.AST) -> tuple[set[str], set[tuple[str, str]]]:
    """Plain names, and ``(name, attribute)`` pairs such as ``ops.kl_divergence``."""
    names, attrs = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
            attrs.add((n.value.id, n.attr))
    return names, attrs


@functools.lru_cache(maxsize=64)
def code_definitions(module: str, name: str | None = None) -> tuple[str, ...]:
    """Every ``module:definition`` the given class/function depends on (``module:*`` for a whole module), sorted."""
    seen: set[tuple[str, str | None]] = set()
    todo = [(module, name)] + [(m, None) for m in ALWAYS]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        info = _module(key[0])
        if info is None:
            continue
        seen.add(key)
        tree, defs, _, _ = info
        node = tree if key[1] is None else defs[key[1]]
        if key[1] is None:
            continue  # a whole module is hashed whole; its own uses are inside it
        names, attrs = _names_used(node)
        for n in names:
            # a module named bare (`ops` in `ops.kl_divergence`) is followed through its attributes below
            todo.extend(k for k in _resolve(key[0], n) if k not in seen and k[1] is not None)
        for base, attr in attrs:
            for mod, d in _resolve(key[0], base):
                if d is None:  # `ops.kl_divergence`: follow into the module
                    todo.extend(k for k in _resolve(mod, attr) if k not in seen)
    return tuple(sorted(f"{m}:{d or '*'}" for m, d in seen))


@functools.lru_cache(maxsize=64)
def code_fingerprint(module: str, name: str | None = None) -> str:
    """sha256 (16 hex digits) over the docstring-free syntax of :func:`code_definitions`."""
    h = hashlib.sha256()
    for item in code_definitions(module, name):
        mod, _, d = item.partition(":")
        tree, defs, _, _ = _module(mod)
        node = tree if d == "*" else defs[d]
        h.update(item.encode() + b"\0" + ast.dump(_strip_docstrings(node)).encode() + b"\0")
    return h.hexdigest()[:16]
