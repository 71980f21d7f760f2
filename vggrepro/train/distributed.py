"""Many processes under ``torchrun``: joining the group, wrapping the net, agreeing on numbers.

Each process takes its slice of the global batch and DistributedDataParallel averages the
gradients: the paper's synchronous multi-GPU scheme, equal to one process with the same batch.
Whatever decides the course of training (the validation counts behind the lr schedule and the
stop) is summed over the processes, so that every rank takes the same decisions.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless launched by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init(device: str) -> None:
    """Join the process group torchrun set up (nccl on GPUs, gloo on CPUs); no-op otherwise."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def freeze_and_wrap(net: nn.Module, trainable: str) -> tuple[nn.Module, list[nn.Parameter]]:
    """The module to step and the parameters that learn (``trainable``: "all", or "fc": fc6-fc8).

    Layers are frozen *before* the DDP wrap: DDP registers its gradient hooks for the parameters
    that require grad when it is built, and a parameter frozen afterwards never reports its
    gradient ("Expected to have finished reduction in the prior iteration")."""
    if trainable not in ("all", "fc"):
        raise ValueError(f"trainable={trainable!r}: use 'all' or 'fc'")
    if trainable == "fc":
        net.features.requires_grad_(False)
    learning = [p for p in net.parameters() if p.requires_grad]
    model = nn.parallel.DistributedDataParallel(net) if world()[1] > 1 else net
    return model, learning


def all_sum(values: list[float], device: str | torch.device = "cpu") -> list[float]:
    """``values`` summed over the processes (as they are in one process). Counts are exact in float64."""
    if world()[1] == 1:
        return list(values)
    # nccl reduces only GPU tensors; gloo takes CPU ones
    where = device if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=where)
    dist.all_reduce(t)
    return t.tolist()
