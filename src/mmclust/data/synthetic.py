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
