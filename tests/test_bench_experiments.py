"""The long-experiment drivers (issue 14 §3, §4) on tiny settings: ``benchmarks/ablation.py --mode paper``
(Table 1's equal-memory batches, equal iterations) and ``benchmarks/memory_capacity.py`` (paper §5.5).

The batches are written out here from the paper's Table 1 scaled by batch/64, not taken from the script.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_OVERRIDES
from tganv2.bench import experiment, plot
from tganv2.config import load_preset
from tganv2.metrics.classifier import save_classifier, train_classifier
from tganv2.training.loop import TrainingInterrupted

ROOT = Path(__file__).resolve().parents[1]
TINY = [f"{key}={value}" for key, value in TINY_OVERRIDES.items() if key != "train.batch"]


def _script(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
    """A classifier trained for 2 steps: enough for the scores' plumbing (not their values)."""
    path = tmp_path_factory.mktemp("classifier") / "clf.safetensors"
    model = train_classifier(
        size=64, frames=16, steps=2, width=4, n_train=64, n_val=18, seed=0, progress=False
    )
    save_classifier(path, model)
    return path


def _scoring(classifier_path) -> list[str]:
    return ["--classifier", str(classifier_path), "--n-samples", "8", "--n-real", "16", "--threads", "1"]


TABLE1 = {  # the paper's Table 1: per-level batches at batch 64
    "frame+batch": [64, 32, 16, 8],
    "frame-only": [8, 8, 8, 8],
    "batch-only": [8, 4, 4, 4],
    "no-subsampling": [4, 4, 4, 4],
}
TABLE1_AT = {  # Table 1 times batch / 64
    batch: {v: [b * batch // 64 for b in levels] for v, levels in TABLE1.items()} for batch in (16, 32)
}
FRAME_STRIDE = {"frame+batch": 2, "frame-only": 2, "batch-only": 1, "no-subsampling": 1}


@pytest.mark.parametrize("batch", [16, 32])
def test_paper_mode_gives_each_variant_table_1s_batches(batch):
    ablation = _script("ablation")
    args = ablation.parse_args(
        ["--mode", "paper", "--batch", str(batch), "--iterations", "7", "--seeds", "3"]
    )
    jobs = ablation.paper_jobs(args)
    assert [job.name for job in jobs] == [f"{v}-seed3" for v in TABLE1_AT[batch]]
    for job in jobs:
        variant, cfg = job.fields["variant"], job.cfg
        assert job.fields["level_batches"] == TABLE1_AT[batch][variant], variant
        assert [level.batch for level in cfg.model.level_plan(cfg.train.batch)] == TABLE1_AT[batch][variant]
        assert cfg.model.frame_strides == [FRAME_STRIDE[variant]] * 3
        assert cfg.train.iterations == 7 and cfg.train.seed == 3  # equal iterations, the seed of the job
    voxels = {job.fields["variant"]: job.fields["level_voxels"] // (batch // 16) for job in jobs}
    # small-64: 16 frames at 8 px doubling to 64 px; e.g. frame+batch 16·16·8² + 8·8·16² + 4·4·32² + 2·2·64²
    assert voxels == {"frame+batch": 65536, "frame-only": 30720, "batch-only": 88064, "no-subsampling": 87040}


def test_paper_mode_on_a_two_layer_preset_takes_table_1s_first_levels():
    ablation = _script("ablation")
    args = ablation.parse_args(["--mode", "paper", "--base", "demo-64", "--seeds", "0"])
    batches = {job.fields["variant"]: job.fields["level_batches"] for job in ablation.paper_jobs(args)}
    assert batches == {variant: levels[:3] for variant, levels in TABLE1_AT[16].items()}


def test_paper_mode_refuses_a_batch_that_breaks_table_1s_ratios(capsys):
    ablation = _script("ablation")
    assert ablation.main(["--mode", "paper", "--batch", "24"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ablation.py: error: --batch 24") and "multiple of 16" in err and "\n" not in err


def test_paper_mode_writes_the_record_table_and_chart_and_resumes(classifier_path, tmp_path, monkeypatch):
    ablation = _script("ablation")
    out = tmp_path / "table2"
    outputs = ["--output", f"{out}.json", "--markdown", f"{out}.md", "--plot", f"{out}.png"]
    common = ["--mode", "paper", "--iterations", "1", "--seeds", "0", "--workdir", str(tmp_path / "runs")]
    common += _scoring(classifier_path) + outputs
    assert ablation.main([*common, *TINY, "--variants", "frame+batch"]) == 0
    first = json.loads(Path(f"{out}.json").read_text())
    assert [run["name"] for run in first["runs"]] == ["frame+batch-seed0"] and first["complete"]

    figures = []
    real_save = plot._save
    monkeypatch.setattr(plot, "_save", lambda figure, path: figures.append(figure) or real_save(figure, path))
    # more variants: the finished run is read back from the record, the new one trained
    assert ablation.main([*common, *TINY, "--variants", "frame+batch", "no-subsampling"]) == 0
    record = json.loads(Path(f"{out}.json").read_text())
    runs = {run["name"]: run for run in record["runs"]}
    assert list(runs) == ["frame+batch-seed0", "no-subsampling-seed0"]
    assert runs["frame+batch-seed0"] == first["runs"][0]  # not trained again
    assert runs["no-subsampling-seed0"]["level_batches"] == [1, 1, 1, 1]
    assert runs["frame+batch-seed0"]["level_batches"] == [16, 8, 4, 2]
    for run in runs.values():
        assert run["iterations"] == 1 and run["dataset"] == {"kind": "SyntheticVideoDataset", "length": 4096}
        assert 1.0 <= run["cls_is"] <= 9.0 and run["cls_fid"] >= 0.0  # 9 classes bound the IS
        assert (tmp_path / "runs" / run["name"] / "checkpoints" / "ckpt-0000001.pt").is_file()
    table = record["table"]
    assert list(table) == ["frame+batch", "no-subsampling"]
    assert table["frame+batch"]["cls_is"] == [runs["frame+batch-seed0"]["cls_is"], 0.0]  # one seed: std 0
    assert record["settings"]["iterations"] == 1 and record["complete"]
    markdown = Path(f"{out}.md").read_text().splitlines()
    assert len(markdown) == 4 and markdown[2].startswith("| frame+batch | 16/8/4/2 | 1 | 1 |")
    assert markdown[3].startswith("| no-subsampling | 1/1/1/1 | 1 | 1 |")
    with Image.open(f"{out}.png") as image:
        assert image.size == (2 * 560, 440 + 30)
    (is_axis, fid_axis) = figures[0].axes
    assert [bar.get_height() for bar in is_axis.patches] == pytest.approx(
        [r["cls_is"] for r in runs.values()]
    )
    assert [bar.get_height() for bar in fid_axis.patches] == pytest.approx(
        [r["cls_fid"] for r in runs.values()]
    )


def test_paper_mode_refuses_a_record_of_other_settings(classifier_path, tmp_path, capsys):
    ablation = _script("ablation")
    record = tmp_path / "table2.json"
    record.write_text(json.dumps({"settings": {"iterations": 5}, "runs": []}))
    argv = ["--mode", "paper", "--iterations", "1", "--output", str(record), *_scoring(classifier_path)]
    assert ablation.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"ablation.py: error: {record}: written with other settings (") and "iterations" in err
    )


def test_paper_mode_merges_the_records_of_parallel_lanes(classifier_path, tmp_path, monkeypatch, capsys):
    ablation = _script("ablation")
    common = ["--mode", "paper", "--iterations", "1", "--seeds", "0", *_scoring(classifier_path), *TINY]
    args = ablation.parse_args(common)
    args.classifier_sha256 = experiment.get_classifier(str(classifier_path), seed=0, steps=1).weights_sha256
    scores = {"frame+batch": (2.5, 100.0), "no-subsampling": (1.5, 300.0)}
    lanes, lane_runs = [], []
    for job in ablation.paper_jobs(args):
        if job.fields["variant"] in scores:
            cls_is, cls_fid = scores[job.fields["variant"]]
            run = {"name": job.name, **job.fields, "iterations": 1, "cls_is": cls_is, "cls_fid": cls_fid}
            lanes.append(tmp_path / f"lane-{len(lanes)}.json")
            lanes[-1].write_text(json.dumps({"settings": ablation.settings_of(args), "runs": [run]}))
            lane_runs.append(run)

    def no_training(*args, **kwargs):
        raise AssertionError("a merged run was trained again")

    monkeypatch.setattr(experiment, "train", no_training)
    out = tmp_path / "all.json"
    merged = [*common, "--variants", *scores, "--output", str(out), "--merge", *map(str, lanes)]
    assert ablation.main(merged) == 0
    record = json.loads(out.read_text())
    assert record["runs"] == lane_runs and record["complete"]
    assert record["table"]["frame+batch"]["cls_is"] == [2.5, 0.0]
    assert record["table"]["no-subsampling"]["cls_fid"] == [300.0, 0.0]

    # an interim report: one lane so far, nothing trained, the record says it is not complete
    interim = tmp_path / "interim.json"
    interim_argv = [*common, "--variants", *scores, "--output", str(interim), "--report-only"]
    assert ablation.main([*interim_argv, "--merge", str(lanes[0])]) == 0
    record = json.loads(interim.read_text())
    assert record["runs"] == lane_runs[:1] and not record["complete"]
    assert list(record["table"]) == ["frame+batch"]

    # a lane that is missing, or of other settings: one line naming the record, nothing written
    capsys.readouterr()
    out.unlink()
    missing = tmp_path / "lane-9.json"
    assert ablation.main([*merged[:-2], str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"ablation.py: error: --merge {missing}: no such record"
    lanes[1].write_text(json.dumps({"settings": {"iterations": 5}, "runs": []}))
    assert ablation.main(merged) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ablation.py: error: {lanes[1]}: written with other settings (")
    assert "\n" not in err
    other_score = {**lane_runs[0], "cls_is": 9.0, "sec_per_it": 1.0}  # the same run, scored otherwise
    lanes[1].write_text(json.dumps({"settings": ablation.settings_of(args), "runs": [other_score]}))
    assert ablation.main(merged) == 2
    assert capsys.readouterr().err.strip() == (
        f"ablation.py: error: --merge {lanes[1]}: "
        "run frame+batch-seed0 differs from its copy in another record"
    )
    assert not out.exists()


def test_a_run_stopped_by_a_signal_is_neither_scored_nor_recorded(tmp_path, monkeypatch, capsys):
    """``train`` returns early on SIGTERM (checkpoint written); the experiment must not score that snapshot
    as the finished run (it once recorded a run stopped at iteration 203 as 800 iterations)."""

    def stopped(cfg, options):
        raise TrainingInterrupted(signal.SIGTERM, 203)

    def never(*args, **kwargs):
        raise AssertionError("an unfinished run was scored or recorded")

    monkeypatch.setattr(experiment, "train", stopped)
    job = experiment.Job("frame+batch-seed0", load_preset("demo-64"), {"seed": 0})
    with pytest.raises(SystemExit) as stop:
        experiment.run_jobs([job], types.SimpleNamespace(score=never), tmp_path, lambda job: 0, on_run=never)
    assert stop.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == (
        "frame+batch-seed0: stopped by signal 15 at iteration 203; checkpoint written; "
        "rerun the command to resume it\n"
    )


def test_a_resumed_run_is_timed_over_the_iterations_its_process_ran(tmp_path, monkeypatch):
    """A run resumed from its checkpoint at 600 of 800 iterations: its time per iteration is this process's
    seconds over 200 iterations, not over 800 (the record once said batch-only ran 1.81 s/it, not 2.92)."""
    job = experiment.Job("batch-only-seed2", load_preset("demo-64"), {"seed": 2})
    out = tmp_path / job.name
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "ckpt-0000600.pt").touch()  # where the rerun resumes (only the name is read)

    def resumed(cfg, options):
        (options.out / "dataset.json").write_text('{"length": 4096}')
        time.sleep(0.2)

    monkeypatch.setattr(experiment, "train", resumed)
    monkeypatch.setattr(experiment, "load_generator", lambda path, device: None)
    scorer = types.SimpleNamespace(score=lambda generator, seed: {"cls_is": 2.0})
    (run,) = experiment.run_jobs([job], scorer, tmp_path, lambda job: 0)
    assert run["iterations"] == 800 and run["timed_iterations"] == 200
    assert run["train_seconds"] >= 0.2
    assert run["sec_per_it"] == pytest.approx(run["train_seconds"] / 200)


def test_memory_capacity_trains_each_n_and_plots_is_against_n(classifier_path, tmp_path, monkeypatch):
    capacity = _script("memory_capacity")
    figures = []
    real_save = plot._save
    monkeypatch.setattr(plot, "_save", lambda figure, path: figures.append(figure) or real_save(figure, path))
    out = tmp_path / "capacity"
    argv = ["--ns", "1", "4", "--iterations", "1", "--seeds", "0", "--workdir", str(tmp_path / "runs")]
    argv += ["--output", f"{out}.json", "--markdown", f"{out}.md", "--plot", f"{out}.png"]
    assert capacity.main([*argv, *_scoring(classifier_path), *TINY, "train.batch=4"]) == 0
    record = json.loads(Path(f"{out}.json").read_text())
    runs = record["runs"]
    assert [run["name"] for run in runs] == ["n1-seed0", "n4-seed0"]
    # the training runs saw 9·N clips (data.clips_per_class on the 9-class synthetic dataset)
    assert [run["dataset"]["length"] for run in runs] == [9, 36] == [run["n_clips"] for run in runs]
    assert all(run["iterations"] == 1 and run["batch"] == 4 for run in runs)
    assert list(record["table"]) == ["1", "4"] and record["complete"]
    assert record["table"]["4"]["cls_is"] == [runs[1]["cls_is"], 0.0]
    markdown = Path(f"{out}.md").read_text().splitlines()
    assert markdown[2].startswith("| 1 | 9 | 1 |") and markdown[3].startswith("| 4 | 36 | 1 |")
    with Image.open(f"{out}.png") as image:
        assert image.size == (2 * 560, 440 + 30)
    is_axis = figures[0].axes[0]
    assert is_axis.get_xscale() == "log" and is_axis.get_yscale() == "linear"
    line = is_axis.containers[0].lines[0]  # the error bar's data line
    assert list(line.get_xdata()) == [1, 4]
    assert list(line.get_ydata()) == pytest.approx([run["cls_is"] for run in runs])


def test_class_breakdown_splits_the_nine_classes_into_shape_and_motion():
    """Closed forms: every class once, one-hot → IS 9 = shape 3 × motion 3; one motion with the shapes
    uniform per video → shape IS 1 (no video is sure of a shape), motion IS 1, the marginals exact."""
    factor_scores = _script("class_breakdown").factor_scores
    scores = factor_scores(np.eye(9))
    assert [scores[k]["is"] for k in ("all", "shape", "motion")] == pytest.approx([9, 3, 3], rel=1e-6)
    assert scores["shape"]["confidence"] == pytest.approx(1.0)
    vertical = np.zeros((4, 9))
    vertical[:, [1, 4, 7]] = 1 / 3  # label 3·shape + 1: vertical bounce, any shape
    scores = factor_scores(vertical)
    assert scores["shape"]["is"] == pytest.approx(1.0) and scores["motion"]["is"] == pytest.approx(1.0)
    assert scores["shape"]["marginal"] == pytest.approx([1 / 3] * 3)
    assert scores["motion"]["marginal"] == pytest.approx([0, 1, 0])
    assert scores["shape"]["confidence"] == pytest.approx(1 / 3)


def test_sample_figure_tiles_every_kth_frame_row_by_row():
    """``benchmarks/sample_figure.py``'s tiling: tile (i, j) is video i's frame j·stride, upscaled by
    nearest neighbour and mapped to uint8 like the previews, with black gaps between the tiles."""
    tile_rows, gap = _script("sample_figure").tile_rows, _script("sample_figure").GAP
    videos = torch.linspace(-1, 0.99, 2 * 3 * 6 * 2 * 2).reshape(2, 3, 6, 2, 2)  # (N, C, T, H, W)
    image = tile_rows(videos, stride=2, scale=3)
    h = w = 2 * 3
    assert image.shape == (2 * h + gap, 3 * w + 2 * gap, 3)  # 2 rows, frames 0, 2, 4
    i, j = 1, 2  # video 1, frame 4
    tile = image[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w]
    expected = (videos[1, :, 4].permute(1, 2, 0) * 128 + 128).clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(tile[::3, ::3], expected) and np.array_equal(tile[2::3, 2::3], expected)
    assert not image[h : h + gap].any() and not image[:, w : w + gap].any()
