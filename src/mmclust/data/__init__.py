"""Data model, protocols, synthetic generator and the registry of real data sets."""

from .dataset import DataError, MultiModalDataset
from .protocols import PROTOCOLS, apply_protocol, apply_split, incomplete, mixed_modal, paired, parse_split, train_test_split
from .registry import REGISTRY, data_dir, get_spec, load, status, wiki_roph_split
from .synthetic import make_joint_space, make_multiview_blobs

__all__ = [
    "DataError", "MultiModalDataset", "PROTOCOLS", "apply_protocol", "incomplete", "mixed_modal", "paired",
    "train_test_split", "parse_split", "apply_split", "REGISTRY", "data_dir", "get_spec", "load", "status", "wiki_roph_split",
    "make_multiview_blobs", "make_joint_space",
]
