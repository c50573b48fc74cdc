"""MCA's data contract: ``MultiModalDataset.context`` and the ``mca_*`` registry entries with their side files."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from mmclust.data import DataError, MultiModalDataset, make_joint_space, registry, wordnet
from mmclust.data.wordnet import read_data_noun

FIXTURE = Path(__file__).parent / "fixtures" / "data.noun"


def test_context_is_read_only_and_survives_subset_replace_and_label_removal():
    ds = make_joint_space(60, 3, dim=8, seed=0)
    ctx = ds.context
    with pytest.raises(TypeError):
        ctx["noun_embeddings"] = np.zeros(3)  # a read-only mapping
    with pytest.raises(ValueError):
        ctx["noun_embeddings"][0, 0] = 1.0  # of read-only arrays
    for other in (ds.subset(np.arange(10)), ds.replace(labels=None), ds.without_labels()):
        assert other.context is ctx
    source = np.ones((2, 3))
    owned = MultiModalDataset({"x": np.zeros((4, 2))}, None, context={"a": source})
    source[0, 0] = 5.0
    assert owned.context["a"][0, 0] == 1.0  # copied, never aliased
    with pytest.raises(DataError, match="context\\['a'\\]"):
        MultiModalDataset({"x": np.zeros((4, 2))}, None, context={"a": np.array([np.nan])})
    with pytest.raises(DataError, match="numeric"):
        MultiModalDataset({"x": np.zeros((4, 2))}, None, context={"a": np.array(["text"])})


def _write_mca_files(folder: Path, n: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    np.savez(folder / "mca_stl10_clip.npz", image=rng.normal(size=(n, 512)).astype(np.float32), labels=np.arange(n) % 10)
    offsets = read_data_noun(FIXTURE).offsets
    np.savez(folder / registry.MCA_NOUNS_FILE, text=rng.normal(size=(offsets.size, 512)).astype(np.float32), offset=offsets)
    shutil.copy(FIXTURE, folder / registry.MCA_WORDNET_FILE)


def test_mca_entry_names_its_three_files_and_loads_them_into_context(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCLUST_DATA", str(tmp_path))
    monkeypatch.setenv("MMCLUST_WORDNET", str(tmp_path / "nowhere"))
    spec = registry.get_spec("mca_stl10")
    assert spec.file == "mca_stl10_clip.npz" and spec.extra_files == (registry.MCA_NOUNS_FILE, registry.MCA_WORDNET_FILE)
    for f in (spec.file, *spec.extra_files):
        assert f in spec.how_to_supply
    assert "train+test" not in registry.get_spec("mca_imagenet_dogs").description
    assert "train+test" not in registry.get_spec("mca_tiny_imagenet").description
    assert registry.status("mca_stl10") == "missing"
    _write_mca_files(tmp_path)
    assert registry.status("mca_stl10") == "present"
    small = registry.DatasetSpec(**{**spec.__dict__, "n_samples": 20})
    ds = spec.loader(spec.path, small)
    assert ds.dims == {"image": 512} and ds.n_samples == 20
    assert set(ds.context) == {"noun_embeddings", "noun_offsets", "hypernym_child", "hypernym_parent"}
    assert ds.context["noun_embeddings"].shape == (26, 512)
    # the side files are part of the data's identity
    before = registry.data_sha256("mca_stl10")
    main_file = registry.sha256_of(spec.path)
    with np.load(tmp_path / registry.MCA_NOUNS_FILE, allow_pickle=False) as z:
        text, offset = z["text"], z["offset"]
    np.savez(tmp_path / registry.MCA_NOUNS_FILE, text=text[::-1], offset=offset[::-1])  # another vocabulary file
    assert registry.sha256_of(spec.path) == main_file and registry.data_sha256("mca_stl10") != before


def test_mca_side_file_problems_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCLUST_DATA", str(tmp_path))
    monkeypatch.setenv("MMCLUST_WORDNET", str(tmp_path / "nowhere"))
    _write_mca_files(tmp_path)
    spec = registry.DatasetSpec(**{**registry.get_spec("mca_stl10").__dict__, "n_samples": 20})
    np.savez(tmp_path / registry.MCA_NOUNS_FILE, text=np.zeros((3, 512)), offset=np.array([1, 2, 3]))
    with pytest.raises(DataError, match="not noun synsets"):
        spec.loader(spec.path, spec)
    np.savez(tmp_path / registry.MCA_NOUNS_FILE, text=np.zeros((3, 10)), offset=np.array([1, 2, 3]))
    with pytest.raises(DataError, match="'text' must be"):
        spec.loader(spec.path, spec)
    np.savez(tmp_path / registry.MCA_NOUNS_FILE, words=np.zeros((3, 512)))
    with pytest.raises(DataError, match="needs arrays 'text'"):
        spec.loader(spec.path, spec)
    offsets = read_data_noun(FIXTURE).offsets
    for name, write in (("truncated", lambda f: f.write_bytes(b"PK\x03\x04" + b"x" * 300)),
                        ("a bare .npy", lambda f: f.write_bytes((tmp_path / "a.npy").read_bytes())),
                        ("float offsets", lambda f: np.savez(f, text=np.ones((26, 512)), offset=offsets + 0.0)),
                        ("repeated offsets", lambda f: np.savez(f, text=np.ones((26, 512)), offset=np.r_[offsets[:-1], offsets[0]]))):
        np.save(tmp_path / "a.npy", np.zeros(3))
        write(tmp_path / registry.MCA_NOUNS_FILE)
        with pytest.raises(DataError, match=registry.MCA_NOUNS_FILE):
            spec.loader(spec.path, spec)
    _write_mca_files(tmp_path)
    (tmp_path / registry.MCA_WORDNET_FILE).write_bytes(b"\xff\xfe not text")
    with pytest.raises(DataError, match="data.noun line 1"):
        spec.loader(spec.path, spec)
    (tmp_path / registry.MCA_WORDNET_FILE).unlink()
    monkeypatch.setattr(wordnet, "_STANDARD_DIRS", ())  # nor an installed WordNet to fall back to
    with pytest.raises(FileNotFoundError, match="data.noun"):
        spec.loader(spec.path, spec)
    assert registry.status("mca_stl10") == "missing"


def test_joint_space_generator_layout():
    ds = make_joint_space(200, 4, dim=16, nouns_per_class=3, n_generic=6, n_distractors=5, n_superclasses=2, seed=3)
    ctx = ds.context
    assert ds.dims == {"image": 16} and np.bincount(ds.labels).tolist() == [50] * 4
    m = 1 + 2 + 4 * 3 + 6 + 5  # object, superclasses, class nouns, generic, distractors
    assert ctx["noun_embeddings"].shape == (m, 16) and ctx["noun_offsets"].shape == (m,)
    np.testing.assert_allclose(np.linalg.norm(ctx["noun_embeddings"], axis=1), 1.0, atol=1e-5)
    parents = wordnet.parents_of(ctx["hypernym_child"], ctx["hypernym_parent"])
    depth = wordnet.max_depths(ctx["noun_offsets"], parents)
    # object 1, superclasses 2, class names 3, their hyponyms 4; generic and distractor nouns hang under the root
    assert sorted(np.bincount(list(depth.values())).tolist()) == sorted([0, 1 + 6 + 5, 2, 4, 4 * 2])
    # each class noun's nearest class direction is its own class: the image class means point at their nouns
    means = np.stack([ds.views["image"][ds.labels == c].mean(0) for c in range(4)])
    names = [o for o, d in depth.items() if d == 3]
    rows = [int(np.flatnonzero(ctx["noun_offsets"] == o)[0]) for o in names]
    sims = ctx["noun_embeddings"][rows] @ means.T
    assert sorted(sims.argmax(1).tolist()) == [0, 1, 2, 3]
    again = make_joint_space(200, 4, dim=16, nouns_per_class=3, n_generic=6, n_distractors=5, n_superclasses=2, seed=3)
    np.testing.assert_array_equal(again.views["image"], ds.views["image"])
    with pytest.raises(DataError, match="n_superclasses"):
        make_joint_space(20, 2, n_superclasses=3)
