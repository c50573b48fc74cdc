"""Code identity: which definitions a method's fingerprint covers, on a probe package written for the test."""

import ast
import hashlib
import importlib
import sys
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




def test_canonical_form_ignores_fields_a_python_version_adds_empty():
    """3.12 adds ``type_params=[]`` to every definition and 3.13's dump leaves out empty fields: neither may
    change a fingerprint, or runs made under another interpreter would read as stale."""
    a = ast.parse("def f(x):\n    return x\n").body[0]
    b = ast.parse("def f(x):\n    return x\n").body[0]
    b._fields = a._fields + ("type_params",)
    b.type_params = []
    if sys.version_info < (3, 13):  # 3.13's dump already leaves empty fields out
        assert ast.dump(a) != ast.dump(b)  # what the fingerprint used to read
    assert ci._canonical(a) == ci._canonical(b)
    c = ast.parse("def f(x):\n    return -x\n").body[0]
    assert ci._canonical(a) != ci._canonical(c)


_STANDALONE = '''
import sys, importlib.util, importlib.machinery
SRC = sys.argv[1]
def find_spec(name, package=None):  # locate mmclust's files without importing it (no numpy/torch needed)
    parts, path, spec = name.split("."), [SRC], None
    for i in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]), path)
        if spec is None:
            return None
        path = spec.submodule_search_locations or []
    return spec
importlib.util.find_spec = find_spec
spec = importlib.util.spec_from_file_location("code_identity", SRC + "/mmclust/repro/code_identity.py")
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
print(" ".join(m.code_fingerprint(mod, cls) for mod, cls in [
    ("mmclust.methods.dm2c", "DM2C"), ("mmclust.methods.dmim", "DMIM"), ("mmclust.methods.cigit_c", "CIGITC")]))
'''


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_fingerprints_are_the_same_under_every_supported_python(tmp_path, version):
    import os
    import shutil
    import subprocess
    from pathlib import Path

    import mmclust

    exe, env = shutil.which(f"python{version}"), dict(os.environ)
    if exe is not None and subprocess.run([exe, "-c", "pass"], capture_output=True).returncode != 0 and shutil.which("pyenv"):
        # a pyenv shim runs only with a version selected
        bare = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True).stdout.split()
        env["PYENV_VERSION"] = next((v for v in bare if v.startswith(version + ".")), "")
    if exe is None or subprocess.run([exe, "-c", "pass"], capture_output=True, env=env).returncode != 0:
        pytest.skip(f"python{version} is not installed")
    script = tmp_path / "fingerprints.py"
    script.write_text(_STANDALONE)
    src = str(Path(mmclust.__file__).resolve().parents[1])
    here = subprocess.run([sys.executable, str(script), src], capture_output=True, text=True, check=True).stdout.split()
    there = subprocess.run([exe, str(script), src], capture_output=True, text=True, check=True, env=env).stdout.split()
    assert here == [ci.code_fingerprint("mmclust.methods.dm2c", "DM2C"), ci.code_fingerprint("mmclust.methods.dmim", "DMIM"),
                    ci.code_fingerprint("mmclust.methods.cigit_c", "CIGITC")]
    assert there == here


def test_every_module_of_the_data_package_is_in_every_fingerprint(tmp_path, monkeypatch):
    """A loader module added to the data package later (a side-file reader, a file format) is covered without
    being named anywhere: the package's folder is listed."""
    name = "probe_always_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
    data = tmp_path / name / "data"
    data.mkdir(parents=True)
    (tmp_path / name / "__init__.py").write_text("")
    (data / "__init__.py").write_text("")
    (data / "loader.py").write_text("def load():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(ci, "ALWAYS_PACKAGES", (f"{name}.data",))
    monkeypatch.setattr(ci, "ALWAYS_MODULES", ())
    importlib.invalidate_caches()
    assert f"{name}.data.loader" in ci._always()
    real = set(ci.code_definitions.__wrapped__("mmclust.methods.baselines", "KMeansBaseline"))
    assert f"{name}.data.loader:*" in real
    (data / "newer.py").write_text("X = 1\n")
    importlib.invalidate_caches()
    assert f"{name}.data.newer" in ci._always()


def test_the_real_data_package_is_covered_whole():
    defs = ci.code_definitions("mmclust.methods.baselines", "KMeansBaseline")
    assert {"mmclust.data.wordnet:*", "mmclust.data.protocols:*", "mmclust.metrics:*"} <= set(defs)
