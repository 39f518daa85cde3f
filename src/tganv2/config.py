"""Configuration: dataclasses, presets (paper, ablations, demo), YAML files and dotted overrides, builders.

A config is ``Config(model=ModelConfig, data=DataConfig, train=TrainConfig)``. Presets are one line each
(a dict of dotted overrides on top of the defaults); YAML files and ``key=value`` overrides are applied on
top of a preset in that order. Only the builders here read config objects; modules take plain arguments.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import UserError
from .nn import subsample as subsampling
from .nn.discriminator import MultiLevelDiscriminator
from .nn.generator import UPSAMPLE_MODES, Generator, level1_side
from .nn.subsample import LayerDraw, LevelShape

__all__ = [
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "Config",
    "ConfigError",
    "PRESETS",
    "ABLATIONS",
    "PRESET_VARIANT",
    "VARIANTS",
    "ablation_overrides",
    "variant_config",
    "load_preset",
    "load_config",
    "apply_overrides",
    "config_to_dict",
    "config_from_dict",
    "build_generator",
    "build_discriminator",
    "level_shapes",
]


class ConfigError(UserError, ValueError):
    """A bad preset name, config key or value; the message names the field and what was expected."""


@dataclass
class ModelConfig:
    # --- generator (reference.md §1) ---
    n_frames: int = 16  # frames at level 1 in training (and at inference unless overridden)
    z_dim: int = 256  # latent size; z ~ U(-1, 1)
    t_size: int = 3  # CLSTM grid size; level 1 is t_size·8 px (3 build blocks), t_size·64 after 4 levels
    # Up-blocks between the ConvLSTM and level 1 (3 official); level 1 is t_size·2^build_blocks px. Fewer
    # blocks on a larger grid (e.g. 1 block on 8×8 for 16 px) keep positions in the ConvLSTM's map, as the
    # PyTorch port's Moving-MNIST run (4×4 grid, one build block)
    build_blocks: int = 3
    ch: int = 32  # base width of the up-blocks
    # Floor of the up-block widths after level 1 (ch·4 halving per level): 0 = ch, the official layout
    # (ch 32: 64, 32, 32). A narrow demo G (ch 8) would otherwise draw its 64 px frames from 8 channels.
    min_block_ch: int = 0
    clstm_ch: int = 1024  # ConvLSTM channels
    n_layers: int = 1  # stacked ConvLSTMs
    # ConvLSTM kernel. 3 is official. On a 1×1 grid (t_size 1) only the centre tap of a 3×3 kernel ever sees
    # data, so LeCunNormal's 1/fan_in makes the cell 3× too weak and z fades within a few frames; 1 fixes it.
    clstm_kernel: int = 3
    # Initial forget-gate bias of the ConvLSTM. 0 is official (a fresh cell halves its memory each step).
    clstm_forget_bias: float = 0.0
    out_channels: int = 3  # RGB
    n_classes: int = 0  # > 0: class-conditional BatchNorm in G (and a projection term in D)
    frame_strides: list[int] = field(default_factory=lambda: [2, 2, 2])  # one per subsampling layer
    batch_strides: list[int] = field(default_factory=lambda: [1, 1, 1])  # adaptive batch reduction
    crop_factors: list[int] = field(default_factory=lambda: [1, 1, 1])  # paper §3.1 spatial crop (1 = off)
    use_avg_pooling: bool = False  # ablation: mean over frame groups instead of strided sampling
    render_level: int = 4  # level rendered at inference (1..n_levels)
    bn_eps: float = 2e-5  # Chainer's BatchNormalization eps
    # ×2 upsampling in G's up-blocks: "nearest" (Chainer's unpooling, official) or "bilinear". Nearest carries
    # each cell of a small ConvLSTM grid up as a flat square (2×2 grid: 16 px at 64 px); demo-64 is bilinear
    upsample: str = "nearest"
    # --- discriminator (reference.md §2) ---
    d_ch: int = 64  # width of the first 3D ResNet block (64-128-256-512-1024)
    # StyleGAN's minibatch standard deviation before D's last block, over groups of this many videos
    # (nn.discriminator.MinibatchStd); 0 = off, the official D
    d_mbstd_group: int = 0

    @property
    def n_levels(self) -> int:
        return len(self.frame_strides) + 1

    def render_size(self, level: int | None = None) -> int:
        """Frame side of ``level`` (default ``render_level``) at inference: level 1's side ·2^(level − 1)."""
        level = self.render_level if level is None else level
        return self.level1_size * 2 ** (level - 1)

    @property
    def level1_size(self) -> int:
        return level1_side(self.t_size, self.build_blocks)

    @property
    def resolution(self) -> int:
        """Final frame size, the last level's: t_size·8 doubled at each further level (t_size·64 with 4)."""
        return self.render_size(self.n_levels)

    def level_plan(self, batch: int) -> list[LevelShape]:
        """``(batch, frames, size)`` of each training level, fakes and reals alike (``level_plan``)."""
        return subsampling.level_plan(
            batch, self.n_frames, self.level1_size, self.frame_strides, self.batch_strides, self.crop_factors
        )

    @property
    def level_sizes(self) -> list[int]:
        """Training frame size of each level: level1_size, then each subsampling layer crops 1/c, doubles."""
        return [level.size for level in self.level_plan(1)]

    def layer_draws(self, batch: int, rng: np.random.Generator, reals: bool = False) -> list[LayerDraw]:
        """The random choices of every subsampling layer for a level-1 ``batch``, drawn from ``rng``.

        ``reals=False``: the generator's rule (shared Python ints, for ``Generator.forward(draws=...)``);
        ``reals=True``: per sample, crops inside the full-resolution windows (``real_levels_from_config``).
        """
        strides = (self.frame_strides, self.batch_strides, self.crop_factors)
        if reals:  # the real clips are cropped at full resolution, before pooling to the level size
            levels = subsampling.level_plan(batch, self.n_frames, self.resolution, *strides, growth=1)
        else:
            levels = self.level_plan(batch)
        sizes = [level.size for level in levels[:-1]]  # the side each layer crops
        return subsampling.draw_layers(
            *strides, sizes, batch, rng, per_sample=reals, use_avg_pooling=self.use_avg_pooling
        )


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # synthetic | hdf5 | folder (auto-detected from --data when given)
    path: str | None = None  # HDF5 file / folder of videos; None = built-in synthetic dataset
    xmargin: int = 4  # official UCF101 random x-crop margin (x0 in [xmargin, W - size - xmargin])
    xflip: bool = True  # random horizontal flip in training
    num_workers: int = 2  # DataLoader workers
    synthetic_size: int = 4096  # clips in the synthetic dataset (deterministic from the seed)
    clips_per_class: int = 0  # keep N clips (videos) of each class, paper §5.5 memory capacity; 0 = all


