"""Resuming on a GPU (issue 17): the checkpoint's RNG state must stay a CPU ByteTensor whatever
device the net trains on. ``meta`` stands in for a GPU: with the old ``map_location=device`` the
state landed there and ``torch.set_rng_state`` raised "RNG state must be a torch.ByteTensor"."""

from __future__ import annotations

import torch

from vggrepro import models
from vggrepro.data.transforms import Preprocess
from vggrepro.train import checkpoints


def test_a_training_checkpoint_maps_the_model_to_the_device_and_keeps_the_rng_on_the_cpu(tmp_path):
    net = models.build("A", width=1 / 16, num_classes=4, crop=32)
    path = tmp_path / "c.pt"
    torch.manual_seed(7)
    checkpoints.save(
        dict(
            model=net.state_dict(), meta=checkpoints.model_meta(net, Preprocess((1, 2, 3))), rng=checkpoints.rng_state()
        ),
        path,
    )
    expected = torch.rand(3)

    ckpt = checkpoints.load_training(path, "meta")
    assert all(t.device.type == "meta" for t in ckpt["model"].values())
    torch.manual_seed(0)
    checkpoints.restore_rng(ckpt["rng"])
    assert torch.equal(torch.rand(3), expected)
