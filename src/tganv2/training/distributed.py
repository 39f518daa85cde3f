"""torch.distributed set-up for ``torchrun --nproc_per_node=N tganv2 train ...``.

Batch semantics: ``--batch`` is the per-device batch at level 1; the global batch is batch × world size.
Gradients are averaged over ranks and R1's λ is scaled to the per-device batch (see ``tganv2.losses``), so
a run on W devices with batch B matches one device with batch W·B. Each rank gets its own seed and its own
shard of the data; only rank 0 writes files.

The average is ChainerMN's multi-node optimiser, done DDP's way: ``GradientAverager`` all-reduces the
gradients in ~25 MB buckets, each launched (asynchronously) from post-accumulate-grad hooks as soon as
its last gradient is final, so the communication overlaps the rest of the backward. We do not wrap the
models in DDP because the step differentiates D several times (image gradients, R1's double backward) and
only one backward per update must be averaged.
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

from ..device import resolve_device

__all__ = [
    "DistInfo",
    "init_distributed",
    "GradientAverager",
    "CPUSyncBatchNorm2d",
    "convert_sync_batchnorm",
    "barrier",
    "broadcast_parameters",
    "all_gather_objects",
    "is_multi_process",
]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set); pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    info = DistInfo(
        rank=dist.get_rank() if dist.is_initialized() else 0,
        world_size=dist.get_world_size() if dist.is_initialized() else 1,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    resolved = resolve_device(device)  # the one rule of every command (auto: CUDA when available)
    if resolved.type == "cuda" and resolved.index is None:  # each rank its own GPU
        torch.cuda.set_device(info.local_rank)
        return info, torch.device("cuda", info.local_rank)
    return info, resolved


def is_multi_process() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@dataclass
class _Bucket:
    params: list[nn.Parameter]  # in the order their gradients usually become final
    pending: int = 0  # gradients still to come in this backward
    work: object = None  # the all-reduce in flight (``dist.Work``), or None
    flat: torch.Tensor | None = None  # (Σ numel,) the bucket's gradients, summed over ranks in place
    grads: list[torch.Tensor] = field(default_factory=list)  # the gradients that ``flat`` holds
    launched: bool = False


class GradientAverager:
    """All-reduce *average* of a module's gradients, bucketed and overlapped with the backward.

    ``with averager: loss.backward()``: inside the block, a hook on every parameter counts the gradients
    that are final (``register_post_accumulate_grad_hook``); when a bucket is complete its gradients are
    flattened and an asynchronous ``all_reduce`` starts. Leaving the block launches the buckets that did
    not complete (parameters without a gradient in this backward are skipped, on every rank alike), waits
    for all of them and writes the means back into ``.grad``. Outside the block the hooks do nothing, so
    ``autograd.grad`` calls and other backward passes are never reduced. Buckets follow the reverse order
    of ``module.parameters()``, roughly the order in which backward finishes them, as DDP's do.

    One process (or no process group): no hooks, and the block is a plain block. Every rank must run the
    same backward graph, which the update rule guarantees (the collectives are issued in the same order).
    """

    def __init__(self, module: nn.Module, bucket_mb: float = 25.0) -> None:
        self.world_size = dist.get_world_size() if is_multi_process() else 1
        self.buckets: list[_Bucket] = []
        self._bucket_of: dict[nn.Parameter, _Bucket] = {}
        self._armed = False
        if self.world_size == 1:
            return
        limit, params, size = bucket_mb * 2**20, [], 0
        for p in reversed([p for p in module.parameters() if p.requires_grad]):
            params.append(p)
            size += p.numel() * p.element_size()
            if size >= limit:
                self.buckets.append(_Bucket(params))
                params, size = [], 0
        if params:
            self.buckets.append(_Bucket(params))
        for bucket in self.buckets:
            for p in bucket.params:
                self._bucket_of[p] = bucket
                p.register_post_accumulate_grad_hook(self._on_gradient)

    def __enter__(self) -> GradientAverager:
        for bucket in self.buckets:
            bucket.pending, bucket.launched = len(bucket.params), False
        self._armed = True
        return self

    def _on_gradient(self, param: nn.Parameter) -> None:
        if not self._armed:
            return
        bucket = self._bucket_of[param]
        bucket.pending -= 1
        if bucket.pending == 0:
            self._launch(bucket)

    def _launch(self, bucket: _Bucket) -> None:
        bucket.launched = True
        bucket.grads = [p.grad for p in bucket.params if p.grad is not None]
        if not bucket.grads:
            bucket.work = bucket.flat = None
            return
        bucket.flat = torch.cat([g.reshape(-1) for g in bucket.grads])  # (Σ numel,)
        bucket.work = dist.all_reduce(bucket.flat, async_op=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._armed = False
        if exc_type is not None or self.world_size == 1:
            return
        for bucket in self.buckets:  # parameters that got no gradient leave their bucket incomplete
            if not bucket.launched:
                self._launch(bucket)
        for bucket in self.buckets:
            if bucket.work is None:
                continue
            bucket.work.wait()  # CUDA: the current stream waits for NCCL's; the host does not
            bucket.flat /= self.world_size
            means = bucket.flat.split([g.numel() for g in bucket.grads])
            torch._foreach_copy_(bucket.grads, [m.view_as(g) for m, g in zip(means, bucket.grads)])
            bucket.work = bucket.flat = None
            bucket.grads = []


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable all-reduce sum (``torch.distributed.nn``; its deprecation warning is silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(tensor)


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with statistics over all ranks, for CPU/gloo (torch's SyncBatchNorm is GPU-only).

    Two differentiable all-reduces (``torch.distributed.nn``): the global mean, then the global biased
    variance; the running variance is updated unbiased, like Chainer's MultiNodeBatchNormalization.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_multi_process()):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.tensor([x.numel() // channels], dtype=x.dtype, device=x.device)
        count = _sum_over_ranks(count)  # (1,) elements per channel over all ranks
        mean = _sum_over_ranks(x.sum(dim=(0, 2, 3))) / count  # (C,)
        centred = x - mean.view(1, -1, 1, 1)
        var = _sum_over_ranks(centred.pow(2).sum(dim=(0, 2, 3))) / count  # (C,) biased
        with torch.no_grad():  # no .item(): the unbiasing factor stays a tensor (no host sync)
            unbiased = self.momentum * var.detach() * count / (count - 1).clamp(min=1)  # (C,)
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
            self.running_var.mul_(1 - self.momentum).add_(unbiased)
            self.num_batches_tracked += 1
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Synchronised BN for the generator when several processes train (the official MultiNodeBN).

    CUDA uses ``torch.nn.SyncBatchNorm``; other devices use :class:`CPUSyncBatchNorm2d`. Parameter and
    buffer names are unchanged, so checkpoints and snapshots load into a plain generator.
    """
    if not is_multi_process():
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = CPUSyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            synced.load_state_dict(child.state_dict())
            setattr(module, name, synced.to(child.running_mean.device))
        else:
            convert_sync_batchnorm(child, device)
    return module


def broadcast_parameters(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (what DDP does at construction)."""
    if is_multi_process():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj) -> list:
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