@dataclass
class TrainConfig:
    batch: int = 32  # per-device batch at level 1 (global batch = batch * world size)
    iterations: int = 100_000  # linear lr decay reaches 0 here
    lr: float = 1e-4  # Adam alpha for G and D
    lr_dis: float = 0.0  # Adam alpha for D alone (two time-scale updates); 0 = train.lr, the official rule
    lr_decay_start: float = 0.0  # fraction of the run at the full lr, then linear decay to 0 (0: official)
    betas: tuple[float, float] = (0.0, 0.9)
    adam_eps: float = 8e-8
    # chainer: eps outside Adam's bias correction, as the official Chainer 6 run (see training/step.py);
    # torch: torch.optim.Adam's lr·m̂/(√v̂ + eps)
    adam_eps_convention: str = "chainer"
    n_dis: int = 1  # D steps per iteration (G updated on the first only)
    r1_lambda: float = 0.5  # λ per device batch of 32, summed (reference §2.4)
    r1_reference_batch: int = 32  # λ_sum = r1_lambda * r1_reference_batch / batch (see docs)
    # R1 on every k-th D step only, with λ·k (StyleGAN2's lazy regularisation: the same expected penalty
    # for a fraction of its double backward, ~25% of a demo-64 step); 1 = every step (official)
    r1_every: int = 1
    seed: int = 1701
    precision: str = "fp32"  # fp32 | bf16
    compile: bool = False
    d_joint_pass: bool = False  # one D pass over reals and fakes together (see training.step.discriminate)
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3
    sample_every: int = 2000
    log_every: int = 100
    eval_every: int = 0  # classifier-IS/FID every K iterations (0 = only at the start and the end)
    classifier: str | None = None  # classifier .safetensors (`tganv2 evaluate train-classifier`); None = off
    eval_samples: int = 256  # generated videos per periodic score
    eval_real: int = 1024  # real clips for the cached real statistics
    # EMA of G's weights (training/ema.py): half-life in real samples seen by G (StyleGAN's ema_kimg·1000);
    # 0 = off, the official behaviour. Samples, scores and the snapshot then use the EMA copy.
    ema_half_life: float = 0.0
    ema_rampup: float = 0.05  # half-life ≤ ramp-up × samples seen so far (StyleGAN2-ADA); 0 = no ramp-up

    @property
    def lr_d(self) -> float:
        """D's Adam alpha: ``lr_dis``, or ``lr`` when it is 0 (the official rule)."""
        return self.lr_dis or self.lr


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "ucf101-192"


