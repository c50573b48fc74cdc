"""Device choice and local seeding, shared by every method (no global RNG state is touched)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["resolve_device", "torch_generator", "numpy_rng", "seed_from"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def seed_from(random_state) -> int:
    """An int seed from ``None`` / int / ``np.random.Generator`` (sklearn's ``random_state`` forms)."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    return int(random_state)


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A local generator: parameter init and minibatch order draw from it, never the global RNG."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
