"""mmclust: a reproducibility harness for multimodal (image + text) deep clustering."""

from .data import DataError, MultiModalDataset

__version__ = "0.1.0"
__all__ = ["DataError", "MultiModalDataset", "__version__"]
