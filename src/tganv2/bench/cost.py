"""Per-level cost of one TGANv2 training step and of the paper's Table 1 ablations (``tganv2 bench cost``).

For a preset as given (variant ``preset``) and each Table 1 ablation derived from its own number of
subsampling layers (``tganv2.config.ABLATIONS``: ``frame+batch``, ``frame-only``, ``batch-only``,
``no-subsampling``), at the same level-1 batch:

* forward GFLOPs per level of G and of D, from ``torch.utils.flop_counter`` (2 FLOPs per multiply-add;
  convolutions and matmuls only);
* saved-activation GB per level: the bytes autograd keeps for backward, counted once per storage
  (``torch.autograd.graph.saved_tensors_hooks``; parameters excluded);
* training-step GFLOPs (forward + backward) of ``Trainer.step``'s exact sequence, split into the generator,
  D on fakes, D on reals and the R1 penalty (its double backward).

Everything runs on the ``meta`` device: the real modules, no memory, no arithmetic, deterministic.

Level attribution: generator level 1 is fc + ConvLSTM + the build up-blocks (3 official) + renderer 1; level
l ≥ 2 is the up-block that produces level l's abstract map plus renderer l (the subsampling layer in front of
it adds no FLOPs). Discriminator level l is sub-discriminator l.

Official cost table (pfnet-research/tgan2 ``figure/gflops.tsv``, ``figure/memory.tsv``): G rows are the
192 px generator, D rows the 256 px model's level inputs, all a forward pass at batch 4. Its conventions,
which ``official_conventions=True`` (CLI ``--fractional-batch``) reproduces:

* fractional batch: with batch reduction level l counts batch/Π strides samples (L4 of batch 4 counts half
  a sample), so each level's cost at the integer batch actually run is scaled by fractional/integer;
* Chainer's ConvLSTM convolves an all-zeros input at every step after the first (reference §1.3); ours
  replaces that convolution by its bias, which gives the same result. The table counts those convolutions,
  so they are added to level 1 (``forward_gflops_executed`` leaves them out).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import (
    VARIANTS,
    Config,
    build_discriminator,
    build_generator,
    config_to_dict,
    level_shapes,
    variant_config,
)
from ..losses import discriminator_fake_loss, discriminator_real_loss, generator_loss, r1_penalty
from ..nn.subsample import batch_reductions

__all__ = [
    "OFFICIAL_GFLOPS",
    "OFFICIAL_MEMORY_GB",
    "variant_configs",
    "fractional_level_batches",
    "generator_cost",
    "discriminator_cost",
    "train_step_gflops",
    "cost_report",
    "compare_with_official",
]

GB = 1e9  # the official table's unit; decimal gigabytes

# figure/gflops.tsv and figure/memory.tsv of the official repository, levels L1..L4 at batch 4.
# Keys follow our variant names: "frame+batch" is the paper's proposed model (TGANv2).
OFFICIAL_GFLOPS = {
    "generator": {
        "no-subsampling": [192.41, 35.61, 36.18, 96.37],
        "frame-only": [192.41, 17.80, 9.05, 12.05],
        "frame+batch": [192.41, 8.90, 2.26, 1.51],
    },
    "discriminator": {
        "no-subsampling": [36.09, 144.34, 577.37, 2309.48],
        "frame-only": [36.09, 72.17, 172.19, 478.09],
        "frame+batch": [36.09, 36.09, 43.05, 59.76],
    },
}
OFFICIAL_MEMORY_GB = {
    "generator": {
        "no-subsampling": [0.722, 0.745, 1.503, 4.746],
        "frame+batch": [0.722, 0.195, 0.098, 0.076],
    },
    "discriminator": {
        "no-subsampling": [0.185, 0.736, 2.952, 11.816],
        "frame+batch": [0.185, 0.185, 0.190, 0.211],
    },
}
# The model each half of the official table was measured on (checked before comparing).
OFFICIAL_MODELS = {
    "generator": {"t_size": 3, "ch": 32, "clstm_ch": 1024, "n_layers": 1, "n_frames": 16, "z_dim": 256},
    "discriminator": {"t_size": 4, "d_ch": 64, "n_frames": 16},
}
OFFICIAL_BATCH = 4


def variant_configs(cfg: Config) -> dict[str, Config]:
    """The preset as given (``preset``) and each Table 1 ablation on its own number of layers."""
    return {name: variant_config(cfg, name) for name in VARIANTS}


def fractional_level_batches(cfg: Config, batch: int) -> list[float]:
    """batch / Π(batch strides up to level l): the official table's per-level batch (may be < 1)."""
    return [batch / reduction for reduction in batch_reductions(cfg.model.batch_strides)]