# One line per preset: dotted overrides on top of the defaults (the official UCF101 run).
# fmt: off
PRESETS: dict[str, dict[str, Any]] = {
    "ucf101-192":        {},  # official README run: t_size 3, CLSTM 1024, frame stride 2, batch stride 1
    "ucf101-192-bsr":    {"model.batch_strides": [2, 2, 2]},  # paper Table 1: frame + batch reduction
    "faceforensics-256": {"model.t_size": 4, "model.batch_strides": [2, 2, 2], "data.xmargin": 0, "data.xflip": False, "train.batch": 16},  # noqa: E501
    "batch-only":        {"model.frame_strides": [1, 1, 1], "model.batch_strides": [2, 2, 2]},
    "no-subsampling":    {"model.frame_strides": [1, 1, 1], "model.batch_strides": [1, 1, 1]},
    "demo-64":           {"model.t_size": 2, "model.frame_strides": [2, 2], "model.batch_strides": [1, 1], "model.crop_factors": [1, 2], "model.render_level": 3, "model.ch": 8, "model.min_block_ch": 32, "model.clstm_ch": 64, "model.clstm_forget_bias": 1.0, "model.d_ch": 16, "model.d_mbstd_group": 4, "model.upsample": "bilinear", "model.z_dim": 64, "train.batch": 8, "train.lr": 5e-4, "train.lr_decay_start": 0.5, "train.iterations": 800, "train.checkpoint_every": 200, "train.sample_every": 200, "train.log_every": 20, "data.xmargin": 0, "data.num_workers": 0},  # noqa: E501
    "small-64":          {"model.t_size": 1, "model.ch": 8, "model.clstm_ch": 64, "model.clstm_kernel": 1, "model.d_ch": 8, "model.z_dim": 64, "train.batch": 8, "train.lr": 2e-4, "train.iterations": 600, "train.checkpoint_every": 200, "train.sample_every": 200, "train.log_every": 20, "data.xmargin": 0, "data.num_workers": 0},  # noqa: E501
}
# fmt: on

# Presets that no longer exist, with what to use instead (named in the error).
REMOVED_PRESETS: dict[str, str] = {
    "frame-only": "it was the same config as 'ucf101-192' (frame stride 2, batch stride 1); "
    "use --preset ucf101-192",
}

# The paper's Table 1 variants as (frame stride, batch stride) at every subsampling layer, so that they
# apply to a preset with any number of layers (`bench cost`, `bench step`, `bench scaling`,
# benchmarks/ablation.py). The config as given is the variant PRESET_VARIANT.
ABLATIONS: dict[str, tuple[int, int]] = {
    "frame+batch": (2, 2),  # the paper's proposed model ("TGANv2" in Tables 1 and 2)
    "frame-only": (2, 1),
    "batch-only": (1, 2),
    "no-subsampling": (1, 1),
}
PRESET_VARIANT = "preset"
VARIANTS: tuple[str, ...] = (PRESET_VARIANT, *ABLATIONS)


def ablation_overrides(name: str, n_layers: int) -> dict[str, list[int]]:
    """The dotted overrides of ablation ``name`` for a model with ``n_layers`` subsampling layers."""
    if name not in ABLATIONS:
        raise ConfigError(f"unknown ablation '{name}' (expected one of: {', '.join(ABLATIONS)})")
    frame_stride, batch_stride = ABLATIONS[name]
    return {
        "model.frame_strides": [frame_stride] * n_layers,
        "model.batch_strides": [batch_stride] * n_layers,
    }


