"""Registry of real data sets: what each file is, how to check it, how to load it.

Files are looked up in ``MMCLUST_DATA`` (default ``~/.cache/mmclust/data``). Nothing is ever
downloaded. Every load checks the file's sha256 first (when the registry knows it), reads MATLAB
files with ``scipy.io.loadmat`` and NumPy files with ``allow_pickle=False`` (never unpickling),
transposes to samples x features and maps labels to 0..k-1.

Two kinds of entries:

* files we have (``bdgp``, ``wiki_sift_lda``, ``wiki_roph``, ``scene15``, ``uci_digits``), with
  their published sha256 and measured shapes;
* the papers' own feature sets that cannot be had here (COCO, Pascal, NYU RGB-D, VGG/BERT
  Wikipedia, NUS-WIDE-10K, ...). For these the registry names the expected file and format
  (:data:`USER_FEATURES_FORMAT`) so that a user who has them runs the reproduction with one command.
  MCA's ``mca_*`` sets also read two side files (``DatasetSpec.extra_files``): the shared noun vocabulary
  ``wordnet_nouns_clip_vitb32.npz`` and WordNet's ``data.noun`` (:data:`MCA_FORMAT`), loaded into the data
  set's ``context``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import DataError, MultiModalDataset
from .synthetic import make_multiview_blobs

__all__ = [
    "DatasetSpec", "REGISTRY", "fixed_test_index", "is_generated", "data_sha256", "USER_FEATURES_FORMAT", "data_dir", "get_spec", "load", "status", "sha256_of",
    "MAX_FILE_BYTES", "MCA_FORMAT",
]

MAX_FILE_BYTES = 8 * 1024**3  # refuse to read anything larger: a guard against a wrong path
USER_FEATURES_FORMAT = (
    "NumPy .npz (allow_pickle=False) with one float array per view, named as the registry's dims say "
    "(usually 'image' (n, d_img) and 'text' (n, d_txt)), samples in rows, and an integer array 'labels' (n,)"
)


def data_dir() -> Path:
    """Folder that holds the data files: ``$MMCLUST_DATA`` or ``~/.cache/mmclust/data``."""
    return Path(os.environ.get("MMCLUST_DATA") or Path.home() / ".cache" / "mmclust" / "data").expanduser()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    file: str
    sha256: str | None
    n_samples: int
    n_classes: int
    dims: dict  # view -> feature dimension, in view order (first = image-like, second = text-like)
    source: str
    description: str
    used_by: tuple = ()
    loader: Callable | None = field(default=None, repr=False, compare=False)
    available_here: bool = True  # False: the paper's own features, which the user must supply
    how_to_supply: str = ""
    fixed_split: bool = False
    extra_files: tuple = ()  # side files every load also reads (MCA's nouns, WordNet); their sha256 join the identity

    @property
    def path(self) -> Path:
        return data_dir() / self.file


_HASH_CACHE: dict = {}


def sha256_of(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so repeated loads do not re-hash."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(str(path))
    except (MatReadError, ValueError, OSError, TypeError, KeyError) as err:
        raise DataError(f"{path.name}: cannot be read as a MATLAB file ({err})") from err


def _labels_from(raw, name: str) -> np.ndarray:
    y = np.asarray(raw)
    if hasattr(raw, "toarray"):  # sparse one-hot (classes x samples or samples x classes)
        y = np.asarray(raw.toarray())
    if y.ndim == 2 and min(y.shape) > 1:  # one-hot
        y = y.argmax(axis=0 if y.shape[0] < y.shape[1] else 1)
    y = y.ravel()
    _, y = np.unique(y, return_inverse=True)
    return y.astype(np.int64)


def _cell(arr, i):
    return np.asarray(arr.ravel()[i], dtype=np.float64)


def _load_bdgp(path: Path, spec: DatasetSpec, image_columns: int | None = None) -> MultiModalDataset:
    m = _loadmat(path)
    image = _cell(m["data"], 0).T  # stored features x samples
    text = _cell(m["data"], 1).T
    if image_columns is not None:
        image = image[:, :image_columns]
    return MultiModalDataset({"image": image, "text": text}, _labels_from(m["truth"], spec.name), name=spec.name)


def _two_cell_loader(features_key: str, labels_key: str, views: tuple[str, str]):
    """Loader for files holding a 1x2 cell array of (samples x features) views and a label vector."""
    def load(path: Path, spec: DatasetSpec) -> MultiModalDataset:
        m = _loadmat(path)
        return MultiModalDataset({name: _cell(m[features_key], i) for i, name in enumerate(views)},
                                 _labels_from(m[labels_key], spec.name), name=spec.name)

    return load


def _load_wiki_roph(path: Path, spec: DatasetSpec) -> MultiModalDataset:
    m = _loadmat(path)
    s = m["data"][0, 0]
    return MultiModalDataset({"image": np.asarray(s["X1"], dtype=np.float64).T, "text": np.asarray(s["X2"], dtype=np.float64).T},
                             _labels_from(s["Y"], spec.name), name=spec.name)


def wiki_roph_split(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The fixed train/test row indices (0-based) shipped in ``wiki_roph.mat``."""
    spec = REGISTRY["wiki_roph"]
    path = path or _checked_path(spec)
    s = _loadmat(path)["data"][0, 0]["split"][0, 0]
    train = np.asarray(s["ind_train"]).ravel().astype(np.int64) - 1
    test = np.asarray(s["ind_test"]).ravel().astype(np.int64) - 1
    return train, test


