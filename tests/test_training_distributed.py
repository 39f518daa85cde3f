"""Multi-process training: the bucketed gradient average (2 gloo ranks) and 2 torchrun "nodes" on localhost
against 1 node × 2 processes (bit-identical generators)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from conftest import child_env, tiny_args
from tganv2.training.distributed import GradientAverager


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(2, 2)  # no gradient: its bucket (the last) is launched on leaving the block
        self.body = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _averager_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # the same weights on both ranks
        model = _Net().double()
        averager = GradientAverager(model, bucket_mb=64 / 2**20)  # 64 bytes: one or two tensors per bucket
        x = torch.randn(5, 6, generator=torch.Generator().manual_seed(rank), dtype=torch.float64)

        model(x).square().sum().backward()  # outside the block: local gradients, not reduced
        local = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        with averager:
            model(x).square().sum().backward()
            launched_in_backward = sum(b.launched for b in averager.buckets)
        averaged = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        every_rank = [[torch.empty_like(g) for _ in range(world)] for g in local]
        for gathered, g in zip(every_rank, local):
            dist.all_gather(gathered, g)
        if rank == 0:
            torch.save(
                {
                    "local": local,
                    "averaged": averaged,
                    "every_rank": every_rank,
                    "n_buckets": len(averager.buckets),
                    "launched_in_backward": launched_in_backward,
                    "unused_grad_is_none": model.unused.weight.grad is None,
                },
                out_file,
            )
    finally:
        dist.destroy_process_group()


def test_bucketed_average_is_the_mean_over_ranks_and_starts_during_backward(tmp_path):
    out_file = str(tmp_path / "avg.pt")
    mp.spawn(_averager_worker, args=(2, str(tmp_path / "init"), out_file), nprocs=2, join=True)
    r = torch.load(out_file, weights_only=True)
    assert r["n_buckets"] >= 4
    # every bucket but the unused layer's was all-reduced from the hooks, before backward returned
    assert r["launched_in_backward"] == r["n_buckets"] - 1
    assert r["unused_grad_is_none"]
    for avg, gathered, local in zip(r["averaged"], r["every_rank"], r["local"]):
        assert not torch.equal(gathered[0], gathered[1])  # the ranks' gradients do differ
        assert torch.equal(avg, (gathered[0] + gathered[1]) / 2)
        assert torch.equal(gathered[0], local)


# --- torchrun: 2 nodes × 1 process == 1 node × 2 processes --------------------------------------------------

TINY = tiny_args("data.synthetic_size=64", "data.num_workers=0", "train.log_every=1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(launch: list[str], out: Path) -> subprocess.Popen:
    train = ["-m", "tganv2.cli", "train", "--preset", "small-64", "--iterations", "2", "--no-progress"]
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *launch, *train, "--out", str(out), *TINY],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_torchrun_nodes_equal_one_node_with_two_processes(tmp_path):
    """c10d rendezvous on 127.0.0.1 (gloo): after 2 iterations every generator tensor is bit-identical."""
    port = _free_port()
    node = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    node += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "tganv2-test", "--local-addr", "127.0.0.1"]
    runs = {
        "node0": _torchrun([*node, "--rdzv-conf", "is_host=1"], tmp_path / "two_nodes"),
        "node1": _torchrun([*node, "--rdzv-conf", "is_host=0"], tmp_path / "two_nodes"),
        "one_node": _torchrun(
            ["--standalone", "--nnodes", "1", "--nproc-per-node", "2"], tmp_path / "one_node"
        ),
    }
    logs = {}
    try:
        for name, proc in runs.items():
            logs[name] = proc.communicate(timeout=180)[0]
            assert proc.returncode == 0, f"{name} failed:\n{logs[name][-3000:]}"
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
    assert "world size 2" in logs["node0"] + logs["node1"] and "world size 2" in logs["one_node"]
    two = load_file(str(tmp_path / "two_nodes" / "generator.safetensors"))
    one = load_file(str(tmp_path / "one_node" / "generator.safetensors"))
    assert two.keys() == one.keys()
    for name in one:
        assert torch.equal(two[name], one[name]), name
    losses = [
        [json.loads(line).get("loss_dis") for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        for run in ("two_nodes", "one_node")
    ]
    assert losses[0] == losses[1] and len([v for v in losses[0] if v is not None]) == 2
