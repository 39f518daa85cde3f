"""``tganv2 bench cost`` against the official cost table (pfnet-research/tgan2 figure/gflops.tsv).

The official numbers are written out here again (not imported from the module under test). G rows are the
192 px generator, D rows the 256 px model's level inputs, forward passes at batch 4 with fractional
per-level batches; "frame+batch" is the paper's proposed model (frame + batch reduction), "preset" the
preset as given.
"""

from __future__ import annotations

import json

import pytest

from conftest import counted_step_gflops
from tganv2.cli import main
from tganv2.config import PRESETS, load_preset

OFFICIAL_G = {  # figure/gflops.tsv, generator, L1..L4
    "no-subsampling": [192.41, 35.61, 36.18, 96.37],
    "frame-only": [192.41, 17.80, 9.05, 12.05],
    "frame+batch": [192.41, 8.90, 2.26, 1.51],
}
OFFICIAL_D = {  # figure/gflops.tsv, discriminator, L1..L4
    "no-subsampling": [36.09, 144.34, 577.37, 2309.48],
    "frame-only": [36.09, 72.17, 172.19, 478.09],
    "frame+batch": [36.09, 36.09, 43.05, 59.76],
}


def _cost_json(tmp_path_factory, preset: str) -> dict:
    """A real CLI run (``--json --output``), as the acceptance command."""
    out = tmp_path_factory.mktemp("cost") / f"{preset}.json"
    argv = ["bench", "cost", "--preset", preset, "--batch", "4", "--fractional-batch", "--json"]
    assert main([*argv, "--output", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def ucf_report(tmp_path_factory):
    return _cost_json(tmp_path_factory, "ucf101-192-bsr")


@pytest.fixture(scope="module")
def face_report(tmp_path_factory):
    return _cost_json(tmp_path_factory, "faceforensics-256")


def test_generator_rows_match_official_table(ucf_report):
    report = ucf_report
    assert list(report["variants"]) == ["preset", "frame+batch", "frame-only", "batch-only", "no-subsampling"]
    # ucf101-192-bsr is the proposed model: counted once, reported under both names
    assert report["variants"]["frame+batch"]["same_model_as"] == "preset"
    for name, official in OFFICIAL_G.items():
        measured = report["variants"][name]["generator"]["forward_gflops"]
        assert measured == pytest.approx(official, rel=0.02), name
    # the report carries its own comparison, and the memory ratios (reported, not asserted to match)
    assert report["official"]["generator"]["frame+batch"]["max_rel_error"] < 0.02
    assert report["official"]["generator"]["memory_reduction"]["measured"] > 1


def test_discriminator_rows_match_official_table(face_report):
    report = face_report
    for name, official in OFFICIAL_D.items():
        measured = report["variants"][name]["discriminator"]["forward_gflops"]
        assert measured == pytest.approx(official, rel=0.02), name
    assert report["official"]["discriminator"]["no-subsampling"]["max_rel_error"] < 0.02


def test_executed_clstm_skips_chainers_zero_input_convolutions(ucf_report):
    """Chainer convolves zeros at steps 2..16: 15 × 4 × 2·(9·4096·1024·9) FLOPs, absent from our forward."""
    g = ucf_report["variants"]["preset"]["generator"]
    skipped = 15 * 4 * 2 * (9 * 4096 * 1024 * 9) / 1e9
    assert g["forward_gflops"][0] - g["forward_gflops_executed"][0] == pytest.approx(skipped, rel=1e-9)
    assert g["forward_gflops"][1:] == g["forward_gflops_executed"][1:]


def test_level_four_of_the_192px_generator_is_the_closed_form_conv_count(ucf_report):
    """Block 6 (32→32, 96→192 px, shortcut at the upsampled size) + renderer 4; 64 frames, no subsampling."""
    per_frame_macs = 192 * 192 * (32 * 32 * 9 * 2 + 32 * 32 + 3 * 32 * 9)
    level4 = ucf_report["variants"]["no-subsampling"]["generator"]["forward_gflops"][3]
    assert level4 == pytest.approx(2 * per_frame_macs * 4 * 16 / 1e9, rel=1e-9)


def test_batch_reduction_divides_each_level_by_its_cumulative_stride(ucf_report):
    proposed = ucf_report["variants"]["frame+batch"]
    frame_only = ucf_report["variants"]["frame-only"]
    for net in ("generator", "discriminator"):
        for level in range(1, 4):
            # FLOPs exactly; saved bytes up to per-channel BN statistics that do not scale with the batch
            for key, rel in (("forward_gflops", 1e-9), ("activation_gb", 1e-4)):
                expected = frame_only[net][key][level] / 2**level
                assert proposed[net][key][level] == pytest.approx(expected, rel=rel), (net, key, level)


def test_activations_counted_once_per_storage_scale_with_the_input(face_report):
    """Without subsampling, the 256 px D level l sees 4^(l-1)× the pixels of level 1 (32 px), T = 16."""
    d = face_report["variants"]["no-subsampling"]["discriminator"]["activation_gb"]
    assert d[1] == pytest.approx(4 * d[0], rel=1e-3)
    assert d[2] == pytest.approx(16 * d[0], rel=1e-3)


def test_train_step_split_follows_the_trainer_sequence(ucf_report):
    """D forward F (integer batches): D on fakes = F + image gradient F + weight and input backward 2F;
    D on reals = F + 2F; R1 = first-order input gradient F + its double backward 2F. The step's D
    backward is for D's parameters only, so the input gradient of each level's RGB convs (conv1 3×3×3
    and the 1×1×1 shortcut after a 2×2 pool, 3 → d_ch channels) is not computed in either half."""
    from tganv2.bench.cost import discriminator_cost, generator_cost
    from tganv2.config import level_shapes, load_preset

    cfg = load_preset("ucf101-192-bsr")
    d_forward = sum(discriminator_cost(cfg, 4, official_conventions=False)["forward_gflops"])
    ch = cfg.model.d_ch
    rgb_input_grad = sum(
        2 * n * t * h * w * 27 * 3 * ch + 2 * n * t * (h // 2) * (w // 2) * 3 * ch
        for n, t, h, w in level_shapes(cfg, 4)
    )
    step = ucf_report["variants"]["preset"]["train_step_gflops"]
    assert step["d_fake"] == pytest.approx(4 * d_forward - rgb_input_grad / 1e9, rel=1e-6)
    assert step["d_real"] == pytest.approx(3 * d_forward - rgb_input_grad / 1e9, rel=1e-6)
    assert step["r1"] == pytest.approx(3 * d_forward, rel=1e-6)
    # G: forward + backward ≈ 3× forward (no input gradient for fc, whose input is z)
    g_forward = sum(generator_cost(cfg, 4, official_conventions=False)["forward_gflops_executed"])
    assert 2.95 * g_forward < step["generator"] <= 3 * g_forward


def test_bad_batch_is_a_one_line_error(capsys):
    assert main(["bench", "cost", "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err


@pytest.mark.parametrize("dotted", [[], ["model.batch_strides=[1,2,2]", "model.crop_factors=[1,2,1]"]])
def test_accounted_step_equals_a_counted_real_trainer_step(tiny_cfg, dotted):
    """One real ``Trainer.step`` under FlopCounterMode: its total is the accounted training-step GFLOPs."""
    from tganv2.bench.cost import train_step_gflops

    cfg = tiny_cfg(*dotted)
    accounted = sum(train_step_gflops(cfg, cfg.train.batch).values())
    assert counted_step_gflops(cfg) == pytest.approx(accounted, rel=0.01)
    assert accounted > 0.1  # G, both D passes, R1: a real amount of work


@pytest.mark.parametrize("preset", list(PRESETS))
def test_cost_json_runs_for_every_preset(request, tmp_path_factory, preset):
    """Acceptance: ``bench cost --json`` for every preset, each ablation on the preset's own layers."""
    fixtures = {"ucf101-192-bsr": "ucf_report", "faceforensics-256": "face_report"}  # already computed
    if preset in fixtures:
        report = request.getfixturevalue(fixtures[preset])
    else:
        out = tmp_path_factory.mktemp("cost") / f"{preset}.json"
        assert main(["bench", "cost", "--preset", preset, "--json", "--output", str(out)]) == 0
        report = json.loads(out.read_text())
    cfg = load_preset(preset)
    n = len(cfg.model.frame_strides)
    variants = report["variants"]
    assert list(variants) == ["preset", "frame+batch", "frame-only", "batch-only", "no-subsampling"]
    assert variants["preset"]["frame_strides"] == cfg.model.frame_strides
    assert variants["preset"]["batch_strides"] == cfg.model.batch_strides
    assert variants["no-subsampling"]["frame_strides"] == [1] * n
    assert variants["frame+batch"]["batch_strides"] == [2] * n
    totals = {}
    for name, variant in variants.items():
        assert len(variant["level_shapes"]) == n + 1 == len(variant["generator"]["forward_gflops"]), name
        totals[name] = sum(variant["train_step_gflops"].values())
        if "same_model_as" in variant:  # counted once: the same model under another name
            first = variants[variant["same_model_as"]]
            assert (variant["frame_strides"], variant["batch_strides"]) == (
                first["frame_strides"],
                first["batch_strides"],
            )
    # subsampling only removes work: no-subsampling is the most expensive step, frame+batch the cheapest
    assert max(totals.values()) == totals["no-subsampling"]
    assert min(totals.values()) == totals["frame+batch"]