def variant_config(cfg: Config, name: str) -> Config:
    """``cfg`` as given (``name == "preset"``) or with ablation ``name`` on its own number of layers."""
    if name == PRESET_VARIANT:
        return cfg
    return apply_overrides(cfg, ablation_overrides(name, len(cfg.model.frame_strides)))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def config_from_dict(d: dict[str, Any]) -> Config:
    """Inverse of ``config_to_dict``; unknown keys raise ``ConfigError``."""
    cfg = Config()
    for key, value in d.items():
        if key == "preset":
            cfg.preset = str(value)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{key}' must be a mapping, got {type(value).__name__}")
            for sub_key, sub_value in value.items():
                _set(cfg, f"{key}.{sub_key}", sub_value)
        else:
            raise ConfigError(f"unknown config section '{key}' (expected model, data, train or preset)")
    _validate(cfg)
    return cfg


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Convert ``value`` to the type of the field's current value, or raise a one-line ConfigError."""
    if default is None:
        return value
    try:
        if value is None:  # e.g. `train.batch=null`: only fields whose default is None accept None
            raise ValueError
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            if value not in (0, 1):  # True/False/0/1 only, not e.g. 2 or a list
                raise ValueError
            return bool(value)
        if isinstance(default, (int, float)) and isinstance(value, bool):
            raise ValueError  # `train.batch=true` is a mistake, not 1
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            if not isinstance(value, (list, tuple)):
                raise ValueError
            if isinstance(default, tuple) and len(value) != len(default):
                raise ValueError  # fixed-length fields such as train.betas
            items = [_coerce(v, default[0], key) for v in value] if default else list(value)
            return type(default)(items)
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' expects {type(default).__name__}, got {value!r}") from None
    return value


