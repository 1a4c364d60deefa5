"""Datasets: uint8 images by index, split into train/val/test; importing registers the loaders."""
from .base import DATASETS, ArrayImages, Dataset, ImageSet, Subset, load_dataset, register_dataset, to_float
from . import dsprites, idx  # noqa: F401  (registration)

__all__ = [
    "DATASETS", "ArrayImages", "Dataset", "ImageSet", "Subset", "load_dataset", "register_dataset", "to_float",
]
