"""Zip datasets in the StyleGAN-V / DIGAN layout, read in place with ``zipfile`` and Pillow.

A ``.zip`` of per-video frame folders, optionally under class folders::

    ucf101.zip
      ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01/000001.png  000002.png ...
      ...                                  (or simply  video_name/000001.jpg ...)

Every folder inside the archive that holds image files is one video; its frames are the images in natural
order (``2.png`` before ``10.png``). A video is named by a pseudo-path ``ARCHIVE.zip/folder/inside``, so
class names (``category_from_path``), messages and ``data prepare``'s part files work as for a directory.
Each process opens its own ``ZipFile`` (a forked copy of an open handle would share its file offset).
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "natural_key",
    "is_zip_dataset",
    "zip_member",
    "zip_videos",
    "zip_frame_names",
    "read_zip_frames",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def is_zip_dataset(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix.lower() == ".zip" and path.is_file()


def zip_member(path: str | Path) -> tuple[Path, str] | None:
    """``(archive, folder inside it)`` for a pseudo-path ``X.zip/a/b``; None when no parent is a zip file."""
    path = Path(path)
    for parent in path.parents:
        if parent.suffix.lower() == ".zip" and parent.is_file():
            return parent, path.relative_to(parent).as_posix()
    return None


class _Archive:
    """One open archive: the handle and its frame folders ``{folder: [member names in natural order]}``."""

    def __init__(self, path: Path):
        try:
            self.file = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{path}: not a readable zip archive ({e})") from None
        folders: dict[str, list[str]] = {}
        for info in self.file.infolist():
            name = info.filename
            if info.is_dir() or PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            folder = posixpath.dirname(name)
            if folder and not any(part.startswith((".", "__MACOSX")) for part in folder.split("/")):
                folders.setdefault(folder, []).append(name)
        self.folders = {
            folder: sorted(names, key=lambda n: natural_key(posixpath.basename(n)))
            for folder, names in folders.items()
        }
        self.mtime = path.stat().st_mtime


_archives: dict[Path, tuple[int, _Archive]] = {}  # resolved path -> (pid that opened it, archive)


def _archive(path: Path) -> _Archive:
    key = path.resolve()
    entry = _archives.get(key)
    if entry is None or entry[0] != os.getpid() or entry[1].mtime != key.stat().st_mtime:
        entry = (os.getpid(), _Archive(key))
        _archives[key] = entry
    return entry[1]


def zip_videos(path: str | Path) -> list[Path]:
    """Pseudo-paths ``path/folder`` of the frame folders in the archive, sorted."""
    path = Path(path)
    return sorted(path / folder for folder in _archive(path).folders)


def zip_frame_names(path: str | Path) -> list[str]:
    """Member names of the frames of the pseudo-path ``X.zip/folder``, in natural order."""
    archive_path, folder = zip_member(path)
    names = _archive(archive_path).folders.get(folder)
    if names is None:
        raise DataError(f"{path}: no frame folder '{folder}' in {archive_path}")
    return names


def read_zip_frames(path: str | Path, start: int = 0, n_frames: int | None = None) -> list[np.ndarray]:
    """Frames ``start .. start + n_frames - 1`` of a zipped frame folder as uint8 ``(H, W, 3)`` arrays."""
    archive_path, _ = zip_member(path)
    archive = _archive(archive_path)
    names = zip_frame_names(path)
    stop = len(names) if n_frames is None else start + n_frames
    frames = []
    for name in names[start:stop]:
        with archive.file.open(name) as member, Image.open(member) as image:
            frames.append(np.asarray(image.convert("RGB")))
    return frames
