"""Where videos come from: every container extension, zips of frame folders (StyleGAN-V / DIGAN),
`data info` on them, clips_per_class on each dataset type, the HDF5 centre crop, to_uint8."""

from __future__ import annotations

import zipfile

import av
import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from tganv2.cli import main
from tganv2.config import ConfigError, load_preset
from tganv2.data import (
    DataWarning,
    FolderVideoDataset,
    HDF5VideoDataset,
    SyntheticVideoDataset,
    build_dataset,
    open_dataset,
    read_frames,
    to_float,
    to_uint8,
)
from tganv2.data.video import VIDEO_SUFFIXES, read_error_reason


def smooth_frames(n_frames, height, width, seed=0):
    """Slowly varying colours that survive lossy codecs: (T, H, W, 3) uint8."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None]
    red = 128 + 90 * np.sin(xs / 11 + t / 5 + seed)
    green = 128 + 90 * np.cos(ys / 9 - t / 7 + seed)
    return np.stack([red, green, 255 - red], axis=-1).clip(0, 255).astype(np.uint8)


# extension -> (encoder, frame size): each muxed by the format FFmpeg picks from the extension
CONTAINERS = {
    ".ts": ("mpeg2video", 64),
    ".ogv": ("libvpx", 64),
    ".3gp": ("h263", 128),  # H.263 allows only a few sizes: 128x96 (SQCIF)
    ".m4v": ("mpeg4", 64),
    ".mpg": ("mpeg1video", 64),
    ".flv": ("flv", 64),
    ".wmv": ("wmv2", 64),
}


def write_container(path, frames, codec):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.bit_rate = "yuv420p", 4_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_every_listed_container_is_found_and_decoded(tmp_path):
    root = tmp_path / "videos"
    sources = {}
    for i, (suffix, (codec, width)) in enumerate(CONTAINERS.items()):
        assert suffix in VIDEO_SUFFIXES
        sources[suffix] = smooth_frames(20, width * 3 // 4, width, seed=i)
        write_container(root / f"clip{suffix}", sources[suffix], codec)
    (root / "clip.xyz").write_bytes(b"not a video")
    with pytest.warns(DataWarning, match=r"ignored 1 files with other extensions \(\.xyz x1\)"):
        dataset = FolderVideoDataset(root, n_frames=16, size=16, train=False)
    assert sorted(p.suffix for p in dataset.paths) == sorted(CONTAINERS)
    for path in dataset.paths:
        decoded = read_frames(path)
        source = sources[path.suffix]
        assert decoded.shape == source.shape, path.name
        error = np.abs(decoded.astype(np.float32) - source).mean()
        assert error < 12, f"{path.name}: mean error {error:.1f}"  # lossy codecs, but the same frames
        assert dataset[dataset.paths.index(path)][0].shape == (3, 16, 16, 16)


def test_read_errors_lose_pyav_errno_noise(tmp_path):
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(av.FFmpegError) as raised:
        read_frames(garbage)
    assert "[Errno" in str(raised.value)  # what PyAV says
    assert read_error_reason(raised.value) == "Invalid data found when processing input"


def write_frames_zip(path, videos, prefix=""):
    """A StyleGAN-V zip: ``prefix + name/000001.png ...`` for name -> (T, H, W, 3) frames."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, frames in videos.items():
            for t, frame in enumerate(frames):
                image = tmp_png(frame)
                archive.writestr(f"{prefix}{name}/{t + 1:06d}.png", image)


def tmp_png(frame) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def zipped(tmp_path):
    """The same three videos as a zip (two classes, frames 1..12 so that 10 sorts after 9) and as folders."""
    videos = {
        "Juggle/v_Juggle_g01_c01": smooth_frames(12, 24, 32, seed=1),
        "Juggle/v_Juggle_g02_c01": smooth_frames(12, 24, 32, seed=2),
        "Swim/v_Swim_g01_c01": smooth_frames(12, 24, 32, seed=3),
        "Swim/v_Swim_g02_c01": smooth_frames(3, 24, 32, seed=4),  # too short: skipped
    }
    archive = tmp_path / "ucf.zip"
    write_frames_zip(archive, videos)
    unpacked = tmp_path / "unpacked"
    for name, frames in videos.items():
        (unpacked / name).mkdir(parents=True)
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(unpacked / name / f"{t + 1:06d}.png")
    return archive, unpacked