def fixed_test_index(name: str) -> np.ndarray | None:
    """Test rows of a data set that ships its own train/test split (``wiki_roph``), else None."""
    spec = get_spec(name)
    if not spec.fixed_split:
        return None
    if name == "wiki_roph":
        return wiki_roph_split()[1]
    raise DataError(f"{name}: marked as shipping a fixed split, but no reader for it is registered")


def _load_user_npz(path: Path, spec: DatasetSpec) -> MultiModalDataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = (set(spec.dims) | {"labels"}) - set(z.files)
            if missing:
                raise DataError(f"{path.name}: missing arrays {sorted(missing)}; expected format: {USER_FEATURES_FORMAT}")
            views = {v: z[v] for v in spec.dims}
            labels = z["labels"]
    except (ValueError, OSError) as err:
        raise DataError(f"{path.name}: cannot be read as .npz without pickle ({err})") from err
    ds = MultiModalDataset(views, _labels_from(labels, spec.name), name=spec.name)
    for view, d in spec.dims.items():
        if ds.dims[view] != d:
            raise DataError(f"{path.name}: view {view!r} has {ds.dims[view]} features, the paper's features have {d}")
    return ds


def _user_spec(name, file, n, k, dims, source, description, used_by, note="") -> DatasetSpec:
    return DatasetSpec(
        name=name, file=file, sha256=None, n_samples=n, n_classes=k, dims=dims, source=source,
        description=description, used_by=used_by, loader=_load_user_npz, available_here=False,
        how_to_supply=f"extract the features yourself and save {file} in $MMCLUST_DATA as {USER_FEATURES_FORMAT}. {note}".strip(),
    )


REGISTRY: dict[str, DatasetSpec] = {}


def _register(spec: DatasetSpec) -> None:
    REGISTRY[spec.name] = spec


_BDGP_SRC = "scutbioinformatics/CELT @ 3a66b240d795 : BDGP.mat"
_BDGP_SHA = "dd53d29ad7cfd3adf4caf5203f51387b97981d60cd427798acfe1f2481363e11"
_register(DatasetSpec(
    "bdgp", "bdgp.mat", _BDGP_SHA, 2500, 5, {"image": 1750, "text": 79}, _BDGP_SRC,
    "BDGP drosophila embryos: 1750-d visual (lateral+dorsal+ventral) and 79-d binary textual; CIGIT-C Table 8",
    ("cigit_c",), _load_bdgp))
_register(DatasetSpec(
    "bdgp_lateral", "bdgp.mat", _BDGP_SHA, 2500, 5, {"image": 1000, "text": 79}, _BDGP_SRC,
    "BDGP with only the first 1000 visual columns (CIGIT-C Table 2 says '1000D lateral'; unverified that these are lateral)",
    ("cigit_c",), lambda p, s: _load_bdgp(p, s, image_columns=1000)))
