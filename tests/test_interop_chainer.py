"""Importing generators written by the official Chainer code (reference.md Appendix A)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tganv2
from tganv2.cli import main
from tganv2.config import load_preset
from tganv2.errors import WeightsError
from tganv2.interop.chainer import load_chainer_generator
from tganv2.snapshot import load_snapshot

OVERRIDES = ["model.n_layers=2", "model.clstm_kernel=3"]  # small-64 widths, official 3×3 ConvLSTM ×2 layers


def official_generator_arrays(cfg, seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays with the official key names and shapes, written from Appendix A / §1.5 (not from our
    module names): fc, decoderK, block1..6 with b1/c1/b2/c2/c_sc, and renderers b3..b6 / c3..c6."""
    m = cfg.model
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}

    def put(key, *shape):  # LeCun-scaled weights keep the tanh outputs away from saturation
        scale = 1 / np.sqrt(np.prod(shape[1:])) if len(shape) > 1 else 0.1
        arrays[key] = (scale * rng.normal(size=shape)).astype(np.float32)

    def put_bn(prefix, channels, updates):
        put(f"{prefix}/gamma", channels)
        put(f"{prefix}/beta", channels)
        put(f"{prefix}/avg_mean", channels)
        arrays[f"{prefix}/avg_var"] = rng.uniform(0.5, 2.0, size=channels).astype(np.float32)
        arrays[f"{prefix}/N"] = np.array(updates, dtype=np.int64)

    c = m.clstm_ch
    put("fc/W", m.t_size * m.t_size * c, m.z_dim)
    put("fc/b", m.t_size * m.t_size * c)
    for k in range(m.n_layers):
        put(f"decoder{k}/w_xifoc/W", 4 * c, c, 3, 3)
        put(f"decoder{k}/w_xifoc/b", 4 * c)
        put(f"decoder{k}/w_hifoc/W", 4 * c, c, 3, 3)
    # §1.5: clstm → 16ch → 8ch → 4ch (render 1), → 2ch (render 2), → ch (render 3), → ch (render 4)
    widths = [c, 16 * m.ch, 8 * m.ch, 4 * m.ch, 2 * m.ch, m.ch, m.ch]
    for k in range(1, 7):
        cin, cout = widths[k - 1], widths[k]
        put_bn(f"block{k}/b1", cin, 100 + k)
        put(f"block{k}/c1/W", cout, cin, 3, 3)
        put(f"block{k}/c1/b", cout)
        put_bn(f"block{k}/b2", cout, 200 + k)
        put(f"block{k}/c2/W", cout, cout, 3, 3)
        put(f"block{k}/c2/b", cout)
        put(f"block{k}/c_sc/W", cout, cin, 1, 1)
        put(f"block{k}/c_sc/b", cout)
    for k in range(3, 7):
        put_bn(f"b{k}", widths[k], 300 + k)
        put(f"c{k}/W", 3, widths[k], 3, 3)
        put(f"c{k}/b", 3)
    return arrays


@pytest.fixture(scope="module")
def cfg():
    return load_preset("small-64", OVERRIDES)


@pytest.fixture(scope="module")
def official(cfg, tmp_path_factory):
    arrays = official_generator_arrays(cfg)
    path = tmp_path_factory.mktemp("chainer") / "generator_iter_82000.npz"
    np.savez(path, **arrays)
    return path, arrays


def test_every_official_key_maps_to_one_tensor_and_values_land_in_place(cfg, official):
    path, arrays = official
    generator = load_chainer_generator(path, cfg)
    state = generator.state_dict()
    assert len(state) == len(arrays)  # one to one: N ↔ num_batches_tracked, nothing left over
    checks = {
        "fc.weight": "fc/W",
        "clstm.1.w_x.weight": "decoder1/w_xifoc/W",
        "clstm.1.w_x.bias": "decoder1/w_xifoc/b",
        "clstm.0.w_h.weight": "decoder0/w_hifoc/W",
        "blocks.2.conv1.weight": "block3/c1/W",
        "blocks.5.shortcut.weight": "block6/c_sc/W",
        "blocks.0.bn1.running_mean": "block1/b1/avg_mean",
        "blocks.3.bn2.running_var": "block4/b2/avg_var",
        "blocks.4.bn2.weight": "block5/b2/gamma",
        "renderers.1.bn.running_var": "b4/avg_var",
        "renderers.3.bn.bias": "b6/beta",
        "renderers.0.conv.weight": "c3/W",
    }
    for name, key in checks.items():
        np.testing.assert_array_equal(state[name].numpy(), arrays[key], err_msg=name)
    assert int(state["blocks.3.bn2.num_batches_tracked"]) == 204
    assert int(state["renderers.2.bn.num_batches_tracked"]) == 305
    assert not generator.training