def test_zip_of_frame_folders_equals_the_unpacked_folders(zipped):
    archive, unpacked = zipped
    with pytest.warns(DataWarning, match="skipping 1 of 4 videos.*v_Swim_g02_c01: only 3 frames"):
        from_zip = open_dataset(archive, n_frames=8, size=16, seed=5)
    with pytest.warns(DataWarning):
        from_folders = open_dataset(unpacked, n_frames=8, size=16, seed=5)
    assert isinstance(from_zip, FolderVideoDataset) and len(from_zip) == 3
    assert from_zip.class_names == from_folders.class_names == ["Juggle", "Swim"]
    assert from_zip.labels == from_folders.labels == [0, 0, 1]
    for epoch in range(3):
        for i in range(3):
            clip, label = from_zip[(i, epoch)]
            expected, expected_label = from_folders[(i, epoch)]
            assert torch.equal(clip, expected) and label == expected_label
    frames = read_frames(archive / "Juggle" / "v_Juggle_g01_c01")  # natural order: 000010 after 000009
    assert np.array_equal(frames, read_frames(unpacked / "Juggle" / "v_Juggle_g01_c01"))


def test_data_info_on_a_zip(zipped, capsys):
    archive, _ = zipped
    assert main(["data", "info", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "videos: 4" in out and "classes: 2" in out and "resolution: 24x32" in out


def test_a_symlink_loop_named_mp4_is_one_warning_line_in_data_info(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "videos"
    root.mkdir()
    Image.fromarray(smooth_frames(1, 8, 8)[0]).save(root / "cover.jpg")
    (root / "loop.mp4").symlink_to(root / "loop.mp4")
    write_container(root / "fine.mpg", smooth_frames(16, 48, 64), "mpeg1video")
    result = subprocess.run(
        [sys.executable, "-m", "tganv2.cli", "data", "info", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"tganv2: warning: {root}: ignored 1 files with other extensions (.jpg x1); videos are "
        f"read from {' '.join(sorted(VIDEO_SUFFIXES))} files and folders of "
        ".bmp/.jpeg/.jpg/.png/.webp frames"
    ]
    assert "loop.mp4 (unreadable symlink (Too many levels of symbolic links))" in result.stdout
    assert "videos: 1" in result.stdout


def write_h5(path, categories, length=20, height=24, width=40):
    frames = np.random.default_rng(0).integers(0, 255, (len(categories) * length, 3, height, width), np.uint8)
    with h5py.File(path, "w") as file:
        file["image"] = frames
    records = [
        {"start": i * length, "end": (i + 1) * length, "category": c} for i, c in enumerate(categories)
    ]
    path.with_suffix(".json").write_text(__import__("json").dumps(records))
    return path


def test_clips_per_class_on_the_synthetic_dataset():
    dataset = SyntheticVideoDataset(n_clips=4096, n_frames=4, size=16, clips_per_class=3)
    assert len(dataset) == 27
    labels = [dataset[i][1] for i in range(len(dataset))]
    assert sorted(labels) == sorted(list(range(9)) * 3)
    full = SyntheticVideoDataset(n_clips=4096, n_frames=4, size=16)
    assert torch.equal(dataset[26][0], full[26][0])  # a subset of the same clips


def test_clips_per_class_on_hdf5_by_category(tmp_path):
    categories = ["A"] * 5 + ["B"] * 2 + ["C"] * 4
    h5 = write_h5(tmp_path / "train.h5", categories)
    dataset = HDF5VideoDataset(h5, n_frames=16, size=16, xmargin=0, clips_per_class=3, seed=1)
    assert sorted(np.bincount(dataset.videos[:, 2]).tolist()) == [2, 3, 3]  # B has only 2
    again = HDF5VideoDataset(h5, n_frames=16, size=16, xmargin=0, clips_per_class=3, seed=1)
    assert np.array_equal(dataset.videos, again.videos)  # deterministic
    starts = {
        tuple(HDF5VideoDataset(h5, size=16, xmargin=0, clips_per_class=3, seed=s).videos[:, 0])
        for s in range(6)
    }
    assert len(starts) > 1  # a seeded choice, not simply the first files


def test_clips_per_class_on_a_folder_and_from_the_config(tmp_path):
    root = tmp_path / "videos"
    for c in range(3):
        for i in range(4):
            write_container(
                root / f"class{c}" / f"v{i}.mpg", smooth_frames(16, 48, 64, seed=4 * c + i), "mpeg1video"
            )
    cfg = load_preset("small-64", [f"data.path={root}", "data.clips_per_class=2", "model.n_frames=8"])
    dataset = build_dataset(cfg)
    assert isinstance(dataset, FolderVideoDataset) and len(dataset) == 6
    assert sorted(dataset.labels) == [0, 0, 1, 1, 2, 2]
    assert len(build_dataset(cfg, path="synthetic")) == 18
    with pytest.raises(ConfigError, match="data.clips_per_class must be >= 0"):
        load_preset("small-64", ["data.clips_per_class=-1"])


def test_hdf5_centre_crop_keeps_the_random_start(tmp_path):
    h5 = write_h5(tmp_path / "train.h5", ["A", "B"], length=40)
    centred = HDF5VideoDataset(h5, n_frames=16, size=16, train=True, xflip=False, center_crop=True)
    test_mode = HDF5VideoDataset(h5, n_frames=16, size=16, train=False)
    origins = [centred.crop_origin_and_start(0, epoch) for epoch in range(20)]
    assert {(y0, x0, flip) for _, y0, x0, flip in origins} == {(4, 12, False)}
    assert len({first for first, *_ in origins}) > 5
    with h5py.File(h5) as file:
        first = origins[3][0]
        expected = file["image"][first : first + 16, :, 4:20, 12:28].transpose(1, 0, 2, 3)
    assert np.array_equal(centred[(0, 3)][0].numpy(), expected)
    assert test_mode.crop_origin_and_start(0, 0)[1:] == (4, 12, False)


def test_to_uint8_inverts_to_float_and_truncates_like_the_previews():
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 16, 16)
    assert torch.equal(to_uint8(to_float(pixels)), pixels)
    values = torch.tensor([-2.0, -1.0, 0.004, 0.5, 0.999, 3.0])
    assert to_uint8(values).tolist() == [0, 0, 128, 192, 255, 255]


def test_data_prepare_reads_a_zip_in_place(zipped, tmp_path, capsys):
    archive, unpacked = zipped
    outputs = {}
    for name, videos, workers in (("zip", archive, "2"), ("folder", unpacked, "1")):
        out = tmp_path / name
        argv = ["data", "prepare", "folder", "--videos", str(videos), "--out", str(out), "--size", "12x16",
                "--workers", workers, "--min-frames", "8"]  # fmt: skip
        with pytest.warns(DataWarning, match="v_Swim_g02_c01: only 3 frames"):
            assert main(argv) == 0
        assert "train: converted 3, skipped 0 (done in an earlier run), failed 1" in capsys.readouterr().out
        with h5py.File(out / "train.h5") as file:
            outputs[name] = (file["image"][:], (out / "train.json").read_text())
    assert outputs["zip"][0].shape == (36, 3, 12, 16)
    assert np.array_equal(outputs["zip"][0], outputs["folder"][0])
    assert outputs["zip"][1] == outputs["folder"][1]
    assert '"category": "Juggle"' in outputs["zip"][1]