# --- counting machinery ------------------------------------------------------------------------------------


class _LevelTracker:
    """Stand-in for FlopCounterMode's module tracker: every op is attributed to the current level.

    FlopCounterMode adds each op's FLOPs to every name in ``parents``; forward pre-hooks on the modules of
    each level set ``level``. (The stock module tracker also cannot follow ``autograd.grad`` on leaves.)
    """

    def __init__(self) -> None:
        self.level = 1

    @property
    def parents(self) -> set[str]:
        return {"Global", f"level{self.level}"}

    def __enter__(self) -> _LevelTracker:
        return self

    def __exit__(self, *exc) -> None:
        return None


class _SavedBytes:
    """Pack hook: bytes of every storage autograd saves, once per storage, attributed to the current level."""

    def __init__(self, tracker: _LevelTracker, modules: list[nn.Module]) -> None:
        self.tracker = tracker
        self.seen: set[int] = {p.untyped_storage()._cdata for m in modules for p in m.parameters()}
        self.per_level: dict[int, int] = defaultdict(int)
        self.alive: list[Tensor] = []  # keeps counted storages alive, so their identities are never reused

    def pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata  # identifies the storage on every device, including meta
        if key not in self.seen:
            self.seen.add(key)
            self.alive.append(tensor)
            self.per_level[self.tracker.level] += storage.nbytes()
        return tensor

    @staticmethod
    def unpack(tensor: Tensor) -> Tensor:
        return tensor


@contextlib.contextmanager
def _counting(
    tracker: _LevelTracker, modules: list[nn.Module]
) -> Iterator[tuple[FlopCounterMode, _SavedBytes]]:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = tracker
    saved = _SavedBytes(tracker, modules)
    with counter, torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        yield counter, saved


def _level_flops(counter: FlopCounterMode, n_levels: int) -> list[int]:
    counts = counter.get_flop_counts()
    return [sum(counts.get(f"level{level}", {}).values()) for level in range(1, n_levels + 1)]


def _generator_level_modules(generator: nn.Module) -> list[list[nn.Module]]:
    """Level 1: fc, ConvLSTM, the build blocks (3 official), renderer 1. Level l ≥ 2: the next block and
    renderer l."""
    k = generator.build_blocks
    levels = [[generator.fc, generator.clstm, *generator.blocks[:k], generator.renderers[0]]]
    for level in range(2, generator.n_levels + 1):
        levels.append([generator.blocks[k + level - 2], generator.renderers[level - 1]])
    return levels


def _meta_models(cfg: Config) -> tuple[nn.Module, nn.Module]:
    with torch.device("meta"):
        return build_generator(cfg).train(), build_discriminator(cfg).train()


def _labels(cfg: Config, n: int) -> Tensor | None:
    return torch.zeros(n, dtype=torch.long, device="meta") if cfg.model.n_classes else None


def _chainer_clstm_input_flops(generator: nn.Module, batch: int) -> int:
    """FLOPs of the input convolutions Chainer runs on all-zeros inputs (steps 2..T of the first layer)."""
    cell = generator.clstm[0]
    t = generator.t_size
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        cell.w_x(torch.empty(batch, cell.w_x.in_channels, t, t, device="meta"))
    return counter.get_total_flops() * (generator.n_frames - 1)


# --- per-level forward cost --------------------------------------------------------------------------------


def generator_cost(cfg: Config, batch: int, official_conventions: bool = False) -> dict[str, list[float]]:
    """Per-level forward GFLOPs and saved-activation GB of G in training mode at level-1 ``batch``."""
    generator, _ = _meta_models(cfg)
    tracker = _LevelTracker()
    hooks = []
    for level, modules in enumerate(_generator_level_modules(generator), start=1):
        for module in modules:
            hooks.append(module.register_forward_pre_hook(lambda *_, lv=level: setattr(tracker, "level", lv)))
        # the subsampling ops that follow renderer l belong to level l + 1
        set_next = lambda *_, lv=level: setattr(tracker, "level", lv + 1)  # noqa: E731
        hooks.append(modules[-1].register_forward_hook(set_next))
    z = torch.empty(batch, cfg.model.z_dim, device="meta")
    try:
        with _counting(tracker, [generator]) as (counter, saved):
            videos = generator(z, _labels(cfg, batch), rng=torch.Generator().manual_seed(0))
    finally:
        for hook in hooks:
            hook.remove()
    n_levels = generator.n_levels
    flops = _level_flops(counter, n_levels)
    executed = list(flops)
    if official_conventions:
        flops[0] += _chainer_clstm_input_flops(generator, batch)
    scales = _batch_scales(cfg, batch, [v.shape[0] for v in videos], official_conventions)
    return {
        "forward_gflops": [f * s / 1e9 for f, s in zip(flops, scales)],
        "forward_gflops_executed": [f * s / 1e9 for f, s in zip(executed, scales)],
        "activation_gb": [saved.per_level[lv] * s / GB for lv, s in zip(range(1, n_levels + 1), scales)],
    }