_register(DatasetSpec(
    "wiki_sift_lda", "wiki_sift_lda.mat",
    "70f150b0dc01591c0f52426983beb5a3721eff8b6773682eff60b5b9a2eb1858", 2866, 10, {"image": 128, "text": 10},
    "lab-807/GloryIMVC @ 451b86a26a1f : datasets/Wiki.mat",
    "Wikipedia featured articles, SIFT BoVW 128-d image + LDA 10-d text (the papers' pairs, not their features)",
    ("cigit_c", "dm2c", "jecl"), _two_cell_loader("X", "Y", ("image", "text"))))
_register(DatasetSpec(
    "wiki_roph", "wiki_roph.mat",
    "e417067eb501fbb41375b4461469089c9f0332ff9cdaf3b5f6570bbf0078d97c", 2866, 10, {"image": 128, "text": 100},
    "kding1225/RoPH @ 6d4a062b7f28 : data/wiki.mat",
    "Wikipedia pairs, SIFT 128-d + 100-d text, with a fixed 2173/693 train/test split", ("dm2c",), _load_wiki_roph,
    fixed_split=True))
_register(DatasetSpec(
    "scene15", "scene15.mat",
    "ec33b5e1f53eea04ccacc8b7bdfc6091ed490b04214eb41fd83c05a0a173221f", 4485, 15, {"gist": 20, "lbp": 59},
    "XLearning-SCU/2021-CVPR-Completer @ ad37110046234 : data/Scene-15.mat (MIT)",
    "Scene-15, GIST 20-d + LBP 59-d (not image-text; a second real multi-view set for stand-in runs)",
    ("jecl",), _two_cell_loader("X", "Y", ("gist", "lbp"))))
_register(DatasetSpec(
    "uci_digits", "uci_digits.mat",
    "854a7bf0206b123d450e495fe107789b95116b070edc81c6167b8091ef9a682a", 2000, 10, {"pixels": 240, "fourier": 76},
    "youweiliang/Multi-view_Graph_Learning @ 0920aa38676f : data/UCI_Digits.mat (MIT)",
    "UCI handwritten digits, pixel averages 240-d + Fourier 76-d (stand-in multi-view data)", ("jecl",),
    # pixel averages (240) as the image-like view, Fourier coefficients (76) as the second view
    _two_cell_loader("fea", "gt", ("pixels", "fourier"))))

# Generated in memory (no file): the fast stand-in for tests and demos of the harness itself.
_register(DatasetSpec(
    "synthetic", "", "generated:make_multiview_blobs(seed=0)", 600, 4, {"image": 32, "text": 16}, "mmclust generator",
    "Seeded Gaussian clusters seen through two random non-linear views (text view noisier)", (),
    lambda p, s: make_multiview_blobs(600, 4, {"image": 32, "text": 16}, view_noise={"text": 0.6}, seed=0, name="synthetic")))

# The papers' own features: not available here; the user supplies them.
for _name, _n, _k in (("coco_cross", 7429, 10), ("coco_all", 23189, 43), ("pascal", 1000, 20), ("rgbd", 1449, 13)):
    _register(_user_spec(
        _name, f"jecl_{_name}.npz", _n, _k, {"image": 2048, "text": 300}, "JECL Section IV (Yang et al.), Table I",
        f"JECL's {_name}: ResNet-50 2048-d image + Doc2vec 300-d text features", ("jecl",)))
_register(_user_spec(
    "wiki_vgg_bert", "wiki_vgg_bert.npz", 2866, 10, {"image": 4096, "text": 768}, "CIGIT-C Section 4.1.2",
    "Wikipedia with VGG-19 fc7 4096-d image + BERT [CLS] 768-d text features", ("cigit_c",),
    "CIGIT-C splits 1910/956 (text) or 1919/956 (Table 2); add a bool array 'train' to fix yours."))
_register(_user_spec(
    "nuswide10k_vgg_bow", "nuswide10k_vgg_bow.npz", 10000, 10, {"image": 4096, "text": 1000}, "CIGIT-C Section 4.1.2",
    "NUS-WIDE-10K with VGG-19 fc7 4096-d image + TF-IDF BoW 1000-d text", ("cigit_c",), "Split 8000/2000."))
