"""Generator snapshots: bit-exact round trip (incl. BN running stats), one-line errors, atomic writes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tganv2.config import build_generator, config_to_dict
from tganv2.errors import UserError, WeightsError
from tganv2.snapshot import load_generator, load_snapshot, read_snapshot_config, save_generator


@pytest.fixture(params=["nearest", "bilinear"])
def trained(tiny_cfg, request):
    """A tiny generator after a few training-mode forwards (non-trivial BN running statistics), with
    each upsampling of its up-blocks (the snapshot's config must rebuild the same one)."""
    cfg = tiny_cfg(f"model.upsample={request.param}", n_classes=0)
    gen = build_generator(cfg).train()
    for seed in range(3):
        gen(gen.make_z(4), rng=torch.Generator().manual_seed(seed))
    return cfg, gen.eval()


def test_round_trip_is_bit_exact(tmp_path, trained):
    cfg, gen = trained
    path = save_generator(tmp_path / "sub" / "generator.safetensors", gen, cfg, iteration="3")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["generator.safetensors"]  # no temporary file left
    snapshot = load_snapshot(path)
    loaded = snapshot.model
    assert not loaded.training
    assert snapshot.config == cfg and read_snapshot_config(path) == cfg
    assert snapshot.weights == "raw" and snapshot.metadata["iteration"] == "3"
    for key, value in gen.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.blocks[0].bn1.num_batches_tracked == 3
    assert {block.upsample for block in loaded.blocks} == {cfg.model.upsample}
    z = gen.make_z(3, torch.Generator().manual_seed(9))
    with torch.no_grad():
        for level in (1, 4):
            assert torch.equal(loaded(z, render_level=level), gen(z, render_level=level))
        assert torch.equal(loaded(z, n_frames=12), gen(z, n_frames=12))


def test_overwrite_is_atomic_and_leaves_no_temp(tmp_path, trained, monkeypatch):
    cfg, gen = trained
    path = tmp_path / "g.safetensors"
    save_generator(path, gen, cfg)
    before = path.read_bytes()
    # a failing write must leave the previous file untouched
    import tganv2.snapshot as snapshot

    def broken_save(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(snapshot, "save_file", broken_save)
    with pytest.raises(OSError):
        save_generator(path, gen, cfg)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]  # the partial temp is removed
    monkeypatch.undo()
    save_generator(path, gen, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]


def _tampered(tmp_path, cfg, gen, edit) -> str:
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    edit(state)
    path = tmp_path / "bad.safetensors"
    save_file(
        state,
        str(path),
        metadata={"format": "tganv2-generator-v1", "config": json.dumps(config_to_dict(cfg))},
    )
    return str(path)


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, UserError)
    return message


def test_wrong_shape_names_the_tensor(tmp_path, trained):
    cfg, gen = trained

    def edit(state):
        state["blocks.1.conv1.weight"] = torch.zeros(3, 3, 3, 3)

    with pytest.raises(WeightsError) as info:
        load_generator(_tampered(tmp_path, cfg, gen, edit))
    message = _one_line(info)
    assert "'blocks.1.conv1.weight'" in message and "(3, 3, 3, 3)" in message
    assert str(tuple(gen.blocks[1].conv1.weight.shape)) in message


def test_missing_and_unexpected_tensors(tmp_path, trained):
    cfg, gen = trained
    with pytest.raises(WeightsError) as info:
        load_generator(_tampered(tmp_path, cfg, gen, lambda s: s.pop("fc.bias")))
    assert "'fc.bias'" in _one_line(info)
    with pytest.raises(WeightsError) as info:
        load_generator(_tampered(tmp_path, cfg, gen, lambda s: s.update(extra=torch.zeros(1))))
    assert "'extra'" in _one_line(info)


def test_bad_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_generator(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError):
        load_generator(junk)
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(1)}, str(bare))
    with pytest.raises(WeightsError, match="no tganv2 config"):
        load_generator(bare)


def test_saved_tensors_are_plain_cpu_state(tmp_path, trained):
    cfg, gen = trained
    path = save_generator(tmp_path / "g.safetensors", gen, cfg)
    state = load_file(str(path))
    assert set(state) == set(gen.state_dict())
    assert "blocks.0.bn1.running_var" in state and "fc.weight" in state
