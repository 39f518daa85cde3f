"""``tganv2 data ...``: convert video collections to the official HDF5 layout and describe datasets.

  tganv2 data prepare ucf101 --videos DIR --splits DIR --split 1 --out DIR [--size 192x256] [--workers N]
  tganv2 data prepare folder --videos DIR --out DIR [--size 192x256] [--workers N]
  tganv2 data prepare faceforensics --videos DIR --masks DIR --out DIR [--size 256] [--workers N]
  tganv2 data info PATH            (an .h5 or .json file, a folder or .zip of videos, or "synthetic")

--videos may also be a .zip of frame folders (the StyleGAN-V / DIGAN layout), read without unpacking.

Reference: reference.md §3.1 (conversion) and §3.2 (what the loader expects).
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

from ..arguments import command_group, positive_int, writable_folder
from ..errors import DataError
from .base import DataWarning, category_from_path
from .folder import scan_videos
from .hdf5 import hdf5_summary, read_records
from .prepare import parse_size, prepare_faceforensics, prepare_folder, prepare_ucf101
from .synthetic import CLASS_NAMES
from .video import count_frames, read_error_reason, read_frames
from .zipped import is_zip_dataset

__all__ = ["add_commands", "describe"]


def _report(summaries) -> int:
    for summary in summaries:
        print(summary.line())
        for file, reason in summary.failed:
            print(f"  failed: {file}: {reason}")
    return 0


def _with_warnings(run):
    """Run a command showing every ``DataWarning`` (one line each: ``errors.show_warnings_as_lines``).

    A ``prepare`` command first checks that ``--out`` can be written (before any video is read).
    """

    def func(args):
        writable_folder(args.out)
        with warnings.catch_warnings():
            warnings.simplefilter("always", DataWarning)
            return run(args)

    return func


def _prepare_ucf101(args) -> int:
    rows, cols = parse_size(args.size)
    return _report(
        prepare_ucf101(
            args.videos, args.splits, args.split, args.out, rows, cols, args.workers, args.min_frames
        )
    )


def _prepare_folder(args) -> int:
    rows, cols = parse_size(args.size)
    return _report(prepare_folder(args.videos, args.out, rows, cols, args.workers, args.min_frames))


def _prepare_faceforensics(args) -> int:
    rows, cols = parse_size(args.size)
    if rows != cols:
        raise DataError(f"--size {args.size}: FaceForensics crops are square, give one number such as 256")
    return _report(
        prepare_faceforensics(args.videos, args.masks, args.out, rows, args.workers, args.min_frames)
    )


def _folder_summary(root: Path) -> dict:
    scan = scan_videos(root)
    scan.warn_ignored(root)
    videos = scan.videos
    if not videos and not scan.unusable:
        raise DataError(f"{root}: no videos found")
    classes = {category_from_path(v.relative_to(root)) for v in videos} - {None}
    summary = {"path": str(root), "videos": len(videos), "classes": len(classes)}
    frames, resolution = 0, None
    unreadable = [f"{path.name} ({reason})" for path, reason in scan.unusable]
    for video in videos:
        try:
            frames += count_frames(video)
            if resolution is None:
                first = read_frames(video, 0, 1)
                resolution = f"{first.shape[1]}x{first.shape[2]} (first readable video)"
        except Exception as e:  # any failure to read: list the file and go on
            unreadable.append(f"{video.name} ({read_error_reason(e)})")
    summary["videos"] = len(videos) + len(scan.unusable) - len(unreadable)
    summary["frames"] = f"{frames} (from container metadata)"
    summary["resolution"] = resolution or "? (no readable video)"
    if unreadable:
        summary["unreadable"] = f"{len(unreadable)}: {', '.join(unreadable[:5])}" + (
            " ..." * (len(unreadable) > 5)
        )
    return summary


def describe(path: str) -> list[dict]:
    """Summaries (videos, frames, classes, resolution) of an .h5/.json file, a folder or 'synthetic'."""
    if path == "synthetic":
        return [
            {
                "path": "synthetic (built in, tganv2.data.SyntheticVideoDataset)",
                "videos": "4096 (default)",
                "frames": "16 per clip (any count)",
                "classes": len(CLASS_NAMES),
                "class_names": ", ".join(CLASS_NAMES),
                "resolution": "64x64 (any size)",
            }
        ]
    target = Path(path)
    if target.is_file() and target.suffix in (".h5", ".hdf5"):
        return [hdf5_summary(target)]
    if target.is_file() and target.suffix == ".json" and target.with_suffix(".h5").is_file():
        return [hdf5_summary(target.with_suffix(".h5"), target)]
    if target.is_file() and target.suffix == ".json":
        records = read_records(target)
        return [
            {
                "path": str(target),
                "videos": len(records),
                "frames": sum(r["end"] - r["start"] for r in records),
                "classes": len({r.get("category") for r in records} - {None}),
            }
        ]
    if target.is_dir():
        h5_files = sorted(target.glob("*.h5"))
        return [hdf5_summary(h5) for h5 in h5_files] if h5_files else [_folder_summary(target)]
    if is_zip_dataset(target):
        return [_folder_summary(target)]
    raise DataError(
        f"{path}: no such file or directory (expected an .h5/.json file, a folder or .zip of videos, "
        "or 'synthetic')"
    )


def _info(args) -> int:
    for summary in describe(args.path):
        for key, value in summary.items():
            print(f"{key:>16}: {value}")
        print()
    return 0


def _add_common(parser: argparse.ArgumentParser, size_default: str) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder for NAME.h5 + NAME.json")
    parser.add_argument(
        "--size",
        default=size_default,
        help=f"stored frame size, ROWSxCOLS or one number (default {size_default})",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(8, os.cpu_count() or 1),
        help="parallel decoding processes (default: min(8, CPU count); 1 = in this process)",
    )
    parser.add_argument(
        "--min-frames",
        type=positive_int,
        default=16,
        help="skip videos shorter than this many frames (default 16)",
    )


def add_commands(subparsers) -> None:
    data = subparsers.add_parser("data", help="convert videos to the HDF5 layout, describe datasets")
    data_commands = command_group(data, "data_command", "SUBCOMMAND")
    prepare = data_commands.add_parser("prepare", help="convert a video collection to train/test .h5 + .json")
    sources = command_group(prepare, "source", "SOURCE")

    ucf101 = sources.add_parser(
        "ucf101",
        help="UCF101 with an official train/test split (reference §3.1)",
        description="Convert UCF101 into OUT/train.h5 + OUT/test.h5 (and their .json indexes) with the "
        "official split lists, resized to --size as the official conversion script does.",
    )
    ucf101.add_argument(
        "--videos", required=True, type=Path, help="folder of UCF101 .avi files (flat or per class)"
    )
    ucf101.add_argument(
        "--splits",
        required=True,
        type=Path,
        help="folder with trainlist0K.txt and testlist0K.txt (ucfTrainTestlist)",
    )
    ucf101.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="official split (default 1)")
    _add_common(ucf101, "192x256")
    ucf101.set_defaults(func=_with_warnings(_prepare_ucf101))

    folder = sources.add_parser(
        "folder",
        help="any folder of videos or frame folders into train.h5 + train.json",
        description="Convert every video (any container PyAV reads) or folder of frame images found "
        "under --videos into OUT/train.h5 + OUT/train.json, resized to --size. Class labels come from "
        "the first sub-folder level, if there is one.",
    )
    folder.add_argument(
        "--videos",
        required=True,
        type=Path,
        help="folder searched recursively for videos, or a .zip of frame folders",
    )
    _add_common(folder, "192x256")
    folder.set_defaults(func=_with_warnings(_prepare_folder))

    faces = sources.add_parser(
        "faceforensics",
        help="FaceForensics: crop each frame to its face mask box",
        description="Convert FaceForensics into .h5 + .json files: each frame is cropped to the bounding "
        "box of its face mask (the mask video of the same name) and resized to --size.",
    )
    faces.add_argument(
        "--videos",
        required=True,
        type=Path,
        help="folder of videos, optionally with train/ val/ test/ sub-folders",
    )
    faces.add_argument(
        "--masks", required=True, type=Path, help="folder of face mask videos with the same names"
    )
    _add_common(faces, "256")
    faces.set_defaults(func=_with_warnings(_prepare_faceforensics))

    info = data_commands.add_parser(
        "info",
        help="print videos, frames, classes and resolution of a dataset",
        description="Describe a dataset without training on it: the number of videos, frames and "
        "classes and the frame size of an .h5/.json file, a folder or .zip of videos (frame counts from "
        "the container metadata; unreadable files are listed) or the built-in synthetic dataset.",
    )
    info.add_argument("path", help="an .h5 or .json file, a folder or .zip of videos, or 'synthetic'")
    info.set_defaults(func=_info)
