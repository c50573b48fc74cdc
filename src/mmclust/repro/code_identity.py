"""Code identity: a fingerprint of the source code that computes a run's result.

A run's identity holds this fingerprint, so a change to a method, or to anything it uses from mmclust (ops, nets,
data, metrics, ...), starts new runs instead of reusing results the current code never produced.

What is hashed is the code a result depends on, at the level of top-level definitions: starting from the
method's class, every function, class or constant it names is followed, within its own module and through
imports into other mmclust modules, transitively. Each definition is hashed as its syntax tree without
docstrings. So editing a function CIGIT-C calls starts new CIGIT-C runs; adding a function to ``ops`` for
another method, or rewording a docstring or comment, does not. Followed: plain names, attribute chains
(``ops.kl_divergence``, ``mmclust.ops.kl_divergence``), imports anywhere in a module, definitions inside
top-level ``if`` / ``try`` blocks, and every statement that rebinds a module-level name. Not followed: names
built at run time (``getattr(ops, name)``); methods must not look code up that way. The runner's own steps that shape a result
(loading data, the missing-view and split protocols, the metrics) are always included whole: ``mmclust.data``
and ``mmclust.metrics``. The harness (``mmclust.repro``, ``mmclust.cli``) is not: a change to the report or
the command line keeps every stored run.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import pkgutil

__all__ = ["code_fingerprint", "code_definitions"]

PACKAGE = "mmclust"
# What every run uses whatever the method, hashed whole: the data package (files, protocols and splits, the
# registry and its loaders, side-file readers such as WordNet's) and the metrics. Every module of the package
# is listed from its folder, so a loader added later is covered without being named here.
ALWAYS_PACKAGES = ("mmclust.data",)
ALWAYS_MODULES = ("mmclust.metrics",)
ALWAYS = None  # None: computed by _always(); a tuple (tests) replaces it

_EXCLUDED = ("mmclust.repro", "mmclust.cli")


def _top_level(body):
    """Top-level statements, looking inside top-level ``if`` / ``try`` / ``with`` blocks (conditional definitions)."""
    for node in body:
        if isinstance(node, (ast.If, ast.With)):
            yield from _top_level(node.body + getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
        else:
            yield node


@functools.lru_cache(maxsize=128)
def _module(name: str):
    """``(tree, {top-level name: [nodes]}, {imported name: (module, attr or None)}, package)`` or None.

    A name bound more than once at the top level (``SCALE = 2.0`` then ``SCALE *= 1.5``, ``TABLE["a"] = 5``)
    keeps every statement that binds or changes it, in order.
    """
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
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.setdefault(node.name, []).append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name):
                        defs.setdefault(t.id, []).append(node)
    for node in ast.walk(tree):  # imports anywhere, function-local ones too
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            for alias in node.names:
                imports[alias.asname or alias.name] = (base, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                imports[alias.asname or alias.name.partition(".")[0]] = (alias.name if alias.asname else alias.name.partition(".")[0], None)
    return tree, defs, imports, package


def _always() -> tuple[str, ...]:
    out = set(ALWAYS_MODULES)
    for package in ALWAYS_PACKAGES:
        out.add(package)
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            out.update(f"{package}.{m.name}" for m in pkgutil.iter_modules([location]))
    return tuple(sorted(out))


def _ours(module: str | None) -> bool:
    return bool(module) and (module == PACKAGE or module.startswith(PACKAGE + ".")) and not module.startswith(_EXCLUDED)


def _canonical(node) -> str:
    """A syntax tree as text that is the same on every Python version for the same source.

    ``ast.dump`` is not: 3.12 adds empty ``type_params`` to every definition and 3.13 leaves out empty and
    None fields, so a run's identity would change with the interpreter (runs made on another machine would
    read as stale). Fields that are None or empty are left out here on every version.
    """
    if isinstance(node, ast.AST):
        fields = [f"{name}={_canonical(value)}" for name, value in ast.iter_fields(node) if value is not None and value != []]
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(v) for v in node) + "]"
    return repr(node)


def _strip_docstrings(node: ast.AST) -> ast.AST:
    """A copy without docstrings, and without classes' ``_parameter_constraints`` tables: a table only refuses
    values before a run starts (mmclust.repro.validate), so the runs it admits compute exactly what they did."""
    node = ast.parse(ast.unparse(node))  # a copy
    for n in ast.walk(node):
        if isinstance(n, ast.ClassDef):
            n.body = [s for s in n.body if not _is_constraints_table(s)] or [ast.Pass()]
        body = getattr(n, "body", None)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            n.body = body[1:] or [ast.Pass()]
    return node


def _is_constraints_table(stmt: ast.stmt) -> bool:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    return any(isinstance(t, ast.Name) and t.id == "_parameter_constraints" for t in targets)


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


def _names_used(node: ast.AST) -> set[tuple[str, ...]]:
    """Every name chain used: ``("x",)`` for a name, ``("mmclust", "ops", "kl_divergence")`` for an attribute chain."""
    chains = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            chains.add((n.id,))
        elif isinstance(n, ast.Attribute):
            parts, cur = [], n
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                chains.add((cur.id, *reversed(parts)))
    return chains


def _follow(module: str, chain: tuple[str, ...]) -> list[tuple[str, str]]:
    """The definition a name chain used in ``module`` reaches (following modules along the chain), if ours."""
    targets = _resolve(module, chain[0])
    for attr in chain[1:]:
        if not targets or targets[0][1] is not None:
            break  # reached a definition: further attributes are its own (methods, fields)
        mod = targets[0][0]
        sub = f"{mod}.{attr}"
        targets = [(sub, None)] if _ours(sub) and _module(sub) is not None else _resolve(mod, attr)
    # a module named bare is not a dependency on all of it; only what is used through it is
    return [t for t in targets if t[1] is not None]


@functools.lru_cache(maxsize=64)
def code_definitions(module: str, name: str | None = None) -> tuple[str, ...]:
    """Every ``module:definition`` the given class/function depends on (``module:*`` for a whole module), sorted."""
    seen: set[tuple[str, str | None]] = set()
    todo = [(module, name)] + [(m, None) for m in (_always() if ALWAYS is None else ALWAYS)]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        info = _module(key[0])
        if info is None:
            continue
        seen.add(key)
        if key[1] is None:
            continue  # a whole module is hashed whole; its own uses are inside it
        _, defs, _, _ = info
        for node in defs[key[1]]:
            for chain in _names_used(node):
                todo.extend(k for k in _follow(key[0], chain) if k not in seen)
    return tuple(sorted(f"{m}:{d or '*'}" for m, d in seen))


@functools.lru_cache(maxsize=64)
def code_fingerprint(module: str, name: str | None = None) -> str:
    """sha256 (16 hex digits) over the docstring-free syntax of :func:`code_definitions`."""
    h = hashlib.sha256()
    for item in code_definitions(module, name):
        mod, _, d = item.partition(":")
        tree, defs, _, _ = _module(mod)
        for node in [tree] if d == "*" else defs[d]:
            h.update(item.encode() + b"\0" + _canonical(_strip_docstrings(node)).encode() + b"\0")
    return h.hexdigest()[:16]
