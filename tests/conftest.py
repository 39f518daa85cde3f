"""Shared fixtures and helpers: a seeded torch for every test, a tiny-config factory, the tiny overrides as
command-line arguments, the CLI in a child process and a FLOP count of one real training step.

``tiny_cfg(**fields)`` is the ``small-64`` preset (t_size 1: levels 8/16/32/64 px) shrunk to a few channels
and 8 frames (8 → 4 → 2 → 1 with frame stride 2), so a full multi-level forward takes milliseconds.
Keyword arguments name a field of any config section (``tiny_cfg(n_classes=3, batch=2)``); dotted
strings are also accepted (``tiny_cfg("model.frame_strides=[1,1,1]")``); ``tiny_args(...)`` is the same
tiny model as ``key=value`` arguments for ``tganv2 train`` and friends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tganv2.config import Config, DataConfig, ModelConfig, TrainConfig, apply_overrides, load_preset
from tganv2.training.step import Trainer

TINY_OVERRIDES: dict[str, Any] = {
    "model.n_frames": 8,
    "model.z_dim": 8,
    "model.ch": 2,
    "model.min_block_ch": 0,  # demo-64's floor of 32 channels would dwarf the tiny widths
    "model.clstm_ch": 8,
    "model.d_ch": 2,
    "train.batch": 4,
}

_SECTION_OF = {
    f.name: section
    for section, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig))
    for f in dataclasses.fields(cls)
}


def make_tiny_cfg(*dotted: str, preset: str = "small-64", **fields: Any) -> Config:
    """A tiny config: ``preset`` + TINY_OVERRIDES + ``fields`` (by field name) + ``dotted`` overrides."""
    overrides: dict[str, Any] = dict(TINY_OVERRIDES)
    for name, value in fields.items():
        if name not in _SECTION_OF:
            raise KeyError(f"tiny_cfg: no config field named {name!r}")
        overrides[f"{_SECTION_OF[name]}.{name}"] = value
    return apply_overrides(load_preset(preset, overrides), list(dotted))


def tiny_args(*extra: str) -> list[str]:
    """TINY_OVERRIDES as ``key=value`` command-line overrides, then ``extra`` (later ones win)."""
    return [f"{key}={value}" for key, value in TINY_OVERRIDES.items()] + list(extra)


TGANV2 = [sys.executable, "-m", "tganv2.cli"]  # the `tganv2` command in a child interpreter


def child_env(**variables: str) -> dict[str, str]:
    """The environment of a child process: one OpenMP thread, unbuffered output, then ``variables``."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **variables}


def run_tganv2(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``tganv2 ARGS`` in a child process (``child_env()``); its stdout and stderr captured as text."""
    return subprocess.run([*TGANV2, *args], env=child_env(), capture_output=True, text=True, timeout=timeout)


class _GlobalOnly(contextlib.nullcontext):
    """A module tracker for FlopCounterMode that puts every op under "Global" only (the stock
    ModuleTracker cannot follow autograd.grad on leaves)."""

    parents = {"Global"}


def counted_step_gflops(cfg: Config) -> float:
    """GFLOPs of one real CPU ``Trainer.step`` on random clips, counted by ``FlopCounterMode`` (a count
    independent of tganv2.bench.cost)."""
    trainer = Trainer(cfg, "cpu")
    m = cfg.model
    clips = torch.rand(cfg.train.batch, m.out_channels, m.n_frames, m.resolution, m.resolution) * 2 - 1
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        trainer.step(lambda: (clips, None))
    return counter.get_total_flops() / 1e9


def pytest_configure(config):
    # The test models are tiny: one intra-op thread is fastest and avoids oversubscribing a shared CPU.
    torch.set_num_threads(int(os.environ.get("TGANV2_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same global torch seed (and leaves the seed it found)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


@pytest.fixture
def tiny_cfg():
    """Factory fixture: ``tiny_cfg(**fields)`` / ``tiny_cfg("model.x=...")`` → a tiny ``Config``."""
    return make_tiny_cfg