_register(_user_spec(
    "wiki_vgg_bow", "wiki_vgg_bow.npz", 2866, 10, {"image": 4096, "text": 5000}, "DM2C Section 5.1",
    "Wikipedia with VGG-19 4096-d image + BoW 5000-d text (DM2C)", ("dm2c",)))
_register(_user_spec(
    "nuswide10k_dm2c", "nuswide10k_dm2c.npz", 10000, 10, {"image": 4096, "text": 1000}, "DM2C Section 5.1",
    "NUS-WIDE-10K as DM2C used it: VGG-19 4096-d image + 1000-d BoW text", ("dm2c",)))


for _name, _n, _k in (("iapr", 7855, 6), ("esp", 11032, 7), ("flickr", 12154, 6), ("nus", 20000, 8)):
    _register(_user_spec(
        f"dmim_{_name}", f"dmim_{_name}.npz", _n, _k, {"image": 100, "text": 100}, "DMIM Section 'Datasets', Table 1",
        f"DMIM's {_name.upper()}: VGG-16 4096-d image and BERT 768-d text features, each PCA-reduced to 100-d", ("dmim",)))
# MCA: CLIP ViT-B/32 image embeddings per data set, plus one shared noun vocabulary and WordNet's data.noun.
MCA_NOUNS_FILE = "wordnet_nouns_clip_vitb32.npz"
MCA_WORDNET_FILE = "data.noun"
MCA_FORMAT = (
    "mca_<set>_clip.npz (allow_pickle=False): 'image' float (n, 512), the CLIP ViT-B/32 image embeddings, and "
    "'labels' int (n,). Shared by every mca_* set: " + MCA_NOUNS_FILE + " with 'text' float (m, 512), the CLIP "
    "ViT-B/32 text embedding of \"A photo of a {t}\" for t the first lemma (underscores as spaces) of each WordNet 3.0 "
    "noun synset, and 'offset' int (m,), that synset's offset in data.noun; and WordNet 3.0's " + MCA_WORDNET_FILE +
    " (Debian package wordnet-base; found in $MMCLUST_DATA, else via MMCLUST_WORDNET or /usr/share/wordnet)"
)


def _mca_extra_path(file: str) -> Path:
    """Where an MCA side file is: ``$MMCLUST_DATA`` first; data.noun may also come from the WordNet install."""
    path = data_dir() / file
    if not path.is_file() and file == MCA_WORDNET_FILE:
        from .wordnet import find_data_noun

        path = find_data_noun() or path
    return path


