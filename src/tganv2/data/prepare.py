"""Conversion of video collections to the official HDF5 + JSON layout (reference.md §3.1).

UCF101 (``scripts/make_ucf101.py``): the videos of ``trainlist0{k}.txt`` / ``testlist0{k}.txt`` become
``train.{h5,json}`` / ``test.{h5,json}``; every frame at native fps is resized to rows × cols (bicubic,
antialiased, no crop), stored RGB uint8 CHW; the category is the second underscore-separated token of the
file name. A folder of videos gets the same treatment (category from the sub-folder). FaceForensics
(``scripts/make_face_forensics.py``): each frame is cropped to the square bounding box of its face mask
(mask > 5), resized to size × size, stored without a category.

How it runs:
  * one worker process per video (``ProcessPoolExecutor``): decode, resize, write ``OUT/.parts/…/X.npy``
    (written under a temporary name, then renamed);
  * resumable: part files from an earlier run are reused ("skipped"); a split whose ``.h5`` and ``.json``
    both exist is not redone;
  * assembly: parts are copied in split-list order (the official converter used worker-finish order) into
    ``NAME.h5.tmp``, which is renamed to ``NAME.h5`` only when complete (the JSON likewise); then the parts
    are deleted. Temporary disk use is therefore about twice the final size;
  * unreadable, missing or too-short videos are skipped with one ``DataWarning`` each and listed as failed;
  * one run per output folder: ``OUT/.prepare.lock`` is held (``tganv2.lock``) while converting, and a
    second run into the same ``--out`` stops with one line; a full disk stops with one line naming the file;
  * workers exit when the parent dies (``PR_SET_PDEATHSIG`` on Linux, a parent-pid watchdog elsewhere),
    so a ``kill -9`` of ``data prepare`` leaves no process behind.

``--videos`` may be a folder or a ``.zip`` of frame folders (``zipped.py``); UCF101's split lists then match
the frame folders by name without the extension.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..progress import make_progress
from .base import DataWarning, category_from_path
from .folder import find_videos, scan_videos
from .guards import init_worker, prepare_lock, writing
from .video import iter_frames, read_error_reason

__all__ = [
    "SplitSummary",
    "parse_size",
    "resize_frames",
    "mask_boxes",
    "convert_splits",
    "prepare_ucf101",
    "prepare_folder",
    "prepare_faceforensics",
]

RESIZE_CHUNK = 32  # frames resized at once (bounds the float32 working memory)


@dataclass
class Job:
    source: Path  # video file or frame folder
    part: Path  # .npy part file with uint8 (T, 3, rows, cols)
    category: str | None = None
    mask: Path | None = None  # FaceForensics: the face mask video


@dataclass
class SplitSummary:
    name: str  # split name: train, test, val
    h5_path: Path
    converted: int = 0  # videos decoded in this run
    skipped: int = 0  # videos whose part file was done in an earlier run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    frames: int = 0
    already_done: bool = False  # the .h5 and .json existed: nothing was redone

    def line(self) -> str:
        if self.already_done:
            return f"{self.name}: {self.h5_path} and its .json exist, nothing to do (delete them to redo)"
        return (
            f"{self.name}: converted {self.converted}, skipped {self.skipped} (done in an earlier run), "
            f"failed {len(self.failed)} -> {self.h5_path} ({self.frames} frames)"
        )


def parse_size(text: str) -> tuple[int, int]:
    """``"192x256"`` → (192, 256) (rows × cols); ``"256"`` → (256, 256)."""
    parts = str(text).lower().split("x")
    try:
        rows, cols = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        rows = cols = 0
    if len(parts) > 2 or rows < 1 or cols < 1:
        raise DataError(f"--size {text!r}: expected ROWSxCOLS such as 192x256, or one number such as 256")
    return rows, cols


def resize_frames(frames: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` → bicubic antialiased resize, clamped → uint8 ``(T, 3, rows, cols)``."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    if video.shape[-2:] == (rows, cols):
        return video.contiguous().numpy()
    resized = F.interpolate(
        video.float(), size=(rows, cols), mode="bicubic", antialias=True, align_corners=False
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8).numpy()


def _resized_video(source: Path, rows: int, cols: int) -> np.ndarray:
    """All frames of ``source`` resized, decoded and resized RESIZE_CHUNK frames at a time."""
    chunks, pending = [], []
    for frame in iter_frames(source):
        pending.append(frame)
        if len(pending) == RESIZE_CHUNK:
            chunks.append(resize_frames(np.stack(pending), rows, cols))
            pending = []
    if pending:
        chunks.append(resize_frames(np.stack(pending), rows, cols))
    return np.concatenate(chunks) if chunks else np.zeros((0, 3, rows, cols), np.uint8)


def mask_boxes(mask_path: Path, threshold: int = 5) -> list[tuple[int, int, int]]:
    """Per-frame square face boxes ``(top, left, side)`` from a mask video (pixels > ``threshold``).

    Each box is the square around the mask's bounding box (side = its longer edge), clamped to the frame.
    Frames with an empty mask reuse the nearest earlier box (or the first box for leading frames).
    """
    boxes: list[tuple[int, int, int] | None] = []
    for mask in iter_frames(mask_path):
        height, width = mask.shape[:2]
        inside = mask.max(axis=2) > threshold  # (H, W)
        ys, xs = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        if len(ys) == 0:
            boxes.append(None)
            continue
        side = min(max(ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1), height, width)
        centre_y, centre_x = (ys[0] + ys[-1] + 1) / 2, (xs[0] + xs[-1] + 1) / 2
        top = int(np.clip(round(centre_y - side / 2), 0, height - side))
        left = int(np.clip(round(centre_x - side / 2), 0, width - side))
        boxes.append((top, left, int(side)))
    found = [box for box in boxes if box is not None]
    if not found:
        raise DataError("the face mask is empty in every frame")
    previous = found[0]
    filled = []
    for box in boxes:
        previous = box if box is not None else previous
        filled.append(previous)
    return filled


def _face_video(source: Path, mask: Path, size: int) -> np.ndarray:
    """Frames cropped to their face box and resized to ``size``: uint8 ``(T, 3, size, size)``."""
    boxes = mask_boxes(mask)
    crops = []
    for frame, (top, left, side) in zip(iter_frames(source), boxes):
        crops.append(resize_frames(frame[None, top : top + side, left : left + side], size, size)[0])
    return np.stack(crops) if crops else np.zeros((0, 3, size, size), np.uint8)


def _convert_one(job: Job, rows: int, cols: int, min_frames: int) -> tuple[int, str]:
    """Worker: decode + resize one video into its part file. Returns (frames, "") or (0, reason)."""
    try:
        if job.mask is not None:
            video = _face_video(job.source, job.mask, rows)
        else:
            video = _resized_video(job.source, rows, cols)
    except Exception as e:  # any decoding failure means "skip this video"
        return 0, read_error_reason(e)
    if len(video) < min_frames:
        return 0, f"only {len(video)} frames, need at least {min_frames}"
    temporary = job.part.with_name(job.part.name + ".tmp")
    with writing(temporary):
        job.part.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            np.save(file, video, allow_pickle=False)
        os.replace(temporary, job.part)
    return len(video), ""


def _pool_context():
    """spawn, never fork: a forked worker copies this process's helper threads half-alive. One whose parent
    had decoded or encoded video before hung for good in PyAV's ``to_ndarray`` (swscale's ``sws_frame_setup``
    joining a slice thread that exists only in the parent; a pytest worker, 2026-12-07); CUDA and OpenMP
    carry the same hazard. A spawned worker costs about a second to start, once per pool."""
    return multiprocessing.get_context("spawn")


def _run_jobs(jobs: list[Job], summary: SplitSummary, rows: int, cols: int, workers: int, min_frames: int):
    """Convert the jobs whose part file is missing; fills ``summary`` and warns once per failed video."""
    todo = [job for job in jobs if not job.part.is_file()]
    summary.skipped = len(jobs) - len(todo)

    def record(job_index: int, n_frames: int, reason: str) -> None:
        if reason:
            summary.failed.append((str(todo[job_index].source), reason))
            warnings.warn(f"skipping {todo[job_index].source}: {reason}", DataWarning, stacklevel=3)
        else:
            summary.converted += 1

    if workers <= 1 or len(todo) <= 1:
        with make_progress() as progress:
            task = progress.add_task(summary.name, total=len(todo))
            for i, job in enumerate(todo):
                record(i, *_convert_one(job, rows, cols, min_frames))
                progress.advance(task)
    else:
        pool = ProcessPoolExecutor(
            workers, mp_context=_pool_context(), initializer=init_worker, initargs=(os.getpid(),)
        )
        try:
            futures = {
                pool.submit(_convert_one, job, rows, cols, min_frames): i for i, job in enumerate(todo)
            }
            with make_progress() as progress:
                task = progress.add_task(summary.name, total=len(todo))
                for future in as_completed(futures):
                    record(futures[future], *future.result())
                    progress.advance(task)
        finally:  # on an error (a full disk) the queued videos are dropped, not converted first
            pool.shutdown(wait=True, cancel_futures=True)
    return [job for job in jobs if job.part.is_file()]


def _part_shape(path: Path) -> tuple[int, ...]:
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, _ = read_header(file)
    return shape


def _write_split(done: list[Job], h5_path: Path, with_category: bool) -> int:
    """Concatenate the part files into ``h5_path`` + ``.json`` atomically; returns the number of frames."""
    shapes = [_part_shape(job.part) for job in done]  # headers only: no file stays open
    total = sum(shape[0] for shape in shapes)
    _, channels, rows, cols = shapes[0]
    json_path = h5_path.with_suffix(".json")
    h5_temporary = h5_path.with_name(h5_path.name + ".tmp")
    json_temporary = json_path.with_name(json_path.name + ".tmp")
    records, start = [], 0
    with writing(h5_temporary), h5py.File(h5_temporary, "w") as file:
        image = file.create_dataset("image", shape=(total, channels, rows, cols), dtype=np.uint8)
        for job, (length, *_) in zip(done, shapes):
            image[start : start + length] = np.load(job.part, allow_pickle=False)
            record = {"start": start, "end": start + length}
            if with_category:
                record["category"] = job.category
            records.append(record)
            start += length
    with writing(json_temporary):
        json_temporary.write_text(json.dumps(records))
    os.replace(json_temporary, json_path)
    os.replace(h5_temporary, h5_path)
    return total


def convert_splits(
    splits: dict[str, list[Job]],
    out: Path,
    rows: int,
    cols: int,
    workers: int,
    min_frames: int,
    missing: dict[str, list[tuple[str, str]]] | None = None,
) -> list[SplitSummary]:
    """Convert each split's jobs into ``OUT/<split>.h5`` + ``.json`` (see the module docstring).

    ``missing`` lists, per split, inputs already known to be unusable (file, reason): warned and counted.
    """
    with prepare_lock(out):
        return _convert_locked(splits, out, rows, cols, workers, min_frames, missing or {})


def _convert_locked(splits, out, rows, cols, workers, min_frames, missing) -> list[SplitSummary]:
    summaries = []
    for name, jobs in splits.items():
        h5_path = out / f"{name}.h5"
        summary = SplitSummary(name, h5_path)
        summaries.append(summary)
        if h5_path.is_file() and h5_path.with_suffix(".json").is_file():
            summary.already_done = True
            continue
        for file, reason in missing.get(name, []):
            summary.failed.append((file, reason))
            warnings.warn(f"skipping {file}: {reason}", DataWarning, stacklevel=2)
        done = _run_jobs(jobs, summary, rows, cols, workers, min_frames)
        if not done:
            raise DataError(f"split {name}: none of the {len(jobs)} videos could be converted")
        with_category = any(job.category is not None for job in done)
        summary.frames = _write_split(done, h5_path, with_category)
    shutil.rmtree(out / ".parts", ignore_errors=True)
    return summaries


def _part_path(out: Path, split: str, rows: int, cols: int, source: Path, key: str) -> Path:
    digest = hashlib.sha1(f"{source.resolve()}|{key}".encode()).hexdigest()[:10]
    return out / ".parts" / f"{split}_{rows}x{cols}" / f"{source.stem}-{digest}.npy"


def _find_split_file(splits_dir: Path, name: str) -> Path:
    for candidate in (splits_dir / name, splits_dir / "ucfTrainTestlist" / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{splits_dir / name}: split file not found (expected the ucfTrainTestlist folder)")


def prepare_ucf101(
    videos: str | Path,  # UCF101 videos, flat or in class folders (matched by file name)
    splits: str | Path,  # folder with trainlist0{k}.txt / testlist0{k}.txt (or its parent)
    split: int,  # official split 1, 2 or 3
    out: str | Path,  # output folder: train.h5/.json and test.h5/.json
    rows: int = 192,
    cols: int = 256,
    workers: int = 1,
    min_frames: int = 16,
) -> list[SplitSummary]:
    videos, splits, out = Path(videos), Path(splits), Path(out)
    if split not in (1, 2, 3):
        raise DataError(f"--split {split}: UCF101 has the official splits 1, 2 and 3")
    lists = {name: _find_split_file(splits, f"{name}list0{split}.txt") for name in ("train", "test")}
    # by name without the extension: video files, and frame folders (plain or zipped) named after them
    by_name = {Path(path.name).stem: path for path in find_videos(videos)}
    if not by_name:
        raise DataError(f"{videos}: no video files found")
    jobs: dict[str, list[Job]] = {}
    missing: dict[str, list[tuple[str, str]]] = {}
    for name, list_path in lists.items():
        jobs[name], missing[name] = [], []
        for line in list_path.read_text().splitlines():
            if not line.strip():
                continue
            listed = line.split()[0]
            source = by_name.get(Path(listed).stem)
            if source is None:
                missing[name].append((listed, f"listed in {list_path.name} but not found under {videos}"))
                continue
            part = _part_path(out, name, rows, cols, source, "ucf101")
            jobs[name].append(Job(source, part, category_from_path(listed)))
    return convert_splits(jobs, out, rows, cols, workers, min_frames, missing)


def prepare_folder(
    videos: str | Path,
    out: str | Path,
    rows: int = 192,
    cols: int = 256,
    workers: int = 1,
    min_frames: int = 16,
) -> list[SplitSummary]:
    """Every video (or frame folder) under ``videos`` into ``OUT/train.{h5,json}``."""
    videos, out = Path(videos), Path(out)
    scan = scan_videos(videos)
    scan.warn_ignored(videos)
    if not scan.videos:
        raise DataError(f"{videos}: no videos found")
    jobs = [
        Job(
            source,
            _part_path(out, "train", rows, cols, source, "folder"),
            category_from_path(source.relative_to(videos)),
        )
        for source in scan.videos
    ]
    unusable = [(str(path), reason) for path, reason in scan.unusable]  # symlink loops, broken links
    return convert_splits({"train": jobs}, out, rows, cols, workers, min_frames, {"train": unusable})


def prepare_faceforensics(
    videos: str | Path,  # videos, optionally in train/ val/ test/ sub-folders
    masks: str | Path,  # face mask videos with the same names (same sub-folders or flat)
    out: str | Path,
    size: int = 256,
    workers: int = 1,
    min_frames: int = 16,
) -> list[SplitSummary]:
    videos, masks, out = Path(videos), Path(masks), Path(out)
    if not masks.is_dir():
        raise DataError(f"{masks}: mask folder not found")
    split_dirs = {name: videos / name for name in ("train", "val", "test") if (videos / name).is_dir()}
    split_dirs = split_dirs or {"train": videos}
    masks_by_stem = {path.stem: path for path in find_videos(masks)}
    jobs: dict[str, list[Job]] = {}
    missing: dict[str, list[tuple[str, str]]] = {}
    for name, folder in split_dirs.items():
        sources = find_videos(folder)
        if not sources:
            raise DataError(f"{folder}: no videos found")
        jobs[name], missing[name] = [], []
        for source in sources:
            mask = masks / source.relative_to(videos)
            mask = mask if mask.exists() else masks_by_stem.get(source.stem)
            if mask is None:
                missing[name].append((str(source), f"no mask video named {source.stem} under {masks}"))
                continue
            jobs[name].append(Job(source, _part_path(out, name, size, size, source, str(mask)), None, mask))
    return convert_splits(jobs, out, size, size, workers, min_frames, missing)