def _set(cfg: Config, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise ConfigError(f"unknown config key '{dotted}' (expected section.field, e.g. train.batch=16)")
    section, name = parts
    obj = getattr(cfg, section)
    fields = {f.name for f in dataclasses.fields(obj)}
    if name not in fields:
        raise ConfigError(f"unknown config key '{dotted}' (fields of {section}: {', '.join(sorted(fields))})")
    declared = next(f for f in dataclasses.fields(obj) if f.name == name).default
    if value is None and declared is None:  # optional fields (data.path) may be reset to None
        setattr(obj, name, None)
        return
    setattr(obj, name, _coerce(value, getattr(obj, name), dotted))


def apply_overrides(cfg: Config, overrides: list[str] | dict[str, Any]) -> Config:
    """Apply ``["train.batch=16", ...]`` (values parsed as YAML) or a ``{dotted: value}`` dict."""
    cfg = copy.deepcopy(cfg)
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        _set(cfg, key, value)
    _validate(cfg)
    return cfg


def _split(override: str) -> tuple[str, Any]:
    if "=" not in override:
        raise ConfigError(f"override '{override}' must look like key=value (e.g. train.batch=16)")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


_POSITIVE_MODEL_FIELDS = ("n_frames", "z_dim", "t_size", "ch", "clstm_ch", "n_layers", "clstm_kernel")
_POSITIVE_MODEL_FIELDS += ("out_channels", "d_ch")


def _validate_model(m: ModelConfig) -> None:
    """One-line ConfigErrors naming the model.* field; afterwards fakes and reals have equal level shapes."""
    for name in _POSITIVE_MODEL_FIELDS:
        if getattr(m, name) < 1:
            raise ConfigError(f"model.{name} must be >= 1, got {getattr(m, name)}")
    if m.clstm_kernel % 2 == 0:
        raise ConfigError(
            f"model.clstm_kernel must be odd (a 'same'-padded square kernel), got {m.clstm_kernel}"
        )
    if not 1 <= m.build_blocks <= 3:
        raise ConfigError(f"model.build_blocks must be in 1..3 (3 = official), got {m.build_blocks}")
    if m.min_block_ch < 0:
        raise ConfigError(f"model.min_block_ch must be >= 0 (0 = model.ch), got {m.min_block_ch}")
    if m.n_classes < 0:
        raise ConfigError(f"model.n_classes must be >= 0 (0 = unconditional), got {m.n_classes}")
    if m.d_mbstd_group < 0 or m.d_mbstd_group == 1:
        raise ConfigError(f"model.d_mbstd_group must be 0 (off) or >= 2 videos, got {m.d_mbstd_group}")
    if not (math.isfinite(m.bn_eps) and m.bn_eps > 0):
        raise ConfigError(f"model.bn_eps must be a finite number > 0, got {m.bn_eps}")
    if not math.isfinite(m.clstm_forget_bias):
        raise ConfigError(f"model.clstm_forget_bias must be finite, got {m.clstm_forget_bias}")
    if m.upsample not in UPSAMPLE_MODES:
        raise ConfigError(f"model.upsample must be {' or '.join(UPSAMPLE_MODES)}, got {m.upsample!r}")
    n = len(m.frame_strides)
    if len(m.batch_strides) != n or len(m.crop_factors) != n:
        raise ConfigError(
            f"model.frame_strides, model.batch_strides and model.crop_factors must have the same length "
            f"(got {len(m.frame_strides)}, {len(m.batch_strides)}, {len(m.crop_factors)})"
        )
    for name in ("frame_strides", "batch_strides", "crop_factors"):
        if any(v < 1 for v in getattr(m, name)):
            raise ConfigError(f"model.{name} must all be >= 1, got {getattr(m, name)}")
    if not 1 <= m.render_level <= m.n_levels:
        raise ConfigError(f"model.render_level must be in 1..{m.n_levels}, got {m.render_level}")
    works = subsampling.frame_count_that_works(m.n_frames, m.frame_strides)
    if works != m.n_frames:
        raise ConfigError(
            f"model.n_frames={m.n_frames} does not split evenly over model.frame_strides={m.frame_strides} "
            f"(fakes and reals would get levels of different lengths): use a multiple of "
            f"{math.prod(m.frame_strides)}, e.g. model.n_frames={works}"
        )
    for k, (crop, level) in enumerate(zip(m.crop_factors, m.level_plan(1))):
        if subsampling.crop_side(level.size, crop) < 1:
            raise ConfigError(
                f"model.crop_factors[{k}]={crop} is larger than level {k + 1}'s side of {level.size} px"
            )


def _validate(cfg: Config) -> None:
    _validate_model(cfg.model)
    _validate_train(cfg.train)
    _validate_data(cfg.data)
    if cfg.train.adam_eps_convention not in ("chainer", "torch"):
        raise ConfigError(
            f"train.adam_eps_convention must be chainer or torch, got {cfg.train.adam_eps_convention!r}"
        )
    if cfg.data.clips_per_class < 0:
        raise ConfigError(
            f"data.clips_per_class must be >= 0 (0 = every clip), got {cfg.data.clips_per_class}"
        )
    for key in ("ema_half_life", "ema_rampup"):
        value = getattr(cfg.train, key)
        if not (value >= 0 and value != float("inf")):  # also refuses nan
            raise ConfigError(f"train.{key} must be a finite number >= 0 (0 = off), got {value}")
    m = cfg.model
    if cfg.train.batch * m.n_frames * m.t_size**2 < 2:
        raise ConfigError(
            f"train.batch × model.n_frames × model.t_size² must be >= 2 (the generator's BatchNorm needs "
            f"more than one value per channel), got {cfg.train.batch} × {m.n_frames} × {m.t_size}²"
        )
    if m.d_mbstd_group and cfg.train.d_joint_pass:
        raise ConfigError(
            "model.d_mbstd_group needs train.d_joint_pass=false (a joint pass would group reals with fakes)"
        )
    reduction = subsampling.batch_reductions(m.batch_strides)[-1]
    if cfg.train.batch % reduction:
        raise ConfigError(
            f"train.batch={cfg.train.batch} must be divisible by the total batch stride {reduction}"
        )


def _validate_train(t: TrainConfig) -> None:
    """Ranges of the train.* fields (each message names the field, the expected range and the value)."""
    if t.precision not in ("fp32", "bf16"):
        raise ConfigError(f"train.precision must be fp32 or bf16, got {t.precision!r}")
    for name in ("batch", "iterations", "n_dis", "r1_reference_batch", "r1_every", "checkpoint_every",
                 "sample_every", "log_every", "eval_samples", "eval_real"):  # fmt: skip
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    for name in ("keep_checkpoints", "eval_every"):  # 0: keep every checkpoint / score only at start and end
        if getattr(t, name) < 0:
            raise ConfigError(f"train.{name} must be >= 0, got {getattr(t, name)}")
    if not 0 <= t.seed < 2**32:
        raise ConfigError(f"train.seed must be in 0..4294967295, got {t.seed}")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"train.lr must be a finite number > 0, got {t.lr}")
    if not (math.isfinite(t.lr_dis) and t.lr_dis >= 0):
        raise ConfigError(f"train.lr_dis must be a finite number >= 0 (0 = train.lr), got {t.lr_dis}")
    if not 0 <= t.lr_decay_start < 1:  # also refuses nan
        raise ConfigError(f"train.lr_decay_start must be in [0, 1) (0 = official), got {t.lr_decay_start}")
    if not (math.isfinite(t.adam_eps) and t.adam_eps > 0):
        raise ConfigError(f"train.adam_eps must be a finite number > 0, got {t.adam_eps}")
    if not all(0 <= b < 1 for b in t.betas):  # also refuses nan
        raise ConfigError(f"train.betas must both be in [0, 1), got {list(t.betas)}")
    if not (math.isfinite(t.r1_lambda) and t.r1_lambda >= 0):
        raise ConfigError(f"train.r1_lambda must be a finite number >= 0 (0 = no R1), got {t.r1_lambda}")


