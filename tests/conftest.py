"""Shared fixtures: a seeded torch for every test and a tiny-config factory.

``tiny_cfg(**fields)`` is the ``small-64`` preset (t_size 1: levels 8/16/32/64 px) shrunk to a few channels
and 8 frames (8 → 4 → 2 → 1 with frame stride 2), so a full multi-level forward takes milliseconds.
Keyword arguments name a field of any config section (``tiny_cfg(n_classes=3, batch=2)``); dotted
strings are also accepted (``tiny_cfg("model.frame_strides=[1,1,1]")``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
import torch

from tganv2.config import Config, DataConfig, ModelConfig, TrainConfig, apply_overrides, load_preset

TINY_OVERRIDES: dict[str, Any] = {
    "model.n_frames": 8,
    "model.z_dim": 8,
    "model.ch": 2,
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
