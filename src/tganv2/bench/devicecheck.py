"""Does one training step agree across devices and precisions? (the GPU check's correctness stage).

``step_on`` runs one real ``Trainer.step`` from the same starting point on any device and dtype: the same
initial weights (built once on the CPU), the same real clips and the same z (both fixed here, since the
trainer may draw z on its own device, whose random stream differs from the CPU's), and the trainer's
subsampling draws from the same seed (host-side streams, equal on every device). It returns the step's
losses and every parameter's gradient (float64, on the CPU).

``compare_steps`` measures a run against a reference (float64 on the CPU): the relative error of each loss,
and per network the relative L2 error of all gradients together, ‖g − g_ref‖ / ‖g_ref‖, with the worst
single tensor named (among those whose gradient is not ~0). ``TOLERANCE`` is what an fp32 step (TF32
off) must meet against float64.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor

from ..config import Config, build_discriminator, build_generator
from ..data.base import to_float
from ..data.synthetic import SyntheticVideoDataset
from ..training.step import Trainer

__all__ = ["TOLERANCE", "LOSSES", "initial_state", "step_inputs", "step_on", "compare_steps"]

LOSSES = ("loss_gen", "loss_dis", "loss_gp")
# fp32 (IEEE, no TF32) against float64: relative error of each loss and of each network's gradients
TOLERANCE = {"loss": 1e-4, "gradient": 1e-3}


def initial_state(cfg: Config, seed: int = 0) -> dict[str, dict[str, Tensor]]:
    """G's and D's initial weights (float32, CPU), built once so that every run starts from them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {
            "generator": build_generator(cfg).state_dict(),
            "discriminator": build_discriminator(cfg).state_dict(),
        }


def step_inputs(cfg: Config, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The real clips ``(B, C, T, S, S)`` in [-1, 1] (synthetic dataset) and z ``(B, z_dim)``, float32 CPU."""
    m, batch = cfg.model, cfg.train.batch
    dataset = SyntheticVideoDataset(n_clips=batch, n_frames=m.n_frames, size=m.resolution, seed=seed)
    clips = torch.stack([to_float(dataset.get_clip(i, 0)[0]) for i in range(batch)])
    z = torch.rand(batch, m.z_dim, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return clips, z


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def step_on(
    cfg: Config,
    device: str | torch.device,
    dtype: torch.dtype,
    state: dict[str, dict[str, Tensor]],
    clips: Tensor,
    z: Tensor,
    seed: int = 0,
) -> dict:
    """One ``Trainer.step`` of ``cfg`` on ``device`` in ``dtype`` from ``state``; its losses and gradients."""
    device = torch.device(device)
    with _default_dtype(dtype):  # buffers the step creates (accumulators, flags) follow the model's dtype
        generator, discriminator = build_generator(cfg), build_discriminator(cfg)
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        trainer = Trainer(
            cfg, device, generator=generator.to(dtype), discriminator=discriminator.to(dtype), seed=seed
        )
        trainer.sample_z = lambda batch: z[:batch].to(device=device, dtype=dtype)
        real = clips.to(device=device, dtype=dtype)
        stats = trainer.step(lambda: (real, None))
        if not isinstance(stats, dict):  # a trainer that reads its statistics only when asked
            stats = trainer.read_stats()
    grads = {}
    for net, module in (("G", trainer.generator), ("D", trainer.discriminator)):
        for name, p in module.named_parameters():
            if p.grad is not None:
                grads[f"{net}.{name}"] = p.grad.detach().to("cpu", torch.float64)
    return {"losses": {k: float(stats[k]) for k in LOSSES}, "grads": grads}


def compare_steps(run: dict, reference: dict) -> dict:
    """Relative errors of ``run`` against ``reference`` (see the module docstring), and whether they pass."""
    losses = {k: abs(run["losses"][k] - ref) / max(abs(ref), 1e-12) for k, ref in reference["losses"].items()}
    missing = sorted(set(reference["grads"]) ^ set(run["grads"]))
    networks = {}
    for net in ("G", "D"):
        names = [n for n in reference["grads"] if n.startswith(net + ".") and n in run["grads"]]
        diff = math.sqrt(sum(float((run["grads"][n] - reference["grads"][n]).pow(2).sum()) for n in names))
        norm = math.sqrt(sum(float(reference["grads"][n].pow(2).sum()) for n in names))
        # per tensor, skipping those whose gradient is ~0 in exact arithmetic (a conv bias before a BN)
        per_tensor = {
            n: float((run["grads"][n] - reference["grads"][n]).norm() / reference["grads"][n].norm())
            for n in names
            if float(reference["grads"][n].norm()) > 1e-6 * norm
        }
        worst = max(per_tensor, key=per_tensor.get) if per_tensor else None
        networks[net] = {
            "gradient_rel_l2": diff / max(norm, 1e-30),
            "gradient_norm": norm,
            "tensors": len(names),
            "worst_tensor": worst,
            "worst_tensor_rel_l2": per_tensor.get(worst, float("nan")),
        }
    passed = (
        not missing
        and all(e <= TOLERANCE["loss"] for e in losses.values())
        and all(n["gradient_rel_l2"] <= TOLERANCE["gradient"] for n in networks.values())
    )
    return {
        "loss_rel_error": losses,
        "losses": run["losses"],
        "reference_losses": reference["losses"],
        "networks": networks,
        "missing_gradients": missing,
        "tolerance": dict(TOLERANCE),
        "passed": passed,
    }