def _validate_data(d: DataConfig) -> None:
    if d.num_workers < 0:
        raise ConfigError(
            f"data.num_workers must be >= 0 (0 = load in the training process), got {d.num_workers}"
        )
    if d.synthetic_size < 1:
        raise ConfigError(f"data.synthetic_size must be >= 1, got {d.synthetic_size}")
    if d.xmargin < 0:
        raise ConfigError(f"data.xmargin must be >= 0, got {d.xmargin}")


def load_preset(name: str = "ucf101-192", overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """The named preset with optional dotted overrides, e.g. ``load_preset("demo-64", ["train.batch=4"])``."""
    if name in REMOVED_PRESETS:
        raise ConfigError(f"preset '{name}' was removed: {REMOVED_PRESETS[name]}")
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (expected one of: {', '.join(PRESETS)})")
    cfg = apply_overrides(Config(preset=name), PRESETS[name])
    return apply_overrides(cfg, overrides or [])


def load_config(preset: str | None = None, files: list[str | Path] = (), overrides: list[str] = ()) -> Config:
    """Preset (default ucf101-192), then YAML files in order (nested or dotted keys), then overrides."""
    cfg = load_preset(preset or "ucf101-192")
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections")
        if "preset" in data and data["preset"] != cfg.preset:
            cfg = load_preset(str(data["preset"]))
        cfg = apply_overrides(cfg, _flatten({k: v for k, v in data.items() if k != "preset"}))
    return apply_overrides(cfg, list(overrides))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and "." not in key and not prefix:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def add_config_arguments(parser, default_preset: str) -> None:
    """The ``--preset``, ``--config`` and ``key=value`` arguments every config-taking command shares."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        help=f"preset name (see `tganv2 presets`; default {default_preset})",
    )
    parser.add_argument(
        "--config", action="append", help="YAML file applied on top of the preset (repeatable)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted config overrides applied last, e.g. train.lr=2e-4 model.n_layers=2",
    )


def config_from_args(args, extra_overrides: list[str] = ()) -> Config:
    """The config of ``add_config_arguments``'s arguments, with ``extra_overrides`` before the user's."""
    return load_config(args.preset, args.config or [], [*extra_overrides, *args.overrides])


def level_shapes(cfg: Config, batch: int | None = None) -> list[tuple[int, int, int, int]]:
    """Per-level training shapes ``(batch, frames, height, width)`` of the generator's (and real) videos."""
    n = cfg.train.batch if batch is None else batch
    return [(level.batch, level.frames, level.size, level.size) for level in cfg.model.level_plan(n)]


def build_generator(cfg: Config):
    m = cfg.model
    return Generator(
        n_frames=m.n_frames,
        z_dim=m.z_dim,
        t_size=m.t_size,
        build_blocks=m.build_blocks,
        ch=m.ch,
        min_block_ch=m.min_block_ch,
        clstm_ch=m.clstm_ch,
        n_layers=m.n_layers,
        clstm_kernel=m.clstm_kernel,
        clstm_forget_bias=m.clstm_forget_bias,
        out_channels=m.out_channels,
        n_classes=m.n_classes,
        frame_strides=list(m.frame_strides),
        batch_strides=list(m.batch_strides),
        crop_factors=list(m.crop_factors),
        use_avg_pooling=m.use_avg_pooling,
        render_level=m.render_level,
        bn_eps=m.bn_eps,
        upsample=m.upsample,
    )


def build_discriminator(cfg: Config):
    m = cfg.model
    return MultiLevelDiscriminator(
        n_levels=m.n_levels,
        in_channels=m.out_channels,
        ch=m.d_ch,
        n_classes=m.n_classes,
        mbstd_group=m.d_mbstd_group,
    )
