"""The data pipeline: datasets, readers, file lists, shards, samplers, the mask-drawing collate, preprocessing."""

from hiermae.data import preprocess, sampling  # noqa: F401  (register the data preprocessor, samplers and loop)
from hiermae.data.collate import MaskCollate, MaskedBatch, MaskPlanner
from hiermae.data.datasets import FashionMNIST, ImageFolder, place_file_list_caches
from hiermae.data.preprocess import MIMDataPreprocessor
from hiermae.data.shards import pack_folder

__all__ = [
    "FashionMNIST", "ImageFolder", "MIMDataPreprocessor", "MaskCollate", "MaskPlanner", "MaskedBatch", "pack_folder",
    "place_file_list_caches",
]
