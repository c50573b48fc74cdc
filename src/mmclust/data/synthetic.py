"""A seeded generator of clusterable multi-view data with known labels, for fast CPU tests."""

from __future__ import annotations

import numpy as np

from .dataset import DataError, MultiModalDataset

__all__ = ["make_multiview_blobs"]


def make_multiview_blobs(
    n_samples: int = 600,
    n_clusters: int = 4,
    dims: dict | None = None,
    latent_dim: int = 8,
    separation: float = 3.0,
    noise: float = 1.0,
    view_noise: dict | None = None,
    seed: int = 0,
    name: str = "synthetic",
) -> MultiModalDataset:
    """Gaussian clusters in a shared latent space, seen through one random non-linear map per view.

    Each sample draws a class ``c`` (balanced), a latent point ``h = separation * m_c + noise * e``
    with unit-norm class means ``m_c``, and each view ``v`` observes ``tanh(h W_v) + view_noise[v] * e_v``.
    Giving one view more noise makes it the weaker modality, so tests can check that a method
    combining views beats the weaker single view.
    """
    dims = dims or {"image": 32, "text": 16}
    if n_clusters < 2 or n_samples < n_clusters:
        raise DataError(f"need n_clusters >= 2 and n_samples >= n_clusters, got {n_samples=} {n_clusters=}")
    view_noise = view_noise or {}
    rng = np.random.default_rng(seed)
    labels = np.arange(n_samples) % n_clusters
    rng.shuffle(labels)
    means = rng.normal(size=(n_clusters, latent_dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    latent = separation * means[labels] + noise * rng.normal(size=(n_samples, latent_dim))
    views = {}
    for view, d in dims.items():
        w = rng.normal(size=(latent_dim, d)) / np.sqrt(latent_dim)
        x = np.tanh(latent @ w) + view_noise.get(view, 0.1) * rng.normal(size=(n_samples, d))
        views[view] = x.astype(np.float32)
    return MultiModalDataset(views=views, labels=labels, name=name)


__all__ += ["make_joint_space"]


def make_joint_space(
    n_samples: int = 600,
    n_clusters: int = 4,
    dim: int = 32,
    separation: float = 1.0,
    style: float = 1.2,
    noise: float = 0.35,
    nouns_per_class: int = 5,
    noun_noise: float = 0.1,
    n_generic: int = 20,
    n_distractors: int = 20,
    n_superclasses: int = 2,
    seed: int = 0,
    name: str = "joint_space",
) -> MultiModalDataset:
    """Images and nouns in one embedding space with a toy hypernym tree: the CPU stand-in for CLIP + WordNet.

    * Each class ``c`` has a unit direction ``m_c``. An image of class ``c`` is ``separation * m_c`` plus a *style*
      vector of length ``style`` drawn from ``n_clusters`` style directions independently of the class, plus
      Gaussian noise of std ``noise / sqrt(dim)`` per coordinate. The style is as large as the class signal, so
      k-means on the images splits partly by style; the nouns carry the class signal only.
    * Nouns (``context["noun_embeddings"]``): ``nouns_per_class`` class nouns at ``m_c`` + small noise (the first
      of them the class's name, the others its hyponyms); one superclass noun per group of classes at the mean of
      its classes' directions; one top noun ("object") under the root at the mean of all class directions;
      ``n_generic`` generic nouns near the mean of everything (low uniqueness, removed by the uniqueness filter)
      and ``n_distractors`` nouns in random directions.
    * Tree (``hypernym_child -> hypernym_parent``, offsets): root (offset 1, "entity", no embedding row) -> object
      -> superclass -> class noun -> its hyponyms; generic and distractor nouns hang under the root.

    Returns a ``MultiModalDataset`` with one view ``image`` (n, dim), labels, and the context MCA reads.
    """
    if n_clusters < 2 or n_samples < n_clusters or nouns_per_class < 1 or not 1 <= n_superclasses <= n_clusters:
        raise DataError(f"make_joint_space: need n_clusters >= 2, n_samples >= n_clusters, nouns_per_class >= 1 and "
                        f"1 <= n_superclasses <= n_clusters; got {n_samples=} {n_clusters=} {nouns_per_class=} {n_superclasses=}")
    rng = np.random.default_rng(seed)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    directions = unit(rng.normal(size=(n_clusters, dim)))
    styles = unit(rng.normal(size=(n_clusters, dim)))
    labels = np.arange(n_samples) % n_clusters
    rng.shuffle(labels)
    style_of = rng.integers(n_clusters, size=n_samples)
    images = (separation * directions[labels] + style * styles[style_of]
              + noise / np.sqrt(dim) * rng.normal(size=(n_samples, dim)))

    rows, offsets, child, parent = [], [], [], []
    next_offset = iter(range(2, 10**6))

    def add(vec, parent_offset):
        off = next(next_offset)
        rows.append(vec)
        offsets.append(off)
        child.append(off)
        parent.append(parent_offset)
        return off

    root = 1
    top = add(unit(directions.mean(0)), root)
    groups = np.array_split(np.arange(n_clusters), n_superclasses)
    for group in groups:
        sup = add(unit(directions[group].mean(0)), top)
        for c in group:
            name_off = add(unit(directions[c] + noun_noise / np.sqrt(dim) * rng.normal(size=dim)), sup)
            for _ in range(nouns_per_class - 1):
                add(unit(directions[c] + noun_noise / np.sqrt(dim) * rng.normal(size=dim)), name_off)
    centre = np.mean(rows, axis=0)
    for _ in range(n_generic):
        add(unit(centre + 0.02 * rng.normal(size=dim)), root)
    for _ in range(n_distractors):
        add(unit(rng.normal(size=dim)), root)
    context = {"noun_embeddings": np.asarray(rows, dtype=np.float32), "noun_offsets": np.asarray(offsets, dtype=np.int64),
               "hypernym_child": np.asarray(child, dtype=np.int64), "hypernym_parent": np.asarray(parent, dtype=np.int64)}
    return MultiModalDataset(views={"image": images.astype(np.float32)}, labels=labels, name=name, context=context)
