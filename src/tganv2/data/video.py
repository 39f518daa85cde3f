"""Video files: decode with PyAV (the formats of ``VIDEO_SUFFIXES``, frame folders, zipped frame folders),
encode MP4/GIF, sample grids.

Reference: reference.md §3.1 (the official converter decodes every frame at native fps, no temporal
resampling) and §4.2 (previews: uint8 = clip(x·128 + 128), MP4 written by rank 0).

Frames are uint8 ``(T, H, W, 3)`` RGB (``layout="THWC"``) or ``(3, T, H, W)`` (``layout="CTHW"``).
Frame ``i`` of a video is the ``i``-th frame a full decode produces. ``read_video(path, start, n)`` seeks to
the last keyframe at or before ``start`` and decodes forward, so a 16-frame clip from the middle of a long
video does not decode the whole file. Frame indices come from timestamps relative to frame 0's; with open
GOPs (XviD with B-frames) the seek backs off to an earlier keyframe, and when timestamps cannot be trusted
(missing pts, variable frame rate) it decodes from the beginning, so the result always equals
``read_video(path)[start:start + n]``.

Paths name a video file, a frame folder, or a frame folder inside a ``.zip`` (``data.zip/class/video``, the
StyleGAN-V/DIGAN layout, read with ``zipfile`` and Pillow without unpacking; see ``zipped.py``).

PyAV is imported only here and only when a video file is read or written, so everything else (training on
HDF5 or synthetic data, benchmarks, the CLI) works without it; without PyAV ``write_video`` writes a GIF
instead of an MP4/AVI, with one warning per process.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .base import DataWarning, to_uint8
from .zipped import IMAGE_SUFFIXES, natural_key, read_zip_frames, zip_frame_names, zip_member

__all__ = [
    "VIDEO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "read_error_reason",
    "list_frame_files",
    "count_frames",
    "probe_video",
    "read_video",
    "read_frame_folder",
    "read_frames",
    "iter_frames",
    "write_video",
    "make_grid",
]

# Container extensions read by the folder dataset and `data prepare` (anything PyAV's FFmpeg demuxes in
# practice); other files are ignored with one warning per scan. Each one is tested with a real file.
VIDEO_SUFFIXES = frozenset(
    {".avi", ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".m2v", ".vob"}
    | {".ts", ".mts", ".m2ts", ".ogv", ".ogg", ".3gp", ".3g2", ".flv", ".f4v", ".wmv", ".asf", ".divx"}
)

_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")


def read_error_reason(error: BaseException) -> str:
    """One short line for a failed read: the message without PyAV's ``[Errno 1094995529]`` prefix and
    without the file name it repeats (callers name the file themselves)."""
    text = str(error).splitlines()[0].strip() if str(error).strip() else type(error).__name__
    text = _ERRNO_PREFIX.sub("", text)
    filename = getattr(error, "filename", None)
    if filename:
        for quoted in (f": '{filename}'", f": {filename}"):
            if text.endswith(quoted):
                text = text[: -len(quoted)]
    return text or type(error).__name__


def _av(path: str | Path):
    """The ``av`` module, imported on first use; a one-line ``DataError`` naming ``path`` without it."""
    try:
        import av
    except ImportError:
        raise DataError(f"{path}: reading or writing video files needs PyAV (pip install av)") from None
    return av


def _have_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder, in natural order (one folder = one video, as in StyleGAN-V)."""
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def _frame_rate(stream) -> Fraction | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else None


