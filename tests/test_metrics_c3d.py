"""C3D from weights in the official npz layout (reference.md §5.1, Appendix A)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tganv2.cli import main
from tganv2.errors import WeightsError
from tganv2.metrics.c3d import C3D_WEIGHT_SHAPES, c3d_preprocess, load_c3d

# Appendix A, written out rather than taken from the module under test.
OFFICIAL_SHAPES = {
    "conv1a": (64, 3, 3, 3, 3), "conv2a": (128, 64, 3, 3, 3), "conv3a": (256, 128, 3, 3, 3),
    "conv3b": (256, 256, 3, 3, 3), "conv4a": (512, 256, 3, 3, 3), "conv4b": (512, 512, 3, 3, 3),
    "conv5a": (512, 512, 3, 3, 3), "conv5b": (512, 512, 3, 3, 3),
    "fc6": (4096, 8192), "fc7": (4096, 4096), "fc8": (101, 4096),
}  # fmt: skip


def random_c3d_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    arrays = {}
    for name, shape in OFFICIAL_SHAPES.items():
        fan_in = int(np.prod(shape[1:]))
        arrays[f"{name}/W"] = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2 / fan_in))
        arrays[f"{name}/b"] = rng.standard_normal(shape[0], dtype=np.float32) * np.float32(0.01)
    return arrays


@pytest.fixture(scope="module")
def c3d_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("c3d")
    rng = np.random.default_rng(0)
    arrays = random_c3d_arrays(rng)
    np.savez(folder / "conv3d_deepnetA_ucf.npz", **arrays)
    mean = rng.uniform(80, 120, size=(3, 16, 128, 171)).astype(np.float32)  # TGAN v1's 128×171 layout
    np.savez(folder / "mean2.npz", mean=mean)
    return folder / "conv3d_deepnetA_ucf.npz", folder / "mean2.npz", arrays, mean


@pytest.fixture(scope="module")
def c3d_model(c3d_files):
    return load_c3d(c3d_files[0], c3d_files[1])


def test_official_layout_has_22_keys():
    assert len(C3D_WEIGHT_SHAPES) == 22
    for name, shape in OFFICIAL_SHAPES.items():
        assert C3D_WEIGHT_SHAPES[f"{name}/W"] == shape
        assert C3D_WEIGHT_SHAPES[f"{name}/b"] == (shape[0],)


def _max_pool_ceil(x: np.ndarray) -> np.ndarray:
    """(C, 2, 7, 7) → (C, 1, 4, 4): 2³ max pooling, windows running past the edge are clipped (ceil mode)."""
    c, t, h, w = x.shape
    padded = np.full((c, 2, 8, 8), -np.inf, dtype=x.dtype)
    padded[:, :t, :h, :w] = x
    return padded.reshape(c, 1, 2, 4, 2, 4, 2).max(axis=(2, 4, 6))


def test_forward_at_192px_gives_fc7_and_fc8_matching_a_numpy_head(c3d_files, c3d_model):
    arrays, model = c3d_files[2], c3d_model
    assert sum(p.numel() for p in model.parameters()) == 78_409_573  # 78.4 M (reference §5.1)
    captured = {}
    hook = model.convs["conv5b"].register_forward_hook(lambda module, inp, out: captured.update(conv5b=out))
    video = torch.rand(1, 3, 16, 192, 192, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fc7, fc8 = model.features(video)
    hook.remove()
    assert fc7.shape == (1, 4096) and fc8.shape == (1, 101)
    assert (fc7 >= 0).all() and (fc7 > 0).any()  # post-ReLU features

    conv5b = captured["conv5b"][0].double().numpy()  # (512, 2, 7, 7), before the ReLU
    pool5 = _max_pool_ceil(np.maximum(conv5b, 0))  # (512, 1, 4, 4)
    flat = pool5.reshape(-1)  # C-order over (C, T, H, W)
    fc6 = np.maximum(arrays["fc6/W"] @ flat + arrays["fc6/b"], 0)
    expected_fc7 = np.maximum(arrays["fc7/W"] @ fc6 + arrays["fc7/b"], 0)
    expected_fc8 = arrays["fc8/W"] @ expected_fc7 + arrays["fc8/b"]
    for got, expected in [(fc7[0].numpy(), expected_fc7), (fc8[0].numpy(), expected_fc8)]:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_preprocessing_matches_a_hand_computation():
    # 2×2 frames; bilinear with align_corners at output (i, j) is
    # (1-u)(1-v)·x00 + (1-u)v·x01 + u(1-v)·x10 + uv·x11 with u = i/111, v = j/111.
    red = torch.tensor([[-1.0, 0.5], [0.25, 1.0]])
    green = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    blue = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    video = torch.stack([red, green, blue])[:, None].expand(3, 16, 2, 2)[None]  # (1, 3, 16, 2, 2)
    mean = torch.zeros(3, 16, 112, 112)
    mean[0] = 100.0  # B
    mean[2, 5] = 7.0  # R, frame 5
    out = c3d_preprocess(video, mean)
    assert out.shape == (1, 3, 16, 112, 112)

    def bilinear(x, i, j):
        u, v = i / 111, j / 111
        return (1 - u) * (1 - v) * x[0, 0] + (1 - u) * v * x[0, 1] + u * (1 - v) * x[1, 0] + u * v * x[1, 1]

    for i, j in [(0, 0), (0, 111), (111, 0), (37, 80), (55, 56), (111, 111)]:
        b_expected = float(bilinear(blue, i, j)) * 128 + 128 - 100  # channel 0 is blue (BGR)
        r_expected = float(bilinear(red, i, j)) * 128 + 128 - 7
        assert out[0, 0, 3, i, j].item() == pytest.approx(b_expected, abs=1e-3)
        assert out[0, 1, 3, i, j].item() == pytest.approx(128.0, abs=1e-3)
        assert out[0, 2, 5, i, j].item() == pytest.approx(r_expected, abs=1e-3)


def test_mean_patch_is_the_official_slice(c3d_files, c3d_model):
    mean, model = c3d_files[3], c3d_model
    np.testing.assert_array_equal(model.mean.numpy(), mean[:, :, 8:120, 8:120])
    assert set(model.weights_sha256) == {"c3d", "c3d_mean"}


def _small_prefix_file(path, arrays):
    np.savez(path, **arrays)
    return path


def test_malformed_weights_give_one_line_errors(tmp_path, c3d_files):
    rng = np.random.default_rng(1)
    conv1 = {"conv1a/W": np.zeros((64, 3, 3, 3, 3), np.float32), "conv1a/b": np.zeros(64, np.float32)}
    mean_file = c3d_files[1]
    missing = _small_prefix_file(tmp_path / "missing.npz", conv1)
    with pytest.raises(WeightsError, match=r"missing key 'conv2a/W', expected shape \(128, 64, 3, 3, 3\)"):
        load_c3d(missing, mean_file)
    wrong_conv2 = rng.random((128, 64, 3, 3), np.float32)
    wrong = _small_prefix_file(tmp_path / "wrong.npz", {**conv1, "conv2a/W": wrong_conv2})
    with pytest.raises(
        WeightsError, match=r"key 'conv2a/W' has shape \(128, 64, 3, 3\), expected \(128, 64, 3, 3, 3\)"
    ):
        load_c3d(wrong, mean_file)
    extra = _small_prefix_file(tmp_path / "extra.npz", {**conv1, "fc9/W": np.zeros(3, np.float32)})
    with pytest.raises(WeightsError, match="unexpected key 'fc9/W'"):
        load_c3d(extra, mean_file)
    with pytest.raises(WeightsError, match="not found"):
        load_c3d(tmp_path / "nope.npz", mean_file)
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a readable"):
        load_c3d(tmp_path / "junk.npz", mean_file)


def test_malformed_mean_gives_one_line_errors(tmp_path):
    weights = tmp_path / "c3d.npz"  # never read: the mean is checked first
    np.savez(weights, **{"conv1a/W": np.zeros((64, 3, 3, 3, 3), np.float32)})
    np.savez(tmp_path / "mean5d.npz", mean=np.zeros((1, 3, 16, 128, 171), np.float32))
    with pytest.raises(
        WeightsError, match=r"key 'mean' has shape \(1, 3, 16, 128, 171\), expected \(3, 16, H>=120, W>=120\)"
    ):
        load_c3d(weights, tmp_path / "mean5d.npz")
    np.savez(tmp_path / "small.npz", mean=np.zeros((3, 16, 112, 112), np.float32))
    with pytest.raises(WeightsError, match="expected"):
        load_c3d(weights, tmp_path / "small.npz")
    np.savez(tmp_path / "nomean.npz", avg=np.zeros((3, 16, 128, 171), np.float32))
    with pytest.raises(WeightsError, match="missing key 'mean'"):
        load_c3d(weights, tmp_path / "nomean.npz")


def test_cli_reports_a_bad_c3d_file_in_one_line(tmp_path, c3d_files, capsys):
    np.savez(tmp_path / "c3d.npz", **{"conv1a/W": np.zeros((64, 3, 3, 3), np.float32)})
    code = main(["evaluate", "is", "--checkpoint", str(tmp_path / "G.safetensors"), "--c3d",
                 str(tmp_path / "c3d.npz"), "--c3d-mean", str(c3d_files[1])])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err == (
        "tganv2: error: c3d.npz: key 'conv1a/W' has shape (64, 3, 3, 3), expected (64, 3, 3, 3, 3)"
    )
