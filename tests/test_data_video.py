"""Video I/O: PyAV decoding of XviD .avi and H.264 .mp4, seeking, frame counts, MP4/GIF writing, grids."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from tganv2.data import video as video_io
from tganv2.data.video import count_frames, make_grid, read_frames, read_video, write_video

N_FRAMES, HEIGHT, WIDTH = 40, 48, 64


def smooth_frames(n_frames=N_FRAMES, height=HEIGHT, width=WIDTH) -> np.ndarray:
    """Smooth, moving content that codecs reproduce closely: (T, H, W, 3) uint8, every frame different."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None]
    red = 128 + 90 * np.sin(xs / 11 + t / 4)
    green = 128 + 90 * np.cos(ys / 9 - t / 5)
    blue = 60 + 3 * t + 0 * xs
    return np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8)


def encode_with_pyav(path, frames, codec, codec_tag=None, gop=10, b_frames=0, options=None):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec_tag:
            stream.codec_context.codec_tag = codec_tag
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = b_frames
        if codec == "mpeg4":
            stream.bit_rate = 20_000_000
        if options:
            stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    frames = smooth_frames()
    files = {
        "xvid.avi": encode_with_pyav(folder / "xvid.avi", frames, "mpeg4", "XVID", b_frames=2),
        "h264.mp4": encode_with_pyav(
            folder / "h264.mp4", frames, "libx264", options={"crf": "10", "g": "10", "bf": "2"}
        ),
        "mpeg4.mp4": encode_with_pyav(folder / "mpeg4.mp4", frames, "mpeg4"),
    }
    return frames, files


@pytest.mark.parametrize("name", ["xvid.avi", "h264.mp4", "mpeg4.mp4"])
def test_decoded_frames_match_written_frames(encoded, name):
    frames, files = encoded
    decoded = read_video(files[name])
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 6
    assert count_frames(files[name]) == N_FRAMES == count_frames(files[name], exact=True)


def test_avi_is_xvid(encoded):
    with av.open(str(encoded[1]["xvid.avi"])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "mpeg4"
        assert stream.codec_context.codec_tag.upper() == "XVID"


@pytest.mark.parametrize("name", ["xvid.avi", "h264.mp4", "mpeg4.mp4"])
def test_seek_equals_full_decode_sliced(encoded, name, monkeypatch):
    path = encoded[1][name]
    full = read_video(path)
    # The seek path must be used (no silent fallback to decoding from frame 0).
    monkeypatch.setattr(video_io, "_decode_sequential", lambda *a: pytest.fail("fell back to full decode"))
    for start in (1, 7, 10, 19, 24, 30):
        np.testing.assert_array_equal(read_video(path, start, 8), full[start : start + 8])
    tail = read_video(path, 35, 16)  # past the end: only what exists
    np.testing.assert_array_equal(tail, full[35:])


def test_channel_first_layout(encoded):
    path = encoded[1]["h264.mp4"]
    clip = read_video(path, 3, 16, layout="CTHW")
    assert clip.shape == (3, 16, HEIGHT, WIDTH)
    np.testing.assert_array_equal(clip.transpose(1, 2, 3, 0), read_video(path, 3, 16))


def test_count_frames_falls_back_when_metadata_is_missing(encoded, tmp_path):
    frames = smooth_frames(20)
    webm = tmp_path / "clip.webm"
    encode_with_pyav(webm, frames, "libvpx-vp9", options={"crf": "20", "b": "0"})
    with av.open(str(webm)) as container:
        assert container.streams.video[0].frames == 0  # WebM stores no frame count
    assert count_frames(webm) == 20 == count_frames(webm, exact=True)
    assert read_video(webm, 5, 4).shape == (4, HEIGHT, WIDTH, 3)


def test_write_mp4_and_gif_round_trip(tmp_path):
    frames = smooth_frames(12, 33, 45)  # odd sizes: mp4 pads to even
    mp4 = write_video(tmp_path / "out.mp4", frames, fps=15)
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.height, stream.codec_context.width) == (34, 46)
    decoded = read_video(mp4)
    assert decoded.shape == (12, 34, 46, 3)
    assert np.abs(decoded[:, :33, :45].astype(np.int16) - frames).mean() < 6
    gif = write_video(tmp_path / "out.gif", torch.from_numpy(frames), fps=10)
    decoded_gif = read_video(gif)
    assert decoded_gif.shape == (12, 33, 45, 3)
    assert np.abs(decoded_gif.astype(np.int16) - frames).mean() < 12  # 256-colour palette
    with pytest.raises(Exception, match="can only write"):
        write_video(tmp_path / "out.webm", frames)


def test_xvid_writer_round_trip(tmp_path):
    frames = smooth_frames(20)
    path = write_video(tmp_path / "v_Foo_g01_c01.avi", frames, fps=25)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.codec_tag.upper() == "XVID"
    assert np.abs(read_video(path).astype(np.int16) - frames).mean() < 6


def test_frame_folder(tmp_path):
    from PIL import Image

    frames = smooth_frames(12, 16, 20)
    for i, frame in enumerate(frames):  # natural order: 2 before 10
        Image.fromarray(frame).save(tmp_path / f"frame{i}.png")
    assert count_frames(tmp_path) == 12
    np.testing.assert_array_equal(read_frames(tmp_path, 2, 9), frames[2:11])


def test_make_grid_layout_and_values():
    videos = torch.linspace(-1, 1, 5 * 3 * 2 * 4 * 6).reshape(5, 3, 2, 4, 6)  # (N, C, T, H, W)
    grid = make_grid(videos, nrow=3, padding=1)
    assert grid.shape == (2, 2 * (4 + 1) + 1, 3 * (6 + 1) + 1, 3) and grid.dtype == np.uint8
    expected = (videos * 128 + 128).clamp(0, 255).to(torch.uint8)
    # video 4 is row 1, column 1; its top-left pixel sits at (1 + 5, 1 + 7)
    np.testing.assert_array_equal(grid[:, 6:10, 8:14], expected[4].permute(1, 2, 3, 0).numpy())
    assert grid[:, 0].max() == 0 and grid[:, :, 0].max() == 0  # padding
    assert grid[:, 6:10, 15:].max() == 0  # the empty sixth cell
    gray = make_grid(torch.zeros(2, 1, 3, 4, 4), nrow=2)
    assert gray.shape[-1] == 3