def _metadata_frames(av, container, stream) -> int | None:
    """Frame count from container metadata, else duration × fps; None when neither is there."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    rate = _frame_rate(stream)
    if rate and stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base * rate)))
    if rate and container.duration:
        return int(round(container.duration / av.time_base * float(rate)))
    return None


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise DataError(f"{path}: no video stream")
    return container.streams.video[0]


def count_frames(path: str | Path, exact: bool = False) -> int:
    """Number of frames: container metadata, else duration × fps, else (or with ``exact``) a full decode.

    Metadata can be missing (``stream.frames == 0`` for many WebM/MKV files) or slightly off; callers that
    must be exact pass ``exact=True`` or check the length of what they decode.
    """
    path = Path(path)
    if path.is_dir():
        return len(list_frame_files(path))
    if not path.is_file() and zip_member(path) is not None:
        return len(zip_frame_names(path))
    av = _av(path)
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        estimate = None if exact else _metadata_frames(av, container, stream)
        if estimate is not None:
            return estimate
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def probe_video(path: str | Path, min_frames: int = 1) -> int:
    """Open a video, decode its first frame and return its frame count (the metadata estimate, counted
    exactly by decoding when the estimate is below ``min_frames``). Raises what a failed read raises."""
    path = Path(path)
    if path.is_dir() or (not path.is_file() and zip_member(path) is not None):
        return count_frames(path)
    av = _av(path)
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        estimate = _metadata_frames(av, container, stream)
        frames = container.decode(stream)
        if next(frames, None) is None:
            raise DataError(f"{path}: no decodable frame")
        if estimate is not None and estimate >= min_frames:
            return estimate
        return 1 + sum(1 for _ in frames)  # short by metadata (or none): count what decodes


def _to_layout(frames: list[np.ndarray], layout: str, height: int = 0, width: int = 0) -> np.ndarray:
    if frames:
        video = np.stack(frames)  # (T, H, W, 3)
    else:
        video = np.zeros((0, height, width, 3), np.uint8)
    if layout == "THWC":
        return video
    if layout == "CTHW":
        return np.ascontiguousarray(video.transpose(3, 0, 1, 2))  # (T, H, W, 3) -> (3, T, H, W)
    raise ValueError(f"layout must be 'THWC' or 'CTHW', got {layout!r}")


def _decode_sequential(container, stream, start: int, stop: float) -> list[np.ndarray]:
    """Frames ``start .. stop-1`` counted in decode order from the beginning of the stream."""
    frames = []
    for index, frame in enumerate(container.decode(stream)):
        if index >= stop:
            break
        if index >= start:
            frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def _decode_after_seek(container, stream, start: int, stop: float) -> list[np.ndarray] | None:
    """Seek to a keyframe before ``start`` and decode forward; None when timestamps are unusable.

    With open GOPs (XviD with B-frames) the frames just before a keyframe in display order cannot be
    decoded from it, so when the first decodable frame is past ``start`` the seek backs off further.
    """
    rate, time_base = _frame_rate(stream), stream.time_base
    if not rate or not time_base:
        return None
    # Frame 0's timestamp, measured rather than read from stream.start_time: AVI files with B-frames
    # (XviD) number their first frame 1, others start at an edit-list offset.
    first = next(iter(container.decode(stream)), None)
    if first is None or first.pts is None:
        return None
    origin = first.pts
    seek_error = _av("seek").FFmpegError
    seek_index = start
    while True:
        target = origin + int(math.floor(Fraction(seek_index) / rate / time_base))
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except seek_error:
            return None
        frames = _decode_from(container, stream, origin, rate, start, stop)
        if frames != "overshoot":
            return frames
        if seek_index == 0:
            return None
        seek_index = max(0, seek_index - max(16, 2 * (start - seek_index)))


def _decode_from(container, stream, origin: int, rate: Fraction, start: int, stop: float):
    """Decode after a seek: frames ``start .. stop-1`` by timestamp, "overshoot" or None (unusable pts)."""
    frames: list[np.ndarray] = []
    expected = start
    for frame in container.decode(stream):
        if frame.pts is None:
            return None
        index = round(float((frame.pts - origin) * stream.time_base * rate))
        if index < expected:
            if frames:  # a timestamp went backwards or repeated: not a constant-rate stream
                return None
            continue
        if index != expected:  # past start right after the seek, or a gap later on
            return "overshoot" if not frames else None
        frames.append(frame.to_ndarray(format="rgb24"))
        expected += 1
        if expected >= stop:
            break
    return frames


@contextlib.contextmanager
def _open_video(path: str | Path):
    """``(container, stream)``: the file opened with PyAV and its first video stream, decoded with threads."""
    with _av(path).open(str(path)) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        yield container, stream


def read_video(
    path: str | Path, start: int = 0, n_frames: int | None = None, layout: str = "THWC"
) -> np.ndarray:
    """Decode frames ``start .. start + n_frames - 1`` (all remaining with ``None``) as uint8 RGB.

    Returns fewer frames when the video ends first. Raises ``av.FFmpegError``/``OSError`` for files FFmpeg
    cannot read (datasets catch these and skip the file; ``read_error_reason`` words the message).
    """
    stop = math.inf if n_frames is None else start + n_frames
    with _open_video(path) as (container, stream):
        height, width = stream.codec_context.height, stream.codec_context.width
        frames = None
        if start > 0:
            frames = _decode_after_seek(container, stream, start, stop)
            if frames is None:
                container.seek(0)
        if frames is None:
            frames = _decode_sequential(container, stream, start, stop)
    return _to_layout(frames, layout, height, width)


def read_frame_folder(
    folder: str | Path, start: int = 0, n_frames: int | None = None, layout: str = "THWC"
) -> np.ndarray:
    """Frames of a folder of images (natural sort order), decoded with Pillow; only the requested ones."""
    files = list_frame_files(folder)
    stop = len(files) if n_frames is None else start + n_frames
    frames = []
    for file in files[start:stop]:
        with Image.open(file) as image:
            frames.append(np.asarray(image.convert("RGB")))
    return _to_layout(frames, layout)


def read_frames(
    path: str | Path, start: int = 0, n_frames: int | None = None, layout: str = "THWC"
) -> np.ndarray:
    """``read_frame_folder`` for a directory, zipped frames for ``X.zip/member``, else ``read_video``."""
    path = Path(path)
    if path.is_dir():
        return read_frame_folder(path, start, n_frames, layout)
    if not path.is_file() and zip_member(path) is not None:
        return _to_layout(read_zip_frames(path, start, n_frames), layout)
    return read_video(path, start, n_frames, layout)


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of a video file or frame folder, one uint8 ``(H, W, 3)`` array at a time."""
    path = Path(path)
    if path.is_dir():
        for file in list_frame_files(path):
            with Image.open(file) as image:
                yield np.asarray(image.convert("RGB"))
        return
    if not path.is_file() and zip_member(path) is not None:
        for index in range(len(zip_frame_names(path))):
            yield read_zip_frames(path, index, 1)[0]
        return
    with _open_video(path) as (container, stream):
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def _as_uint8_frames(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


_warned_gif_fallback = False


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> Path:
    images = [Image.fromarray(frame) for frame in frames]
    duration_ms = max(int(round(1000 / fps)), 10)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path


def write_video(path: str | Path, frames, fps: float = 15, crf: int = 18) -> Path:
    """Write uint8 frames ``(T, H, W, 3)``; the format follows the suffix. Returns the path written.

    ``.mp4``: H.264 (libx264, yuv420p, constant quality ``crf``); ``.gif``: Pillow, looping; ``.avi``: XviD
    (MPEG-4 part 2 with the XVID tag, like UCF101's files) at about 4 bits per pixel. Odd sizes are padded
    by one edge row/column for yuv420p. Without PyAV an ``.mp4``/``.avi`` becomes a GIF next to it
    (``X.gif``, returned), with one ``DataWarning`` per process.
    """
    global _warned_gif_fallback
    path = Path(path)
    frames = _as_uint8_frames(frames)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".avi", ".gif"):
        raise DataError(f"{path}: can only write .mp4, .avi or .gif videos")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        return _write_gif(path, frames, fps)
    if not _have_av():
        if not _warned_gif_fallback:
            _warned_gif_fallback = True
            warnings.warn(
                f"PyAV is not installed (pip install av): writing GIF instead of {suffix} videos, "
                f"e.g. {path.with_suffix('.gif')}",
                DataWarning,
                stacklevel=2,
            )
        return _write_gif(path.with_suffix(".gif"), frames, fps)
    av = _av(path)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        rate = Fraction(fps).limit_denominator(1001)
        if suffix == ".mp4":
            stream = container.add_stream("libx264", rate=rate)
            stream.options = {"crf": str(crf)}
        else:
            stream = container.add_stream("mpeg4", rate=rate)
            stream.codec_context.codec_tag = "XVID"
            stream.bit_rate = max(1_000_000, int(4 * width * height * fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_grid(videos: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile a batch of videos ``(N, C, T, H, W)`` in [-1, 1] into uint8 frames ``(T, H', W', 3)``.

    ``nrow`` videos per row (as in torchvision); uint8 = clip(x·128 + 128) as in the official previews.
    """
    if videos.dim() != 5 or videos.shape[1] not in (1, 3):
        raise ValueError(f"expected videos (N, C, T, H, W) with C in (1, 3), got {tuple(videos.shape)}")
    videos = videos.detach().float().cpu()
    if videos.shape[1] == 1:
        videos = videos.expand(-1, 3, -1, -1, -1)
    n, _, t, h, w = videos.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    pixels = to_uint8(videos).permute(0, 2, 3, 4, 1)  # (N, C, T, H, W) -> (N, T, H, W, 3)
    grid = torch.full(
        (t, rows * (h + padding) + padding, cols * (w + padding) + padding, 3), pad_value, dtype=torch.uint8
    )
    for i in range(n):
        y0 = padding + (i // cols) * (h + padding)
        x0 = padding + (i % cols) * (w + padding)
        grid[:, y0 : y0 + h, x0 : x0 + w] = pixels[i]
    return grid.numpy()
