"""Video data: decoding and encoding, datasets with one contract, HDF5 conversion, multi-level reals.

Reference: reference.md §3 (data side). Every dataset returns ``(clip, label)``, ``clip`` uint8
``(C, T, H, W)``, ``label`` int (-1 when unknown); ``to_float`` gives the model's (x − 128)/128 range and
``to_uint8`` maps it back.

  open_dataset(path, ...)      None/"synthetic" | .h5 | folder or .zip of videos  →  a dataset
  make_loader                  sharded, seeded, endless and resumable DataLoader over (index, epoch) keys
  make_real_levels / real_levels_from_config   the real-data subsampling S^D (§3.3)
  read_video / write_video / make_grid        PyAV decoding with seeking, MP4/GIF writing, sample grids

PyAV is imported only when a video file is read or written (``video.py``).
"""

from . import base
from .base import *  # noqa: F403 - the dataset contract, re-exported as it is (base.__all__)
from .folder import FolderVideoDataset, find_videos
from .hdf5 import HDF5VideoDataset, hdf5_summary, read_records
from .loader import build_dataset, make_loader, open_dataset
from .multilevel import make_real_levels, real_levels_from_config
from .synthetic import CLASS_NAMES, MOTIONS, SHAPES, SyntheticVideoDataset
from .video import count_frames, iter_frames, make_grid, read_frames, read_video, write_video

__all__ = [
    *base.__all__,
    "FolderVideoDataset",
    "find_videos",
    "HDF5VideoDataset",
    "hdf5_summary",
    "read_records",
    "SyntheticVideoDataset",
    "CLASS_NAMES",
    "SHAPES",
    "MOTIONS",
    "open_dataset",
    "build_dataset",
    "make_loader",
    "make_real_levels",
    "real_levels_from_config",
    "count_frames",
    "iter_frames",
    "read_video",
    "read_frames",
    "write_video",
    "make_grid",
]