def _load_mca(path: Path, spec: DatasetSpec) -> MultiModalDataset:
    from .wordnet import read_data_noun

    ds = _load_user_npz(path, spec)
    nouns_path = _checked_extra(spec, MCA_NOUNS_FILE)
    import zipfile

    try:
        z = np.load(nouns_path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy under the .npz name
            raise ValueError("a single .npy array, not an .npz archive")
        with z:
            arrays = {key: z[key] for key in ("text", "offset") if key in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{nouns_path.name}: cannot be read as .npz without pickle ({err})") from err
    if len(arrays) != 2:
        raise DataError(f"{nouns_path.name}: needs arrays 'text' (m, 512) and 'offset' (m,); format: {MCA_FORMAT}")
    text, offset = arrays["text"], arrays["offset"]
    if text.ndim != 2 or text.shape[1] != spec.dims["image"] or offset.shape != (text.shape[0],):
        raise DataError(f"{nouns_path.name}: 'text' must be (m, {spec.dims['image']}) and 'offset' (m,), got "
                        f"{text.shape} and {offset.shape}")
    if not np.issubdtype(offset.dtype, np.integer) or np.unique(offset).size != offset.size:
        raise DataError(f"{nouns_path.name}: 'offset' must be distinct integer synset offsets (one row per synset), got "
                        f"dtype {offset.dtype} with {offset.size - np.unique(offset).size} repeats")
    synsets = read_data_noun(_checked_extra(spec, MCA_WORDNET_FILE))
    unknown = np.setdiff1d(offset, synsets.offsets)
    if unknown.size:
        raise DataError(f"{nouns_path.name}: {unknown.size} offsets are not noun synsets of data.noun, e.g. {int(unknown[0]):08d}")
    context = {"noun_embeddings": text, "noun_offsets": offset.astype(np.int64),
               "hypernym_child": synsets.child, "hypernym_parent": synsets.parent}
    return ds.replace(context=context)


def _checked_extra(spec: DatasetSpec, file: str) -> Path:
    path = _mca_extra_path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name}: file {file} not found in {data_dir()} (set MMCLUST_DATA); {spec.how_to_supply}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{path.name}: {path.stat().st_size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    return path


for _name, _n, _k, _what in (
        ("stl10", 13000, 10, "train+test, 5,000 + 8,000"), ("cifar10", 60000, 10, "train+test, 50,000 + 10,000"),
        ("cifar100_20", 60000, 20, "train+test, 50,000 + 10,000; the 20 superclasses"),
        ("imagenet_dogs", 19500, 15, "the 15 dog classes' training images only, 1,300 each"),
        ("tiny_imagenet", 100000, 200, "training images only, 500 per class")):
    _file = f"mca_{_name}_clip.npz"
    _register(DatasetSpec(
        name=f"mca_{_name}", file=_file, sha256=None, n_samples=_n, n_classes=_k, dims={"image": 512},
        source="MCA Section 'Experimental Setup'",
        description=f"{_name}: CLIP ViT-B/32 image embeddings (512-d; {_what}) with WordNet noun embeddings, for MCA",
        used_by=("mca",), loader=_load_mca, available_here=False,
        how_to_supply=(f"put {_file}, {MCA_NOUNS_FILE} and {MCA_WORDNET_FILE} in $MMCLUST_DATA (CLIP ViT-B/32 embeddings of the images "
                       f"and of the WordNet nouns, made elsewhere: no CLIP weights here; layout in the README's 'Data' "
                       f"section and mmclust.data.registry.MCA_FORMAT)"),
        extra_files=(MCA_NOUNS_FILE, MCA_WORDNET_FILE)))


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(sorted(REGISTRY))}") from None


def _checked_path(spec: DatasetSpec) -> Path:
    path = spec.path
    if not path.is_file():
        hint = spec.how_to_supply or f"copy {spec.file} (from {spec.source}) there"
        raise FileNotFoundError(f"{spec.name}: file {spec.file} not found in {data_dir()} (set MMCLUST_DATA); {hint}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path.name}: {size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    if spec.sha256 is not None:
        digest = sha256_of(path)
        if digest != spec.sha256:
            raise DataError(f"{path.name}: sha256 mismatch (corrupt or a different file): expected {spec.sha256}, got {digest}")
    return path


def is_generated(spec: DatasetSpec) -> bool:
    return spec.file == ""


def load(name: str) -> MultiModalDataset:
    """Load a registered data set by name, checking the file's sha256 and the expected shapes."""
    spec = get_spec(name)
    ds = spec.loader(None if is_generated(spec) else _checked_path(spec), spec)
    if ds.n_samples != spec.n_samples or ds.dims != spec.dims or ds.n_clusters != spec.n_classes:
        raise DataError(
            f"{spec.file}: loaded n={ds.n_samples}, k={ds.n_clusters}, dims={ds.dims}; the registry expects "
            f"n={spec.n_samples}, k={spec.n_classes}, dims={spec.dims}"
        )
    return ds


def status(name: str) -> str:
    """``present``, ``missing`` or ``corrupt`` (sha256 mismatch or unreadable)."""
    spec = get_spec(name)
    if is_generated(spec):
        return "present"
    if not spec.path.is_file() or not all(_mca_extra_path(f).is_file() for f in spec.extra_files):
        return "missing"
    if spec.sha256 is not None and sha256_of(spec.path) != spec.sha256:
        return "corrupt"
    return "present"


def data_sha256(name: str) -> str:
    """The identity of a data set's bytes: the file's sha256 (checked), or the generator's recipe."""
    spec = get_spec(name)
    if is_generated(spec):
        return spec.sha256
    digest = spec.sha256 or sha256_of(_checked_path(spec))
    if not spec.extra_files:
        return digest
    # the side files are data too: a different vocabulary or WordNet is a different data set
    parts = [digest] + [sha256_of(_checked_extra(spec, f)) for f in spec.extra_files]
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()