def discriminator_cost(cfg: Config, batch: int, official_conventions: bool = False) -> dict[str, list[float]]:
    """Per-level forward GFLOPs and saved-activation GB of D on level videos from level-1 ``batch``."""
    _, discriminator = _meta_models(cfg)
    tracker = _LevelTracker()
    shapes = level_shapes(cfg, batch)
    with _counting(tracker, [discriminator]) as (counter, saved):
        for level, (sub_d, (n, t, h, w)) in enumerate(zip(discriminator.levels, shapes), start=1):
            tracker.level = level
            video = torch.empty(n, cfg.model.out_channels, t, h, w, device="meta")  # (N_l, C, T_l, H_l, W_l)
            sub_d(video, _labels(cfg, n))
    n_levels = len(shapes)
    scales = _batch_scales(cfg, batch, [s[0] for s in shapes], official_conventions)
    flops = _level_flops(counter, n_levels)
    return {
        "forward_gflops": [f * s / 1e9 for f, s in zip(flops, scales)],
        "activation_gb": [saved.per_level[lv] * s / GB for lv, s in zip(range(1, n_levels + 1), scales)],
    }


def _batch_scales(cfg: Config, batch: int, integer_batches: list[int], fractional: bool) -> list[float]:
    if not fractional:
        return [1.0] * len(integer_batches)
    return [f / n for f, n in zip(fractional_level_batches(cfg, batch), integer_batches)]


# --- one training step -------------------------------------------------------------------------------------


def train_step_gflops(cfg: Config, batch: int) -> dict[str, float]:
    """GFLOPs of ``Trainer.step``'s sequence (forward + backward) at integer level batches, by role.

    generator: G forward + G backward from the image gradients. d_fake: D forward on the fakes, the image
    gradient of the G loss, D's parameter backward of the fake half of the D loss. d_real: D forward on
    the reals and the parameter backward of the real half. r1: the first-order gradient with
    ``create_graph`` and the part of the combined D backward that runs through that gradient's graph (the
    double backward). As in the step, the D backward is taken for D's parameters only (no image gradient
    of the reals or fakes). The combined backward is split by counting each half alone on the same graph
    and attributing the rest to R1. The loss terms are ``tganv2.losses``'s, as the step uses them.
    """
    generator, discriminator = _meta_models(cfg)
    params = list(discriminator.parameters())
    tracker = _LevelTracker()
    totals: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def role(name: str) -> Iterator[None]:
        with _counting(tracker, [generator, discriminator]) as (counter, _):
            yield
        totals[name] += counter.get_total_flops()

    shapes = level_shapes(cfg, batch)
    c = cfg.model.out_channels
    reals = [torch.empty(n, c, t, h, w, device="meta", requires_grad=True) for n, t, h, w in shapes]
    z = torch.empty(batch, cfg.model.z_dim, device="meta")
    with role("generator"):
        fakes = generator(z, _labels(cfg, batch), rng=torch.Generator().manual_seed(0))
    fake_inputs = [f.detach().requires_grad_(True) for f in fakes]
    with role("d_real"):
        real_scores = discriminator(reals)  # (ΣN_l, 1)
    with role("d_fake"):
        fake_scores = discriminator(fake_inputs)
    loss_gen = generator_loss(fake_scores)
    with role("d_fake"):
        image_grads = torch.autograd.grad(loss_gen, fake_inputs, retain_graph=True)
    with role("generator"):
        torch.autograd.backward(fakes, list(image_grads))
    loss_fake = discriminator_fake_loss(fake_scores)
    loss_real = discriminator_real_loss(real_scores)
    with role("r1"):
        loss_gp = r1_penalty(real_scores, reals, 1.0)
    with role("_fake_backward"):
        torch.autograd.grad(loss_fake, params, retain_graph=True, allow_unused=True)
    with role("_real_backward"):
        torch.autograd.grad(loss_real, params, retain_graph=True, allow_unused=True)
    with role("_combined_backward"):
        (loss_fake + loss_real + loss_gp).backward(inputs=params)
    totals["d_fake"] += totals["_fake_backward"]
    totals["d_real"] += totals["_real_backward"]
    totals["r1"] += totals["_combined_backward"] - totals["_fake_backward"] - totals["_real_backward"]
    return {k: totals[k] / 1e9 for k in ("generator", "d_fake", "d_real", "r1")}


