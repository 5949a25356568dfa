"""Data: the data set registry, image data sets as uint8 tensors, text data sets, the paper's splits, batch
sources (images with on-device augmentation, token sequences, trees)."""

from .augment import random_crop_flip
from .corruptions import available_corruptions, corrupt
from .datasets import (
    DATA_ENV,
    DATASET_FACTS,
    IMAGE_DATASETS,
    ImageData,
    check_identity,
    default_cache_dir,
    describe_layouts,
    load_dataset,
    resolve_data_dir,
)
from .errors import DataError
from .loader import DeviceLoader
from .modality import ImageModality, Modality, TokenModality, TreeModality, modality_from_state
from .ood import OODSet, describe_ood_sets, load_ood_set, load_ood_sets
from .registry import DATASETS, DEFAULT_WORD_VECTORS, prepare_splits, register_dataset
from .sources import BatchSource, TokenLoader, TreeLoader
from .splits import DataSplits, channel_stats, make_splits

__all__ = [
    "DATASETS",
    "DATASET_FACTS",
    "DATA_ENV",
    "DEFAULT_WORD_VECTORS",
    "IMAGE_DATASETS",
    "BatchSource",
    "DataError",
    "DataSplits",
    "DeviceLoader",
    "ImageData",
    "ImageModality",
    "Modality",
    "OODSet",
    "TokenLoader",
    "TokenModality",
    "TreeLoader",
    "TreeModality",
    "available_corruptions",
    "channel_stats",
    "check_identity",
    "corrupt",
    "default_cache_dir",
    "describe_layouts",
    "describe_ood_sets",
    "load_dataset",
    "load_ood_set",
    "load_ood_sets",
    "make_splits",
    "modality_from_state",
    "prepare_splits",
    "random_crop_flip",
    "register_dataset",
    "resolve_data_dir",
]
