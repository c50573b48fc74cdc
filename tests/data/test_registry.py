"""Real files: each present file loads with the MANIFEST shapes; corrupt copies raise naming the file."""

import shutil

import numpy as np
import pytest

from mmclust import DataError
from mmclust.data import registry

MANIFEST = {  # name: (n, k, dims) as measured in the data MANIFEST
    "bdgp": (2500, 5, {"image": 1750, "text": 79}),
    "bdgp_lateral": (2500, 5, {"image": 1000, "text": 79}),
    "wiki_sift_lda": (2866, 10, {"image": 128, "text": 10}),
    "wiki_roph": (2866, 10, {"image": 128, "text": 100}),
    "scene15": (4485, 15, {"gist": 20, "lbp": 59}),
    "uci_digits": (2000, 10, {"pixels": 240, "fourier": 76}),
}


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_real_file_loads_with_manifest_shapes(name, load_real):
    ds = load_real(name)
    n, k, dims = MANIFEST[name]
    assert (ds.n_samples, ds.n_clusters, ds.dims) == (n, k, dims)
    assert set(np.unique(ds.labels)) == set(range(k))
    assert all(np.isfinite(x).all() for x in ds.views.values())


def test_bdgp_contents(load_real):
    ds = load_real("bdgp")
    assert np.bincount(ds.labels).tolist() == [500] * 5
    assert set(np.unique(ds.views["text"])) <= {0.0, 1.0}
    assert 0 <= ds.views["image"].min() and ds.views["image"].max() < 0.72


def test_wiki_roph_fixed_split(load_real):
    load_real("wiki_roph")
    train, test = registry.wiki_roph_split()
    assert train.size == 2173 and test.size == 693
    assert np.intersect1d(train, test).size == 0 and train.min() >= 0 and max(train.max(), test.max()) == 2865


@pytest.fixture
def scratch_data(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("MMCLUST_DATA", str(tmp_path))
    return tmp_path


def test_corrupt_copy_raises_naming_the_file(scratch_data, data_dir):
    src = data_dir / "wiki_sift_lda.mat"
    if not src.is_file():
        pytest.skip(f"data file wiki_sift_lda.mat not found in {data_dir}")
    raw = bytearray(src.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (scratch_data / "wiki_sift_lda.mat").write_bytes(bytes(raw))
    assert registry.status("wiki_sift_lda") == "corrupt"
    with pytest.raises(DataError, match="wiki_sift_lda.mat: sha256 mismatch"):
        registry.load("wiki_sift_lda")


def test_missing_file_names_it(scratch_data):
    assert registry.status("bdgp") == "missing"
    with pytest.raises(FileNotFoundError, match="bdgp.mat not found"):
        registry.load("bdgp")
    with pytest.raises(DataError, match="unknown dataset 'nope'; valid: .*bdgp"):
        registry.load("nope")


def test_user_supplied_npz_format(scratch_data):
    n = 1000
    rng = np.random.default_rng(0)
    np.savez(scratch_data / "jecl_pascal.npz", image=rng.random((n, 2048)), text=rng.random((n, 300)),
             labels=np.arange(n) % 20)
    ds = registry.load("pascal")
    assert ds.dims == {"image": 2048, "text": 300} and ds.n_clusters == 20
    # an object array would need pickle: refused, not unpickled
    np.savez(scratch_data / "jecl_rgbd.npz", image=np.array([object()] * 3), text=np.ones((3, 1)), labels=[0, 1, 2])
    with pytest.raises(DataError, match="without pickle"):
        registry.load("rgbd")
    np.savez(scratch_data / "jecl_coco_cross.npz", image=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"missing arrays \['labels', 'text'\]"):
        registry.load("coco_cross")


def test_not_a_mat_file(scratch_data):
    (scratch_data / "scene15.mat").write_bytes(b"this is not matlab")
    spec = registry.get_spec("scene15")
    with pytest.raises(DataError, match="scene15.mat"):
        spec.loader(scratch_data / "scene15.mat", spec)


def test_every_registry_entry_says_how_to_get_it():
    for spec in registry.REGISTRY.values():
        assert spec.source and spec.description
        if not spec.available_here:
            assert spec.file.endswith(".npz") and "MMCLUST_DATA" in spec.how_to_supply