# --- report ------------------------------------------------------------------------------------------------


def cost_report(cfg: Config, batch: int, official_conventions: bool = False) -> dict:
    """The ``bench cost --json`` document for ``cfg`` and its ablations at level-1 ``batch``.

    A variant whose model equals an earlier one's (``frame-only`` of ``ucf101-192``, say) is counted once
    and says so in ``same_model_as``.
    """
    variants: dict[str, dict] = {}
    counted: dict[str, str] = {}  # model config (JSON) -> the first variant with it
    for name, variant in variant_configs(cfg).items():
        key = repr(config_to_dict(variant)["model"])
        if key in counted:
            variants[name] = {**variants[counted[key]], "same_model_as": counted[key]}
            continue
        counted[key] = name
        m = variant.model
        variants[name] = {
            "frame_strides": list(m.frame_strides),
            "batch_strides": list(m.batch_strides),
            "level_batches": [s[0] for s in level_shapes(variant, batch)],
            "fractional_level_batches": fractional_level_batches(variant, batch),
            "level_shapes": [list(s) for s in level_shapes(variant, batch)],  # (N, T, H, W)
            "generator": generator_cost(variant, batch, official_conventions),
            "discriminator": discriminator_cost(variant, batch, official_conventions),
            "train_step_gflops": train_step_gflops(variant, batch),
        }
    report = {
        "preset": cfg.preset,
        "batch": batch,
        "fractional_batch": official_conventions,
        "conventions": {
            "flops": "torch.utils.flop_counter, 2 FLOPs per multiply-add, convolutions and matmuls only",
            "activation": "bytes saved for backward by autograd, once per storage, parameters excluded",
            "fractional_batch": official_conventions,
            "chainer_clstm_input_conv": official_conventions,
            "train_step": "integer level batches; Trainer.step's sequence",
        },
        "variants": variants,
    }
    report["official"] = compare_with_official(report, cfg)
    return report


def compare_with_official(report: dict, cfg: Config) -> dict:
    """Rows of the official table this run can be compared with, with the max relative error per row.

    G rows need the 192 px generator geometry, D rows the 256 px level inputs; both need batch 4 and the
    official conventions. The official rows are the ablations of the same names (``frame+batch`` is the
    paper's proposed model). Memory rows are listed with the measured/official ratio (Chainer keeps more
    buffers).
    """
    out: dict = {}
    if report["batch"] != OFFICIAL_BATCH or not report["fractional_batch"] or cfg.model.n_levels != 4:
        return out
    for net in ("generator", "discriminator"):
        if any(getattr(cfg.model, k) != v for k, v in OFFICIAL_MODELS[net].items()):
            continue
        rows = {}
        for name, official in OFFICIAL_GFLOPS[net].items():
            variant = report["variants"][name]
            measured = variant[net]["forward_gflops"]
            errors = [abs(m - o) / o for m, o in zip(measured, official)]
            row = {"official_gflops": official, "measured_gflops": measured, "max_rel_error": max(errors)}
            if name in OFFICIAL_MEMORY_GB[net]:
                memory = OFFICIAL_MEMORY_GB[net][name]
                row["official_activation_gb"] = memory
                row["measured_activation_gb"] = variant[net]["activation_gb"]
                row["activation_total_ratio"] = sum(variant[net]["activation_gb"]) / sum(memory)
            rows[name] = row
        naive, proposed = rows["no-subsampling"], rows["frame+batch"]
        rows["memory_reduction"] = {
            "official": sum(naive["official_activation_gb"]) / sum(proposed["official_activation_gb"]),
            "measured": sum(naive["measured_activation_gb"]) / sum(proposed["measured_activation_gb"]),
        }
        out[net] = rows
    return out
