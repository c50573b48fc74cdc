"""Code identity: which definitions a method's fingerprint covers, on a probe package written for the test."""

import ast
import hashlib
import importlib
import textwrap

import pytest

from mmclust.repro import code_identity as ci

OPS = '''
"""ops docstring"""
SCALE = 2.0
SCALE = SCALE * 3.0

def used(x):
    """doc"""
    return x * SCALE

def unused(x):
    return -x

if True:
    def conditional(x):
        return x + 1
'''

METHOD = '''
import PKG.ops
from . import ops
from .ops import conditional

class Method:
    def fit(self, x):
        return PKG.ops.used(x) + conditional(x)
'''


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """``probe(ops=..., method=...)`` writes a fresh package (a new name each time: no import cache can answer)
    and returns ``(definitions, fingerprint)`` of its ``Method`` as ``probe_pkg.*`` names."""
    count = iter(range(100))
    tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]  # unique across tests: sys.modules keeps old ones
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(ci, "ALWAYS", ())

    def write(ops=OPS, method=METHOD):
        name = f"probe_{tag}_{next(count)}"
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "ops.py").write_text(textwrap.dedent(ops))
        (pkg / "method.py").write_text(textwrap.dedent(method).replace("PKG", name))
        monkeypatch.setattr(ci, "PACKAGE", name)
        importlib.invalidate_caches()
        for f in (ci._module, ci.code_definitions, ci.code_fingerprint):
            f.cache_clear()
        defs = ci.code_definitions(f"{name}.method", "Method")
        # the fingerprint hashes names too: compare the code, under one package name
        text = "".join(ast.dump(ci._strip_docstrings(n)) for d in defs for n in _nodes(d))
        return tuple(d.replace(name, "probe_pkg") for d in defs), hashlib.sha256(text.replace(name, "probe_pkg").encode()).hexdigest()

    yield write
    for f in (ci._module, ci.code_definitions, ci.code_fingerprint):
        f.cache_clear()


def _nodes(item):
    mod, _, d = item.partition(":")
    tree, defs, _, _ = ci._module(mod)
    return [tree] if d == "*" else defs[d]


def test_definitions_follow_chains_conditionals_and_rebinding(probe):
    defs, _ = probe()
    assert {"probe_pkg.ops:used", "probe_pkg.ops:SCALE", "probe_pkg.ops:conditional", "probe_pkg.method:Method"} <= set(defs)
    assert "probe_pkg.ops:unused" not in defs and "probe_pkg.ops:*" not in defs


@pytest.mark.parametrize("edit,changes", [
    (lambda s: s.replace("SCALE = SCALE * 3.0", "SCALE = SCALE * 4.0"), True),  # the second binding counts too
    (lambda s: s.replace("return x + 1", "return x + 2"), True),  # a definition inside a top-level if
    (lambda s: s.replace("return x * SCALE", "return x / SCALE"), True),  # reached through probe_pkg.ops.used
    (lambda s: s.replace("return -x", "return x"), False),  # nothing the method uses
    (lambda s: s.replace('"""doc"""', '"""reworded"""'), False),  # docstrings are not code
])
def test_fingerprint_changes_exactly_with_the_code_used(probe, edit, changes):
    _, base = probe()
    _, after = probe(ops=edit(OPS))
    assert (after != base) == changes


