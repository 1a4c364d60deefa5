"""Datasets: uint8 images by index, split into train/val/test; importing registers the loaders."""
from .base import (DATASETS, ArrayImages, Dataset, ImageSet, Subset, check_unchanged, load_dataset, register_dataset,
                   to_float)
from .factors import FactorImages
from .loading import load_data
from . import arrays, celeba, cifar, dsprites, given, idx, images, shapes3d  # noqa: F401  (registration)

__all__ = [
    "DATASETS", "ArrayImages", "Dataset", "FactorImages", "ImageSet", "Subset", "check_unchanged", "load_data", "load_dataset",
    "register_dataset", "to_float",
]
