"""Data: datasets as uint8 tensors, the paper's splits, on-device batch augmentation."""

from .augment import random_crop_flip
from .corruptions import available_corruptions, corrupt
from .datasets import (
    DATA_ENV,
    DATASET_FACTS,
    DATASETS,
    ImageData,
    check_identity,
    default_cache_dir,
    describe_layouts,
    load_dataset,
    resolve_data_dir,
)
from .errors import DataError
from .loader import DeviceLoader
from .ood import OODSet, describe_ood_sets, load_ood_set, load_ood_sets
from .splits import DataSplits, channel_stats, make_splits

__all__ = [
    "DATASETS",
    "DATASET_FACTS",
    "DATA_ENV",
    "DataError",
    "DataSplits",
    "DeviceLoader",
    "ImageData",
    "OODSet",
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
    "random_crop_flip",
    "resolve_data_dir",
]