def test_imported_generator_renders_from_the_running_statistics(cfg, official):
    path, arrays = official
    generator = load_chainer_generator(path, cfg)
    z = generator.make_z(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        video = generator(z, n_frames=4)
    assert video.shape == (2, 3, 4, 64, 64)
    # the last renderer's BN uses avg_mean/avg_var: changing them changes the output
    with torch.no_grad():
        generator.renderers[3].bn.running_mean += 1.0
        shifted = generator(z, n_frames=4)
    assert not torch.equal(video, shifted)


def test_missing_key_names_the_key_and_expected_shape(cfg, official, tmp_path):
    _, arrays = official
    broken = {k: v for k, v in arrays.items() if k != "block2/c2/W"}
    np.savez(tmp_path / "g.npz", **broken)
    with pytest.raises(WeightsError, match=r"missing key 'block2/c2/W', expected shape \(64, 64, 3, 3\)"):
        load_chainer_generator(tmp_path / "g.npz", cfg)


def test_wrong_shape_and_leftover_keys_are_errors(cfg, official, tmp_path):
    _, arrays = official
    np.savez(tmp_path / "shape.npz", **{**arrays, "c6/W": np.zeros((3, 4, 3, 3), np.float32)})
    with pytest.raises(WeightsError, match=r"key 'c6/W' has shape \(3, 4, 3, 3\), expected \(3, 8, 3, 3\)"):
        load_chainer_generator(tmp_path / "shape.npz", cfg)
    np.savez(tmp_path / "extra.npz", **{**arrays, "decoder2/w_hifoc/W": np.zeros((4, 4), np.float32)})
    with pytest.raises(WeightsError, match="1 unused key.*'decoder2/w_hifoc/W'"):
        load_chainer_generator(tmp_path / "extra.npz", cfg)
    # a one-layer config does not silently drop decoder1
    with pytest.raises(WeightsError, match="unused key.*decoder1"):
        load_chainer_generator(tmp_path / "extra.npz", load_preset("small-64", ["model.clstm_kernel=3"]))


def test_trainer_snapshot_prefix(cfg, official, tmp_path):
    _, arrays = official
    np.savez(tmp_path / "trainer.npz", **{f"updater/model:gen/{k}": v for k, v in arrays.items()})
    with pytest.raises(WeightsError, match="try --prefix 'updater/model:gen/'"):
        load_chainer_generator(tmp_path / "trainer.npz", cfg)
    generator = load_chainer_generator(tmp_path / "trainer.npz", cfg, prefix="updater/model:gen/")
    np.testing.assert_array_equal(generator.fc.bias.detach().numpy(), arrays["fc/b"])


def test_convert_cli_writes_a_snapshot_that_load_generator_reproduces_bit_for_bit(cfg, official, tmp_path):
    path, _ = official
    out = tmp_path / "G.safetensors"
    assert (
        main(
            ["convert", "chainer-generator", str(path), *OVERRIDES, "--preset", "small-64", "--out", str(out)]
        )
        == 0
    )
    reference = load_chainer_generator(path, cfg)
    snapshot = load_snapshot(out)
    assert snapshot.config.model.n_layers == 2 and snapshot.weights == "raw"
    assert snapshot.metadata["source"] == "chainer"
    loaded = snapshot.model
    z = reference.make_z(3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(reference(z, n_frames=4), loaded(z, n_frames=4))
        assert torch.equal(reference(z, n_frames=4, render_level=2), loaded(z, n_frames=4, render_level=2))
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_convert_cli_reports_a_bad_file_in_one_line(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    code = main(["convert", "chainer-generator", str(tmp_path / "junk.npz"), "--out", str(tmp_path / "G.st")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tganv2: error:") and "junk.npz" in err and "\n" not in err


def test_save_generator_then_load_generator_is_bit_exact(tmp_path):
    cfg = load_preset("small-64")
    generator = tganv2.build_generator(cfg)
    generator.train()
    with torch.no_grad():  # move the BN running statistics away from their initial values
        generator(generator.make_z(4, generator=torch.Generator().manual_seed(2)))
    generator.eval()
    tganv2.save_generator(tmp_path / "G.safetensors", generator, cfg)
    loaded = tganv2.load_generator(tmp_path / "G.safetensors")
    z = generator.make_z(2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(generator(z, n_frames=4), loaded(z, n_frames=4))
    assert torch.equal(loaded.blocks[5].bn2.running_var, generator.blocks[5].bn2.running_var)
